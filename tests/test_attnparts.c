/*
 * test_attnparts.c -- the attention as stages (core/kind_attnparts.c,
 * oracle/gauge_attn.c; docs/TRANSFORMERS.md section 12.7):
 *   - bad shapes and attributes: one-line errors naming file and layer;
 *   - the stages compose to MultiHeadAttention: the reference's relevance
 *     at the input of attn_parts equals attn1's with the same weights, the
 *     same data and the same eps on every denominator (masks, AttnLRP and
 *     CP-LRP);
 *   - the fast path's own trace is clean under every composite that
 *     touches the kinds;
 *   - a stage judged alone: 5 % more relevance at one internal tensor (the
 *     queries, the attention weights) is not PASS, and the local verdict
 *     names that tensor; so are a flipped sign, zeros, a shuffle at a
 *     stage's tensor, and the context computed under cplrp stated uniform;
 *   - the stored outputs as denominators (lrp_check_opts.recomputed_den 0,
 *     the default): on nearcancel, whose fc1 unit 0 nearly cancels, fc1's
 *     input is resolved and 5 % there is caught; allowing recomputed
 *     denominators leaves it ill-conditioned and passes the 5 %.
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

#include "check.h"
#include "fixtures.h"
#include "pipeline.h"
#include "reference.h"
#include "util/testutil.h"

static int find(const lrp_net *net, const char *name)
{
    int i = lrp_net_find(net, name);
    if (i < 0)
        fail_msg("no layer '%s'", name);
    return i;
}


static void t_errors(void **s)
{
    (void)s;
    lrp_net *net = tu_fixture("attn_parts");
    int sc = find(net, "attn_scores"), pr = find(net, "attn_probs");
    int cx = find(net, "attn_context");
    net->layers[sc].heads = 3; /* 16 features */
    tu_expect_infer_error(net, "layer 'attn_scores': heads 3 must be >= 1 and divide the features 16");
    net->layers[sc].heads = 2;
    net->layers[sc].scale = INFINITY;
    tu_expect_infer_error(net, "layer 'attn_scores': scale inf must be finite, nonzero");
    net->layers[sc].scale = 0.25f;
    net->layers[pr].mask_value = NAN;
    tu_expect_infer_error(net, "layer 'attn_probs': mask_value nan must be -inf or finite");
    net->layers[pr].mask_value = -INFINITY;
    net->layers[pr].in[0] = find(net, "attn_q"); /* (8, 16): not scores */
    tu_expect_infer_error(net, "layer 'attn_probs': AttnSoftmax needs scores (heads, T, T)");
    net->layers[pr].in[0] = sc;
    net->layers[cx].in[1] = pr; /* values of rank 3 */
    tu_expect_infer_error(net, "layer 'attn_context': AttnContext needs weights (heads, T, T) and "
                            "values (T, F)");
    net->layers[cx].in[1] = find(net, "attn_v");
    assert_int_equal(lrp_net_infer(net, "f.h5", NULL), LRP_OK);
    lrp_net_free(net);
}

/* attn_parts with attn1's weights and data: every stage's parameters from
 * the single layer (in_proj rows q, k, v; out_proj), the head's, the
 * input */
static lrp_net *parts_of_attn1(const lrp_net *one)
{
    lrp_net *net = tu_fixture("attn_parts");
    const lrp_layer *m = &one->layers[find(one, "attn")];
    int64_t F = m->shape.d[1];
    const char *qkv[3] = {"attn_q", "attn_k", "attn_v"};
    for (int i = 0; i < 3; i++) {
        lrp_layer *d = &net->layers[find(net, qkv[i])];
        memcpy(d->w, m->w + i * F * F, (size_t)(F * F) * sizeof(float));
        memcpy(d->b, m->b + i * F, (size_t)F * sizeof(float));
    }
    lrp_layer *o = &net->layers[find(net, "attn")];
    memcpy(o->w, m->w2, (size_t)(F * F) * sizeof(float));
    memcpy(o->b, m->b2, (size_t)F * sizeof(float));
    const lrp_layer *h1 = &one->layers[find(one, "head")];
    lrp_layer *h2 = &net->layers[find(net, "head")];
    memcpy(h2->w, h1->w, (size_t)(h1->units * F) * sizeof(float));
    memcpy(h2->b, h1->b, (size_t)h1->units * sizeof(float));
    int64_t nin = lrp_shape_numel(&one->layers[0].shape) * one->batch;
    memcpy(net->input, one->input, (size_t)nin * sizeof(float));
    memcpy(net->target, one->target, (size_t)one->batch * sizeof *net->target);
    if (one->key_padding_mask) {
        int64_t T = m->shape.d[0];
        free(net->key_padding_mask);
        net->key_padding_mask = malloc((size_t)(one->batch * T) * sizeof(float));
        assert_non_null(net->key_padding_mask);
        memcpy(net->key_padding_mask, one->key_padding_mask,
               (size_t)(one->batch * T) * sizeof(float));
        net->layers[find(net, "attn_probs")].use_padding_mask = m->use_padding_mask;
    }
    return net;
}

/* the reference's relevance at layer 0, binary64 (the caller frees) */
static double *ref_input_relevance(const lrp_net *net)
{
    lrp_err err;
    lrp_ref_result *R = NULL;
    if (lrp_ref_run(&R, net, NULL, &err))
        fail_msg("ref: %s", err.msg);
    int64_t n = lrp_shape_numel(&net->layers[0].shape) * net->batch;
    double *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    mpfr_srcptr t = (mpfr_srcptr)R->pipe->L[0].rel;
    for (int64_t i = 0; i < n; i++)
        v[i] = mpfr_get_d(t + i, MPFR_RNDN);
    lrp_ref_free(R);
    return v;
}

static void t_equal_mha(void **s)
{
    (void)s;
    const char *fx[] = {"attn1", "attn_padded"};
    const lrp_composite_id comp[] = {LRP_COMPOSITE_ATTN_LRP, LRP_COMPOSITE_CP_LRP};
    for (int f = 0; f < 2; f++)
        for (int c = 0; c < 2; c++) {
            lrp_net *one = tu_fixture(fx[f]);
            lrp_net *net = parts_of_attn1(one);
            lrp_composite_params p = lrp_composite_params_default();
            lrp_composite_apply(one, comp[c], &p);
            lrp_composite_apply(net, comp[c], &p);
            /* the single layer's projections divide with its eps: the
             * stages' Dense layers likewise (AttnLRP makes them lrp0) */
            const lrp_rule_spec *mr = &one->layers[find(one, "attn")].rule;
            const char *dense[4] = {"attn_q", "attn_k", "attn_v", "attn"};
            for (int i = 0; i < 4; i++) {
                lrp_rule_spec *r = &net->layers[find(net, dense[i])].rule;
                *r = lrp_rule_default(LRP_RULE_EPSILON);
                r->eps = mr->eps;
                r->stab = mr->stab;
            }
            assert_true(net->layers[find(net, "attn_scores")].rule.eps == mr->eps);
            assert_int_equal(net->layers[find(net, "attn_context")].rule.rule,
                             c ? LRP_RULE_CPLRP : LRP_RULE_UNIFORM);
            double *a = ref_input_relevance(one), *b = ref_input_relevance(net);
            int64_t n = lrp_shape_numel(&one->layers[0].shape) * one->batch;
            double mx = 0;
            for (int64_t i = 0; i < n; i++)
                mx = fmax(mx, fabs(a[i]));
            assert_true(mx > 0);
            /* the same exact values, rounded at 128 bits in another order
             * (the packed in-projection is one sum of 48 units, the stages
             * three of 16): a few hundred roundings of 2^-128 apart, read
             * as binary64; 2^-40 of the largest cell leaves all of that
             * and still sees any difference of rule (measured: a factor
             * 0.4 for 0.5 at the queries moves cells by 1e-2) */
            for (int64_t i = 0; i < n; i++)
                if (!(fabs(a[i] - b[i]) <= 0x1p-40 * mx))
                    fail_msg("%s %s: cell %lld: single layer %.17g, stages %.17g", fx[f],
                             c ? "CPLRP" : "AttnLRP", (long long)i, a[i], b[i]);
            free(a), free(b);
            lrp_net_free(one);
            lrp_net_free(net);
        }
}

static lrp_verdict judge(const lrp_net *net, const char *src, char *origin, size_t on)
{
    lrp_err err;
    lrp_judgement *J = NULL;
    lrp_judge_opts jo;
    memset(&jo, 0, sizeof jo);
    jo.no_proof = 1;
    if (lrp_judge(&J, net, src, &jo, &err))
        fail_msg("judge: %s", err.msg);
    lrp_verdict v = lrp_judgement_verdict(J);
    snprintf(origin, on, "%s", lrp_judgement_origin(J));
    lrp_judgement_free(J);
    return v;
}

static void t_fast_clean(void **s)
{
    (void)s;
    const lrp_composite_id comp[] = {LRP_COMPOSITE_EPSILON_PLUS, LRP_COMPOSITE_ATTN_LRP,
                                     LRP_COMPOSITE_CP_LRP};
    for (int c = 0; c < 3; c++) {
        lrp_net *net = tu_fixture("attn_parts");
        lrp_composite_params p = lrp_composite_params_default();
        lrp_composite_apply(net, comp[c], &p);
        char origin[1024];
        lrp_verdict v = judge(net, NULL, origin, sizeof origin);
        if (v > LRP_V_ILL_CONDITIONED)
            fail_msg("%s: fast path %s (%s)", lrp_composite_name(comp[c]), lrp_verdict_name(v),
                     origin);
        lrp_net_free(net);
    }
}

static float *fdup(const float *a, int64_t n)
{
    float *b = malloc((size_t)n * sizeof *b);
    assert_non_null(b);
    memcpy(b, a, (size_t)n * sizeof *b);
    return b;
}

/* how a trace's tensor is damaged */
typedef enum { M_SCALE, M_FLIP, M_ZERO, M_SHUFFLE, M_NONE } mutation;

/* the fast path's trace as a new trace `to`, the relevance of layer li
 * damaged by mu (M_SCALE: times f; M_SHUFFLE: each sample's cells in
 * reverse order); the check's report of it (the caller frees) */
static void mutated_report(lrp_net *net, const char *to, int li, mutation mu, float f,
                           lrp_run_report *rep)
{
    lrp_err err;
    if (lrp_run(NULL, net, LRP_ENGINE_FAST, NULL, &err))
        fail_msg("fast: %s", err.msg);
    lrp_trace *t = lrp_net_trace_add(net, to, &err);
    assert_non_null(t);
    /* after the add: the table may have moved */
    const lrp_trace *src = &net->traces[lrp_net_trace_find(net, "fastpath")];
    t->precision = src->precision;
    if (!t->rules)
        t->rules = malloc((size_t)net->n_layers * sizeof *t->rules);
    memcpy(t->rules, src->rules, (size_t)net->n_layers * sizeof *t->rules);
    for (int i = 0; i < net->n_layers; i++) {
        int64_t per = lrp_shape_numel(&net->layers[i].shape), n = per * net->batch;
        float *r = t->relevance[i] = fdup(src->relevance[i], n);
        t->activation[i] = fdup(src->activation[i], n);
        if (i != li)
            continue;
        for (int64_t k = 0; k < n; k++)
            r[k] = mu == M_SCALE ? r[k] * f : mu == M_FLIP ? -r[k] : mu == M_ZERO ? 0.0f : r[k];
        if (mu == M_SHUFFLE)
            for (int64_t b = 0; b < net->batch; b++)
                for (int64_t k = 0; k < per / 2; k++) {
                    float x = r[b * per + k];
                    r[b * per + k] = r[b * per + per - 1 - k];
                    r[b * per + per - 1 - k] = x;
                }
    }
    lrp_check_opts co;
    lrp_check_opts_default(&co);
    co.source = to;
    co.proof_extra = 0;
    if (lrp_check(rep, net, &co, &err))
        fail_msg("check: %s", err.msg);
}

/* check of net's fast-path trace or of trace src; the trace-local
 * figures of layer li */
static lrp_verdict tlocal(lrp_net *net, const char *src, int li, int recomputed,
                          lrp_layer_cmp *m)
{
    lrp_run_report rep = tu_judge_den("", net, src, recomputed);
    *m = rep.layers[li].tlocal;
    lrp_verdict v = rep.layers[li].tlocal_verdict;
    lrp_run_report_free(&rep);
    return v;
}

static void t_stored_denominators(void **s)
{
    (void)s;
    lrp_net *net = tu_fixture("nearcancel");
    lrp_layer_cmp m;
    /* fc1's input: 12 cells (batch 1); unit 0's z is ~1e-7 of its terms */
    lrp_verdict v = tlocal(net, NULL, 0, 0, &m);
    if (v != LRP_V_PASS || m.resolved != m.defined || m.defined != 12)
        fail_msg("stored denominators: %s, %lld of %lld resolved", lrp_verdict_name(v),
                 (long long)m.resolved, (long long)m.defined);
    v = tlocal(net, NULL, 0, 1, &m);
    if (v > LRP_V_ILL_CONDITIONED || m.resolved != 0)
        fail_msg("recomputed denominators: %s, %lld of %lld resolved", lrp_verdict_name(v),
                 (long long)m.resolved, (long long)m.defined);
    /* 5 % more relevance at the input: caught only with the stored ones */
    lrp_run_report rep;
    mutated_report(net, "scaled_input", 0, M_SCALE, 1.05f, &rep);
    v = rep.layers[0].tlocal_verdict;
    lrp_run_report_free(&rep);
    if (v < LRP_V_SUSPECT)
        fail_msg("stored denominators, input x 1.05: %s", lrp_verdict_name(v));
    v = tlocal(net, "scaled_input", 0, 1, &m);
    if (v > LRP_V_ILL_CONDITIONED)
        fail_msg("recomputed denominators, input x 1.05: %s (the cells are undetermined)",
                 lrp_verdict_name(v));
    lrp_net_free(net);
}

static void t_stage_alone(void **s)
{
    (void)s;
    const char *at[] = {"attn_q", "attn_probs", "attn_v"};
    for (int k = 0; k < 3; k++) {
        lrp_net *net = tu_fixture("attn_parts");
        lrp_composite_params p = lrp_composite_params_default();
        lrp_composite_apply(net, LRP_COMPOSITE_ATTN_LRP, &p);
        int li = find(net, at[k]);
        char name[64];
        snprintf(name, sizeof name, "scaled_%s", at[k]);
        lrp_run_report rep;
        mutated_report(net, name, li, M_SCALE, 1.05f, &rep);
        /* judged on its own stage: the bound of each cell is one sum's
         * rounding (ratio to it ~1e-2 on the clean trace), 5 % of a cell
         * is thousands of bounds */
        lrp_verdict v = rep.layers[li].tlocal_verdict;
        if (v < LRP_V_SUSPECT)
            fail_msg("%s x 1.05: local %s, %lld of %lld cells resolved", at[k],
                     lrp_verdict_name(v), (long long)rep.layers[li].tlocal.resolved,
                     (long long)rep.layers[li].tlocal.defined);
        /* the tensors judged from it are consistent with it */
        for (int i = 0; i < net->n_layers; i++)
            if (i != li && rep.layers[i].has_tlocal &&
                rep.layers[i].tlocal_verdict > LRP_V_ILL_CONDITIONED) {
                /* the stage's inputs are judged from the scaled relevance:
                 * they are 5 % off the other way, and may show it */
                int feeds = 0;
                for (int q = 0; q < net->layers[li].n_in; q++)
                    feeds |= net->layers[li].in[q] == i;
                if (!feeds)
                    fail_msg("%s x 1.05: tensor '%s' is %s too", at[k], net->layers[i].name,
                             lrp_verdict_name(rep.layers[i].tlocal_verdict));
            }
        lrp_run_report_free(&rep);
        lrp_net_free(net);
    }
}

/* Every class of damage at a stage's tensor fails there: a flipped sign
 * (the attention weights' relevance), zeros (the values'), a shuffle (the
 * scores'), and a wrong rule: the context computed under cplrp (the
 * weights constant) while the trace states uniform. */
static void t_mutants(void **s)
{
    (void)s;
    const struct {
        const char *at;
        mutation mu;
    } cases[] = {{"attn_probs", M_FLIP}, {"attn_v", M_ZERO}, {"attn_scores", M_SHUFFLE},
                 {"attn_context", M_NONE}};
    for (int k = 0; k < 4; k++) {
        lrp_net *net = tu_fixture("attn_parts");
        lrp_composite_params p = lrp_composite_params_default();
        lrp_composite_apply(net, LRP_COMPOSITE_ATTN_LRP, &p);
        int li = find(net, cases[k].at), judged = li;
        lrp_run_report rep;
        if (cases[k].mu == M_NONE) {
            /* computed under cplrp, stated uniform: the weights' relevance
             * (the context's first input) is +0 where uniform's is not */
            net->layers[li].rule.rule = LRP_RULE_CPLRP;
            mutated_report(net, "wrong_rule", -1, M_NONE, 1.0f, &rep);
            lrp_run_report_free(&rep);
            net->layers[li].rule.rule = LRP_RULE_UNIFORM;
            lrp_trace *t = &net->traces[lrp_net_trace_find(net, "wrong_rule")];
            assert_int_equal(t->rules[li].rule, LRP_RULE_CPLRP);
            t->rules[li].rule = LRP_RULE_UNIFORM;
            lrp_err err;
            lrp_check_opts co;
            lrp_check_opts_default(&co);
            co.source = "wrong_rule";
            co.proof_extra = 0;
            if (lrp_check(&rep, net, &co, &err))
                fail_msg("check: %s", err.msg);
            judged = net->layers[li].in[0];
        } else {
            mutated_report(net, "mutant", li, cases[k].mu, 1.0f, &rep);
        }
        lrp_verdict v = rep.layers[judged].tlocal_verdict;
        if (v < LRP_V_SUSPECT)
            fail_msg("%s, damage %d: local verdict at '%s' %s", cases[k].at, (int)cases[k].mu,
                     net->layers[judged].name, lrp_verdict_name(v));
        lrp_run_report_free(&rep);
        lrp_net_free(net);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_errors),
        cmocka_unit_test(t_equal_mha),
        cmocka_unit_test(t_fast_clean),
        cmocka_unit_test(t_stage_alone),
        cmocka_unit_test(t_stored_denominators),
        cmocka_unit_test(t_mutants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
