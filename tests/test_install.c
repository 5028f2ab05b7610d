/*
 * test_install.c -- lrp-oracle as a package (issue 16): the dependency
 * tiers of scripts/deps.sh, `make install` / `make uninstall` with PREFIX
 * and DESTDIR, liblrp.so's SONAME and exported symbols (exactly the
 * functions of include/lrp.h), lrp.pc, the installed program finding its
 * data outside the source tree, the man page and the bash completion, and
 * docs/example.c built against the installed tree with pkg-config alone.
 *
 * Runs `make` from the source tree (the current directory, as `make check`
 * runs) with this binary's BUILD, so the installed files are the ones just
 * built; under the sanitizers (BUILD=build-asan) with SAN=1, and the example
 * is linked with the sanitizers too.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static char build[4096], srcdir[4096];
static char *tmp;

static char *slurp_in(const char *name)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    return tu_slurp(p);
}

static int exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int exists(const char *fmt, ...)
{
    char p[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    struct stat sb;
    return lstat(p, &sb) == 0;
}

/* `make` in the source tree for this build; MAKEFLAGS of an outer make
 * (its jobserver) must not leak in. */
static int make(const char *args)
{
    return tu_sh("cd '%s' && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory "
              "BUILD='%s' %s %s >>'%s/make.log' 2>&1",
              srcdir, build, SANITIZED ? "SAN=1 OPT=-O1" : "", args, tmp);
}

static int setup(void **state)
{
    (void)state;
    if (tu_exe_dir(build, sizeof build, 2) != 0)
        return -1;
    if (!getcwd(srcdir, sizeof srcdir))
        return -1;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/include/lrp.h", srcdir);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "test_install: run from the source tree (no %s)\n", probe);
        return -1;
    }
    tmp = tu_mkdtemp("install");
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (tmp)
        tu_sh("rm -rf '%s'", tmp);
    free(tmp);
    return 0;
}

/* ---- 1. dependency tiers ---- */

static int listed(const char *list, const char *pkg)
{
    size_t n = strlen(pkg);
    for (const char *p = list; (p = strstr(p, pkg)); p += n)
        if ((p == list || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static void test_deps_tiers(void **state)
{
    (void)state;
    const char *tiers[4] = {"build", "check", "full", "torch"};
    char *l[4];
    for (int t = 0; t < 4; t++) {
        assert_int_equal(tu_sh("cd '%s' && sh scripts/deps.sh --list %s >'%s/%s.txt'", srcdir,
                            tiers[t], tmp, tiers[t]),
                         0);
        char name[32];
        snprintf(name, sizeof name, "%s.txt", tiers[t]);
        l[t] = slurp_in(name);
        assert_non_null(l[t]);
    }
    /* make run: the C libraries, no Python package at all */
    for (const char *p = l[0]; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
        if (!strncmp(p, "python", 6))
            fail_msg("the build tier (make run) installs a Python package: %.40s", p);
    assert_true(listed(l[0], "libmpfr-dev") && listed(l[0], "libhdf5-dev") &&
                listed(l[0], "libjansson-dev") && listed(l[0], "libpng-dev"));
    /* make check: + cmocka, xmllint, numpy, h5py; not torch */
    assert_true(listed(l[1], "libcmocka-dev") && listed(l[1], "python3-numpy") &&
                listed(l[1], "python3-h5py") && listed(l[1], "libxml2-utils"));
    assert_false(listed(l[1], "python3-torch"));
    assert_true(listed(l[2], "python3-torch") && listed(l[2], "chromium"));
    /* the benchmarks' tier: torch without the browser */
    assert_true(listed(l[3], "python3-torch") && !listed(l[3], "chromium"));
    /* the targets call the right tier (make -n prints, runs nothing but the
     * recursive make of an up-to-date CLI); FULL=0 as a user types it, since
     * `make check FULL=1` (CI) passes FULL down to this test */
    assert_int_equal(tu_sh("cd '%s' && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n "
                        "--no-print-directory FULL=0 deps deps-check >'%s/n.txt' 2>&1",
                        srcdir, tmp),
                     0);
    char *n = slurp_in("n.txt");
    assert_non_null(n);
    assert_non_null(strstr(n, "deps.sh build"));
    assert_non_null(strstr(n, "deps.sh check"));
    assert_int_equal(tu_sh("cd '%s' && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n "
                        "--no-print-directory -p run 2>/dev/null | grep -q '^run: deps$'",
                        srcdir),
                     0);
    free(n);
    for (int t = 0; t < 4; t++)
        free(l[t]);
    /* the project stands alone: nothing points at documents outside it
     * (the pattern is written so that it does not match this line) */
    if (tu_sh("cd '%s' && grep -rIlE 'STYLE[.]md|FORMATS[.]md|LRP-SPEC[.]md|[.][.]/shared' "
              "--exclude-dir='build*' --exclude-dir=.git . >'%s/outside.txt'",
              srcdir, tmp) == 0)
        fail_msg("files point outside the project: %s", slurp_in("outside.txt"));
}

/* ---- 2 and 3. install, link, run ---- */

/* The function names declared in include/lrp.h: an identifier lrp_* right
 * before '(' at the start of a declaration (after its return type). */
static int header_functions(char names[][64], int max)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/include/lrp.h", srcdir);
    char *h = tu_slurp(p);
    assert_non_null(h);
    int n = 0;
    for (char *q = h; (q = strstr(q, "lrp_")); q++) {
        if (q > h && (isalnum((unsigned char)q[-1]) || q[-1] == '_'))
            continue;
        size_t k = 0;
        while (isalnum((unsigned char)q[k]) || q[k] == '_')
            k++;
        if (q[k] != '(' || k >= 64)
            continue;
        /* a call inside a macro (LRP_ASSERT) or a comment is not a
         * declaration: require a type word before it on the same line */
        char *bol = q;
        while (bol > h && bol[-1] != '\n')
            bol--;
        if (strstr(bol, "#define") == bol || *bol == ' ' || *bol == '/' || *bol == '*' ||
            q == bol)
            continue;
        char name[64];
        memcpy(name, q, k);
        name[k] = '\0';
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= !strcmp(names[i], name);
        if (!dup && n < max)
            snprintf(names[n++], 64, "%s", name);
    }
    free(h);
    return n;
}

static void test_install_link_uninstall(void **state)
{
    (void)state;
    char prefix[4300];
    snprintf(prefix, sizeof prefix, "%s/usr", tmp);
    char args[9000];
    snprintf(args, sizeof args, "install PREFIX='%s'", prefix);
    if (make(args) != 0) {
        char *log = slurp_in("make.log");
        fail_msg("make install failed:\n%s", log ? log : "?");
    }
    static const char *files[] = {"bin/lrp-oracle", "lib/liblrp.so.0.1.0", "lib/liblrp.so.0",
                                  "lib/liblrp.so", "lib/liblrp.a", "include/lrp.h",
                                  "lib/pkgconfig/lrp.pc", "share/man/man1/lrp-oracle.1",
                                  "share/bash-completion/completions/lrp-oracle",
                                  "share/lrp-oracle/golden/cnn.h5",
                                  "share/lrp-oracle/fixtures/cnn.h5"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (!exists("%s/%s", prefix, files[i]))
            fail_msg("not installed: %s", files[i]);
    /* every golden trace of the source tree is installed */
    assert_int_equal(tu_sh("cd '%s/fixtures/golden' && for f in *.h5; do cmp -s \"$f\" "
                        "'%s/share/lrp-oracle/golden/'\"$f\" || exit 1; done",
                        srcdir, prefix),
                     0);

    /* SONAME, and exactly the public functions exported */
    assert_int_equal(tu_sh("readelf -d '%s/lib/liblrp.so.0.1.0' | grep -q 'Library soname: "
                        "\\[liblrp.so.0\\]'",
                        prefix),
                     0);
    assert_int_equal(tu_sh("nm -D --defined-only '%s/lib/liblrp.so.0.1.0' | awk '$2 ~ /^[TDBRVWi]$/ "
                        "{print $3}' | sed 's/@.*//' | sort -u >'%s/exported.txt'",
                        prefix, tmp),
                     0);
    static char decl[256][64];
    int nd = header_functions(decl, 256);
    assert_true(nd > 40);
    char *ex = slurp_in("exported.txt");
    assert_non_null(ex);
    int nex = 0;
    for (char *line = strtok(ex, "\n"); line; line = strtok(NULL, "\n")) {
        nex++;
        int found = 0;
        for (int i = 0; i < nd && !found; i++)
            found = !strcmp(decl[i], line);
        if (!found)
            fail_msg("liblrp.so exports '%s', which include/lrp.h does not declare", line);
    }
    free(ex);
    if (nex != nd) {
        /* some declared function is not exported: name it */
        for (int i = 0; i < nd; i++)
            if (tu_sh("grep -qx '%s' '%s/exported.txt'", decl[i], tmp) != 0)
                fail_msg("include/lrp.h declares %s, which liblrp.so does not export", decl[i]);
    }

    /* the example program with pkg-config alone, against the shared library */
    assert_int_equal(tu_sh("PKG_CONFIG_PATH='%s/lib/pkgconfig' pkg-config --cflags --libs lrp "
                        ">'%s/pc.txt'",
                        prefix, tmp),
                     0);
    char *pc = slurp_in("pc.txt");
    assert_non_null(pc);
    char inc[4400];
    snprintf(inc, sizeof inc, "-I%s/include", prefix);
    assert_non_null(strstr(pc, inc));
    assert_non_null(strstr(pc, "-llrp"));
    free(pc);
    int rc = tu_sh("cd '%s' && cc -std=c11 -Wall -Wextra -Werror %s '%s/docs/example.c' -o example "
                "$(PKG_CONFIG_PATH='%s/lib/pkgconfig' pkg-config --cflags --libs lrp) "
                "-Wl,-rpath,'%s/lib' >cc.txt 2>&1",
                tmp, SANITIZED ? "-fsanitize=address,undefined" : "", srcdir, prefix, prefix);
    if (rc != 0) {
        char *m = slurp_in("cc.txt");
        fail_msg("docs/example.c does not build against the installed tree:\n%s", m ? m : "?");
    }
    assert_int_equal(tu_sh("readelf -d '%s/example' | grep -q 'NEEDED.*liblrp.so.0'", tmp), 0);
    /* fewer than 40 lines, as the issue asks */
    assert_int_equal(tu_sh("test $(wc -l <'%s/docs/example.c') -lt 40", srcdir), 0);
    rc = tu_sh("cd '%s' && ./example '%s/share/lrp-oracle/fixtures/cnn.h5' >ex.txt 2>&1", tmp, prefix);
    char *o = slurp_in("ex.txt");
    assert_non_null(o);
    if (rc != 0 || !strstr(o, "verdict: PASS"))
        fail_msg("the example program (exit %d):\n%s", rc, o);
    assert_non_null(strstr(o, "input relevance of sample 0, cell 0: "));
    free(o);
    /* a missing file is a clean error through the API (exit 2, no crash) */
    rc = tu_sh("cd '%s' && ./example /nonexistent.h5 >bad.txt 2>&1", tmp);
    assert_int_equal(rc, 2);

    /* the installed program finds its data outside the source tree */
    rc = tu_sh("cd '%s' && '%s/bin/lrp-oracle' golden >golden.txt 2>&1", tmp, prefix);
    char *g = slurp_in("golden.txt");
    assert_non_null(g);
    if (rc != 0 || !strstr(g, "0 not as committed"))
        fail_msg("installed 'golden' from %s (exit %d):\n%s", tmp, rc, g);
    free(g);
    rc = tu_sh("cd '%s' && '%s/bin/lrp-oracle' suite --only mlp --no-color >suite.txt 2>&1", tmp,
            prefix);
    assert_int_equal(rc, 0);
    assert_false(exists("%s/build", tmp)); /* nothing generated into the cwd */

    /* man page: every command of --help has an entry */
    assert_int_equal(tu_sh("'%s/bin/lrp-oracle' --help | sed -n 's/^  \\([a-z-]*\\) .*/\\1/p' "
                        ">'%s/cmds.txt'",
                        prefix, tmp),
                     0);
    char *cmds = slurp_in("cmds.txt");
    char mp[4400];
    snprintf(mp, sizeof mp, "%s/share/man/man1/lrp-oracle.1", prefix);
    char *man = tu_slurp(mp);
    assert_non_null(cmds);
    assert_non_null(man);
    int ncmd = 0;
    for (char *c = strtok(cmds, "\n"); c; c = strtok(NULL, "\n")) {
        char entry[128];
        snprintf(entry, sizeof entry, ".B %s", c);
        ncmd++;
        if (!strstr(man, entry))
            fail_msg("the man page has no entry for command '%s'", c);
    }
    assert_true(ncmd >= 10);
    free(cmds);
    free(man);
    /* bash completion: commands and option values complete */
    rc = tu_sh("bash -c \"source '%s/share/bash-completion/completions/lrp-oracle'; "
            "COMP_WORDS=(lrp-oracle hea); COMP_CWORD=1; _lrp_oracle; echo \\${COMPREPLY[@]}; "
            "COMP_WORDS=(lrp-oracle check --convention sign0); COMP_CWORD=3; _lrp_oracle; "
            "echo \\${COMPREPLY[@]}\" >'%s/comp.txt' 2>&1",
            prefix, tmp);
    assert_int_equal(rc, 0);
    char *comp = slurp_in("comp.txt");
    assert_non_null(comp);
    assert_non_null(strstr(comp, "heatmap"));
    assert_non_null(strstr(comp, "sign0_pos sign0_zero"));
    free(comp);

    /* uninstall removes every installed file */
    snprintf(args, sizeof args, "uninstall PREFIX='%s'", prefix);
    assert_int_equal(make(args), 0);
    assert_int_equal(tu_sh("test -z \"$(find '%s' -type f -o -type l)\"", prefix), 0);

    /* DESTDIR stages under DESTDIR, the .pc file names PREFIX alone */
    snprintf(args, sizeof args, "install PREFIX=/opt/lrp DESTDIR='%s/stage'", tmp);
    assert_int_equal(make(args), 0);
    assert_true(exists("%s/stage/opt/lrp/bin/lrp-oracle", tmp));
    char pcp[4400];
    snprintf(pcp, sizeof pcp, "%s/stage/opt/lrp/lib/pkgconfig/lrp.pc", tmp);
    char *pcf = tu_slurp(pcp);
    assert_non_null(pcf);
    assert_non_null(strstr(pcf, "prefix=/opt/lrp\n"));
    assert_null(strstr(pcf, "stage"));
    free(pcf);
    snprintf(args, sizeof args, "uninstall PREFIX=/opt/lrp DESTDIR='%s/stage'", tmp);
    assert_int_equal(make(args), 0);
    assert_int_equal(tu_sh("test -z \"$(find '%s/stage' -type f -o -type l)\"", tmp), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deps_tiers),
        cmocka_unit_test(test_install_link_uninstall),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
