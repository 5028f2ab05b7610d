/*
 * test_python.c -- runs the Python test files under tests/python/ with
 * cmocka, so `make check` counts them.  Each test runs one file with
 * Debian's /usr/bin/python3 (the python3 first on PATH may be a build that
 * cannot see Debian's python3-torch / python3-h5py) and the build directory
 * as its argument; exit status 0 is a pass.  The build directory is two
 * levels above this binary (BUILD/tests/test_python); the source tree is
 * found from the current directory or from BUILD's parent.
 *
 * torch is in the "full" dependency tier (scripts/deps.sh): without it the
 * adapter tests are skipped with a line saying so, and scripts/check.sh
 * counts them as skipped, never as passed.  With LRP_REQUIRE_FULL=1 (`make
 * check FULL=1`, CI) a missing torch / h5py / numpy is a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/testutil.h"

#define PYTHON "/usr/bin/python3"

static char build[4096];
static char srcdir[4096];

static int exists(const char *dir, const char *rel)
{
    char p[8300];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    return access(p, R_OK) == 0;
}

static int setup(void **state)
{
    (void)state;
    char self[4096];
    if (tu_exe_dir(self, sizeof self, 2) != 0) /* BUILD */
        return -1;
    snprintf(build, sizeof build, "%s", self);
    /* The sources: the current directory (make check runs from the top),
     * else BUILD's parent (BUILD is normally a subdirectory of the tree). */
    const char *probe = "tests/python/test_torch_adapter.py";
    if (getcwd(srcdir, sizeof srcdir) && exists(srcdir, probe))
        return 0;
    char *slash = strrchr(self, '/');
    if (slash) {
        *slash = '\0';
        snprintf(srcdir, sizeof srcdir, "%s", self);
        if (exists(srcdir, probe))
            return 0;
    }
    fprintf(stderr, "test_python: cannot find %s (run from the source tree)\n", probe);
    return -1;
}

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static int require_full(void)
{
    const char *v = getenv("LRP_REQUIRE_FULL");
    return v && !strcmp(v, "1");
}

/* Skips the calling test when torch is absent and the full tier is not
 * required (test_python_modules_present then names what is missing). */
static void need_torch(void)
{
    if (require_full())
        return;
    if (access(PYTHON, X_OK) != 0 ||
        run(PYTHON " -c 'import numpy, h5py, torch' >/dev/null 2>&1") != 0) {
        print_message("SKIPPED: %s cannot import torch (full tier: make check FULL=1 or "
                      "sh scripts/deps.sh full installs python3-torch)\n", PYTHON);
        skip();
    }
}

static void test_python_modules_present(void **state)
{
    (void)state;
    need_torch();
    if (access(PYTHON, X_OK) != 0) {
        print_error("%s not found: install python3 (scripts/deps.sh)\n", PYTHON);
        fail();
    }
    int rc = run(PYTHON " -c 'import numpy, h5py, torch' >/dev/null 2>&1");
    if (rc != 0) {
        print_error("%s cannot import numpy, h5py and torch: install the Debian packages "
                    "python3-numpy python3-h5py python3-torch (scripts/deps.sh does); "
                    "the python3 first on PATH may be a different build that does not see "
                    "them\n",
                    PYTHON);
        fail();
    }
}

static void run_file(const char *rel)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s/%s' '%s' 2>&1", srcdir, PYTHON, srcdir, rel, build);
    int rc = run(cmd);
    if (rc != 0) {
        print_error("%s exited with %d (command: %s)\n", rel, rc, cmd);
        fail();
    }
}

static void test_torch_adapter(void **state)
{
    (void)state;
    need_torch();
    run_file("tests/python/test_torch_adapter.py");
}

/* the real peers' capture conventions on plain-torch stand-ins (issue 13) */
static void test_peer_capture(void **state)
{
    (void)state;
    need_torch(); /* it imports torch: without the full tier it is skipped, not failed */
    run_file("tests/python/test_peer_capture.py");
}

/* the transformer rules (docs/TRANSFORMERS.md): AttnLRP and CP-LRP by
 * autograd as LXT computes them against an explicit float64 implementation,
 * conservation and absorbed shares, -inf masks, zero-variance rows (issue 17) */
static void test_attn_rules(void **state)
{
    (void)state;
    need_torch();
    run_file("tests/python/test_attn.py");
}

/* docs/VALIDATING.md's walkthrough, run as written: export, LRP, trace,
 * compare (exit 0). */
static void test_validating_example(void **state)
{
    (void)state;
    need_torch();
    char cmd[16384], dir[64];
    snprintf(dir, sizeof dir, "/tmp/lrp_validate_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "cd '%s' && %s tools/python/example_validate.py '%s/lrp-oracle' '%s' >'%s/out.txt' 2>&1",
             srcdir, PYTHON, build, dir, dir);
    int st = system(cmd);
    static char out[1 << 18]; /* the whole output: warnings may precede the table */
    out[0] = '\0';
    char p[256];
    snprintf(p, sizeof p, "%s/out.txt", dir);
    FILE *f = fopen(p, "r");
    if (f) {
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = '\0';
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        print_error("could not remove %s\n", dir);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("example_validate.py failed:\n%s", out);
    /* within the tolerance table: PASS, or ILL-CONDITIONED cells where the
     * input makes a denominator undeterminable in float32 (exit 0 both) */
    assert_true(strstr(out, "verdict: PASS") || strstr(out, "verdict: ILL-CONDITIONED"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_modules_present),
        cmocka_unit_test(test_torch_adapter),
        cmocka_unit_test(test_peer_capture),
        cmocka_unit_test(test_attn_rules),
        cmocka_unit_test(test_validating_example),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
