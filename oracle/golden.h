/*
 * golden.h -- judging a float32 run against a committed golden trace
 * (oracle/golden.c explains what a golden file holds).
 */
#ifndef LRP_GOLDEN_H
#define LRP_GOLDEN_H

#include "oracle.h"

typedef struct lrp_golden_result {
    lrp_layer_cmp *cmp;     /* per layer, against the reference */
    lrp_verdict *verdict;   /* per layer */
    lrp_verdict worst;
    int worst_layer;
    int64_t *bit_diffs;     /* per layer: cells whose bits differ from "fastpath" */
    int64_t total_diffs;
    int first_diff_layer;   /* highest layer index with a difference (backward order) */
} lrp_golden_result;

/* got[i]: the float32 relevance at layer i's output (batch-major).  ref must
 * carry relevance (+ lo) and activation for every layer; fast may be NULL. */
lrp_status lrp_golden_judge(lrp_golden_result *res, const lrp_net *net, const lrp_trace *ref,
                            const lrp_trace *fast, float *const *got, lrp_err *err);
void lrp_golden_result_free(lrp_golden_result *r);

#endif
