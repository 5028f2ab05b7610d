/* fp_dense.c -- Dense forward and backward-data, float32, deterministic.
 *
 * Forward y[b][o] = chain over i increasing of fma(x[b][i], W[o][i], .) from
 * -0, then + bias[o]: the sum's value is its first term (-0 + v == v for
 * every v, +0 included), so an exact zero keeps the IEEE sign, -0 iff every
 * product (and the bias) is -0; a sum of nothing (in == 0, no bias) is +0.
 * Vectorised over 16 consecutive outputs: a 16 x IB
 * block of W is transposed into a buffer (pure data movement), then each lane
 * runs its own output's chain (fp_dot16_fn), carried across i-blocks in acc.
 *
 * Backward gx[b][i] = chain over o increasing of fma(g[b][o], W[o][i], .) from
 * -0 (same rule): vectorised over i (rows of W are contiguous), an axpy per o.
 * Threads own disjoint output blocks.
 *
 * AVX-512 forms (same chains, same bits; the paths are compared in
 * test_fp_kernels): at batch 1 these layers only stream W once, so they
 * are memory-bound, and the generic forms were not (a scalar transpose per
 * block; an accumulator row reloaded per o).  Forward: 16 rows of W are
 * loaded 16 columns at a time and transposed in registers; each lane's
 * chain continues in a register.  Backward: a block of 16 x 16 = 256
 * consecutive gx values (batch 1; 4 x 16 values for up to 6 batch rows)
 * stays in registers over all o.
 */
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

#include "fp_kernels_int.h"

#define TGT512 __attribute__((target("avx512f")))

static int use512(void)
{
    return lrp_fp_get_isa() == LRP_FP_ISA_AVX512;
}

#define IB 256  /* i-block of the transposed buffer */
#define NB 8    /* batch rows per pass over a W block */
#define JB 1024 /* gx chunk per item */

#include <math.h>

typedef struct {
    const fp_isa_ops *ops;
    float *y;
    const float *x, *W, *bias;
    int batch, in, out;
    int absval; /* forward of |x| and |W| (the gauge) */
} dense_ctx;

/* Declared for backend_f32.c: y[b][o] = chain over i increasing of
 * fma(|x[b][i]|, |W[o][i]|, .) from -0, then + bias[o] -- the forward of
 * the absolute values, without materialising |W|. */
int lrp_fp_dense_fwd_abs(float *y, const float *x, const float *W,
                         const float *bias, int batch, int in, int out,
                         int nthreads);

static void dense_fwd_item(void *vctx, int64_t item)
{
    const dense_ctx *c = vctx;
    float buf[IB * 16] __attribute__((aligned(64)));
    float acc[NB][16];
    int o0 = (int)item * 16;
    int no = c->out - o0 < 16 ? c->out - o0 : 16;
    for (int b0 = 0; b0 < c->batch; b0 += NB) {
        int nb = c->batch - b0 < NB ? c->batch - b0 : NB;
        /* -0: the chain's value is its first term (-0 + v == v for every v);
         * no products and no bias: the empty sum, +0 */
        for (int b = 0; b < NB; b++)
            for (int jj = 0; jj < 16; jj++)
                acc[b][jj] = c->in > 0 || c->bias ? -0.0f : 0.0f;
        for (int i0 = 0; i0 < c->in; i0 += IB) {
            int cnt = c->in - i0 < IB ? c->in - i0 : IB;
            c->ops->pack16(buf, c->W + (size_t)o0 * c->in + i0, (size_t)c->in, no, cnt);
            if (c->absval) {
                /* |.| is exact: the same values as a materialised |W| */
                float xa[IB];
                for (int k = 0; k < cnt * 16; k++)
                    buf[k] = fabsf(buf[k]);
                for (int b = 0; b < nb; b++) {
                    const float *xr = c->x + (size_t)(b0 + b) * c->in + i0;
                    for (int k = 0; k < cnt; k++)
                        xa[k] = fabsf(xr[k]);
                    c->ops->dot16(acc[b], buf, xa, cnt);
                }
                continue;
            }
            for (int b = 0; b < nb; b++)
                c->ops->dot16(acc[b], buf, c->x + (size_t)(b0 + b) * c->in + i0, cnt);
        }
        for (int b = 0; b < nb; b++)
            for (int jj = 0; jj < no; jj++)
                c->y[(size_t)(b0 + b) * c->out + o0 + jj] =
                    c->bias ? acc[b][jj] + c->bias[o0 + jj] : acc[b][jj];
    }
}

/* In-register transpose: on return r[k] lane j holds what r[j] lane k
 * held (pure data movement). */
TGT512 static void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int k = 0; k < 16; k += 2) {
        t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
    /* t[2q] = a0 b0 a1 b1 | a4 b4 a5 b5 | ...; t[2q+1] = a2 b2 a3 b3 | ... */
    for (int k = 0; k < 16; k += 4) {
        r[k] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[k]), _mm512_castps_pd(t[k + 2])));
        r[k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[k]), _mm512_castps_pd(t[k + 2])));
        r[k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[k + 1]), _mm512_castps_pd(t[k + 3])));
        r[k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[k + 1]), _mm512_castps_pd(t[k + 3])));
    }
    /* r[4q + m], 128-bit lane L: column 4L + m of rows 4q..4q+3 */
    for (int m = 0; m < 4; m++) {
        __m512 a = r[m], b = r[4 + m], c = r[8 + m], d = r[12 + m];
        __m512 ab0 = _mm512_shuffle_f32x4(a, b, 0x88); /* a.L0 a.L2 b.L0 b.L2 */
        __m512 ab1 = _mm512_shuffle_f32x4(a, b, 0xdd); /* a.L1 a.L3 b.L1 b.L3 */
        __m512 cd0 = _mm512_shuffle_f32x4(c, d, 0x88);
        __m512 cd1 = _mm512_shuffle_f32x4(c, d, 0xdd);
        t[m] = _mm512_shuffle_f32x4(ab0, cd0, 0x88);      /* L0 of a b c d: column m */
        t[8 + m] = _mm512_shuffle_f32x4(ab0, cd0, 0xdd);  /* L2: column 8 + m */
        t[4 + m] = _mm512_shuffle_f32x4(ab1, cd1, 0x88);  /* L1: column 4 + m */
        t[12 + m] = _mm512_shuffle_f32x4(ab1, cd1, 0xdd); /* L3: column 12 + m */
    }
    for (int k = 0; k < 16; k++)
        r[k] = t[k];
}

TGT512 static void dense_fwd_item512(void *vctx, int64_t item)
{
    const dense_ctx *c = vctx;
    int o0 = (int)item * 16;
    int no = c->out - o0 < 16 ? c->out - o0 : 16;
    const __m512i absm = _mm512_set1_epi32(0x7fffffff);
    __m512 acc[NB];
    for (int b0 = 0; b0 < c->batch; b0 += NB) {
        int nb = c->batch - b0 < NB ? c->batch - b0 : NB;
        for (int b = 0; b < NB; b++) /* -0 start; empty chain +0 (see above) */
            acc[b] = _mm512_set1_ps(c->in > 0 || c->bias ? -0.0f : 0.0f);
        for (int i0 = 0; i0 < c->in; i0 += 16) {
            int cnt = c->in - i0 < 16 ? c->in - i0 : 16;
            __mmask16 m = (__mmask16)(cnt == 16 ? 0xffffu : (1u << cnt) - 1u);
            __m512 r[16];
            for (int jj = 0; jj < 16; jj++) {
                r[jj] = jj < no ? _mm512_maskz_loadu_ps(m, c->W + (size_t)(o0 + jj) * c->in + i0)
                                : _mm512_setzero_ps();
                if (c->absval)
                    r[jj] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(r[jj]), absm));
            }
            transpose16(r);
            for (int b = 0; b < nb; b++) {
                const float *xr = c->x + (size_t)(b0 + b) * c->in + i0;
                __m512 a = acc[b];
                if (c->absval)
                    for (int k = 0; k < cnt; k++)
                        a = _mm512_fmadd_ps(_mm512_set1_ps(fabsf(xr[k])), r[k], a);
                else
                    for (int k = 0; k < cnt; k++)
                        a = _mm512_fmadd_ps(_mm512_set1_ps(xr[k]), r[k], a);
                acc[b] = a;
            }
        }
        for (int b = 0; b < nb; b++) {
            float v[16] __attribute__((aligned(64)));
            _mm512_store_ps(v, acc[b]);
            for (int jj = 0; jj < no; jj++)
                c->y[(size_t)(b0 + b) * c->out + o0 + jj] =
                    c->bias ? v[jj] + c->bias[o0 + jj] : v[jj];
        }
    }
}

static int dense_fwd_run(float *y, const float *x, const float *W, const float *bias,
                         int batch, int in, int out, int nthreads, int absval)
{
    if (batch < 1 || in < 0 || out < 1)
        return -1;
    dense_ctx c = {fp_ops(), y, x, W, bias, batch, in, out, absval};
    fp_parallel_for(nthreads, (out + 15) / 16, use512() ? dense_fwd_item512 : dense_fwd_item, &c);
    return 0;
}

int lrp_fp_dense_fwd(float *y, const float *x, const float *W,
                     const float *bias, int batch, int in, int out,
                     int nthreads)
{
    return dense_fwd_run(y, x, W, bias, batch, in, out, nthreads, 0);
}

int lrp_fp_dense_fwd_abs(float *y, const float *x, const float *W,
                         const float *bias, int batch, int in, int out,
                         int nthreads)
{
    return dense_fwd_run(y, x, W, bias, batch, in, out, nthreads, 1);
}

static void dense_bwd_item(void *vctx, int64_t item)
{
    const dense_ctx *c = vctx; /* y = gx, x = g */
    int i0 = (int)item * JB;
    int len = c->in - i0 < JB ? c->in - i0 : JB;
    float acc[NB][JB] __attribute__((aligned(64)));
    for (int b0 = 0; b0 < c->batch; b0 += NB) {
        int nb = c->batch - b0 < NB ? c->batch - b0 : NB;
        for (int b = 0; b < nb; b++) /* -0 start; empty chain (out == 0) +0 */
            for (int i = 0; i < len; i++)
                acc[b][i] = c->out > 0 ? -0.0f : 0.0f;
        for (int o = 0; o < c->out; o++) {
            const float *wr = c->W + (size_t)o * c->in + i0;
            for (int b = 0; b < nb; b++)
                c->ops->axpy(acc[b], wr, c->x[(size_t)(b0 + b) * c->out + o], len);
        }
        for (int b = 0; b < nb; b++)
            memcpy(c->y + (size_t)(b0 + b) * c->in + i0, acc[b], sizeof(float) * len);
    }
}

/* gx block [i0, i0 + 16 V) for batch rows b0 .. b0 + NBR - 1 (rows beyond
 * the batch: not computed), accumulators in registers over all o. */
#ifndef BWD_PF
#define BWD_PF 8 /* rows ahead */
#endif
#define BWD512(NAME, V, NBR)                                                              \
    TGT512 static void NAME(const dense_ctx *c, int i0, int b0)                          \
    {                                                                                     \
        __m512 a[NBR][V];                                                                 \
        __mmask16 mk[V];                                                                  \
        int nb = c->batch - b0 < NBR ? c->batch - b0 : NBR;                               \
        for (int v = 0; v < V; v++) {                                                     \
            int left = c->in - i0 - 16 * v;                                               \
            mk[v] = (__mmask16)(left >= 16 ? 0xffffu : left <= 0 ? 0u : (1u << left) - 1u); \
            for (int b = 0; b < NBR; b++) /* -0 start; empty chain +0 */                  \
                a[b][v] = _mm512_set1_ps(c->out > 0 ? -0.0f : 0.0f);                      \
        }                                                                                 \
        for (int o = 0; o < c->out; o++) {                                                \
            const float *wr = c->W + (size_t)o * c->in + i0;                              \
            if (o + BWD_PF < c->out) /* rows are far apart: no hardware prefetch */       \
                for (int v = 0; v < V; v++)                                               \
                    _mm_prefetch((const char *)(wr + (size_t)BWD_PF * c->in + 16 * v),   \
                                 _MM_HINT_T0);                                            \
            __m512 w[V];                                                                  \
            for (int v = 0; v < V; v++)                                                   \
                w[v] = _mm512_maskz_loadu_ps(mk[v], wr + 16 * v);                         \
            for (int b = 0; b < NBR; b++) {                                               \
                if (b >= nb)                                                              \
                    break;                                                                \
                __m512 gv = _mm512_set1_ps(c->x[(size_t)(b0 + b) * c->out + o]);          \
                for (int v = 0; v < V; v++)                                               \
                    a[b][v] = _mm512_fmadd_ps(gv, w[v], a[b][v]);                         \
            }                                                                             \
        }                                                                                 \
        for (int b = 0; b < nb; b++)                                                      \
            for (int v = 0; v < V; v++)                                                   \
                _mm512_mask_storeu_ps(c->y + (size_t)(b0 + b) * c->in + i0 + 16 * v, mk[v], \
                                      a[b][v]);                                           \
    }
BWD512(bwd512_b1, 16, 1)
BWD512(bwd512_b6, 4, 6)

static void dense_bwd_item512_b1(void *vctx, int64_t item)
{
    bwd512_b1(vctx, (int)item * 256, 0);
}

/* items: (batch block of 6, i-block of 64) */
static void dense_bwd_item512_bn(void *vctx, int64_t item)
{
    const dense_ctx *c = vctx;
    int nib = (c->in + 63) / 64;
    bwd512_b6(c, (int)(item % nib) * 64, (int)(item / nib) * 6);
}

int lrp_fp_dense_bwd_data(float *gx, const float *g, const float *W,
                          int batch, int in, int out, int nthreads)
{
    if (batch < 1 || in < 1 || out < 0)
        return -1;
    dense_ctx c = {fp_ops(), gx, g, W, NULL, batch, in, out, 0};
    if (use512() && batch == 1)
        fp_parallel_for(nthreads, (in + 255) / 256, dense_bwd_item512_b1, &c);
    else if (use512())
        fp_parallel_for(nthreads, (int64_t)((in + 63) / 64) * ((batch + 5) / 6),
                        dense_bwd_item512_bn, &c);
    else
        fp_parallel_for(nthreads, (in + JB - 1) / JB, dense_bwd_item, &c);
    return 0;
}
