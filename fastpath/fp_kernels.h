/* fp_kernels.h -- float32 arithmetic engine of the fast path.
 *
 * Kernels the LRP layer code (core/ pipeline through the backend vtable) is
 * built on: Conv2D forward and backward-data, Dense forward and
 * backward-data, elementwise helpers, pooling.  All tensors are NCHW,
 * contiguous, float32.  Conv2D weight is (co, ci/groups, kh, kw), Dense
 * weight is (out, in) -- the layout of include/lrp.h.
 *
 * DETERMINISM.  Every result is bit-identical across runs, across thread
 * counts and across dispatch paths (AVX-512 / AVX2 / portable C).  The work
 * is split across OUTPUT elements only (SIMD lanes and threads own disjoint
 * outputs); each output is one sequential chain of single-rounding fused
 * multiply-adds (an intrinsic in SIMD code, fmaf() in portable code) in the
 * fixed order documented at each kernel, starting from +0.0f.  Because the
 * chain starts at +0 and fma(a, b, +0) with a*b == -0 gives +0, an
 * accumulator is never -0; so an explicit zero term (padding) with a finite
 * weight leaves the accumulator unchanged bit for bit.  Zero terms are
 * nevertheless evaluated the same way on every path, so even non-finite
 * weights give the same bits everywhere (0 * inf = NaN on all paths).
 *
 * Error bound (for the tests and the oracle): a chain of n fmas, each rounding
 * once, satisfies |fl(s) - s| <= gamma_n * sum |terms|, gamma_n = n u / (1 - n u),
 * u = 2^-24; adding the bias is one more rounding (use gamma_{n+1}).
 *
 * Threads: nthreads <= 0 means lrp_fp_default_threads() (env LRP_THREADS,
 * default 2).  ISA: chosen once from the CPU, overridable by env
 * LRP_FP_ISA=portable|avx2|avx512 or lrp_fp_set_isa().
 *
 * Return value of the heavy kernels: 0 on success, -1 on bad geometry or
 * out of memory (outputs then undefined).
 */
#ifndef LRP_FP_KERNELS_H
#define LRP_FP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ---- dispatch and threads ---------------------------------------------- */

typedef enum lrp_fp_isa {
    LRP_FP_ISA_PORTABLE = 0,
    LRP_FP_ISA_AVX2 = 1,   /* AVX2 + FMA3 */
    LRP_FP_ISA_AVX512 = 2, /* AVX-512F */
    LRP_FP_ISA_COUNT
} lrp_fp_isa;

/* 1 if this CPU can run the path. */
int lrp_fp_isa_supported(lrp_fp_isa isa);
/* Force a path (returns -1 and changes nothing if unsupported). */
int lrp_fp_set_isa(lrp_fp_isa isa);
/* The active path (first call: LRP_FP_ISA env, else best supported). */
lrp_fp_isa lrp_fp_get_isa(void);
const char *lrp_fp_isa_name(lrp_fp_isa isa);
/* The conv kernels keep one scratch buffer (about the size of the largest
 * padded input seen so far; weights are read in place) across calls; this
 * frees it.  The worker threads of the pool (see fp_isa.c) also live across
 * calls; they sleep when idle. */
void lrp_fp_release_workspace(void);
/* LRP_THREADS env (clamped to 1..64), default 2. */
int lrp_fp_default_threads(void);

/* ---- Conv2D ------------------------------------------------------------ */

/* Geometry, named as struct lrp_layer's fields.  Input (n, c, h, w), output
 * (n, co, oh, ow) with oh = (h + pt + pb - dh*(kh-1) - 1) / sh + 1, same for
 * ow; groups divides c and co. */
typedef struct lrp_fp_conv_geom {
    int n, c, h, w; /* input */
    int co;         /* output channels */
    int kh, kw, sh, sw, dh, dw;
    int pt, pb, pl, pr;
    int groups;
} lrp_fp_conv_geom;

/* Output size; -1 in both if the geometry is invalid. */
int lrp_fp_conv_out_hw(const lrp_fp_conv_geom *g, int *oh, int *ow);

/* Implementation (fastpath/fp_conv.c): an implicit GEMM over a padded,
 * stride-phase-split copy of the source (or the caller's planes themselves
 * for unpadded stride-1 1x1 convs) with the weights read in place, AVX-512
 * tiles of 8 output channels x 48 pixels (3 x 128 for <= 3 channels per
 * group), K-blocked with the accumulators stored and reloaded between blocks.
 * None of this changes the chains below: the order of the terms of every
 * output is exactly the documented one on every path and thread count.
 *
 * Forward.  For output (n, co, y, x), group gr = co / (co/groups):
 *   acc = +0
 *   for ci in 0..c/groups-1, ky in 0..kh-1, kx in 0..kw-1 (this order,
 *       i.e. k = (ci*kh + ky)*kw + kx increasing):
 *       v = in[n][gr*c/groups + ci][y*sh - pt + ky*dh][x*sw - pl + kx*dw]
 *           (0 when outside the image: padding terms are evaluated too)
 *       acc = fma(v, w[co][ci][ky][kx], acc)
 *   out = bias ? acc + bias[co] : acc
 * bias may be NULL. */
int lrp_fp_conv2d_fwd(float *out, const float *in, const float *w,
                      const float *bias, const lrp_fp_conv_geom *g,
                      int nthreads);

/* Backward-data (transposed convolution), no bias.  For gin (n, ci, iy, ix),
 * group gr, with gout of shape (n, co, oh, ow):
 *   acc = +0
 *   for co in group (increasing), ky in 0..kh-1, kx in 0..kw-1 (increasing)
 *       such that (iy + pt - ky*dh) % sh == 0 and (ix + pl - kx*dw) % sw == 0
 *       (taps of the other stride phases are not terms at all):
 *       y = (iy + pt - ky*dh) / sh, x = (ix + pl - kx*dw) / sw
 *       v = gout[n][co][y][x]  (0 when y, x fall outside the output: evaluated)
 *       acc = fma(v, w[co][ci - gr*c/groups][ky][kx], acc)
 *   gin = acc
 * This is "sum_j w_ij s_j" of LRP; R_i = a_i * gin_i is an elementwise mul. */
int lrp_fp_conv2d_bwd_data(float *gin, const float *gout, const float *w,
                           const lrp_fp_conv_geom *g, int nthreads);

/* ---- Dense ------------------------------------------------------------- */

/* y[b][o] = (acc over i = 0..in-1 increasing: acc = fma(x[b][i], W[o][i], acc),
 * acc from +0) + bias[o] (bias may be NULL).  W is (out, in). */
int lrp_fp_dense_fwd(float *y, const float *x, const float *W,
                     const float *bias, int batch, int in, int out,
                     int nthreads);

/* gx[b][i] = acc over o = 0..out-1 increasing: acc = fma(g[b][o], W[o][i], acc),
 * acc from +0. */
int lrp_fp_dense_bwd_data(float *gx, const float *g, const float *W,
                          int batch, int in, int out, int nthreads);

/* ---- elementwise (each one exactly rounded op: path-independent) ------- */

void lrp_fp_clamp_pos(float *y, const float *x, size_t n);
void lrp_fp_clamp_neg(float *y, const float *x, size_t n);
void lrp_fp_mul(float *y, const float *a, const float *b, size_t n);
void lrp_fp_div(float *y, const float *a, const float *b, size_t n);
/* clamp_pos: x if x > 0 else +0; clamp_neg: x if x < 0 else +0.  NaN maps to
 * NaN; neither ever returns -0 (so -0 -> +0). */

/* ---- pooling (NCHW, per channel; geometry as struct lrp_layer) --------- */

typedef struct lrp_fp_pool_geom {
    int n, c, h, w;
    int kh, kw, sh, sw;
    int pt, pb, pl, pr;
    int count_include_pad; /* avg pool only */
} lrp_fp_pool_geom;

int lrp_fp_pool_out_hw(const lrp_fp_pool_geom *g, int *oh, int *ow);

/* Max pool: out = max over the in-image window cells (padding cells do not
 * take part), scanned ky then kx increasing.  Cell v replaces the current
 * best b when v > b, or when v is NaN and b is not: the first maximum wins on
 * ties, the first NaN wins over everything.  argmax
 * (may be NULL) receives the flat index iy*w + ix inside the channel plane,
 * or -1 for a window without in-image cells (out = -inf then). */
int lrp_fp_maxpool_fwd(float *out, int32_t *argmax, const float *in,
                       const lrp_fp_pool_geom *g);
/* gin = 0, then for each output in increasing flat order (n, c, y, x):
 * gin[argmax] += gout (a plain float add; order fixed). */
int lrp_fp_maxpool_bwd(float *gin, const float *gout, const int32_t *argmax,
                       const lrp_fp_pool_geom *g);

/* Avg pool: out = (sum over in-image cells, ky then kx increasing, from +0)
 * / cnt, cnt = kh*kw if count_include_pad else the number of in-image cells. */
int lrp_fp_avgpool_fwd(float *out, const float *in, const lrp_fp_pool_geom *g);
/* gin = 0, then for each output in increasing flat order: q = gout / cnt,
 * gin[cell] += q for the in-image cells, ky then kx increasing. */
int lrp_fp_avgpool_bwd(float *gin, const float *gout, const lrp_fp_pool_geom *g);

/* Global average pool (n, c, h, w) -> (n, c): (sum over the plane in flat
 * order, from +0) / (h*w); backward gin = gout / (h*w) broadcast. */
void lrp_fp_gap_fwd(float *out, const float *in, int n, int c, int h, int w);
void lrp_fp_gap_bwd(float *gin, const float *gout, int n, int c, int h, int w);

#endif
