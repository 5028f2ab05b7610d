/*
 * test_graph.c -- the network model: name tables, shape inference,
 * validation of every structural and parameter error, composites, costs,
 * and the deterministic builder / PRNG the fixtures rest on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fixtures.h"
#include "kinds.h"
#include "lrp.h"

/* ---- the kind records (core/kinds.h) ---- */

/* The table itself is complete by construction (a kind without a record
 * does not link); this checks what the compiler cannot: each record sits
 * at its own index and is coherent (its default rule is admissible, its
 * schema well formed: attribute names unique, vectors within 4 fields; a
 * forward step, and an LRP step or pass-through for a kind with inputs). */
static void test_kind_records(void **state)
{
    (void)state;
    for (int i = 0; i < LRP_LAYER_COUNT; i++) {
        const lrp_kind_desc *kd = lrp_kind((lrp_layer_kind)i);
        assert_non_null(kd);
        assert_int_equal(kd->kind, i);
        assert_non_null(kd->family);
        assert_non_null(kd->infer);
        assert_non_null(kd->forward);
        /* a kind with inputs sends relevance back: a step, or through */
        if (lrp_layer_kind_max_inputs((lrp_layer_kind)i) > 0)
            assert_true(kd->lrp_step != NULL || kd->through != NULL);
        assert_true((kd->rules >> kd->default_rule) & 1u);
        assert_true(kd->n_attrs == 0 || kd->attrs != NULL);
        for (int a = 0; a < kd->n_attrs; a++) {
            const lrp_kind_attr *at = &kd->attrs[a];
            assert_non_null(at->name);
            if (at->type == LRP_A_ENUM) { /* n: its list of values */
                assert_non_null(lrp_attr_enums[at->n]);
                assert_non_null(lrp_attr_enums[at->n][0]);
                continue;
            }
            assert_true(at->n >= 1 && at->n <= 4);
            assert_true(at->type == LRP_A_I32V || at->n == 1);
            for (int b = 0; b < a; b++)
                assert_true(strcmp(kd->attrs[b].name, at->name) != 0);
        }
        /* a linear kind takes the composites' rules, a pass kind only pass */
        if (kd->role == LRP_ROLE_PASS)
            assert_int_equal(kd->rules, 1u << LRP_RULE_PASS);
        if (kd->role == LRP_ROLE_LINEAR)
            assert_non_null(kd->param_shape);
    }
}

/* ---- name tables ---- */

static void test_names_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < LRP_LAYER_COUNT; i++) {
        lrp_layer_kind k;
        assert_int_equal(lrp_layer_kind_parse(lrp_layer_kind_name((lrp_layer_kind)i), &k), 0);
        assert_int_equal(k, i);
    }
    for (int i = 0; i < LRP_RULE_COUNT; i++) {
        lrp_rule_id r;
        assert_int_equal(lrp_rule_parse(lrp_rule_name((lrp_rule_id)i), &r), 0);
        assert_int_equal(r, i);
    }
    for (int i = 0; i < LRP_STAB_COUNT; i++) {
        lrp_stab_id s;
        assert_int_equal(lrp_stab_parse(lrp_stab_name((lrp_stab_id)i), &s), 0);
        assert_int_equal(s, i);
    }
    for (int i = 0; i < LRP_COMPOSITE_COUNT; i++) {
        lrp_composite_id c;
        assert_int_equal(lrp_composite_parse(lrp_composite_name((lrp_composite_id)i), &c), 0);
        assert_int_equal(c, i);
    }
    for (unsigned f = 1; f <= LRP_F_ALL_MASK; f <<= 1) {
        unsigned g = 0;
        assert_int_equal(lrp_flag_parse(lrp_flag_name(f), &g), 0);
        assert_int_equal(g, f);
    }
    lrp_rule_id r;
    assert_int_equal(lrp_rule_parse("epsilonn", &r), -1);
    lrp_layer_kind k;
    assert_int_equal(lrp_layer_kind_parse("conv2d", &k), -1); /* names are case-sensitive */
}

/* ---- PRNG ---- */

static void test_splitmix64_published_vectors(void **state)
{
    (void)state;
    /* Published SplitMix64 outputs for seed 0 (Vigna's splitmix64.c). */
    lrp_rng r;
    lrp_rng_seed(&r, 0);
    assert_true(lrp_rng_next(&r) == UINT64_C(0xe220a8397b1dcdaf));
    assert_true(lrp_rng_next(&r) == UINT64_C(0x6e789e6aa1b965f4));
    assert_true(lrp_rng_next(&r) == UINT64_C(0x06c45d188009454f));
}

static void test_rng_floats_exact_and_in_range(void **state)
{
    (void)state;
    lrp_rng r;
    lrp_rng_seed(&r, 12345);
    for (int i = 0; i < 100000; i++) {
        float s = lrp_rng_sym(&r), u = lrp_rng_unit(&r);
        assert_true(s >= -1.0f && s < 1.0f);
        assert_true(u >= 0.0f && u < 1.0f);
        /* k * 2^-23 with integer k: scaling back gives an integer */
        float ks = s * 0x1p23f, ku = u * 0x1p24f;
        assert_true(ks == (float)(int32_t)ks);
        assert_true(ku == (float)(int32_t)ku);
        assert_true(lrp_rng_below(&r, 7) < 7);
    }
}

/* ---- builder helpers ---- */

static lrp_net *build(const char *name, uint64_t seed)
{
    lrp_net *net = NULL;
    lrp_err e = {0};
    const lrp_fixture_def *d = lrp_fixture_lookup(name);
    assert_non_null(d);
    if (d->build(&net, seed, &e) != LRP_OK)
        fail_msg("building %s: %s", name, e.msg);
    return net;
}

static void test_builder_deterministic(void **state)
{
    (void)state;
    lrp_net *a = build("cnn", 7), *b = build("cnn", 7), *c = build("cnn", 8);
    assert_int_equal(a->n_layers, b->n_layers);
    int differs = 0;
    for (int i = 0; i < a->n_layers; i++) {
        lrp_shape ws;
        if (!lrp_layer_param_shape(a, i, 0, &ws))
            continue;
        size_t n = (size_t)lrp_shape_numel(&ws);
        assert_memory_equal(a->layers[i].w, b->layers[i].w, n * sizeof(float));
        differs |= memcmp(a->layers[i].w, c->layers[i].w, n * sizeof(float)) != 0;
    }
    assert_memory_equal(a->input, b->input,
                        (size_t)(a->batch * lrp_shape_numel(&a->layers[0].shape)) * sizeof(float));
    assert_true(differs); /* another seed gives other weights */
    lrp_net_free(a);
    lrp_net_free(b);
    lrp_net_free(c);
}

static void test_cnn_shapes_and_costs(void **state)
{
    (void)state;
    lrp_net *n = build("cnn", 1);
    int conv1 = lrp_net_find(n, "conv1"), pool1 = lrp_net_find(n, "pool1");
    int conv4 = lrp_net_find(n, "conv4"), fc = lrp_net_find(n, "fc");
    int flat = lrp_net_find(n, "flatten");
    assert_true(conv1 > 0 && pool1 > 0 && conv4 > 0 && fc > 0 && flat > 0);
    /* 12x12 input, 3x3 pad 1 keeps 12x12; 2x2/2 pool halves to 6x6;
     * second pool to 3x3; flatten 8*3*3 = 72. */
    assert_int_equal(n->layers[conv1].shape.rank, 3);
    assert_int_equal(n->layers[conv1].shape.d[0], 8);
    assert_int_equal(n->layers[conv1].shape.d[1], 12);
    assert_int_equal(n->layers[pool1].shape.d[1], 6);
    assert_int_equal(n->layers[flat].shape.d[0], 72);
    assert_int_equal(n->layers[fc].shape.d[0], 10);
    /* MACs by hand: conv1 = 8*12*12 outputs x 3*3*3 = 31104;
     * depthwise conv4 = 8*6*6 outputs x 1*3*3 = 2592; fc = 10*72. */
    assert_int_equal(lrp_layer_macs(n, conv1), 31104);
    assert_int_equal(lrp_layer_macs(n, conv4), 2592);
    assert_int_equal(lrp_layer_macs(n, fc), 720);
    /* params: conv1 8*3*9 + 8 bias; depthwise 8*1*9 + 8 */
    assert_int_equal(lrp_layer_param_count(n, conv1), 224);
    assert_int_equal(lrp_layer_param_count(n, conv4), 80);
    lrp_net_free(n);
}

/* ---- validation: each error is reported, with the layer named ---- */

/* A tiny valid net: input(2,6,6) -> conv -> relu -> flatten -> dense. */
static lrp_net *tiny(void)
{
    lrp_net *net = lrp_net_new();
    lrp_err e = {0};
    lrp_builder b;
    lrp_build_begin(&b, net, 3, &e);
    int x = lrp_build_input(&b, "in", 3, 2, 6, 6);
    x = lrp_build_conv(&b, "conv", x, 4, 3, 1, 0, 1, 1);
    x = lrp_build_relu(&b, "relu", x);
    x = lrp_build_flatten(&b, "flat", x);
    x = lrp_build_dense(&b, "fc", x, 3, 1);
    (void)x;
    if (lrp_build_finish(&b, 1) != LRP_OK)
        fail_msg("tiny: %s", e.msg);
    return net;
}

static void expect_invalid(lrp_net *net, lrp_status want, const char *needle1, const char *needle2)
{
    lrp_err e = {0};
    lrp_status st = lrp_net_infer(net, "t.h5", &e);
    if (st != want)
        fail_msg("status %d (%s), want %d; message: %s", st, lrp_status_name(st), want, e.msg);
    assert_non_null(strstr(e.msg, "t.h5"));
    if (!strstr(e.msg, needle1) || (needle2 && !strstr(e.msg, needle2)))
        fail_msg("message lacks '%s'/'%s': %s", needle1, needle2 ? needle2 : "", e.msg);
    assert_null(strchr(e.msg, '\n'));
    lrp_net_free(net);
}

static void test_tiny_is_valid(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    lrp_err e = {0};
    assert_int_equal(lrp_net_infer(n, "t.h5", &e), LRP_OK);
    lrp_net_free(n);
}

static void test_zero_stride(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->layers[1].sh = 0;
    expect_invalid(n, LRP_E_INVALID, "'conv'", "stride");
}

static void test_groups_not_dividing(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->layers[1].groups = 3; /* 2 input channels */
    expect_invalid(n, LRP_E_INVALID, "'conv'", "groups");
}

static void test_kernel_larger_than_input(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->layers[1].kh = 9;
    expect_invalid(n, LRP_E_INVALID, "'conv'", "larger");
}

static void test_dense_fan_in_needs_flat(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->layers[4].in[0] = 2; /* dense fed by the rank-3 relu */
    n->layers[3].n_in = 1;
    /* flatten now unused too; the rank check comes first (layer order) */
    expect_invalid(n, LRP_E_INVALID, "'fc'", "flat input");
}

static void test_absurd_units(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->layers[4].units = (int64_t)1 << 40;
    expect_invalid(n, LRP_E_INVALID, "'fc'", "units");
}

static void test_input_later_in_order(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->layers[2].in[0] = 3; /* relu reads flatten, which comes later */
    expect_invalid(n, LRP_E_INVALID, "'relu'", "later");
}

static void test_self_cycle(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->layers[2].in[0] = 2;
    expect_invalid(n, LRP_E_INVALID, "'relu'", "cycle");
}

static void test_dangling_layer(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->layers[3].in[0] = 1; /* flatten reads conv: relu is unused */
    expect_invalid(n, LRP_E_INVALID, "'relu'", "unused");
}

static void test_add_shape_mismatch(void **state)
{
    (void)state;
    lrp_net *net = lrp_net_new();
    lrp_err e = {0};
    lrp_builder b;
    lrp_build_begin(&b, net, 3, &e);
    int x = lrp_build_input(&b, "in", 3, 2, 6, 6);
    int c1 = lrp_build_conv(&b, "c1", x, 4, 3, 1, 1, 1, 1);
    int c2 = lrp_build_conv(&b, "c2", x, 4, 3, 1, 0, 1, 1); /* 4x4 */
    int ins[2] = {c1, c2};
    int a = lrp_build_add(&b, "sum", 2, ins);
    assert_int_equal(a, -1);
    assert_int_equal(e.code, LRP_E_INVALID);
    assert_non_null(strstr(e.msg, "'sum'"));
    assert_non_null(strstr(e.msg, "(4, 4, 4)"));
    lrp_net_free(net);
}

static void test_arity(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->layers[2].n_in = 2;
    n->layers[2].in[1] = 0;
    expect_invalid(n, LRP_E_INVALID, "'relu'", "inputs");
}

static void test_rule_params(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->layers[1].rule = lrp_rule_default(LRP_RULE_ALPHABETA);
    n->layers[1].rule.alpha = 2.0f;
    n->layers[1].rule.beta = 0.5f;
    expect_invalid(n, LRP_E_INVALID, "'conv'", "alpha - beta");

    n = tiny();
    n->layers[4].rule = lrp_rule_default(LRP_RULE_EPSILON);
    n->layers[4].rule.eps = -1e-6f;
    expect_invalid(n, LRP_E_INVALID, "'fc'", "epsilon");

    n = tiny();
    n->layers[2].rule = lrp_rule_default(LRP_RULE_GAMMA); /* on a ReLU */
    expect_invalid(n, LRP_E_INVALID, "'relu'", "does not apply");

    n = tiny();
    n->layers[1].rule.stab = (lrp_stab_id)42;
    expect_invalid(n, LRP_E_UNSUPPORTED, "'conv'", "stabilizer");

    n = tiny();
    n->layers[1].rule.flags = 1u << 20;
    expect_invalid(n, LRP_E_UNSUPPORTED, "'conv'", "flag");

    n = tiny();
    n->layers[1].rule = lrp_rule_default(LRP_RULE_ZBOX);
    n->layers[1].rule.low = 2.0f;
    n->layers[1].rule.high = 1.0f;
    expect_invalid(n, LRP_E_INVALID, "'conv'", "bounds");
}

static void test_bn_canonize_needs_linear_input(void **state)
{
    (void)state;
    lrp_net *net = lrp_net_new();
    lrp_err e = {0};
    lrp_builder b;
    lrp_build_begin(&b, net, 3, &e);
    int x = lrp_build_input(&b, "in", 3, 2, 6, 6);
    x = lrp_build_conv(&b, "conv", x, 4, 3, 1, 0, 1, 1);
    x = lrp_build_relu(&b, "relu", x);
    x = lrp_build_bn(&b, "bn", x);
    x = lrp_build_flatten(&b, "flat", x);
    x = lrp_build_dense(&b, "fc", x, 3, 1);
    assert_int_equal(lrp_build_finish(&b, 1), LRP_OK);
    net->layers[3].rule.flags |= LRP_F_BN_CANONIZE;
    expect_invalid(net, LRP_E_INVALID, "'bn'", "bn_canonize");
}

static void test_reshape_count(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    /* turn the flatten into a reshape to a wrong element count */
    n->layers[3].kind = LRP_LAYER_RESHAPE;
    n->layers[3].target.rank = 1;
    n->layers[3].target.d[0] = 63; /* conv gives 4*4*4 = 64 */
    expect_invalid(n, LRP_E_INVALID, "'flat'", "element count");
}

static void test_batch_range(void **state)
{
    (void)state;
    lrp_net *n = tiny();
    n->batch = 0;
    expect_invalid(n, LRP_E_INVALID, "network", "batch");
}

/* ---- composites ---- */

static void test_composites(void **state)
{
    (void)state;
    lrp_net *n = build("cnn", 1);
    lrp_composite_params p = lrp_composite_params_default();
    int conv1 = lrp_net_find(n, "conv1"), conv2 = lrp_net_find(n, "conv2");
    int fc = lrp_net_find(n, "fc"), add = lrp_net_find(n, "add");
    int pool1 = lrp_net_find(n, "pool1"), relu1 = lrp_net_find(n, "relu1");
    lrp_err e = {0};

    lrp_composite_apply(n, LRP_COMPOSITE_EPSILON_PLUS_FLAT, &p);
    assert_int_equal(n->layers[conv1].rule.rule, LRP_RULE_FLAT);
    assert_int_equal(n->layers[conv2].rule.rule, LRP_RULE_ZPLUS);
    assert_int_equal(n->layers[fc].rule.rule, LRP_RULE_EPSILON);
    assert_true(n->layers[fc].rule.eps == p.eps);
    assert_int_equal(n->layers[add].rule.rule, LRP_RULE_EPSILON);
    assert_int_equal(n->layers[pool1].rule.rule, LRP_RULE_WTA);
    assert_int_equal(n->layers[relu1].rule.rule, LRP_RULE_PASS);
    assert_string_equal(n->composite, "EpsilonPlusFlat");
    assert_int_equal(lrp_net_infer(n, "t", &e), LRP_OK);

    lrp_composite_apply(n, LRP_COMPOSITE_EPSILON_GAMMA_BOX, &p);
    assert_int_equal(n->layers[conv1].rule.rule, LRP_RULE_ZBOX);
    assert_int_equal(n->layers[conv2].rule.rule, LRP_RULE_GAMMA);
    assert_true(n->layers[conv2].rule.gamma == 0.25f);
    assert_int_equal(lrp_net_infer(n, "t", &e), LRP_OK);

    lrp_composite_apply(n, LRP_COMPOSITE_SEQUENTIAL_PRESET_A, &p);
    assert_int_equal(n->layers[conv2].rule.rule, LRP_RULE_ALPHABETA);
    assert_true(n->layers[conv2].rule.alpha == 1.0f && n->layers[conv2].rule.beta == 0.0f);
    assert_int_equal(n->layers[fc].rule.rule, LRP_RULE_EPSILON);

    lrp_composite_apply(n, LRP_COMPOSITE_EPSILON_ALPHA2_BETA1_FLAT, &p);
    assert_int_equal(n->layers[conv1].rule.rule, LRP_RULE_FLAT);
    assert_true(n->layers[conv2].rule.alpha == 2.0f && n->layers[conv2].rule.beta == 1.0f);
    assert_int_equal(lrp_net_infer(n, "t", &e), LRP_OK);

    /* a uniform rule keeps BN canonization flags and sets the norm layers */
    int bn1 = lrp_net_find(n, "bn1");
    n->layers[bn1].rule.flags |= LRP_F_BN_CANONIZE;
    lrp_rule_spec z = lrp_rule_default(LRP_RULE_ZERO);
    lrp_rule_apply_all(n, &z);
    assert_true(n->layers[bn1].rule.flags & LRP_F_BN_CANONIZE);
    assert_int_equal(n->layers[add].rule.rule, LRP_RULE_ZERO);
    assert_int_equal(n->layers[conv2].rule.rule, LRP_RULE_ZERO);
    assert_int_equal(lrp_net_infer(n, "t", &e), LRP_OK);
    lrp_net_free(n);
}

static void test_default_eps_is_binary32_1e6(void **state)
{
    (void)state;
    /* Peers write 1e-6 as a decimal literal their framework rounds to
     * binary32; the reference must use exactly that value. */
    assert_true(lrp_rule_default(LRP_RULE_EPSILON).eps == (float)1e-6);
    assert_true(lrp_rule_default(LRP_RULE_ZERO).eps == 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_splitmix64_published_vectors),
        cmocka_unit_test(test_rng_floats_exact_and_in_range),
        cmocka_unit_test(test_builder_deterministic),
        cmocka_unit_test(test_cnn_shapes_and_costs),
        cmocka_unit_test(test_tiny_is_valid),
        cmocka_unit_test(test_zero_stride),
        cmocka_unit_test(test_groups_not_dividing),
        cmocka_unit_test(test_kernel_larger_than_input),
        cmocka_unit_test(test_dense_fan_in_needs_flat),
        cmocka_unit_test(test_absurd_units),
        cmocka_unit_test(test_input_later_in_order),
        cmocka_unit_test(test_self_cycle),
        cmocka_unit_test(test_dangling_layer),
        cmocka_unit_test(test_add_shape_mismatch),
        cmocka_unit_test(test_arity),
        cmocka_unit_test(test_rule_params),
        cmocka_unit_test(test_bn_canonize_needs_linear_input),
        cmocka_unit_test(test_reshape_count),
        cmocka_unit_test(test_batch_range),
        cmocka_unit_test(test_composites),
        cmocka_unit_test(test_default_eps_is_binary32_1e6),
        cmocka_unit_test(test_kind_records),
    };
    return cmocka_run_group_tests_name("graph", tests, NULL, NULL);
}
