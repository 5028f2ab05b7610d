/*
 * golden.c -- golden traces: committed reference results that let CI judge
 * the float32 fast path without running MPFR (docs/ORACLE.md, "Golden
 * traces").
 *
 * A golden file is a fixture plus two traces:
 *   "reference"  the MPFR relevance at p = 128 as hi + lo (hi = RN32(R),
 *                lo = RN32(R - hi): about 48 correct bits, enough to measure
 *                float32 errors) and the forward activations rounded to
 *                binary32 (what the gauge needs);
 *   "fastpath"   the bits our float32 engine produced when the file was made.
 * Judging a float32 run against it: (1) bitwise against "fastpath" -- any
 * numeric change of the engine shows, since its results are deterministic
 * across runs, threads and ISA paths; (2) per cell against "reference" with
 * the gauge, exactly as `check` does, minus the self-proof.
 */
#include "golden.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gauge.h"

lrp_status lrp_golden_judge(lrp_golden_result *res, const lrp_net *net, const lrp_trace *ref,
                            const lrp_trace *fast, float *const *got, lrp_err *err)
{
    int nl = net->n_layers;
    memset(res, 0, sizeof *res);
    res->worst = LRP_V_PASS;
    res->worst_layer = -1;
    res->first_diff_layer = -1;
    for (int i = 0; i < nl; i++)
        if (!ref->relevance[i] || !ref->activation || !ref->activation[i])
            return lrp_err_set(err, LRP_E_FORMAT,
                               "golden: trace '%s' lacks relevance or activation of layer '%s'",
                               ref->source, net->layers[i].name);
    lrp_gauge g;
    lrp_status st = lrp_gauge_compute(&g, net, ref->activation, ref->relevance, err);
    if (st)
        return st;
    res->cmp = calloc((size_t)nl, sizeof *res->cmp);
    res->verdict = calloc((size_t)nl, sizeof *res->verdict);
    res->bit_diffs = calloc((size_t)nl, sizeof *res->bit_diffs);
    if (!res->cmp || !res->verdict || !res->bit_diffs) {
        lrp_gauge_free(&g);
        lrp_golden_result_free(res);
        return lrp_err_set(err, LRP_E_NOMEM, "golden: out of memory");
    }
    const lrp_tolerance *tol = lrp_tolerance_for(LRP_RULE_EPSILON, LRP_LAYER_DENSE);
    for (int i = nl - 1; i >= 0; i--) {
        int64_t n = net->batch * lrp_shape_numel(&net->layers[i].shape);
        lrp_cell_ref cr = {ref->relevance[i], ref->relevance_lo ? ref->relevance_lo[i] : NULL,
                           g.bound[i], g.cond[i], g.cflags[i], g.sharp[i], g.scond[i]};
        res->verdict[i] = lrp_compare_cells(&res->cmp[i], got[i], &cr, n, tol);
        if (res->verdict[i] > res->worst) {
            res->worst = res->verdict[i];
            res->worst_layer = i;
        }
        if (fast && fast->relevance[i]) {
            for (int64_t k = 0; k < n; k++)
                res->bit_diffs[i] += memcmp(&fast->relevance[i][k], &got[i][k], sizeof(float)) != 0;
            res->total_diffs += res->bit_diffs[i];
            if (res->bit_diffs[i] && res->first_diff_layer < 0)
                res->first_diff_layer = i;
        }
    }
    lrp_gauge_free(&g);
    return LRP_OK;
}

void lrp_golden_result_free(lrp_golden_result *r)
{
    free(r->cmp);
    free(r->verdict);
    free(r->bit_diffs);
    memset(r, 0, sizeof *r);
}
