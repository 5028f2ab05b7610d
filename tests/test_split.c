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
 * Nets: suite fixtures of the kinds the split divides (BatchNorm, Add,
 * strides, pools, Flatten, Dense, depthwise Conv2D; fewer channels than
 * ranks, so some ranks hold empty blocks; token sequences divided by rows
 * of tokens: tokmlp, ln_eps0, ln_constrow) and of the kinds it runs whole
 * on every rank (the whole-layer fallback: Concatenate in densenet,
 * zennit_bncat, captum_cat; the attention kinds, SelectToken, ToTokens,
 * Softmax), plus nets built here with grouped Conv2D, Reshape, a
 * Dense on a token sequence and an Add of inputs split differently, and BatchNorm canonized into
 * its conv (divided with it), R = 1, 2, 3, 5, 9; then an exchange that
 * reports a failure in the middle of the run, also in a whole layer's
 * exchanges (every rank must return an error, none may wait for another).
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

#include "fixtures.h"
#include "graph_int.h"
#include "kinds.h"
#include "pipeline.h"
#include "reference.h"
#include "util/testutil.h"

#define MAXR 9

typedef tu_sim sim; /* the ranks' shared exchange (tests/util) */

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

/* the layer step a rank's thread is in (the progress hook): the
 * exchanges of rank 0 are recorded by step while rec is set */
#define MAXCALLS 4096
static _Thread_local int cur_li = -1, cur_bwd;
static int rec, rec_li[MAXCALLS], rec_bwd[MAXCALLS];

static void on_progress(void *ctx, const lrp_net *net, int li, int bwd)
{
    (void)ctx;
    (void)net;
    cur_li = li;
    cur_bwd = bwd;
}

static int sim_exchange(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                        size_t *total)
{
    rank_job *j = ctx;
    sim *s = j->s;
    int q = j->q;
    if (rec && q == 0 && s->calls[0] < MAXCALLS) {
        rec_li[s->calls[0]] = cur_li;
        rec_bwd[s->calls[0]] = cur_bwd;
    }
    return tu_sim_exchange(s, q, buf, n, fail, all, total, 1);
}

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    lrp_pipe_split sp = {j->q, j->s->R, sim_exchange, j};
    j->st = lrp_pipe_run_split(&j->p, &j->be, j->net, LRP_PIPE_RELEVANCE, &sp, &j->err);
    /* MPFR's caches of this thread (the constants exp and log keep for the
     * token and attention kinds): a thread that ends keeps them else */
    mpfr_free_cache2(MPFR_FREE_LOCAL_CACHE);
    return NULL;
}

/* runs net over R simulated ranks into jobs[0..R) */
static void run_ranks(rank_job *jobs, sim *s, const lrp_net *net, int R, int fail_rank,
                      int fail_at)
{
    tu_sim_init(s, R, fail_rank, fail_at);
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
    tu_sim_destroy(s);
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

/* every rank's block of every layer against one process, R = 1, 2, 3,
 * 5, 9 (9: more ranks than the depthwise layers' 8 channels, than an
 * attention's tokens, than a Concatenate's inputs' channels) */
static void split_equals(const char *fx, const lrp_net *net)
{
    const int Rs[] = {1, 2, 3, 5, 9};
    lrp_err e = {0};
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
                fail_msg("%s R=%d rank %d: %s", fx, R, q, jobs[q].err.msg);
            /* the same exchanges on every rank, in the same order */
            assert_int_equal(s.calls[q], s.calls[0]);
            for (int li = 0; li < net->n_layers; li++) {
                same_block(fx, R, q, li, "activations", &be, one->L[li].act, &jobs[q].be,
                           jobs[q].p->L[li].act, net);
                same_block(fx, R, q, li, "relevance", &be, one->L[li].rel, &jobs[q].be,
                           jobs[q].p->L[li].rel, net);
            }
            lrp_pipe_free(jobs[q].p);
        }
    }
    lrp_pipe_free(one);
}

/* the number of layers run whole under R ranks */
static int n_whole(const lrp_net *net, int R)
{
    int n = 0;
    for (int li = 0; li < net->n_layers; li++)
        n += lrp_pipe_split_is_whole(net, li, R);
    return n;
}

static void split_equals_one_process(void **state)
{
    (void)state;
    /* tokmlp, ln_eps0, ln_constrow: token sequences divided by rows of
     * tokens (Dense, LayerNorm, RMSNorm, GELU, SiLU, Tanh; ln_eps0's 0/0
     * rows), fewer tokens than ranks at R = 5, 9 */
    const char *fxs[] = {"resnet",       "vgg16s",    "mlp", "negzero", "zero_input",
                         "huge_fanin",   "bnzero",    "resnet_gamma", "mobilenet",
                         "cnn",          "tokmlp",    "ln_eps0",      "ln_constrow"};
    for (size_t f = 0; f < sizeof fxs / sizeof fxs[0]; f++) {
        lrp_net *net = tu_fixture(fxs[f]);
        /* every layer divided: nothing falls back */
        assert_int_equal(n_whole(net, 2), 0);
        split_equals(fxs[f], net);
        lrp_net_free(net);
    }
}

/* the whole-layer fallback: fixtures with Concatenate (densenet: a dense
 * block; zennit_bncat: a conv read by a BatchNorm and a Concatenate;
 * captum_cat: by a conv and a Concatenate) and the token and attention
 * kinds, bit for bit as one process */
static void whole_fixtures_equal_one_process(void **state)
{
    (void)state;
    const char *fxs[] = {"densenet",    "zennit_bncat", "captum_cat", "attn1",
                         "attn_padded", "embed1",       "gate1",      "decoder1",
                         "vit_stack",   "bert_tiny",    "vit_tiny"};
    for (size_t f = 0; f < sizeof fxs / sizeof fxs[0]; f++) {
        lrp_net *net = tu_fixture(fxs[f]);
        if (n_whole(net, 2) == 0) /* else the test proves nothing */
            fail_msg("%s: no layer runs whole", fxs[f]);
        split_equals(fxs[f], net);
        lrp_net_free(net);
    }
}

/* grouped Conv2D (2 and 4 groups, several filters a group), Reshape to
 * (C, H, W), to a token sequence read by a Dense (divided by its rows of
 * tokens, on the Reshape's block) and to a flat
 * vector; a Concatenate of a conv and a Reshape of the input; an Add of a
 * Dense (its own split of 6 features) and a Flatten of 3 channels (blocks
 * of 2 cells): under 2 ranks split differently, so run whole (under 3
 * alike).  Batch 2, EpsilonPlus or EpsilonAlpha2Beta1 (two parts). */
static lrp_net *build_mixed(int rule_ab)
{
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    lrp_err e = {0};
    lrp_builder b;
    lrp_build_begin(&b, net, 0x5eedu, &e);
    int x = lrp_build_input(&b, "input", 3, 4, 6, 6);
    int g = lrp_build_conv(&b, "gconv1", x, 8, 3, 1, 1, 2, 1);
    g = lrp_build_bn(&b, "gbn1", g);
    g = lrp_build_relu(&b, "grelu1", g);
    g = lrp_build_conv(&b, "gconv2", g, 8, 3, 1, 1, 4, 0);
    g = lrp_build_relu(&b, "grelu2", g);
    int rs = tu_build_reshape(&b, "reshape1", g, 3, 16, 3, 6);
    int c = lrp_build_conv(&b, "conv3", rs, 4, 3, 1, 1, 1, 1);
    c = lrp_build_relu(&b, "relu3", c);
    int r2 = tu_build_reshape(&b, "reshape2", x, 3, 8, 3, 6);
    int ins[2] = {c, r2};
    int cat = lrp_build_concat(&b, "cat", 2, ins);
    int t = tu_build_reshape(&b, "to_tokens", cat, 2, 6, 36, 0);
    t = lrp_build_dense(&b, "tok_dense", t, 8, 1);
    t = lrp_build_relu(&b, "tok_relu", t);
    t = tu_build_reshape(&b, "to_flat", t, 1, 48, 0, 0);
    int d = lrp_build_dense(&b, "fc1", t, 6, 1);
    int p = lrp_build_conv(&b, "pconv", cat, 3, 3, 3, 0, 1, 1); /* (3, 1, 2) */
    p = lrp_build_flatten(&b, "pflat", p);
    int ad[2] = {d, p};
    int a = lrp_build_add(&b, "add", 2, ad);
    a = lrp_build_relu(&b, "relu4", a);
    lrp_build_dense(&b, "fc2", a, 10, 1);
    if (lrp_build_finish(&b, 2))
        fail_msg("build: %s", e.msg);
    lrp_composite_params cp = lrp_composite_params_default();
    lrp_composite_apply(
        net, rule_ab ? LRP_COMPOSITE_EPSILON_ALPHA2_BETA1 : LRP_COMPOSITE_EPSILON_PLUS, &cp);
    return net;
}

static void whole_built_equal_one_process(void **state)
{
    (void)state;
    for (int ab = 0; ab < 2; ab++) {
        lrp_net *net = build_mixed(ab);
        const char *whole[] = {"gconv1", "gconv2",    "reshape1", "reshape2",
                               "cat",    "to_tokens", "to_flat",  "add"};
        for (size_t k = 0; k < sizeof whole / sizeof whole[0]; k++) {
            int li = lrp_net_find(net, whole[k]);
            assert_true(li >= 0);
            if (!lrp_pipe_split_is_whole(net, li, 2))
                fail_msg("layer '%s' does not run whole", whole[k]);
        }
        assert_int_equal(n_whole(net, 2), (int)(sizeof whole / sizeof whole[0]));
        split_equals(ab ? "mixed (alpha-beta)" : "mixed", net);
        lrp_net_free(net);
    }
}

static void tokens_built_equal_one_process(void **state)
{
    (void)state;
    lrp_net *net = tu_build_tokens();
    assert_int_equal(n_whole(net, 2), 0);
    assert_int_equal(n_whole(net, 3), 0);
    split_equals("tokens (built)", net);
    lrp_net_free(net);
}

/* BatchNorm canonized into the conv before it (--bn canonize): the pair
 * is divided like any conv and BatchNorm (a depthwise one in mobilenet, a
 * strided projection in resnet); the conv's backward reads every output
 * channel's BatchNorm factor.  With sel 1 the folded layers take the
 * generalized gamma rule with Zennit's drop of z = 0, whose parts select
 * units on the folded layer's real output (its forward run again on the
 * whole input under the split). */
static void canonized_bn_equal_one_process(void **state)
{
    (void)state;
    const char *fxs[] = {"cnn", "resnet", "mobilenet"};
    for (int sel = 0; sel < 2; sel++)
        for (size_t f = 0; f < sizeof fxs / sizeof fxs[0]; f++) {
            lrp_net *net = tu_fixture(fxs[f]);
            int nbn = 0;
            for (int li = 0; li < net->n_layers; li++)
                if (net->layers[li].kind == LRP_LAYER_BATCHNORM) {
                    net->layers[li].rule.flags |= LRP_F_BN_CANONIZE;
                    nbn++;
                    if (sel) {
                        lrp_rule_spec g = lrp_rule_default(LRP_RULE_GAMMA);
                        g.flags |= LRP_F_GAMMA_GENERALIZED | LRP_F_ZENNIT_GAMMA_DROP0;
                        net->layers[net->layers[li].in[0]].rule = g;
                    }
                }
            assert_true(nbn > 0); /* else the test proves nothing */
            assert_int_equal(n_whole(net, 2), 0);
            char name[64];
            snprintf(name, sizeof name, "%s --bn canonize%s", fxs[f], sel ? " (gamma, drop0)" : "");
            split_equals(name, net);
            lrp_net_free(net);
        }
}

/* token sequences divided by rows under every rule their kinds take:
 * tokmlp with LayerNorm's ln_fine (the mean's share absorbed) and
 * identity, the activations' identity with eps > 0 (LXT's implicit one,
 * its stabilizer's share absorbed), the Dense layers' zplus, alpha-beta,
 * gamma and zB (the rule's bounds: per-input arrays on a token input are
 * refused when a file is read), stabilizer conventions that keep zero denominators
 * (sign0_zero, zero_only) */
static void token_rules_equal_one_process(void **state)
{
    (void)state;
    for (int v = 0; v < 3; v++) {
        lrp_net *net = tu_fixture("tokmlp");
        int n = 0;
        for (int li = 0; li < net->n_layers; li++) {
            lrp_layer *l = &net->layers[li];
            if (l->kind == LRP_LAYER_LAYERNORM) {
                l->rule = lrp_rule_default(v == 1 ? LRP_RULE_IDENTITY : LRP_RULE_LN_FINE);
                l->rule.stab = v == 2 ? LRP_STAB_SIGN0_ZERO : l->rule.stab;
                n++;
            } else if (l->kind == LRP_LAYER_GELU || l->kind == LRP_LAYER_SILU ||
                       l->kind == LRP_LAYER_TANH) {
                l->rule.eps = v == 1 ? 0.0f : 1e-10f;
                l->rule.stab = v == 2 ? LRP_STAB_ZERO_ONLY : LRP_STAB_POSITIVE;
                n++;
            } else if (l->kind == LRP_LAYER_DENSE && net->layers[l->in[0]].shape.rank == 2) {
                const lrp_rule_id rs[3][3] = {{LRP_RULE_ZBOX, LRP_RULE_ZPLUS, LRP_RULE_ALPHABETA},
                                              {LRP_RULE_EPSILON, LRP_RULE_GAMMA, LRP_RULE_ZERO},
                                              {LRP_RULE_FLAT, LRP_RULE_WSQUARE, LRP_RULE_EPSILON}};
                l->rule = lrp_rule_default(rs[v][n % 3]);
                if (v == 2 && rs[v][n % 3] == LRP_RULE_EPSILON)
                    l->rule.stab = LRP_STAB_SIGN0_ZERO;
                n++;
            }
        }
        assert_int_equal(n, 7); /* ln, gelu, silu, tanh, proj, ff, fc (rms: identity only) */
        assert_int_equal(n_whole(net, 2), 0);
        char name[64];
        snprintf(name, sizeof name, "tokmlp (rules %d)", v);
        split_equals(name, net);
        lrp_net_free(net);
    }
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

/* a rank failing at an exchange of a layer run whole (its inputs' or its
 * relevance's gathering, forward and backward; each rank in turn): every
 * rank returns one error of one line, none makes another exchange */
static void failure_in_whole_layer(void **state)
{
    (void)state;
    const char *fxs[] = {"densenet", "mixed", "attn1"};
    for (size_t f = 0; f < sizeof fxs / sizeof fxs[0]; f++) {
        lrp_net *net = f == 1 ? build_mixed(0) : tu_fixture(fxs[f]);
        sim s;
        rank_job jobs[MAXR];
        /* which exchanges belong to a whole layer's step */
        lrp_pipe_set_progress(on_progress, NULL);
        rec = 1;
        run_ranks(jobs, &s, net, 3, -1, 0);
        rec = 0;
        lrp_pipe_set_progress(NULL, NULL);
        int total = s.calls[0];
        assert_true(total <= MAXCALLS);
        for (int q = 0; q < 3; q++)
            lrp_pipe_free(jobs[q].p);
        int tried[2] = {0, 0};
        for (int at = 1; at <= total; at++) {
            int li = rec_li[at - 1], bwd = rec_bwd[at - 1];
            if (li < 0 || !lrp_pipe_split_is_whole(net, li, 3))
                continue;
            if (tried[bwd]++ % 3) /* every third such exchange, forward and backward */
                continue;
            for (int fr = 0; fr < 3; fr++) {
                run_ranks(jobs, &s, net, 3, fr, at);
                for (int q = 0; q < 3; q++) {
                    if (jobs[q].st == LRP_OK)
                        fail_msg("%s: failure of rank %d at exchange %d (layer '%s', %s): rank "
                                 "%d returned success",
                                 fxs[f], fr, at, net->layers[li].name, bwd ? "backward" : "forward",
                                 q);
                    assert_null(jobs[q].p);
                    assert_true(jobs[q].err.msg[0] && !strchr(jobs[q].err.msg, '\n'));
                    assert_int_equal(s.after_fail[q], 0);
                    assert_int_equal(s.calls[q], at);
                }
            }
        }
        /* else the test proves nothing */
        if (!tried[0] || !tried[1])
            fail_msg("%s: no whole layer's exchange in the forward (%d) or backward (%d)",
                     fxs[f], tried[0], tried[1]);
        lrp_net_free(net);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_equals_one_process),
        cmocka_unit_test(whole_fixtures_equal_one_process),
        cmocka_unit_test(whole_built_equal_one_process),
        cmocka_unit_test(canonized_bn_equal_one_process),
        cmocka_unit_test(token_rules_equal_one_process),
        cmocka_unit_test(tokens_built_equal_one_process),
        cmocka_unit_test(failure_reaches_every_rank),
        cmocka_unit_test(failure_in_whole_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
