/*
 * test_api.c -- the public C API of include/lrp.h that runs LRP and judges
 * a trace (lrp_run, lrp_judge and the lrp_judgement accessors), used the way
 * a third-party program would: only lrp.h (fixtures are built with the
 * generator, as `lrp-oracle gen` writes them).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixtures.h"
#include "util/testutil.h"
#include "lrp.h"


static int64_t cells(const lrp_net *net, int i)
{
    return lrp_shape_numel(&net->layers[i].shape) * net->batch;
}

/* The reference as a trace: end to end it agrees with the reference to
 * within its own low part, a tiny fraction of one sharp bound on every
 * layer (its local verdict is not asserted: the rounded reference
 * activations are not what a float32 forward step computes, which the
 * forward check reports); the fast path passes, and judging
 * its stored trace gives the same verdict per layer as judging a fresh run
 * (the fast path is deterministic). */
static void test_run_and_judge(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("cnn");
    lrp_err e = {0};
    lrp_composite_params cp = lrp_composite_params_default();
    lrp_composite_apply(net, LRP_COMPOSITE_EPSILON_PLUS_FLAT, &cp);
    lrp_trace *t = NULL;
    assert_int_equal(lrp_run(&t, net, LRP_ENGINE_REFERENCE, NULL, &e), LRP_OK);
    assert_non_null(t);
    assert_string_equal(t->source, "reference");
    assert_int_equal(t->precision, 128);
    for (int i = 0; i < net->n_layers; i++) {
        assert_non_null(t->relevance[i]);
        assert_non_null(t->relevance_lo[i]);
        assert_non_null(t->activation[i]);
    }
    /* the input relevance is not trivially zero */
    double s = 0;
    for (int64_t k = 0; k < cells(net, 0); k++)
        s += fabs((double)t->relevance[0][k]);
    assert_true(s > 0);
    assert_int_equal(lrp_run(NULL, net, LRP_ENGINE_FAST, NULL, &e), LRP_OK);
    assert_int_equal(net->n_traces, 2);

    lrp_judgement *jr = NULL, *jf = NULL, *jn = NULL;
    assert_int_equal(lrp_judge(&jr, net, "reference", NULL, &e), LRP_OK);
    /* the trace holds hi = RN32(reference): its error is at most half an
     * ulp of binary32, and the sharp bound of every cell includes at least
     * its final rounding to binary32 (a ratio of 1 at most); a bug that
     * stored another layer's values or the wrong sign would be far above */
    for (int i = 0; i < net->n_layers; i++) {
        assert_true(lrp_judgement_layer_judged(jr, i));
        assert_true(lrp_judgement_layer_ratio(jr, i) <= 1.0);
    }
    assert_int_equal(lrp_judge(&jf, net, "fastpath", NULL, &e), LRP_OK);
    assert_int_equal(lrp_judge(&jn, net, NULL, NULL, &e), LRP_OK);
    assert_true(lrp_judgement_ok(jf));
    assert_int_equal(lrp_judgement_n_layers(jf), net->n_layers);
    for (int i = 0; i < net->n_layers; i++) {
        assert_string_equal(lrp_judgement_layer_name(jf, i), net->layers[i].name);
        assert_true(lrp_judgement_layer_judged(jf, i));
        assert_int_equal(lrp_judgement_layer_verdict(jf, i), lrp_judgement_layer_verdict(jn, i));
        assert_true(lrp_judgement_layer_ratio(jf, i) == lrp_judgement_layer_ratio(jn, i));
    }
    /* the input's relevance is computed by the first layer */
    assert_non_null(strstr(lrp_judgement_layer_by(jf, 0), net->layers[1].name));
    assert_int_equal(lrp_judgement_first_nonfinite(jf, NULL, NULL, NULL), 0);
    assert_string_equal(lrp_judgement_origin(jf), "");
    lrp_judgement_free(jr);
    lrp_judgement_free(jf);
    lrp_judgement_free(jn);
    lrp_net_free(net);
}

/* A trace damaged like a buggy library (input relevance sign-flipped) is
 * FAIL, and the discrepancy is attributed to the layer that computed the
 * input relevance. */
static void test_damaged_trace(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("cnn");
    lrp_err e = {0};
    assert_int_equal(lrp_run(NULL, net, LRP_ENGINE_FAST, NULL, &e), LRP_OK);
    lrp_trace *b = lrp_net_trace_add(net, "buggy", &e);
    assert_non_null(b);
    const lrp_trace *f = &net->traces[lrp_net_trace_find(net, "fastpath")];
    b->precision = 24;
    for (int i = 0; i < net->n_layers; i++) {
        b->relevance[i] = malloc((size_t)cells(net, i) * sizeof(float));
        assert_non_null(b->relevance[i]);
        memcpy(b->relevance[i], f->relevance[i], (size_t)cells(net, i) * sizeof(float));
    }
    for (int64_t k = 0; k < cells(net, 0); k++)
        b->relevance[0][k] = -b->relevance[0][k];
    lrp_judgement *j = NULL;
    lrp_judge_opts o = {0};
    o.no_proof = 1;
    assert_int_equal(lrp_judge(&j, net, "buggy", &o, &e), LRP_OK);
    assert_int_equal(lrp_judgement_verdict(j), LRP_V_FAIL);
    assert_false(lrp_judgement_ok(j));
    assert_int_equal(lrp_judgement_layer_verdict(j, 0), LRP_V_FAIL);
    assert_non_null(strstr(lrp_judgement_origin(j), net->layers[1].name));
    /* every other tensor is untouched and passes */
    for (int i = 1; i < net->n_layers; i++)
        assert_true(lrp_judgement_layer_verdict(j, i) <= LRP_V_ILL_CONDITIONED);
    lrp_judgement_free(j);
    lrp_net_free(net);
}

/* The first NaN origin: epsilon with sign(0) = 0 on the dead unit of
 * vgg_dead (iNNvestigate #2). */
static void test_first_nonfinite(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("vgg_dead");
    lrp_err e = {0};
    lrp_rule_spec r = lrp_rule_default(LRP_RULE_EPSILON);
    r.eps = 1e-7f;
    r.stab = LRP_STAB_SIGN0_ZERO;
    lrp_rule_apply_all(net, &r);
    lrp_judgement *j = NULL;
    assert_int_equal(lrp_judge(&j, net, NULL, NULL, &e), LRP_OK);
    assert_int_equal(lrp_judgement_verdict(j), LRP_V_NONFINITE);
    int layer = -1;
    int64_t cell = -1;
    const char *cause = NULL;
    assert_int_equal(lrp_judgement_first_nonfinite(j, &layer, &cell, &cause), 1);
    assert_true(layer >= 0 && layer < net->n_layers);
    assert_true(cell >= 0 && cell < cells(net, layer));
    assert_non_null(strstr(cause, "zero denominator"));
    lrp_judgement_free(j);
    lrp_net_free(net);
}

/* Bad arguments: an error code and one line, never an abort. */
static void test_bad_arguments(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("mlp");
    lrp_err e = {0};
    lrp_judgement *j = (lrp_judgement *)&e; /* must be reset to NULL */
    assert_int_equal(lrp_judge(&j, net, "nosuch", NULL, &e), LRP_E_USAGE);
    assert_null(j);
    assert_non_null(strstr(e.msg, "nosuch"));
    assert_int_equal(lrp_run(NULL, net, (lrp_engine)7, NULL, &e), LRP_E_USAGE);
    lrp_run_opts ro = {1 << 21, 1}; /* precision beyond the documented range */
    assert_int_equal(lrp_run(NULL, net, LRP_ENGINE_REFERENCE, &ro, &e), LRP_E_USAGE);
    assert_int_equal(net->n_traces, 0);
    lrp_net *none = NULL;
    assert_int_not_equal(lrp_fixture_read(&none, "/nonexistent/x.h5", &e), LRP_OK);
    assert_null(none);
    lrp_net_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_and_judge),
        cmocka_unit_test(test_damaged_trace),
        cmocka_unit_test(test_first_nonfinite),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
