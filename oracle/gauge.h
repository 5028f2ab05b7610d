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
    float **bound;    /* per layer, batch*numel: backward bound of R (units of u) */
    float **cond;     /* per layer: u * max D_j/|den_j| over units drawn from */
    uint8_t **cflags; /* per layer: LRP_CELL_* */
    float **fwd;      /* per layer: forward bound of the activation (units of u) */
} lrp_gauge;

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
