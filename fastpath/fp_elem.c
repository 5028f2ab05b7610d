/* fp_elem.c -- elementwise helpers and pooling, float32.
 *
 * Every output here is one exactly rounded operation or a sequential chain
 * of plain float adds in a fixed order, so plain C (auto-vectorised by the
 * compiler across outputs, never reassociated: no -ffast-math) gives the
 * same bits on every CPU; no ISA dispatch is needed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_kernels_int.h"

void lrp_fp_clamp_pos(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : (x[i] != x[i] ? x[i] : 0.0f);
}

void lrp_fp_clamp_neg(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] < 0.0f ? x[i] : (x[i] != x[i] ? x[i] : 0.0f);
}

void lrp_fp_mul(float *y, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] * b[i];
}

void lrp_fp_div(float *y, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] / b[i];
}

int lrp_fp_pool_out_hw(const lrp_fp_pool_geom *g, int *oh, int *ow)
{
    *oh = *ow = -1;
    if (!g || g->n < 1 || g->c < 1 || g->h < 1 || g->w < 1 || g->kh < 1 ||
        g->kw < 1 || g->sh < 1 || g->sw < 1 || g->pt < 0 || g->pb < 0 ||
        g->pl < 0 || g->pr < 0)
        return -1;
    long eh = (long)g->h + g->pt + g->pb - g->kh;
    long ew = (long)g->w + g->pl + g->pr - g->kw;
    if (eh < 0 || ew < 0)
        return -1;
    *oh = (int)(eh / g->sh + 1);
    *ow = (int)(ew / g->sw + 1);
    return 0;
}

/* In-image window range [y0, y1) x [x0, x1) of output (oy, ox). */
static void window(const lrp_fp_pool_geom *g, int oy, int ox, int *y0, int *y1,
                   int *x0, int *x1)
{
    int ys = oy * g->sh - g->pt, xs = ox * g->sw - g->pl;
    *y0 = ys < 0 ? 0 : ys;
    *y1 = ys + g->kh > g->h ? g->h : ys + g->kh;
    *x0 = xs < 0 ? 0 : xs;
    *x1 = xs + g->kw > g->w ? g->w : xs + g->kw;
}

int lrp_fp_maxpool_fwd(float *out, int32_t *argmax, const float *in,
                       const lrp_fp_pool_geom *g)
{
    int oh, ow;
    if (lrp_fp_pool_out_hw(g, &oh, &ow) != 0)
        return -1;
    size_t ip = (size_t)g->h * g->w, op = (size_t)oh * ow;
    for (size_t pc = 0; pc < (size_t)g->n * g->c; pc++) {
        const float *src = in + pc * ip;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                float best = -INFINITY;
                int32_t bi = -1;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) {
                        float v = src[(size_t)y * g->w + x];
                        if (bi < 0 || v > best || (v != v && best == best)) {
                            best = v;
                            bi = (int32_t)(y * g->w + x);
                        }
                    }
                out[pc * op + (size_t)oy * ow + ox] = best;
                if (argmax)
                    argmax[pc * op + (size_t)oy * ow + ox] = bi;
            }
    }
    return 0;
}

int lrp_fp_maxpool_bwd(float *gin, const float *gout, const int32_t *argmax,
                       const lrp_fp_pool_geom *g)
{
    int oh, ow;
    if (lrp_fp_pool_out_hw(g, &oh, &ow) != 0)
        return -1;
    size_t ip = (size_t)g->h * g->w, op = (size_t)oh * ow;
    memset(gin, 0, sizeof(float) * ip * g->n * g->c);
    /* a cell that wins some window holds a sum starting from -0 (so its
     * value is its first term and an exact zero keeps the IEEE sign); a cell
     * that wins none is the empty sum, +0 */
    for (size_t pc = 0; pc < (size_t)g->n * g->c; pc++)
        for (size_t o = 0; o < op; o++) {
            int32_t a = argmax[pc * op + o];
            if (a >= 0)
                gin[pc * ip + (size_t)a] = -0.0f;
        }
    for (size_t pc = 0; pc < (size_t)g->n * g->c; pc++)
        for (size_t o = 0; o < op; o++) {
            int32_t a = argmax[pc * op + o];
            if (a >= 0)
                gin[pc * ip + (size_t)a] += gout[pc * op + o];
        }
    return 0;
}

static int avg_count(const lrp_fp_pool_geom *g, int y0, int y1, int x0, int x1)
{
    return g->count_include_pad ? g->kh * g->kw : (y1 - y0) * (x1 - x0);
}

int lrp_fp_avgpool_fwd(float *out, const float *in, const lrp_fp_pool_geom *g)
{
    int oh, ow;
    if (lrp_fp_pool_out_hw(g, &oh, &ow) != 0)
        return -1;
    size_t ip = (size_t)g->h * g->w, op = (size_t)oh * ow;
    for (size_t pc = 0; pc < (size_t)g->n * g->c; pc++) {
        const float *src = in + pc * ip;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                /* from -0: the sum is its first term; no in-image cell: +0 */
                float s = y1 > y0 && x1 > x0 ? -0.0f : 0.0f;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++)
                        s += src[(size_t)y * g->w + x];
                int cnt = avg_count(g, y0, y1, x0, x1);
                out[pc * op + (size_t)oy * ow + ox] = cnt > 0 ? s / (float)cnt : 0.0f;
            }
    }
    return 0;
}

int lrp_fp_avgpool_bwd(float *gin, const float *gout, const lrp_fp_pool_geom *g)
{
    int oh, ow;
    if (lrp_fp_pool_out_hw(g, &oh, &ow) != 0)
        return -1;
    size_t ip = (size_t)g->h * g->w, op = (size_t)oh * ow;
    /* a cell inside some window holds a sum from -0 (its first term); a
     * cell no window covers is the empty sum, +0.  Windows form a grid, so
     * cell (y, x) is covered iff row y and column x are. */
    unsigned char *cov = malloc((size_t)g->h + (size_t)g->w);
    if (!cov)
        return -1;
    memset(cov, 0, (size_t)g->h + (size_t)g->w);
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            int y0, y1, x0, x1;
            window(g, oy, ox, &y0, &y1, &x0, &x1);
            if (y1 <= y0 || x1 <= x0)
                continue;
            for (int y = y0; y < y1; y++)
                cov[y] = 1;
            for (int x = x0; x < x1; x++)
                cov[g->h + x] = 1;
        }
    for (size_t pc = 0; pc < (size_t)g->n * g->c; pc++)
        for (int y = 0; y < g->h; y++)
            for (int x = 0; x < g->w; x++)
                gin[pc * ip + (size_t)y * g->w + x] = cov[y] && cov[g->h + x] ? -0.0f : 0.0f;
    free(cov);
    for (size_t pc = 0; pc < (size_t)g->n * g->c; pc++) {
        float *dst = gin + pc * ip;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                int cnt = avg_count(g, y0, y1, x0, x1);
                if (cnt <= 0)
                    continue;
                float q = gout[pc * op + (size_t)oy * ow + ox] / (float)cnt;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++)
                        dst[(size_t)y * g->w + x] += q;
            }
    }
    return 0;
}

void lrp_fp_gap_fwd(float *out, const float *in, int n, int c, int h, int w)
{
    size_t ip = (size_t)h * w;
    for (size_t pc = 0; pc < (size_t)n * c; pc++) {
        float s = -0.0f; /* the sum is its first term (ip >= 1) */
        for (size_t i = 0; i < ip; i++)
            s += in[pc * ip + i];
        out[pc] = s / (float)ip;
    }
}

void lrp_fp_gap_bwd(float *gin, const float *gout, int n, int c, int h, int w)
{
    size_t ip = (size_t)h * w;
    for (size_t pc = 0; pc < (size_t)n * c; pc++) {
        float q = gout[pc] / (float)ip;
        for (size_t i = 0; i < ip; i++)
            gin[pc * ip + i] = q;
    }
}
