# fuzz/fuzz.mk -- libFuzzer harnesses for the two untrusted-file loaders
# (included at the end of the root Makefile; docs/RELIABILITY.md).
#
#   make fuzz FUZZ_SECONDS=N   build with clang into build-fuzz/, make the
#                              seed corpus, run each harness N seconds (one
#                              job at a time), print execs and crashes
#   make fuzz-smoke            the same, 60 s in total (CI)
#   make fuzz-build            only build the harnesses
#   make fuzz FUZZ_FAST=1 ...  throughput run: UBSan only, no ASan (libhdf5
#                              dominates either way; our code is then only
#                              checked for crashes), objects in build-fuzz-fast/
#
# The library sources the loaders need are compiled with clang and
# -fsanitize=fuzzer-no-link,address,undefined into build-fuzz/; libhdf5 and
# jansson are the system's (uninstrumented) libraries.

ifeq ($(FUZZ_FAST),1)
FUZZ_BUILD ?= build-fuzz-fast
FUZZ_SAN ?= -fsanitize=undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else
FUZZ_BUILD ?= build-fuzz
FUZZ_SAN ?= -fsanitize=address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer
endif
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 30
FUZZ_TARGETS := fixture keras
FUZZ_PY ?= /usr/bin/python3
FUZZ_TIMEOUT ?= 10
export FUZZ_TIMEOUT
FUZZ_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g $(NUMFLAGS) $(WARN) -pthread \
               -Iinclude -Icore -Iimporters -Ifixtures -Ifuzz $(PKG_CFLAGS) $(FUZZ_SAN)
# what lrp_fixture_read / lrp_keras_import link against: all of core/ and
# importers/ (a hand-kept list broke `make fuzz` when h5io.c started
# writing through core/safeout.c)
FUZZ_LIB_SRC := $(wildcard core/*.c importers/*.c)
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_BIN := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_CORPUS := $(FUZZ_BUILD)/seeds

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-corpus
fuzz-build: $(FUZZ_BIN)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -ljansson -lm -pthread

# Seeds: the generator's fixtures (written by seedgen, the registry of
# fixtures/suite.c, like `lrp-oracle gen`) and the Keras-layout test models.
FUZZ_SEEDGEN_OBJ := $(FUZZ_BUILD)/fuzz/seedgen.o $(FUZZ_LIB_OBJ) \
                    $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(wildcard fixtures/*.c))
$(FUZZ_BUILD)/seedgen: $(FUZZ_SEEDGEN_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -o $@ $^ $(PKG_LIBS) -ljansson -lm -pthread

$(FUZZ_CORPUS)/.done: $(FUZZ_BUILD)/seedgen fuzz/make_seeds.py tests/keras/make_keras_models.py
	rm -rf $(FUZZ_BUILD)/gen $(FUZZ_BUILD)/kerasgen $(FUZZ_CORPUS)
	mkdir -p $(FUZZ_BUILD)/gen
	ASAN_OPTIONS=detect_leaks=0 $(FUZZ_BUILD)/seedgen $(FUZZ_BUILD)/gen
	$(FUZZ_PY) tests/keras/make_keras_models.py $(FUZZ_BUILD)/kerasgen >/dev/null
	$(FUZZ_PY) fuzz/make_seeds.py $(FUZZ_BUILD)/gen $(FUZZ_BUILD)/kerasgen $(FUZZ_CORPUS)
	touch $@
fuzz-corpus: $(FUZZ_CORPUS)/.done

fuzz: $(FUZZ_BIN) $(FUZZ_CORPUS)/.done
	@sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: $(FUZZ_BIN) $(FUZZ_CORPUS)/.done
	@sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

-include $(FUZZ_SEEDGEN_OBJ:.o=.d) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/fuzz_%.d)

# keep the objects (pattern-rule intermediates would be deleted)
.SECONDARY: $(FUZZ_SEEDGEN_OBJ) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/fuzz_%.o)
