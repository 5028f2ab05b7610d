/*
 * test_split.c -- the layer split of a pipeline run (core/pipeline.h "The
 * layer split", core/pipe_split.c) without MPI: R threads play the ranks,
 * each running lrp_pipe_run_split on the same net, and their exchange is
 * an all-gather through shared memory between two barriers.
 *
 * Tolerance: bitwise.  Every rank's block of every layer's activations and
 * relevance (MPFR values, p = 128) must be the one-process run's values at
 * the same cells, sign of zero included: the split computes each value as
 * the one rounding of the same exact sum (it never adds partial sums).
 * Nets: suite fixtures of the kinds the split runs (BatchNorm, Add,
 * strides, pools, Flatten, Dense, depthwise Conv2D; fewer channels than
 * ranks, so some ranks hold empty blocks), R = 1, 2, 3, 5, 9; then a net
 * the split refuses, and an exchange that reports a failure in the middle
 * of the run (every rank must return an error, none may wait for another).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <mpfr.h>

#include "kinds.h"
#include "pipeline.h"
#include "reference.h"
#include "util/testutil.h"

#define MAXR 9

/* the ranks' shared exchange */
typedef struct sim {
    int R;
    pthread_barrier_t bar;
    const void *buf[MAXR];
    size_t n[MAXR];
    int failed[MAXR];
    int calls[MAXR];
    int fail_rank, fail_at; /* rank fail_rank reports a failure at its call
                               fail_at (0: never) */
    int after_fail[MAXR];   /* exchanges a rank made after one failed */
    int seen_fail[MAXR];
} sim;

typedef struct rank_job {
    sim *s;
    int q;
    const lrp_net *net;
    lrp_ref_ctx cx;
    lrp_backend be;
    lrp_pipe *p;
    lrp_status st;
    lrp_err err;
} rank_job;

static int sim_exchange(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                        size_t *total)
{
    rank_job *j = ctx;
    sim *s = j->s;
    int q = j->q;
    if (s->seen_fail[q])
        s->after_fail[q]++;
    int call = ++s->calls[q];
    s->failed[q] = fail != NULL || (q == s->fail_rank && call == s->fail_at);
    s->buf[q] = s->failed[q] ? NULL : buf;
    s->n[q] = s->failed[q] ? 0 : n;
    pthread_barrier_wait(&s->bar);
    int any = 0;
    size_t sum = 0;
    for (int r = 0; r < s->R; r++) {
        any |= s->failed[r];
        sum += s->n[r];
    }
    *all = NULL;
    *total = 0;
    if (!any) {
        unsigned char *d = malloc(sum ? sum : 1);
        assert_non_null(d);
        size_t at = 0;
        for (int r = 0; r < s->R; r++) {
            if (s->n[r])
                memcpy(d + at, s->buf[r], s->n[r]);
            at += s->n[r];
        }
        *all = d;
        *total = sum;
    }
    /* every rank has copied before any buffer is reused */
    pthread_barrier_wait(&s->bar);
    if (any)
        s->seen_fail[q] = 1;
    return any ? -1 : 0;
}

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    lrp_pipe_split sp = {j->q, j->s->R, sim_exchange, j};
    j->st = lrp_pipe_run_split(&j->p, &j->be, j->net, LRP_PIPE_RELEVANCE, &sp, &j->err);
    return NULL;
}

/* runs net over R simulated ranks into jobs[0..R) */
static void run_ranks(rank_job *jobs, sim *s, const lrp_net *net, int R, int fail_rank,
                      int fail_at)
{
    memset(s, 0, sizeof *s);
    s->R = R;
    s->fail_rank = fail_rank;
    s->fail_at = fail_at;
    assert_int_equal(pthread_barrier_init(&s->bar, NULL, (unsigned)R), 0);
    pthread_t th[MAXR];
    for (int q = 0; q < R; q++) {
        memset(&jobs[q], 0, sizeof jobs[q]);
        jobs[q].s = s;
        jobs[q].q = q;
        jobs[q].net = net;
        lrp_ref_ctx_init(&jobs[q].cx, 128, 1);
        lrp_ref_backend(&jobs[q].be, &jobs[q].cx);
        assert_int_equal(pthread_create(&th[q], NULL, rank_main, &jobs[q]), 0);
    }
    for (int q = 0; q < R; q++)
        pthread_join(th[q], NULL);
    pthread_barrier_destroy(&s->bar);
}

static int same_value(mpfr_srcptr a, mpfr_srcptr b)
{
    if (mpfr_nan_p(a) || mpfr_nan_p(b))
        return mpfr_nan_p(a) && mpfr_nan_p(b);
    return mpfr_equal_p(a, b) && mpfr_signbit(a) == mpfr_signbit(b);
}

/* rank q's block of tensor t (its layer li) against the whole one's */
static void same_block(const char *fx, int R, int q, int li, const char *what,
                       const lrp_backend *be1, const void *whole, const lrp_backend *beq,
                       const void *block, const lrp_net *net)
{
    const lrp_shape *sh = &net->layers[li].shape;
    int64_t n = lrp_shape_numel(sh), inner = n / sh->d[0], lo, hi;
    lrp_pipe_split_block(net, li, q, R, &lo, &hi);
    int64_t w = (hi - lo) * inner;
    if (w > 0 && (!whole || !block))
        fail_msg("%s R=%d rank %d layer '%s': %s missing", fx, R, q, net->layers[li].name, what);
    for (int64_t b = 0; b < net->batch; b++)
        for (int64_t k = 0; k < w; k++) {
            mpfr_srcptr x = be1->at(be1->ctx, whole, b * n + lo * inner + k);
            mpfr_srcptr y = beq->at(beq->ctx, block, b * w + k);
            if (!same_value(x, y))
                fail_msg("%s R=%d rank %d layer '%s' %s sample %lld cell %lld: %.17g vs %.17g",
                         fx, R, q, net->layers[li].name, what, (long long)b,
                         (long long)(lo * inner + k), mpfr_get_d(x, MPFR_RNDN),
                         mpfr_get_d(y, MPFR_RNDN));
        }
}

static void split_equals_one_process(void **state)
{
    (void)state;
    const char *fxs[] = {"resnet", "vgg16s", "mlp", "negzero", "zero_input", "huge_fanin",
                         "bnzero", "resnet_gamma", "mobilenet", "cnn"};
    /* 9: more ranks than the depthwise layers' 8 channels (empty blocks) */
    const int Rs[] = {1, 2, 3, 5, 9};
    for (size_t f = 0; f < sizeof fxs / sizeof fxs[0]; f++) {
        lrp_net *net = tu_fixture(fxs[f]);
        lrp_err e = {0};
        if (lrp_pipe_split_check(net, MAXR, &e))
            fail_msg("%s: refused by the split: %s", fxs[f], e.msg);
        lrp_ref_ctx cx;
        lrp_ref_ctx_init(&cx, 128, 1);
        lrp_backend be;
        lrp_ref_backend(&be, &cx);
        lrp_pipe *one = NULL;
        assert_int_equal(lrp_pipe_run_ex(&one, &be, net, LRP_PIPE_RELEVANCE, &e), LRP_OK);
        for (size_t k = 0; k < sizeof Rs / sizeof Rs[0]; k++) {
            int R = Rs[k];
            sim s;
            rank_job jobs[MAXR];
            run_ranks(jobs, &s, net, R, -1, 0);
            for (int q = 0; q < R; q++) {
                if (jobs[q].st)
                    fail_msg("%s R=%d rank %d: %s", fxs[f], R, q, jobs[q].err.msg);
                /* the same exchanges on every rank, in the same order */
                assert_int_equal(s.calls[q], s.calls[0]);
                for (int li = 0; li < net->n_layers; li++) {
                    same_block(fxs[f], R, q, li, "activations", &be, one->L[li].act,
                               &jobs[q].be, jobs[q].p->L[li].act, net);
                    same_block(fxs[f], R, q, li, "relevance", &be, one->L[li].rel,
                               &jobs[q].be, jobs[q].p->L[li].rel, net);
                }
                lrp_pipe_free(jobs[q].p);
            }
        }
        lrp_pipe_free(one);
        lrp_net_free(net);
    }
}

/* a kind the split does not run (Concatenate): refused, naming the layer */
static void refuses_concatenate(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("densenet");
    int cat = -1;
    for (int li = 0; li < net->n_layers && cat < 0; li++)
        if (net->layers[li].kind == LRP_LAYER_CONCAT)
            cat = li;
    assert_true(cat >= 0); /* the fixture has one (else the test proves nothing) */
    lrp_err e = {0};
    assert_int_equal(lrp_pipe_split_check(net, 2, &e), LRP_E_UNSUPPORTED);
    char want[128];
    snprintf(want, sizeof want, "layer '%s'", net->layers[cat].name);
    if (!strstr(e.msg, want))
        fail_msg("message does not name %s: %s", want, e.msg);
    lrp_net_free(net);
}

/* a rank failing at its k-th exchange (forward, start, backward): every
 * rank returns an error, and none makes an exchange after the failure */
static void failure_reaches_every_rank(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("resnet");
    sim s;
    rank_job jobs[MAXR];
    run_ranks(jobs, &s, net, 3, -1, 0);
    int total = s.calls[0];
    for (int q = 0; q < 3; q++)
        lrp_pipe_free(jobs[q].p);
    assert_true(total > 3);
    for (int at = 1; at <= total; at += (total + 4) / 5) {
        for (int fr = 0; fr < 3; fr++) {
            run_ranks(jobs, &s, net, 3, fr, at);
            for (int q = 0; q < 3; q++) {
                if (jobs[q].st == LRP_OK)
                    fail_msg("failure of rank %d at exchange %d: rank %d returned success", fr,
                             at, q);
                assert_null(jobs[q].p);
                assert_int_equal(s.after_fail[q], 0);
                assert_int_equal(s.calls[q], at);
            }
        }
    }
    lrp_net_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_equals_one_process),
        cmocka_unit_test(refuses_concatenate),
        cmocka_unit_test(failure_reaches_every_rank),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
