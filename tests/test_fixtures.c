/*
 * test_fixtures.c -- every registered fixture builds and validates, is a
 * pure function of its seed, and the adversarial ones really carry the
 * feature they are named after (checked by recomputing it here from the
 * stored numbers, not by trusting the edit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "fixtures.h"
#include "lrp.h"

static lrp_net *build(const char *name)
{
    lrp_net *net = NULL;
    lrp_err e = {0};
    const lrp_fixture_def *d = lrp_fixture_lookup(name);
    if (!d)
        fail_msg("no fixture '%s'", name);
    if (d->build(&net, LRP_FIXTURE_SEED, &e) != LRP_OK)
        fail_msg("building %s: %s", name, e.msg);
    return net;
}

static void test_all_build_and_validate(void **state)
{
    (void)state;
    for (int i = 0; i < lrp_fixture_count; i++) {
        lrp_net *n = build(lrp_fixture_defs[i].name);
        lrp_err e = {0};
        if (lrp_net_infer(n, lrp_fixture_defs[i].name, &e) != LRP_OK)
            fail_msg("%s", e.msg);
        assert_true(n->n_layers >= 3);
        assert_non_null(n->input);
        assert_int_equal(n->seed, LRP_FIXTURE_SEED);
        lrp_net_free(n);
    }
}

/* z_j of a Dense layer fed directly by the input, in float32 with the
 * naive left-to-right order (only signs/zeros/inf are used from it). */
static float dense_z_f32(const lrp_net *n, const char *layer, int b, int64_t j)
{
    const lrp_layer *l = &n->layers[lrp_net_find(n, layer)];
    int64_t k = n->layers[l->in[0]].shape.d[0];
    const float *x = n->input + b * k;
    float s = 0.0f;
    int first = 1;
    for (int64_t i = 0; i < k; i++) {
        float p = x[i] * l->w[j * k + i];
        s = first ? p : s + p;
        first = 0;
    }
    return s + l->b[j];
}

static void test_negzero_denominators(void **state)
{
    (void)state;
    lrp_net *n = build("negzero");
    int64_t nin = lrp_shape_numel(&n->layers[0].shape);
    int negzero_inputs = 0;
    for (int64_t i = 0; i < n->batch * nin; i++)
        negzero_inputs += n->input[i] == 0.0f && signbit(n->input[i]);
    assert_true(negzero_inputs > 0);
    for (int b = 0; b < n->batch; b++) {
        float z0 = dense_z_f32(n, "fc1", b, 0), z1 = dense_z_f32(n, "fc1", b, 1);
        assert_true(z0 == 0.0f && signbit(z0));
        assert_true(z1 == 0.0f && !signbit(z1));
    }
    lrp_net_free(n);
}

static void test_nearcancel_is_ill_conditioned(void **state)
{
    (void)state;
    lrp_net *n = build("nearcancel");
    const lrp_layer *l = &n->layers[lrp_net_find(n, "fc1")];
    int64_t k = n->layers[l->in[0]].shape.d[0];
    /* exact enough: binary64 sums of 13 products of binary32 values */
    double s = l->b[0], sa = fabs((double)l->b[0]);
    for (int64_t i = 0; i < k; i++) {
        s += (double)n->input[i] * l->w[i];
        sa += fabs((double)n->input[i] * l->w[i]);
    }
    double kappa = sa / fabs(s);
    /* planted |z| ~ 1e-7 sum|z|, perturbed by rounding the last weight to
     * binary32 (relative 2^-24 of one term): kappa must exceed 1e5, i.e.
     * u * kappa > 5e-3 is not small. */
    assert_true(kappa > 1e5);
    lrp_net_free(n);
}

static void test_dead_units(void **state)
{
    (void)state;
    lrp_net *n = build("vgg_dead");
    const lrp_layer *c = &n->layers[lrp_net_find(n, "conv2_1")];
    int64_t k = (n->layers[c->in[0]].shape.d[0]) * c->kh * c->kw;
    for (int64_t i = 0; i < k; i++)
        assert_true(c->w[3 * k + i] == 0.0f);
    assert_true(c->b[3] == 0.0f);
    lrp_net_free(n);
}

static void test_overflow_in_float32(void **state)
{
    (void)state;
    lrp_net *n = build("overflow");
    assert_true(isinf(dense_z_f32(n, "fc1", 0, 0)));
    lrp_net_free(n);
}

static void test_subnormal_inputs(void **state)
{
    (void)state;
    lrp_net *n = build("subnormal");
    int64_t nin = lrp_shape_numel(&n->layers[0].shape);
    int sub = 0;
    for (int64_t i = 0; i < n->batch * nin; i++)
        sub += fpclassify(n->input[i]) == FP_SUBNORMAL;
    assert_true(sub > nin); /* most of them */
    lrp_net_free(n);
}

static void test_abempty_parts(void **state)
{
    (void)state;
    lrp_net *n = build("abempty");
    const lrp_layer *l = &n->layers[lrp_net_find(n, "fc1")];
    int64_t k = n->layers[l->in[0]].shape.d[0];
    for (int64_t i = 0; i < n->batch * k; i++)
        assert_true(n->input[i] >= 0.0f);
    for (int64_t i = 0; i < k; i++) {
        assert_true(l->w[i] >= 0.0f);     /* unit 0: no negative part */
        assert_true(l->w[k + i] <= 0.0f); /* unit 1: no positive part */
    }
    lrp_net_free(n);
}

static void test_bnzero(void **state)
{
    (void)state;
    lrp_net *n = build("bnzero");
    const lrp_layer *l = &n->layers[lrp_net_find(n, "bn1")];
    assert_true(l->bn_var[0] == 0.0f && l->bn_eps > 0.0f);
    assert_true(l->bn_gamma[1] == 0.0f);
    lrp_net_free(n);
}

static void test_zero_input(void **state)
{
    (void)state;
    lrp_net *n = build("zero_input");
    int64_t nin = lrp_shape_numel(&n->layers[0].shape);
    for (int64_t i = 0; i < n->batch * nin; i++)
        assert_true(n->input[i] == 0.0f);
    lrp_net_free(n);
}

static void test_streams_independent(void **state)
{
    (void)state;
    /* vgg and vgg_dead share a body but not a stream: each fixture draws
     * from the seed mixed with its own index. */
    lrp_net *a = build("vgg"), *b = build("vgg_dead");
    assert_true(memcmp(a->input, b->input, 16 * sizeof(float)) != 0);
    lrp_net_free(a);
    lrp_net_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_build_and_validate),
        cmocka_unit_test(test_negzero_denominators),
        cmocka_unit_test(test_nearcancel_is_ill_conditioned),
        cmocka_unit_test(test_dead_units),
        cmocka_unit_test(test_overflow_in_float32),
        cmocka_unit_test(test_subnormal_inputs),
        cmocka_unit_test(test_abempty_parts),
        cmocka_unit_test(test_bnzero),
        cmocka_unit_test(test_zero_input),
        cmocka_unit_test(test_streams_independent),
    };
    return cmocka_run_group_tests_name("fixtures", tests, NULL, NULL);
}
