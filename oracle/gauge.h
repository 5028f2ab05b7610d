/*
 * gauge.h -- a-priori float32 error bounds of relevance cells (in units of
 * u = 2^-24), the cells' condition (u * D_j / |den_j|) and reference cell
 * flags, from the reference's activations and relevance (docs/ORACLE.md).
 */
#ifndef LRP_GAUGE_H
#define LRP_GAUGE_H

#include <stdint.h>

#include "oracle.h"

typedef struct lrp_gauge {
    int n_layers;
    float **bound;    /* per layer, batch*numel: backward bound of R (units of u),
                         rigorous first-order worst case (the upper tier) */
    float **cond;     /* per layer: u * max D_j/|den_j| over units drawn from */
    uint8_t **cflags; /* per layer: LRP_CELL_* */
    float **fwd;      /* per layer: forward bound of the activation (units of u);
                         with LRP_GI_EXACT: the layer's own rounding alone */
    float **fwd_sharp;/* per layer: the same in the sharp tier (NULL: none) */
    /* The sharp tier (docs/ORACLE.md "The sharp bound"): every rounding is
     * an independent mean-zero error of size <= u (the model of Higham and
     * Mary's probabilistic rounding error analysis); a sum of n such errors
     * is bounded by lambda * sqrt(sum of squared sizes) (Hoeffding), which
     * fails with probability <= 2 exp(-lambda^2 / 2) per cell.  Errors
     * handed on from other layers are propagated linearly (no independence
     * is assumed between them). */
    double lambda;    /* 0: no sharp tier computed */
    float **sharp;    /* per layer: sharp bound of R (units of u) */
    float **scond;    /* per layer: lambda sqrt(n) u G_j/|den_j|, max over units
                         drawn from: where this is not small the float32
                         denominator is truly undetermined */
    double *ill_mass; /* per layer: sum of |R_j| over the consumers' units j
                         whose sharp cond exceeds LRP_ILL_COND_SHARP: the most
                         relevance ill-conditioning can move into or out of
                         this layer's total */
    /* per layer: the sharp bound of the error of the tensor's total (the sum
     * of its relevance) in units of u: independent roundings of different
     * units and cells add as a root of a sum of squares, so a systematic
     * bias over a layer shows long before any single cell does */
    double *total_sharp;
} lrp_gauge;

/* The threshold on the sharp cond above which a unit is ill-conditioned. */
#define LRP_ILL_COND_SHARP 0x1p-4

/* How the inputs of each layer relate to the subject's (local mode). */
typedef enum lrp_gauge_inputs {
    LRP_GI_PROPAGATED = 0, /* end to end: errors propagate from the input */
    LRP_GI_ROUNDED,        /* local: the reference's values rounded to binary32
                              (our float32 layer fed them: 0.5 u |x|) */
    LRP_GI_EXACT,          /* local: the subject's own activations and relevance,
                              fed exactly to the reference too: no input error */
    LRP_GI_EXACT_REL       /* local: the subject's own relevance (exact), the
                              reference's activations (the subject's differ by
                              the propagated forward error) */
} lrp_gauge_inputs;

/* Streaming (lrp_gauge_opts.emit): called once per layer as soon as its
 * rows are final -- bwd 0 in forward order (fwd[li], fwd_sharp[li]), then
 * bwd 1 in backward order, the last layer first (bound[li], cond[li],
 * cflags[li], sharp[li], scond[li], ill_mass[li], total_sharp[li]).  The
 * rows exist only during the call (the callee may modify them; they are
 * freed when it returns), so a whole-network gauge is never held.  A
 * status other than LRP_OK stops the computation, which returns it (the
 * callee sets err). */
typedef lrp_status (*lrp_gauge_emit_fn)(void *ctx, lrp_gauge *g, int li, int bwd);

/* Where the end-to-end gauge may keep its forward bounds between the
 * forward pass and the backward steps that read them (lrp_gauge_opts.store;
 * the oracle's layer split spreads them over its ranks, oracle/check.c).
 * Every function returns 0, or -1 on a failure (the caller's err is set;
 * the gauge stops with LRP_E_NOMEM unless emit_st says otherwise). */
typedef struct lrp_gauge_store {
    void *ctx;
    /* layer li's forward bound rows (rigorous A, sharp As: n doubles each,
     * malloc'ed), handed over once no later forward step reads them: the
     * store owns and frees them */
    int (*park)(void *ctx, int li, double *A, double *As, int64_t n);
    /* malloc'ed copies of layer li's parked rows, for one backward step */
    int (*fetch)(void *ctx, int li, double **A, double **As, int64_t n);
    /* layer li's parked rows are not read again */
    int (*drop)(void *ctx, int li);
    /* called before (done 0) and after (done 1) layer li's step of the
     * forward (bwd 0) or the backward pass (bwd 1; and before the backward
     * pass starts, li the last layer): the act / rel arrays the gauge was
     * given must hold, from the call with done 0 to the one with done 1,
     * act of li and of its inputs and (bwd) rel of li, and of the
     * BatchNorm canonized into li if any (lrp_gauge_canon_bn: the folded
     * layer's step reads R at that BatchNorm's output); the others may be
     * NULL.  The backward call with done 0 precedes the emit of li. */
    int (*step)(void *ctx, int li, int bwd, int done);
} lrp_gauge_store;

typedef struct lrp_gauge_opts {
    int local;              /* each layer alone (1) or end to end (0) */
    lrp_gauge_inputs inputs;
    double lambda;          /* sharp tier; 0 = none */
    int threads;            /* 0: LRP_GAUGE_THREADS; results do not depend on it */
    lrp_gauge_emit_fn emit; /* NULL: every row is kept in the gauge */
    void *emit_ctx;
    /* LRP_GI_EXACT only.  0 (default): a layer whose denominator is its
     * own output (a Dense / Conv2D part that is the forward map, the
     * attention stages' products, MultiHeadAttention's output) divides by
     * the activation the trace holds, as the reference's local run does
     * (core/pipeline.c): its error is that value's storage rounding alone.
     * 1: the subject may have divided by the output computed again, in
     * another order: each such denominator may be its own rounding
     * allowance (n u sum |terms|) away, and where that reaches it the
     * cells it feeds are ill-conditioned (docs/ORACLE.md "Denominators"). */
    int recomputed_den;
    /* NULL (default): every forward bound row is held from the forward
     * pass to the backward steps that read it.  park, fetch and drop are
     * used end to end only (NULL otherwise), step in every mode. */
    const lrp_gauge_store *store;
} lrp_gauge_opts;

/* threads of a gauge whose options do not say */
#define LRP_GAUGE_THREADS 2

/* lambda of the sharp tier: 2 exp(-32) ~ 2.5e-14 per cell. */
#define LRP_SHARP_LAMBDA 8.0

/* The BatchNorm canonized into layer li (a Dense / Conv2D whose sole
 * consumer is a BatchNorm with LRP_F_BN_CANONIZE), or -1. */
int lrp_gauge_canon_bn(const lrp_net *net, int li);

lrp_status lrp_gauge_compute_opts(lrp_gauge *g, const lrp_net *net, float *const *act,
                                  float *const *rel, const lrp_gauge_opts *o, lrp_err *err);

/* Tests: rows > 0 makes a token Dense's gauge take at most that many rows
 * at once (partial blocks, blocks across samples); 0 restores the default
 * (all rows of a sample, within a memory cap).  The results are the same
 * bits whatever it is.  Process-wide, not thread-safe: tests only. */
void lrp_gauge_set_row_block(int64_t rows);

/* act[i], rel[i]: the reference's forward activation and relevance at layer
 * i's output, rounded to binary32, batch-major. */
lrp_status lrp_gauge_compute(lrp_gauge *g, const lrp_net *net, float *const *act,
                             float *const *rel, lrp_err *err);
/* local: the bound of each layer's own relevance computed on the reference's
 * inputs rounded to binary32 (the oracle's local comparison): nothing is
 * propagated from the layers above or below. */
lrp_status lrp_gauge_compute_ex(lrp_gauge *g, const lrp_net *net, float *const *act,
                                float *const *rel, int local, lrp_err *err);
void lrp_gauge_free(lrp_gauge *g);

#endif
