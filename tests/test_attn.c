/*
 * test_attn.c -- the attention kinds (core/kind_attn.c, reference/ref_attn.c,
 * fastpath/fp_attn.c, oracle/gauge_attn.c; docs/TRANSFORMERS.md):
 *   - bad attributes and token ids: one-line errors naming file and layer;
 *   - the reference against tests/naive/naive_attn.c (an independent MPFR
 *     evaluation at 256 bits written per contribution, TRANSFORMERS 4, 5);
 *   - conservation closing with softmax_bias / mask absorbed;
 *   - the float32 fast path judged against the reference: no false alarm
 *     on the transformer fixtures under every composite;
 *   - must-fail mutants: a sign-flipped softmax relevance, and a
 *     MultiHeadAttention trace computed under cplrp claiming attnlrp;
 *   - masks: masked weights exactly +0, an all-masked row +0 (never NaN),
 *     no NaN anywhere in either path on a causal -inf mask, and a query
 *     whose every key is masked (padding + causal) gives a finite zero row.
 */
#define _DEFAULT_SOURCE 1 /* mkstemps */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "backend_f32.h"
#include "check.h"
#include "fixtures.h"
#include "naive/naive_attn.h"
#include "pipeline.h"
#include "reference.h"
#include "util/testutil.h"


static void apply(lrp_net *net, lrp_composite_id c)
{
    lrp_composite_params p = lrp_composite_params_default();
    lrp_composite_apply(net, c, &p);
}

/* the reference pipeline at 128 bits (the caller frees both) */
static lrp_pipe *ref_run(const lrp_net *net, lrp_ref_ctx *cx, lrp_backend *be)
{
    lrp_ref_ctx_init(cx, 128, 2);
    lrp_ref_backend(be, cx);
    lrp_pipe *p = NULL;
    lrp_err e = {0};
    if (lrp_pipe_run(&p, be, net, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    return p;
}

static double dget(lrp_pipe *p, int li, int64_t i, int rin)
{
    mpfr_srcptr t = rin ? (mpfr_srcptr)p->L[li].rin[0] : (mpfr_srcptr)p->L[li].rel;
    return mpfr_get_d(t + i, MPFR_RNDN);
}

/* ---- errors ---- */


static void test_attr_errors(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("attn1");
    net->layers[1].heads = 3; /* 16 features */
    tu_expect_infer_error(net, "layer 'attn': heads 3 must be >= 1 and divide the features 16");
    net->layers[1].heads = 2;
    net->layers[1].mask_value = NAN;
    tu_expect_infer_error(net, "layer 'attn': mask_value");
    net->layers[1].mask_value = -INFINITY;
    net->layers[3].index = 8;
    tu_expect_infer_error(net, "layer 'pool': SelectToken index 8 outside [0, 8)");
    net->layers[3].index = 7;
    assert_int_equal(lrp_net_infer(net, "f.h5", NULL), LRP_OK);
    lrp_net_free(net);

    net = tu_fixture("embed1");
    lrp_err e = {0};
    net->input[3] = 50.0f; /* vocab 50 */
    assert_int_equal(lrp_net_check_values(net, "f.h5", &e), LRP_E_INVALID);
    if (!strstr(e.msg, "f.h5: data/tokens[3] = 50 outside the vocabulary [0, 50) of Embedding 'embed'"))
        fail_msg("message: %s", e.msg);
    net->input[3] = 1.5f;
    assert_int_equal(lrp_net_check_values(net, "f.h5", &e), LRP_E_INVALID);
    net->input[3] = 1.0f;
    net->layers[0].tokens = 0;
    tu_expect_infer_error(net, "layer 'embed': Embedding needs a token Input");
    lrp_net_free(net);
}

/* a version-1 file cannot hold a version-2 kind; the writer writes 2 */
static void test_format_version(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("embed1");
    char path[] = "/tmp/lrp_attn_XXXXXX.h5";
    int fd = mkstemps(path, 3);
    assert_true(fd >= 0);
    close(fd);
    remove(path);
    lrp_err e = {0};
    if (lrp_fixture_write(net, path, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    lrp_net *back = NULL;
    if (lrp_fixture_read(&back, path, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    assert_true(back->layers[0].tokens);
    for (int64_t i = 0; i < 16; i++)
        assert_true(back->input[i] == net->input[i]);
    assert_memory_equal(back->layers[3].w2, net->layers[3].w2, 16 * 16 * sizeof(float));
    lrp_net_free(back);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int32_t v = 0;
    H5Aread(a, H5T_NATIVE_INT32, &v);
    assert_int_equal(v, 2);
    v = 1;
    H5Awrite(a, H5T_NATIVE_INT32, &v);
    H5Aclose(a);
    H5Fclose(f);
    assert_int_equal(lrp_fixture_read(&back, path, &e), LRP_E_UNSUPPORTED);
    /* the first version-2 object met is named: here the token Input */
    if (!strstr(e.msg, "format_version 2") || !strstr(e.msg, path) || strchr(e.msg, '\n'))
        fail_msg("message: %s", e.msg);
    remove(path);
    lrp_net_free(net);
}

/* ---- the reference against the naive evaluation ---- */

/* max |a - b| over n, and max |b| */
static void diff(double *d, double *m, double a, double b)
{
    if (fabs(a - b) > *d)
        *d = fabs(a - b);
    if (fabs(b) > *m)
        *m = fabs(b);
}

/* One MultiHeadAttention layer on an Input (T, F), output relevance given.
 * The reference's input relevance against naive_mha's.  Tolerance: the
 * reference rounds every op to 128 bits (2^-128 ~ 3e-39 relative), about
 * a dozen roundings in a chain, each amplified by the condition of the
 * denominators it divides by (below 1e6 in these draws); the naive value
 * is computed at 256 bits.  1e-25 of the layer's largest value is a margin
 * of ~1e7 over that, and 1e-25 is 1e18 below a float32 ulp. */
static void mha_vs_naive_pad(int causal, float mask, lrp_rule_id rule, uint64_t seed,
                             const float *pad)
{
    lrp_net *net = lrp_net_new();
    lrp_builder b;
    lrp_err e = {0};
    lrp_build_begin(&b, net, seed, &e);
    int x = lrp_build_input(&b, "x", 2, 5, 8, 0);
    lrp_build_mha(&b, "attn", x, 2, 0.375f, causal, mask, 1);
    if (lrp_build_finish(&b, 1) != LRP_OK)
        fail_msg("%s", e.msg);
    if (pad) {
        net->layers[1].use_padding_mask = 1;
        net->key_padding_mask = malloc(5 * sizeof(float));
        memcpy(net->key_padding_mask, pad, 5 * sizeof(float));
        assert_int_equal(lrp_net_check_values(net, "t", NULL), LRP_OK);
    }
    net->layers[1].rule = lrp_rule_default(rule);
    net->r_out = malloc(40 * sizeof(float));
    for (int i = 0; i < 40; i++)
        net->r_out[i] = lrp_rng_sym(&b.rng);
    lrp_ref_ctx cx;
    lrp_backend be;
    lrp_pipe *p = ref_run(net, &cx, &be);
    const lrp_layer *l = &net->layers[1];
    double want[40], absb = 0, absm = 0;
    naive_mha(want, &absb, &absm, 5, 8, 2, l->scale, causal, mask, l->w, l->b, l->w2, l->b2,
              net->input, net->r_out, rule == LRP_RULE_CPLRP, l->rule.eps, pad);
    double d = 0, m = 0;
    for (int i = 0; i < 40; i++)
        diff(&d, &m, dget(p, 1, i, 1), want[i]);
    if (!(d <= 1e-25 * m))
        fail_msg("MultiHeadAttention %s causal %d: reference off the naive value by %g (scale %g)",
                 lrp_rule_name(rule), causal, d, m);
    /* the absorbed softmax bias and mask against the naive sums */
    if (rule == LRP_RULE_ATTNLRP) {
        double sb = mpfr_get_d((mpfr_srcptr)p->L[1].abs[LRP_ABS_SOFTMAX_BIAS], MPFR_RNDN);
        double sm = mpfr_get_d((mpfr_srcptr)p->L[1].abs[LRP_ABS_MASK], MPFR_RNDN);
        if (!(fabs(sb - absb) <= 1e-25 * (fabs(absb) + m)))
            fail_msg("softmax_bias %.17g, naive %.17g", sb, absb);
        assert_true(fabs(sm - absm) <= 1e-25 * (fabs(absm) + m));
        if (causal && isinf(mask))
            assert_true(sm == 0.0); /* -inf: masked entries are excluded */
    }
    /* conservation: the layer's residual in the reference */
    assert_true(p->L[1].cons_resid < 1e-30);
    lrp_pipe_free(p);
    lrp_net_free(net);
}

static void mha_vs_naive(int causal, float mask, lrp_rule_id rule, uint64_t seed)
{
    mha_vs_naive_pad(causal, mask, rule, seed, NULL);
}

static void test_mha_naive(void **state)
{
    (void)state;
    /* key 0 padded under the causal mask: query 0 sees no key */
    const float pad[5] = {1, 0, 0, 1, 0};
    mha_vs_naive_pad(1, -INFINITY, LRP_RULE_ATTNLRP, 16, pad);
    mha_vs_naive_pad(0, -INFINITY, LRP_RULE_CPLRP, 17, pad);
    mha_vs_naive_pad(1, -1e4f, LRP_RULE_ATTNLRP, 18, pad);
    mha_vs_naive(0, -INFINITY, LRP_RULE_ATTNLRP, 11);
    mha_vs_naive(1, -INFINITY, LRP_RULE_ATTNLRP, 12);
    mha_vs_naive(1, -1e4f, LRP_RULE_ATTNLRP, 13);
    mha_vs_naive(1, -INFINITY, LRP_RULE_CPLRP, 14);
    mha_vs_naive(0, -INFINITY, LRP_RULE_CPLRP, 15);
}

/* Softmax + Mul: Input (4, 8) -> Softmax -> Mul (x * softmax(x)), the
 * output relevance given (binary32).  The reference's relevance of the
 * input (the softmax's Taylor share plus the gate's half) against
 * naive_softmax_gate; tolerance as above (fewer roundings, no divisions:
 * the same margin). */
static void test_softmax_mul_naive(void **state)
{
    (void)state;
    lrp_net *net = lrp_net_new();
    lrp_builder b;
    lrp_err e = {0};
    lrp_build_begin(&b, net, 21, &e);
    int x = lrp_build_input(&b, "x", 2, 4, 8, 0);
    int sm = lrp_build_softmax(&b, "softmax", x);
    lrp_build_mul(&b, "gate", x, sm);
    if (lrp_build_finish(&b, 2) != LRP_OK)
        fail_msg("%s", e.msg);
    /* logits spread over [-8, 8): a softmax far from uniform */
    for (int i = 0; i < 64; i++)
        net->input[i] *= 8.0f;
    net->r_out = malloc(64 * sizeof(float));
    for (int i = 0; i < 64; i++)
        net->r_out[i] = lrp_rng_sym(&b.rng);
    lrp_ref_ctx cx;
    lrp_backend be;
    lrp_pipe *p = ref_run(net, &cx, &be);
    for (int64_t bb = 0; bb < net->batch; bb++) {
        double R[32], want[32], absb[4];
        for (int i = 0; i < 32; i++)
            R[i] = (double)net->r_out[bb * 32 + i];
        naive_softmax_gate(want, absb, 4, 8, net->input + bb * 32, R);
        double d = 0, m = 0;
        for (int i = 0; i < 32; i++)
            diff(&d, &m, dget(p, 0, bb * 32 + i, 0), want[i]);
        if (!(d <= 1e-25 * m))
            fail_msg("sample %lld: reference off the naive value by %g (scale %g)",
                     (long long)bb, d, m);
        double tot = 0;
        for (int r = 0; r < 4; r++) {
            double got = mpfr_get_d((mpfr_srcptr)p->L[1].abs[LRP_ABS_SOFTMAX_BIAS] + bb * 4 + r,
                                    MPFR_RNDN);
            assert_true(fabs(got - absb[r]) <= 1e-25 * (fabs(absb[r]) + m));
            tot += fabs(got);
        }
        assert_true(tot > 1e-3 * m); /* the bias term is not negligible */
    }
    /* the Softmax closes with softmax_bias; the uniform split exactly */
    assert_true(p->L[1].cons_resid < 1e-30);
    assert_true(p->L[2].cons_resid == 0.0);
    lrp_pipe_free(p);
    lrp_net_free(net);
}

/* ---- the fast path judged: no false alarm ---- */

static void test_fast_path_clean(void **state)
{
    (void)state;
    const char *fx[] = {"attn1", "attn_saturated", "embed1", "gate1", "attn_padded"};
    const lrp_composite_id cs[] = {LRP_COMPOSITE_EPSILON_PLUS, LRP_COMPOSITE_ATTN_LRP,
                                   LRP_COMPOSITE_CP_LRP, LRP_COMPOSITE_EPSILON_ALPHA2_BETA1};
    for (int f = 0; f < 5; f++)
        for (int k = 0; k < 4; k++) {
            lrp_net *net = tu_fixture(fx[f]);
            apply(net, cs[k]);
            lrp_run_report rep = tu_judge("attn", net, NULL);
            if (!lrp_run_ok(&rep))
                fail_msg("%s under %s: the clean fast path judged %s (a false alarm)", fx[f],
                         lrp_composite_name(cs[k]), lrp_verdict_name(rep.verdict));
            lrp_run_report_free(&rep);
            lrp_net_free(net);
        }
}

/* ---- must-fail mutants ---- */

/* the fast path's relevance of every layer, and rin of layer li */
static float **fast_rel(const lrp_net *net, int li, float **rin)
{
    lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
    lrp_backend be;
    lrp_f32_backend(&be, cx);
    lrp_pipe *p = NULL;
    lrp_err e = {0};
    if (lrp_pipe_run(&p, &be, net, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    float **rel = calloc((size_t)net->n_layers, sizeof *rel);
    for (int i = 0; i < net->n_layers; i++) {
        size_t n = (size_t)(p->L[i].n * net->batch);
        rel[i] = malloc(n * sizeof(float));
        memcpy(rel[i], p->L[i].rel, n * sizeof(float));
    }
    if (rin) {
        size_t n = (size_t)(p->L[li].n_rin_per[0] * net->batch);
        *rin = malloc(n * sizeof(float));
        memcpy(*rin, p->L[li].rin[0], n * sizeof(float));
    }
    lrp_pipe_free(p);
    lrp_f32_ctx_free(cx);
    return rel;
}

static void add_trace(lrp_net *net, const char *source, float **rel)
{
    lrp_err e = {0};
    lrp_trace *t = lrp_net_trace_add(net, source, &e);
    if (!t)
        fail_msg("%s", e.msg);
    for (int i = 0; i < net->n_layers; i++)
        t->relevance[i] = rel[i]; /* the trace takes them */
    free(rel);
}

static void expect_fail_at(lrp_net *net, const char *source, int tensor)
{
    lrp_run_report rep = tu_judge("attn", net, source);
    lrp_verdict v = rep.layers[tensor].verdict, lv = rep.layers[tensor].tlocal_verdict;
    int ok = lrp_run_ok(&rep);
    lrp_run_report_free(&rep);
    if (ok || (v < LRP_V_FAIL && lv < LRP_V_FAIL))
        fail_msg("mutant '%s' judged %s at tensor %d (local %s): not FAIL", source,
                 lrp_verdict_name(v), tensor, lrp_verdict_name(lv));
}

/* gate1: the softmax's share of the input relevance sign-flipped (the
 * input's relevance is the gate's half plus the softmax's Taylor share) */
static void test_mutant_softmax_sign(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("gate1");
    float *rin = NULL;
    float **rel = fast_rel(net, 1, &rin);
    for (int64_t i = 0; i < 64; i++)
        rel[0][i] -= 2.0f * rin[i];
    free(rin);
    add_trace(net, "flipped", rel);
    expect_fail_at(net, "flipped", 0);
    lrp_net_free(net);
}

/* attn1 / embed1: a trace computed under cplrp, claiming attnlrp */
static void mutant_cplrp(const char *fx, int tensor)
{
    lrp_net *net = tu_fixture(fx);
    apply(net, LRP_COMPOSITE_ATTN_LRP);
    int li = lrp_net_find(net, "attn");
    net->layers[li].rule.rule = LRP_RULE_CPLRP;
    float **rel = fast_rel(net, li, NULL);
    net->layers[li].rule.rule = LRP_RULE_ATTNLRP;
    add_trace(net, "cplrp", rel);
    expect_fail_at(net, "cplrp", tensor);
    lrp_net_free(net);
}

static void test_mutant_cplrp_as_attnlrp(void **state)
{
    (void)state;
    mutant_cplrp("attn1", 0);
    mutant_cplrp("embed1", 2);
}

/* ---- masks ---- */

static void test_masks_never_nan(void **state)
{
    (void)state;
    /* the ops: a row with every entry masked is +0, masked entries +0 */
    float x[6] = {1.0f, -INFINITY, 2.0f, -INFINITY, -INFINITY, -INFINITY};
    uint8_t mask[6] = {0, 1, 0, 1, 1, 1};
    float R[6] = {0.5f, 0.0f, -0.25f, 0.0f, 0.0f, 0.0f};
    lrp_f32_ctx *fcx = lrp_f32_ctx_new(1);
    lrp_backend fb, rb;
    lrp_f32_backend(&fb, fcx);
    lrp_ref_ctx rcx;
    lrp_ref_ctx_init(&rcx, 128, 1);
    lrp_ref_backend(&rb, &rcx);
    const lrp_backend *bes[2] = {&fb, &rb};
    for (int k = 0; k < 2; k++) {
        const lrp_backend *be = bes[k];
        void *tx = be->tensor_new(be->ctx, 6), *ts = be->tensor_new(be->ctx, 6);
        void *tR = be->tensor_new(be->ctx, 6), *tr = be->tensor_new(be->ctx, 6);
        void *ab = be->tensor_new(be->ctx, 2);
        be->set_f32(be->ctx, tx, x, 6);
        be->set_f32(be->ctx, tR, R, 6);
        for (int pass = 0; pass < 2; pass++) {
            /* with the mask, and from the -inf logits alone */
            be->softmax_fwd(be->ctx, ts, tx, pass ? NULL : mask, 2, 2, 3);
            be->softmax_taylor(be->ctx, tr, ab, NULL, tx, tx, ts, tR, pass ? NULL : mask, 2, 2,
                               3);
            uint8_t cs[6], cr[6];
            be->classify(be->ctx, cs, ts, 6);
            be->classify(be->ctx, cr, tr, 6);
            for (int i = 0; i < 6; i++) {
                assert_false(cs[i] & (LRP_V_NAN | LRP_V_INF));
                assert_false(cr[i] & (LRP_V_NAN | LRP_V_INF));
                if (mask[i]) { /* exactly +0 */
                    assert_true((cs[i] & LRP_V_ZERO) && !(cs[i] & LRP_V_SIGNBIT));
                    assert_true((cr[i] & LRP_V_ZERO) && !(cr[i] & LRP_V_SIGNBIT));
                }
            }
        }
        be->tensor_free(be->ctx, tx, 6);
        be->tensor_free(be->ctx, ts, 6);
        be->tensor_free(be->ctx, tR, 6);
        be->tensor_free(be->ctx, tr, 6);
        be->tensor_free(be->ctx, ab, 2);
    }
    lrp_f32_ctx_free(fcx);
    /* a whole causal net: no NaN / inf flag in either path */
    lrp_net *net = tu_fixture("attn1");
    apply(net, LRP_COMPOSITE_ATTN_LRP);
    lrp_ref_ctx cx;
    lrp_backend be;
    lrp_pipe *p = ref_run(net, &cx, &be);
    for (int i = 0; i < net->n_layers; i++)
        assert_false(p->L[i].flags.bits & ((1u << LRP_NF_NAN) | (1u << LRP_NF_INF)));
    lrp_pipe_free(p);
    float **rel = fast_rel(net, 1, NULL);
    for (int i = 0; i < net->n_layers; i++) {
        for (int64_t c = 0; c < lrp_shape_numel(&net->layers[i].shape) * net->batch; c++)
            assert_true(isfinite(rel[i][c]));
        free(rel[i]);
    }
    free(rel);
    lrp_net_free(net);
}

/* attn_padded: sample 0's query 0 has every key masked (its key 0 is
 * padded, the causal mask hides the rest): in the reference that row of
 * the attention output is exactly the output bias (O = 0), and every
 * relevance of the net is finite in both paths */
static void test_fully_masked_row(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("attn_padded");
    apply(net, LRP_COMPOSITE_ATTN_LRP);
    assert_true(net->key_padding_mask[0] == 1.0f);
    lrp_ref_ctx cx;
    lrp_backend be;
    lrp_pipe *p = ref_run(net, &cx, &be);
    const lrp_layer *l = &net->layers[1];
    for (int f = 0; f < 16; f++) { /* y = 0 Wout^T + bout, exactly */
        double y = mpfr_get_d((mpfr_srcptr)p->L[1].act + f, MPFR_RNDN);
        if (y != (double)l->b2[f])
            fail_msg("fully masked row: y[%d] = %.17g, not the bias %.9g", f, y, (double)l->b2[f]);
    }
    for (int i = 0; i < net->n_layers; i++) {
        assert_false(p->L[i].flags.bits & ((1u << LRP_NF_NAN) | (1u << LRP_NF_INF)));
        for (int64_t c = 0; c < p->L[i].n * net->batch; c++)
            assert_true(isfinite(dget(p, i, c, 0)));
    }
    lrp_pipe_free(p);
    float **rel = fast_rel(net, 1, NULL);
    for (int i = 0; i < net->n_layers; i++) {
        for (int64_t c = 0; c < lrp_shape_numel(&net->layers[i].shape) * net->batch; c++)
            assert_true(isfinite(rel[i][c]));
        free(rel[i]);
    }
    free(rel);
    /* a mask value other than 0 / 1 is refused, naming the cell */
    lrp_err e = {0};
    net->key_padding_mask[3] = 2.0f;
    assert_int_equal(lrp_net_check_values(net, "f.h5", &e), LRP_E_INVALID);
    if (!strstr(e.msg, "f.h5: data/key_padding_mask[3] = 2 not 0 or 1"))
        fail_msg("message: %s", e.msg);
    lrp_net_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attr_errors),
        cmocka_unit_test(test_format_version),
        cmocka_unit_test(test_mha_naive),
        cmocka_unit_test(test_softmax_mul_naive),
        cmocka_unit_test(test_fast_path_clean),
        cmocka_unit_test(test_mutant_softmax_sign),
        cmocka_unit_test(test_mutant_cplrp_as_attnlrp),
        cmocka_unit_test(test_masks_never_nan),
        cmocka_unit_test(test_fully_masked_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
