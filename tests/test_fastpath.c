/*
 * test_fastpath.c -- the float32 fast path against the MPFR reference on
 * small fixtures, for every linear rule (and peer variant) x every
 * stabilizer convention, on a Dense net and on a conv net with BatchNorm,
 * an Add skip, pools and a depthwise conv.
 *
 * Tolerance: the oracle's own (docs/ORACLE.md): every cell's error divided
 * by u times its a-priori float32 bound (the gauge: gamma_n sum |terms| per
 * dot product, propagated through the layers) must stay below 30, unless
 * float32 cannot determine a denominator the cell depends on
 * (ILL-CONDITIONED).  That is a bound derived from the float32 error
 * analysis, not a tuned number.  Where the mathematics is undefined (a zero
 * denominator with no effective stabilizer) float32 must produce exactly the
 * NaN/inf IEEE gives, and the reference must say "undefined" there.
 * Determinism: bitwise equal relevance for 1 and 2 threads.  Under ASan the
 * rule x convention x epsilon sweep takes half its cases (every rule and
 * convention, the epsilon alternating); the normal build runs them all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend_f32.h"
#include "check.h"
#include "fixtures.h"
#include "util/testutil.h"
#include "fp_kernels.h"
#include "sanitizer.h"

typedef struct rulecase {
    const char *label;
    lrp_rule_id rule;
    float alpha, beta;
    unsigned flags;
} rulecase;

static const rulecase rules[] = {
    {"lrp0", LRP_RULE_ZERO, 1, 0, 0},
    {"epsilon", LRP_RULE_EPSILON, 1, 0, 0},
    {"gamma", LRP_RULE_GAMMA, 1, 0, 0},
    {"gamma generalized", LRP_RULE_GAMMA, 1, 0, LRP_F_GAMMA_GENERALIZED},
    {"gamma zennit drop0", LRP_RULE_GAMMA, 1, 0, LRP_F_GAMMA_GENERALIZED | LRP_F_ZENNIT_GAMMA_DROP0},
    {"alpha1beta0", LRP_RULE_ALPHABETA, 1, 0, 0},
    {"alpha2beta1", LRP_RULE_ALPHABETA, 2, 1, 0},
    {"alpha2beta1 innvestigate", LRP_RULE_ALPHABETA, 2, 1, LRP_F_INNV_AB_FULLBIAS},
    {"alpha1beta0 captum", LRP_RULE_ALPHABETA, 1, 0, LRP_F_CAPTUM_A1B0},
    {"zplus", LRP_RULE_ZPLUS, 1, 0, 0},
    {"wsquare", LRP_RULE_WSQUARE, 1, 0, 0},
    {"flat", LRP_RULE_FLAT, 1, 0, 0},
    {"zbox", LRP_RULE_ZBOX, 1, 0, 0},
};


static void assign(lrp_net *net, const rulecase *rc, lrp_stab_id stab, float eps)
{
    lrp_rule_spec r = lrp_rule_default(rc->rule);
    r.alpha = rc->alpha;
    r.beta = rc->beta;
    r.flags = rc->flags;
    r.eps = eps;
    r.stab = stab;
    r.low = -1.0f; /* the fixtures' inputs lie in [-1, 1) */
    r.high = 1.0f;
    lrp_rule_apply_all(net, &r);
    for (int i = 0; i < net->n_layers; i++) {
        lrp_rule_spec *s = &net->layers[i].rule;
        lrp_layer_kind k = net->layers[i].kind;
        /* identity takes an eps only on the activations (LXT's implicit
         * identity, x R / stab(x): exercised here too); on a norm it has
         * nothing to divide */
        int act = k == LRP_LAYER_GELU || k == LRP_LAYER_SILU || k == LRP_LAYER_TANH;
        if (s->rule != LRP_RULE_PASS && s->rule != LRP_RULE_WTA &&
            (s->rule != LRP_RULE_IDENTITY || act)) {
            s->stab = stab;
            s->eps = eps;
            /* the proportional layers (Add, pools, BN) get the stabilized
             * split when there is an epsilon, as the CLI's --eps does */
            if (s->rule == LRP_RULE_ZERO && eps > 0.0f)
                s->rule = LRP_RULE_EPSILON;
        }
    }
    lrp_err e = {0};
    if (lrp_net_infer(net, "test", &e) != LRP_OK)
        fail_msg("%s: %s", rc->label, e.msg);
}

/* Did the reference meet an undefined zero denominator anywhere? */
static int any_undefined(const lrp_run_report *r)
{
    for (int i = 0; i < r->n_layers; i++)
        if (strstr(r->layers[i].ref_flags, "undefined") || strstr(r->layers[i].ref_flags, "empty_part"))
            return 1;
    return 0;
}

static int nonfinite_anywhere(const lrp_run_report *r)
{
    for (int i = 0; i < r->n_layers; i++)
        if (r->layers[i].f32_nan || r->layers[i].f32_inf)
            return 1;
    return 0;
}

static void sweep(const char *fixture)
{
    static const float eps_values[] = {0x1.0c6f7ap-20f, 0.0f}; /* 1e-6 and none */
    int cases = 0, ill = 0, nonfinite = 0;
    for (size_t k = 0; k < sizeof rules / sizeof rules[0]; k++)
        for (int c = 0; c < LRP_STAB_COUNT; c++)
            for (int ei = 0; ei < 2; ei++) {
                /* under ASan (5x slower; CI's sanitize step) every rule and
                 * every convention, each with one of the two epsilons in
                 * turn, so both are seen: half the cases.  The normal build
                 * (make check) runs every combination. */
                if (LRP_UNDER_ASAN && (int)((k + (size_t)c) % 2) != ei)
                    continue;
                lrp_net *net = tu_fixture(fixture);
                assign(net, &rules[k], (lrp_stab_id)c, eps_values[ei]);
                lrp_check_opts o;
                lrp_check_opts_default(&o);
                o.proof_extra = 0; /* p = 128 is resolved on these nets (test_oracle) */
                /* one thread: this sweep is about the rules and conventions;
                 * the threaded paths give the same bits (test_threads_bitwise
                 * here, t_threads_bitwise in test_reference), and on these
                 * small nets starting threads per op was most of the
                 * sweep's time under ASan */
                o.threads = 1;
                o.label = fixture;
                lrp_run_report rep;
                lrp_err e = {0};
                if (lrp_check(&rep, net, &o, &e) != LRP_OK)
                    fail_msg("%s %s %s: %s", fixture, rules[k].label,
                             lrp_stab_name((lrp_stab_id)c), e.msg);
                cases++;
                int nf = nonfinite_anywhere(&rep);
                if (nf) {
                    /* NaN/inf only where the mathematics is undefined, and
                     * then reported with a cause */
                    if (!any_undefined(&rep))
                        fail_msg("%s %s %s eps %g: float32 non-finite without an undefined "
                                 "denominator in the reference",
                                 fixture, rules[k].label, lrp_stab_name((lrp_stab_id)c),
                                 (double)eps_values[ei]);
                    assert_int_equal(rep.verdict, LRP_V_NONFINITE);
                    assert_true(rep.nf_layer >= 0);
                    nonfinite++;
                } else if (rep.verdict != LRP_V_PASS && rep.verdict != LRP_V_ILL_CONDITIONED) {
                    int w = 0;
                    for (int i = 0; i < rep.n_layers; i++)
                        if (rep.layers[i].verdict > rep.layers[w].verdict)
                            w = i;
                    fail_msg("%s %s %s eps %g: %s at layer '%s' (ratio %g, got %.9g ref %.9g)",
                             fixture, rules[k].label, lrp_stab_name((lrp_stab_id)c),
                             (double)eps_values[ei], lrp_verdict_name(rep.verdict),
                             rep.layers[w].name, rep.layers[w].e2e.worst_ratio,
                             (double)rep.layers[w].e2e.worst_got, (double)rep.layers[w].e2e.worst_ref);
                }
                ill += rep.verdict == LRP_V_ILL_CONDITIONED;
                lrp_run_report_free(&rep);
                lrp_net_free(net);
            }
    printf("  %s: %d rule x convention x eps cases: %d within tolerance (%d ill-conditioned), "
           "%d non-finite exactly where undefined\n",
           fixture, cases, cases - nonfinite, ill, nonfinite);
}

static void test_dense_all_rules_conventions(void **state)
{
    (void)state;
    sweep("mlp");
}

static void test_conv_all_rules_conventions(void **state)
{
    (void)state;
    sweep("cnn");
}

static void test_sign0_zero_nan_exact(void **state)
{
    (void)state;
    /* the IEEE outcome, not a quiet fix: 0/0 at a dead unit's relevance */
    lrp_net *net = tu_fixture("vgg_dead");
    rulecase eps = {"epsilon", LRP_RULE_EPSILON, 1, 0, 0};
    assign(net, &eps, LRP_STAB_SIGN0_ZERO, 0x1.ad7f2ap-24f);
    lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
    lrp_backend be;
    lrp_f32_backend(&be, cx);
    lrp_pipe *p = NULL;
    lrp_err e = {0};
    assert_int_equal(lrp_pipe_run(&p, &be, net, &e), LRP_OK);
    int fc1 = lrp_net_find(net, "fc1");
    /* fc1 unit 5 is dead: z = 0, R = 0, sign0_zero adds nothing: 0/0 */
    const float *den = p->L[fc1].den[0];
    assert_true(den[5] == 0.0f);
    assert_true(p->L[fc1].flags.bits & (1u << LRP_NF_NAN));
    const float *rin = p->L[fc1].rin[0];
    int nan = 0;
    for (int64_t i = 0; i < p->L[fc1].n_rin_per[0]; i++)
        nan += isnan(rin[i]);
    assert_true(nan > 0);
    lrp_pipe_free(p);
    lrp_f32_ctx_free(cx);
    lrp_net_free(net);
}

static void test_threads_bitwise(void **state)
{
    (void)state;
    const char *names[] = {"cnn", "resnet", "densenet", "mobilenet", "vgg16s"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        lrp_net *net = tu_fixture(names[k]);
        lrp_pipe *p[2];
        lrp_f32_ctx *cx[2];
        lrp_backend be[2];
        lrp_err e = {0};
        for (int t = 0; t < 2; t++) {
            cx[t] = lrp_f32_ctx_new(t + 1);
            lrp_f32_backend(&be[t], cx[t]);
            assert_int_equal(lrp_pipe_run(&p[t], &be[t], net, &e), LRP_OK);
        }
        for (int i = 0; i < net->n_layers; i++)
            assert_memory_equal(p[0]->L[i].rel, p[1]->L[i].rel,
                                (size_t)(p[0]->L[i].n * net->batch) * sizeof(float));
        for (int t = 0; t < 2; t++) {
            lrp_pipe_free(p[t]);
            lrp_f32_ctx_free(cx[t]);
        }
        lrp_net_free(net);
    }
}

/* The engine modes (LRP_PIPE_LEAN, LRP_PIPE_RELEVANCE: what `lrp-oracle
 * fast` runs) must compute the same numbers as the full run: every layer's
 * activations and relevance bit for bit, and the same numerical flags with
 * the same counts and first locations.  Only the audit data may be absent.
 * Every fixture of the registry, under rules that exercise the bias, the
 * stabilizer, zero denominators (sign0_zero, eps = 0: NaN/inf) and the
 * split layers (Add, BN explicit). */
static void same_run(const lrp_pipe *a, const lrp_pipe *b, const char *what)
{
    for (int i = 0; i < a->n_layers; i++) {
        size_t n = (size_t)(a->L[i].n * a->batch) * sizeof(float);
        if (memcmp(a->L[i].act, b->L[i].act, n))
            fail_msg("%s: layer %d activations differ", what, i);
        if (memcmp(a->L[i].rel, b->L[i].rel, n))
            fail_msg("%s: layer %d relevance differs", what, i);
        const lrp_nflags *fa = &a->L[i].flags, *fb = &b->L[i].flags;
        if (fa->bits != fb->bits)
            fail_msg("%s: layer %d flags %#x vs %#x", what, i, fa->bits, fb->bits);
        for (int k = 0; k < LRP_NF_COUNT; k++)
            if (fa->count[k] != fb->count[k] ||
                ((fa->bits >> k) & 1u && (fa->sample[k] != fb->sample[k] ||
                                           fa->unit[k] != fb->unit[k])))
                fail_msg("%s: layer %d flag %s: count %lld vs %lld", what, i,
                         lrp_nflag_name((lrp_nflag)k), (long long)fa->count[k],
                         (long long)fb->count[k]);
    }
}

static void test_modes_bitwise(void **state)
{
    (void)state;
    static const struct {
        int rc;
        lrp_stab_id stab;
        float eps;
    } cases[] = {
        {1, LRP_STAB_SIGN0_POS, 0x1.0c6f7ap-20f}, /* epsilon */
        {1, LRP_STAB_SIGN0_ZERO, 0.0f},           /* NaN / inf where den = 0 */
        {7, LRP_STAB_SIGN0_POS, 0x1.0c6f7ap-20f}, /* alpha2beta1 innvestigate */
        {4, LRP_STAB_SKIP_ZERO, 0x1.0c6f7ap-20f}, /* zennit gamma, dropped units */
        {9, LRP_STAB_SIGNBIT, 0x1.0c6f7ap-20f},   /* zplus */
    };
    int runs = 0;
    for (int f = 0; f < lrp_fixture_count; f++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            lrp_net *net = tu_fixture(lrp_fixture_defs[f].name);
            assign(net, &rules[cases[c].rc], cases[c].stab, cases[c].eps);
            lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
            lrp_backend be;
            lrp_f32_backend(&be, cx);
            lrp_pipe *p[3];
            const unsigned mode[3] = {0, LRP_PIPE_LEAN, LRP_PIPE_RELEVANCE};
            lrp_err e = {0};
            for (int m = 0; m < 3; m++)
                if (lrp_pipe_run_ex(&p[m], &be, net, mode[m], &e) != LRP_OK)
                    fail_msg("%s: %s", lrp_fixture_defs[f].name, e.msg);
            char what[160];
            snprintf(what, sizeof what, "%s / %s / %s", lrp_fixture_defs[f].name,
                     rules[cases[c].rc].label, lrp_stab_name(cases[c].stab));
            same_run(p[0], p[1], what);
            same_run(p[0], p[2], what);
            for (int i = 0; i < net->n_layers; i++)
                for (int k = 0; k < LRP_ABS_COUNT; k++)
                    assert_null(p[2]->L[i].abs[k]); /* no audit data kept */
            for (int m = 0; m < 3; m++)
                lrp_pipe_free(p[m]);
            lrp_f32_ctx_free(cx);
            lrp_net_free(net);
            runs++;
        }
    print_message("    %d fixture x rule runs: full, lean and relevance modes bitwise equal\n",
                  runs);
}

/* Every dispatch path (portable C, AVX2, AVX-512: kernels and the
 * vectorised elementwise passes of fp_vec.c) gives the same bits for
 * everything the full run keeps: activations, relevance, denominators,
 * gauges, classes, absorbed relevance, flags. */
static void test_isa_paths_bitwise(void **state)
{
    (void)state;
    lrp_fp_isa saved = lrp_fp_get_isa();
    static const struct {
        int rc;
        lrp_stab_id stab;
        float eps;
    } cases[] = {
        {1, LRP_STAB_SIGN0_POS, 0x1.0c6f7ap-20f}, {1, LRP_STAB_SIGN0_ZERO, 0.0f},
        {6, LRP_STAB_SIGNBIT, 0x1.0c6f7ap-20f},   {4, LRP_STAB_SKIP_ZERO, 0x1.0c6f7ap-20f},
        {9, LRP_STAB_ZERO_ONLY, 0x1.0c6f7ap-20f}, {12, LRP_STAB_POSITIVE, 0x1.0c6f7ap-20f},
    };
    int compared = 0;
    for (int f = 0; f < lrp_fixture_count; f++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            lrp_net *net = tu_fixture(lrp_fixture_defs[f].name);
            assign(net, &rules[cases[c].rc], cases[c].stab, cases[c].eps);
            lrp_pipe *p[LRP_FP_ISA_COUNT] = {NULL};
            lrp_f32_ctx *cx[LRP_FP_ISA_COUNT] = {NULL};
            lrp_backend be[LRP_FP_ISA_COUNT]; /* each pipe points at its own */
            int first = -1;
            for (int isa = 0; isa < LRP_FP_ISA_COUNT; isa++) {
                if (!lrp_fp_isa_supported((lrp_fp_isa)isa))
                    continue;
                assert_int_equal(lrp_fp_set_isa((lrp_fp_isa)isa), 0);
                cx[isa] = lrp_f32_ctx_new(2);
                lrp_f32_backend(&be[isa], cx[isa]);
                lrp_err e = {0};
                if (lrp_pipe_run(&p[isa], &be[isa], net, &e) != LRP_OK)
                    fail_msg("%s: %s", lrp_fixture_defs[f].name, e.msg);
                if (first < 0) {
                    first = isa;
                    continue;
                }
                char what[160];
                snprintf(what, sizeof what, "%s / %s / %s: %s vs %s", lrp_fixture_defs[f].name,
                         rules[cases[c].rc].label, lrp_stab_name(cases[c].stab),
                         lrp_fp_isa_name((lrp_fp_isa)first), lrp_fp_isa_name((lrp_fp_isa)isa));
                same_run(p[first], p[isa], what);
                for (int i = 0; i < net->n_layers; i++) {
                    const lrp_pipe_layer *A = &p[first]->L[i], *B = &p[isa]->L[i];
                    size_t nu = (size_t)(A->n_units * net->batch);
                    for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++) {
                        assert_true(!A->den[k] == !B->den[k] && !A->cls[k] == !B->cls[k]);
                        if (A->den[k] && memcmp(A->den[k], B->den[k], nu * sizeof(float)))
                            fail_msg("%s: layer %d denominators differ", what, i);
                        if (A->cls[k] && memcmp(A->cls[k], B->cls[k], nu))
                            fail_msg("%s: layer %d classes differ", what, i);
                        assert_true(!A->gauge[k] == !B->gauge[k]);
                        if (A->gauge[k] && memcmp(A->gauge[k], B->gauge[k], nu * sizeof(float)))
                            fail_msg("%s: layer %d gauges differ", what, i);
                    }
                    for (int k = 0; k < LRP_ABS_COUNT; k++) {
                        assert_true(!A->abs[k] == !B->abs[k]);
                        if (A->abs[k] && memcmp(A->abs[k], B->abs[k], nu * sizeof(float)))
                            fail_msg("%s: layer %d absorbed %s differs", what, i,
                                     lrp_abs_name((lrp_abs_kind)k));
                    }
                }
                compared++;
            }
            for (int isa = 0; isa < LRP_FP_ISA_COUNT; isa++) {
                lrp_pipe_free(p[isa]);
                lrp_f32_ctx_free(cx[isa]);
            }
            lrp_net_free(net);
        }
    lrp_fp_set_isa(saved);
    print_message("    %d cross-path comparisons, all bitwise equal\n", compared);
}

/* Max pool through the backend vtable against a direct transcription of
 * the contract (core/pipeline.h: the first maximum in row-major window
 * order wins, a NaN beats every number, padded cells never win; backward
 * sends R_j to the winner, the winner's sum keeping the IEEE sign of an
 * exact zero): 2 x 2 / stride 2 windows (the backend's fast
 * form), on even and odd planes, with planted ties, NaN, -0 and +-inf, and
 * a 3 x 3 / stride 2 padded pool (the generic form) for contrast. */
static void maxpool_case(int H, int W, int k, int s, int pad, uint64_t seed)
{
    lrp_pool P;
    memset(&P, 0, sizeof P);
    P.C = 3;
    P.H = H;
    P.W = W;
    P.kh = P.kw = k;
    P.sh = P.sw = s;
    P.pt = P.pl = pad;
    P.Ho = (H + 2 * pad - k) / s + 1;
    P.Wo = (W + 2 * pad - k) / s + 1;
    int64_t B = 2, n = B * P.C * H * W, no = B * P.C * P.Ho * P.Wo;
    float *x = malloc(sizeof(float) * n), *R = malloc(sizeof(float) * no);
    float *y = malloc(sizeof(float) * no), *r = malloc(sizeof(float) * n);
    float *ey = malloc(sizeof(float) * no), *er = calloc((size_t)n, sizeof(float));
    unsigned char *hit = calloc((size_t)n, 1);
    assert_true(x && R && y && r && ey && er && hit);
    uint64_t st = seed;
    for (int64_t i = 0; i < n; i++) {
        st = st * 6364136223846793005u + 1442695040888963407u;
        unsigned v = (unsigned)(st >> 33) % 16;
        /* few distinct values: many ties */
        static const float vals[16] = {0.0f, -0.0f, 1.0f, 1.0f, 2.0f, -1.0f, 0.5f, 2.0f,
                                       NAN, INFINITY, -INFINITY, 3.0f, 3.0f, -2.0f, 1.0f, 0.25f};
        x[i] = vals[v];
    }
    for (int64_t j = 0; j < no; j++)
        R[j] = (j % 7 == 3) ? -0.0f : (float)(j % 5) - 1.5f;
    for (int64_t pl = 0; pl < B * P.C; pl++)
        for (int64_t oy = 0; oy < P.Ho; oy++)
            for (int64_t ox = 0; ox < P.Wo; ox++) {
                int64_t arg = -1;
                float best = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int64_t iy = oy * s - pad + ky, ix = ox * s - pad + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                            continue;
                        float v = x[pl * H * W + iy * W + ix];
                        if (arg < 0 || v > best || (isnan(v) && !isnan(best))) {
                            best = v;
                            arg = iy * W + ix;
                        }
                    }
                int64_t j = pl * P.Ho * P.Wo + oy * P.Wo + ox;
                ey[j] = best;
                /* R_i = the sum of the R_j of the windows i wins: its first
                 * term, then +=, so -0 iff every term is -0; +0 (calloc)
                 * when i wins none */
                int64_t i = pl * H * W + arg;
                er[i] = hit[i] ? er[i] + R[j] : R[j];
                hit[i] = 1;
            }
    lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
    lrp_backend be;
    lrp_f32_backend(&be, cx);
    be.max_fwd(be.ctx, y, x, &P, B);
    be.max_bwd(be.ctx, r, x, R, &P, B);
    assert_memory_equal(y, ey, sizeof(float) * (size_t)no);
    assert_memory_equal(r, er, sizeof(float) * (size_t)n);
    lrp_f32_ctx_free(cx);
    free(x); free(R); free(y); free(r); free(ey); free(er); free(hit);
}

static void test_maxpool_contract(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        maxpool_case(8, 6, 2, 2, 0, seed);
        maxpool_case(7, 9, 2, 2, 0, seed);  /* last row / column in no window */
        maxpool_case(9, 8, 3, 2, 1, seed);  /* generic form */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_all_rules_conventions),
        cmocka_unit_test(test_conv_all_rules_conventions),
        cmocka_unit_test(test_sign0_zero_nan_exact),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_modes_bitwise),
        cmocka_unit_test(test_isa_paths_bitwise),
        cmocka_unit_test(test_maxpool_contract),
    };
    return cmocka_run_group_tests_name("fastpath", tests, NULL, NULL);
}
