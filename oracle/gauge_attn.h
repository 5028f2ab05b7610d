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
    /* the sharp tier (lam > 0): the sharp forward bounds per layer and the
     * sharp bound of R at li's output; NULL / 0 when it does not run */
    double lam;
    double *const *As;
    const double *Rbs;
} lrp_ga;

/* 1 when the gauge of kind k is here */
int lrp_gauge_attn_kind(lrp_layer_kind k);
/* The forward bound of li's output into Aout (batch * numel).  With
 * g->lam > 0 and Aouts, a kind with a sharp tier of its own
 * (MultiHeadAttention, from the sharp bounds g->As of its input) writes its
 * sharp bound into Aouts and returns 1; the others return 0 and leave
 * Aouts alone.  -1: no memory. */
int lrp_gauge_attn_fwd(const lrp_ga *g, double *Aout, double *Aouts);
/* The bound of li's relevance to its input k: per input cell, added to
 * bnd (units of u), cond maxed into cnd (u * error / |denominator| of the
 * steps the cell depends on), |contribution| added to mag.  With g->lam >
 * 0 a kind with a sharp tier of its own (MultiHeadAttention) adds its
 * sharp bound to bnds and maxes its sharp cond into cnds, and returns 1;
 * the others return 0 and leave bnds, cnds alone (their rigorous bound is
 * their sharp one).  -1: no memory. */
int lrp_gauge_attn_bwd(const lrp_ga *g, int k, double *bnd, double *cnd, double *mag,
                       double *bnds, double *cnds);

#endif
