/*
 * test_negzero.c -- the sign of an exact zero, fast path against the MPFR
 * reference (issue 18).
 *
 * core/pipeline.h: a sum whose exact value is 0 is -0 iff every summand is
 * -0, else +0; products of zeros carry the xor of the signs.  Small nets
 * built here make -0 denominators arise in Dense, Conv2D with padding (the
 * padding cells are in every border window), AvgPool, BatchNorm and Add;
 * each runs through the reference and the float32 backend on every ISA
 * path the CPU has, under the signbit convention (where the sign of a zero
 * denominator decides +eps or -eps).
 *
 * Tolerance: bitwise for activations and denominators; relevance bitwise
 * except the sign of a zero (see compare's caller).  Every value in these nets is a small integer or an
 * exact zero (inputs -0, weights +-1..4, biases -0 or 1, BN scale
 * 1/sqrt(1 + eps) applied to zeros), so every float32 operation is exact and
 * the reference's value rounded to binary32 must be the fast path's bits,
 * the sign of every zero included.  The only inexact values are the
 * stabilized quotients R / (0 +- eps) of the zero denominators, and those
 * are one IEEE division of exact operands on both sides (the reference
 * rounds its p-bit quotient once more to binary32: equal unless a double
 * rounding differs, which these values do not provoke).
 *
 * The ReLU test pins the documented convention: ReLU(-0) = +0 on both paths
 * (pos(x) = x if x > 0 else +0), unlike PyTorch's clamp(min=0), which keeps
 * -0 (docs/FORMAT.md).
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
#include "fixtures.h"
#include "fp_kernels.h"
#include "pipeline.h"
#include "reference.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static void fill(float *p, int64_t n, float v)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = v;
}

/* epsilon everywhere it applies, convention signbit, eps 2^-10 */
static void rules_signbit(lrp_net *net)
{
    lrp_rule_spec r = lrp_rule_default(LRP_RULE_EPSILON);
    r.eps = 0x1p-10f;
    r.stab = LRP_STAB_SIGNBIT;
    lrp_rule_apply_all(net, &r);
    for (int i = 0; i < net->n_layers; i++) {
        lrp_rule_spec *s = &net->layers[i].rule;
        if (s->rule != LRP_RULE_PASS && s->rule != LRP_RULE_WTA) {
            s->stab = LRP_STAB_SIGNBIT;
            s->eps = 0x1p-10f;
            if (s->rule == LRP_RULE_ZERO)
                s->rule = LRP_RULE_EPSILON;
        }
    }
    lrp_err e = {0};
    if (lrp_net_infer(net, "test_negzero", &e) != LRP_OK)
        fail_msg("infer: %s", e.msg);
}

/* n values of a float tensor against an MPFR tensor rounded to binary32 */
static int64_t compare(const char *what, const char *layer, const float *f, mpfr_srcptr r,
                       int64_t n, const char *isa, int zero_sign)
{
    int64_t negz = 0;
    for (int64_t i = 0; i < n; i++) {
        float rv = mpfr_get_flt(r + i, MPFR_RNDN);
        if (!zero_sign && rv == 0.0f && f[i] == 0.0f)
            continue;
        if (bits(rv) != bits(f[i]) && !(isnan(rv) && isnan(f[i])))
            fail_msg("%s of '%s' [%lld] on %s: fast path %a (%08x), reference %a (%08x)", what,
                     layer, (long long)i, isa, (double)f[i], bits(f[i]), (double)rv, bits(rv));
        negz += rv == 0.0f && signbit(rv);
    }
    return negz;
}

/* Runs both paths; returns the number of -0 denominators the reference
 * had in layers of kind `kind` (the test's teeth). */
static int64_t both_paths(lrp_net *net, lrp_layer_kind kind)
{
    rules_signbit(net);
    lrp_ref_result *ref = NULL;
    lrp_ref_opts o = lrp_ref_opts_default();
    lrp_err e = {0};
    if (lrp_ref_run(&ref, net, &o, &e) != LRP_OK)
        fail_msg("reference: %s", e.msg);
    int64_t negz = 0;
    lrp_fp_isa saved = lrp_fp_get_isa();
    int paths = 0;
    for (int isa = 0; isa < LRP_FP_ISA_COUNT; isa++) {
        if (lrp_fp_set_isa((lrp_fp_isa)isa) != 0)
            continue;
        paths++;
        const char *in = lrp_fp_isa_name((lrp_fp_isa)isa);
        lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
        lrp_backend be;
        lrp_f32_backend(&be, cx);
        lrp_pipe *fp = NULL;
        if (lrp_pipe_run(&fp, &be, net, &e) != LRP_OK)
            fail_msg("fast path: %s", e.msg);
        int64_t B = net->batch;
        int64_t nz = 0;
        for (int li = 0; li < net->n_layers; li++) {
            const lrp_pipe_layer *F = &fp->L[li], *R = &ref->pipe->L[li];
            const char *name = net->layers[li].name;
            compare("activation", name, F->act, R->act, F->n * B, in, 1);
            /* relevance: bitwise except the sign of a zero, which the fast
             * path's R_i = a_i * g_i step does not follow (its sum starts
             * from +0 on purpose: backend_f32.c rin_range) */
            compare("relevance", name, F->rel, R->rel, F->n * B, in, 0);
            for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++) {
                assert_int_equal(F->den[k] != NULL, R->den[k] != NULL);
                if (!F->den[k])
                    continue;
                int64_t c = compare("denominator", name, F->den[k], R->den[k],
                                    F->n_units * B, in, 1);
                if (net->layers[li].kind == kind)
                    nz += c;
            }
        }
        negz = nz;
        lrp_pipe_free(fp);
        lrp_f32_ctx_free(cx);
    }
    lrp_fp_set_isa(saved);
    assert_true(paths >= 1);
    lrp_ref_free(ref);
    return negz;
}

static lrp_net *begin(lrp_builder *b)
{
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    static lrp_err e;
    lrp_build_begin(b, net, 18, &e);
    return net;
}

static void finish(lrp_builder *b, lrp_net *net)
{
    if (lrp_build_finish(b, 1) != LRP_OK)
        fail_msg("build failed");
    (void)net;
}

/* fc: unit 0 has positive weights on -0 inputs and bias -0: every summand
 * is -0, den -0.  Unit 1 has one negative weight: a +0 product, den +0. */
static void negzero_dense_units(lrp_layer *l, int64_t fanin)
{
    for (int64_t i = 0; i < fanin; i++) {
        l->w[i] = (float)(1 + i % 4);
        l->w[fanin + i] = i == 1 ? -1.0f : 1.0f;
    }
    l->b[0] = -0.0f;
    l->b[1] = -0.0f;
}

static void head(lrp_layer *l, int64_t fanin)
{
    fill(l->w, 2 * fanin, 1.0f);
    fill(l->b, 2, 1.0f);
}

static void test_dense(void **state)
{
    (void)state;
    lrp_builder b;
    lrp_net *net = begin(&b);
    int x = lrp_build_input(&b, "input", 1, 4, 0, 0);
    int f1 = lrp_build_dense(&b, "fc1", x, 2, 1);
    int f2 = lrp_build_dense(&b, "fc2", f1, 2, 1);
    finish(&b, net);
    fill(net->input, 4, -0.0f);
    negzero_dense_units(&net->layers[f1], 4);
    head(&net->layers[f2], 2);
    assert_true(both_paths(net, LRP_LAYER_DENSE) > 0);
    lrp_net_free(net);
}

/* conv 3x3, padding 1 on a 3x3 image of -0: every window but the centre
 * holds padding cells.  Channel 0: weights +1 (in-image products -0, the
 * padding products +0 * 1 = +0 are no summands), bias -0: den -0 at all 9
 * outputs.  Channel 1: weights -1, products +0: den +0. */
static void test_conv_padding(void **state)
{
    (void)state;
    lrp_builder b;
    lrp_net *net = begin(&b);
    int x = lrp_build_input(&b, "input", 3, 1, 3, 3);
    int c = lrp_build_conv(&b, "conv", x, 2, 3, 1, 1, 1, 1);
    x = lrp_build_flatten(&b, "flatten", c);
    int f = lrp_build_dense(&b, "fc", x, 2, 1);
    finish(&b, net);
    fill(net->input, 9, -0.0f);
    fill(net->layers[c].w, 9, 1.0f);
    fill(net->layers[c].w + 9, 9, -1.0f);
    net->layers[c].b[0] = -0.0f;
    net->layers[c].b[1] = -0.0f;
    head(&net->layers[f], 18);
    assert_true(both_paths(net, LRP_LAYER_CONV2D) >= 9);
    lrp_net_free(net);
}

/* avg pool 2x2/2 over a 4x4 plane of -0: each window's sum is -0 */
static void test_avgpool(void **state)
{
    (void)state;
    lrp_builder b;
    lrp_net *net = begin(&b);
    int x = lrp_build_input(&b, "input", 3, 1, 4, 4);
    int p = lrp_build_avgpool(&b, "pool", x, 2, 2, 0);
    x = lrp_build_flatten(&b, "flatten", p);
    int f = lrp_build_dense(&b, "fc", x, 2, 1);
    finish(&b, net);
    fill(net->input, 16, -0.0f);
    head(&net->layers[f], 4);
    assert_true(both_paths(net, LRP_LAYER_AVGPOOL2D) >= 4);
    lrp_net_free(net);
}

/* BatchNorm after a Dense whose unit 0 is -0: y = wc * (-0) + shift with
 * mean 0 and beta -0 (shift = -0 - wc * 0 = -0) is -0 */
static void test_batchnorm(void **state)
{
    (void)state;
    lrp_builder b;
    lrp_net *net = begin(&b);
    int x = lrp_build_input(&b, "input", 1, 4, 0, 0);
    int f1 = lrp_build_dense(&b, "fc1", x, 2, 1);
    int bn = lrp_build_bn(&b, "bn", f1);
    int f2 = lrp_build_dense(&b, "fc2", bn, 2, 1);
    finish(&b, net);
    fill(net->input, 4, -0.0f);
    negzero_dense_units(&net->layers[f1], 4);
    lrp_layer *l = &net->layers[bn];
    fill(l->bn_gamma, 2, 1.0f);
    fill(l->bn_var, 2, 1.0f);
    fill(l->bn_mean, 2, 0.0f);
    fill(l->bn_beta, 2, -0.0f);
    head(&net->layers[f2], 2);
    assert_true(both_paths(net, LRP_LAYER_BATCHNORM) > 0);
    lrp_net_free(net);
}

/* Add of two Dense branches whose unit 0 is -0: -0 + -0 = -0 */
static void test_add(void **state)
{
    (void)state;
    lrp_builder b;
    lrp_net *net = begin(&b);
    int x = lrp_build_input(&b, "input", 1, 4, 0, 0);
    int ins[2];
    ins[0] = lrp_build_dense(&b, "fa", x, 2, 1);
    ins[1] = lrp_build_dense(&b, "fb", x, 2, 1);
    int a = lrp_build_add(&b, "add", 2, ins);
    int f2 = lrp_build_dense(&b, "fc2", a, 2, 1);
    finish(&b, net);
    fill(net->input, 4, -0.0f);
    negzero_dense_units(&net->layers[ins[0]], 4);
    negzero_dense_units(&net->layers[ins[1]], 4);
    head(&net->layers[f2], 2);
    assert_true(both_paths(net, LRP_LAYER_ADD) > 0);
    lrp_net_free(net);
}

/* ReLU(-0) = +0 on both paths: a -0 activation (Dense unit 0) goes
 * through a ReLU; docs/FORMAT.md states it. */
static void test_relu_of_negzero(void **state)
{
    (void)state;
    lrp_builder b;
    lrp_net *net = begin(&b);
    int x = lrp_build_input(&b, "input", 1, 4, 0, 0);
    int f1 = lrp_build_dense(&b, "fc1", x, 2, 1);
    int r = lrp_build_relu(&b, "relu", f1);
    int f2 = lrp_build_dense(&b, "fc2", r, 2, 1);
    finish(&b, net);
    fill(net->input, 4, -0.0f);
    negzero_dense_units(&net->layers[f1], 4);
    head(&net->layers[f2], 2);
    both_paths(net, LRP_LAYER_RELU); /* both paths agree bit for bit */
    lrp_ref_result *ref = NULL;
    lrp_ref_opts o = lrp_ref_opts_default();
    lrp_err e = {0};
    assert_int_equal(lrp_ref_run(&ref, net, &o, &e), LRP_OK);
    mpfr_srcptr in = lrp_ref_act(ref, f1), out = lrp_ref_act(ref, r);
    assert_true(mpfr_zero_p(in) && mpfr_signbit(in));    /* the Dense gave -0 */
    assert_true(mpfr_zero_p(out) && !mpfr_signbit(out)); /* ReLU(-0) = +0 */
    lrp_ref_free(ref);
    lrp_net_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense),          cmocka_unit_test(test_conv_padding),
        cmocka_unit_test(test_avgpool),        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_add),            cmocka_unit_test(test_relu_of_negzero),
    };
    return cmocka_run_group_tests_name("negzero", tests, NULL, NULL);
}
