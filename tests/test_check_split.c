/*
 * test_check_split.c -- `check` and `compare` under the layer split
 * (oracle/check.h lrp_check_split.layer; docs/SCALING.md "The layer
 * split") without MPI: R threads play the ranks, each calling lrp_check on
 * its own copy of the net with the layer split, and their exchanges (the
 * hooks' gather to the root, the pipeline's all-gather) go through shared
 * memory between two barriers.
 *
 * Tolerance: bytes.  The root's report, as text (verbose) and as JSON,
 * must be the one-process report's, for R = 1, 2, 3, 5 (more ranks than
 * the input's 3 channels: empty blocks), on fixtures whose verdicts pass
 * and on ones that do not: a NaN origin (vgg_dead), ill-conditioned cells
 * (nearcancel), signed zeros (negzero), and damaged traces of the fast
 * path (the input relevance sign-flipped, one layer doubled, zeroed or
 * its cells reversed, a NaN injected; each must fail one process), nets
 * with layers run whole on every rank (Concatenate, Reshape: DenseNet-like;
 * with per-unit data, whose units the root takes whole from its own run:
 * grouped Conv2D, an Add split differently, the attention kinds,
 * Softmax, ToTokens, ClsToken, SelectToken; a
 * sign-flipped bert_tiny trace), and nets with every BatchNorm canonized
 * into its conv (divided with it; R = 2 and 3 only).  Under check the
 * subject (our fast path's run) reaches the root's end-to-end and
 * trace-local judgements from the ranks' blocks.  Then a rank failing at its k-th exchange,
 * rank 0 included: every rank returns an error with one line, and none
 * exchanges after it.  Last, a subject whose second run differs on one
 * rank (each rank keeps and compares only its block of the two runs):
 * that rank refuses it as not deterministic and every rank stops.  And a
 * wrong engine on every rank (negated, scaled): the root's FAIL is the one
 * process's, byte for byte.  Last, an engine that differs on one rank
 * only and is steady there: the ranks' hashes of their runs differ, and
 * it is refused under the layer split (every rank the same line) and the
 * sample split (the root's line; run_ranks plays it with case_samples).
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
#include <unistd.h>

#include <cmocka.h>

#include <mpfr.h>

#include "backend_f32.h"
#include "check.h"
#include "fixtures.h"
#include "report.h"
#include "util/testutil.h"

#define MAXR 5

typedef tu_sim sim; /* the ranks' shared exchange (tests/util) */

typedef struct rank_job {
    sim *s;
    int q;
    const char *fx, *source;
    const char *damage;
    lrp_net *net;
    lrp_check_split sp;
    const lrp_backend *subject; /* NULL: our fast path */
    lrp_run_report rep;
    lrp_status st;
    lrp_err err;
} rank_job;

/* one exchange: to the root (all 0) or to every rank (all 1) */
static int sim_x(rank_job *j, const void *buf, size_t n, const char *fail, void **out,
                 size_t *total, int every)
{
    return tu_sim_exchange(j->s, j->q, buf, n, fail, out, total, every);
}

static int sim_gather(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                      size_t *total)
{
    return sim_x(ctx, buf, n, fail, all, total, 0);
}

static int sim_allgather(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                         size_t *total)
{
    return sim_x(ctx, buf, n, fail, all, total, 1);
}

/* a copy of trace `from` named `to`, damaged as `how` says */
static void add_damaged(lrp_net *net, const char *from, const char *to, const char *how)
{
    lrp_err e = {0};
    int f = lrp_net_trace_find(net, from);
    assert_true(f >= 0);
    lrp_trace *t = lrp_net_trace_add(net, to, &e);
    assert_non_null(t);
    const lrp_trace *src = &net->traces[lrp_net_trace_find(net, from)]; /* after the add */
    int nl = net->n_layers;
    t->precision = src->precision;
    if (src->rules) /* the arrays are the add's */
        memcpy(t->rules, src->rules, (size_t)nl * sizeof *t->rules);
    for (int i = 0; i < nl; i++) {
        int64_t n = lrp_shape_numel(&net->layers[i].shape) * net->batch;
        for (int a = 0; a < 2; a++) {
            float *const *s = a ? src->activation : src->relevance;
            if (!s || !s[i])
                continue;
            float *d = malloc((size_t)n * sizeof *d);
            assert_non_null(d);
            memcpy(d, s[i], (size_t)n * sizeof *d);
            *(a ? &t->activation[i] : &t->relevance[i]) = d;
        }
    }
    float *r0 = t->relevance[0], *rm = t->relevance[nl / 2];
    int64_t n0 = lrp_shape_numel(&net->layers[0].shape) * net->batch;
    int64_t nm = lrp_shape_numel(&net->layers[nl / 2].shape) * net->batch;
    if (!strcmp(how, "flip"))
        for (int64_t k = 0; k < n0; k++)
            r0[k] = -r0[k];
    else if (!strcmp(how, "double"))
        for (int64_t k = 0; k < nm; k++)
            rm[k] *= 2.0f;
    else if (!strcmp(how, "nan"))
        rm[nm / 3] = NAN;
    else if (!strcmp(how, "zero")) /* one layer's relevance lost */
        memset(rm, 0, (size_t)nm * sizeof *rm);
    else if (!strcmp(how, "shuffle")) { /* each sample's cells reversed: every sum kept */
        int64_t n1 = nm / net->batch;
        for (int64_t b = 0; b < net->batch; b++)
            for (int64_t k = 0; k < n1 / 2; k++) {
                float tmp = rm[b * n1 + k];
                rm[b * n1 + k] = rm[b * n1 + n1 - 1 - k];
                rm[b * n1 + n1 - 1 - k] = tmp;
            }
    } else
        fail_msg("add_damaged: no damage '%s'", how);
}

/* nets built here ("built:NAME"), each with layers the split runs whole
 * among divided ones (under 2, 3 and 5 ranks): reshape_cat, Reshapes to
 * (C, H, W) and to a flat vector and a Concatenate of a conv and a
 * Reshape of the input (all taken by check / compare); grouped (2 groups,
 * EpsilonPlus or alpha-beta) and add_mixed (an Add of a Dense's 12
 * features and a Flatten of 3 channels, blocks of 4 cells: split
 * differently), run whole with their per-unit data, which the root takes
 * from its own run */
/* Input (T tokens of 8 features) -> an attention of 2 heads (one
 * MultiHeadAttention, or as its stages: parts) -> Add with the input ->
 * Flatten -> Dense of `out` units; no rules applied yet */
static lrp_net *build_residual_attn(unsigned seed, int64_t T, int parts, float scale, int causal,
                                    float mask, int64_t out)
{
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    lrp_err e = {0};
    lrp_builder b;
    lrp_build_begin(&b, net, seed, &e);
    int x = lrp_build_input(&b, "input", 2, T, 8, 0);
    int a = parts ? lrp_build_attn_parts(&b, "attn", x, 2, scale, causal, mask, 1)
                  : lrp_build_mha(&b, "attn", x, 2, scale, causal, mask, 1);
    int ins[2] = {x, a};
    int r = lrp_build_add(&b, "residual", 2, ins);
    r = lrp_build_flatten(&b, "flat", r);
    lrp_build_dense(&b, "head", r, out, 1);
    if (lrp_build_finish(&b, 2))
        fail_msg("build: %s", e.msg);
    return net;
}

/* attn_dead: an attention (7 tokens of 8 features, 2 heads) divided by
 * rows of queries, with dead units in two of its stages: output features
 * 0 and 1 are exactly 0 (zero rows of the output projection and bias) and
 * so is value feature 3 (a zero row of the input projection and bias).
 * Their zero denominators are counted over the whole layer's units and
 * first found at one process's place, from every rank's classes. */
static lrp_net *build_attn_dead(void)
{
    lrp_net *net = build_residual_attn(0xa77du, 7, 0, 0x1.6a09e6p-2f, 0, -INFINITY, 5);
    lrp_layer *m = &net->layers[lrp_net_find(net, "attn")];
    memset(m->w2, 0, 2 * 8 * sizeof *m->w2); /* out rows 0, 1 */
    memset(m->b2, 0, 2 * sizeof *m->b2);
    memset(m->w + (16 + 3) * 8, 0, 8 * sizeof *m->w); /* v feature 3 */
    m->b[16 + 3] = 0.0f;
    lrp_composite_params cp = lrp_composite_params_default();
    lrp_composite_apply(net, LRP_COMPOSITE_EPSILON_PLUS, &cp);
    return net;
}

/* built:attn_farmask: an attention as stages (6 tokens), causal with a
 * finite mask of -10^7: the masked weights are about exp(-10^7) =
 * 2^-14,426,950, and the relevance that reaches through them as small,
 * beside cells near 1.  A stage's conservation residual then sums terms
 * millions of bits apart: too wide for one exact value (over 2^22 bits),
 * so a rank sends such a part as its terms (reference/ref_exact.c; until
 * December 6 the split refused it, at attn_context). */
static lrp_net *build_attn_farmask(void)
{
    lrp_net *net = build_residual_attn(0xfa2au, 6, 1, 0.5f, 1, -1.0e7f, 3);
    lrp_composite_params cp = lrp_composite_params_default();
    lrp_composite_apply(net, LRP_COMPOSITE_ATTN_LRP, &cp);
    return net;
}

static lrp_net *build_net(const char *name)
{
    if (!strcmp(name, "tokens"))
        return tu_build_tokens(); /* divided whole by rows of tokens */
    if (!strcmp(name, "attn_dead"))
        return build_attn_dead();
    if (!strcmp(name, "attn_farmask"))
        return build_attn_farmask();
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    lrp_err e = {0};
    lrp_builder b;
    lrp_build_begin(&b, net, 0x5eedu, &e);
    int x = lrp_build_input(&b, "input", 3, 3, 6, 6);
    int ab = 0;
    if (!strcmp(name, "reshape_cat")) {
        int c = lrp_build_conv(&b, "conv1", x, 8, 3, 1, 1, 1, 1);
        c = lrp_build_relu(&b, "relu1", c);
        int rs = tu_build_reshape(&b, "reshape1", c, 3, 16, 3, 6);
        c = lrp_build_conv(&b, "conv2", rs, 4, 3, 1, 1, 1, 1);
        c = lrp_build_relu(&b, "relu2", c);
        int r2 = tu_build_reshape(&b, "reshape2", x, 3, 6, 3, 6);
        int ins[2] = {c, r2};
        int cat = lrp_build_concat(&b, "cat", 2, ins);
        c = lrp_build_conv(&b, "conv3", cat, 6, 3, 1, 1, 1, 1);
        c = lrp_build_relu(&b, "relu3", c);
        c = lrp_build_gap(&b, "gap", c);
        c = tu_build_reshape(&b, "to_flat", c, 1, 6, 0, 0);
        lrp_build_dense(&b, "fc", c, 5, 1);
    } else if (!strcmp(name, "grouped") || !strcmp(name, "grouped_ab") ||
               !strcmp(name, "grouped_dead")) {
        ab = !strcmp(name, "grouped_ab");
        int dead = !strcmp(name, "grouped_dead");
        int c = lrp_build_conv(&b, "conv1", x, 8, 3, 1, 1, 1, 1);
        c = lrp_build_relu(&b, "relu1", c);
        c = lrp_build_conv(&b, "gconv", c, 8, 3, 1, 1, 2, !dead);
        c = lrp_build_relu(&b, "relu2", c);
        c = lrp_build_gap(&b, "gap", c);
        lrp_build_dense(&b, "fc", c, 5, 1);
    } else if (!strcmp(name, "add_mixed")) {
        int c = lrp_build_conv(&b, "conv1", x, 6, 3, 1, 1, 1, 1);
        c = lrp_build_relu(&b, "relu1", c);
        int d = lrp_build_flatten(&b, "flat", c);
        d = lrp_build_dense(&b, "fc1", d, 12, 1);
        int p = lrp_build_conv(&b, "pconv", c, 3, 3, 3, 0, 1, 1); /* (3, 2, 2) */
        p = lrp_build_flatten(&b, "pflat", p);
        int ad[2] = {d, p};
        int a = lrp_build_add(&b, "add", 2, ad);
        a = lrp_build_relu(&b, "relu2", a);
        lrp_build_dense(&b, "fc2", a, 5, 1);
    } else {
        fail_msg("no built net '%s'", name);
    }
    if (lrp_build_finish(&b, 2))
        fail_msg("build: %s", e.msg);
    if (!strcmp(name, "grouped_dead")) {
        /* conv1's channels 0-3 dead (zero weights and bias): gconv's first
         * group, without a bias, has z = 0 at every unit (zero
         * denominators, counted over the whole layer's units) */
        lrp_layer *c1 = &net->layers[lrp_net_find(net, "conv1")];
        memset(c1->w, 0, 4 * 3 * 3 * 3 * sizeof *c1->w);
        memset(c1->b, 0, 4 * sizeof *c1->b);
    }
    lrp_composite_params cp = lrp_composite_params_default();
    lrp_composite_apply(
        net, ab ? LRP_COMPOSITE_EPSILON_ALPHA2_BETA1 : LRP_COMPOSITE_EPSILON_PLUS, &cp);
    return net;
}

/* the net of a run: the fixture, with the fast path's trace and its
 * damaged copy when the run is a compare */
static lrp_net *job_net(const char *fx, const char *source, const char *damage)
{
    int canon = !strncmp(fx, "canon:", 6); /* every BatchNorm canonized */
    lrp_net *net = !strncmp(fx, "built:", 6) ? build_net(fx + 6) : tu_fixture(fx + 6 * canon);
    int nbn = 0;
    for (int li = 0; canon && li < net->n_layers; li++)
        if (net->layers[li].kind == LRP_LAYER_BATCHNORM) {
            net->layers[li].rule.flags |= LRP_F_BN_CANONIZE;
            nbn++;
        }
    if (canon && nbn == 0)
        fail_msg("%s: no BatchNorm to canonize", fx);
    if (source) {
        lrp_err e = {0};
        if (lrp_run(NULL, net, LRP_ENGINE_FAST, NULL, &e) != LRP_OK)
            fail_msg("%s: %s", fx, e.msg);
        if (damage)
            add_damaged(net, "fastpath", source, damage);
    }
    return net;
}

/* the reference's precision of the case running (0: the default); read
 * by every rank's thread, written between runs */
static int case_prec;
/* per rank: the subject of the case running (NULL: our fast path) */
static const lrp_backend *case_subject[MAXR];
/* run_ranks plays the sample split instead of the layer split */
static int case_samples;
/* no convention identification (the cases that test the refusals) */
static int case_no_identify;

static void opts(lrp_check_opts *o, const char *fx, const char *source)
{
    lrp_check_opts_default(o);
    o->source = source;
    o->label = fx;
    o->threads = 1;
    if (case_prec)
        o->prec = case_prec;
    if (case_no_identify)
        o->identify = 0;
}

/* rank 0's exchanges when its judgement phase began (after the ranks'
 * exchange of their runs' hashes, check's last exchange before it) */
static int judge_at;

static void note_phase(void *ctx, int phase, int k, int n)
{
    (void)k;
    (void)n;
    const rank_job *j = ctx;
    if (phase == LRP_PHASE_JUDGE)
        judge_at = j->s->calls[0];
}

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    lrp_check_opts o;
    opts(&o, j->fx, j->source);
    if (j->q == 0) {
        o.phase = note_phase;
        o.phase_ctx = j;
    }
    o.split = &j->sp;
    o.subject = j->subject;
    j->st = lrp_check(&j->rep, j->net, &o, &j->err);
    /* MPFR's caches of this thread (the constants exp and log keep for the
     * token and attention kinds): a thread that ends keeps them else */
    mpfr_free_cache2(MPFR_FREE_LOCAL_CACHE);
    return NULL;
}

static void run_ranks(rank_job *jobs, sim *s, const char *fx, const char *source,
                      const char *damage, int R, int fail_rank, int fail_at)
{
    tu_sim_init(s, R, fail_rank, fail_at);
    pthread_t th[MAXR];
    for (int q = 0; q < R; q++) {
        rank_job *j = &jobs[q];
        memset(j, 0, sizeof *j);
        j->s = s;
        j->q = q;
        j->fx = fx;
        j->source = source;
        j->net = job_net(fx, source, damage);
        lrp_check_split sp = {0, j->net->batch, q == 0, 0, sim_gather, j,
                              1, q, R, sim_allgather};
        if (case_samples) { /* the sample split: rank q its sample q, the
                               last rank the rest, ranks beyond the batch none */
            int64_t B = j->net->batch;
            lrp_check_split ss = {q < B ? q : B, q < B ? (q == R - 1 ? B - q : 1) : 0,
                                  q == 0, 0, sim_gather, j, 0, 0, 0, NULL};
            sp = ss;
        }
        j->sp = sp;
        j->subject = case_subject[q];
    }
    for (int q = 0; q < R; q++)
        assert_int_equal(pthread_create(&th[q], NULL, rank_main, &jobs[q]), 0);
    for (int q = 0; q < R; q++)
        pthread_join(th[q], NULL);
    tu_sim_destroy(s);
}

static void jobs_free(rank_job *jobs, int R)
{
    for (int q = 0; q < R; q++) {
        lrp_run_report_free(&jobs[q].rep); /* a failed run's too */
        lrp_net_free(jobs[q].net);
    }
}

/* the report as the CLI writes it: verbose text, then JSON */
static char *report_bytes(const lrp_run_report *r, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    assert_non_null(f);
    lrp_report_text(f, r, 0, 1);
    fclose(f);
    char path[] = "/tmp/lrp-cs-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    lrp_err e = {0};
    assert_int_equal(lrp_report_json(path, r, 1, &e), LRP_OK);
    size_t jl = 0;
    unsigned char *j = tu_read_file(path, &jl);
    unlink(path);
    assert_non_null(j);
    char *all = malloc(n + jl + 1);
    assert_non_null(all);
    memcpy(all, buf, n);
    memcpy(all + n, j, jl);
    all[n + jl] = 0;
    free(buf);
    free(j);
    *len = n + jl;
    return all;
}

static void same_report(const char *what, int R, const lrp_run_report *one,
                        const lrp_run_report *root)
{
    size_t a, b;
    char *x = report_bytes(one, &a), *y = report_bytes(root, &b);
    size_t k = 0;
    while (k < a && k < b && x[k] == y[k])
        k++;
    if (a != b || k < a) {
        size_t s = k > 200 ? k - 200 : 0;
        fail_msg("%s R=%d: the root's report differs from one process's at byte %zu:\n"
                 "one:  ...%.400s\nroot: ...%.400s",
                 what, R, k, x + s, y + s);
    }
    free(x);
    free(y);
}

typedef struct case_ {
    const char *fx, *source, *damage;
    int prec; /* 0: the default */
    /* 1: R = 2 and 3 only (an even and an uneven split; the pipeline's
     * blocks of these nets are checked at R = 1 to 9 in test_split.c):
     * keeps this test's time under ASan in CI */
    int few;
} case_;

static void layer_split_equals_one_process(void **state)
{
    (void)state;
    const case_ cases[] = {
        {"cnn", NULL, NULL, 0, 0},          /* check: PASS */
        {"vgg_dead", NULL, NULL, 0, 0},     /* a NaN origin (iNNvestigate #2) */
        {"nearcancel", NULL, NULL, 0, 0},   /* ill-conditioned cells */
        {"resnet", NULL, NULL, 0, 0},       /* BatchNorm, Add, uneven blocks */
        {"negzero", "fastpath", NULL, 0, 0}, /* compare: signed zeros */
        {"resnet", "flipped", "flip", 0, 0}, /* a sign-flipped heatmap: FAIL */
        {"cnn", "doubled", "double", 0, 0}, /* one layer x 2 */
        {"mlp", "nanned", "nan", 0, 0},     /* a NaN injected */
        {"resnet", "zeroed", "zero", 0, 1}, /* one layer's relevance zeroed */
        {"resnet", "shuffled", "shuffle", 0, 1}, /* one layer's cells reversed, sums kept */
        /* layers run whole on every rank (Concatenate, Reshape) */
        {"densenet", NULL, NULL, 0, 0},              /* a dense block of Concatenates */
        {"captum_cat", NULL, NULL, 0, 0},            /* a conv read by a Concatenate and a conv */
        {"zennit_bncat", "fastpath", NULL, 0, 0},    /* ... by a Concatenate and a BatchNorm */
        {"built:reshape_cat", NULL, NULL, 0, 0},     /* Reshapes and a Concatenate */
        {"built:reshape_cat", "fastpath", NULL, 0, 0},
        {"densenet", "flipped", "flip", 0, 0},       /* a sign-flipped heatmap: FAIL */
        /* token sequences divided by rows of tokens (Dense, LayerNorm,
         * RMSNorm, GELU, SiLU, Tanh) */
        {"tokmlp", NULL, NULL, 0, 0},
        {"tokmlp", "fastpath", NULL, 0, 0},
        {"tokmlp", "flipped", "flip", 0, 0},         /* a sign-flipped heatmap: FAIL */
        {"ln_eps0", NULL, NULL, 0, 0},               /* 0/0 rows: undefined_forward, NaN */
        {"ln_constrow", NULL, NULL, 0, 0},
        {"built:tokens", NULL, NULL, 0, 0},          /* Embedding, Position, Mul too */
        {"built:tokens", "fastpath", NULL, 0, 0},
        /* layers run whole with per-unit data: their units whole on every
         * rank, the root's taken (denominators' classes, absorbed
         * relevance, the flags of their steps) */
        {"built:grouped", NULL, NULL, 0, 1},          /* grouped Conv2D */
        {"built:grouped_ab", "fastpath", NULL, 0, 1}, /* ... under alpha-beta (two parts) */
        {"built:grouped_dead", NULL, NULL, 0, 1},     /* ... a group of zero denominators */
        {"built:add_mixed", NULL, NULL, 0, 1},        /* an Add of inputs split differently */
        {"attn1", NULL, NULL, 0, 0},                  /* MultiHeadAttention, SelectToken */
        {"built:attn_dead", NULL, NULL, 0, 0},        /* ... with zero denominators */
        {"built:attn_dead", "fastpath", NULL, 0, 0},
        {"attn_parts", "fastpath", NULL, 0, 1},       /* AttnScores, AttnSoftmax, AttnContext */
        {"built:attn_farmask", NULL, NULL, 0, 0},     /* a residual too wide for one value */
        {"gate1", NULL, NULL, 0, 1},                  /* Softmax, Mul */
        {"embed1", NULL, NULL, 0, 1},                 /* attention after Embedding, Position */
        {"decoder1", NULL, NULL, 0, 1},
        {"vit_tiny", "fastpath", NULL, 0, 1},         /* ToTokens, ClsToken, pre-LN blocks */
        {"bert_tiny", NULL, NULL, 0, 1},
        {"bert_tiny", "flipped", "flip", 0, 1},       /* a sign-flipped heatmap: FAIL */
        {"attn_saturated", NULL, NULL, 0, 1},
        /* BatchNorm canonized into its conv (--bn canonize), divided with it */
        {"canon:resnet", NULL, NULL, 0, 1},
        {"canon:mobilenet", "fastpath", NULL, 0, 1}, /* depthwise convs folded */
        {"canon:cnn", "flipped", "flip", 0, 1},
        /* p = 24: the self-proof at p + 64 leaves cells unresolved, which
         * each rank finds in its block (the lists merged on the root) */
        {"resnet", NULL, NULL, 24, 0},
        {"densenet", "fastpath", NULL, 24, 0},
    };
    const int Rs[] = {1, 2, 3, 5};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const case_ *k = &cases[c];
        case_prec = k->prec;
        char what[96];
        snprintf(what, sizeof what, "%s %s", k->source ? "compare" : "check", k->fx);
        if (k->source) {
            snprintf(what, sizeof what, "compare %s --source %s", k->fx, k->source);
        }
        lrp_net *net = job_net(k->fx, k->source, k->damage);
        lrp_err e = {0};
        lrp_check_opts o;
        opts(&o, k->fx, k->source);
        lrp_run_report one;
        if (lrp_check(&one, net, &o, &e) != LRP_OK)
            fail_msg("%s: %s", what, e.msg);
        /* a damaged trace must not pass one process (then the split's
         * report, the same bytes, does not either) */
        if (k->damage && lrp_run_ok(&one))
            fail_msg("%s (%s): one process passed a damaged trace", what, k->damage);
        for (size_t r = 0; r < sizeof Rs / sizeof Rs[0]; r++) {
            int R = Rs[r];
            if (k->few && R != 2 && R != 3)
                continue;
            sim s;
            rank_job jobs[MAXR];
            run_ranks(jobs, &s, k->fx, k->source, k->damage, R, -1, 0);
            for (int q = 0; q < R; q++) {
                if (jobs[q].st)
                    fail_msg("%s R=%d rank %d: %s", what, R, q, jobs[q].err.msg);
                assert_int_equal(s.calls[q], s.calls[0]);
            }
            same_report(what, R, &one, &jobs[0].rep);
            jobs_free(jobs, R);
        }
        lrp_run_report_free(&one);
        lrp_net_free(net);
    }
}

/* a rank failing at its k-th exchange (the hooks' and the pipeline's),
 * rank 0 included: every rank returns an error of one line, none makes
 * an exchange after the failure, none waits for another.  24 points over
 * each run, each rank failing at every third: the exchanges of the
 * parked arrays (the hooks' parking; the root's requests while the others
 * serve it: 462 of compare resnet's 916) are hit at several points, each
 * rank as the one failing; check cnn has the local comparison's too (526 of
 * its 835). */
/* rank fr of R failing at its exchange `at`: every rank returns one line
 * and none exchanges after it */
static void fail_once(const char *fx, const char *source, int R, int fr, int at)
{
    sim s;
    rank_job jobs[MAXR];
    run_ranks(jobs, &s, fx, source, NULL, R, fr, at);
    for (int q = 0; q < R; q++) {
        if (jobs[q].st == LRP_OK)
            fail_msg("%s: failure of rank %d at exchange %d: rank %d returned success", fx, fr,
                     at, q);
        if (!jobs[q].err.msg[0] || strchr(jobs[q].err.msg, '\n'))
            fail_msg("%s: failure of rank %d at exchange %d: rank %d's error is not "
                     "one line: '%s'",
                     fx, fr, at, q, jobs[q].err.msg);
        assert_int_equal(s.after_fail[q], 0);
        assert_int_equal(s.calls[q], at);
    }
    jobs_free(jobs, R);
}

static void fail_at_points(const char *fx, const char *source)
{
    const int R = 3;
    sim s;
    rank_job jobs[MAXR];
    judge_at = 0;
    run_ranks(jobs, &s, fx, source, NULL, R, -1, 0);
    int total = s.calls[0], judged = judge_at;
    jobs_free(jobs, R);
    assert_true(total > 10);
    const int step = (total + 23) / 24;
    for (int at = 1; at <= total; at += step)
        for (int fr = (at / step) % R; fr < R; fr += R)
            fail_once(fx, source, R, fr, at);
    /* and each rank failing at the last exchange before the judgement:
     * under check the ranks' exchange of their runs' hashes, in which a
     * rank that failed in its run sends its failure */
    assert_true(judged > 0);
    for (int fr = 0; fr < R; fr++)
        fail_once(fx, source, R, fr, judged);
}

static void failure_reaches_every_rank(void **state)
{
    (void)state;
    fail_at_points("resnet", "fastpath");
    fail_at_points("cnn", NULL);
}

/* A flaky engine on one rank (tests/util: tu_flaky_lin_bwd, its runs
 * counted per thread): our fast path, except that its second run scales
 * each Dense backward by 1 + 2^-8.  check reads the subject's relevance
 * from one run and its activations from a second (oracle/check.c
 * f32_activations); under the layer split each rank keeps only its block
 * of either and compares the two runs on that block.  The rank whose
 * engine is flaky must refuse ("not deterministic"), and every rank must
 * stop with one line. */
static void flaky_subject_refused_on_its_rank(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("mlp");
    tu_flaky_arm(net, NULL); /* the real lin_bwd: each rank's, below */
    lrp_net_free(net);
    lrp_f32_ctx *cx[MAXR];
    lrp_backend be[MAXR];
    for (int R = 2; R <= 3; R++)
        for (int bad = 0; bad < R; bad++) {
            for (int q = 0; q < R; q++) {
                assert_non_null(cx[q] = lrp_f32_ctx_new(1));
                lrp_f32_backend(&be[q], cx[q]);
                tu_flaky_real = be[q].lin_bwd;
                if (q == bad)
                    be[q].lin_bwd = tu_flaky_lin_bwd;
                case_subject[q] = &be[q];
            }
            sim s;
            rank_job jobs[MAXR];
            run_ranks(jobs, &s, "mlp", NULL, NULL, R, -1, 0);
            for (int q = 0; q < R; q++) {
                if (jobs[q].st == LRP_OK)
                    fail_msg("R = %d, flaky rank %d: rank %d returned success", R, bad, q);
                if (!jobs[q].err.msg[0] || strchr(jobs[q].err.msg, '\n'))
                    fail_msg("R = %d: rank %d's error is not one line: '%s'", R, q,
                             jobs[q].err.msg);
            }
            if (!strstr(jobs[bad].err.msg, "not deterministic"))
                fail_msg("R = %d: the flaky rank %d said '%s'", R, bad, jobs[bad].err.msg);
            jobs_free(jobs, R);
            for (int q = 0; q < R; q++) {
                lrp_f32_ctx_free(cx[q]);
                case_subject[q] = NULL;
            }
        }
    /* the same engines steady on every rank: judged, no refusal */
    for (int q = 0; q < 2; q++) {
        assert_non_null(cx[q] = lrp_f32_ctx_new(1));
        lrp_f32_backend(&be[q], cx[q]);
        case_subject[q] = &be[q];
    }
    sim s;
    rank_job jobs[MAXR];
    run_ranks(jobs, &s, "mlp", NULL, NULL, 2, -1, 0);
    for (int q = 0; q < 2; q++)
        if (jobs[q].st != LRP_OK)
            fail_msg("steady engines: rank %d: %s", q, jobs[q].err.msg);
    jobs_free(jobs, 2);
    for (int q = 0; q < 2; q++) {
        lrp_f32_ctx_free(cx[q]);
        case_subject[q] = NULL;
    }
}

/* A wrong engine on every rank, as a wrong fast path would be: its Conv2D
 * / Dense backward negated (a sign-flipped heatmap) or scaled by 3/2 (a
 * wrong rule's magnitude), every run alike.  Under check the subject's
 * relevance reaches the root's end-to-end judgement only through the
 * ranks' lent blocks, fetched step by step: the verdict must be the one
 * process's FAIL, byte for byte, on deep nets (BatchNorm and Add; a dense
 * block of Concatenates), R = 2 and 3. */
static int wrong_how; /* 0: negated, 1: x 3/2, 2: x (1 + 2^-8) */

static void wrong_lin_bwd(void *ctx, void *out, const lrp_lin *L, const void *x,
                          const lrp_bwd_part *parts, int np, int64_t batch)
{
    tu_flaky_real(ctx, out, L, x, parts, np, batch);
    for (int64_t i = 0; i < batch * L->n_in; i++)
        ((float *)out)[i] *= wrong_how == 2 ? 1.00390625f : wrong_how ? 1.5f : -1.0f;
}

static void wrong_subject_fails_as_one_process(void **state)
{
    (void)state;
    const struct {
        const char *fx;
        int how;
    } cases[] = {{"resnet", 0}, {"resnet", 1}, {"densenet", 0}};
    lrp_f32_ctx *cx[MAXR];
    lrp_backend be[MAXR];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        wrong_how = cases[c].how;
        char what[64];
        snprintf(what, sizeof what, "check %s, subject %s", cases[c].fx,
                 wrong_how ? "x 3/2" : "negated");
        for (int q = 0; q < 3; q++) {
            assert_non_null(cx[q] = lrp_f32_ctx_new(1));
            lrp_f32_backend(&be[q], cx[q]);
            tu_flaky_real = be[q].lin_bwd;
            be[q].lin_bwd = wrong_lin_bwd;
        }
        lrp_net *net = job_net(cases[c].fx, NULL, NULL);
        lrp_check_opts o;
        opts(&o, cases[c].fx, NULL);
        o.subject = &be[0];
        lrp_run_report one;
        lrp_err e = {0};
        if (lrp_check(&one, net, &o, &e) != LRP_OK)
            fail_msg("%s: %s", what, e.msg);
        if (lrp_run_ok(&one) || one.verdict != LRP_V_FAIL)
            fail_msg("%s: one process did not FAIL (verdict %d)", what, (int)one.verdict);
        for (int R = 2; R <= 3; R++) {
            for (int q = 0; q < R; q++)
                case_subject[q] = &be[q];
            sim s;
            rank_job jobs[MAXR];
            run_ranks(jobs, &s, cases[c].fx, NULL, NULL, R, -1, 0);
            for (int q = 0; q < R; q++)
                if (jobs[q].st)
                    fail_msg("%s R=%d rank %d: %s", what, R, q, jobs[q].err.msg);
            same_report(what, R, &one, &jobs[0].rep);
            jobs_free(jobs, R);
        }
        for (int q = 0; q < 3; q++) {
            lrp_f32_ctx_free(cx[q]);
            case_subject[q] = NULL;
        }
        lrp_run_report_free(&one);
        lrp_net_free(net);
    }
}

/* An engine that gives other bits in one process than in the others and
 * the same in each of its own runs (a summation order that depends on the
 * process, say): rank `odd`'s Dense backward scaled by 1 + 2^-8.  Its two
 * runs agree, so only the ranks' exchange of their runs' per-sample hashes
 * (oracle/check.c ranks_ran_alike) can see that the cells judged and the
 * root's figures would come from different runs.  Under the layer split
 * every rank must return the same one line naming the rank that differs
 * from rank 0 (rank 1 when rank 0 is the odd one); under the sample split
 * (each rank its samples: R = 2, and 3 with a rank holding none) the root
 * refuses with its line and the others stop.  The same engine on every
 * rank is refused nowhere. */
static void process_dependent_subject_refused(void **state)
{
    (void)state;
    lrp_f32_ctx *cx[MAXR];
    lrp_backend be[MAXR];
    wrong_how = 2;
    /* (split, R, odd rank; -1: every rank the same; the sample split's
     * rank 2 at R = 3 holds no sample).  Not every combination: each case
     * is a whole check, and under ASan they add up */
    static const int cases[][3] = {{0, 2, -1}, {0, 2, 0}, {0, 2, 1}, {0, 3, 2},
                                   {1, 2, -1}, {1, 2, 0}, {1, 2, 1}, {1, 3, 1}, {1, 3, 2}};
    case_no_identify = 1; /* (the identification's runs are not what is tested) */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int samples = cases[c][0], R = cases[c][1], odd = cases[c][2];
        for (int q = 0; q < R; q++) {
            assert_non_null(cx[q] = lrp_f32_ctx_new(1));
            lrp_f32_backend(&be[q], cx[q]);
            tu_flaky_real = be[q].lin_bwd;
            if (q == odd || odd < 0)
                be[q].lin_bwd = wrong_lin_bwd;
            case_subject[q] = &be[q];
        }
        case_samples = samples;
        sim s;
        rank_job jobs[MAXR];
        run_ranks(jobs, &s, "mlp", NULL, NULL, R, -1, 0);
        case_samples = 0;
        const char *how = samples ? "sample split" : "layer split";
        char want[64];
        snprintf(want, sizeof want, "rank %d's", odd == 0 ? 1 : odd);
        /* (a rank beyond the batch runs nothing: nothing differs) */
        int refused = odd >= 0 && !(samples && odd >= jobs[0].net->batch);
        for (int q = 0; q < R; q++) {
            const char *m = jobs[q].err.msg;
            if (!refused) {
                if (jobs[q].st != LRP_OK)
                    fail_msg("%s R=%d, odd rank %d (none or idle): rank %d: %s", how, R, odd, q,
                             m);
                continue;
            }
            if (jobs[q].st == LRP_OK)
                fail_msg("%s R=%d, odd rank %d: rank %d returned success", how, R, odd, q);
            if (!m[0] || strchr(m, '\n'))
                fail_msg("%s R=%d: rank %d's error is not one line: '%s'", how, R, q, m);
            /* the layer split: every rank decides, alike; the sample
             * split: the root (the others stop) */
            const char *says = samples ? "depend on the process" : "across processes";
            if ((q == 0 && (!strstr(m, want) || !strstr(m, says))) ||
                (q > 0 && !samples && strcmp(m, jobs[0].err.msg) != 0))
                fail_msg("%s R=%d, odd rank %d: rank %d said '%s' (rank 0: '%s')", how, R, odd,
                         q, m, jobs[0].err.msg);
        }
        jobs_free(jobs, R);
        for (int q = 0; q < R; q++) {
            lrp_f32_ctx_free(cx[q]);
            case_subject[q] = NULL;
        }
    }
    case_no_identify = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(layer_split_equals_one_process),
        cmocka_unit_test(failure_reaches_every_rank),
        cmocka_unit_test(flaky_subject_refused_on_its_rank),
        cmocka_unit_test(wrong_subject_fails_as_one_process),
        cmocka_unit_test(process_dependent_subject_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
