/*
 * test_adversarial.c -- adversarial numerics through the reference and the
 * oracle (docs/RELIABILITY.md).
 *
 * Nets (built with fixtures/fixtures.h): a Dense MLP, a Conv + AvgPool net,
 * and a Conv + BatchNorm net; weight variants: random, a dead unit in the
 * first linear layer (weights +0, bias -0: its z_j is exactly +-0), a
 * zero-variance BN channel, a gamma = 0 (and beta = 0) BN channel.  Inputs:
 * random, all +0, all -0, mixed +-0, subnormals, values near FLT_MAX, one
 * +inf, one -inf, one NaN.  Every linear rule (lrp0, epsilon, gamma,
 * alpha1beta0, alpha2beta1, zplus, wsquare, flat, zbox on the first layer)
 * under every stabilizer convention.  For each case:
 *
 *  - the MPFR reference (lrp_pipe_run, p = 128): never a NaN in any
 *    activation, relevance or denominator when inputs and parameters are
 *    finite; every zero denominator without an effective stabilizer is
 *    flagged LRP_NF_UNDEFINED on its layer; with a non-finite input the run
 *    either fails cleanly or flags NAN/INF (no crash);
 *  - lrp_check with the float32 fast path: whenever the float32 relevance
 *    trace holds a NaN or inf anywhere, the verdict is NONFINITE and
 *    nf_layer >= 0;
 *  - epsilon with sign0_zero on the dead unit gives NONFINITE, sign0_pos on
 *    the same net a finite trace.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "backend_f32.h"
#include "check.h"
#include "fixtures.h"
#include "lrp.h"
#include "pipeline.h"
#include "reference.h"
#include "report.h"

#include <float.h>
#include <math.h>
#include <mpfr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sanitizer.h"
#define UNDER_ASAN LRP_UNDER_ASAN

/* ------------------------------------------------------------------ */
/* Case space                                                          */
/* ------------------------------------------------------------------ */

enum { NET_DENSE, NET_CONV, NET_BN, NET_COUNT };
static const char *const net_name[NET_COUNT] = {"dense", "conv", "bn"};

enum { W_RANDOM, W_DEAD, W_BN_ZEROVAR, W_BN_GAMMA0, W_COUNT };
static const char *const w_name[W_COUNT] = {"random", "dead_unit", "bn_zero_var",
                                            "bn_gamma0"};

enum {
    IN_RANDOM,
    IN_ZERO,
    IN_NEGZERO,
    IN_MIXED_ZERO,
    IN_SUBNORMAL,
    IN_HUGE,
    IN_POSINF,
    IN_NEGINF,
    IN_NAN,
    IN_COUNT
};
static const char *const in_name[IN_COUNT] = {"random", "+0", "-0", "mixed+-0", "subnormal",
                                              "near_FLT_MAX", "+inf", "-inf", "NaN"};

enum { RS_LRP0, RS_EPS, RS_GAMMA, RS_AB10, RS_AB21, RS_ZPLUS, RS_WSQ, RS_FLAT, RS_ZBOX, RS_COUNT };
static const char *const rs_name[RS_COUNT] = {"lrp0",  "epsilon", "gamma",   "alpha1beta0",
                                              "alpha2beta1", "zplus", "wsquare", "flat",
                                              "zbox"};

/* totals over the whole run */
static struct {
    long cases, ref_runs_failed_nonfinite, ref_nan_finite, undef_missing, undef_checked;
    long nonfinite_input_unreported, f32_nonfinite, f32_nonfinite_missed, nonfinite_verdicts,
        nonfinite_verdict_finite_f32, ref_inf_finite, check_failed;
} g;

/* ------------------------------------------------------------------ */
/* Nets                                                                */
/* ------------------------------------------------------------------ */

static int first_linear(const lrp_net *net)
{
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i].kind == LRP_LAYER_DENSE || net->layers[i].kind == LRP_LAYER_CONV2D)
            return i;
    return -1;
}

static lrp_net *build(int nk, int wv, int iv)
{
    lrp_err e = {0};
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    lrp_builder b;
    lrp_build_begin(&b, net, 777 + (uint64_t)nk, &e);
    int x;
    switch (nk) {
    case NET_DENSE:
        x = lrp_build_input(&b, "input", 1, 6, 0, 0);
        x = lrp_build_dense(&b, "fc1", x, 4, 1);
        x = lrp_build_relu(&b, "relu1", x);
        x = lrp_build_dense(&b, "fc2", x, 3, 1);
        x = lrp_build_relu(&b, "relu2", x);
        lrp_build_dense(&b, "fc3", x, 2, 1);
        break;
    case NET_CONV:
        x = lrp_build_input(&b, "input", 3, 1, 4, 4);
        x = lrp_build_conv(&b, "conv", x, 2, 3, 1, 1, 1, 1);
        x = lrp_build_relu(&b, "relu", x);
        x = lrp_build_avgpool(&b, "pool", x, 2, 2, 0);
        x = lrp_build_flatten(&b, "flat", x);
        lrp_build_dense(&b, "fc", x, 3, 1);
        break;
    default:
        x = lrp_build_input(&b, "input", 3, 2, 2, 2);
        x = lrp_build_conv(&b, "conv", x, 3, 1, 1, 0, 1, 1);
        x = lrp_build_bn(&b, "bn", x);
        x = lrp_build_relu(&b, "relu", x);
        x = lrp_build_flatten(&b, "flat", x);
        lrp_build_dense(&b, "fc", x, 2, 1);
        break;
    }
    if (lrp_build_finish(&b, 2) != LRP_OK)
        fail_msg("builder: %s", e.msg);

    /* weights */
    int fl = first_linear(net);
    lrp_layer *L = &net->layers[fl];
    int64_t fan = lrp_layer_param_count(net, fl) / L->units - (L->has_bias ? 1 : 0);
    lrp_shape ws;
    assert_true(lrp_layer_param_shape(net, fl, 0, &ws));
    fan = lrp_shape_numel(&ws) / L->units;
    if (wv == W_DEAD) {
        for (int64_t i = 0; i < fan; i++)
            L->w[i] = 0.0f;
        if (L->b)
            L->b[0] = -0.0f;
    }
    if (nk == NET_BN) {
        lrp_layer *bn = &net->layers[net->n_layers - 4];
        assert_int_equal(bn->kind, LRP_LAYER_BATCHNORM);
        if (wv == W_BN_ZEROVAR)
            bn->bn_var[0] = 0.0f;
        if (wv == W_BN_GAMMA0) {
            bn->bn_gamma[0] = 0.0f;
            bn->bn_beta[0] = 0.0f;
        }
    }

    /* inputs */
    int64_t nin = lrp_shape_numel(&net->layers[0].shape) * net->batch;
    float *a = net->input;
    for (int64_t i = 0; i < nin; i++) {
        switch (iv) {
        case IN_ZERO: a[i] = 0.0f; break;
        case IN_NEGZERO: a[i] = -0.0f; break;
        case IN_MIXED_ZERO: a[i] = (i % 3 == 0) ? 0.0f : (i % 3 == 1) ? -0.0f : a[i]; break;
        case IN_SUBNORMAL: a[i] = (i % 2 ? -1.0f : 1.0f) * (float)(1 + i % 7) * 0x1p-149f; break;
        case IN_HUGE: a[i] = (i % 2 ? -FLT_MAX : FLT_MAX) * (i % 4 < 2 ? 1.0f : 0.5f); break;
        default: break;
        }
    }
    if (iv == IN_POSINF)
        a[1] = INFINITY;
    if (iv == IN_NEGINF)
        a[1] = -INFINITY;
    if (iv == IN_NAN)
        a[1] = NAN;
    return net;
}

static void set_rules(lrp_net *net, int rs, lrp_stab_id stab)
{
    static const lrp_rule_id id[RS_COUNT] = {
        LRP_RULE_ZERO,      LRP_RULE_EPSILON, LRP_RULE_GAMMA, LRP_RULE_ALPHABETA,
        LRP_RULE_ALPHABETA, LRP_RULE_ZPLUS,   LRP_RULE_WSQUARE, LRP_RULE_FLAT,
        LRP_RULE_EPSILON};
    lrp_rule_spec r = lrp_rule_default(id[rs]);
    r.stab = stab;
    if (rs == RS_AB21) {
        r.alpha = 2.0f;
        r.beta = 1.0f;
    }
    lrp_rule_apply_all(net, &r);
    if (rs == RS_ZBOX) { /* z^B on the input layer, epsilon above */
        lrp_rule_spec z = lrp_rule_default(LRP_RULE_ZBOX);
        z.stab = stab;
        z.low = -1.0f;
        z.high = 1.0f;
        net->layers[first_linear(net)].rule = z;
    }
    lrp_err e = {0};
    if (lrp_net_infer(net, "adversarial", &e) != LRP_OK)
        fail_msg("lrp_net_infer: %s", e.msg);
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

static int params_finite(const lrp_net *net)
{
    for (int li = 0; li < net->n_layers; li++) {
        const lrp_layer *l = &net->layers[li];
        float *const p[6] = {l->w, l->b, l->bn_gamma, l->bn_beta, l->bn_mean, l->bn_var};
        for (int w = 0; w < 6; w++) {
            lrp_shape ps;
            if (!p[w] || !lrp_layer_param_shape(net, li, w, &ps))
                continue;
            for (int64_t i = 0; i < lrp_shape_numel(&ps); i++)
                if (!isfinite(p[w][i]))
                    return 0;
        }
    }
    return 1;
}

static int inputs_finite(const lrp_net *net)
{
    int64_t n = lrp_shape_numel(&net->layers[0].shape) * net->batch;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(net->input[i]))
            return 0;
    return 1;
}

/* counts NaN (and inf) values of an MPFR tensor */
static void scan_ref(const lrp_backend *be, const void *t, int64_t n, long *nan, long *inf)
{
    if (!t)
        return;
    for (int64_t i = 0; i < n; i++) {
        mpfr_srcptr v = be->at(be->ctx, t, i);
        if (mpfr_nan_p(v))
            (*nan)++;
        else if (mpfr_inf_p(v))
            (*inf)++;
    }
}

static const char *g_case; /* description of the case being run */

/* Reference checks; returns 1 when the reference ran. */
static int check_reference(const lrp_net *net, int finite)
{
    lrp_ref_ctx cx;
    lrp_ref_ctx_init(&cx, 128, 1);
    lrp_backend be;
    lrp_ref_backend(&be, &cx);
    lrp_pipe *p = NULL;
    lrp_err e = {0};
    lrp_status st = lrp_pipe_run(&p, &be, net, &e);
    if (st != LRP_OK) {
        if (finite)
            fail_msg("%s: reference failed on finite inputs: %s", g_case, e.msg);
        if (!e.msg[0] || strchr(e.msg, '\n'))
            fail_msg("%s: reference failed without a one-line message", g_case);
        g.ref_runs_failed_nonfinite++;
        return 0;
    }
    int64_t B = p->batch;
    long nan = 0, inf = 0;
    unsigned any_flags = 0;
    for (int i = 0; i < p->n_layers; i++) {
        const lrp_pipe_layer *P = &p->L[i];
        any_flags |= P->flags.bits;
        scan_ref(&be, P->act, B * P->n, &nan, &inf);
        scan_ref(&be, P->rel, B * P->n, &nan, &inf);
        for (int k = 0; k < P->n_parts; k++)
            scan_ref(&be, P->den[k], B * P->n_units, &nan, &inf);
        /* zero denominators without an effective stabilizer */
        for (int k = 0; k < P->n_parts; k++) {
            if (!P->den[k] || !P->cls[k])
                continue;
            int empty_lost = P->desc ? P->desc->p[k].empty_lost
                                     : P->rule.rule == LRP_RULE_ALPHABETA;
            lrp_stab_id sb = P->rule.stab;
            int eff = P->rule.eps > 0.0f &&
                      (sb == LRP_STAB_SIGN0_POS || sb == LRP_STAB_SIGNBIT ||
                       sb == LRP_STAB_ZERO_ONLY || sb == LRP_STAB_POSITIVE);
            for (int64_t j = 0; j < B * P->n_units; j++) {
                mpfr_srcptr d = be.at(be.ctx, P->den[k], j);
                if (!mpfr_zero_p(d) || (P->cls[k][j] & LRP_CLS_KIND) == LRP_K_UNSEL)
                    continue;
                if (empty_lost || sb == LRP_STAB_SKIP_ZERO || eff)
                    continue;
                g.undef_checked++;
                if (!(P->flags.bits & (1u << LRP_NF_UNDEFINED))) {
                    g.undef_missing++;
                    fail_msg("%s: layer '%s' part %d unit %lld: zero denominator, no effective "
                             "stabilizer (%s, eps %g), but no undefined_zero_denominator flag",
                             g_case, net->layers[i].name, k, (long long)j, lrp_stab_name(sb),
                             (double)P->rule.eps);
                }
            }
        }
    }
    if (finite) {
        g.ref_inf_finite += inf;
        if (nan) {
            g.ref_nan_finite++;
            fail_msg("%s: the reference produced %ld NaN values from finite inputs", g_case, nan);
        }
    } else if (!(any_flags & ((1u << LRP_NF_NAN) | (1u << LRP_NF_INF)))) {
        /* counted here, judged in test_nonfinite_input_flagged */
        if (g.nonfinite_input_unreported++ < 6)
            printf("[ adversar ]   unflagged non-finite input: %s\n", g_case);
    }
    lrp_pipe_free(p);
    return 1;
}

/* Runs the float32 pipeline; returns 1 when its relevance trace holds a
 * NaN or inf anywhere. */
static int f32_trace_nonfinite(const lrp_net *net)
{
    lrp_f32_ctx *fc = lrp_f32_ctx_new(1);
    assert_non_null(fc);
    lrp_backend be;
    lrp_f32_backend(&be, fc);
    lrp_pipe *p = NULL;
    lrp_err e = {0};
    if (lrp_pipe_run(&p, &be, net, &e) != LRP_OK)
        fail_msg("%s: float32 pipeline failed: %s", g_case, e.msg);
    int bad = 0;
    for (int i = 0; i < p->n_layers && !bad; i++) {
        const float *r = p->L[i].rel;
        for (int64_t k = 0; r && k < p->batch * p->L[i].n; k++)
            if (!isfinite(r[k])) {
                bad = 1;
                break;
            }
    }
    lrp_pipe_free(p);
    lrp_f32_ctx_free(fc);
    return bad;
}

/* lrp_check with the float32 fast path; returns the verdict. */
static lrp_verdict check_oracle(lrp_net *net, int *nf_layer)
{
    lrp_check_opts o;
    lrp_check_opts_default(&o);
    o.threads = 1;
    o.label = g_case;
    o.proof_extra = UNDER_ASAN ? 0 : 64;
    lrp_run_report rep;
    lrp_err e = {0};
    lrp_status st = lrp_check(&rep, net, &o, &e);
    if (st != LRP_OK) {
        g.check_failed++;
        lrp_run_report_free(&rep);
        fail_msg("%s: lrp_check failed: %s", g_case, e.msg);
    }
    lrp_verdict v = rep.verdict;
    *nf_layer = rep.nf_layer;
    lrp_run_report_free(&rep);
    return v;
}

static void run_case(lrp_net *net, const char *desc)
{
    g_case = desc;
    g.cases++;
    int finite = inputs_finite(net) && params_finite(net);
    check_reference(net, finite);
    int f32bad = f32_trace_nonfinite(net);
    int nfl = -1;
    lrp_verdict v = check_oracle(net, &nfl);
    if (v == LRP_V_NONFINITE)
        g.nonfinite_verdicts++;
    if (f32bad) {
        g.f32_nonfinite++;
        if (v != LRP_V_NONFINITE || nfl < 0) {
            g.f32_nonfinite_missed++;
            fail_msg("%s: the float32 trace holds NaN/inf but the verdict is %s (nf_layer %d)",
                     desc, lrp_verdict_name(v), nfl);
        }
    } else if (v == LRP_V_NONFINITE) {
        g.nonfinite_verdict_finite_f32++;
    }
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

static void sweep(int nk)
{
    long before = g.cases;
    for (int wv = 0; wv < W_COUNT; wv++) {
        if ((wv == W_BN_ZEROVAR || wv == W_BN_GAMMA0) != 0 && nk != NET_BN)
            continue;
        if (wv == W_DEAD && nk == NET_BN)
            continue;
        for (int iv = 0; iv < IN_COUNT; iv++) {
            lrp_net *net = build(nk, wv, iv);
            for (int rs = 0; rs < RS_COUNT; rs++)
                for (int sb = 0; sb < LRP_STAB_COUNT; sb++) {
                    /* under ASan: every rule and input, a rotating third of
                     * the conventions */
                    if (UNDER_ASAN && (rs + iv + sb) % 3 != 0)
                        continue;
                    set_rules(net, rs, (lrp_stab_id)sb);
                    char desc[200];
                    snprintf(desc, sizeof desc, "%s net, %s weights, %s input, %s/%s",
                             net_name[nk], w_name[wv], in_name[iv], rs_name[rs],
                             lrp_stab_name((lrp_stab_id)sb));
                    run_case(net, desc);
                }
            lrp_net_free(net);
        }
    }
    printf("[ adversar ] %s nets: %ld cases\n", net_name[nk], g.cases - before);
    fflush(stdout);
}

static void test_dense(void **state)
{
    (void)state;
    sweep(NET_DENSE);
}

static void test_conv(void **state)
{
    (void)state;
    sweep(NET_CONV);
}

static void test_bn(void **state)
{
    (void)state;
    sweep(NET_BN);
}

/* The iNNvestigate #2 reproduction: a dead unit under epsilon with the
 * sign0_zero convention makes float32 divide 0 by 0; sign0_pos does not. */
static void test_dead_unit_sign0(void **state)
{
    (void)state;
    for (int nk = NET_DENSE; nk <= NET_CONV; nk++) {
        lrp_net *net = build(nk, W_DEAD, IN_RANDOM);
        char desc[160];
        snprintf(desc, sizeof desc, "%s net, dead unit, epsilon/sign0_zero", net_name[nk]);
        set_rules(net, RS_EPS, LRP_STAB_SIGN0_ZERO);
        g_case = desc;
        int nfl = -1;
        lrp_verdict v = check_oracle(net, &nfl);
        if (v != LRP_V_NONFINITE || nfl < 0)
            fail_msg("%s: verdict %s, nf_layer %d (expected NONFINITE)", desc,
                     lrp_verdict_name(v), nfl);
        assert_true(f32_trace_nonfinite(net));

        snprintf(desc, sizeof desc, "%s net, dead unit, epsilon/sign0_pos", net_name[nk]);
        set_rules(net, RS_EPS, LRP_STAB_SIGN0_POS);
        if (f32_trace_nonfinite(net))
            fail_msg("%s: the float32 trace is not finite", desc);
        v = check_oracle(net, &nfl);
        if (v == LRP_V_NONFINITE || nfl >= 0)
            fail_msg("%s: verdict %s, nf_layer %d on a finite trace", desc, lrp_verdict_name(v),
                     nfl);
        lrp_net_free(net);
    }
}

/* A non-finite input must be reported by the reference (flag nan or inf on
 * some layer).  KNOWN BUG "pipeline-nonfinite-input" (core/pipeline.c): the
 * pipeline scans only the relevance handed to each layer's inputs
 * (flags_nan_inf on rin), never the forward activations, so a NaN/inf input
 * that the rule filters out -- pos(NaN) = +0 in alpha-beta / z+ / ReLU, or
 * w-square and flat, which ignore activations -- leaves no flag at all.
 * Skipped (not failed) while the bug is open; passes once it is fixed. */
static void test_nonfinite_input_flagged(void **state)
{
    (void)state;
    printf("[ adversar ] non-finite inputs without a nan/inf flag: %ld\n",
           g.nonfinite_input_unreported);
    /* fixed: the pipeline scans forward activations for NaN/inf too */
    assert_int_equal(g.nonfinite_input_unreported, 0);
}

static int report_totals(void **state)
{
    (void)state;
    printf("[ adversar ] %ld cases: reference NaN from finite inputs %ld, inf values from "
           "finite inputs %ld; zero denominators without stabilizer checked %ld, unflagged %ld; "
           "non-finite inputs refused by the reference %ld, unreported %ld; float32 traces "
           "with NaN/inf %ld, missed by the oracle %ld; NONFINITE verdicts %ld (%ld with a "
           "finite float32 trace)\n",
           g.cases, g.ref_nan_finite, g.ref_inf_finite, g.undef_checked, g.undef_missing,
           g.ref_runs_failed_nonfinite, g.nonfinite_input_unreported, g.f32_nonfinite,
           g.f32_nonfinite_missed, g.nonfinite_verdicts, g.nonfinite_verdict_finite_f32);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_bn),
        cmocka_unit_test(test_dead_unit_sign0),
        cmocka_unit_test(test_nonfinite_input_flagged),
    };
    return cmocka_run_group_tests(tests, NULL, report_totals);
}
