/*
 * test_reference.c -- the MPFR reference against independent exact
 * rationals (tests/naive/), its exact accumulator against mpfr_sum, its
 * bookkeeping (conservation with absorbed kinds), flags, thread
 * independence and self-proof.
 *
 * Tolerance.  Each reference relevance value is the correctly rounded sum
 * of products whose factors carry few roundings: den_j is correctly
 * rounded (relative 2^-p), stab = den +- eps rounded (2^-p), s_j = R_j /
 * stab rounded (2^-p), and the final sum is rounded once (2^-p of the
 * result).  So |ref_i - exact_i| <= ~4 * 2^-p * sum_j |contribution_ij| +
 * 2^-p |exact_i|; we allow 2^-(p-10) * (gauge_i + |exact_i|), a factor 256
 * of slack and far below any real bug (which shows up at 2^-24 or worse).
 *
 * The seed is printed (fixed by default); LRP_TEST_SEED=<n> reproduces a
 * run, LRP_TEST_SEED=random draws one from the clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <gmp.h>
#include <math.h>
#include <mpfr.h>

#include "lrp.h"
#include "naive/naive.h"
#include "pipeline.h"
#include "ref_int.h"
#include "reference.h"

static uint64_t g_seed;
static uint64_t g_rng;

static uint64_t rnd(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* k * 2^-10 in [-1, 1): short mantissas make exact cancellation likely */
static float rsym(void) { return (float)((int64_t)(rnd() % 2049) - 1024) / 1024.0f; }
/* full 24-bit mantissa values in [-1, 1) */
static float rsym24(void) { return (float)((int64_t)(rnd() >> 40) - (1 << 23)) / (float)(1 << 23); }
static unsigned rbelow(unsigned n) { return (unsigned)(rnd() % n); }

/* ---- net building ---- */

typedef struct geom {
    int dense;
    int C, H, W, O, k, sh, dh, pt, pb, pl, pr, groups;
} geom;

static const geom geoms[] = {
    {1, 7, 1, 1, 5, 1, 1, 1, 0, 0, 0, 0, 1},  /* Dense 7 -> 5 */
    {0, 3, 5, 5, 4, 3, 1, 1, 1, 1, 1, 1, 1},  /* 3x3, pad 1 */
    {0, 4, 6, 5, 4, 3, 2, 2, 1, 0, 2, 1, 2},  /* stride 2, dilation 2, asym pad, groups 2 */
    {0, 3, 4, 4, 6, 2, 1, 1, 0, 1, 1, 0, 3},  /* depthwise x2 */
};
#define NGEOM ((int)(sizeof geoms / sizeof geoms[0]))

static naive_geom to_naive(const geom *g)
{
    naive_geom n;
    memset(&n, 0, sizeof n);
    n.C = g->C;
    n.H = g->H;
    n.W = g->W;
    n.O = g->O;
    n.kh = n.kw = g->k;
    n.sh = n.sw = g->sh;
    n.dh = n.dw = g->dh;
    n.pt = g->pt;
    n.pb = g->pb;
    n.pl = g->pl;
    n.pr = g->pr;
    n.groups = g->groups;
    return n;
}

/* Input -> Dense/Conv with r_out; takes ownership of nothing (copies). */
static lrp_net *lin_net(const geom *g, const float *x, const float *w, const float *b,
                        const float *rout, const lrp_rule_spec *rs)
{
    lrp_err err;
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    int i0 = lrp_net_add(net, LRP_LAYER_INPUT, "in", &err);
    assert_int_equal(i0, 0);
    lrp_layer *l0 = &net->layers[0];
    if (g->dense) {
        l0->shape.rank = 1;
        l0->shape.d[0] = g->C;
    } else {
        l0->shape.rank = 3;
        l0->shape.d[0] = g->C;
        l0->shape.d[1] = g->H;
        l0->shape.d[2] = g->W;
    }
    int i1 = lrp_net_add(net, g->dense ? LRP_LAYER_DENSE : LRP_LAYER_CONV2D, "lin", &err);
    assert_int_equal(i1, 1);
    lrp_layer *l = &net->layers[1];
    l->n_in = 1;
    l->in[0] = 0;
    l->units = g->O;
    if (!g->dense) {
        l->kh = l->kw = g->k;
        l->sh = l->sw = g->sh;
        l->dh = l->dw = g->dh;
        l->pt = g->pt;
        l->pb = g->pb;
        l->pl = g->pl;
        l->pr = g->pr;
        l->groups = g->groups;
    }
    l->has_bias = b != NULL;
    l->rule = *rs;
    lrp_status st = lrp_net_infer(net, "test", &err);
    if (st)
        fail_msg("infer: %s", err.msg);
    int64_t nin = lrp_shape_numel(&l0->shape), nout = lrp_shape_numel(&l->shape);
    int64_t nw = g->O * (g->C / (g->dense ? 1 : g->groups)) * (g->dense ? 1 : g->k * g->k);
    l->w = malloc((size_t)nw * sizeof(float));
    memcpy(l->w, w, (size_t)nw * sizeof(float));
    if (b) {
        l->b = malloc((size_t)g->O * sizeof(float));
        memcpy(l->b, b, (size_t)g->O * sizeof(float));
    }
    net->input = malloc((size_t)nin * sizeof(float));
    memcpy(net->input, x, (size_t)nin * sizeof(float));
    net->r_out = malloc((size_t)nout * sizeof(float));
    memcpy(net->r_out, rout, (size_t)nout * sizeof(float));
    return net;
}

/* ---- comparisons ---- */

static int mpfr_same(mpfr_srcptr a, mpfr_srcptr b)
{
    if (mpfr_nan_p(a) || mpfr_nan_p(b))
        return mpfr_nan_p(a) && mpfr_nan_p(b);
    return mpfr_equal_p(a, b) && mpfr_signbit(a) == mpfr_signbit(b);
}

/* |ref - exact| <= 2^-(p-10) * scale */
static int close_q(mpfr_srcptr ref, const mpq_t exact, const mpq_t scale, int p)
{
    mpq_t r, t;
    mpq_inits(r, t, NULL);
    mpfr_get_q(r, ref);
    mpq_sub(r, r, exact);
    mpq_abs(r, r);
    mpq_div_2exp(t, scale, (mp_bitcnt_t)(p - 10));
    int ok = mpq_cmp(r, t) <= 0;
    mpq_clears(r, t, NULL);
    return ok;
}

static const char *dbl(mpfr_srcptr v)
{
    static char buf[4][80];
    static int k;
    k = (k + 1) & 3;
    mpfr_snprintf(buf[k], 80, "%.40Rg", v);
    return buf[k];
}

typedef struct rcase {
    const char *name;
    lrp_rule_spec spec;
    naive_rule nr;
} rcase;

static rcase mk(const char *name, lrp_rule_id id, int nvrule)
{
    rcase c;
    memset(&c, 0, sizeof c);
    c.name = name;
    c.spec = lrp_rule_default(id);
    c.nr.rule = nvrule;
    return c;
}

static void sync_naive(rcase *c)
{
    c->nr.stab = (int)c->spec.stab; /* same table order (docs/SPEC.md section 5) */
    c->nr.eps = c->spec.eps;
    c->nr.gamma = c->spec.gamma;
    c->nr.alpha = c->spec.rule == LRP_RULE_ZPLUS ? 1.0f : c->spec.alpha;
    c->nr.beta = c->spec.rule == LRP_RULE_ZPLUS ? 0.0f : c->spec.beta;
    c->nr.low = c->spec.low;
    c->nr.high = c->spec.high;
    c->nr.bias = c->spec.bias;
    c->nr.generalized = (c->spec.flags & LRP_F_GAMMA_GENERALIZED) != 0;
    c->nr.drop0 = (c->spec.flags & LRP_F_ZENNIT_GAMMA_DROP0) != 0;
    c->nr.fullbias = (c->spec.flags & LRP_F_INNV_AB_FULLBIAS) != 0;
    c->nr.captum = (c->spec.flags & (LRP_F_CAPTUM_A1B0 | LRP_F_CAPTUM_GAMMA_FULLBIAS)) != 0;
    if (c->nr.rule == NV_AB && c->nr.beta == 0)
        c->nr.rule = NV_AB;
}

enum { IN_RANDOM, IN_ZERO, IN_DEAD, IN_NEGZERO, IN_NEGW, IN_CANCEL, IN_COUNT };
static const char *in_names[] = {"random", "all-zero", "dead-unit", "-0.0", "neg-weights",
                                 "cancellation"};

typedef struct stats {
    long runs, values, undef, skip, empty, dropped, stab0;
} stats;

/* One case: build data, run reference (fast and slow kernels), naive,
 * compare values, statuses, absorbed totals, conservation. */
static void run_case(const rcase *rc0, const geom *g, int bias, int stab, int input, float eps,
                     stats *S)
{
    rcase rc = *rc0;
    rc.spec.stab = (lrp_stab_id)stab;
    rc.spec.bias = bias;
    if (rc.spec.rule != LRP_RULE_ZERO)
        rc.spec.eps = eps;
    else
        rc.spec.eps = stab == LRP_STAB_ZERO_ONLY ? eps : 0.0f;
    sync_naive(&rc);
    naive_geom ng = to_naive(g);
    int Ho = g->dense ? 1 : naive_out_h(&ng), Wo = g->dense ? 1 : naive_out_w(&ng);
    int nin = g->C * g->H * g->W, nout = g->O * Ho * Wo;
    int Cg = g->dense ? g->C : g->C / g->groups, kk = g->dense ? 1 : g->k * g->k;
    int nw = g->O * Cg * kk;
    float *x = malloc(sizeof(float) * (size_t)nin), *w = malloc(sizeof(float) * (size_t)nw);
    float b[64], rout[512], lowv[256], highv[256];
    assert_true(nout <= 512 && nin <= 256);
    for (int i = 0; i < nin; i++)
        x[i] = rsym24();
    for (int i = 0; i < nw; i++)
        w[i] = rsym();
    for (int o = 0; o < g->O; o++)
        b[o] = rsym() * 0.25f;
    for (int j = 0; j < nout; j++)
        rout[j] = rsym24();
    switch (input) {
    case IN_ZERO:
        for (int i = 0; i < nin; i++)
            x[i] = 0.0f;
        for (int o = 0; o < g->O; o++)
            b[o] = 0.0f;
        break;
    case IN_DEAD:
        /* output channel 0 has all-zero weights and zero bias: z_j = 0 */
        for (int i = 0; i < Cg * kk; i++)
            w[i] = (i & 1) ? 0.0f : -0.0f;
        b[0] = 0.0f;
        break;
    case IN_NEGZERO:
        for (int i = 0; i < nin; i++)
            if (i % 3 != 2)
                x[i] = -0.0f;
        for (int o = 0; o < g->O; o++)
            b[o] = -0.0f;
        break;
    case IN_NEGW:
        for (int i = 0; i < nw; i++)
            w[i] = -fabsf(w[i]);
        for (int i = 0; i < nin; i++)
            x[i] = fabsf(x[i]);
        break;
    case IN_CANCEL:
        /* x = 1 + 2^-23 k, w = +-1 with bias -> sums cancel to tiny values */
        for (int i = 0; i < nin; i++)
            x[i] = 1.0f + (float)rbelow(4) * 0x1p-23f;
        for (int i = 0; i < nw; i++)
            w[i] = (i & 1) ? -1.0f : 1.0f;
        for (int o = 0; o < g->O; o++)
            b[o] = (float)rbelow(3) * 0x1p-23f - 0x1p-23f;
        break;
    }
    for (int i = 0; i < nin; i++) {
        lowv[i] = -fabsf(x[i]) - 0.5f;
        highv[i] = fabsf(x[i]) + 0.25f;
    }
    int use_vec_bounds = rc.spec.rule == LRP_RULE_ZBOX && (input & 1);
    lrp_net *net = lin_net(g, x, w, bias ? b : NULL, rout, &rc.spec);
    if (use_vec_bounds) {
        net->zbox_low = malloc(sizeof(float) * (size_t)nin);
        net->zbox_high = malloc(sizeof(float) * (size_t)nin);
        memcpy(net->zbox_low, lowv, sizeof(float) * (size_t)nin);
        memcpy(net->zbox_high, highv, sizeof(float) * (size_t)nin);
        rc.nr.lowv = lowv;
        rc.nr.highv = highv;
    }
    /* use the has_bias flag of the layer for the naive: bias NULL when off */
    lrp_err err;
    lrp_ref_opts o = lrp_ref_opts_default();
    o.threads = 1 + (int)(rbelow(2));
    lrp_ref_result *R = NULL, *Rs = NULL;
    if (lrp_ref_run(&R, net, &o, &err))
        fail_msg("ref: %s", err.msg);
    o.slow = (S->runs % 3 == 0) ? 2 : 1; /* the slow kernel, or the binary64-piece one */
    if (lrp_ref_run(&Rs, net, &o, &err))
        fail_msg("ref slow: %s", err.msg);
    mpq_t *Rin = malloc(sizeof(mpq_t) * (size_t)nin), *gau = malloc(sizeof(mpq_t) * (size_t)nin);
    mpq_t *ab = malloc(sizeof(mpq_t) * (size_t)nout), *ug = malloc(sizeof(mpq_t) * (size_t)nout);
    int st[512];
    for (int i = 0; i < nin; i++) {
        mpq_init(Rin[i]);
        mpq_init(gau[i]);
    }
    for (int j = 0; j < nout; j++) {
        mpq_init(ab[j]);
        mpq_init(ug[j]);
    }
    naive_lrp(Rin, gau, ab, ug, st, &ng, x, w, bias ? b : NULL, rout, &rc.nr);
    char where[200];
    snprintf(where, sizeof where, "rule %s geom %d bias %d stab %s input %s eps %a seed %llu",
             rc.name, (int)(g - geoms), bias, lrp_stab_name((lrp_stab_id)stab), in_names[input],
             (double)eps, (unsigned long long)g_seed);
    mpfr_srcptr rel = lrp_ref_rel(R, 0);
    mpq_t sc;
    mpq_init(sc);
    for (int i = 0; i < nin; i++) {
        mpq_abs(sc, Rin[i]);
        mpq_add(sc, sc, gau[i]);
        if (!close_q(rel + i, Rin[i], sc, R->prec))
            fail_msg("%s: R_in[%d] = %.17g, exact %.17g", where, i, mpfr_get_d(rel + i, MPFR_RNDN),
                     mpq_get_d(Rin[i]));
        if (mpq_sgn(gau[i]) == 0 && !mpfr_zero_p(rel + i))
            fail_msg("%s: R_in[%d] should be exactly 0", where, i);
        S->values++;
    }
    /* fast and slow kernels: identical bits, everywhere */
    for (int li = 0; li < 2; li++) {
        lrp_pipe_layer *A = &R->pipe->L[li], *B = &Rs->pipe->L[li];
        for (int64_t i = 0; i < A->n; i++) {
            if (!mpfr_same(lrp_ref_rel(R, li) + i, lrp_ref_rel(Rs, li) + i))
                fail_msg("%s: fast/slow kernels differ at layer %d value %lld: %s vs %s", where, li,
                         (long long)i, dbl(lrp_ref_rel(R, li) + i), dbl(lrp_ref_rel(Rs, li) + i));
            if (!mpfr_same(lrp_ref_act(R, li) + i, lrp_ref_act(Rs, li) + i))
                fail_msg("%s: fast/slow forward differ at layer %d value %lld", where, li,
                         (long long)i);
        }
        for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++)
            if (A->den[k])
                for (int64_t j = 0; j < A->n_units; j++)
                    if (!mpfr_same((mpfr_srcptr)A->den[k] + j, (mpfr_srcptr)B->den[k] + j))
                        fail_msg("%s: fast/slow den differ part %d unit %lld", where, k,
                                 (long long)j);
    }
    /* per unit: status and absorbed total */
    lrp_pipe_layer *P = &R->pipe->L[1];
    mpfr_t tot;
    mpfr_init2(tot, 4 * R->prec);
    for (int j = 0; j < nout; j++) {
        int kind_undef = 0, kind_skip = 0, kind_empty = 0, kind_drop = 0;
        for (int k = 0; k < P->n_parts; k++) {
            unsigned kd = P->cls[k][j] & LRP_CLS_KIND;
            kind_undef |= kd == LRP_K_UNDEF;
            kind_skip |= kd == LRP_K_SKIP;
            kind_empty |= kd == LRP_K_EMPTY;
            if (P->cls[k][j] & LRP_CLS_ZERO && P->cls[k][j] & (LRP_CLS_ADD_POS | LRP_CLS_ADD_NEG))
                S->stab0++;
        }
        kind_drop = P->abs[LRP_ABS_DROPPED] && !mpfr_zero_p((mpfr_srcptr)P->abs[LRP_ABS_DROPPED] + j);
        if (st[j] == NV_UNDEF && !kind_undef)
            fail_msg("%s: unit %d: naive undefined, reference not", where, j);
        if (st[j] == NV_SKIP && !kind_skip)
            fail_msg("%s: unit %d: naive skip_zero, reference not", where, j);
        if (st[j] == NV_EMPTY && !kind_empty)
            fail_msg("%s: unit %d: naive empty part, reference not", where, j);
        if (st[j] == NV_DROPPED && !kind_drop && rout[j] != 0)
            fail_msg("%s: unit %d: naive dropped, reference not", where, j);
        S->undef += kind_undef;
        S->skip += kind_skip;
        S->empty += kind_empty;
        S->dropped += st[j] == NV_DROPPED;
        mpfr_set_zero(tot, 1);
        for (int k = 0; k < LRP_ABS_COUNT; k++)
            if (P->abs[k])
                mpfr_add(tot, tot, (mpfr_srcptr)P->abs[k] + j, MPFR_RNDN);
        if (!close_q(tot, ab[j], ug[j], R->prec))
            fail_msg("%s: unit %d absorbed %.17g, exact %.17g", where, j,
                     mpfr_get_d(tot, MPFR_RNDN), mpq_get_d(ab[j]));
        /* no NaN ever in the reference */
        if (mpfr_nan_p(rel))
            fail_msg("%s: NaN", where);
    }
    if (!(P->cons_resid <= ldexp(1.0, -(R->prec - 10))))
        fail_msg("%s: conservation residual %g", where, P->cons_resid);
    if (P->flags.bits & (1u << LRP_NF_NAN))
        fail_msg("%s: NaN flag in the reference", where);
    mpfr_clear(tot);
    mpq_clear(sc);
    for (int i = 0; i < nin; i++) {
        mpq_clear(Rin[i]);
        mpq_clear(gau[i]);
    }
    for (int j = 0; j < nout; j++) {
        mpq_clear(ab[j]);
        mpq_clear(ug[j]);
    }
    free(Rin);
    free(gau);
    free(ab);
    free(ug);
    free(x);
    free(w);
    lrp_ref_free(R);
    lrp_ref_free(Rs);
    lrp_net_free(net);
    S->runs++;
}

static void run_rule(rcase rc)
{
    stats S;
    memset(&S, 0, sizeof S);
    const float epss[] = {0x1.0c6f7ap-20f, 0.0f, 0.0625f};
    for (int gi = 0; gi < NGEOM; gi++)
        for (int bias = 0; bias < 2; bias++)
            for (int stab = 0; stab < LRP_STAB_COUNT; stab++)
                for (int in = 0; in < IN_COUNT; in++)
                    for (int e = 0; e < 3; e++) {
                        if (rc.spec.rule == LRP_RULE_ZBOX && stab == LRP_STAB_SIGNBIT &&
                            (in == IN_ZERO || in == IN_NEGZERO))
                            continue; /* sign of a zero z^B den: grouping-dependent */
                        run_case(&rc, &geoms[gi], bias, stab, in, epss[e], &S);
                    }
    printf("    %-28s %ld runs, %ld values; units: %ld undefined, %ld skip_zero, %ld empty, "
           "%ld dropped, %ld stabilized at 0\n",
           rc.name, S.runs, S.values, S.undef, S.skip, S.empty, S.dropped, S.stab0);
}

static void t_lrp0(void **s) { (void)s; run_rule(mk("lrp0", LRP_RULE_ZERO, NV_LRP0)); }
static void t_eps(void **s) { (void)s; run_rule(mk("epsilon", LRP_RULE_EPSILON, NV_EPS)); }
static void t_gamma(void **s)
{
    (void)s;
    rcase c = mk("gamma", LRP_RULE_GAMMA, NV_GAMMA);
    run_rule(c);
    c.name = "gamma/zennit_drop0";
    c.spec.flags = LRP_F_ZENNIT_GAMMA_DROP0;
    run_rule(c);
}
static void t_gamma_gen(void **s)
{
    (void)s;
    rcase c = mk("gamma/generalized", LRP_RULE_GAMMA, NV_GAMMA);
    c.spec.flags = LRP_F_GAMMA_GENERALIZED;
    c.spec.gamma = 0.5f;
    run_rule(c);
    c.name = "gamma/generalized_drop0";
    c.spec.flags |= LRP_F_ZENNIT_GAMMA_DROP0;
    run_rule(c);
}
static void t_alphabeta(void **s)
{
    (void)s;
    rcase c = mk("alpha2beta1", LRP_RULE_ALPHABETA, NV_AB);
    c.spec.alpha = 2.0f;
    c.spec.beta = 1.0f;
    run_rule(c);
    c.name = "alpha1beta0";
    c.spec.alpha = 1.0f;
    c.spec.beta = 0.0f;
    run_rule(c);
}
static void t_alphabeta_peers(void **s)
{
    (void)s;
    rcase c = mk("alpha2beta1/innv_fullbias", LRP_RULE_ALPHABETA, NV_AB);
    c.spec.alpha = 2.0f;
    c.spec.beta = 1.0f;
    c.spec.flags = LRP_F_INNV_AB_FULLBIAS;
    run_rule(c);
    c.name = "alpha1beta0/captum";
    c.spec.alpha = 1.0f;
    c.spec.beta = 0.0f;
    c.spec.flags = LRP_F_CAPTUM_A1B0;
    run_rule(c);
}
/* Captum's GammaRule: weights a (w + g w+), bias b unmodified */
static void t_gamma_captum(void **s)
{
    (void)s;
    rcase c = mk("gamma/captum_fullbias", LRP_RULE_GAMMA, NV_GAMMA);
    c.spec.flags = LRP_F_CAPTUM_GAMMA_FULLBIAS;
    run_rule(c);
}
static void t_zplus(void **s) { (void)s; run_rule(mk("zplus", LRP_RULE_ZPLUS, NV_AB)); }
static void t_wsquare(void **s) { (void)s; run_rule(mk("wsquare", LRP_RULE_WSQUARE, NV_WSQUARE)); }
static void t_flat(void **s) { (void)s; run_rule(mk("flat", LRP_RULE_FLAT, NV_FLAT)); }
static void t_zbox(void **s)
{
    (void)s;
    rcase c = mk("zbox", LRP_RULE_ZBOX, NV_ZBOX);
    c.spec.low = -1.0f;
    c.spec.high = 1.5f;
    run_rule(c);
}

/* ---- special cases, asserted directly ---- */

static lrp_ref_result *dead_unit_run(lrp_stab_id stab, float eps, lrp_net **netp)
{
    geom g = {1, 3, 1, 1, 2, 1, 1, 1, 0, 0, 0, 0, 1};
    float x[3] = {1.0f, 2.0f, 3.0f};
    float w[6] = {1.0f, 1.0f, -1.0f, 0.5f, 0.25f, 1.0f}; /* unit 0: z = 0 exactly */
    float rout[2] = {3.0f, 1.0f};
    lrp_rule_spec rs = lrp_rule_default(LRP_RULE_EPSILON);
    rs.stab = stab;
    rs.eps = eps;
    lrp_net *net = lin_net(&g, x, w, NULL, rout, &rs);
    lrp_ref_result *R;
    lrp_err err;
    if (lrp_ref_run(&R, net, NULL, &err))
        fail_msg("%s", err.msg);
    *netp = net;
    return R;
}

static void t_special_dead_unit(void **s)
{
    (void)s;
    lrp_net *net;
    /* sign0_zero: eps is never added at 0 -> undefined, recorded, no NaN */
    lrp_ref_result *R = dead_unit_run(LRP_STAB_SIGN0_ZERO, 0x1p-20f, &net);
    lrp_pipe_layer *P = &R->pipe->L[1];
    assert_true(P->flags.bits & (1u << LRP_NF_UNDEFINED));
    assert_true(P->flags.bits & (1u << LRP_NF_ZERO_DEN));
    assert_int_equal(P->flags.unit[LRP_NF_UNDEFINED], 0);
    assert_int_equal(P->flags.sample[LRP_NF_UNDEFINED], 0);
    assert_true(mpfr_cmp_ui((mpfr_srcptr)P->abs[LRP_ABS_UNDEF], 3) == 0);
    for (int i = 0; i < 3; i++)
        assert_true(mpfr_number_p(lrp_ref_rel(R, 0) + i));
    assert_true(P->cons_resid < 1e-30);
    lrp_ref_free(R);
    lrp_net_free(net);
    /* sign0_pos: +eps at 0: finite, the stabilizer absorbs R_j */
    R = dead_unit_run(LRP_STAB_SIGN0_POS, 0x1p-20f, &net);
    P = &R->pipe->L[1];
    assert_false(P->flags.bits & (1u << LRP_NF_UNDEFINED));
    assert_true(P->flags.bits & (1u << LRP_NF_STAB_AT_ZERO));
    assert_true(mpfr_cmp_ui((mpfr_srcptr)P->abs[LRP_ABS_STAB], 3) == 0);
    lrp_ref_free(R);
    lrp_net_free(net);
    /* skip_zero: R_j passes through (used as if divided by 1): the inputs
     * get z_ij * R_j; here sum_i z_ij = 0, so the stabilizer kind holds R_j */
    R = dead_unit_run(LRP_STAB_SKIP_ZERO, 0x1p-20f, &net);
    P = &R->pipe->L[1];
    assert_true(P->flags.bits & (1u << LRP_NF_SKIP_ZERO));
    assert_true((P->cls[0][0] & LRP_CLS_KIND) == LRP_K_SKIP);
    /* R_0 = z_00 R_0 / 1 + z_01 R_1 / z_1 = 1 * 3 + 0.5 * 1 / (0.5 + 0.5 + 3 + eps) */
    assert_true(mpfr_cmp_d(lrp_ref_rel(R, 0) + 0, 3.0) > 0);
    lrp_ref_free(R);
    lrp_net_free(net);
    /* lrp0 (eps = 0) with sign0_pos: still undefined (no effective stabilizer) */
    R = dead_unit_run(LRP_STAB_SIGN0_POS, 0.0f, &net);
    P = &R->pipe->L[1];
    assert_true(P->flags.bits & (1u << LRP_NF_UNDEFINED));
    lrp_ref_free(R);
    lrp_net_free(net);
}

static void t_special_signbit(void **s)
{
    (void)s;
    /* den = -0 exactly (every product -0): signbit adds -eps, sign0_pos +eps */
    geom g = {1, 2, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1};
    float x[2] = {-0.0f, -0.0f}, w[2] = {1.0f, 2.0f}, rout[1] = {1.0f};
    for (int sb = 0; sb < 2; sb++) {
        lrp_rule_spec rs = lrp_rule_default(LRP_RULE_EPSILON);
        rs.stab = sb ? LRP_STAB_SIGNBIT : LRP_STAB_SIGN0_POS;
        lrp_net *net = lin_net(&g, x, w, NULL, rout, &rs);
        lrp_ref_result *R;
        lrp_err err;
        if (lrp_ref_run(&R, net, NULL, &err))
            fail_msg("%s", err.msg);
        lrp_pipe_layer *P = &R->pipe->L[1];
        assert_true(mpfr_zero_p((mpfr_srcptr)P->den[0]));
        assert_true(mpfr_signbit((mpfr_srcptr)P->den[0]));
        assert_true(P->flags.bits & (1u << LRP_NF_ZERO_DEN_NEG));
        assert_true((P->cls[0][0] & (sb ? LRP_CLS_ADD_NEG : LRP_CLS_ADD_POS)) != 0);
        lrp_ref_free(R);
        lrp_net_free(net);
    }
}

/* ---- the accumulator against mpfr_sum ---- */

static double rand_double_extreme(void)
{
    int kind = (int)rbelow(6);
    double m = (double)(int64_t)(rnd() >> 11) * 0x1p-53;
    if (rnd() & 1)
        m = -m;
    switch (kind) {
    case 0: return ldexp(m, (int)rbelow(2046) - 1023);         /* anywhere */
    case 1: return ldexp((double)(int64_t)(rnd() >> 40), -1074); /* subnormal */
    case 2: return ldexp(m, 1000 + (int)rbelow(23));            /* huge */
    default: return ldexp(m, (int)rbelow(100) - 50);
    }
}

static void t_accumulator(void **s)
{
    (void)s;
    ref_acc *A = lrp_ref_acc_new();
    mpfr_t r1, r2;
    mpfr_init2(r1, 128);
    mpfr_init2(r2, 128);
    double v[3000];
    mpfr_t mv[3000];
    mpfr_ptr pp[3000];
    for (int i = 0; i < 3000; i++) {
        mpfr_init2(mv[i], 53);
        pp[i] = mv[i];
    }
    for (int trial = 0; trial < 400; trial++) {
        int n = 1 + (int)rbelow(trial < 50 ? 3000 : 200);
        for (int i = 0; i < n; i++)
            v[i] = rand_double_extreme();
        if (trial % 3 == 0) /* cancellation: append the negated prefix */
            for (int i = n / 2; i < n; i++)
                v[i] = -v[i - n / 2] * (i % 7 == 0 ? 1.0 : 1.0);
        lrp_ref_acc_clear(A);
        for (int i = 0; i < n; i++) {
            lrp_ref_acc_add(A, v[i]);
            mpfr_set_d(mv[i], v[i], MPFR_RNDN);
        }
        lrp_ref_acc_get(r1, A, 0, 0);
        mpfr_sum(r2, pp, (unsigned long)n, MPFR_RNDN);
        if (!(mpfr_equal_p(r1, r2)))
            fail_msg("accumulator trial %d n %d: %.17g vs mpfr_sum %.17g (seed %llu)", trial, n,
                     mpfr_get_d(r1, MPFR_RNDN), mpfr_get_d(r2, MPFR_RNDN),
                     (unsigned long long)g_seed);
    }
    /* split29: pieces reassemble exactly */
    mpfr_t x, y;
    mpfr_init2(x, 128);
    mpfr_init2(y, 400);
    gmp_randstate_t gr;
    gmp_randinit_default(gr);
    gmp_randseed_ui(gr, (unsigned long)g_seed);
    for (int trial = 0; trial < 1000; trial++) {
        mpfr_urandomb(x, gr);
        mpfr_mul_2si(x, x, (long)rbelow(400) - 200, MPFR_RNDN);
        if (rnd() & 1)
            mpfr_neg(x, x, MPFR_RNDN);
        if (mpfr_zero_p(x))
            continue;
        double d[8] = {0};
        long scale = mpfr_get_exp(x) + (long)rbelow(50);
        int k = lrp_ref_split29(d, x, scale);
        assert_true(k >= 1 && k <= 5);
        mpfr_set_zero(y, 1);
        for (int q = 0; q < k; q++) {
            double m = d[q];
            int e;
            frexp(m, &e);
            /* <= 29 significant bits */
            assert_true(ldexp(m, 29 - e) == floor(ldexp(m, 29 - e)));
            mpfr_add_d(y, y, m, MPFR_RNDN);
        }
        mpfr_mul_2si(y, y, scale, MPFR_RNDN);
        assert_true(mpfr_equal_p(x, y));
    }
    gmp_randclear(gr);
    mpfr_clear(x);
    mpfr_clear(y);
    for (int i = 0; i < 3000; i++)
        mpfr_clear(mv[i]);
    mpfr_clear(r1);
    mpfr_clear(r2);
    lrp_ref_acc_free(A);
}

/* ---- multi-layer nets ---- */

static void set_layer_geom(lrp_layer *l, int k, int s, int p)
{
    l->kh = l->kw = k;
    l->sh = l->sw = s;
    l->pt = l->pb = l->pl = l->pr = p;
}

static float *rand_vec(int64_t n, float scale)
{
    float *v = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        v[i] = rsym24() * scale;
    return v;
}

static int add1(lrp_net *net, lrp_layer_kind kind, const char *name, int src)
{
    lrp_err err;
    int i = lrp_net_add(net, kind, name, &err);
    assert_true(i >= 0);
    net->layers[i].n_in = 1;
    net->layers[i].in[0] = src;
    return i;
}

/* in(2,6,6) -> conv(4,3x3,p1) -> bn -> relu -> maxpool 2x2 -> [conv1x1 -> add(pool, c1)]
 * -> concat(add, pool) -> avgpool 3x3 s1 p1 -> gap -> dense(3), batch 2 */
static lrp_net *multi_net(unsigned bnflags, lrp_rule_id lin_rule, lrp_rule_id add_rule)
{
    lrp_err err;
    lrp_net *net = lrp_net_new();
    net->batch = 2;
    int L0 = lrp_net_add(net, LRP_LAYER_INPUT, "in", &err);
    net->layers[L0].shape.rank = 3;
    net->layers[L0].shape.d[0] = 2;
    net->layers[L0].shape.d[1] = 6;
    net->layers[L0].shape.d[2] = 6;
#define ADD(kind, name, src) add1(net, kind, name, src)
    int c1 = ADD(LRP_LAYER_CONV2D, "conv1", L0);
    net->layers[c1].units = 4;
    set_layer_geom(&net->layers[c1], 3, 1, 1);
    net->layers[c1].has_bias = 1;
    int bn = ADD(LRP_LAYER_BATCHNORM, "bn", c1);
    net->layers[bn].bn_eps = 0.0f;
    int re = ADD(LRP_LAYER_RELU, "relu", bn);
    int mp = ADD(LRP_LAYER_MAXPOOL2D, "pool", re);
    set_layer_geom(&net->layers[mp], 2, 2, 0);
    int c2 = ADD(LRP_LAYER_CONV2D, "conv2", mp);
    net->layers[c2].units = 4;
    net->layers[c2].has_bias = 1;
    int ad = lrp_net_add(net, LRP_LAYER_ADD, "add", &err);
    net->layers[ad].n_in = 2;
    net->layers[ad].in[0] = mp;
    net->layers[ad].in[1] = c2;
    int cc = lrp_net_add(net, LRP_LAYER_CONCAT, "cat", &err);
    net->layers[cc].n_in = 2;
    net->layers[cc].in[0] = ad;
    net->layers[cc].in[1] = mp;
    int ap = ADD(LRP_LAYER_AVGPOOL2D, "avg", cc);
    set_layer_geom(&net->layers[ap], 3, 1, 1);
    int gp = ADD(LRP_LAYER_GLOBALAVGPOOL, "gap", ap);
    int de = ADD(LRP_LAYER_DENSE, "fc", gp);
    net->layers[de].units = 3;
    net->layers[de].has_bias = 1;
#undef ADD
    if (lrp_net_infer(net, "multi", &err))
        fail_msg("%s", err.msg);
    net->layers[c1].w = rand_vec(4 * 2 * 9, 0.5f);
    net->layers[c1].b = rand_vec(4, 0.1f);
    net->layers[c2].w = rand_vec(4 * 4, 0.5f);
    net->layers[c2].b = rand_vec(4, 0.1f);
    net->layers[de].w = rand_vec(3 * 8, 1.0f);
    net->layers[de].b = rand_vec(3, 0.1f);
    lrp_layer *B = &net->layers[bn];
    B->bn_gamma = rand_vec(4, 1.0f);
    B->bn_beta = rand_vec(4, 0.2f);
    B->bn_mean = rand_vec(4, 0.2f);
    B->bn_var = malloc(4 * sizeof(float));
    const float sq[4] = {4.0f, 0.25f, 1.0f, 16.0f}; /* var + eps perfect squares */
    memcpy(B->bn_var, sq, sizeof sq);
    net->input = rand_vec(2 * 72, 1.0f);
    net->target = malloc(2 * sizeof(int32_t));
    net->target[0] = 1;
    net->target[1] = -1; /* argmax */
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        if (l->kind == LRP_LAYER_DENSE || l->kind == LRP_LAYER_CONV2D) {
            l->rule = lrp_rule_default(lin_rule);
            if (lin_rule == LRP_RULE_ALPHABETA) {
                l->rule.alpha = 2.0f;
                l->rule.beta = 1.0f;
            }
        }
        if (l->kind == LRP_LAYER_ADD || l->kind == LRP_LAYER_BATCHNORM) {
            l->rule = lrp_rule_default(add_rule);
            if (add_rule == LRP_RULE_ALPHABETA) {
                l->rule.alpha = 2.0f;
                l->rule.beta = 1.0f;
            }
        }
        if (l->kind == LRP_LAYER_AVGPOOL2D || l->kind == LRP_LAYER_GLOBALAVGPOOL)
            l->rule = lrp_rule_default(LRP_RULE_EPSILON);
    }
    net->layers[bn].rule.flags |= bnflags;
    if (lrp_net_infer(net, "multi", &err))
        fail_msg("%s", err.msg);
    return net;
}

static void check_conservation(const lrp_ref_result *R, const char *what)
{
    for (int i = 1; i < R->n_layers; i++)
        if (!(R->pipe->L[i].cons_resid <= ldexp(1.0, -(R->prec - 10))))
            fail_msg("%s: layer %d conservation residual %g", what, i, R->pipe->L[i].cons_resid);
}

static void t_multi_layer(void **s)
{
    (void)s;
    const lrp_rule_id lin[] = {LRP_RULE_EPSILON, LRP_RULE_ZPLUS, LRP_RULE_ALPHABETA,
                               LRP_RULE_GAMMA};
    const lrp_rule_id add[] = {LRP_RULE_ZERO, LRP_RULE_EPSILON, LRP_RULE_ALPHABETA};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 3; b++) {
            lrp_err err;
            lrp_net *ne = multi_net(0, lin[a], add[b]);
            lrp_net *nf = multi_net(LRP_F_BN_FINE, lin[a], add[b]);
            lrp_net *nc = multi_net(LRP_F_BN_CANONIZE, lin[a], add[b]);
            lrp_ref_result *Re, *Rf, *Rc;
            if (lrp_ref_run(&Re, ne, NULL, &err) || lrp_ref_run(&Rf, nf, NULL, &err) ||
                lrp_ref_run(&Rc, nc, NULL, &err))
                fail_msg("%s", err.msg);
            check_conservation(Re, "explicit");
            check_conservation(Rf, "fine");
            check_conservation(Rc, "canonized");
            int bn = lrp_net_find(ne, "bn");
            lrp_pipe_layer *Pe = &Re->pipe->L[bn], *Pf = &Rf->pipe->L[bn];
            assert_non_null(Pe->abs[LRP_ABS_BN_SHIFT]);
            assert_non_null(Pf->abs[LRP_ABS_BN_MU]);
            assert_non_null(Pf->abs[LRP_ABS_BN_BETA]);
            if (add[b] == LRP_RULE_ZERO) {
                /* explicit BN with lrp0: R_x + R_b = R per value (to rounding) */
                mpfr_t t;
                mpfr_init2(t, 256);
                for (int64_t i = 0; i < Pe->n * 2; i++) {
                    if ((Pe->cls[0][i] & LRP_CLS_KIND) != LRP_K_NORMAL)
                        continue;
                    mpfr_add(t, (mpfr_srcptr)Pe->rin[0] + i,
                             (mpfr_srcptr)Pe->abs[LRP_ABS_BN_SHIFT] + i, MPFR_RNDN);
                    mpfr_sub(t, t, (mpfr_srcptr)Pe->rel + i, MPFR_RNDN);
                    double d = fabs(mpfr_get_d(t, MPFR_RNDN));
                    double sc = fabs(mpfr_get_d((mpfr_srcptr)Pe->rel + i, MPFR_RNDN)) +
                                fabs(mpfr_get_d((mpfr_srcptr)Pe->rin[0] + i, MPFR_RNDN));
                    if (!(d <= ldexp(sc, -110)))
                        fail_msg("BN explicit: R_x + R_b != R at %lld (%g)", (long long)i, d);
                }
                mpfr_clear(t);
            }
            /* explicit vs canonized: the input relevance differs */
            int diff = 0;
            for (int64_t i = 0; i < 2 * 72; i++)
                diff |= !mpfr_equal_p(lrp_ref_rel(Re, 0) + i, lrp_ref_rel(Rc, 0) + i);
            assert_true(diff);
            /* canonized BN passes relevance unchanged */
            lrp_pipe_layer *Pc = &Rc->pipe->L[bn];
            for (int64_t i = 0; i < Pc->n * 2; i++)
                assert_true(mpfr_same((mpfr_srcptr)Pc->rin[0] + i, (mpfr_srcptr)Pc->rel + i));
            assert_true(Rc->pipe->L[bn - 1].fold_b != NULL);
            assert_int_equal(Rc->pipe->L[bn - 1].folded_into, bn);
            /* output start: sample 0 target 1 holds the logit */
            int last = ne->n_layers - 1;
            assert_true(mpfr_equal_p(lrp_ref_rel(Re, last) + 1, lrp_ref_act(Re, last) + 1));
            assert_true(mpfr_zero_p(lrp_ref_rel(Re, last) + 0));
            lrp_ref_free(Re);
            lrp_ref_free(Rf);
            lrp_ref_free(Rc);
            lrp_net_free(ne);
            lrp_net_free(nf);
            lrp_net_free(nc);
        }
}

/* The digit kernel on its own, against sums formed exactly in MPFR: the
 * highest keys it can reach (values at the tensor's top level whose only
 * nonzero digit is their last, next to values using every digit, times the
 * largest binary32 weights, bw = 16: its fixed-count digit loop then runs
 * 2 nd - 1 digits above the top level; ASan sees a bin past the end if the
 * accumulator is short), ReLU zeros, +-0 weights and each weight selection
 * (w, w+, w-), at p = 128 and p + 64.  The top value's power of two takes
 * 16 exponents in turn, so its bit falls in the last digit for some of
 * them whatever the tensor's grid.  The kernel's sum is an exact integer
 * times a power of two, so it is compared for equality with the exact sum
 * (MPFR at 4000 bits holds every partial sum here exactly: the terms span
 * about 400 bits). */
static void t_fx_keys_exact(void **s)
{
    (void)s;
    enum { n = 97 };
    int64_t ii[n], ww[n], wd[n];
    float w[n];
    for (int i = 0; i < n; i++) {
        ii[i] = i;
        ww[i] = i;
        /* the largest exponents (bw = 16), +-0, and ordinary weights */
        w[i] = i % 5 == 0   ? (i % 2 ? -0.0f : 0.0f)
               : i % 4 == 0 ? ldexpf((float)(1 + rbelow(1u << 23)) / 8388608.0f + 1.0f,
                                     120 + (int)rbelow(7))
                            : ((float)rbelow(1u << 24) - 8388608.0f) / 8388608.0f;
        if (i % 7 == 0)
            w[i] = -w[i];
    }
    /* the top values' weights: the largest, of both signs */
    w[1] = 1.5f * 0x1p126f;
    w[2] = -1.25f * 0x1p126f;
    lrp_ref_fx_weights(wd, w, n);
    mpz_t z;
    mpz_init(z);
    mpfr_t ex, pr, got;
    mpfr_inits2(4000, ex, pr, got, (mpfr_ptr)0);
    /* pi: p = 128 / p + 64; with a third of the values zero (the kernel's
     * two passes) and with 4 of 97 (fewer than 1 in 8: its one pass, for
     * all weights) */
    for (int pi = 0; pi < 4; pi++) {
        int last_only = 0; /* exponents with the top value in its last digit alone */
        mpfr_prec_t p = pi & 1 ? 192 : 128;
        const int zstep = pi < 2 ? 3 : 29;
        mpfr_ptr x = malloc(n * sizeof(__mpfr_struct)); /* contiguous, as a tensor */
        assert_non_null(x);
        for (int i = 0; i < n; i++) {
            mpfr_init2(x + i, p);
            if (i % zstep == 0)
                mpfr_set_zero(x + i, i % 2 ? -1 : 1); /* ReLU zeros */
            else {
                mpfr_set_ui(x + i, 0, MPFR_RNDN);
                for (int k = 0; k < 4; k++) { /* a full mantissa of random bits */
                    mpfr_mul_2ui(x + i, x + i, 48, MPFR_RNDN);
                    mpfr_add_ui(x + i, x + i, (unsigned long)rbelow(1u << 30) * 262144u + rbelow(262144),
                                MPFR_RNDN);
                }
                mpfr_mul_2si(x + i, x + i, -(long)rbelow(40) - 150, MPFR_RNDN);
                if (i % 2)
                    mpfr_neg(x + i, x + i, MPFR_RNDN);
            }
        }
        for (int t = 0; t < 16; t++) {
            /* x[1] and x[2], above every other value: the kept taps next to
             * each other, so one of them is in the accumulator's last bank */
            mpfr_set_ui_2exp(x + 1, 1, 60 + t, MPFR_RNDN);
            mpfr_set_si_2exp(x + 2, -1, 60 + t, MPFR_RNDN);
            ref_fx f;
            assert_int_equal(lrp_ref_fx_build(&f, x, n), 1);
            assert_int_equal(f.cm, f.nd); /* the fixed-count loop runs every digit */
            assert_int_equal(f.nzero < n / 8, zstep == 29);
            {
                /* the top value's bit on the tensor's 16-bit grid: digit
                 * (64 l - 1 + s) / 48 of its nd, s its shift on the grid */
                long l = (p + 63) / 64, lsb = (long)mpfr_get_exp(x + 1) - 64 * l;
                long sh = (lsb - f.base) & 15;
                last_only += (int)(f.meta[1] & 127) == 1 && (64 * l - 1 + sh) / 48 == f.nd - 1;
            }
            ref_fxacc *A = lrp_ref_fxacc_new(f.nlev);
            assert_non_null(A);
            for (int wm = 0; wm < 3; wm++) {
                int mod = wm == 0 ? LRP_WM_ID : wm == 1 ? LRP_WM_POS : LRP_WM_NEG;
                mpfr_set_zero(ex, 1);
                for (int i = 0; i < n; i++) {
                    if ((mod == LRP_WM_POS && !(w[i] > 0)) || (mod == LRP_WM_NEG && !(w[i] < 0)))
                        continue;
                    mpfr_set_flt(pr, w[i], MPFR_RNDN);
                    mpfr_mul(pr, pr, x + i, MPFR_RNDN); /* exact at 4000 bits */
                    mpfr_add(ex, ex, pr, MPFR_RNDN);    /* exact: see above */
                }
                assert_false(mpfr_zero_p(ex));
                lrp_ref_fxacc_clear(A);
                lrp_ref_fxacc_dot(A, &f, 0, ii, ww, n, wd, mod, 0, 0);
                long e;
                lrp_ref_fxacc_get_z(z, &e, A, &f);
                mpfr_set_z_2exp(got, z, e, MPFR_RNDN); /* exact: z has < 4000 bits */
                assert_true(mpfr_equal_p(got, ex));
            }
            lrp_ref_fxacc_free(A);
            lrp_ref_fx_free(&f);
        }
        for (int i = 0; i < n; i++)
            mpfr_clear(x + i);
        free(x);
        /* the edge is reached: at p = 128 the top bit of a shifted 128-bit
         * mantissa (bit 127 + s, s < 16) is always in digit 2 of 0..2; at
         * p + 64 (bit 191 + s) in digit 4 of 0..4 unless s = 0 */
        print_message("t_fx_keys_exact: p = %d: %d of 16\n", (int)p, last_only);
        assert_true(last_only >= 15);
    }
    mpfr_clears(ex, pr, got, (mpfr_ptr)0);
    mpz_clear(z);
}

/* The digit kernel's fold (bins carried up before they could overflow: in
 * practice only for fan-ins beyond a million) run after every tap and on
 * every bin beyond 2^70: the same bits as the unfolded run, everywhere. */
static void t_fold_bitwise(void **s)
{
    (void)s;
    lrp_net *net = multi_net(0, LRP_RULE_EPSILON, LRP_RULE_EPSILON);
    lrp_err err;
    lrp_ref_result *R1, *R2;
    lrp_ref_opts o = lrp_ref_opts_default();
    assert_int_equal(lrp_ref_run(&R1, net, &o, &err), LRP_OK);
    int at = lrp_ref_fx_fold_at, bits = lrp_ref_fx_fold_bits;
    lrp_ref_fx_fold_at = 1;
    lrp_ref_fx_fold_bits = 70;
    lrp_status st = lrp_ref_run(&R2, net, &o, &err);
    lrp_ref_fx_fold_at = at;
    lrp_ref_fx_fold_bits = bits;
    assert_int_equal(st, LRP_OK);
    assert_true(R1->fast_calls > 0);
    for (int li = 0; li < net->n_layers; li++)
        for (int64_t i = 0; i < R1->pipe->L[li].n * net->batch; i++) {
            assert_true(mpfr_same(lrp_ref_rel(R1, li) + i, lrp_ref_rel(R2, li) + i));
            assert_true(mpfr_same(lrp_ref_act(R1, li) + i, lrp_ref_act(R2, li) + i));
        }
    lrp_ref_free(R1);
    lrp_ref_free(R2);
    lrp_net_free(net);
}

static void t_threads_bitwise(void **s)
{
    (void)s;
    lrp_net *net = multi_net(0, LRP_RULE_EPSILON, LRP_RULE_EPSILON);
    lrp_err err;
    lrp_ref_result *R1, *R2, *R3;
    lrp_ref_opts o = lrp_ref_opts_default();
    o.threads = 1;
    assert_int_equal(lrp_ref_run(&R1, net, &o, &err), LRP_OK);
    o.threads = 2;
    assert_int_equal(lrp_ref_run(&R2, net, &o, &err), LRP_OK);
    o.threads = 3;
    o.slow = 1;
    assert_int_equal(lrp_ref_run(&R3, net, &o, &err), LRP_OK);
    lrp_ref_result *R4, *R5;
    o.threads = 2;
    o.slow = 2;
    assert_int_equal(lrp_ref_run(&R4, net, &o, &err), LRP_OK);
    o.slow = 0;
    o.lean = 1;
    assert_int_equal(lrp_ref_run(&R5, net, &o, &err), LRP_OK);
    assert_null(R5->L[1].kappa[0]);
    assert_true(R1->fast_calls > 0);
    for (int li = 0; li < net->n_layers; li++) {
        lrp_pipe_layer *A = &R1->pipe->L[li], *B = &R2->pipe->L[li], *C = &R3->pipe->L[li];
        for (int64_t i = 0; i < A->n * net->batch; i++) {
            assert_true(mpfr_same((mpfr_srcptr)A->rel + i, (mpfr_srcptr)B->rel + i));
            assert_true(mpfr_same((mpfr_srcptr)A->rel + i, (mpfr_srcptr)C->rel + i));
            assert_true(mpfr_same((mpfr_srcptr)A->rel + i, lrp_ref_rel(R4, li) + i));
            assert_true(mpfr_same((mpfr_srcptr)A->rel + i, lrp_ref_rel(R5, li) + i));
            assert_true(mpfr_same((mpfr_srcptr)A->act + i, (mpfr_srcptr)B->act + i));
        }
        for (int k = 0; k < LRP_ABS_COUNT; k++)
            if (A->abs[k])
                for (int64_t j = 0; j < A->n_units * net->batch; j++)
                    assert_true(mpfr_same((mpfr_srcptr)A->abs[k] + j, (mpfr_srcptr)B->abs[k] + j));
    }
    lrp_ref_free(R1);
    lrp_ref_free(R2);
    lrp_ref_free(R3);
    lrp_ref_free(R4);
    lrp_ref_free(R5);
    lrp_net_free(net);
}

/* Max-pool ties (first index vs split), avg-pool as a z-rule with both
 * divisor conventions, and the binary32 range flags. */
static lrp_net *pool_net(lrp_layer_kind pk, int k, int st, int pad, int cip, unsigned flags,
                         const float *x, int C, int H, int W)
{
    lrp_err err;
    lrp_net *net = lrp_net_new();
    int i0 = lrp_net_add(net, LRP_LAYER_INPUT, "in", &err);
    net->layers[i0].shape.rank = 3;
    net->layers[i0].shape.d[0] = C;
    net->layers[i0].shape.d[1] = H;
    net->layers[i0].shape.d[2] = W;
    int p = add1(net, pk, "pool", i0);
    set_layer_geom(&net->layers[p], k, st, pad);
    net->layers[p].count_include_pad = cip;
    net->layers[p].rule.flags |= flags;
    int f = add1(net, LRP_LAYER_FLATTEN, "flat", p);
    int d = add1(net, LRP_LAYER_DENSE, "fc", f);
    net->layers[d].units = 1;
    if (lrp_net_infer(net, "pool", &err))
        fail_msg("%s", err.msg);
    int64_t nf = lrp_shape_numel(&net->layers[f].shape);
    net->layers[d].w = malloc((size_t)nf * sizeof(float));
    for (int64_t i = 0; i < nf; i++)
        net->layers[d].w[i] = 1.0f;
    net->input = malloc(sizeof(float) * (size_t)(C * H * W));
    memcpy(net->input, x, sizeof(float) * (size_t)(C * H * W));
    net->target = malloc(sizeof(int32_t));
    net->target[0] = 0;
    return net;
}

static void t_pools_and_range_flags(void **s)
{
    (void)s;
    lrp_err err;
    /* 1 x 2 x 4: windows {1,1,0,1} (max 1, 3 ties) and {0,2,2,2} (max 2, 3 ties) */
    const float x[8] = {1, 1, 0, 2, 0, 1, 2, 2};
    for (int split = 0; split < 2; split++) {
        lrp_net *net = pool_net(LRP_LAYER_MAXPOOL2D, 2, 2, 0, 0,
                                split ? LRP_F_WTA_SPLIT_TIES : 0, x, 1, 2, 4);
        lrp_ref_result *R;
        assert_int_equal(lrp_ref_run(&R, net, NULL, &err), LRP_OK);
        mpfr_srcptr r = lrp_ref_rel(R, 0);
        /* dense: y = 1 + 2 = 3 = R_out; lrp0 gives 1 and 2 to the pool outputs */
        const double first[8] = {1, 0, 0, 2, 0, 0, 0, 0};
        for (int i = 0; i < 8; i++) {
            double want = split ? ((i == 0 || i == 1 || i == 5) ? 1.0 / 3 : (i == 3 || i == 6 || i == 7) ? 2.0 / 3 : 0)
                                : first[i];
            double got = mpfr_get_d(r + i, MPFR_RNDN);
            if (got != want) /* exact, or 1/3, 2/3 rounded to binary64 both ways */
                fail_msg("maxpool split %d: R[%d] = %.17g, want %.17g", split, i, got, want);
        }
        check_conservation(R, "maxpool");
        lrp_ref_free(R);
        lrp_net_free(net);
    }
    /* avg pool 2x2 stride 1 pad 1 on 1 x 3 x 3, lrp0: exact z-rule check */
    const float a[9] = {0.5f, 1.0f, 2.0f, 0.25f, 3.0f, 1.5f, 1.0f, 0.75f, 2.5f};
    for (int cip = 0; cip < 2; cip++) {
        lrp_net *net = pool_net(LRP_LAYER_AVGPOOL2D, 2, 1, 1, cip, 0, a, 1, 3, 3);
        int p = lrp_net_find(net, "pool");
        net->layers[p].rule = lrp_rule_default(LRP_RULE_ZERO);
        lrp_ref_result *R;
        assert_int_equal(lrp_ref_run(&R, net, NULL, &err), LRP_OK);
        /* R_i = a_i sum_{j containing i} R_j / (k_j y_j), with R_j = y_j (dense w = 1,
         * lrp0, R_out = sum y) -> R_i = a_i * sum_j 1 / k_j */
        for (int i = 0; i < 9; i++) {
            int yy = i / 3, xx = i % 3;
            double want = 0;
            for (int oy = 0; oy < 4; oy++)
                for (int ox = 0; ox < 4; ox++) {
                    if (!(oy - 1 <= yy && yy <= oy && ox - 1 <= xx && xx <= ox))
                        continue;
                    int kk = 0;
                    for (int ky = 0; ky < 2; ky++)
                        for (int kx = 0; kx < 2; kx++) {
                            int iy = oy - 1 + ky, ix = ox - 1 + kx;
                            kk += cip || (iy >= 0 && iy < 3 && ix >= 0 && ix < 3);
                        }
                    want += 1.0 / kk;
                }
            want *= a[i];
            double got = mpfr_get_d(lrp_ref_rel(R, 0) + i, MPFR_RNDN);
            if (fabs(got - want) > 1e-12 * fabs(want))
                fail_msg("avgpool cip %d: R[%d] = %.17g, want %.17g", cip, i, got, want);
        }
        check_conservation(R, "avgpool");
        lrp_ref_free(R);
        lrp_net_free(net);
    }
    /* binary32 range flags: R_0 = 2 * FLT_MAX overflows, tiny R_out underflows */
    geom g = {1, 2, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1};
    float xx2[2] = {2.0f, -1.0f}, w[2] = {1.0f, 1.0f};
    for (int t = 0; t < 2; t++) {
        float rout[1] = {t == 0 ? 0x1.fffffep127f : 0x1p-140f};
        lrp_rule_spec rs = lrp_rule_default(LRP_RULE_ZERO);
        lrp_net *net = lin_net(&g, xx2, w, NULL, rout, &rs);
        lrp_ref_result *R;
        assert_int_equal(lrp_ref_run(&R, net, NULL, &err), LRP_OK);
        unsigned want = 1u << (t == 0 ? LRP_NF_OVERFLOW32 : LRP_NF_UNDERFLOW32);
        assert_true(R->pipe->L[0].flags.bits & want);
        assert_int_equal(R->pipe->L[0].flags.unit[t == 0 ? LRP_NF_OVERFLOW32 : LRP_NF_UNDERFLOW32], 0);
        lrp_ref_free(R);
        lrp_net_free(net);
    }
}

/* BN canonization: the digit kernel applies wscale exactly; the slow kernel
 * forms wscale * w exactly; both must agree bit for bit, dens included. */
static void t_canonize_kernels(void **s)
{
    (void)s;
    /* flat: weights all ones, which the scale does not change (the fast
     * path drops it there; slow = 1 forms every product with it) */
    const lrp_rule_id lin[] = {LRP_RULE_EPSILON, LRP_RULE_ZPLUS, LRP_RULE_ALPHABETA,
                               LRP_RULE_GAMMA,   LRP_RULE_ZERO,  LRP_RULE_FLAT};
    for (int a = 0; a < 6; a++)
        for (int gen = 0; gen < 2; gen++) {
            if (gen && lin[a] != LRP_RULE_GAMMA)
                continue;
            lrp_net *net = multi_net(LRP_F_BN_CANONIZE, lin[a], LRP_RULE_EPSILON);
            if (gen)
                for (int i = 0; i < net->n_layers; i++)
                    if (net->layers[i].rule.rule == LRP_RULE_GAMMA)
                        net->layers[i].rule.flags |= LRP_F_GAMMA_GENERALIZED;
            /* a negative BN scale exercises the pos/neg swap */
            int bn = lrp_net_find(net, "bn");
            net->layers[bn].bn_gamma[1] = -fabsf(net->layers[bn].bn_gamma[1]);
            net->layers[bn].bn_gamma[2] = fabsf(net->layers[bn].bn_gamma[2]);
            lrp_err err;
            lrp_ref_result *Rf, *Rs;
            lrp_ref_opts o = lrp_ref_opts_default();
            assert_int_equal(lrp_ref_run(&Rf, net, &o, &err), LRP_OK);
            o.slow = 1;
            assert_int_equal(lrp_ref_run(&Rs, net, &o, &err), LRP_OK);
            assert_true(Rf->fast_calls > 0);
            /* flat: every linear step in the digit kernels (the scale,
             * which ones ignore, dropped), none in exact products */
            if (lin[a] == LRP_RULE_FLAT)
                assert_int_equal(Rf->slow_calls, 0);
            check_conservation(Rf, "canonized fast");
            for (int li = 0; li < net->n_layers; li++) {
                lrp_pipe_layer *A = &Rf->pipe->L[li], *B = &Rs->pipe->L[li];
                for (int64_t i = 0; i < A->n * net->batch; i++) {
                    if (!mpfr_same((mpfr_srcptr)A->rel + i, (mpfr_srcptr)B->rel + i))
                        fail_msg("canonized rule %s: layer %d rel %lld: %s vs %s",
                                 lrp_rule_name(lin[a]), li, (long long)i,
                                 dbl((mpfr_srcptr)A->rel + i), dbl((mpfr_srcptr)B->rel + i));
                }
                for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++)
                    if (A->den[k])
                        for (int64_t j = 0; j < A->n_units * net->batch; j++)
                            assert_true(mpfr_same((mpfr_srcptr)A->den[k] + j,
                                                  (mpfr_srcptr)B->den[k] + j));
            }
            lrp_ref_free(Rf);
            lrp_ref_free(Rs);
            lrp_net_free(net);
        }
}

/* BatchNorm under rule pass (Zennit without a canonizer, Captum's
 * IdentityRule): accepted by validation, and the relevance at the BN's input
 * is its output relevance bit for bit (no division, nothing absorbed). */
static void t_bn_pass(void **s)
{
    (void)s;
    lrp_net *net = multi_net(0, LRP_RULE_EPSILON, LRP_RULE_EPSILON);
    int bn = lrp_net_find(net, "bn");
    net->layers[bn].rule = lrp_rule_default(LRP_RULE_PASS);
    lrp_err err = {0};
    if (lrp_net_infer(net, "bn_pass", &err) != LRP_OK)
        fail_msg("BatchNorm with rule pass refused: %s", err.msg);
    lrp_ref_result *R;
    assert_int_equal(lrp_ref_run(&R, net, NULL, &err), LRP_OK);
    check_conservation(R, "bn pass");
    const lrp_pipe_layer *O = &R->pipe->L[bn], *I = &R->pipe->L[net->layers[bn].in[0]];
    assert_int_equal(O->n, I->n);
    int64_t nonzero = 0;
    for (int64_t i = 0; i < O->n * net->batch; i++) {
        if (!mpfr_same((mpfr_srcptr)O->rel + i, (mpfr_srcptr)I->rel + i))
            fail_msg("bn pass: cell %lld: %s in, %s out", (long long)i,
                     dbl((mpfr_srcptr)I->rel + i), dbl((mpfr_srcptr)O->rel + i));
        nonzero += !mpfr_zero_p((mpfr_srcptr)O->rel + i);
    }
    assert_true(nonzero > 0); /* relevance did reach the BN */
    lrp_ref_free(R);
    lrp_net_free(net);
}

static void t_selfproof(void **s)
{
    (void)s;
    lrp_net *net = multi_net(0, LRP_RULE_EPSILON, LRP_RULE_EPSILON);
    lrp_err err;
    lrp_ref_result *R;
    lrp_ref_opts o = lrp_ref_opts_default();
    o.prec = 20;
    o.proof_extra = 64;
    assert_int_equal(lrp_ref_run(&R, net, &o, &err), LRP_OK);
    int64_t un = 0;
    for (int i = 0; i < R->n_layers; i++) {
        assert_true(R->L[i].proved);
        un += R->L[i].unresolved;
        if (R->L[i].unresolved)
            assert_true(R->pipe->L[i].flags.bits & (1u << LRP_NF_UNRESOLVED));
    }
    assert_true(un > 0);
    lrp_ref_free(R);
    o.prec = 128;
    assert_int_equal(lrp_ref_run(&R, net, &o, &err), LRP_OK);
    for (int i = 0; i < R->n_layers; i++) {
        assert_int_equal(R->L[i].unresolved, 0);
        assert_false(R->pipe->L[i].flags.bits & (1u << LRP_NF_UNRESOLVED));
    }
    /* trace: hi + lo approximates the value to ~2^-48 relative */
    lrp_trace *t = lrp_net_trace_add(net, "reference", &err);
    assert_non_null(t);
    assert_int_equal(lrp_ref_fill_trace(t, R, &err), LRP_OK);
    assert_int_equal(t->precision, 128);
    for (int i = 0; i < R->n_layers; i++)
        for (int64_t j = 0; j < R->pipe->L[i].n * net->batch; j++) {
            mpfr_srcptr v = lrp_ref_rel(R, i) + j;
            assert_true(t->relevance[i][j] == mpfr_get_flt(v, MPFR_RNDN));
            double hl = (double)t->relevance[i][j] + (double)t->relevance_lo[i][j];
            double vd = mpfr_get_d(v, MPFR_RNDN);
            assert_true(fabs(hl - vd) <= ldexp(fabs(vd), -46) + 0x1p-140);
        }
    /* kappa on the dense layer: finite, >= 1 */
    int fc = lrp_net_find(net, "fc");
    assert_non_null(R->L[fc].kappa[0]);
    for (int j = 0; j < 6; j++)
        assert_true(R->L[fc].kappa[0][j] >= 1.0 - 1e-12);
    lrp_ref_free(R);
    lrp_net_free(net);
}

int main(void)
{
    /* a fixed default seed, so CI runs are reproducible (MPFR's tests do the
     * same unless GMP_CHECK_RANDOMIZE is set); LRP_TEST_SEED=<n> picks
     * another, LRP_TEST_SEED=random a fresh one from the clock */
    const char *e = getenv("LRP_TEST_SEED");
    if (e && !strcmp(e, "random"))
        g_seed = (uint64_t)time(NULL);
    else
        g_seed = e ? strtoull(e, NULL, 0) : UINT64_C(20261126);
    g_rng = g_seed;
    printf("test_reference: seed %llu (LRP_TEST_SEED to reproduce)\n",
           (unsigned long long)g_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_accumulator),
        cmocka_unit_test(t_lrp0),
        cmocka_unit_test(t_eps),
        cmocka_unit_test(t_gamma),
        cmocka_unit_test(t_gamma_gen),
        cmocka_unit_test(t_alphabeta),
        cmocka_unit_test(t_alphabeta_peers),
        cmocka_unit_test(t_zplus),
        cmocka_unit_test(t_wsquare),
        cmocka_unit_test(t_flat),
        cmocka_unit_test(t_zbox),
        cmocka_unit_test(t_special_dead_unit),
        cmocka_unit_test(t_special_signbit),
        cmocka_unit_test(t_multi_layer),
        cmocka_unit_test(t_threads_bitwise),
        cmocka_unit_test(t_fold_bitwise),
        cmocka_unit_test(t_fx_keys_exact),
        cmocka_unit_test(t_canonize_kernels),
        cmocka_unit_test(t_gamma_captum),
        cmocka_unit_test(t_bn_pass),
        cmocka_unit_test(t_pools_and_range_flags),
        cmocka_unit_test(t_selfproof),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
