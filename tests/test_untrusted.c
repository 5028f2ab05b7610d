/*
 * test_untrusted.c -- issue 15, what a file must not be trusted with:
 *
 *   - values nothing can be judged on (a NaN or infinite parameter, a
 *     BatchNorm variance < 0 or var + eps = 0): the network is refused with
 *     exit 2 and one line naming the file, the layer and the problem, so an
 *     arbitrary trace (12345 everywhere) gets no verdict at all;
 *   - sizes: a file of tens of KB declaring 3 x 8192^2 fill-value weights
 *     (the 477 KB Dense 16384^2 file of the issue was OOM-killed) is
 *     refused from an estimate before the work, quickly and within a small
 *     fraction of the memory the work would take; likewise an estimated
 *     CPU time above LRP_LIMIT_CPU;
 *   - names: terminal escape sequences in layer names and descriptions
 *     never reach the terminal; a NUL inside a fixed-length name is refused
 *     (it used to cut the name silently);
 *   - the sandboxed parse keeps its stderr under ASan (sanitizer reports of
 *     the child were sent to /dev/null).
 *
 * Files come from tests/untrusted/make_untrusted.py (Debian's Python with
 * h5py; the tests skip without it).  Runs BUILD/lrp-oracle or LRP_TEST_CLI.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/testutil.h"

/* the sandbox and the limits, compiled in to test the child's stderr */
#include "../tools/limits.c"
#include "../tools/sandbox.c"

static char cli[4200], script[4200];
static char dir[1024];
static char out[1 << 16], err[1 << 14];
static int have_py;

static int runx(const char *env, const char *fmt, ...)
{
    char args[8000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return tu_run_cli(dir, env, cli, args, out, sizeof out, err, sizeof err);
}
#define run(...) runx(NULL, __VA_ARGS__)

static int py(const char *args)
{
    char cmd[12000];
    snprintf(cmd, sizeof cmd, "cd '%s' && /usr/bin/python3 '%s' %s", dir, script, args);
    return system(cmd);
}

static void want_refused(int rc, const char *what, const char *kw1, const char *kw2)
{
    if (rc != 2)
        fail_msg("%s: exit %d, want 2; stdout: %.300s stderr: %s", what, rc, out, err);
    size_t len = strlen(err);
    if (!len || strchr(err, '\n') != err + len - 1)
        fail_msg("%s: stderr is not one line: '%s'", what, err);
    if (kw1 && !strstr(err, kw1))
        fail_msg("%s: message lacks '%s': %s", what, kw1, err);
    if (kw2 && !strstr(err, kw2))
        fail_msg("%s: message lacks '%s': %s", what, kw2, err);
}

static int setup(void **state)
{
    (void)state;
    char src[4096];
    if (tu_cli_path(cli, sizeof cli) != 0) {
        fprintf(stderr, "test_untrusted: %s not built\n", cli);
        return -1;
    }
    if (tu_exe_dir(src, sizeof src, 3) != 0)
        return -1;
    snprintf(script, sizeof script, "%s/tests/untrusted/make_untrusted.py", src);
    snprintf(dir, sizeof dir, "/tmp/lrp_untrusted_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    if (run("gen --out fx cnn mlp") != 0) {
        fprintf(stderr, "test_untrusted: gen failed: %s\n", err);
        return -1;
    }
    have_py = access(script, R_OK) == 0 &&
              system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") == 0;
    if (!have_py)
        fprintf(stderr, "test_untrusted: no /usr/bin/python3 with h5py; file tests skipped\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- values ---- */

static void test_unjudgeable_values_refused(void **state)
{
    (void)state;
    if (!have_py)
        skip();
    assert_int_equal(run("fast fx/cnn.h5 --out tr.h5"), 0);
    static const struct {
        const char *what, *kw1, *kw2;
    } cases[] = {
        {"nan", "'conv1'", "weight[5] is NaN"},
        {"inf", "'conv1'", "weight[5] is infinite"},
        {"varneg", "'bn1'", "var[1] = -0.5 is negative"},
        {"varzero", "'bn1'", "var[1] + eps = 0"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char a[200];
        snprintf(a, sizeof a, "damage tr.h5 d_%s.h5 %s", cases[k].what, cases[k].what);
        assert_int_equal(py(a), 0);
        int rc = run("compare --no-color d_%s.h5 --source fastpath", cases[k].what);
        want_refused(rc, cases[k].what, cases[k].kw1, cases[k].kw2);
        assert_non_null(strstr(err, "d_"));
        /* every command that reads the file refuses it the same way */
        want_refused(run("check --no-color d_%s.h5", cases[k].what), cases[k].what,
                     cases[k].kw1, cases[k].kw2);
    }
}

/* ---- sizes ---- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void test_huge_declared_tensors_refused(void **state)
{
    (void)state;
    if (!have_py)
        skip();
    assert_int_equal(py("fill fill.h5 8192"), 0);
    size_t n;
    char path[1200];
    unsigned char *b = tu_read_file(tu_join(path, sizeof path, dir, "fill.h5"), &n);
    assert_non_null(b);
    free(b);
    assert_true(n < 256 * 1024); /* tens of KB on disk ... */
    double t0 = now_s();
    /* the streamed oracle reads weights in place: the honest estimate of
     * this check is ~2.4 GiB, under the default 8 GiB, so the limit is set
     * below it here (the mechanism under test is the same) */
    int rc = runx("LRP_SANDBOX_MEM_MB=2048", "check --no-color fill.h5");
    double dt = now_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    /* ... 201M parameters: refused from the estimate, before the work */
    want_refused(rc, "fill-value Dense 8192^2 x 3", "LRP_SANDBOX_MEM_MB", "fill.h5");
    assert_non_null(strstr(err, "not started"));
    /* the parse (in the sandboxed child) holds the 0.8 GB of weights once;
     * 2 GiB leaves room for the allocator; the
     * time limit is generous for a loaded 2-core machine (measured 1.4 s) */
    printf("    refused in %.1f s, largest child RSS %ld MiB\n", dt, ru.ru_maxrss / 1024);
    assert_true(ru.ru_maxrss < 2L * 1024 * 1024);
    assert_true(dt < 60.0);
    /* the limit is overridable, and also a time estimate: a conv net whose
     * check is estimated at ~10 CPU seconds is refused under a 1 s limit,
     * named by its variable; within the default limits it runs */
    assert_int_equal(py("conv conv.h5 32"), 0);
    want_refused(runx("LRP_LIMIT_CPU=1", "check --no-color conv.h5"), "CPU estimate",
                 "LRP_LIMIT_CPU", "CPU time");
    assert_int_equal(runx("LRP_LIMIT_CPU=1", "fast conv.h5 --out conv_fast.h5"), 0);
    assert_int_equal(run("check --no-color fx/cnn.h5"), 0);
}

/* A limit too small for the file is the user's setting, not the file's
 * fault: every run refused for memory says so (out of memory, naming
 * LRP_SANDBOX_MEM_MB), never "corrupt", "truncated" or "not an HDF5 file";
 * a limit below what the parser needs to start is refused as such.  Before
 * this test, libhdf5 allocation failures inside a read were reported as a
 * corrupt file and a failed signature check as "no HDF5 signature". */
static void test_small_memory_limit_not_blamed_on_file(void **state)
{
    (void)state;
    if (!have_py)
        skip();
    if (LRP_UNDER_ASAN)
        skip(); /* the sandbox sets no address-space limit under ASan */
    /* an 84 MB Dense weight: the parse needs ~128 MiB */
    assert_int_equal(py("conv big.h5 256"), 0);
    int refused = 0;
    for (int mb = 64; mb <= 160; mb += 8) {
        char env[64];
        snprintf(env, sizeof env, "LRP_SANDBOX_MEM_MB=%d", mb);
        int rc = runx(env, "info big.h5");
        if (rc == 0)
            continue;
        refused++;
        want_refused(rc, env, "out of memory", "LRP_SANDBOX_MEM_MB");
        if (strstr(err, "corrupt") || strstr(err, "truncated") || strstr(err, "HDF5 file") ||
            strstr(err, "signature"))
            fail_msg("%s: a memory limit blamed on the file: %s", env, err);
    }
    assert_true(refused > 0); /* 64 MiB cannot hold the 84 MB weight */
    want_refused(runx("LRP_SANDBOX_MEM_MB=16", "info big.h5"), "16 MiB", "LRP_SANDBOX_MEM_MB=16",
                 "needs to start");
    assert_int_equal(run("info big.h5"), 0);
}

/* ---- names ---- */

static void no_escape_bytes(const char *what, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == 0x1b || *p == 0x07 || *p == 0x9b || (p[0] == 0xc2 && p[1] == 0x9b))
            fail_msg("%s: a raw control byte 0x%02x reached the terminal at offset %td", what,
                     *p, (const char *)p - s);
}

static void test_terminal_escapes_escaped(void **state)
{
    (void)state;
    if (!have_py)
        skip();
    assert_int_equal(py("escname fx/cnn.h5 esc.h5"), 0);
    assert_int_equal(run("info esc.h5"), 0);
    no_escape_bytes("info stdout", out);
    no_escape_bytes("info stderr", err);
    assert_non_null(strstr(out, "\\x1b[2J"));   /* shown, escaped */
    assert_non_null(strstr(out, "desc \\x1b[31mred"));
    assert_non_null(strstr(out, "\\u009b"));
    assert_int_equal(run("check --no-color --verbose esc.h5"), 0);
    no_escape_bytes("check stdout", out);
    assert_non_null(strstr(out, "L\\x1b[2J"));
    /* in an error message too (a rule option no layer takes) */
    assert_int_equal(run("fast esc.h5 --out esc_t.h5"), 0);
    assert_int_equal(py("damage esc_t.h5 esc_d.h5 nan"), 0);
    assert_int_equal(run("info esc_d.h5"), 2);
    no_escape_bytes("error message", err);
}

static void test_nul_in_name_refused(void **state)
{
    (void)state;
    if (!have_py)
        skip();
    assert_int_equal(py("nulname fx/cnn.h5 nul.h5"), 0);
    want_refused(run("info nul.h5"), "NUL inside a fixed-length name", "attribute 'name'",
                 "NUL");
}

/* ---- the sandboxed child's stderr ---- */

static lrp_status child_talks(void *ctx, lrp_err *e)
{
    (void)ctx;
    fprintf(stderr, "child-stderr-marker\n");
    fflush(stderr);
    return lrp_err_set(e, LRP_E_FORMAT, "x.h5: the child's error");
}

static void test_sandbox_child_stderr(void **state)
{
    (void)state;
    unsetenv("LRP_NO_SANDBOX");
    tu_capture c;
    char buf[4096];
    assert_int_equal(tu_stderr_begin(&c), 0);
    lrp_err e = {0};
    lrp_status st = cli_sandboxed("x.h5", child_talks, NULL, &e);
    tu_stderr_end(&c, buf, sizeof buf);
    assert_int_equal(st, LRP_E_FORMAT);
    assert_string_equal(e.msg, "x.h5: the child's error");
    /* under ASan a sanitizer report of the child must be seen; otherwise
     * the one-line contract holds: nothing from the child */
    if (LRP_UNDER_ASAN)
        assert_non_null(strstr(buf, "child-stderr-marker"));
    else
        assert_null(strstr(buf, "child-stderr-marker"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unjudgeable_values_refused),
        cmocka_unit_test(test_huge_declared_tensors_refused),
        cmocka_unit_test(test_small_memory_limit_not_blamed_on_file),
        cmocka_unit_test(test_terminal_escapes_escaped),
        cmocka_unit_test(test_nul_in_name_refused),
        cmocka_unit_test(test_sandbox_child_stderr),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
