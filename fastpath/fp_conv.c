/* fp_conv.c -- Conv2D forward and backward-data, float32, deterministic.
 *
 * Both directions run one engine, a "flat correlation":
 *
 *   out_flat[m][q] = chain over k = 0..K-1 of
 *                    fma(src[koff[k] + q], W[aoff[k] + m*lda], .)   from -0
 *
 * src holds one plane per channel, rows of a common width Wq, so that every
 * (channel, tap) pair k becomes one constant offset koff[k] and the pixels q
 * of a row-major flat index are contiguous: the microkernel loads tw
 * consecutive pixels per k with plain vector loads and broadcasts mr weights
 * (implicit GEMM without an im2col buffer).  Flat positions whose column is
 * >= the valid width are computed and discarded.
 *
 *  - Forward, stride s: src is a zero-padded copy of the input split into
 *    s_h*s_w phase sub-planes (sub-plane (py,px) holds
 *    padded[r*sh+py][c*sw+px]), which turns every stride into a stride-1
 *    flat correlation.  k = (ci, ky, kx); output channel m's weights are row
 *    m of w: aoff[k] = k, lda = K.
 *  - Backward-data, stride s: gin is split into output phases (ry, rx) with
 *    iy = ry + sh*a, ix = rx + sw*b; in a phase only the taps with
 *    (ry + pt - ky*dh) % sh == 0 (same for x) contribute, and each reads
 *    gout[a + dy][b + dx] at a constant shift: again a stride-1 flat
 *    correlation over a zero-padded copy of gout.  k = (co, ky, kx) over the
 *    contributing taps; the weight of (k, ci) is w[co][ci][tap]:
 *    aoff[k] = co*(ci per group)*kh*kw + tap, lda = kh*kw.
 *
 * THE SUMMATION ORDER IS THE ONE DOCUMENTED IN fp_kernels.h and it has not
 * changed with the speed work below: every output is one sequential fma
 * chain from -0 over k in exactly that order, padding terms included, the
 * bias added once after (an exact-zero output whose window holds padding is
 * then given the sign the chain over the in-range terms alone has: see
 * "the sign of an exact zero" below); tests/test_fp_kernels.c checks every path bit for
 * bit against a frozen copy of the previous engine (tests/fp_conv_old.inc).
 * The order is fixed by koff/aoff alone; the tiling (mr, tw), K-blocking,
 * the thread count and the ISA only decide who computes which outputs and
 * where a chain's float accumulator waits between K-blocks.
 *
 * Design (measured on a 2-vCPU AVX-512 guest, see bench/bench_fastpath.c):
 *  - Weights are read in place (the kernel broadcasts W[aoff[k] + m*lda]);
 *    nothing is packed per call.  Only when mr does not divide the channels
 *    per group is a zero-padded copy of w made (odd shapes, depthwise).
 *  - Tiles: full tiles of tw pixels, then one tail tile rounded up to the
 *    ISA's unit tu (16 on AVX-512) instead of a whole tw.  AVX-512: 8
 *    channels x 48 pixels, or 3 x 128 when a group has <= 3 output planes
 *    (the RGB input of a first layer's backward-data).
 *  - Work items: (image, group, chunk of TILES_PER_CHUNK tiles, stride
 *    phase, range of <= PANELS_PER_ITEM panels of mr channels), enough of
 *    them to keep every thread busy.  Inside an item K runs in blocks of
 *    ~KC_TARGET; the tile accumulators are stored between blocks and
 *    reloaded (exact), so a tile's source block and a panel's weight block
 *    stay in cache while the other side sweeps them.
 *  - Direct source: 1x1 kernels over unpadded stride-1 planes (forward) or
 *    whose padded gout is gout (backward) read the caller's planes in place;
 *    only the tail tile, which would read past the last plane, reads a small
 *    compact copy.  Otherwise the padded copy is built in parallel, a few
 *    large blocks of planes per thread.
 *  - Threads come from the persistent pool of fp_isa.c (fp_parallel_for).
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_kernels_int.h"

int lrp_fp_conv_out_hw(const lrp_fp_conv_geom *g, int *oh, int *ow)
{
    *oh = *ow = -1;
    if (!g || g->n < 1 || g->c < 1 || g->h < 1 || g->w < 1 || g->co < 1 ||
        g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->dh < 1 ||
        g->dw < 1 || g->pt < 0 || g->pb < 0 || g->pl < 0 || g->pr < 0 ||
        g->groups < 1 || g->c % g->groups || g->co % g->groups)
        return -1;
    long eh = (long)g->h + g->pt + g->pb - (long)g->dh * (g->kh - 1) - 1;
    long ew = (long)g->w + g->pl + g->pr - (long)g->dw * (g->kw - 1) - 1;
    if (eh < 0 || ew < 0)
        return -1;
    *oh = (int)(eh / g->sh + 1);
    *ow = (int)(ew / g->sw + 1);
    return 0;
}

/* One flat correlation problem (one stride phase of the output). */
typedef struct {
    int K;
    int32_t *koff; /* [K] src offsets */
    int32_t *aoff; /* [K] weight offsets (see fp_conv_kern_fn) */
    int rows, cols; /* valid outputs of the phase */
    int wq;         /* flat row width */
    int ntiles;     /* nfull tiles of tw, then possibly one narrower tail */
    int nfull, tailw;
    /* direct source (1x1 kernels over unpadded planes: the input itself is
     * the source, no copy): the tail tile, which would read up to tu-1
     * floats past the last plane, reads a compact copy instead:
     * tsrc[(n*groups + g)*K + k][j] = src[koff[k] + nfull*tw + j] for
     * j < valid, 0 beyond; tkoff[k] = k*tailw */
    float *tsrc;
    int32_t *tkoff;
    int oy0, ox0;   /* destination of phase pixel (0,0) */
} phase_t;

typedef struct {
    int n, g, ph, t0, t1, p0, p1;
} item_t;

typedef struct {
    const fp_isa_ops *ops;
    fp_conv_kern_fn conv; /* ops->conv, or ops->conv_s for few channels */
    int mr, tw;
    int groups, m;    /* output channels per group */
    int csrc, cin_g;  /* src channels total / per group */
    size_t cs;        /* floats per src channel plane */
    const float *src;
    float *dst;
    int mtot, dh_, dw_; /* dst channels and plane size */
    int sy, sx;         /* dst stride between phase pixels */
    const float *bias;
    int npanel;
    phase_t *ph;
    int nph;
    item_t *items;
    /* src builder */
    const float *raw;  /* input (fwd) or gout (bwd) */
    int rh, rw;        /* raw plane size */
    int fwd;
    int sh, sw, pt, pl; /* fwd: stride and padding; bwd: pt/pl = PT/PL shift */
    int hq, wq;         /* fwd: sub-plane size; bwd: padded plane size */
    /* weights, read in place: W viewed as [groups][A][Mp][B] (forward A = 1,
     * B = K; backward A = co per group, B = kh*kw); Mp = m, or m rounded up
     * to mr in a zero-padded copy when mr does not divide m */
    const float *w;
    const float *wsrc;
    size_t gstride;     /* floats per group in wsrc */
    ptrdiff_t lda;      /* = B */
    int kh, kw, kk;     /* kk = kh*kw */
    int64_t src_planes, src_chunk;
    int *taps[64];      /* per phase: tap ids (ky*kw + kx), count in ntap */
    int ntap[64];
} job_t;

/* the microkernel and its tile for j->m output channels per group */
static void pick_kernel(job_t *j)
{
    j->conv = j->ops->conv;
    if (j->ops->conv_s && j->m <= j->ops->mr_s) {
        j->conv = j->ops->conv_s;
        j->mr = j->ops->mr_s;
        j->tw = j->ops->tw_s;
    }
}

/* ---- building the padded source ---------------------------------------- */

/* one row of the source: row[c] = in[c*step + off] where 0 <= c*step + off
 * < rw, else 0 (pure data movement) */
static void build_row(float *row, int wq, const float *irow, int rw, int step, int off)
{
    /* c_lo = first c with c*step + off >= 0, c_hi = first c with >= rw */
    int c_lo = off >= 0 ? 0 : (-off + step - 1) / step;
    int c_hi = rw - off <= 0 ? 0 : (rw - off + step - 1) / step;
    if (c_hi > wq)
        c_hi = wq;
    if (c_lo > c_hi)
        c_lo = c_hi;
    memset(row, 0, sizeof(float) * c_lo);
    if (step == 1)
        memcpy(row + c_lo, irow + c_lo + off, sizeof(float) * (c_hi - c_lo));
    else
        for (int c = c_lo; c < c_hi; c++)
            row[c] = irow[c * step + off];
    memset(row + c_hi, 0, sizeof(float) * (wq - c_hi));
}

static void build_src_plane(const job_t *j, int64_t ch)
{
    const float *in = j->raw + (size_t)ch * j->rh * j->rw;
    float *dst = (float *)j->src + (size_t)ch * j->cs;
    size_t used;
    if (j->fwd) {
        size_t plane = (size_t)j->hq * j->wq;
        for (int py = 0; py < j->sh; py++)
            for (int px = 0; px < j->sw; px++) {
                float *sp = dst + (size_t)(py * j->sw + px) * plane;
                for (int r = 0; r < j->hq; r++) {
                    float *row = sp + (size_t)r * j->wq;
                    int iy = r * j->sh + py - j->pt;
                    if (iy < 0 || iy >= j->rh)
                        memset(row, 0, sizeof(float) * j->wq);
                    else
                        build_row(row, j->wq, in + (size_t)iy * j->rw, j->rw, j->sw,
                                  px - j->pl);
                }
            }
        used = (size_t)j->sh * j->sw * plane;
    } else {
        /* padded gout: gp[r][c] = gout[r - PT][c - PL] */
        for (int r = 0; r < j->hq; r++) {
            float *row = dst + (size_t)r * j->wq;
            int y = r - j->pt;
            if (y < 0 || y >= j->rh)
                memset(row, 0, sizeof(float) * j->wq);
            else
                build_row(row, j->wq, in + (size_t)y * j->rw, j->rw, 1, -j->pl);
        }
        used = (size_t)j->hq * j->wq;
    }
    /* slack read by the last tiles (their outputs are discarded) */
    memset(dst + used, 0, sizeof(float) * (j->cs - used));
}

/* item = a block of src_chunk channel planes (few large items: a shared
 * counter claimed per plane costs more than the copy on small layers) */
static void build_src_item(void *vctx, int64_t item)
{
    job_t *j = vctx;
    int64_t c0 = item * j->src_chunk, c1 = c0 + j->src_chunk;
    if (c1 > j->src_planes)
        c1 = j->src_planes;
    for (int64_t ch = c0; ch < c1; ch++)
        build_src_plane(j, ch);
}

static void build_src(job_t *j, int nthreads, int64_t planes)
{
    int64_t nit = 4 * (int64_t)nthreads;
    if (nit > planes)
        nit = planes;
    j->src_planes = planes;
    j->src_chunk = (planes + nit - 1) / nit;
    fp_parallel_for(nthreads, (planes + j->src_chunk - 1) / j->src_chunk, build_src_item, j);
}

/* direct source: item = (n*groups + g)*nph + ph builds that tail copy */
static void build_tail_item(void *vctx, int64_t item)
{
    job_t *j = vctx;
    int ph = (int)(item % j->nph);
    int64_t ng = item / j->nph;
    int n = (int)(ng / j->groups), g = (int)(ng % j->groups);
    phase_t *P = &j->ph[ph];
    if (!P->tsrc)
        return;
    const float *sb = j->src + ((size_t)n * j->csrc + (size_t)g * j->cin_g) * j->cs;
    int64_t q0 = (int64_t)P->nfull * j->tw;
    int valid = (int)((int64_t)P->rows * P->wq - q0);
    float *dst = P->tsrc + (size_t)ng * P->K * P->tailw;
    for (int k = 0; k < P->K; k++) {
        float *d = dst + (size_t)k * P->tailw;
        memcpy(d, sb + P->koff[k] + q0, sizeof(float) * valid);
        memset(d + valid, 0, sizeof(float) * (P->tailw - valid));
    }
}

/* the output does not overlap the source (a direct source must not change
 * under the stores; the copied one never did) */
static int disjoint(const float *a, size_t na, const float *b, size_t nb)
{
    uintptr_t a0 = (uintptr_t)a, a1 = a0 + na * sizeof(float);
    uintptr_t b0 = (uintptr_t)b, b1 = b0 + nb * sizeof(float);
    return a1 <= b0 || b1 <= a0;
}

/* floats of the tail copies of a direct source */
static size_t tail_floats(const job_t *j, int nbatch)
{
    size_t tot = 0;
    for (int ph = 0; ph < j->nph; ph++) {
        const phase_t *P = &j->ph[ph];
        if ((int64_t)P->nfull * j->tw < (int64_t)P->rows * P->wq)
            tot += (size_t)nbatch * j->groups * (size_t)P->K * P->tailw;
    }
    return tot;
}

/* points the phases with a tail at their copies in ws; -1: out of memory */
static int direct_setup(job_t *j, int nbatch, float *ws)
{
    size_t off = 0;
    for (int ph = 0; ph < j->nph; ph++) {
        phase_t *P = &j->ph[ph];
        if ((int64_t)P->nfull * j->tw >= (int64_t)P->rows * P->wq)
            continue;
        P->tsrc = ws + off;
        off += (size_t)nbatch * j->groups * (size_t)P->K * P->tailw;
        P->tkoff = malloc(sizeof(int32_t) * (size_t)(P->K > 0 ? P->K : 1));
        if (!P->tkoff)
            return -1;
        for (int k = 0; k < P->K; k++)
            P->tkoff[k] = (int32_t)((int64_t)k * P->tailw);
    }
    return 0;
}

/* ---- weights ------------------------------------------------------------ */

/* The zero-padded copy when mr does not divide m (odd channel counts,
 * depthwise): wp[g][a][mp][b] = w[g][a][m][b] for m < M, 0 beyond.  Pure
 * data movement; the padded lanes' outputs are never stored. */
static float *pad_weights(const float *w, int groups, int A, int M, int Mp, int B)
{
    float *wp = fp_alloc(sizeof(float) * (size_t)groups * A * Mp * B);
    if (!wp)
        return NULL;
    for (int g = 0; g < groups; g++)
        for (int a = 0; a < A; a++) {
            const float *src = w + ((size_t)g * A + a) * M * B;
            float *dst = wp + ((size_t)g * A + a) * Mp * B;
            memcpy(dst, src, sizeof(float) * M * B);
            memset(dst + (size_t)M * B, 0, sizeof(float) * (Mp - M) * B);
        }
    return wp;
}

/* ---- compute ----------------------------------------------------------- */

static void store_tile(const job_t *j, const phase_t *P, const float *tile,
                       int n, int g, int panel, int q0, int tw)
{
    size_t plane = (size_t)j->dh_ * j->dw_;
    for (int mm = 0; mm < j->mr; mm++) {
        int m = panel * j->mr + mm;
        if (m >= j->m)
            break;
        int ch = g * j->m + m;
        float *dp = j->dst + ((size_t)n * j->mtot + ch) * plane;
        int hb = j->bias != NULL;
        float bv = hb ? j->bias[ch] : 0.0f;
        const float *tr = tile + (size_t)mm * tw;
        int q = q0, end = q0 + tw;
        int a = q / P->wq, b = q % P->wq;
        while (q < end && a < P->rows) {
            int seg = P->wq - b;
            if (seg > end - q)
                seg = end - q;
            int valid = P->cols - b;
            if (valid > seg)
                valid = seg;
            if (valid > 0) {
                const float *tp = tr + (q - q0);
                float *d = dp + (size_t)(P->oy0 + a * j->sy) * j->dw_ + P->ox0 +
                           (size_t)b * j->sx;
                if (j->sx == 1) {
                    if (hb)
                        j->ops->addrow(d, tp, bv, valid);
                    else
                        memcpy(d, tp, sizeof(float) * valid);
                } else {
                    for (int i = 0; i < valid; i++)
                        d[(size_t)i * j->sx] = hb ? tp[i] + bv : tp[i];
                }
            }
            q += seg;
            a++;
            b = 0;
        }
    }
}

/* K-blocking.  Without it every (panel, tile) pair streamed its tile's
 * source rows over the whole K from L2/L3 (K*192 B per 48-pixel tile: up to
 * 3.5 MB on ResNet's 7x7 layers, 0.9 MB on VGG conv5), re-read for each of
 * the m/8 panels.  An item now runs K in blocks of about KC_TARGET; inside a
 * block, each tile's source block stays in L1/L2 while all panels of the
 * item pass over it, and each panel's weight block stays in L2 while the
 * tiles pass.  The tile accumulators are stored between blocks and reloaded
 * (cont = 1): the same chain, bit for bit. */
#ifndef KC_TARGET
#define KC_TARGET 512
#endif
/* panels (of mr output channels) per item at most: bounds the weight block
 * (PANELS_PER_ITEM * mr * KC_TARGET floats) and the accumulator buffer */
#ifndef PANELS_PER_ITEM
#define PANELS_PER_ITEM 16
#endif

/* source and offsets of tile t (see phase_t.tsrc) */
static const float *tile_src(const job_t *j, const phase_t *P, const item_t *it, int t,
                             const int32_t **ko)
{
    if (P->tsrc && t >= P->nfull) {
        *ko = P->tkoff;
        return P->tsrc + ((size_t)it->n * j->groups + it->g) * (size_t)P->K * P->tailw;
    }
    *ko = P->koff;
    return j->src + ((size_t)it->n * j->csrc + (size_t)it->g * j->cin_g) * j->cs +
           (size_t)t * j->tw;
}

static void compute_item(void *vctx, int64_t item)
{
    job_t *j = vctx;
    const item_t *it = &j->items[item];
    const phase_t *P = &j->ph[it->ph];
    float tile[16 * 64] __attribute__((aligned(64)));
    const float *wg = j->wsrc + (size_t)it->g * j->gstride;
    int K = P->K;
    int nkb = K > KC_TARGET + KC_TARGET / 2 ? (K + KC_TARGET - 1) / KC_TARGET : 1;
    size_t tsz = (size_t)j->mr * j->tw;
    float *buf = NULL;
    if (nkb > 1) {
        buf = fp_alloc(sizeof(float) * tsz * (size_t)(it->p1 - it->p0) * (it->t1 - it->t0));
        if (!buf)
            nkb = 1; /* unblocked: same bits, only slower */
    }
    if (nkb == 1) {
        for (int p = it->p0; p < it->p1; p++) {
            const float *wb = wg + (size_t)p * j->mr * j->lda;
            for (int t = it->t0; t < it->t1; t++) {
                int q0 = t * j->tw;
                int tw = t < P->nfull ? j->tw : P->tailw;
                const int32_t *ko;
                const float *sq = tile_src(j, P, it, t, &ko);
                if (K > 0)
                    j->conv(tile, tw, sq, ko, K, wb, P->aoff, j->lda, 0);
                else
                    memset(tile, 0, sizeof(float) * j->mr * tw);
                store_tile(j, P, tile, it->n, it->g, p, q0, tw);
            }
        }
        return;
    }
    for (int kb = 0; kb < nkb; kb++) {
        int k0 = (int)((int64_t)K * kb / nkb), k1 = (int)((int64_t)K * (kb + 1) / nkb);
        for (int t = it->t0; t < it->t1; t++) {
            int q0 = t * j->tw;
            int tw = t < P->nfull ? j->tw : P->tailw;
            const int32_t *ko;
            const float *sq = tile_src(j, P, it, t, &ko);
            for (int p = it->p0; p < it->p1; p++) {
                const float *wb = wg + (size_t)p * j->mr * j->lda;
                float *tb = buf + tsz * ((size_t)(p - it->p0) * (it->t1 - it->t0) + (t - it->t0));
                j->conv(tb, tw, sq, ko + k0, k1 - k0, wb, P->aoff + k0,
                             j->lda, kb > 0);
                if (kb == nkb - 1)
                    store_tile(j, P, tb, it->n, it->g, p, q0, tw);
            }
        }
    }
    fp_free(buf);
}

/* tiles of a phase with flat length L: full tiles of tw, then one tail
 * rounded up to the path's unit */
static void set_tiles(phase_t *P, int64_t L, int tw, int tu)
{
    P->nfull = (int)(L / tw);
    int rem = (int)(L % tw);
    P->tailw = rem ? (rem + tu - 1) / tu * tu : tw;
    P->ntiles = P->nfull + (rem > 0);
}

/* Tiles per item along pixels: with K-blocking, the item's source block
 * (its tiles' rows over one K block) and its panels' weight block stay in
 * L2 (measured: 2, 4 and 8 within noise of each other on VGG-16 and
 * ResNet-50 shapes). */
#ifndef TILES_PER_CHUNK
#define TILES_PER_CHUNK 4
#endif

static int run_job(job_t *j, int nthreads, int nbatch)
{
    int rc = -1;
    nthreads = fp_threads(nthreads);
    /* items */
    int64_t base = 0;
    for (int ph = 0; ph < j->nph; ph++)
        base += (int64_t)nbatch * j->groups *
                ((j->ph[ph].ntiles + TILES_PER_CHUNK - 1) / TILES_PER_CHUNK);
    /* at least ~8 items per thread, so a thread slowed down by another
     * process on its core leaves its share to the others */
    int mch = (j->npanel + PANELS_PER_ITEM - 1) / PANELS_PER_ITEM;
    if (base * mch < 8 * nthreads && nthreads > 1) {
        mch = (int)((8 * nthreads + base - 1) / base);
        if (mch > j->npanel)
            mch = j->npanel;
    }
    int64_t nitems = base * mch;
    j->items = malloc(sizeof(item_t) * (size_t)(nitems > 0 ? nitems : 1));
    if (!j->items)
        goto cleanup;
    int64_t ni = 0;
    /* phases innermost but one: the stride phases of backward-data read the
     * same source rows, so their items run close together (L2/L3 reuse) */
    int ntmax = 0;
    for (int ph = 0; ph < j->nph; ph++)
        if (j->ph[ph].ntiles > ntmax)
            ntmax = j->ph[ph].ntiles;
    for (int n = 0; n < nbatch; n++)
        for (int g = 0; g < j->groups; g++)
            for (int t0 = 0; t0 < ntmax; t0 += TILES_PER_CHUNK)
                for (int ph = 0; ph < j->nph; ph++) {
                    int nt = j->ph[ph].ntiles;
                    if (t0 >= nt)
                        continue;
                    for (int c = 0; c < mch; c++) {
                        item_t *it = &j->items[ni++];
                        it->n = n;
                        it->g = g;
                        it->ph = ph;
                        it->t0 = t0;
                        it->t1 = t0 + TILES_PER_CHUNK < nt ? t0 + TILES_PER_CHUNK : nt;
                        it->p0 = (int)((int64_t)j->npanel * c / mch);
                        it->p1 = (int)((int64_t)j->npanel * (c + 1) / mch);
                    }
            }
    fp_parallel_for(nthreads, ni, compute_item, j);
    rc = 0;
cleanup:
    free(j->items);
    j->items = NULL;
    return rc;
}

/* ---- the sign of an exact zero at the borders ------------------------- */

/* The chains start from -0, so a chain's value is that of its first term and
 * an exact zero is -0 only when every product is -0 (IEEE's rule for a sum).
 * Padding terms (input cells outside the image in the forward, gout cells
 * outside the output in the backward) are evaluated by the kernels, but they
 * are not summands of the sum being computed (the reference never sees
 * them): a padding product +0 * w is +0 for w > 0 and would turn a -0 chain
 * into +0.  It cannot change anything else -- adding a zero to a nonzero
 * accumulator is exact, and once the chain is nonzero again the padding
 * product made no difference -- so only an exact-zero output whose window
 * holds padding can be wrong, and only in its sign.  Such outputs (few:
 * zero, and on the border) are recomputed here by the same chain over the
 * in-range terms only, in the documented order with fmaf (one rounding per
 * step, as every path).  A sum with no term and no bias is the empty sum,
 * +0; with a bias it is -0 + bias = bias. */

static float fwd_chain_inrange(const float *in, const float *w, const float *bias,
                               const lrp_fp_conv_geom *g, int n, int co, int y, int x)
{
    int cig = g->c / g->groups, gr = co / (g->co / g->groups);
    float acc = -0.0f;
    int any = 0;
    for (int ci = 0; ci < cig; ci++)
        for (int ky = 0; ky < g->kh; ky++) {
            int iy = y * g->sh - g->pt + ky * g->dh;
            if (iy < 0 || iy >= g->h)
                continue;
            for (int kx = 0; kx < g->kw; kx++) {
                int ix = x * g->sw - g->pl + kx * g->dw;
                if (ix < 0 || ix >= g->w)
                    continue;
                acc = fmaf(in[(((size_t)n * g->c + (size_t)gr * cig + ci) * g->h + iy) * g->w + ix],
                           w[(((size_t)co * cig + ci) * g->kh + ky) * g->kw + kx], acc);
                any = 1;
            }
        }
    if (!any && !bias)
        acc = 0.0f;
    return bias ? acc + bias[co] : acc;
}

static void fwd_border_zero_signs(float *out, const float *in, const float *w,
                                  const float *bias, const lrp_fp_conv_geom *g, int oh,
                                  int ow)
{
    if (!(g->pt | g->pb | g->pl | g->pr))
        return;
    /* window of output x: columns x*sw - pl + [0, (kw-1)*dw]; all inside
     * for x in [xlo, xhi] */
    int ext_w = (g->kw - 1) * g->dw, ext_h = (g->kh - 1) * g->dh;
    int xlo = (g->pl + g->sw - 1) / g->sw, ylo = (g->pt + g->sh - 1) / g->sh;
    int xhi = g->w - 1 - ext_w + g->pl < 0 ? -1 : (g->w - 1 - ext_w + g->pl) / g->sw;
    int yhi = g->h - 1 - ext_h + g->pt < 0 ? -1 : (g->h - 1 - ext_h + g->pt) / g->sh;
    for (int n = 0; n < g->n; n++)
        for (int co = 0; co < g->co; co++) {
            float *op = out + ((size_t)n * g->co + co) * oh * ow;
            for (int y = 0; y < oh; y++) {
                int row_in = y >= ylo && y <= yhi;
                for (int x = 0; x < ow; x++) {
                    if (row_in && x == xlo && xhi >= xlo)
                        x = xhi + 1; /* skip the interior of the row */
                    if (x >= ow)
                        break;
                    if (op[(size_t)y * ow + x] != 0.0f)
                        continue;
                    op[(size_t)y * ow + x] = fwd_chain_inrange(in, w, bias, g, n, co, y, x);
                }
            }
        }
}

/* 1 if input row (column) i of the backward has a tap of its stride phase
 * that reads outside the output (a padding term) */
static int bwd_axis_pads(int i, int p, int k, int d, int s, int on)
{
    for (int kk = 0; kk < k; kk++) {
        int e = i + p - kk * d;
        if (e % s)
            continue;
        int o = e >= 0 ? e / s : -1;
        if (e < 0 || o >= on)
            return 1;
    }
    return 0;
}

static float bwd_chain_inrange(const float *gout, const float *w, const lrp_fp_conv_geom *g,
                               int oh, int ow, int n, int ci, int iy, int ix)
{
    int cig = g->c / g->groups, cog = g->co / g->groups, gr = ci / cig;
    float acc = -0.0f;
    int any = 0;
    for (int co = gr * cog; co < (gr + 1) * cog; co++)
        for (int ky = 0; ky < g->kh; ky++) {
            int ey = iy + g->pt - ky * g->dh;
            if (ey < 0 || ey % g->sh || ey / g->sh >= oh)
                continue;
            for (int kx = 0; kx < g->kw; kx++) {
                int ex = ix + g->pl - kx * g->dw;
                if (ex < 0 || ex % g->sw || ex / g->sw >= ow)
                    continue;
                acc = fmaf(gout[(((size_t)n * g->co + co) * oh + ey / g->sh) * ow + ex / g->sw],
                           w[(((size_t)co * cig + (ci - gr * cig)) * g->kh + ky) * g->kw + kx],
                           acc);
                any = 1;
            }
        }
    return any ? acc : 0.0f;
}

static int bwd_border_zero_signs(float *gin, const float *gout, const float *w,
                                 const lrp_fp_conv_geom *g, int oh, int ow)
{
    unsigned char *rp = malloc((size_t)g->h + (size_t)g->w);
    if (!rp)
        return -1;
    unsigned char *cp = rp + g->h;
    int any = 0;
    for (int i = 0; i < g->h; i++)
        any |= rp[i] = (unsigned char)bwd_axis_pads(i, g->pt, g->kh, g->dh, g->sh, oh);
    for (int i = 0; i < g->w; i++)
        any |= cp[i] = (unsigned char)bwd_axis_pads(i, g->pl, g->kw, g->dw, g->sw, ow);
    for (int n = 0; n < g->n && any; n++)
        for (int ci = 0; ci < g->c; ci++) {
            float *gp = gin + ((size_t)n * g->c + ci) * g->h * g->w;
            for (int iy = 0; iy < g->h; iy++)
                for (int ix = 0; ix < g->w; ix++) {
                    if (!rp[iy] && !cp[ix])
                        continue;
                    if (gp[(size_t)iy * g->w + ix] != 0.0f)
                        continue;
                    gp[(size_t)iy * g->w + ix] =
                        bwd_chain_inrange(gout, w, g, oh, ow, n, ci, iy, ix);
                }
        }
    free(rp);
    return 0;
}

static int64_t cdiv64(int64_t a, int64_t b) { return (a + b - 1) / b; }

int lrp_fp_conv2d_fwd(float *out, const float *in, const float *w,
                      const float *bias, const lrp_fp_conv_geom *g,
                      int nthreads)
{
    int oh, ow, rc = -1;
    if (lrp_fp_conv_out_hw(g, &oh, &ow) != 0)
        return -1;
    job_t j;
    memset(&j, 0, sizeof j);
    phase_t P;
    memset(&P, 0, sizeof P);
    float *src = NULL, *ws = NULL, *wpad = NULL;
    int wsc = 0;
    j.ops = fp_ops();
    j.mr = j.ops->mr;
    j.tw = j.ops->tw;
    j.groups = g->groups;
    j.m = g->co / g->groups;
    pick_kernel(&j);
    j.cin_g = g->c / g->groups;
    j.csrc = g->c;
    j.kh = g->kh;
    j.kw = g->kw;
    j.kk = g->kh * g->kw;
    j.w = w;
    j.bias = bias;
    j.dst = out;
    j.mtot = g->co;
    j.dh_ = oh;
    j.dw_ = ow;
    j.sy = j.sx = 1;
    j.fwd = 1;
    j.raw = in;
    j.rh = g->h;
    j.rw = g->w;
    j.sh = g->sh;
    j.sw = g->sw;
    j.pt = g->pt;
    j.pl = g->pl;
    int64_t hp = (int64_t)g->h + g->pt + g->pb, wp = (int64_t)g->w + g->pl + g->pr;
    j.hq = (int)cdiv64(hp, g->sh);
    j.wq = (int)cdiv64(wp, g->sw);
    int64_t used = (int64_t)g->sh * g->sw * j.hq * j.wq;
    /* 1x1, stride 1, no padding: the input planes are the source as they are */
    int direct = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 &&
                 g->pb == 0 && g->pl == 0 && g->pr == 0 &&
                 disjoint(out, (size_t)g->n * g->co * oh * ow, in, (size_t)g->n * g->c * g->h * g->w);
    int64_t cs = direct ? used : used + j.wq + 2 * j.tw + 64;
    if (!direct)
        cs = (cs + 15) & ~(int64_t)15;
    int64_t K = (int64_t)j.cin_g * j.kk;
    if (cs * j.cin_g > INT32_MAX || K > INT32_MAX / 2)
        return -1;
    j.cs = (size_t)cs;
    j.npanel = (j.m + j.mr - 1) / j.mr;

    P.K = (int)K;
    P.rows = oh;
    P.cols = ow;
    P.wq = j.wq;
    set_tiles(&P, (int64_t)oh * j.wq, j.tw, j.ops->tu);
    P.koff = malloc(sizeof(int32_t) * (size_t)(K > 0 ? K : 1));
    P.aoff = malloc(sizeof(int32_t) * (size_t)(K > 0 ? K : 1));
    j.ph = &P;
    j.nph = 1;
    size_t wsn = direct ? tail_floats(&j, g->n) : (size_t)g->n * g->c * j.cs;
    ws = fp_ws_acquire(sizeof(float) * (wsn ? wsn : 16), &wsc);
    if (!P.koff || !P.aoff || !ws)
        goto cleanup;
    src = direct ? (float *)in : ws;
    /* weights in place: row m of group g is w + (g*m + m)*K, k = ci*kk + tap */
    int Mp = j.npanel * j.mr;
    j.wsrc = w;
    if (Mp != j.m) {
        wpad = pad_weights(w, g->groups, 1, j.m, Mp, (int)K);
        if (!wpad)
            goto cleanup;
        j.wsrc = wpad;
    }
    j.gstride = (size_t)Mp * (size_t)K;
    j.lda = (ptrdiff_t)K;
    for (int k = 0; k < (int)K; k++)
        P.aoff[k] = k;
    for (int ci = 0; ci < j.cin_g; ci++)
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                int ey = ky * g->dh, ex = kx * g->dw;
                int64_t toff = (int64_t)((ey % g->sh) * g->sw + ex % g->sw) * j.hq * j.wq +
                               (int64_t)(ey / g->sh) * j.wq + ex / g->sw;
                P.koff[(ci * g->kh + ky) * g->kw + kx] = (int32_t)(ci * cs + toff);
            }
    j.src = src;
    int nt = fp_threads(nthreads);
    if (direct) {
        if (direct_setup(&j, g->n, ws) != 0)
            goto cleanup;
        fp_parallel_for(nt, (int64_t)g->n * g->groups, build_tail_item, &j);
    } else {
        build_src(&j, nt, (int64_t)g->n * g->c);
    }
    rc = run_job(&j, nt, g->n);
    if (rc == 0)
        fwd_border_zero_signs(out, in, w, bias, g, oh, ow);
cleanup:
    free(P.koff);
    free(P.aoff);
    free(P.tkoff);
    fp_free(wpad);
    if (ws)
        fp_ws_release(ws, wsc);
    return rc;
}

/* floor division for possibly negative a, b > 0 */
static int fdiv(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

int lrp_fp_conv2d_bwd_data(float *gin, const float *gout, const float *w,
                           const lrp_fp_conv_geom *g, int nthreads)
{
    int oh, ow, rc = -1;
    if (lrp_fp_conv_out_hw(g, &oh, &ow) != 0)
        return -1;
    int sh = g->sh, sw = g->sw;
    int nph = sh * sw;
    if (nph > 64)
        return -1;
    job_t j;
    memset(&j, 0, sizeof j);
    phase_t P[64];
    memset(P, 0, sizeof P);
    float *src = NULL, *ws = NULL, *wpad = NULL;
    int wsc = 0;
    j.ops = fp_ops();
    j.mr = j.ops->mr;
    j.tw = j.ops->tw;
    j.groups = g->groups;
    j.m = g->c / g->groups;       /* gin channels per group */
    pick_kernel(&j);
    j.cin_g = g->co / g->groups;  /* gout channels per group */
    j.csrc = g->co;
    j.kh = g->kh;
    j.kw = g->kw;
    j.kk = g->kh * g->kw;
    j.w = w;
    j.bias = NULL;
    j.dst = gin;
    j.mtot = g->c;
    j.dh_ = g->h;
    j.dw_ = g->w;
    j.sy = sh;
    j.sx = sw;
    j.fwd = 0;
    j.raw = gout;
    j.rh = oh;
    j.rw = ow;
    j.nph = nph;
    j.npanel = (j.m + j.mr - 1) / j.mr;

    /* taps per phase; row shifts dy = (ry + pt - ky*dh)/sh, col shifts dx */
    int tapbuf[64][256];
    int usebuf = j.kk <= 256;
    int *heap_taps = NULL;
    if (!usebuf) {
        heap_taps = malloc(sizeof(int) * (size_t)nph * j.kk);
        if (!heap_taps)
            return -1;
    }
    int PT = 0, PL = 0;
    for (int ry = 0; ry < sh; ry++)
        for (int rx = 0; rx < sw; rx++) {
            int ph = ry * sw + rx;
            int *tp = usebuf ? tapbuf[ph] : heap_taps + (size_t)ph * j.kk;
            int nt = 0;
            for (int ky = 0; ky < g->kh; ky++) {
                int ey = ry + g->pt - ky * g->dh;
                if (ey - fdiv(ey, sh) * sh != 0)
                    continue;
                for (int kx = 0; kx < g->kw; kx++) {
                    int ex = rx + g->pl - kx * g->dw;
                    if (ex - fdiv(ex, sw) * sw != 0)
                        continue;
                    tp[nt++] = ky * g->kw + kx;
                    if (-fdiv(ey, sh) > PT) PT = -fdiv(ey, sh);
                    if (-fdiv(ex, sw) > PL) PL = -fdiv(ex, sw);
                }
            }
            j.taps[ph] = tp;
            j.ntap[ph] = nt;
            P[ph].rows = ry < g->h ? (g->h - ry + sh - 1) / sh : 0;
            P[ph].cols = rx < g->w ? (g->w - rx + sw - 1) / sw : 0;
            P[ph].oy0 = ry;
            P[ph].ox0 = rx;
        }
    int64_t hg = (int64_t)oh + PT, wg = (int64_t)ow + PL;
    for (int ph = 0; ph < nph; ph++)
        for (int t = 0; t < j.ntap[ph]; t++) {
            int ky = j.taps[ph][t] / g->kw, kx = j.taps[ph][t] % g->kw;
            int dy = fdiv(P[ph].oy0 + g->pt - ky * g->dh, sh);
            int dx = fdiv(P[ph].ox0 + g->pl - kx * g->dw, sw);
            if (P[ph].rows + dy + PT > hg) hg = P[ph].rows + dy + PT;
            if (P[ph].cols + dx + PL > wg) wg = P[ph].cols + dx + PL;
        }
    /* 1x1 whose padded gout is gout itself: gout planes are the source */
    int direct = g->kh == 1 && g->kw == 1 && PT == 0 && PL == 0 && hg == oh && wg == ow &&
                 disjoint(gin, (size_t)g->n * g->c * g->h * g->w, gout, (size_t)g->n * g->co * oh * ow);
    /* ... and every tap at shift (0, 0): a shifted tap's flat rows would run
     * past the end of its plane (into the next one, or past the array) */
    for (int ph = 0; ph < nph && direct; ph++)
        for (int t = 0; t < j.ntap[ph]; t++) {
            int ky = j.taps[ph][t] / g->kw, kx = j.taps[ph][t] % g->kw;
            if (fdiv(P[ph].oy0 + g->pt - ky * g->dh, sh) != 0 ||
                fdiv(P[ph].ox0 + g->pl - kx * g->dw, sw) != 0)
                direct = 0;
        }
    int64_t cs = direct ? hg * wg : hg * wg + wg + 2 * j.tw + 64;
    if (!direct)
        cs = (cs + 15) & ~(int64_t)15;
    int Mp = j.npanel * j.mr;
    if (cs * j.cin_g > INT32_MAX || hg > INT32_MAX || wg > INT32_MAX ||
        (int64_t)j.cin_g * Mp * j.kk > INT32_MAX)
        goto cleanup;
    j.cs = (size_t)cs;
    j.hq = (int)hg;
    j.wq = (int)wg;
    j.pt = PT;
    j.pl = PL;
    for (int ph = 0; ph < nph; ph++) {
        int nt = j.ntap[ph];
        int64_t K = (int64_t)j.cin_g * nt;
        P[ph].K = (int)K;
        P[ph].wq = (int)wg;
        set_tiles(&P[ph], (int64_t)P[ph].rows * wg, j.tw, j.ops->tu);
        P[ph].koff = malloc(sizeof(int32_t) * (size_t)(K > 0 ? K : 1));
        P[ph].aoff = malloc(sizeof(int32_t) * (size_t)(K > 0 ? K : 1));
        if (!P[ph].koff || !P[ph].aoff)
            goto cleanup;
        for (int co = 0; co < j.cin_g; co++)
            for (int t = 0; t < nt; t++) {
                int ky = j.taps[ph][t] / g->kw, kx = j.taps[ph][t] % g->kw;
                int dy = fdiv(P[ph].oy0 + g->pt - ky * g->dh, sh);
                int dx = fdiv(P[ph].ox0 + g->pl - kx * g->dw, sw);
                P[ph].koff[co * nt + t] =
                    (int32_t)(co * cs + (int64_t)(dy + PT) * wg + (dx + PL));
                /* weight of (co, tap) for ci = panel*mr + m: w[co][ci][tap],
                 * lanes m are kk floats apart */
                P[ph].aoff[co * nt + t] = (int32_t)((int64_t)co * Mp * j.kk + j.taps[ph][t]);
            }
    }
    /* weights in place: w viewed as [groups][co per group][ci per group][kk] */
    j.wsrc = w;
    if (Mp != j.m) {
        wpad = pad_weights(w, g->groups, j.cin_g, j.m, Mp, j.kk);
        if (!wpad)
            goto cleanup;
        j.wsrc = wpad;
    }
    j.gstride = (size_t)j.cin_g * Mp * j.kk;
    j.lda = j.kk;
    j.ph = P;
    size_t wsn = direct ? tail_floats(&j, g->n) : (size_t)g->n * g->co * j.cs;
    ws = fp_ws_acquire(sizeof(float) * (wsn ? wsn : 16), &wsc);
    if (!ws)
        goto cleanup;
    src = direct ? (float *)gout : ws;
    j.src = src;
    int nt = fp_threads(nthreads);
    if (direct) {
        if (direct_setup(&j, g->n, ws) != 0)
            goto cleanup;
        fp_parallel_for(nt, (int64_t)g->n * g->groups * nph, build_tail_item, &j);
    } else {
        build_src(&j, nt, (int64_t)g->n * g->co);
    }
    rc = run_job(&j, nt, g->n);
    if (rc == 0)
        rc = bwd_border_zero_signs(gin, gout, w, g, oh, ow);
cleanup:
    for (int ph = 0; ph < nph; ph++) {
        free(P[ph].koff);
        free(P[ph].aoff);
        free(P[ph].tkoff);
    }
    fp_free(wpad);
    free(heap_taps);
    if (ws)
        fp_ws_release(ws, wsc);
    return rc;
}
