/*
 * gauge_attn.h -- the gauge of the attention kinds (oracle/gauge_attn.c),
 * called by oracle/gauge.c: a-priori float32 error bounds in units of
 * u = 2^-24, first order, from the reference's values rounded to binary32,
 * independent of the float32 and MPFR code they judge.
 */
#ifndef LRP_GAUGE_ATTN_H
#define LRP_GAUGE_ATTN_H

#include <stdint.h>

#include "lrp.h"

typedef struct lrp_ga {
    const lrp_net *net;
    int li;
    int64_t B;
    float *const *act, *const *rel; /* per layer, batch-major */
    double *const *A;               /* forward bounds per layer (units of u) */
    const double *Rb;               /* the bound of R at li's output */
    int exact;                      /* local, the subject's own activations
                                       (LRP_GI_EXACT): li's output is what
                                       the subject computed */
    int den_traced;                 /* exact, and the subject divides by
                                       li's output as the trace holds it
                                       (lrp_gauge_opts.recomputed_den 0) */
} lrp_ga;

/* 1 when the gauge of kind k is here */
int lrp_gauge_attn_kind(lrp_layer_kind k);
/* The forward bound of li's output into Aout (batch * numel); -1: no memory. */
int lrp_gauge_attn_fwd(const lrp_ga *g, double *Aout);
/* The bound of li's relevance to its input k: per input cell, added to
 * bnd (units of u), cond maxed into cnd (u * error / |denominator| of the
 * steps the cell depends on), |contribution| added to mag. -1: no memory. */
int lrp_gauge_attn_bwd(const lrp_ga *g, int k, double *bnd, double *cnd, double *mag);

#endif
