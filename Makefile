# lrp-oracle -- one non-recursive Makefile (docs/DESIGN.md "Build").
#
#   make            build library, CLI and tests
#   make run        set up, build, run the oracle over the fixture suite
#   make check      set up, build, run every cmocka test binary; the torch
#                   and chromium tests are counted as skipped when those are
#                   absent, FULL=1 installs them and makes them required
#   make sanitize   the tests under ASan + UBSan (build-asan/)
#   make bench      benchmarks (bench/)
#   make install    PREFIX=/usr/local DESTDIR=: program, liblrp.so (SONAME
#                   liblrp.so.0) and liblrp.a, lrp.h, lrp.pc, golden traces
#                   and fixtures (PREFIX/share/lrp-oracle), man page, bash
#                   completion; make uninstall removes exactly those
#   make mutants    mutation benchmark of the oracle (bench/mutants.py);
#                   MUTANTS_BIG=1 adds ResNet-50 at 224 (about 1 h, 3.1 GB RSS)
#   make false-alarms  every fixture's clean fast-path trace under every
#                   composite x convention, judged (bench/false_alarms.py)
#
#   make MPI=1      the CLI with MPI (mpicc, -DLRP_MPI) in build-mpi/: under
#                   mpirun / srun one suite, reference or fast run is spread
#                   over the ranks (docs/SCALING.md "MPI"); the default
#                   build has no MPI in it
#   make check-mpi  the MPI build's outputs under mpirun -n 1, 2 and 3 against
#                   the default build's, byte for byte (scripts/check_mpi.sh)
#
# BUILD selects the object directory; SAN=1 builds with sanitizers.

MPI ?= 0
ifeq ($(MPI),1)
BUILD ?= build-mpi
CC := mpicc
MPI_CFLAGS := -DLRP_MPI
endif
BUILD ?= build
CC ?= cc
PKGS := mpfr hdf5 cmocka
# One pkg-config call a package: pkg-config prints nothing at all when any
# package it is asked for is missing, and cmocka is installed only for the
# tests (scripts/deps.sh tiers), so `make run` on a fresh machine lost
# HDF5's include directory when both were asked together.
PKG_CFLAGS := $(shell pkg-config --cflags hdf5 2>/dev/null) \
              $(shell pkg-config --cflags cmocka 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs hdf5 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-unused-parameter
OPT ?= -O2
# -ffp-contract=off: no silent FMA fusion; the float32 bounds assume
# separately rounded products and sums.  Never -ffast-math.
NUMFLAGS := -ffp-contract=off -fno-math-errno
CFLAGS_BASE := -std=c11 -D_POSIX_C_SOURCE=200809L $(OPT) -g $(NUMFLAGS) \
               $(WARN) -pthread -Iinclude -Icore -Ireference -Ifastpath \
               -Ioracle -Ifixtures -Iimporters -Itools $(PKG_CFLAGS) $(MPI_CFLAGS)
ifeq ($(SAN),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
endif
CFLAGS += $(CFLAGS_BASE)
LDLIBS := $(PKG_LIBS) -ljansson -lmpfr -lgmp -lm -pthread $(LDSAN)

# LIB_DIRS can be narrowed while a module is under construction, e.g.
#   make BUILD=build-ref LIB_DIRS="core reference" build-ref/tests/test_reference
.DEFAULT_GOAL := all

LIB_DIRS ?= core reference fastpath oracle fixtures importers
LIB_SRC := $(wildcard $(LIB_DIRS:%=%/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/liblrp.a
# The shared library: the same objects, position-independent (no effect on
# the arithmetic), exporting only include/lrp.h's functions (include/lrp.map).
VERSION := 0.1.0
SOVERSION := 0
SHLIB := $(BUILD)/liblrp.so.$(VERSION)
$(LIB_OBJ): CFLAGS += -fPIC
# Objects built with other flags (an older tree without -fPIC, another SAN or
# OPT in the same BUILD) are rebuilt: the stamp changes with the flags.
FLAGS_STAMP := $(BUILD)/cflags.stamp
FLAGS_NOW := $(CC) $(CFLAGS) -fPIC
$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(FLAGS_NOW)' | cmp -s - $@ || echo '$(FLAGS_NOW)' >$@
$(LIB_OBJ): $(FLAGS_STAMP)
.PHONY: FORCE
FORCE:

CLI_SRC := $(wildcard tools/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
CLI := $(BUILD)/lrp-oracle

NAIVE_SRC := $(wildcard tests/naive/*.c)
NAIVE_OBJ := $(NAIVE_SRC:%.c=$(BUILD)/%.o)
TESTUTIL_SRC := $(wildcard tests/util/*.c)
TESTUTIL_OBJ := $(TESTUTIL_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all shared install uninstall deps deps-check deps-torch deps-mpi run check check-mpi sanitize bench clean fixtures golden mutants false-alarms
ifeq ($(MPI),1)
# the MPI build is the CLI alone (the library and its tests have no MPI)
all: deps-mpi
	@$(MAKE) --no-print-directory $(CLI)
else
all: $(LIB) $(SHLIB) $(CLI) $(TEST_BIN)
endif

# Dependency tiers (scripts/deps.sh): `make run` needs only the C libraries;
# the tests add cmocka, xmllint, numpy and h5py; the benchmarks and the
# mutation benchmark add torch; FULL=1 (CI) adds torch and chromium.
FULL ?= 0
CHECK_TIER := $(if $(filter 1,$(FULL)),full,check)
deps:
	@sh scripts/deps.sh build
deps-check:
	@sh scripts/deps.sh $(CHECK_TIER)
deps-torch:
	@sh scripts/deps.sh torch
deps-mpi:
	@sh scripts/deps.sh mpi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(SHLIB): $(LIB_OBJ) include/lrp.map
	$(CC) $(CFLAGS) -shared -Wl,-soname,liblrp.so.$(SOVERSION) \
	    -Wl,--version-script=include/lrp.map -Wl,--no-undefined -o $@ $(LIB_OBJ) $(LDLIBS)
	ln -sf liblrp.so.$(VERSION) $(BUILD)/liblrp.so.$(SOVERSION)
	ln -sf liblrp.so.$(SOVERSION) $(BUILD)/liblrp.so

shared: $(SHLIB)

# libpng: the heatmaps of the CLI only (the library does not draw)
PNG_LIBS := $(shell pkg-config --libs libpng 2>/dev/null || echo -lpng16 -lz)
$(CLI): $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(PNG_LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(NAIVE_OBJ) $(TESTUTIL_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(NAIVE_OBJ) $(TESTUTIL_OBJ) $(LIB) $(TEST_LIBS) $(PNG_LIBS) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# The fixture suite used by `make run` (generated if missing).
fixtures: $(CLI)
	@$(CLI) gen --out $(BUILD)/fixtures

run: deps
	@$(MAKE) --no-print-directory $(CLI)
	@sh scripts/run.sh $(BUILD)

check: deps-check
	@$(MAKE) --no-print-directory all
	@LRP_REQUIRE_FULL=$(FULL) sh scripts/check.sh tests $(BUILD) $(TEST_BIN)

# The MPI tests (docs/SCALING.md "MPI"): the default build and the MPI
# build under mpirun -n 1, 2 and 3 give the same bytes.
check-mpi: deps-mpi
	@$(MAKE) --no-print-directory BUILD=build build/lrp-oracle
	@$(MAKE) --no-print-directory MPI=1 BUILD=build-mpi build-mpi/lrp-oracle
	@sh scripts/check_mpi.sh build/lrp-oracle build-mpi/lrp-oracle

sanitize: deps-check
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 OPT=-O1 all
	@LRP_REQUIRE_FULL=$(FULL) sh scripts/check.sh sanitized build-asan $(TEST_BIN:$(BUILD)/%=build-asan/%)

bench: deps-torch
	@$(MAKE) --no-print-directory BUILD=build-bench \
	    build-bench/lrp-oracle $(BENCH_BIN:$(BUILD)/%=build-bench/%)
	@sh scripts/bench.sh build-bench

# Mutation benchmark (issue 12): damaged traces and rule mutants judged by
# `lrp-oracle compare`; kill table on stdout, $(BUILD)/mutants.json.
# Debian's Python: it has h5py, numpy and torch (scripts/deps.sh).
MUTANTS_PY ?= /usr/bin/python3
MUTANTS_BIG ?= 0
# One compare of ResNet-50 224 takes 3.5-20 min (2 cores, by load: 3:23 on
# an idle machine) and about 2 GB (December 2026, docs/SCALING.md); the
# damaged traces are judged with --no-proof. VGG-16 224 has ~4x the MACs
# (9-10 min a compare idle, 3.5 GB): MUTANTS_BIG_CASES="resnet50_224_b1
# vgg16_224_b1" when the hours are there (bench/mutants.py has its own memory
# guard, MUTANTS_BIG_MEM_GB).
MUTANTS_BIG_CASES ?= resnet50_224_b1
# the CLI refuses work estimated above LRP_SANDBOX_MEM_MB (8 GiB by default,
# docs/RELIABILITY.md section 3); mutants.py has its own memory guard
MUTANTS_BIG_LIMIT_MB ?= 1048576
BIG_CASES := $(MUTANTS_BIG_CASES)
comma := ,
empty :=
space := $(empty) $(empty)
mutants: deps-torch
	@$(MAKE) --no-print-directory $(CLI) $(if $(filter 1,$(MUTANTS_BIG)),$(BUILD)/bench/bench_lrp)
ifeq ($(MUTANTS_BIG),1)
	@mkdir -p $(BUILD)/bigfx
	@for c in $(BIG_CASES); do $(BUILD)/bench/bench_lrp --write-fixture $(BUILD)/bigfx/$$c.h5 $$c || exit 1; done
	LRP_SANDBOX_MEM_MB=$(MUTANTS_BIG_LIMIT_MB) LRP_LIMIT_CPU=86400 \
	$(MUTANTS_PY) bench/mutants.py --cli $(CLI) --work $(BUILD)/mutants --json $(BUILD)/mutants.json \
	    --big --big-fixtures $(subst $(space),$(comma),$(BIG_CASES:%=$(BUILD)/bigfx/%.h5))
else
	$(MUTANTS_PY) bench/mutants.py --cli $(CLI) --work $(BUILD)/mutants --json $(BUILD)/mutants.json
endif

# False-alarm sweep (issue 12): the fast path's clean trace of every fixture
# under every composite x convention, judged by `compare`; exit 1 when one
# FAILs without a NaN/inf to show for it (bench/false_alarms.py; h5py not
# needed). FALSE_ALARMS_ARGS=--quick: the composites and the conventions
# apart (252 runs, 2 minutes) instead of their product (882).
FALSE_ALARMS_ARGS ?=
false-alarms: $(CLI)
	$(MUTANTS_PY) bench/false_alarms.py --cli $(CLI) --work $(BUILD)/false_alarms \
	    --json $(BUILD)/false_alarms.json $(FALSE_ALARMS_ARGS)

# Regenerates the committed golden traces (fixtures/golden/) -- only on
# explicit request; prints what changed against the committed files.
golden: deps
	@$(MAKE) --no-print-directory $(CLI)
	@$(CLI) golden --dir fixtures/golden --update

# ---- install (GNU conventions: PREFIX, DESTDIR, the *DIR variables) ----
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATAROOTDIR ?= $(PREFIX)/share
PKGDATADIR := $(DATAROOTDIR)/lrp-oracle
MANDIR ?= $(DATAROOTDIR)/man
BASHCOMPDIR ?= $(DATAROOTDIR)/bash-completion/completions
D := $(DESTDIR)

install: $(CLI) $(LIB) $(SHLIB)
	@rm -rf $(BUILD)/install-fixtures
	@$(CLI) gen --out $(BUILD)/install-fixtures >/dev/null
	install -d $(D)$(BINDIR) $(D)$(LIBDIR)/pkgconfig $(D)$(INCLUDEDIR) \
	    $(D)$(PKGDATADIR)/golden $(D)$(PKGDATADIR)/fixtures $(D)$(MANDIR)/man1 $(D)$(BASHCOMPDIR)
	install -m 755 $(CLI) $(D)$(BINDIR)/lrp-oracle
	install -m 644 $(LIB) $(D)$(LIBDIR)/liblrp.a
	install -m 755 $(SHLIB) $(D)$(LIBDIR)/liblrp.so.$(VERSION)
	ln -sf liblrp.so.$(VERSION) $(D)$(LIBDIR)/liblrp.so.$(SOVERSION)
	ln -sf liblrp.so.$(SOVERSION) $(D)$(LIBDIR)/liblrp.so
	install -m 644 include/lrp.h $(D)$(INCLUDEDIR)/lrp.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    scripts/lrp.pc.in >$(D)$(LIBDIR)/pkgconfig/lrp.pc
	install -m 644 fixtures/golden/*.h5 $(D)$(PKGDATADIR)/golden/
	install -m 644 $(BUILD)/install-fixtures/*.h5 $(D)$(PKGDATADIR)/fixtures/
	install -m 644 fixtures/traces/*.h5 $(D)$(PKGDATADIR)/fixtures/
	install -m 644 man/lrp-oracle.1 $(D)$(MANDIR)/man1/lrp-oracle.1
	install -m 644 completion/lrp-oracle.bash $(D)$(BASHCOMPDIR)/lrp-oracle

uninstall:
	rm -f $(D)$(BINDIR)/lrp-oracle $(D)$(LIBDIR)/liblrp.a \
	    $(D)$(LIBDIR)/liblrp.so.$(VERSION) $(D)$(LIBDIR)/liblrp.so.$(SOVERSION) \
	    $(D)$(LIBDIR)/liblrp.so $(D)$(INCLUDEDIR)/lrp.h $(D)$(LIBDIR)/pkgconfig/lrp.pc \
	    $(D)$(MANDIR)/man1/lrp-oracle.1 $(D)$(BASHCOMPDIR)/lrp-oracle
	rm -rf $(D)$(PKGDATADIR)

clean:
	rm -rf build build-asan build-bench build-mpi

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(NAIVE_OBJ:.o=.d) \
         $(TESTUTIL_OBJ:.o=.d) $(TEST_BIN:=.d) $(BENCH_BIN:=.d)

# Fuzzing targets (issue 8) live in their own fragment.
-include fuzz/fuzz.mk

# The committed subject traces of the transformer reproductions
# (docs/REPRODUCTIONS.md lxt-29, xai-tf-2; fixtures/traces/, read by `make
# run`): regenerated only on explicit request, with Debian's Python (torch,
# h5py).  A trace file pins its fixture by size and digest: regenerate when
# dec_silu0 or vit_negbias change.
.PHONY: repro-traces
repro-traces: $(CLI)
	@rm -rf $(BUILD)/repro-traces && mkdir -p $(BUILD)/repro-traces fixtures/traces
	@$(CLI) gen --out $(BUILD)/repro-traces dec_silu0 vit_negbias >/dev/null
	$(MUTANTS_PY) tools/python/peers/repro_tf.py $(CLI) lxt29 $(BUILD)/repro-traces/dec_silu0.h5 $(BUILD)/repro-traces
	$(MUTANTS_PY) tools/python/peers/repro_tf.py $(CLI) xaitf2 $(BUILD)/repro-traces/vit_negbias.h5 $(BUILD)/repro-traces
	cp $(BUILD)/repro-traces/dec_silu0.*.h5 $(BUILD)/repro-traces/vit_negbias.*.h5 fixtures/traces/
