/*
 * gauge_lin.c -- the gauge's linear-layer sums as im2col / col2im and a
 * blocked binary64 GEMM (gauge_lin.h).
 *
 * GEMM: C (M x ncols) = A (M x K) B (K x ncols), A packed from the weights
 * in panels of MR rows, B packed (for the forward sums straight from the
 * image: im2col never exists whole) in panels of NR columns, K in blocks of
 * KC.  The micro-kernel keeps an MR x NR tile in registers and adds, for
 * k = 0 .. kc-1 in turn, a_k * b_k to it (starting from +0), then adds the
 * tile to C: every element of C is (((0 + block_0) + block_1) + ...), each
 * block summed in k order, whatever the threads.  Vector lanes are
 * different elements of C, never parts of one sum, so the AVX kernel and
 * the portable one give the same bits.
 *
 * Memory is bounded per work item: packed A (MC x KC), packed B (KC x the
 * block's columns) and the block of C (a few MB), never a whole im2col.
 */
#include "gauge_lin.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- threads ---- */

typedef struct par_job {
    void (*fn)(void *arg, int64_t it);
    void *arg;
    int64_t items;
    atomic_llong next;
} par_job;

static void *par_worker(void *p)
{
    par_job *J = p;
    for (;;) {
        long long it = atomic_fetch_add(&J->next, 1);
        if (it >= J->items)
            break;
        J->fn(J->arg, (int64_t)it);
    }
    return NULL;
}

#define PAR_MAX 64

void lrp_gl_par_run(int nt, int64_t items, void (*fn)(void *, int64_t), void *arg)
{
    par_job J = {fn, arg, items, 0};
    pthread_t tid[PAR_MAX];
    int started = 0;
    if (nt > PAR_MAX)
        nt = PAR_MAX;
    for (int t = 1; t < nt && (int64_t)t < items; t++) {
        if (pthread_create(&tid[started], NULL, par_worker, &J) != 0)
            break; /* fewer threads: the caller does the rest */
        started++;
    }
    par_worker(&J);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
}

/* ---- blocking (fixed sizes: the order of every sum depends on them and
 * on the layer's shape only) ---- */

#define MR 4
#define NR 8
#define KC 256
#define MC 128                         /* a multiple of MR */
#define BLOCK_BYTES ((int64_t)4 << 20) /* the block of C of one work item */
#define NB_MAX 256                     /* output pixels per column block */
#define NB_MIN 16
#define ITEMS_WANTED 16                /* work items per call, for balance */

typedef double v4d __attribute__((vector_size(32)));

static double *dalloc(int64_t n)
{
    size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(double);
    bytes = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, bytes);
}

/* ---- the weights ---- */

/* n weights of term t, w[idx0 + q * stride] for q < n, transformed */
static void wrow(const lrp_gl_w *A, int t, int64_t idx0, int64_t stride, int64_t n,
                 double *restrict out)
{
    if (A->wd)
        for (int64_t q = 0; q < n; q++)
            out[q] = A->wd[idx0 + q * stride];
    else
        for (int64_t q = 0; q < n; q++)
            out[q] = (double)A->wf[idx0 + q * stride];
    switch (A->wm[t]) {
    case LRP_WM_POS:
        for (int64_t q = 0; q < n; q++)
            out[q] = out[q] > 0 ? out[q] : 0;
        break;
    case LRP_WM_NEG:
        for (int64_t q = 0; q < n; q++)
            out[q] = out[q] < 0 ? out[q] : 0;
        break;
    case LRP_WM_SQUARE:
        for (int64_t q = 0; q < n; q++)
            out[q] = out[q] * out[q];
        break;
    case LRP_WM_ONES:
        for (int64_t q = 0; q < n; q++)
            out[q] = 1;
        break;
    default: break;
    }
    const double tc = A->tc[t];
    switch (A->op) {
    case LRP_GL_ABS:
        for (int64_t q = 0; q < n; q++)
            out[q] = fabs(tc * out[q]);
        break;
    case LRP_GL_SQUARE:
        for (int64_t q = 0; q < n; q++) {
            double v = tc * out[q];
            out[q] = v * v;
        }
        break;
    default:
        for (int64_t q = 0; q < n; q++)
            out[q] = tc * out[q];
        break;
    }
}

/* ---- the kernel ---- */

static inline __attribute__((always_inline)) void micro(int64_t kc, const double *restrict a,
                                                        const double *restrict b,
                                                        double *restrict c, int64_t ldc,
                                                        int mr, int nr)
{
    v4d c00 = {0, 0, 0, 0}, c01 = c00, c10 = c00, c11 = c00;
    v4d c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    for (int64_t k = 0; k < kc; k++) {
        const v4d b0 = *(const v4d *)(b + NR * k), b1 = *(const v4d *)(b + NR * k + 4);
        const double *ak = a + MR * k;
        c00 += b0 * ak[0];
        c01 += b1 * ak[0];
        c10 += b0 * ak[1];
        c11 += b1 * ak[1];
        c20 += b0 * ak[2];
        c21 += b1 * ak[2];
        c30 += b0 * ak[3];
        c31 += b1 * ak[3];
    }
    double t[MR][NR];
    memcpy(&t[0][0], &c00, sizeof c00);
    memcpy(&t[0][4], &c01, sizeof c01);
    memcpy(&t[1][0], &c10, sizeof c10);
    memcpy(&t[1][4], &c11, sizeof c11);
    memcpy(&t[2][0], &c20, sizeof c20);
    memcpy(&t[2][4], &c21, sizeof c21);
    memcpy(&t[3][0], &c30, sizeof c30);
    memcpy(&t[3][4], &c31, sizeof c31);
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < nr; q++)
            c[r * ldc + q] += t[r][q];
}

/* C (mc x ncols, ldc) += Ap (mc x kc, MR-panels) Bp (kc x ncols, NR-panels) */
#define MACRO_BODY                                                                             \
    for (int64_t jp = 0; jp < ncols; jp += NR) {                                               \
        int nr = ncols - jp < NR ? (int)(ncols - jp) : NR;                                     \
        const double *bp = Bp + (jp / NR) * kc * NR;                                           \
        for (int64_t ip = 0; ip < mc; ip += MR) {                                              \
            int mr = mc - ip < MR ? (int)(mc - ip) : MR;                                       \
            micro(kc, Ap + (ip / MR) * kc * MR, bp, C + ip * ldc + jp, ldc, mr, nr);          \
        }                                                                                      \
    }

__attribute__((target("avx"))) static void macro_avx(int64_t mc, int64_t ncols, int64_t kc,
                                                     const double *Ap, const double *Bp,
                                                     double *C, int64_t ldc)
{
    MACRO_BODY
}

static void macro_portable(int64_t mc, int64_t ncols, int64_t kc, const double *Ap,
                           const double *Bp, double *C, int64_t ldc)
{
    MACRO_BODY
}

static int use_avx = -1, force_portable;

void lrp_gl_force_portable(int on)
{
    __atomic_store_n(&force_portable, on, __ATOMIC_RELAXED);
}

static void macro(int64_t mc, int64_t ncols, int64_t kc, const double *Ap, const double *Bp,
                  double *C, int64_t ldc)
{
    int a = __atomic_load_n(&use_avx, __ATOMIC_RELAXED);
    if (a < 0) {
        __builtin_cpu_init();
        a = __builtin_cpu_supports("avx") ? 1 : 0;
        __atomic_store_n(&use_avx, a, __ATOMIC_RELAXED);
    }
    if (a && !__atomic_load_n(&force_portable, __ATOMIC_RELAXED))
        macro_avx(mc, ncols, kc, Ap, Bp, C, ldc);
    else
        macro_portable(mc, ncols, kc, Ap, Bp, C, ldc);
}

/* ---- geometry ---- */

typedef struct geo {
    int64_t cg, og, khw, HW, HoWo, fanin;
} geo;

static geo geom(const lrp_lin *L)
{
    geo G;
    G.cg = L->C / L->groups;
    G.og = L->O / L->groups;
    G.khw = (int64_t)L->kh * L->kw;
    G.HW = L->H * L->W;
    G.HoWo = L->Ho * L->Wo;
    G.fanin = L->fanin;
    return G;
}

/* ---- forward sums ---- */

typedef struct fwd_job {
    const lrp_lin *L;
    const lrp_gl_w *A;
    geo G;
    int nta, tix[LRP_PIPE_MAX_TERMS]; /* the terms with a source */
    int nsa, six[8];                  /* the outputs with a source */
    int ns;
    const double *const *src;
    double *const *out;
    int64_t nb, nblk, mparts;
    /* token rows (lrp_gl_dense_rows): a Dense over rows x C row-major
     * sources and rows x O row-major outputs, taken as a 1x1 convolution
     * over rows "pixels" (G.HW = G.HoWo = rows) */
    int tok;
    atomic_int fail;
} fwd_job;

/* pack rows k0 .. k0+kc-1 of term t's im2col (group g, output pixels p0 ..
 * p0+nbb-1 of each active source) into NR-panels */
static void pack_b_im2col(const fwd_job *J, double *restrict Bp, int t, int64_t g, int64_t k0,
                          int64_t kc, int64_t p0, int64_t nbb)
{
    const lrp_lin *L = J->L;
    const int64_t ncols = (int64_t)J->nsa * nbb, npan = (ncols + NR - 1) / NR;
    for (int64_t kk = 0; kk < kc; kk++) {
        int64_t k = k0 + kk, ch = g * J->G.cg + k / J->G.khw, r = k % J->G.khw;
        int64_t ky = r / L->kw, kx = r % L->kw;
        for (int s = 0; s < J->nsa; s++) {
            const double *src = J->src[t * J->ns + J->six[s]];
            if (J->tok) {
                for (int64_t q = 0; q < nbb; q++) {
                    int64_t col = (int64_t)s * nbb + q;
                    Bp[(col / NR) * kc * NR + kk * NR + col % NR] =
                        src ? src[(p0 + q) * L->C + ch] : 0;
                }
                continue;
            }
            const double *base = src ? src + ch * J->G.HW : NULL;
            int64_t y = p0 / L->Wo, x = p0 % L->Wo;
            for (int64_t q = 0; q < nbb; q++) {
                int64_t col = (int64_t)s * nbb + q;
                double v = 0;
                if (base) {
                    int64_t iy = y * L->sh - L->pt + ky * L->dh;
                    int64_t ix = x * L->sw - L->pl + kx * L->dw;
                    if (iy >= 0 && iy < L->H && ix >= 0 && ix < L->W)
                        v = base[iy * L->W + ix];
                }
                Bp[(col / NR) * kc * NR + kk * NR + col % NR] = v;
                if (++x == L->Wo) {
                    x = 0;
                    y++;
                }
            }
        }
        for (int64_t col = ncols; col < npan * NR; col++)
            Bp[(col / NR) * kc * NR + kk * NR + col % NR] = 0;
    }
}

/* pack rows m0 .. m0+mc-1 (output channels of group g), weights k0 ..
 * k0+kc-1 of term t, into MR-panels; tmp holds kc values */
static void pack_a_fwd(const fwd_job *J, double *restrict Ap, double *restrict tmp, int t,
                       int64_t g, int64_t m0, int64_t mc, int64_t k0, int64_t kc)
{
    const int64_t npan = (mc + MR - 1) / MR;
    for (int64_t mm = 0; mm < npan * MR; mm++) {
        double *dst = Ap + (mm / MR) * kc * MR + mm % MR;
        if (mm < mc) {
            wrow(J->A, t, (g * J->G.og + m0 + mm) * J->G.fanin + k0, 1, kc, tmp);
            for (int64_t kk = 0; kk < kc; kk++)
                dst[kk * MR] = tmp[kk];
        } else
            for (int64_t kk = 0; kk < kc; kk++)
                dst[kk * MR] = 0;
    }
}

static void fwd_item(void *arg, int64_t it)
{
    fwd_job *J = arg;
    const geo *G = &J->G;
    int64_t g = it / (J->nblk * J->mparts), rest = it % (J->nblk * J->mparts);
    int64_t blk = rest / J->mparts, mp = rest % J->mparts;
    int64_t p0 = blk * J->nb, nbb = G->HoWo - p0 < J->nb ? G->HoWo - p0 : J->nb;
    /* rows of this part, in whole MR panels */
    int64_t pan = (G->og + MR - 1) / MR;
    int64_t m0 = pan * mp / J->mparts * MR, m1 = pan * (mp + 1) / J->mparts * MR;
    if (m1 > G->og)
        m1 = G->og;
    if (m0 >= m1)
        return;
    const int64_t rows = m1 - m0, ncols = (int64_t)J->nsa * nbb;
    const int64_t npan = (ncols + NR - 1) / NR;
    /* the packed blocks as large as this item needs, not MC x KC: on small
     * layers the full-size blocks (256 KB) were most of the gauge's time,
     * in the allocator (under ASan: an mmap, its page faults and an munmap
     * per item) */
    const int64_t kcap = G->fanin < KC ? G->fanin : KC;
    const int64_t mcap = (rows < MC ? (rows + MR - 1) / MR * MR : MC);
    double *Bp = dalloc(kcap * npan * NR), *Ap = dalloc(mcap * kcap), *tmp = dalloc(kcap);
    double *C = dalloc(rows * ncols);
    if (!Bp || !Ap || !tmp || !C) {
        free(Bp), free(Ap), free(tmp), free(C);
        atomic_store(&J->fail, 1);
        return;
    }
    memset(C, 0, (size_t)(rows * ncols) * sizeof *C);
    for (int ti = 0; ti < J->nta; ti++) {
        int t = J->tix[ti];
        for (int64_t k0 = 0; k0 < G->fanin; k0 += KC) {
            int64_t kc = G->fanin - k0 < KC ? G->fanin - k0 : KC;
            pack_b_im2col(J, Bp, t, g, k0, kc, p0, nbb);
            for (int64_t mb = m0; mb < m1; mb += MC) {
                int64_t mc = m1 - mb < MC ? m1 - mb : MC;
                pack_a_fwd(J, Ap, tmp, t, g, mb, mc, k0, kc);
                macro(mc, ncols, kc, Ap, Bp, C + (mb - m0) * ncols, ncols);
            }
        }
    }
    for (int s = 0; s < J->nsa; s++) {
        double *o = J->out[J->six[s]];
        if (J->tok) {
            for (int64_t m = m0; m < m1; m++)
                for (int64_t q = 0; q < nbb; q++)
                    o[(p0 + q) * J->L->O + g * G->og + m] =
                        C[(m - m0) * ncols + (int64_t)s * nbb + q];
            continue;
        }
        for (int64_t m = m0; m < m1; m++)
            memcpy(o + (g * G->og + m) * G->HoWo + p0, C + (m - m0) * ncols + (int64_t)s * nbb,
                   (size_t)nbb * sizeof *o);
    }
    free(Bp), free(Ap), free(tmp), free(C);
}

static int conv_run(const lrp_lin *L, int tok, const lrp_gl_w *A, int ns,
                    const double *const *src, double *const *out, int threads)
{
    fwd_job J;
    memset(&J, 0, sizeof J);
    J.tok = tok;
    J.L = L;
    J.A = A;
    J.G = geom(L);
    J.ns = ns;
    J.src = src;
    J.out = out;
    if (ns > 8)
        return -1;
    const int64_t nout = L->O * J.G.HoWo;
    for (int s = 0; s < ns; s++) {
        int any = 0;
        for (int t = 0; t < A->nt; t++)
            any |= src[t * ns + s] != NULL;
        if (any)
            J.six[J.nsa++] = s;
        else
            memset(out[s], 0, (size_t)nout * sizeof *out[s]);
    }
    for (int t = 0; t < A->nt; t++) {
        int any = 0;
        for (int s = 0; s < ns; s++)
            any |= src[t * ns + s] != NULL;
        if (any)
            J.tix[J.nta++] = t;
    }
    if (J.nsa == 0)
        return 0;
    if (J.nta == 0 || J.G.fanin == 0 || nout == 0) {
        for (int s = 0; s < J.nsa; s++)
            memset(out[J.six[s]], 0, (size_t)nout * sizeof *out[0]);
        return 0;
    }
    /* column blocks: the block of C (og rows) within BLOCK_BYTES */
    int64_t nb = NB_MAX;
    while (nb > NB_MIN && J.G.og * J.nsa * nb * (int64_t)sizeof(double) > BLOCK_BYTES)
        nb /= 2;
    if (nb > J.G.HoWo)
        nb = J.G.HoWo;
    J.nb = nb;
    J.nblk = (J.G.HoWo + nb - 1) / nb;
    int64_t have = L->groups * J.nblk, pan = (J.G.og + MR - 1) / MR;
    J.mparts = 1;
    /* too few column blocks (Dense, small images): split the rows too,
     * down to 8 panels a part (each part redoes the block's im2col) */
    while (have * J.mparts < ITEMS_WANTED && pan / (J.mparts * 2) >= 8)
        J.mparts *= 2;
    lrp_gl_par_run(threads, have * J.mparts, fwd_item, &J);
    return atomic_load(&J.fail) ? -1 : 0;
}

int lrp_gl_conv(const lrp_lin *L, const lrp_gl_w *A, int ns, const double *const *src,
                double *const *out, int threads)
{
    return conv_run(L, 0, A, ns, src, out, threads);
}

/* a Dense's geometry as a 1x1 convolution over rows pixels */
static int rows_geom(lrp_lin *R, const lrp_lin *L, int64_t rows)
{
    if (L->conv || rows < 1)
        return -1;
    *R = *L;
    R->H = R->Ho = rows;
    R->W = R->Wo = 1;
    return 0;
}

int lrp_gl_dense_rows(const lrp_lin *L, int64_t rows, const lrp_gl_w *A, int ns,
                      const double *const *src, double *const *out, int threads)
{
    lrp_lin R;
    if (rows_geom(&R, L, rows))
        return -1;
    return conv_run(&R, rows > 1, A, ns, src, out, threads);
}

/* ---- transposed sums ---- */

typedef struct bwd_job {
    const lrp_lin *L;
    const lrp_gl_w *A;
    geo G;
    int nsa, six[8];
    const double *const *v;
    double *const *out;
    int64_t nb, cr, cparts; /* columns per block, channels per item */
    int tok;                /* token rows, as in fwd_job */
    atomic_int fail;
} bwd_job;

static void bwd_item(void *arg, int64_t it)
{
    bwd_job *J = arg;
    const lrp_lin *L = J->L;
    const geo *G = &J->G;
    int64_t g = it / J->cparts, cp = it % J->cparts;
    int64_t c0 = cp * J->cr, c1 = c0 + J->cr < G->cg ? c0 + J->cr : G->cg;
    if (c0 >= c1)
        return;
    const int64_t rows = (c1 - c0) * G->khw, m0 = c0 * G->khw;
    const int64_t ncmax = (int64_t)J->nsa * J->nb, npmax = (ncmax + NR - 1) / NR;
    /* sized to the item, as in fwd_item */
    const int64_t kcap = G->og < KC ? G->og : KC;
    const int64_t mcap = (rows < MC ? (rows + MR - 1) / MR * MR : MC);
    double *Bp = dalloc(kcap * npmax * NR), *Ap = dalloc(mcap * kcap), *tmp = dalloc(mcap);
    double *C = dalloc(rows * ncmax);
    if (!Bp || !Ap || !tmp || !C) {
        free(Bp), free(Ap), free(tmp), free(C);
        atomic_store(&J->fail, 1);
        return;
    }
    for (int s = 0; s < J->nsa; s++) {
        if (J->tok) {
            for (int64_t p = 0; p < G->HW; p++)
                memset(J->out[J->six[s]] + p * L->C + g * G->cg + c0, 0,
                       (size_t)(c1 - c0) * sizeof(double));
            continue;
        }
        memset(J->out[J->six[s]] + (g * G->cg + c0) * G->HW, 0,
               (size_t)((c1 - c0) * G->HW) * sizeof(double));
    }
    for (int64_t p0 = 0; p0 < G->HoWo; p0 += J->nb) {
        int64_t nbb = G->HoWo - p0 < J->nb ? G->HoWo - p0 : J->nb;
        int64_t ncols = (int64_t)J->nsa * nbb, npan = (ncols + NR - 1) / NR;
        memset(C, 0, (size_t)(rows * ncols) * sizeof *C);
        for (int64_t k0 = 0; k0 < G->og; k0 += KC) {
            int64_t kc = G->og - k0 < KC ? G->og - k0 : KC;
            /* B: the output cells' values of output channels k0.. of group g */
            for (int64_t kk = 0; kk < kc; kk++) {
                for (int s = 0; s < J->nsa; s++) {
                    if (J->tok) {
                        const double *vt = J->v[J->six[s]] + g * G->og + k0 + kk;
                        for (int64_t q = 0; q < nbb; q++) {
                            int64_t col = (int64_t)s * nbb + q;
                            Bp[(col / NR) * kc * NR + kk * NR + col % NR] = vt[(p0 + q) * L->O];
                        }
                        continue;
                    }
                    const double *vs = J->v[J->six[s]] + (g * G->og + k0 + kk) * G->HoWo + p0;
                    for (int64_t q = 0; q < nbb; q++) {
                        int64_t col = (int64_t)s * nbb + q;
                        Bp[(col / NR) * kc * NR + kk * NR + col % NR] = vs[q];
                    }
                }
                for (int64_t col = ncols; col < npan * NR; col++)
                    Bp[(col / NR) * kc * NR + kk * NR + col % NR] = 0;
            }
            for (int64_t mb = 0; mb < rows; mb += MC) {
                int64_t mc = rows - mb < MC ? rows - mb : MC;
                int64_t np = (mc + MR - 1) / MR;
                /* A(m, o) = weight (g og + k0 + kk, m0 + mb + mm) */
                for (int64_t kk = 0; kk < kc; kk++) {
                    wrow(J->A, 0, (g * G->og + k0 + kk) * G->fanin + m0 + mb, 1, mc, tmp);
                    for (int64_t mm = 0; mm < np * MR; mm++)
                        Ap[(mm / MR) * kc * MR + kk * MR + mm % MR] = mm < mc ? tmp[mm] : 0;
                }
                macro(mc, ncols, kc, Ap, Bp, C + mb * ncols, ncols);
            }
        }
        /* col2im: row (c, ky, kx), pixel (y, x) adds into input (c, iy, ix) */
        for (int s = 0; s < J->nsa; s++) {
            double *o = J->out[J->six[s]];
            if (J->tok) { /* 1x1: one add per (row, channel) */
                for (int64_t m = 0; m < rows; m++)
                    for (int64_t q = 0; q < nbb; q++)
                        o[(p0 + q) * L->C + g * G->cg + c0 + m] +=
                            C[m * ncols + (int64_t)s * nbb + q];
                continue;
            }
            for (int64_t m = 0; m < rows; m++) {
                int64_t ch = g * G->cg + c0 + m / G->khw, r = m % G->khw;
                int64_t ky = r / L->kw, kx = r % L->kw;
                double *oc = o + ch * G->HW;
                const double *cm = C + m * ncols + (int64_t)s * nbb;
                int64_t y = p0 / L->Wo, x = p0 % L->Wo;
                for (int64_t q = 0; q < nbb; q++) {
                    int64_t iy = y * L->sh - L->pt + ky * L->dh;
                    int64_t ix = x * L->sw - L->pl + kx * L->dw;
                    if (iy >= 0 && iy < L->H && ix >= 0 && ix < L->W)
                        oc[iy * L->W + ix] += cm[q];
                    if (++x == L->Wo) {
                        x = 0;
                        y++;
                    }
                }
            }
        }
    }
    free(Bp), free(Ap), free(tmp), free(C);
}

static int conv_t_run(const lrp_lin *L, int tok, const lrp_gl_w *A, int ns,
                      const double *const *v, double *const *out, int threads)
{
    bwd_job J;
    memset(&J, 0, sizeof J);
    J.tok = tok;
    J.L = L;
    J.A = A;
    J.G = geom(L);
    J.v = v;
    J.out = out;
    if (ns > 8 || A->nt != 1)
        return -1;
    const int64_t nin = L->C * J.G.HW;
    for (int s = 0; s < ns; s++) {
        if (v[s])
            J.six[J.nsa++] = s;
        else
            memset(out[s], 0, (size_t)nin * sizeof *out[s]);
    }
    if (J.nsa == 0)
        return 0;
    if (J.G.og == 0 || J.G.HoWo == 0) {
        for (int s = 0; s < J.nsa; s++)
            memset(out[J.six[s]], 0, (size_t)nin * sizeof *out[0]);
        return 0;
    }
    int64_t nb = NB_MAX / 2;
    if (nb > J.G.HoWo)
        nb = J.G.HoWo;
    J.nb = nb;
    /* channels per item: the block of C (cr khw rows) within BLOCK_BYTES */
    int64_t rowb = J.G.khw * J.nsa * nb * (int64_t)sizeof(double);
    int64_t cr = BLOCK_BYTES / (rowb > 0 ? rowb : 1);
    if (cr < 1)
        cr = 1;
    if (cr > J.G.cg)
        cr = J.G.cg;
    /* enough items for balance (a part keeps at least 8 row panels) */
    while ((int64_t)L->groups * ((J.G.cg + cr - 1) / cr) < ITEMS_WANTED && cr > 1 &&
           (cr / 2) * J.G.khw >= 8 * MR)
        cr = (cr + 1) / 2;
    J.cr = cr;
    J.cparts = (J.G.cg + cr - 1) / cr;
    lrp_gl_par_run(threads, (int64_t)L->groups * J.cparts, bwd_item, &J);
    return atomic_load(&J.fail) ? -1 : 0;
}

int lrp_gl_conv_t(const lrp_lin *L, const lrp_gl_w *A, int ns, const double *const *v,
                  double *const *out, int threads)
{
    return conv_t_run(L, 0, A, ns, v, out, threads);
}

int lrp_gl_dense_rows_t(const lrp_lin *L, int64_t rows, const lrp_gl_w *A, int ns,
                        const double *const *v, double *const *out, int threads)
{
    lrp_lin R;
    if (rows_geom(&R, L, rows))
        return -1;
    return conv_t_run(&R, rows > 1, A, ns, v, out, threads);
}

/* ---- connectivity ---- */

int lrp_gl_maxprop(const lrp_lin *L, const double *v, double *m, const uint8_t *fl, uint8_t *f)
{
    geo G = geom(L);
    if (!v || !m)
        v = NULL, m = NULL;
    if (!fl || !f)
        fl = NULL, f = NULL;
    if (!v && !fl)
        return 0;
    double *tmax = dalloc(G.HoWo), *wmax = dalloc(G.HW);
    uint8_t *tor = malloc((size_t)(G.HoWo ? G.HoWo : 1)), *wor = malloc((size_t)(G.HW ? G.HW : 1));
    if (!tmax || !wmax || !tor || !wor) {
        free(tmax), free(wmax), free(tor), free(wor);
        return -1;
    }
    for (int64_t g = 0; g < L->groups; g++) {
        /* over the group's output channels, per pixel */
        for (int64_t p = 0; p < G.HoWo; p++) {
            tmax[p] = -INFINITY;
            tor[p] = 0;
        }
        for (int64_t o = g * G.og; o < (g + 1) * G.og; o++)
            for (int64_t p = 0; p < G.HoWo; p++) {
                int64_t j = o * G.HoWo + p;
                if (v && v[j] > tmax[p])
                    tmax[p] = v[j];
                if (fl)
                    tor[p] |= fl[j];
            }
        /* over the windows each input pixel is in */
        for (int64_t q = 0; q < G.HW; q++) {
            wmax[q] = -INFINITY;
            wor[q] = 0;
        }
        for (int64_t y = 0; y < L->Ho; y++)
            for (int64_t x = 0; x < L->Wo; x++) {
                int64_t p = y * L->Wo + x;
                for (int ky = 0; ky < L->kh; ky++) {
                    int64_t iy = y * L->sh - L->pt + (int64_t)ky * L->dh;
                    if (iy < 0 || iy >= L->H)
                        continue;
                    for (int kx = 0; kx < L->kw; kx++) {
                        int64_t ix = x * L->sw - L->pl + (int64_t)kx * L->dw;
                        if (ix < 0 || ix >= L->W)
                            continue;
                        int64_t q = iy * L->W + ix;
                        if (tmax[p] > wmax[q])
                            wmax[q] = tmax[p];
                        wor[q] |= tor[p];
                    }
                }
            }
        for (int64_t ch = g * G.cg; ch < (g + 1) * G.cg; ch++)
            for (int64_t q = 0; q < G.HW; q++) {
                int64_t i = ch * G.HW + q;
                if (v && wmax[q] > m[i])
                    m[i] = wmax[q];
                if (fl)
                    f[i] |= wor[q];
            }
    }
    free(tmax), free(wmax), free(tor), free(wor);
    return 0;
}
