/*
 * fp_attn.c -- the float32 ops of the attention kinds (core/pipeline.h,
 * lrp_backend.softmax_fwd / softmax_taylor / rowsum / bmm; the MPFR twin
 * is reference/ref_attn.c), written the way PyTorch computes them:
 *   softmax   m = row max, e_i = expf(x_i - m), the sum in index order,
 *             s_i = e_i / sum (torch.softmax's max-subtracted form);
 *             masked entries (a -inf logit) are +0 and an all-masked row
 *             is all +0 (where torch.softmax gives NaN: docs/TRANSFORMERS.md
 *             section 6, case 1);
 *   taylor    sR in index order, d_i = R_i - s_i sR (a product and a
 *             difference: -ffp-contract=off keeps them two roundings),
 *             rin_i = xr_i d_i; the absorbed closed form in index order;
 *   rowsum    in index order;
 *   bmm       one sequential float chain over k per output, then times c.
 * Every output is written by one item of the parallel loops (rows), so the
 * bits never depend on the thread count.
 */
#include <math.h>
#include <stdint.h>

#include "fp_kernels_int.h"
#include "pipeline.h"

#define ROWS_PER_ITEM 64

static int is_masked(const uint8_t *mask, int64_t mrows, int64_t r, int64_t cols, int64_t c,
                     float x)
{
    if (mask && mask[(r % mrows) * cols + c])
        return 1;
    return x == -INFINITY;
}

typedef struct sm_job {
    float *out, *rin, *absb, *absm;
    const float *x, *xr, *s, *R;
    const uint8_t *mask;
    int64_t mrows, rows, cols;
} sm_job;

static void softmax_item(void *ctx, int64_t item)
{
    sm_job *J = ctx;
    int64_t cols = J->cols;
    int64_t r1 = (item + 1) * ROWS_PER_ITEM < J->rows ? (item + 1) * ROWS_PER_ITEM : J->rows;
    for (int64_t r = item * ROWS_PER_ITEM; r < r1; r++) {
        const float *x = J->x + r * cols;
        float *o = J->out + r * cols;
        float m = 0.0f;
        int any = 0;
        for (int64_t k = 0; k < cols; k++) {
            if (is_masked(J->mask, J->mrows, r, cols, k, x[k]))
                continue;
            if (!any || x[k] > m)
                m = x[k];
            any = 1;
        }
        float sum = 0.0f;
        for (int64_t k = 0; k < cols; k++) {
            if (!any || is_masked(J->mask, J->mrows, r, cols, k, x[k])) {
                o[k] = 0.0f;
                continue;
            }
            o[k] = expf(x[k] - m);
            sum += o[k];
        }
        for (int64_t k = 0; k < cols; k++)
            if (any && !is_masked(J->mask, J->mrows, r, cols, k, x[k]))
                o[k] = o[k] / sum;
    }
}

void lrp_fp_softmax_fwd(int nthreads, float *out, const float *x, const uint8_t *mask,
                        int64_t mrows, int64_t rows, int64_t cols)
{
    sm_job J = {out, NULL, NULL, NULL, x, NULL, NULL, NULL, mask, mrows, rows, cols};
    fp_parallel_for(nthreads, (rows + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM, softmax_item, &J);
}

static void taylor_item(void *ctx, int64_t item)
{
    sm_job *J = ctx;
    int64_t cols = J->cols;
    int64_t r1 = (item + 1) * ROWS_PER_ITEM < J->rows ? (item + 1) * ROWS_PER_ITEM : J->rows;
    for (int64_t r = item * ROWS_PER_ITEM; r < r1; r++) {
        const float *x = J->x + r * cols, *xr = J->xr + r * cols, *s = J->s + r * cols,
                    *R = J->R + r * cols;
        float *o = J->rin + r * cols;
        float sR = 0.0f, xbar = 0.0f, sRx = 0.0f, am = 0.0f;
        for (int64_t k = 0; k < cols; k++)
            if (!is_masked(J->mask, J->mrows, r, cols, k, x[k])) {
                sR += R[k];
                xbar += s[k] * x[k];
                sRx += R[k] * x[k];
            }
        for (int64_t k = 0; k < cols; k++) {
            if (is_masked(J->mask, J->mrows, r, cols, k, x[k])) {
                o[k] = 0.0f;
                continue;
            }
            float d = R[k] - s[k] * sR;
            o[k] = xr[k] * d;
            am += (x[k] - xr[k]) * d;
        }
        J->absb[r] = sR * (1.0f + xbar) - sRx;
        if (J->absm)
            J->absm[r] = am;
    }
}

void lrp_fp_softmax_taylor(int nthreads, float *rin, float *absb, float *absm, const float *x,
                           const float *xr, const float *s, const float *R, const uint8_t *mask,
                           int64_t mrows, int64_t rows, int64_t cols)
{
    sm_job J = {NULL, rin, absb, absm, x, xr, s, R, mask, mrows, rows, cols};
    fp_parallel_for(nthreads, (rows + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM, taylor_item, &J);
}

void lrp_fp_rowsum(float *out, const float *a, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        float s = 0.0f;
        for (int64_t k = 0; k < cols; k++)
            s += a[r * cols + k];
        out[r] = s;
    }
}

typedef struct bmm_job {
    float *out;
    const float *a, *b;
    const lrp_bmm *G;
} bmm_job;

static void bmm_item(void *ctx, int64_t row)
{
    bmm_job *J = ctx;
    const lrp_bmm *G = J->G;
    int64_t m = row % G->M, i2 = row / G->M % G->n2, i1 = row / G->M / G->n2;
    const float *a = J->a + i1 * G->a1 + i2 * G->a2 + m * G->am;
    const float *b = J->b + i1 * G->b1 + i2 * G->b2;
    float *o = J->out + i1 * G->o1 + i2 * G->o2 + m * G->om;
    for (int64_t n = 0; n < G->N; n++) {
        float acc = 0.0f;
        for (int64_t k = 0; k < G->K; k++)
            acc += a[k * G->ak] * b[k * G->bk + n * G->bn];
        o[n * G->on] = G->c == 1.0f ? acc : G->c * acc;
    }
}

void lrp_fp_bmm(int nthreads, float *out, const float *a, const float *b, const lrp_bmm *G)
{
    bmm_job J = {out, a, b, G};
    fp_parallel_for(nthreads, G->n1 * G->n2 * G->M, bmm_item, &J);
}
