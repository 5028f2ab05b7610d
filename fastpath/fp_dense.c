/* fp_dense.c -- Dense forward and backward-data, float32, deterministic.
 *
 * Forward y[b][o] = chain over i increasing of fma(x[b][i], W[o][i], .) from
 * +0, then + bias[o].  Vectorised over 16 consecutive outputs: a 16 x IB
 * block of W is transposed into a buffer (pure data movement), then each lane
 * runs its own output's chain (fp_dot16_fn), carried across i-blocks in acc.
 *
 * Backward gx[b][i] = chain over o increasing of fma(g[b][o], W[o][i], .) from
 * +0: vectorised over i (rows of W are contiguous), an axpy per o.
 * Threads own disjoint output blocks.
 */
#include <stdlib.h>
#include <string.h>

#include "fp_kernels_int.h"

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
 * fma(|x[b][i]|, |W[o][i]|, .) from +0, then + bias[o] -- the forward of
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
        memset(acc, 0, sizeof acc);
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

int lrp_fp_dense_fwd(float *y, const float *x, const float *W,
                     const float *bias, int batch, int in, int out,
                     int nthreads)
{
    if (batch < 1 || in < 0 || out < 1)
        return -1;
    dense_ctx c = {fp_ops(), y, x, W, bias, batch, in, out, 0};
    fp_parallel_for(nthreads, (out + 15) / 16, dense_fwd_item, &c);
    return 0;
}

int lrp_fp_dense_fwd_abs(float *y, const float *x, const float *W,
                         const float *bias, int batch, int in, int out,
                         int nthreads)
{
    if (batch < 1 || in < 0 || out < 1)
        return -1;
    dense_ctx c = {fp_ops(), y, x, W, bias, batch, in, out, 1};
    fp_parallel_for(nthreads, (out + 15) / 16, dense_fwd_item, &c);
    return 0;
}

static void dense_bwd_item(void *vctx, int64_t item)
{
    const dense_ctx *c = vctx; /* y = gx, x = g */
    int i0 = (int)item * JB;
    int len = c->in - i0 < JB ? c->in - i0 : JB;
    float acc[NB][JB] __attribute__((aligned(64)));
    for (int b0 = 0; b0 < c->batch; b0 += NB) {
        int nb = c->batch - b0 < NB ? c->batch - b0 : NB;
        for (int b = 0; b < nb; b++)
            memset(acc[b], 0, sizeof(float) * len);
        for (int o = 0; o < c->out; o++) {
            const float *wr = c->W + (size_t)o * c->in + i0;
            for (int b = 0; b < nb; b++)
                c->ops->axpy(acc[b], wr, c->x[(size_t)(b0 + b) * c->out + o], len);
        }
        for (int b = 0; b < nb; b++)
            memcpy(c->y + (size_t)(b0 + b) * c->in + i0, acc[b], sizeof(float) * len);
    }
}

int lrp_fp_dense_bwd_data(float *gx, const float *g, const float *W,
                          int batch, int in, int out, int nthreads)
{
    if (batch < 1 || in < 1 || out < 0)
        return -1;
    dense_ctx c = {fp_ops(), gx, g, W, NULL, batch, in, out, 0};
    fp_parallel_for(nthreads, (in + JB - 1) / JB, dense_bwd_item, &c);
    return 0;
}
