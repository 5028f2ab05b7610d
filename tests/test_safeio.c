/*
 * test_safeio.c -- issue 15, "nothing lost, nothing silently ignored": the
 * CLI's outputs never destroy what the user has (stdout, FIFOs, symlinks,
 * modes, hard links, read-only files, inputs named as outputs, temporary
 * files, full disks, long names), and every option is applied or refused.
 *
 * Runs the `lrp-oracle` binary next to this test (BUILD/lrp-oracle), or the
 * one named by LRP_TEST_CLI (to show a test failing on an older build).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/testutil.h"

static char cli[4200];
static char dir[1024];   /* scratch directory, cwd of every run */
static char mlp[4200];   /* a fixture: dir/fx/mlp.h5 */
static char out[1 << 16], err[1 << 14];

/* Runs "cd DIR && [pre] CLI args" through sh; captures stdout/stderr. */
static int runx(const char *pre, const char *fmt, ...)
{
    char args[12000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return tu_run_cli(dir, pre, cli, args, out, sizeof out, err, sizeof err);
}
#define run(...) runx(NULL, __VA_ARGS__)

static char *P(const char *name)
{
    static char buf[8][1600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* exit 2 and one line on stderr containing every keyword given */
static void want_refused(int rc, const char *what, const char *kw1, const char *kw2)
{
    if (rc != 2)
        fail_msg("%s: exit %d, want 2; stderr: %s", what, rc, err);
    size_t len = strlen(err);
    if (!len || strchr(err, '\n') != err + len - 1)
        fail_msg("%s: stderr is not one line: '%s'", what, err);
    if (kw1 && !strstr(err, kw1))
        fail_msg("%s: message lacks '%s': %s", what, kw1, err);
    if (kw2 && !strstr(err, kw2))
        fail_msg("%s: message lacks '%s': %s", what, kw2, err);
}

static void write_str(const char *path, const char *s)
{
    assert_int_equal(tu_write_file(path, s, strlen(s)), 0);
}

static void want_content(const char *path, const char *s)
{
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    if (!b || n != strlen(s) || memcmp(b, s, n))
        fail_msg("%s: content changed (%zu bytes)", path, b ? n : 0);
    free(b);
}

static int is_json_report(const char *path)
{
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    int ok = b && n > 10 && strstr((char *)b, "\"runs\"") != NULL;
    free(b);
    return ok;
}

static int setup(void **state)
{
    (void)state;
    if (tu_cli_path(cli, sizeof cli) != 0) {
        fprintf(stderr, "test_safeio: %s not built\n", cli);
        return -1;
    }
    snprintf(dir, sizeof dir, "/tmp/lrp_safeio_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    if (run("gen --out fx mlp vgg") != 0) {
        fprintf(stderr, "test_safeio: gen failed: %s\n", err);
        return -1;
    }
    snprintf(mlp, sizeof mlp, "%s/fx/mlp.h5", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "umount '%s/full' 2>/dev/null; rm -rf '%s'", dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- A. outputs ---- */

/* `--json -` is stdout, not a file named "-"; so are /dev/fd/1 and
 * /dev/stdout (the latter, as root, replaced the /dev/stdout symlink). */
static void test_json_dash_is_stdout(void **state)
{
    (void)state;
    unlink(P("-"));
    int rc = run("check --no-color --json - fx/mlp.h5");
    assert_int_equal(rc, 0);
    assert_int_equal(access(P("-"), F_OK), -1);
    assert_non_null(strstr(out, "\"runs\""));
    rc = run("check --no-color --json /dev/fd/1 fx/mlp.h5");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\"runs\""));
    /* a fixture on stdout: the HDF5 bytes alone, the note on stderr */
    rc = run("fast fx/mlp.h5 --out -");
    assert_int_equal(rc, 0);
    assert_int_equal(access(P("-"), F_OK), -1);
    assert_memory_equal(out, "\x89HDF\r\n\x1a\n", 8);
    assert_non_null(strstr(err, "wrote trace"));
}

/* Runs the CLI with the FIFO "fifo" held open read-write by this process
 * (so the CLI's open never blocks), its buffer enlarged to 1 MiB; then
 * reads what the CLI wrote into it to dir/NAME.  Returns the exit code. */
static int fifo_run(const char *args, const char *name)
{
    int fd = open(P("fifo"), O_RDWR | O_NONBLOCK);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_SETPIPE_SZ, 1 << 20) >= (1 << 20));
    int rc = run("%s", args);
    static char buf[1 << 20];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    assert_int_equal(tu_write_file(P(name), buf, n > 0 ? (size_t)n : 0), 0);
    return rc;
}

/* A FIFO is written through (a reader gets the report), never replaced. */
static void test_json_fifo_written_through(void **state)
{
    (void)state;
    unlink(P("fifo"));
    assert_int_equal(mkfifo(P("fifo"), 0600), 0);
    int rc = fifo_run("check --no-color --json fifo fx/mlp.h5", "fifo.out");
    struct stat st;
    assert_int_equal(lstat(P("fifo"), &st), 0);
    if (!S_ISFIFO(st.st_mode))
        fail_msg("the FIFO was replaced by a regular file (exit %d)", rc);
    assert_int_equal(rc, 0);
    assert_true(is_json_report(P("fifo.out")));
    /* a fixture too (libhdf5 never opens the name: it would block on it) */
    rc = fifo_run("fast fx/mlp.h5 --out fifo", "fifo.h5");
    assert_int_equal(lstat(P("fifo"), &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(rc, 0);
    if (run("info fifo.h5") != 0)
        fail_msg("fifo.h5 as read from the FIFO: %s", err);
    assert_non_null(strstr(out, "trace 'fastpath'"));
}

/* A symlink stays a symlink; its target gets the report and keeps its mode. */
static void test_json_symlink_followed_mode_kept(void **state)
{
    (void)state;
    mkdir(P("real"), 0700);
    write_str(P("real/report.json"), "old\n");
    assert_int_equal(chmod(P("real/report.json"), 0600), 0);
    unlink(P("link.json"));
    assert_int_equal(symlink("real/report.json", P("link.json")), 0);
    int rc = run("check --no-color --json link.json fx/mlp.h5");
    assert_int_equal(rc, 0);
    struct stat st;
    assert_int_equal(lstat(P("link.json"), &st), 0);
    if (!S_ISLNK(st.st_mode))
        fail_msg("link.json is no longer a symlink");
    assert_true(is_json_report(P("real/report.json")));
    assert_int_equal(stat(P("real/report.json"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    /* no temporary file left beside the link or the target */
    assert_int_equal(tu_count_entries(dir, "tmp"), 0);
    assert_int_equal(tu_count_entries(P("real"), "tmp"), 0);
}

/* An existing file keeps its mode; a new one honours the umask. */
static void test_modes_kept_and_umask(void **state)
{
    (void)state;
    write_str(P("m.json"), "old\n");
    assert_int_equal(chmod(P("m.json"), 0640), 0);
    assert_int_equal(run("check --no-color --json m.json fx/mlp.h5"), 0);
    struct stat st;
    assert_int_equal(stat(P("m.json"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_true(is_json_report(P("m.json")));
    unlink(P("new.json"));
    assert_int_equal(runx("umask 022;", "check --no-color --json new.json fx/mlp.h5"), 0);
    assert_int_equal(stat(P("new.json"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    /* the fixture writer too */
    unlink(P("new.h5"));
    assert_int_equal(runx("umask 027;", "fast fx/mlp.h5 --out new.h5"), 0);
    assert_int_equal(stat(P("new.h5"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(runx("umask 022;", "fast fx/mlp.h5 --out new.h5"), 0);
    assert_int_equal(stat(P("new.h5"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
}

/* A read-only file is refused, never overwritten (even by root). */
static void test_readonly_refused(void **state)
{
    (void)state;
    write_str(P("ro.json"), "keep\n");
    assert_int_equal(chmod(P("ro.json"), 0444), 0);
    want_refused(run("check --no-color --json ro.json fx/mlp.h5"), "json over 0444", "ro.json",
                 "read-only");
    want_content(P("ro.json"), "keep\n");
    write_str(P("ro.h5"), "keep\n");
    assert_int_equal(chmod(P("ro.h5"), 0444), 0);
    want_refused(run("fast fx/mlp.h5 --out ro.h5"), "fixture over 0444", "ro.h5", "read-only");
    want_content(P("ro.h5"), "keep\n");
}

/* A file with two hard links is refused: a rename would split them. */
static void test_hardlink_refused(void **state)
{
    (void)state;
    write_str(P("hl1.json"), "keep\n");
    unlink(P("hl2.json"));
    assert_int_equal(link(P("hl1.json"), P("hl2.json")), 0);
    want_refused(run("check --no-color --json hl1.json fx/mlp.h5"), "json over a hard link",
                 "hl1.json", "hard link");
    want_content(P("hl1.json"), "keep\n");
    want_content(P("hl2.json"), "keep\n");
    struct stat st;
    assert_int_equal(stat(P("hl1.json"), &st), 0);
    assert_int_equal(st.st_nlink, 2);
}

static int have_keras_models(void)
{
    static int have = -1;
    if (have >= 0)
        return have;
    char self[4096], cmd[12000];
    have = 0;
    if (tu_exe_dir(self, sizeof self, 3) != 0 ||
        system("/usr/bin/python3 -c 'import h5py, numpy' >/dev/null 2>&1") != 0)
        return have;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/keras/make_keras_models.py' '%s/keras' "
             ">/dev/null 2>&1", self, dir);
    have = system(cmd) == 0 && access(P("keras/mlp.h5"), R_OK) == 0;
    return have;
}

/* An output that is an input under another name (./m.h5, a symlink, a
 * hard link) is refused: files are compared by device and inode. */
static void test_output_equal_to_input_refused(void **state)
{
    (void)state;
    size_t n0, n1;
    if (have_keras_models()) {
        unsigned char *b0 = tu_read_file(P("keras/mlp.h5"), &n0);
        want_refused(run("import-keras keras/mlp.h5 ./keras/mlp.h5"), "import-keras m ./m",
                     "keras/mlp.h5", NULL);
        unsigned char *b1 = tu_read_file(P("keras/mlp.h5"), &n1);
        assert_true(b0 && b1 && n0 == n1 && !memcmp(b0, b1, n0));
        free(b0);
        free(b1);
    } else {
        fprintf(stderr, "(import-keras case skipped: /usr/bin/python3 lacks h5py/numpy)\n");
    }
    unsigned char *f0 = tu_read_file(mlp, &n0);
    want_refused(run("fast fx/mlp.h5 --out ./fx/../fx/mlp.h5"), "fast --out = FILE", "mlp.h5",
                 NULL);
    unlink(P("alias.h5"));
    assert_int_equal(symlink("fx/mlp.h5", P("alias.h5")), 0);
    want_refused(run("reference --prec 64 fx/mlp.h5 --out alias.h5"), "reference --out symlink",
                 "alias.h5", NULL);
    want_refused(run("check --no-color --json ./fx/mlp.h5 fx/mlp.h5"), "check --json = FILE",
                 "mlp.h5", NULL);
    unsigned char *f1 = tu_read_file(mlp, &n1);
    assert_true(f0 && f1 && n0 == n1 && !memcmp(f0, f1, n0));
    free(f0);
    free(f1);
}

/* `reference FILE` / `fast FILE` without --out never rewrite FILE. */
static void test_no_in_place_rewrite(void **state)
{
    (void)state;
    size_t n0, n1;
    unsigned char *f0 = tu_read_file(mlp, &n0);
    want_refused(run("fast fx/mlp.h5"), "fast FILE", "--out", NULL);
    want_refused(run("reference fx/mlp.h5"), "reference FILE", "--out", NULL);
    unsigned char *f1 = tu_read_file(mlp, &n1);
    assert_true(f0 && f1 && n0 == n1 && !memcmp(f0, f1, n0));
    free(f0);
    free(f1);
    /* with --out: a copy with the trace, FILE untouched */
    assert_int_equal(run("fast fx/mlp.h5 --out copy.h5"), 0);
    assert_int_equal(run("info copy.h5"), 0);
    assert_non_null(strstr(out, "trace 'fastpath'"));
}

/* Temporary files are recognisable; those of a dead writer of the same
 * target are removed by the next write, a live writer's are kept. */
static void test_stale_temporaries_cleaned(void **state)
{
    (void)state;
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    assert_true(dead > 0);
    waitpid(dead, NULL, 0);
    char name[512];
    snprintf(name, sizeof name, ".st.h5.lrp-tmp.%ld.AbC123", (long)dead);
    write_str(P(name), "stale");
    snprintf(name, sizeof name, ".st.h5.lrp-tmp.%ld.XyZ789", (long)getpid());
    write_str(P(name), "live");
    write_str(P(".other.h5.lrp-tmp.1.AAAAAA"), "other target"); /* pid 1 lives */
    assert_int_equal(run("fast fx/mlp.h5 --out st.h5"), 0);
    snprintf(name, sizeof name, ".st.h5.lrp-tmp.%ld.", (long)dead);
    assert_int_equal(tu_count_entries(dir, name), 0);
    snprintf(name, sizeof name, ".st.h5.lrp-tmp.%ld.XyZ789", (long)getpid());
    assert_int_equal(access(P(name), F_OK), 0);
    assert_int_equal(access(P(".other.h5.lrp-tmp.1.AAAAAA"), F_OK), 0);
    unlink(P(name));
    unlink(P(".other.h5.lrp-tmp.1.AAAAAA"));
    /* a killed writer leaves one of these names, nothing else */
    assert_int_equal(tu_count_entries(dir, ".tmp."), 0);
}

/* A full disk (or a file size limit) is a one-line error and exit 2: no
 * crash in libhdf5's exit handler, no temporary file left. */
static void test_full_disk(void **state)
{
    (void)state;
    /* RLIMIT_FSIZE with SIGXFSZ ignored: write() fails with EFBIG */
    int rc = runx("trap '' XFSZ; ulimit -f 40;", "fast fx/vgg.h5 --out big.h5");
    want_refused(rc, "fast under ulimit -f 40", "big.h5", NULL);
    assert_int_equal(access(P("big.h5"), F_OK), -1);
    assert_int_equal(tu_count_entries(dir, "lrp-tmp"), 0);
    rc = runx("trap '' XFSZ; ulimit -f 40;", "reference --prec 64 fx/vgg.h5 --out big.h5");
    want_refused(rc, "reference under ulimit -f 40", "big.h5", NULL);
    /* a real full file system when we may mount one */
    mkdir(P("full"), 0700);
    if (geteuid() == 0 && mount("tmpfs", P("full"), "tmpfs", 0, "size=64k") == 0) {
        rc = run("fast fx/vgg.h5 --out full/o.h5");
        want_refused(rc, "fast on a full tmpfs", "full/o.h5", "No space left");
        assert_int_equal(tu_count_entries(P("full"), "lrp-tmp"), 0);
        assert_int_equal(access(P("full/o.h5"), F_OK), -1);
        umount(P("full"));
    } else {
        fprintf(stderr, "(tmpfs case skipped: not root or mount failed)\n");
    }
}

/* Output names up to NAME_MAX (255 bytes) can be written. */
static void test_long_output_name(void **state)
{
    (void)state;
    char name[300];
    memset(name, 'n', 252);
    memcpy(name + 252, ".h5", 4); /* 255 bytes */
    assert_int_equal(run("fast fx/mlp.h5 --out %s", name), 0);
    assert_int_equal(access(P(name), F_OK), 0);
    memcpy(name + 250, ".json", 6); /* 255 bytes */
    assert_int_equal(run("check --no-color --json %s fx/mlp.h5", name), 0);
    assert_true(is_json_report(P(name)));
    assert_int_equal(tu_count_entries(dir, "lrp-tmp"), 0);
}

/* ---- B. options ---- */

static void test_unused_rule_options_refused(void **state)
{
    (void)state;
    /* mlp's own assignment has no alpha-beta, gamma or z^B layer */
    want_refused(run("check --no-color --alpha 3 fx/mlp.h5"), "--alpha without alpha-beta",
                 "--alpha", NULL);
    want_refused(run("check --no-color --rule epsilon --beta 1 fx/mlp.h5"),
                 "--beta with epsilon", "--beta", NULL);
    want_refused(run("check --no-color --composite EpsilonAlpha2Beta1 --alpha 3 --beta 2 "
                     "fx/mlp.h5"),
                 "--alpha with a composite that fixes it", "--alpha", NULL);
    want_refused(run("check --no-color --rule epsilon --gamma 0.5 fx/mlp.h5"),
                 "--gamma with epsilon", "--gamma", NULL);
    want_refused(run("check --no-color --rule epsilon --box -1,1 fx/mlp.h5"),
                 "--box without zbox", "--box", NULL);
    want_refused(run("check --no-color --rule gamma --gamma nan fx/mlp.h5"), "--gamma nan",
                 "nan", NULL);
    want_refused(run("check --no-color --rule epsilon --eps inf fx/mlp.h5"), "--eps inf", "inf",
                 NULL);
    want_refused(run("check --no-color --composite EpsilonGammaBox --box nan,nan fx/mlp.h5"),
                 "--box nan,nan", "--box", NULL);
    want_refused(run("check --no-color --composite EpsilonGammaBox --box 1,-1 fx/mlp.h5"),
                 "--box 1,-1", "--box", NULL);
    want_refused(run("check --no-color --rule epsilon --flag gamma_generalized fx/mlp.h5"),
                 "a gamma flag with epsilon", "--flag", NULL);
    want_refused(run("check --no-color --rule epsilon --flag captum_a1b0 fx/mlp.h5"),
                 "an alpha-beta flag with epsilon", "--flag", NULL);
    want_refused(run("check --no-color --flag bn_fine fx/mlp.h5"), "--flag bn_fine", "--bn",
                 NULL);
    want_refused(run("check --no-color --bn fine fx/mlp.h5"), "--bn without BatchNorm", "--bn",
                 NULL);
    /* applied ones still work */
    assert_int_equal(run("check --no-color --rule alphabeta --alpha 3 --beta 2 fx/mlp.h5"), 0);
    assert_non_null(strstr(out, "alpha3beta2"));
    assert_int_equal(run("check --no-color --rule gamma --gamma 0.5 fx/mlp.h5"), 0);
    /* z^B goes to the first convolution (Zennit's EpsilonGammaBox): the
     * MLP has none, so the box is refused there and applied on vgg */
    want_refused(run("check --no-color --composite EpsilonGammaBox --box -2,2 fx/mlp.h5"),
                 "--box on a net without convolution", "--box", NULL);
    assert_int_equal(run("check --no-color --composite EpsilonGammaBox --box -2,2 fx/vgg.h5"), 0);
}

static void test_options_without_effect_refused(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"trace --profile zennit fx/mlp.h5", "--profile"},
        {"trace --json t.json fx/mlp.h5", "--json"},
        {"trace --junit t.xml fx/mlp.h5", "--junit"},
        {"trace --expect PASS fx/mlp.h5", "--expect"},
        {"fast --json t.json fx/mlp.h5 --out o.h5", "--json"},
        {"fast --profile zennit fx/mlp.h5 --out o.h5", "--profile"},
        {"fast --expect PASS fx/mlp.h5 --out o.h5", "--expect"},
        {"reference --junit t.xml fx/mlp.h5 --out o.h5", "--junit"},
        {"reference --source x fx/mlp.h5 --out o.h5", "--source"},
        {"check --out o.h5 fx/mlp.h5", "--out"},
        {"check --source x fx/mlp.h5", "--source"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        want_refused(run("%s", cases[i][0]), cases[i][0], cases[i][1], NULL);
    assert_int_equal(access(P("t.json"), F_OK), -1);
    assert_int_equal(access(P("t.xml"), F_OK), -1);
    /* compare: a trace that states its rules replaces the rule options;
     * a parameter without --rule/--composite was silently ignored */
    assert_int_equal(run("fast fx/mlp.h5 --out tr.h5"), 0);
    want_refused(run("compare --no-color --source fastpath --eps 0.1 tr.h5"), "compare --eps",
                 "--rule or --composite", NULL);
    want_refused(run("compare --no-color --source fastpath --convention signbit tr.h5"),
                 "compare --convention", "--rule or --composite", NULL);
    assert_int_equal(run("compare --no-color --source fastpath --rule epsilon --eps 0.1 tr.h5"), 1);
    assert_int_equal(run("compare --no-color --source fastpath tr.h5"), 0);
}

static void test_subnormal_eps(void **state)
{
    (void)state;
    assert_int_equal(run("check --no-color --rule epsilon --eps 0x1p-133 fx/mlp.h5"), 0);
    assert_int_equal(run("check --no-color --rule epsilon --eps 1e-40 fx/mlp.h5"), 0);
    /* below the smallest subnormal: not representable, refused */
    want_refused(run("check --no-color --rule epsilon --eps 1e-50 fx/mlp.h5"), "--eps 1e-50",
                 "1e-50", NULL);
    want_refused(run("check --no-color --rule epsilon --eps 1e39 fx/mlp.h5"), "--eps 1e39",
                 "1e39", NULL);
}

static void test_help_everywhere(void **state)
{
    (void)state;
    /* every command the top-level help lists (so a new command is covered
     * without editing this test), and the ones it must list */
    static const char *const must[] = {"info",  "gen",       "suite", "golden",       "check",
                                       "compare", "trace", "reference", "fast", "import-keras",
                                       "heatmap"};
    assert_int_equal(run("--help"), 0);
    char cmds[32][32];
    int nc = 0;
    const char *p = strstr(out, "\ncommands:\n");
    assert_non_null(p);
    for (p = strchr(p + 1, '\n') + 1; *p == ' ' && nc < 32;) {
        const char *q = p + strspn(p, " ");
        size_t w = strcspn(q, " \n");
        assert_true(w > 0 && w < sizeof cmds[0]);
        memcpy(cmds[nc], q, w);
        cmds[nc++][w] = '\0';
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
    }
    for (size_t m = 0; m < sizeof must / sizeof must[0]; m++) {
        int found = 0;
        for (int i = 0; i < nc; i++)
            found |= !strcmp(cmds[i], must[m]);
        if (!found)
            fail_msg("'lrp-oracle --help' does not list the command '%s'", must[m]);
    }
    for (int i = 0; i < nc; i++) {
        if (run("%s --help", cmds[i]) != 0 || !strstr(out, "usage: lrp-oracle"))
            fail_msg("'%s --help': no usage on stdout (stderr: %s)", cmds[i], err);
        if (run("%s -h", cmds[i]) != 0 || !strstr(out, "usage: lrp-oracle"))
            fail_msg("'%s -h': no usage on stdout (stderr: %s)", cmds[i], err);
        if (run("help %s", cmds[i]) != 0 || !strstr(out, "usage: lrp-oracle") ||
            !strstr(out, cmds[i]))
            fail_msg("'help %s': no usage of the command (stderr: %s)", cmds[i], err);
    }
    want_refused(run("help frobnicate"), "help of an unknown command", "frobnicate", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_dash_is_stdout),
        cmocka_unit_test(test_json_fifo_written_through),
        cmocka_unit_test(test_json_symlink_followed_mode_kept),
        cmocka_unit_test(test_modes_kept_and_umask),
        cmocka_unit_test(test_readonly_refused),
        cmocka_unit_test(test_hardlink_refused),
        cmocka_unit_test(test_output_equal_to_input_refused),
        cmocka_unit_test(test_no_in_place_rewrite),
        cmocka_unit_test(test_stale_temporaries_cleaned),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_long_output_name),
        cmocka_unit_test(test_unused_rule_options_refused),
        cmocka_unit_test(test_options_without_effect_refused),
        cmocka_unit_test(test_subnormal_eps),
        cmocka_unit_test(test_help_everywhere),
    };
    return cmocka_run_group_tests_name("safeio", tests, setup, teardown);
}
