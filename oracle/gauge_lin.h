/*
 * gauge_lin.h -- the connection sums of the gauge's Dense and Conv2D layers
 * (oracle/gauge.c) as im2col / col2im around a blocked binary64 GEMM.
 *
 * Every sum of the gauge over the connections j <- i of a linear layer is a
 * (transposed) convolution of a modified weight tensor with a per-cell
 * vector, followed by per-cell factors (docs/ORACLE.md "The bounds"); this
 * file computes those convolutions.  Dense is the same with a 1x1 image
 * (lrp_pipe_lin_geom fills the conv fields for it).
 *
 * Determinism: each output element is one sum whose order depends only on
 * the layer's shape (the K blocking of the GEMM and the column blocks of
 * col2im are fixed sizes), never on the number of threads, which only
 * decides who computes which block.  The sums are binary64, never fused
 * (-ffp-contract=off): the AVX and the portable kernels give the same bits.
 *
 * Like gauge.c, nothing here is shared with the float32 kernels it judges.
 */
#ifndef LRP_GAUGE_LIN_H
#define LRP_GAUGE_LIN_H

#include <stdint.h>

#include "pipeline.h"

/* par_run(nt, items, fn, arg): fn(arg, it) for every 0 <= it < items, on up
 * to nt threads (the caller's included), items taken in turn from a shared
 * counter.  Each item must write only what no other item writes. */
void lrp_gl_par_run(int nt, int64_t items, void (*fn)(void *, int64_t), void *arg);

/* tests: 1 makes every later GEMM use the portable kernel (same bits) */
void lrp_gl_force_portable(int on);

/* what is done to the modified weight tc_t wmod_t(w) */
enum { LRP_GL_ID = 0, LRP_GL_ABS, LRP_GL_SQUARE };

/* The weights as the GEMM reads them: A_t(o, k) = op(tc_t * wmod_t(w[o * fanin + k]))
 * with w the binary32 weights (wf) or binary64 folded ones (wd), for the
 * terms t < nt (stacked along the sum in lrp_gl_conv). */
typedef struct lrp_gl_w {
    const float *wf;
    const double *wd; /* used when non-NULL */
    int nt;
    int wm[LRP_PIPE_MAX_TERMS];   /* LRP_WM_* */
    double tc[LRP_PIPE_MAX_TERMS];
    int op;                       /* LRP_GL_* */
} lrp_gl_w;

/* The forward sums, one sample: for s < ns,
 *   out[s][j] = sum_{t < A->nt} sum_{i -> j} A_t(o_j, k_ij) src[t * ns + s][i]
 * over the connections of output cell j (padding skipped), out[s] holding
 * the layer's output (O, Ho, Wo) and src the input (C, H, W) of one sample.
 * A NULL src is zero; an out[s] whose sources are all NULL is set to zero.
 * Each out[s][j] is summed over t, then k in blocks, in an order fixed by
 * the shape.  Returns 0, or -1 when out of memory (out undefined). */
int lrp_gl_conv(const lrp_lin *L, const lrp_gl_w *A, int ns, const double *const *src,
                double *const *out, int threads);

/* The transposed sums, one sample (A->nt == 1): for s < ns,
 *   out[s][i] = sum_{j <- i} A_0(o_j, k_ij) v[s][j]
 * over the output cells j that input cell i feeds (out: the input's shape,
 * overwritten; a NULL v[s] gives zeros). */
int lrp_gl_conv_t(const lrp_lin *L, const lrp_gl_w *A, int ns, const double *const *v,
                  double *const *out, int threads);

/* A Dense (L->conv == 0) on `rows` rows at once: src[.] and v[.] hold
 * rows x n_in (resp. n_out) values row-major, out[.] likewise; each row's
 * values are bit for bit those of lrp_gl_conv / lrp_gl_conv_t on that row
 * alone (every sum runs over the same terms in the same blocks), with
 * the weights packed once for all rows instead of once a row.  A NULL
 * source is zero for every row.  -1 when L is not a Dense or on failure. */
int lrp_gl_dense_rows(const lrp_lin *L, int64_t rows, const lrp_gl_w *A, int ns,
                      const double *const *src, double *const *out, int threads);
int lrp_gl_dense_rows_t(const lrp_lin *L, int64_t rows, const lrp_gl_w *A, int ns,
                        const double *const *v, double *const *out, int threads);

/* What propagates by connectivity alone, whatever the weights: for every
 * input cell i, m[i] = max(m[i], v[j]) and f[i] |= fl[j] over the output
 * cells j that i feeds (as `if (v[j] > m[i]) m[i] = v[j]`: a NaN v[j] is
 * ignored, a NaN m[i] stays).  v/m or fl/f may be NULL.  Returns -1 when
 * out of memory. */
int lrp_gl_maxprop(const lrp_lin *L, const double *v, double *m, const uint8_t *fl,
                   uint8_t *f);

#endif
