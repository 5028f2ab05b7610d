/*
 * testutil.h -- helpers shared by the cmocka test binaries: scratch
 * directories, stderr capture, file bytes, bitwise float comparison.
 * Include as "util/testutil.h" from a test file, after <cmocka.h> (the
 * assertion helpers report via fail_msg).
 */
#ifndef LRP_TESTUTIL_H
#define LRP_TESTUTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct lrp_net;
/* The suite fixture `name` built with the suite's seed (fixtures/suite.c);
 * a test failure (fail_msg) when it is unknown or does not build. */
struct lrp_net *tu_fixture(const char *name);
struct lrp_builder;
/* A Reshape of layer `in` to (d0, d1, d2)'s first `rank` axes, added to
 * the builder's net by hand (the builder has none); its index, or a test
 * failure. */
/* A built token net that the layer split divides whole by rows of tokens
 * (tests/test_split.c, tests/test_check_split.c): token Input (7 ids),
 * Embedding, Position, LayerNorm, a gated MLP with a Mul, a residual Add,
 * Flatten, a Dense head; batch 2, EpsilonPlus. */
struct lrp_net *tu_build_tokens(void);
int tu_build_reshape(struct lrp_builder *b, const char *name, int in, int rank, int64_t d0,
                     int64_t d1, int64_t d2);
/* Inferring net's shapes ("f.h5") must fail with one line naming the file
 * and containing want (a cmocka failure otherwise). */
void tu_expect_infer_error(struct lrp_net *net, const char *want);
/* lrp_check of trace `source` of net (NULL: our fast path) with the default
 * options, labelled `label`, without the self-proof at p + 64 (p = 128 is
 * resolved on the suite's nets: test_oracle); a test failure when the
 * check cannot run.  Free the report with lrp_run_report_free. */
struct lrp_run_report tu_judge(const char *label, struct lrp_net *net, const char *source);
/* tu_judge with the denominator model chosen: recomputed_den 1 allows the
 * subject recomputed denominators (--recomputed-denominators), 0 the
 * default (it divides by the outputs its trace stores). */
struct lrp_run_report tu_judge_den(const char *label, struct lrp_net *net, const char *source,
                                   int recomputed_den);

/* Creates a fresh directory /tmp/lrp-<tag>-XXXXXX; returns a malloc'ed
 * path, or NULL (with a message on stderr) on failure. */
char *tu_mkdtemp(const char *tag);
/* Removes every entry of dir (one level, no recursion into subdirectories
 * except empty ones) and dir itself.  Returns 0 on success. */
int tu_rmtree(const char *dir);
/* dir + "/" + name into buf (n bytes); returns buf. */
char *tu_join(char *buf, size_t n, const char *dir, const char *name);
/* Number of entries of dir whose name contains `needle`. */
int tu_count_entries(const char *dir, const char *needle);

/* The directory `up` levels above this test binary (/proc/self/exe):
 * up = 2 gives BUILD for BUILD/tests/test_x, up = 3 its parent (normally
 * the source tree).  Returns 0, or -1 when the path cannot be read or has
 * fewer levels (buf then holds ""). */
int tu_exe_dir(char *buf, size_t n, int up);

/* Whole file into a malloc'ed buffer (*len bytes); NULL on failure. */
unsigned char *tu_read_file(const char *path, size_t *len);
int tu_write_file(const char *path, const void *data, size_t len);
/* 1 when both files exist and have identical bytes. */
int tu_files_equal(const char *a, const char *b);

/* system(cmd) of the formatted command; the exit code, or 128 + signal. */
int tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whole file as a NUL-terminated malloc'ed string; NULL on failure. */
char *tu_slurp(const char *path);
/* The CLI the tests run into buf: $LRP_TEST_CLI when set (to show a test
 * failing on an older build), else BUILD/lrp-oracle next to this test
 * binary.  Returns 0 when it is an executable file. */
int tu_cli_path(char *buf, size_t n);
/* Runs "cd DIR && PRE 'CLI' ARGS" through sh with stdin /dev/null, stdout
 * and stderr into DIR/.stdout and DIR/.stderr, copied into out / err (up
 * to on-1 / en-1 bytes, NUL-terminated; either may be NULL).  Returns the
 * exit code, or 128 + signal. */
int tu_run_cli(const char *dir, const char *pre, const char *cli, const char *args, char *out,
               size_t on, char *err, size_t en);

/* Redirects stderr (fd 2) into a temporary file until tu_stderr_end, which
 * restores it and returns the number of bytes written meanwhile (and copies
 * up to n-1 of them into buf when buf != NULL). */
typedef struct tu_capture {
    int saved_fd;
    int file_fd;
} tu_capture;
int tu_stderr_begin(tu_capture *c);
size_t tu_stderr_end(tu_capture *c, char *buf, size_t n);

/* Bitwise float comparison: +0 != -0, NaNs equal only with equal bits. */
int tu_f32_same(float a, float b);
/* Fails the current cmocka test, naming `what` and the first index whose
 * bits differ. */
void tu_assert_f32_bits(const float *a, const float *b, size_t n, const char *what);

/* Simulated ranks (threads) for the tests of the MPI splits without MPI:
 * the ranks' shared state of one exchange after another.  R ranks at most
 * TU_SIM_MAXR; rank fail_rank reports a failure at its call fail_at (0:
 * never); after_fail counts the exchanges a rank made after one failed (a
 * split's rule: none).  Initialise with tu_sim_init, end with
 * tu_sim_destroy. */
#define TU_SIM_MAXR 16
typedef struct tu_sim {
    int R;
    pthread_barrier_t bar;
    const void *buf[TU_SIM_MAXR];
    size_t n[TU_SIM_MAXR];
    int failed[TU_SIM_MAXR];
    int calls[TU_SIM_MAXR];
    int fail_rank, fail_at;
    int after_fail[TU_SIM_MAXR];
    int seen_fail[TU_SIM_MAXR];
} tu_sim;
void tu_sim_init(tu_sim *s, int R, int fail_rank, int fail_at);
void tu_sim_destroy(tu_sim *s);
/* Rank q's part of one collective exchange (every rank calls it the same
 * number of times): its n bytes at buf (fail non-NULL: it failed and sends
 * nothing), concatenated in rank order into *out (malloc'ed) on every rank
 * (every) or on rank 0 alone; 0, or -1 when some rank failed (then *out is
 * NULL everywhere). */
int tu_sim_exchange(tu_sim *s, int q, const void *buf, size_t n, const char *fail, void **out,
                    size_t *total, int every);

/* A flaky engine for the checks that the subject is deterministic: the
 * lin_bwd of our fast path (tu_flaky_real, set by the test), except that
 * every other run scales each Dense backward by 1 + 2^-8.  Runs are told
 * apart by counting the Dense steps (tu_flaky_dense a run: one lin_bwd a
 * Dense layer, as in the mlp fixture), per thread (tu_flaky_calls, reset
 * by the test), since the tests of the splits play ranks with threads.
 * check reads the subject's relevance from one run and its activations
 * from a second (oracle/check.c f32_activations): the two must agree. */
struct lrp_lin;
struct lrp_bwd_part;
typedef void (*tu_lin_bwd_fn)(void *ctx, void *out, const struct lrp_lin *L, const void *x,
                              const struct lrp_bwd_part *parts, int np, int64_t batch);
extern tu_lin_bwd_fn tu_flaky_real;
extern int tu_flaky_dense;
extern _Thread_local int tu_flaky_calls;
void tu_flaky_lin_bwd(void *ctx, void *out, const struct lrp_lin *L, const void *x,
                      const struct lrp_bwd_part *parts, int np, int64_t batch);
/* tu_flaky_dense from net's Dense layers (asserted > 0), tu_flaky_real =
 * real (may be NULL: set later) */
struct lrp_net;
void tu_flaky_arm(const struct lrp_net *net, tu_lin_bwd_fn real);

#endif
