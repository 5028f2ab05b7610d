/*
 * ref_linear.c -- the two accurate ops of the MPFR backend: the linear map
 * forward / denominator and backward (core/pipeline.h lin_fwd, lin_bwd).
 *
 *   fwd: out_j = sum_t c_t sum_i inmod_t(x)_i wmod_t(w)_ij + sum_u c_u bmod_u(b_j)
 *   bwd: out_i = sum_k coef_k sum_t c_t inmod_t(x)_i sum_j wmod_t(w)_ij s_kj
 *
 * Each out value is the exact sum rounded once to p bits (RNDN): the
 * result is the correctly rounded value of the real expression in the
 * stored p-bit operands.  Two kernels give identical bits:
 *
 *  slow (exact products + mpfr_sum): every product is formed exactly in a
 *     temporary with enough bits (c: 24, x: p, w: p (2p for w^2), s: p),
 *     then mpfr_sum rounds the sum once.  Any operands (folded BN weights
 *     are p-bit values).  About 100-200 ns per product.
 *
 *  fast (binary32 weights only, ref_accum.c): a p-bit operand v (x or s)
 *     is split once per tensor into <= 29-bit binary64 pieces
 *     v = 2^scale * sum_q d_q, so w * d_q (24 + 29 bits) is exact in
 *     binary64; the products go into an exact fixed-point accumulator; the
 *     coefficient and the other factor of the backward (c_t inmod_t(x_i))
 *     are applied exactly to the accumulated integer; one rounding at the
 *     end.  Falls back to the slow kernel when a scale would leave the
 *     binary64 range.
 *
 * Work is split across threads by output element (fwd: j, bwd: i); each
 * element is computed by one thread, and exactness makes the bits
 * independent of the thread count anyway.  The sign of an exact zero
 * follows mpfr_sum: -0 iff every summand is -0.
 */
#include "ref_int.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T(t) ((mpfr_ptr)(t))
#define TC(t) ((mpfr_srcptr)(t))

/* ---- receptive fields ---- */

static int64_t out_unit(const lrp_lin *L, int64_t j)
{
    return L->conv ? j / (L->Ho * L->Wo) : j;
}

/* inputs i (sample-local) and weight indices feeding output j */
static int64_t gather_fwd(const lrp_lin *L, int64_t j, int64_t *ii, int64_t *ww)
{
    int64_t m = 0;
    if (!L->conv) {
        for (int64_t i = 0; i < L->n_in; i++) {
            ii[m] = i;
            ww[m++] = j * L->n_in + i;
        }
        return m;
    }
    int64_t o = j / (L->Ho * L->Wo), oy = (j / L->Wo) % L->Ho, ox = j % L->Wo;
    int64_t Cg = L->C / L->groups, Og = L->O / L->groups, g = o / Og;
    for (int64_t cc = 0; cc < Cg; cc++) {
        int64_t c = g * Cg + cc;
        for (int ky = 0; ky < L->kh; ky++) {
            int64_t iy = oy * L->sh - L->pt + (int64_t)ky * L->dh;
            if (iy < 0 || iy >= L->H)
                continue;
            for (int kx = 0; kx < L->kw; kx++) {
                int64_t ix = ox * L->sw - L->pl + (int64_t)kx * L->dw;
                if (ix < 0 || ix >= L->W)
                    continue;
                ii[m] = (c * L->H + iy) * L->W + ix;
                ww[m++] = ((o * Cg + cc) * L->kh + ky) * L->kw + kx;
            }
        }
    }
    return m;
}

/* The receptive field of a conv output whose window lies inside the input
 * (no padding clipped): input offsets relative to the window's corner, in
 * gather_fwd's order (channel, ky, kx); NULL for Dense layers. */
static int64_t *fwd_pattern(const lrp_lin *L)
{
    if (!L->conv)
        return NULL;
    int64_t Cg = L->C / L->groups, n = Cg * L->kh * L->kw, m = 0;
    int64_t *rel = malloc((size_t)(n + 1) * sizeof *rel);
    if (!rel)
        return NULL; /* gather_fwd alone: slower, same lists */
    for (int64_t cc = 0; cc < Cg; cc++)
        for (int ky = 0; ky < L->kh; ky++)
            for (int kx = 0; kx < L->kw; kx++)
                rel[m++] = (cc * L->H + (int64_t)ky * L->dh) * L->W + (int64_t)kx * L->dw;
    return rel;
}

/* gather_fwd's lists, filled from the pattern where the window is
 * interior (the same entries in the same order: two adds per entry
 * instead of the clipped loops), else by gather_fwd. */
static int64_t gather_fwd_pat(const lrp_lin *L, const int64_t *rel, int64_t j, int64_t *ii,
                              int64_t *ww)
{
    if (!rel)
        return gather_fwd(L, j, ii, ww);
    int64_t o = j / (L->Ho * L->Wo), oy = (j / L->Wo) % L->Ho, ox = j % L->Wo;
    int64_t y0 = oy * L->sh - L->pt, x0 = ox * L->sw - L->pl;
    if (y0 < 0 || y0 + (int64_t)(L->kh - 1) * L->dh >= L->H || x0 < 0 ||
        x0 + (int64_t)(L->kw - 1) * L->dw >= L->W)
        return gather_fwd(L, j, ii, ww);
    int64_t Cg = L->C / L->groups, Og = L->O / L->groups, n = Cg * L->kh * L->kw;
    int64_t base = ((o / Og) * Cg * L->H + y0) * L->W + x0, wb = o * n;
    for (int64_t m = 0; m < n; m++) {
        ii[m] = base + rel[m];
        ww[m] = wb + m;
    }
    return n;
}

/* outputs j (sample-local) and weight indices that input i feeds: the
 * first cap of them */
static int64_t gather_bwd_n(const lrp_lin *L, int64_t i, int64_t *jj, int64_t *ww, int64_t cap)
{
    int64_t m = 0;
    if (!L->conv) {
        for (int64_t j = 0; j < L->n_out && j < cap; j++) {
            jj[m] = j;
            ww[m++] = j * L->n_in + i;
        }
        return m;
    }
    int64_t c = i / (L->H * L->W), y = (i / L->W) % L->H, x = i % L->W;
    int64_t Cg = L->C / L->groups, Og = L->O / L->groups, g = c / Cg, cc = c % Cg;
    for (int ky = 0; ky < L->kh; ky++) {
        int64_t t = y + L->pt - (int64_t)ky * L->dh;
        if (t < 0 || t % L->sh)
            continue;
        int64_t oy = t / L->sh;
        if (oy >= L->Ho)
            continue;
        for (int kx = 0; kx < L->kw; kx++) {
            int64_t u = x + L->pl - (int64_t)kx * L->dw;
            if (u < 0 || u % L->sw)
                continue;
            int64_t ox = u / L->sw;
            if (ox >= L->Wo)
                continue;
            for (int64_t o = g * Og; o < (g + 1) * Og; o++) {
                if (m == cap)
                    return m;
                jj[m] = (o * L->Ho + oy) * L->Wo + ox;
                ww[m++] = ((o * Cg + cc) * L->kh + ky) * L->kw + kx;
            }
        }
    }
    return m;
}

static int64_t gather_bwd(const lrp_lin *L, int64_t i, int64_t *jj, int64_t *ww)
{
    return gather_bwd_n(L, i, jj, ww, INT64_MAX);
}

static int64_t bwd_cap(const lrp_lin *L)
{
    if (!L->conv)
        return L->n_out;
    return (L->O / L->groups) * L->kh * L->kw;
}

/* ---- modifiers on MPFR values ---- */

static mpfr_srcptr in_val(mpfr_ptr tmp, int mod, mpfr_srcptr x, int64_t i, const lrp_lin *L)
{
    switch (mod) {
    case LRP_IM_ID: return x;
    case LRP_IM_POS:
        if (mpfr_sgn(x) > 0)
            return x;
        mpfr_set_zero(tmp, 1);
        return tmp;
    case LRP_IM_NEG:
        if (mpfr_sgn(x) < 0)
            return x;
        mpfr_set_zero(tmp, 1);
        return tmp;
    case LRP_IM_ONES: mpfr_set_ui(tmp, 1, MPFR_RNDN); return tmp;
    case LRP_IM_LOW: mpfr_set_flt(tmp, L->low ? L->low[i] : L->low_s, MPFR_RNDN); return tmp;
    case LRP_IM_HIGH: mpfr_set_flt(tmp, L->high ? L->high[i] : L->high_s, MPFR_RNDN); return tmp;
    }
    LRP_ASSERT(0);
    return x;
}

/* tmp has >= 2p bits (squares are exact) */
static mpfr_srcptr w_val(mpfr_ptr tmp, int mod, mpfr_srcptr w)
{
    switch (mod) {
    case LRP_WM_ID: return w;
    case LRP_WM_POS:
        if (mpfr_sgn(w) > 0)
            return w;
        mpfr_set_zero(tmp, 1);
        return tmp;
    case LRP_WM_NEG:
        if (mpfr_sgn(w) < 0)
            return w;
        mpfr_set_zero(tmp, 1);
        return tmp;
    case LRP_WM_SQUARE: mpfr_sqr(tmp, w, MPFR_RNDN); return tmp;
    case LRP_WM_ONES: mpfr_set_ui(tmp, 1, MPFR_RNDN); return tmp;
    }
    LRP_ASSERT(0);
    return w;
}

static mpfr_srcptr b_val(mpfr_ptr tmp, int mod, mpfr_srcptr b)
{
    switch (mod) {
    case LRP_BM_ID: return b;
    case LRP_BM_POS:
    case LRP_BM_NEG: return w_val(tmp, mod == LRP_BM_POS ? LRP_WM_POS : LRP_WM_NEG, b);
    case LRP_BM_SQUARE: mpfr_sqr(tmp, b, MPFR_RNDN); return tmp;
    }
    LRP_ASSERT(0);
    return b;
}

/* ---- jobs ---- */

typedef struct lin_job {
    ref_ctx *cx;
    const lrp_lin *L;
    mpfr_ptr out;
    mpfr_srcptr x;
    const lrp_term *t;
    int nt;
    const lrp_bterm *bt;
    int nb;
    int absval;
    const lrp_bwd_part *parts;
    int np;
    /* fast path */
    const double *xd; /* pieces: per value K doubles, scale per tensor */
    int K;
    long xscale;
    const uint8_t *xnp; /* pieces per value */
    const ref_fx *xfx;  /* integer digits (NULL: not built) */
    const ref_vx *xvx;  /* the same on the vector kernel's grid (NULL: not built) */
    const uint64_t *vw; /* weights for the vector kernel */
    const ref_vx_plan *plan; /* its taps sorted per row (fwd: always with xvx;
                              * bwd NULL: each tile sorts its own) */
    const int64_t *wd;  /* weights for the digit kernel */
    const ref_fx *sfx[LRP_PIPE_MAX_PARTS];
    const ref_vx *svx[LRP_PIPE_MAX_PARTS];
    const double *sd[LRP_PIPE_MAX_PARTS];
    const uint8_t *snp[LRP_PIPE_MAX_PARTS];
    long sscale[LRP_PIPE_MAX_PARTS];
} lin_job;

static void acc_dot(ref_acc *A, const double *xd, const uint8_t *np, int K,
                    const int64_t *ii, const int64_t *ww, int64_t cnt, const float *w32,
                    int wmod, int xsel);

typedef struct scratch {
    int64_t cap;
    int64_t *ii, *ww;
    mpfr_t *prod;
    mpfr_ptr *pp;
    mpfr_t tin, tw, tc, tcc, tws, tsc;
} scratch;

static void scratch_init(scratch *S, int64_t cap, int64_t nprod, mpfr_prec_t pprod,
                         mpfr_prec_t p)
{
    S->cap = cap;
    S->ii = malloc((size_t)(cap + 1) * sizeof *S->ii);
    S->ww = malloc((size_t)(cap + 1) * sizeof *S->ww);
    S->prod = malloc((size_t)(nprod + 1) * sizeof *S->prod);
    S->pp = malloc((size_t)(nprod + 1) * sizeof *S->pp);
    LRP_ASSERT(S->ii && S->ww && S->prod && S->pp);
    for (int64_t q = 0; q <= nprod; q++) {
        mpfr_init2(S->prod[q], pprod);
        S->pp[q] = S->prod[q];
    }
    S->cap = nprod + 1;
    mpfr_init2(S->tin, p < 24 ? 24 : p);
    mpfr_init2(S->tw, 2 * (p < 24 ? 24 : p) + 80); /* squares of wscale * w */
    mpfr_init2(S->tws, (p < 24 ? 24 : p) + 32);    /* wscale * w, exact */
    mpfr_init2(S->tsc, p < 24 ? 24 : p);
    mpfr_init2(S->tc, 24);
    mpfr_init2(S->tcc, 48);
}

static void scratch_free(scratch *S)
{
    for (int64_t q = 0; q < S->cap; q++)
        mpfr_clear(S->prod[q]);
    free(S->prod);
    free(S->pp);
    free(S->ii);
    free(S->ww);
    mpfr_clear(S->tin);
    mpfr_clear(S->tw);
    mpfr_clear(S->tc);
    mpfr_clear(S->tcc);
    mpfr_clear(S->tws);
    mpfr_clear(S->tsc);
}

/* the effective weight (wscale[o] * w when BN-canonized), modified */
static mpfr_srcptr w_eff(scratch *S, const lrp_lin *L, int mod, int64_t widx, int64_t o)
{
    mpfr_srcptr w;
    if (L->wscale || !L->w) {
        /* the weights are read in place from their binary32 originals (the
         * pipeline makes no MPFR copy for this backend): exact at p + 32 */
        mpfr_set_flt(S->tws, L->w32[widx], MPFR_RNDN);
        if (L->wscale)
            mpfr_mul(S->tws, S->tws, TC(L->wscale) + o, MPFR_RNDN); /* exact */
        w = S->tws;
    } else {
        w = TC(L->w) + widx;
    }
    return w_val(S->tw, mod, w);
}

static void fwd_slow(void *arg, lrp_ref_chunks *c)
{
    lin_job *J = arg;
    const lrp_lin *L = J->L;
    mpfr_prec_t p = J->cx->prec;
    scratch S;
    scratch_init(&S, L->fanin, L->fanin * J->nt + J->nb, 4 * p + 200, p);
    mpfr_srcptr Bv = L->b ? TC(L->b) : NULL;
    int64_t lo, hi;
    while (lrp_ref_chunk_next(c, &lo, &hi))
        for (int64_t e = lo; e < hi; e++) {
            int64_t b = e / L->n_out, j = e % L->n_out;
            int64_t cnt = gather_fwd(L, j, S.ii, S.ww), m = 0;
            mpfr_srcptr xs = J->x + b * L->n_in;
            for (int t = 0; t < J->nt; t++) {
                mpfr_set_flt(S.tc, J->t[t].c, MPFR_RNDN);
                for (int64_t q = 0; q < cnt; q++) {
                    mpfr_srcptr xv = in_val(S.tin, J->t[t].in, xs + S.ii[q], S.ii[q], L);
                    mpfr_srcptr wv = w_eff(&S, L, J->t[t].w, S.ww[q], out_unit(L, j));
                    mpfr_mul(S.prod[m], S.tc, xv, MPFR_RNDN);
                    mpfr_mul(S.prod[m], S.prod[m], wv, MPFR_RNDN);
                    if (J->absval)
                        mpfr_abs(S.prod[m], S.prod[m], MPFR_RNDN);
                    m++;
                }
            }
            if (Bv)
                for (int u = 0; u < J->nb; u++) {
                    mpfr_set_flt(S.tc, J->bt[u].c, MPFR_RNDN);
                    mpfr_srcptr bv = b_val(S.tw, J->bt[u].mod, Bv + out_unit(L, j));
                    mpfr_mul(S.prod[m], S.tc, bv, MPFR_RNDN);
                    if (J->absval)
                        mpfr_abs(S.prod[m], S.prod[m], MPFR_RNDN);
                    m++;
                }
            mpfr_sum(J->out + e, S.pp, (unsigned long)m, MPFR_RNDN);
        }
    scratch_free(&S);
}

static void bwd_slow(void *arg, lrp_ref_chunks *c)
{
    lin_job *J = arg;
    const lrp_lin *L = J->L;
    mpfr_prec_t p = J->cx->prec;
    int64_t cap = bwd_cap(L);
    int ntmax = 0;
    for (int k = 0; k < J->np; k++)
        ntmax += J->parts[k].nt;
    scratch S;
    scratch_init(&S, cap, cap * ntmax, 5 * p + 240, p);
    int64_t lo, hi;
    while (lrp_ref_chunk_next(c, &lo, &hi))
        for (int64_t e = lo; e < hi; e++) {
            int64_t b = e / L->n_in, i = e % L->n_in;
            int64_t cnt = gather_bwd(L, i, S.ii, S.ww), m = 0;
            mpfr_srcptr xi = J->x + b * L->n_in + i;
            for (int k = 0; k < J->np; k++) {
                const lrp_bwd_part *P = &J->parts[k];
                mpfr_srcptr s = TC(P->s) + b * L->n_out;
                for (int t = 0; t < P->nt; t++) {
                    mpfr_set_flt(S.tc, P->coef, MPFR_RNDN);
                    mpfr_set_flt(S.tcc, P->t[t].c, MPFR_RNDN);
                    mpfr_mul(S.tcc, S.tcc, S.tc, MPFR_RNDN); /* exact: 48 bits */
                    mpfr_srcptr xv = in_val(S.tin, P->t[t].in, xi, i, L);
                    for (int64_t q = 0; q < cnt; q++) {
                        mpfr_srcptr wv = w_eff(&S, L, P->t[t].w, S.ww[q], out_unit(L, S.ii[q]));
                        mpfr_mul(S.prod[m], S.tcc, xv, MPFR_RNDN);
                        mpfr_mul(S.prod[m], S.prod[m], wv, MPFR_RNDN);
                        mpfr_mul(S.prod[m], S.prod[m], s + S.ii[q], MPFR_RNDN);
                        m++;
                    }
                }
            }
            mpfr_sum(J->out + e, S.pp, (unsigned long)m, MPFR_RNDN);
        }
    scratch_free(&S);
}

/* ---- fast path (binary32 weights): exact accumulation ---- */

static float w32_mod(int mod, float w)
{
    switch (mod) {
    case LRP_WM_ID: return w;
    case LRP_WM_POS: return w > 0.0f ? w : 0.0f;
    case LRP_WM_NEG: return w < 0.0f ? w : 0.0f;
    case LRP_WM_ONES: return 1.0f;
    default: return 0.0f; /* SQUARE handled separately */
    }
}

/* multiplies the exact integer accumulator value by a binary32 factor
 * list and adds it into an exact mpfr term list entry */
static void term_from_z(mpfr_ptr dst, long e, mpz_t z, mpfr_srcptr f1, mpfr_srcptr f2)
{
    size_t bits = mpz_sizeinbase(z, 2) + 2;
    mpfr_prec_t need = (mpfr_prec_t)bits + mpfr_get_prec(f1) + (f2 ? mpfr_get_prec(f2) : 0) + 8;
    if (mpfr_get_prec(dst) < need)
        mpfr_set_prec(dst, need);
    mpfr_set_z_2exp(dst, z, e, MPFR_RNDN); /* exact */
    mpfr_mul(dst, dst, f1, MPFR_RNDN);      /* exact */
    if (f2)
        mpfr_mul(dst, dst, f2, MPFR_RNDN);
}

static void term_from_acc(mpfr_ptr dst, ref_acc *A, long scale, mpz_t z, mpfr_srcptr f1,
                          mpfr_srcptr f2)
{
    long e;
    lrp_ref_acc_get_z(z, &e, A);
    size_t bits = mpz_sizeinbase(z, 2) + 2;
    mpfr_prec_t need = (mpfr_prec_t)bits + mpfr_get_prec(f1) + (f2 ? mpfr_get_prec(f2) : 0) + 8;
    if (mpfr_get_prec(dst) < need)
        mpfr_set_prec(dst, need);
    mpfr_set_z_2exp(dst, z, e + scale, MPFR_RNDN); /* exact */
    mpfr_mul(dst, dst, f1, MPFR_RNDN);             /* exact */
    if (f2)
        mpfr_mul(dst, dst, f2, MPFR_RNDN);
}

/* Sign of an exact zero sum (mpfr_sum's rule): -0 iff every summand is a
 * zero with the sign bit set; any nonzero summand (cancellation) gives +0.
 * Only asked when the exact sum is 0; uses sign bits, no arithmetic. */
static int wmod_sign(const lrp_lin *L, int mod, int64_t widx, int64_t o, int *zero)
{
    float wf = L->w32[widx];
    int sg = signbit(wf) != 0, z = wf == 0.0f;
    if (L->wscale) {
        mpfr_srcptr sc = TC(L->wscale) + o;
        z |= mpfr_zero_p(sc) != 0;
        sg ^= mpfr_signbit(sc) != 0;
    }
    switch (mod) {
    case LRP_WM_ID: *zero = z; return sg;
    case LRP_WM_POS: *zero = z || sg; return 0;
    case LRP_WM_NEG: *zero = z || !sg; return !*zero;
    case LRP_WM_SQUARE: *zero = z; return 0;
    default: *zero = 0; return 0; /* ones */
    }
}

static int zsign_neg_fwd(const lin_job *J, int64_t b, int64_t j, const scratch *S,
                         int64_t cnt, mpfr_ptr tmp)
{
    const lrp_lin *L = J->L;
    mpfr_srcptr xs = J->x + b * L->n_in;
    int any = 0; /* an empty sum is +0 */
    if (J->absval)
        return 0; /* |-0| = +0 */
    for (int t = 0; t < J->nt; t++)
        for (int64_t q = 0; q < cnt; q++) {
            any = 1;
            mpfr_srcptr xv = in_val(tmp, J->t[t].in, xs + S->ii[q], S->ii[q], L);
            int wz, ws = wmod_sign(L, J->t[t].w, S->ww[q], out_unit(L, j), &wz);
            if (!mpfr_zero_p(xv) && !wz)
                return 0;
            if (!((mpfr_signbit(xv) != 0) ^ ws ^ (signbit(J->t[t].c) != 0)))
                return 0;
        }
    if (L->b)
        for (int u = 0; u < J->nb; u++) {
            mpfr_srcptr bv = b_val(tmp, J->bt[u].mod, TC(L->b) + out_unit(L, j));
            if (!mpfr_zero_p(bv))
                return 0;
            if (!((mpfr_signbit(bv) != 0) ^ (signbit(J->bt[u].c) != 0)))
                return 0;
            any = 1;
        }
    return any;
}

static int zsign_neg_bwd(const lin_job *J, int64_t b, int64_t i, const scratch *S,
                         int64_t cnt, mpfr_ptr tmp)
{
    const lrp_lin *L = J->L;
    mpfr_srcptr xi = J->x + b * L->n_in + i;
    int any = 0; /* an empty sum is +0 */
    for (int k = 0; k < J->np; k++) {
        const lrp_bwd_part *P = &J->parts[k];
        mpfr_srcptr s = TC(P->s) + b * L->n_out;
        for (int t = 0; t < P->nt; t++) {
            any |= cnt > 0;
            mpfr_srcptr xv = in_val(tmp, P->t[t].in, xi, i, L);
            int sx = (mpfr_signbit(xv) != 0) ^ (signbit(P->coef) != 0) ^
                     (signbit(P->t[t].c) != 0);
            for (int64_t q = 0; q < cnt; q++) {
                int wz, ws = wmod_sign(L, P->t[t].w, S->ww[q], out_unit(L, S->ii[q]), &wz);
                mpfr_srcptr sj = s + S->ii[q];
                if (!mpfr_zero_p(xv) && !wz && !mpfr_zero_p(sj))
                    return 0;
                if (!(sx ^ ws ^ (mpfr_signbit(sj) != 0)))
                    return 0;
            }
        }
    }
    return any;
}

/* w^2 (48 bits) as hi + lo, 24 bits each (Veltkamp, s = 29), so that a
 * 29-bit piece times either half is exact in binary64. */
static void split_sq(double *hi, double *lo, float w)
{
    double w2 = (double)w * w;
    double c = w2 * 536870913.0; /* 2^29 + 1 */
    *hi = c - (c - w2);
    *lo = w2 - *hi;
}

/* The vector kernel's tile at output e: outputs e .. e + nl - 1 of one
 * row of one map of one sample (stride 1 along x: output e + l reads, tap
 * for tap, output e's input + l through the same weight, where that input
 * is inside the row).  0: no tile starts at e. */
static int fwd_tile(const lrp_lin *L, int64_t e, int64_t hi)
{
    int64_t ox = (e % L->n_out) % L->Wo, nl = L->Wo - ox;
    nl = nl < 8 ? nl : 8;
    nl = nl < hi - e ? nl : hi - e;
    return nl >= 2 ? (int)nl : 0;
}

/* the lane mask of nl lanes whose position x + l lies in [0, n) */
static uint8_t lane_mask(int64_t x, int nl, int64_t n)
{
    int64_t a = x < 0 ? -x : 0, b = n - x < nl ? n - x : nl;
    if (a >= b)
        return 0;
    return (uint8_t)(((1u << b) - 1) & ~((1u << a) - 1));
}

/* The vector kernel's tile at input e (bwd): inputs e .. e + nl - 1 of one
 * row of one channel of one sample (stride 1: input e + l feeds output o
 * + l through the weight by which e feeds o).  0: none at e. */
static int bwd_tile(const lrp_lin *L, int64_t e, int64_t hi)
{
    int64_t x = (e % L->n_in) % L->W, nl = L->W - x;
    nl = nl < 8 ? nl : 8;
    nl = nl < hi - e ? nl : hi - e;
    return nl >= 2 ? (int)nl : 0;
}

static int64_t tile_taps_bwd(const lrp_lin *L, int64_t i, int nl, int64_t *jj, int64_t *ww,
                             uint8_t *mk)
{
    int64_t c = i / (L->H * L->W), y = (i / L->W) % L->H, x = i % L->W;
    int64_t Cg = L->C / L->groups, Og = L->O / L->groups, g = c / Cg, cc = c % Cg, m = 0;
    for (int ky = 0; ky < L->kh; ky++) {
        int64_t t = y + L->pt - (int64_t)ky * L->dh;
        if (t < 0 || t % L->sh)
            continue;
        int64_t oy = t / L->sh;
        if (oy >= L->Ho)
            continue;
        for (int kx = 0; kx < L->kw; kx++) {
            int64_t u = x + L->pl - (int64_t)kx * L->dw;
            uint8_t lm = lane_mask(u, nl, L->Wo);
            if (!lm)
                continue;
            for (int64_t o = g * Og; o < (g + 1) * Og; o++) {
                jj[m] = (o * L->Ho + oy) * L->Wo + u;
                ww[m] = ((o * Cg + cc) * L->kh + ky) * L->kw + kx;
                mk[m++] = lm;
            }
        }
    }
    return m;
}

/* A term the digit kernel sums (inputs x / x+ / x-, weights w / w+ / w-) */
static int fx_term(int in, int w)
{
    return (in == LRP_IM_ID || in == LRP_IM_POS || in == LRP_IM_NEG) &&
           (w == LRP_WM_ID || w == LRP_WM_POS || w == LRP_WM_NEG);
}

/* the weight modifier the digit kernel applies for output j: pos(sc w) =
 * sc neg(w) for a BN-folded scale sc < 0 (the factor sc comes after) */
static int fwd_wm(const lin_job *J, const lrp_term *tt, int64_t j)
{
    int wm = tt->w;
    if (J->L->wscale && wm != LRP_WM_ID &&
        mpfr_signbit(TC(J->L->wscale) + out_unit(J->L, j)))
        wm = wm == LRP_WM_POS ? LRP_WM_NEG : LRP_WM_POS;
    return wm;
}

static int xsel_of(int in)
{
    return in == LRP_IM_POS ? 1 : in == LRP_IM_NEG ? -1 : 0;
}

/* A tile's sums, computed by the vector kernel for each lane and term */
typedef struct lane_sums {
    int nl;
    int have[LRP_PIPE_MAX_PARTS * LRP_PIPE_MAX_TERMS];
    long ez[8][LRP_PIPE_MAX_PARTS * LRP_PIPE_MAX_TERMS];
    mpz_t z[8][LRP_PIPE_MAX_PARTS * LRP_PIPE_MAX_TERMS];
    ref_fxacc *FA[8];
    ref_vx_scratch vs;
    int64_t *ii, *ww; /* the tile's taps when it sorts its own (NULL: a plan) */
    uint8_t *mk;
    uint8_t *tab; /* a clipped tile's lanes by kernel position */
} lane_sums;

/* cap: taps a tile sorts itself (0: the tiles use a plan); nk: kernel
 * positions */
static int lane_sums_init(lane_sums *T, const ref_fx *f, int64_t cap, int64_t nk)
{
    memset(T, 0, sizeof *T);
    int ok = 1;
    if (cap) {
        ok = lrp_ref_vx_scratch(&T->vs, cap);
        T->ii = malloc((size_t)(cap + 1) * sizeof *T->ii);
        T->ww = malloc((size_t)(cap + 1) * sizeof *T->ww);
        T->mk = malloc((size_t)(cap + 1));
        ok &= T->ii && T->ww && T->mk;
    }
    T->tab = malloc((size_t)(nk + 1));
    ok &= T->tab != NULL;
    for (int l = 0; l < 8; l++) {
        T->FA[l] = lrp_ref_fxacc_new(f->nlev + LRP_REF_VX_KEYS);
        ok &= T->FA[l] != NULL;
        for (int t = 0; t < LRP_PIPE_MAX_PARTS * LRP_PIPE_MAX_TERMS; t++)
            mpz_init(T->z[l][t]);
    }
    return ok;
}

static void lane_sums_free(lane_sums *T)
{
    lrp_ref_vx_scratch_free(&T->vs);
    free(T->ii);
    free(T->ww);
    free(T->mk);
    free(T->tab);
    for (int l = 0; l < 8; l++) {
        lrp_ref_fxacc_free(T->FA[l]);
        for (int t = 0; t < LRP_PIPE_MAX_PARTS * LRP_PIPE_MAX_TERMS; t++)
            mpz_clear(T->z[l][t]);
    }
}

/* the lanes' exact sums of slot t by the vector kernel */
static void lane_dot(lane_sums *T, int t, const ref_vx *v, const ref_fx *f, int64_t off,
                     const lane_sums *taps, int64_t cnt, const uint64_t *vw, const int64_t *wd,
                     int wm, int xsel, int absval)
{
    for (int l = 0; l < T->nl; l++)
        lrp_ref_fxacc_clear(T->FA[l]);
    lrp_ref_vx_dot(T->FA, T->nl, v, f, off, taps->ii, taps->ww, taps->mk, cnt, vw, wd, wm, xsel,
                   absval, &T->vs);
    for (int l = 0; l < T->nl; l++)
        lrp_ref_fxacc_get_z(T->z[l][t], &T->ez[l][t], T->FA[l], f);
    T->have[t] = 1;
}

/* the same from the layer's plan (row r); tab: the lanes of each kernel
 * position at a tile the edges clip (NULL: none clipped) */
static void lane_dot_plan(lane_sums *T, int t, const ref_vx *v, const ref_fx *f, int64_t base,
                          const ref_vx_plan *plan, int64_t r, const uint8_t *tab,
                          const int64_t *wd, int wm, int xsel, int absval)
{
    for (int l = 0; l < T->nl; l++)
        lrp_ref_fxacc_clear(T->FA[l]);
    lrp_ref_vx_dot_plan(T->FA, T->nl, v, f, base, plan, r, tab, wd, wm, xsel, absval);
    for (int l = 0; l < T->nl; l++)
        lrp_ref_fxacc_get_z(T->z[l][t], &T->ez[l][t], T->FA[l], f);
    T->have[t] = 1;
}

/* fwd tile (j, nl): the corner of its windows (lane 0's; it may lie
 * outside the input), the index the plan's offsets start from.  Returns 1
 * and fills tab (ky kw + kx: the lanes whose input at that kernel position
 * lies inside the input) when an edge clips a window; 0 otherwise. */
static int fwd_corner(const lrp_lin *L, int64_t j, int nl, int64_t *corner, uint8_t *tab)
{
    int64_t o = j / (L->Ho * L->Wo), oy = (j / L->Wo) % L->Ho, ox = j % L->Wo;
    int64_t y0 = oy * L->sh - L->pt, x0 = ox - L->pl;
    int64_t Cg = L->C / L->groups, Og = L->O / L->groups;
    *corner = ((o / Og) * Cg * L->H + y0) * L->W + x0;
    if (y0 >= 0 && y0 + (int64_t)(L->kh - 1) * L->dh < L->H && x0 >= 0 &&
        x0 + nl - 1 + (int64_t)(L->kw - 1) * L->dw < L->W)
        return 0;
    for (int ky = 0; ky < L->kh; ky++) {
        int64_t iy = y0 + (int64_t)ky * L->dh;
        for (int kx = 0; kx < L->kw; kx++)
            tab[ky * L->kw + kx] =
                iy < 0 || iy >= L->H ? 0 : lane_mask(x0 + (int64_t)kx * L->dw, nl, L->W);
    }
    return 1;
}

/* the same for bwd tile (i, nl) (stride 1 both ways): the output index
 * of lane 0's window corner, tab by the outputs inside the output */
static int bwd_corner(const lrp_lin *L, int64_t i, int nl, int64_t *corner, uint8_t *tab)
{
    int64_t c = i / (L->H * L->W), y = (i / L->W) % L->H, x = i % L->W;
    int64_t oy0 = y + L->pt, ox0 = x + L->pl;
    int64_t Cg = L->C / L->groups, Og = L->O / L->groups;
    *corner = ((c / Cg) * Og * L->Ho + oy0) * L->Wo + ox0;
    if (oy0 - (int64_t)(L->kh - 1) * L->dh >= 0 && oy0 < L->Ho &&
        ox0 - (int64_t)(L->kw - 1) * L->dw >= 0 && ox0 + nl - 1 < L->Wo)
        return 0;
    for (int ky = 0; ky < L->kh; ky++) {
        int64_t oy = oy0 - (int64_t)ky * L->dh;
        for (int kx = 0; kx < L->kw; kx++)
            tab[ky * L->kw + kx] =
                oy < 0 || oy >= L->Ho ? 0 : lane_mask(ox0 - (int64_t)kx * L->dw, nl, L->Wo);
    }
    return 1;
}

/* The plans: fwd, a row an output map (the window pattern, weights o's);
 * bwd, a row an input channel (outputs o of its group at the window's
 * rows and columns, weights (o, c)).  0: not built (no memory). */
static int plan_fwd(ref_vx_plan *p, const lrp_lin *L, const uint64_t *vw)
{
    int64_t Cg = L->C / L->groups, n = Cg * L->kh * L->kw;
    int64_t *rel = malloc((size_t)(n + 1) * sizeof *rel);
    int64_t *wi = malloc((size_t)(n + 1) * sizeof *wi);
    uint16_t *k = malloc((size_t)(n + 1) * sizeof *k);
    int ok = rel && wi && k && lrp_ref_vx_plan_new(p, L->O, n);
    if (ok) {
        int64_t m = 0;
        for (int64_t cc = 0; cc < Cg; cc++)
            for (int ky = 0; ky < L->kh; ky++)
                for (int kx = 0; kx < L->kw; kx++) {
                    k[m] = (uint16_t)(ky * L->kw + kx);
                    rel[m++] = (cc * L->H + (int64_t)ky * L->dh) * L->W + (int64_t)kx * L->dw;
                }
        for (int64_t o = 0; o < L->O; o++) {
            for (int64_t q = 0; q < n; q++)
                wi[q] = o * n + q;
            lrp_ref_vx_plan_row(p, o, rel, wi, k, vw);
        }
    }
    free(rel);
    free(wi);
    free(k);
    return ok;
}

static int plan_bwd(ref_vx_plan *p, const lrp_lin *L, const uint64_t *vw)
{
    int64_t Cg = L->C / L->groups, Og = L->O / L->groups, n = Og * L->kh * L->kw;
    int64_t *rel = malloc((size_t)(n + 1) * sizeof *rel);
    int64_t *wi = malloc((size_t)(n + 1) * sizeof *wi);
    uint16_t *k = malloc((size_t)(n + 1) * sizeof *k);
    int ok = rel && wi && k && lrp_ref_vx_plan_new(p, L->C, n);
    for (int64_t c = 0; ok && c < L->C; c++) {
        int64_t g = c / Cg, cc = c % Cg, m = 0;
        for (int ky = 0; ky < L->kh; ky++)
            for (int kx = 0; kx < L->kw; kx++)
                for (int64_t oo = 0; oo < Og; oo++) {
                    int64_t o = g * Og + oo;
                    k[m] = (uint16_t)(ky * L->kw + kx);
                    rel[m] = (oo * L->Ho - (int64_t)ky * L->dh) * L->Wo - (int64_t)kx * L->dw;
                    wi[m++] = ((o * Cg + cc) * L->kh + ky) * L->kw + kx;
                }
        lrp_ref_vx_plan_row(p, c, rel, wi, k, vw);
    }
    free(rel);
    free(wi);
    free(k);
    return ok;
}

typedef struct fwd_tls {
    scratch S;
    ref_acc *A;
    ref_fxacc *FA;
    mpz_t z;
    mpfr_t fc;
    int64_t *pat;
} fwd_tls;

/* output element e; a term's digit-kernel sum from lane l of T when T
 * has it */
static void fwd_elem(const lin_job *J, fwd_tls *W, int64_t e, const lane_sums *T, int l)
{
    const lrp_lin *L = J->L;
    mpfr_prec_t p = J->cx->prec;
    scratch *S = &W->S;
    ref_acc *A = W->A;
    ref_fxacc *FA = W->FA;
    const int K = J->K;
    int64_t b = e / L->n_out, j = e % L->n_out;
    int64_t cnt = -1, m = 0; /* the taps are gathered when a sum needs them */
#define GATHER() (cnt < 0 ? (cnt = gather_fwd_pat(L, W->pat, j, S->ii, S->ww)) : cnt)
    const double *xd = J->xd ? J->xd + b * L->n_in * K : NULL;
    for (int t = 0; t < J->nt; t++) {
        const lrp_term *tt = &J->t[t];
        if (FA && fx_term(tt->in, tt->w)) {
            long ez;
            mpz_srcptr zz = W->z;
            mpfr_srcptr scf = NULL;
            if (L->wscale) {
                scf = TC(L->wscale) + out_unit(L, j);
                if (J->absval) {
                    mpfr_abs(S->tsc, scf, MPFR_RNDN);
                    scf = S->tsc;
                }
            }
            if (T && T->have[t]) {
                zz = T->z[l][t];
                ez = T->ez[l][t];
            } else {
                lrp_ref_fxacc_clear(FA);
                lrp_ref_fxacc_dot(FA, J->xfx, b * L->n_in, S->ii, S->ww, GATHER(), J->wd,
                                  fwd_wm(J, tt, j), xsel_of(tt->in), J->absval);
                lrp_ref_fxacc_get_z(W->z, &ez, FA, J->xfx);
            }
            mpfr_set_flt(W->fc, J->absval && tt->c < 0 ? -tt->c : tt->c, MPFR_RNDN);
            term_from_z(S->prod[m++], ez, (mpz_ptr)zz, W->fc, scf);
            continue;
        }
        GATHER();
        lrp_ref_acc_clear(A);
        long scale = J->xscale;
        if ((tt->in == LRP_IM_ID || tt->in == LRP_IM_POS || tt->in == LRP_IM_NEG) &&
            tt->w != LRP_WM_SQUARE && tt->w != LRP_WM_ONES && !J->absval) {
            acc_dot(A, xd, J->xnp + b * L->n_in, K, S->ii, S->ww, cnt, L->w32, tt->w,
                    xsel_of(tt->in));
        } else if (tt->in == LRP_IM_ID || tt->in == LRP_IM_POS || tt->in == LRP_IM_NEG) {
            for (int64_t q = 0; q < cnt; q++) {
                const double *d = xd + S->ii[q] * K;
                if (tt->in != LRP_IM_ID) {
                    /* pos / neg: keep the value only with the right sign */
                    int neg = d[0] < 0;
                    if (d[0] == 0 || neg != (tt->in == LRP_IM_NEG))
                        continue;
                }
                float wf = L->w32[S->ww[q]];
                double w = tt->w == LRP_WM_SQUARE ? 0 : (double)w32_mod(tt->w, wf);
                if (tt->w == LRP_WM_SQUARE) {
                    /* x * w^2: w^2 has 48 bits; split it in two 24-bit halves */
                    double hi2, lo2;
                    split_sq(&hi2, &lo2, wf);
                    if (J->absval && d[0] < 0) {
                        hi2 = -hi2;
                        lo2 = -lo2;
                    }
                    for (int k = 0; k < K && d[k] != 0; k++) {
                        lrp_ref_acc_add(A, d[k] * hi2);
                        lrp_ref_acc_add(A, d[k] * lo2);
                    }
                    continue;
                }
                if (w == 0)
                    continue;
                if (J->absval) {
                    w = w < 0 ? -w : w;
                    for (int k = 0; k < K && d[k] != 0; k++)
                        lrp_ref_acc_add(A, d[0] < 0 ? -(d[k] * w) : d[k] * w);
                } else {
                    for (int k = 0; k < K && d[k] != 0; k++)
                        lrp_ref_acc_add(A, d[k] * w);
                }
            }
        } else {
            /* binary32 inputs (ones, bounds): products exact in binary64 */
            scale = 0;
            for (int64_t q = 0; q < cnt; q++) {
                int64_t i = S->ii[q];
                double xv = tt->in == LRP_IM_ONES  ? 1.0
                            : tt->in == LRP_IM_LOW ? (double)(L->low ? L->low[i] : L->low_s)
                                                   : (double)(L->high ? L->high[i] : L->high_s);
                float wf = L->w32[S->ww[q]];
                if (tt->w == LRP_WM_SQUARE) {
                    double hi2, lo2;
                    split_sq(&hi2, &lo2, wf);
                    double a1 = xv * hi2, a2 = xv * lo2;
                    if (J->absval && xv < 0) {
                        a1 = -a1;
                        a2 = -a2;
                    }
                    lrp_ref_acc_add(A, a1);
                    lrp_ref_acc_add(A, a2);
                    continue;
                }
                double pr = xv * (double)w32_mod(tt->w, wf);
                lrp_ref_acc_add(A, J->absval && pr < 0 ? -pr : pr);
            }
        }
        mpfr_set_flt(W->fc, J->absval && tt->c < 0 ? -tt->c : tt->c, MPFR_RNDN);
        term_from_acc(S->prod[m++], A, scale, W->z, W->fc, NULL);
    }
    if (L->b)
        for (int u = 0; u < J->nb; u++) {
            mpfr_set_flt(S->tc, J->bt[u].c, MPFR_RNDN);
            mpfr_srcptr bv = b_val(S->tw, J->bt[u].mod, TC(L->b) + out_unit(L, j));
            if (mpfr_get_prec(S->prod[m]) < 3 * p + 80)
                mpfr_set_prec(S->prod[m], 3 * p + 80);
            mpfr_mul(S->prod[m], S->tc, bv, MPFR_RNDN);
            if (J->absval)
                mpfr_abs(S->prod[m], S->prod[m], MPFR_RNDN);
            m++;
        }
    mpfr_sum(J->out + e, S->pp, (unsigned long)m, MPFR_RNDN);
    if (mpfr_zero_p(J->out + e)) {
        GATHER();
        mpfr_set_zero(J->out + e, zsign_neg_fwd(J, b, j, S, cnt, S->tin) ? -1 : 1);
    }
#undef GATHER
}

static void fwd_fast(void *arg, lrp_ref_chunks *c)
{
    lin_job *J = arg;
    const lrp_lin *L = J->L;
    mpfr_prec_t p = J->cx->prec;
    fwd_tls W;
    scratch_init(&W.S, L->fanin, J->nt + J->nb, 3 * p + 80, p);
    W.A = lrp_ref_acc_new();
    W.FA = J->xfx ? lrp_ref_fxacc_new(J->xfx->nlev) : NULL;
    mpz_init(W.z);
    mpfr_init2(W.fc, 24);
    LRP_ASSERT(!J->xfx || W.FA);
    W.pat = fwd_pattern(L);
    /* the vector kernel: the digit kernel's terms */
    lane_sums *T = NULL;
    if (J->xvx && J->nt <= LRP_PIPE_MAX_TERMS) {
        T = malloc(sizeof *T);
        LRP_ASSERT(T && lane_sums_init(T, J->xfx, 0, (int64_t)L->kh * L->kw));
    }
    int64_t lo, hi;
    while (lrp_ref_chunk_next(c, &lo, &hi))
        for (int64_t e = lo; e < hi;) {
            int nl = T ? fwd_tile(L, e, hi) : 0;
            if (!nl) {
                fwd_elem(J, &W, e++, NULL, 0);
                continue;
            }
            int64_t b = e / L->n_out, j = e % L->n_out;
            int64_t corner;
            int clipped = fwd_corner(L, j, nl, &corner, T->tab);
            T->nl = nl;
            for (int t = 0; t < J->nt; t++) {
                const lrp_term *tt = &J->t[t];
                T->have[t] = 0;
                if (fx_term(tt->in, tt->w))
                    lane_dot_plan(T, t, J->xvx, J->xfx, b * L->n_in + corner, J->plan,
                                  out_unit(L, j), clipped ? T->tab : NULL, J->wd, fwd_wm(J, tt, j),
                                  xsel_of(tt->in), J->absval);
            }
            for (int l = 0; l < nl; l++)
                fwd_elem(J, &W, e + l, T, l);
            e += nl;
        }
    if (T) {
        lane_sums_free(T);
        free(T);
    }
    mpfr_clear(W.fc);
    mpz_clear(W.z);
    lrp_ref_acc_free(W.A);
    lrp_ref_fxacc_free(W.FA);
    scratch_free(&W.S);
    free(W.pat);
}

typedef struct bwd_tls {
    scratch S;
    ref_acc *A;
    ref_fxacc *FA[LRP_PIPE_MAX_PARTS];
    mpz_t z;
    mpfr_t fcc;
} bwd_tls;

/* input element e; a term's digit-kernel sum from lane l of T when T has it */
static void bwd_elem(const lin_job *J, bwd_tls *Wt, int64_t e, const lane_sums *T, int l)
{
    const lrp_lin *L = J->L;
    scratch *S = &Wt->S;
    ref_acc *A = Wt->A;
    ref_fxacc *const *FA = Wt->FA;
    mpz_ptr z = Wt->z;
    mpfr_ptr fcc = Wt->fcc;
    const int K = J->K;
    int64_t b = e / L->n_in, i = e % L->n_in;
    int64_t cnt = -1, m = 0; /* the taps are gathered when a sum needs them */
#define GATHER() (cnt < 0 ? (cnt = gather_bwd(L, i, S->ii, S->ww)) : cnt)
    mpfr_srcptr xi = J->x + b * L->n_in + i;
    for (int k = 0; k < J->np; k++) {
        const lrp_bwd_part *P = &J->parts[k];
        const double *sd = J->sd[k] ? J->sd[k] + b * L->n_out * K : NULL;
        for (int t = 0; t < P->nt; t++) {
            const lrp_term *tt = &P->t[t];
            mpfr_srcptr xv = in_val(S->tin, tt->in, xi, i, L);
            if (mpfr_zero_p(xv))
                continue; /* zero factor: sign settled below if needed */
            if (FA[k] && (tt->w == LRP_WM_ID || tt->w == LRP_WM_POS || tt->w == LRP_WM_NEG)) {
                long ez;
                mpz_srcptr zz = z;
                int slot = k * LRP_PIPE_MAX_TERMS + t;
                if (T && T->have[slot]) {
                    zz = T->z[l][slot];
                    ez = T->ez[l][slot];
                } else {
                    lrp_ref_fxacc_clear(FA[k]);
                    lrp_ref_fxacc_dot(FA[k], J->sfx[k], b * L->n_out, S->ii, S->ww, GATHER(),
                                      J->wd, tt->w, 0, 0);
                    lrp_ref_fxacc_get_z(z, &ez, FA[k], J->sfx[k]);
                }
                mpfr_set_flt(fcc, P->coef, MPFR_RNDN);
                mpfr_mul_d(fcc, fcc, (double)tt->c, MPFR_RNDN); /* exact, 48 bits */
                term_from_z(S->prod[m], ez, (mpz_ptr)zz, fcc, xv);
                m++;
                continue;
            }
            GATHER();
            lrp_ref_acc_clear(A);
            if (tt->w == LRP_WM_ID || tt->w == LRP_WM_POS || tt->w == LRP_WM_NEG)
                acc_dot(A, sd, J->snp[k] + b * L->n_out, K, S->ii, S->ww, cnt, L->w32,
                        tt->w, 0);
            else
            for (int64_t q = 0; q < cnt; q++) {
                const double *d = sd + S->ii[q] * K;
                float wf = L->w32[S->ww[q]];
                if (tt->w == LRP_WM_SQUARE) {
                    double hi2, lo2;
                    split_sq(&hi2, &lo2, wf);
                    for (int kk = 0; kk < K && d[kk] != 0; kk++) {
                        lrp_ref_acc_add(A, d[kk] * hi2);
                        lrp_ref_acc_add(A, d[kk] * lo2);
                    }
                    continue;
                }
                double w = (double)w32_mod(tt->w, wf);
                if (w == 0)
                    continue;
                for (int kk = 0; kk < K && d[kk] != 0; kk++)
                    lrp_ref_acc_add(A, d[kk] * w);
            }
            mpfr_set_flt(fcc, P->coef, MPFR_RNDN);
            mpfr_mul_d(fcc, fcc, (double)tt->c, MPFR_RNDN); /* exact, 48 bits */
            term_from_acc(S->prod[m], A, J->sscale[k], z, fcc, xv);
            m++;
        }
    }
    mpfr_sum(J->out + e, S->pp, (unsigned long)m, MPFR_RNDN);
    if (mpfr_zero_p(J->out + e)) {
        /* -0 only when every summand is -0: the first taps nearly always
         * show one that is not (a ReLU zero's +0 times a weight and a
         * quotient of the same sign), without the whole fan-out */
        int neg = 1;
        if (cnt < 0) {
            int64_t c0 = gather_bwd_n(L, i, S->ii, S->ww, 16);
            neg = zsign_neg_bwd(J, b, i, S, c0, S->tin);
        }
        if (neg) {
            cnt = gather_bwd(L, i, S->ii, S->ww);
            neg = zsign_neg_bwd(J, b, i, S, cnt, S->tin);
        }
        mpfr_set_zero(J->out + e, neg ? -1 : 1);
    }
#undef GATHER
}

static void bwd_fast(void *arg, lrp_ref_chunks *c)
{
    lin_job *J = arg;
    const lrp_lin *L = J->L;
    mpfr_prec_t p = J->cx->prec;
    int64_t cap = bwd_cap(L);
    int ntot = 0;
    for (int k = 0; k < J->np; k++)
        ntot += J->parts[k].nt;
    bwd_tls W;
    memset(&W, 0, sizeof W);
    scratch_init(&W.S, cap, ntot, 3 * p + 80, p);
    W.A = lrp_ref_acc_new();
    for (int k = 0; k < J->np; k++)
        if (J->sfx[k]) {
            W.FA[k] = lrp_ref_fxacc_new(J->sfx[k]->nlev);
            LRP_ASSERT(W.FA[k]);
        }
    mpz_init(W.z);
    mpfr_init2(W.fcc, 48);
    /* the vector kernel: one lane set a part (its s has its own grid) */
    lane_sums *T[LRP_PIPE_MAX_PARTS] = {NULL, NULL};
    int anyv = 0;
    for (int k = 0; k < J->np; k++)
        if (J->svx[k] && J->parts[k].nt <= LRP_PIPE_MAX_TERMS) {
            T[k] = malloc(sizeof *T[k]);
            LRP_ASSERT(T[k] && lane_sums_init(T[k], J->sfx[k], J->plan ? 0 : cap,
                                              (int64_t)L->kh * L->kw));
            anyv = 1;
        }
    /* the lanes' sums of every part, in one lane_sums (slots k * MAX_TERMS + t) */
    lane_sums *U = anyv ? T[0] ? T[0] : T[1] : NULL;
    int64_t lo, hi;
    while (lrp_ref_chunk_next(c, &lo, &hi))
        for (int64_t e = lo; e < hi;) {
            int nl = anyv ? bwd_tile(L, e, hi) : 0;
            if (!nl) {
                bwd_elem(J, &W, e++, NULL, 0);
                continue;
            }
            int64_t b = e / L->n_in, i = e % L->n_in;
            int64_t corner = 0, cnt = 0;
            int clipped = J->plan ? bwd_corner(L, i, nl, &corner, U->tab) : 0;
            if (!J->plan)
                cnt = tile_taps_bwd(L, i, nl, U->ii, U->ww, U->mk);
            memset(U->have, 0, sizeof U->have);
            for (int k = 0; k < J->np; k++) {
                if (!T[k])
                    continue;
                T[k]->nl = nl;
                for (int t = 0; t < J->parts[k].nt; t++) {
                    const lrp_term *tt = &J->parts[k].t[t];
                    int slot = k * LRP_PIPE_MAX_TERMS + t;
                    /* (a BN-folded scale's sign is in the weights here:
                     * lrp_ref_lin_bwd) */
                    if (!(tt->w == LRP_WM_ID || tt->w == LRP_WM_POS || tt->w == LRP_WM_NEG))
                        continue;
                    T[k]->have[slot] = 0;
                    if (J->plan)
                        lane_dot_plan(T[k], slot, J->svx[k], J->sfx[k], b * L->n_out + corner,
                                      J->plan, i / (L->H * L->W), clipped ? U->tab : NULL, J->wd,
                                      tt->w, 0, 0);
                    else
                        lane_dot(T[k], slot, J->svx[k], J->sfx[k], b * L->n_out, U, cnt, J->vw,
                                 J->wd, tt->w, 0, 0);
                    if (T[k] != U) {
                        /* move the lanes' sums into U's slot */
                        for (int l = 0; l < nl; l++) {
                            mpz_swap(U->z[l][slot], T[k]->z[l][slot]);
                            U->ez[l][slot] = T[k]->ez[l][slot];
                        }
                    }
                    U->have[slot] = 1;
                }
            }
            for (int l = 0; l < nl; l++)
                bwd_elem(J, &W, e + l, U, l);
            e += nl;
        }
    for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++)
        if (T[k]) {
            lane_sums_free(T[k]);
            free(T[k]);
        }
    mpfr_clear(W.fcc);
    mpz_clear(W.z);
    lrp_ref_acc_free(W.A);
    for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++)
        lrp_ref_fxacc_free(W.FA[k]);
    scratch_free(&W.S);
}

/* The hot loop: A += sum_q v(ii[q]) * wmod(w32[ww[q]]) exactly, v given by
 * its pieces (np[i] of them at d + i K); xsel 1 / -1 keeps only positive /
 * negative v (pos / neg input modifiers).  Products of nonzero pieces and
 * nonzero binary32 weights are nonzero normal doubles (split29 keeps the
 * pieces in [2^-700, 2^900]).  The accumulator's bin add is inlined here
 * with the bounds in registers. */
static void acc_dot(ref_acc *A, const double *xd, const uint8_t *np, int K,
                    const int64_t *ii, const int64_t *ww, int64_t cnt, const float *w32,
                    int wmod, int xsel)
{
    int lo = A->lo, hi = A->hi, n = A->n;
    for (int64_t q = 0; q < cnt; q++) {
        int64_t i = ii[q];
        int c = np[i];
        if (!c)
            continue;
        const double *d = xd + i * K;
        if (xsel && ((d[0] < 0) != (xsel < 0)))
            continue;
        float wf = w32[ww[q]];
        if (wmod == LRP_WM_POS)
            wf = wf > 0.0f ? wf : 0.0f;
        else if (wmod == LRP_WM_NEG)
            wf = wf < 0.0f ? wf : 0.0f;
        if (wf == 0.0f)
            continue;
        double w = (double)wf;
        __int128 *bin = A->bin[q & (LRP_REF_BANKS - 1)];
        for (int k = 0; k < c; k++) {
            double pr = d[k] * w;
            uint64_t u;
            memcpy(&u, &pr, sizeof u);
            int E = (int)(u >> 52) & 0x7ff;
            int64_t m = (int64_t)((u & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52));
            int64_t sg = -(int64_t)(u >> 63);
            bin[E] += (m ^ sg) - sg;
            lo = E < lo ? E : lo;
            hi = E > hi ? E : hi;
        }
        n += c;
        if (n >= LRP_REF_FOLD_AT) {
            A->lo = lo;
            A->hi = hi;
            lrp_ref_acc_fold(A);
            lo = A->lo;
            hi = A->hi;
            n = 0;
        }
    }
    A->lo = lo;
    A->hi = hi;
    A->n = n;
}

/* Splits a tensor into K pieces per value with a common scale; returns 0
 * when some value cannot be split within binary64 (slow path). */
static int split_tensor(double **out, uint8_t **npo, int *Kp, long *scalep, mpfr_srcptr v,
                        int64_t n, mpfr_prec_t p)
{
    int K = (int)((p + 28) / 29) + 1;
    long emax = LONG_MIN;
    for (int64_t i = 0; i < n; i++)
        if (mpfr_regular_p(v + i) && mpfr_get_exp(v + i) > emax)
            emax = mpfr_get_exp(v + i);
        else if (!mpfr_number_p(v + i))
            return 0;
    long scale = emax == LONG_MIN ? 0 : emax;
    double *d = calloc((size_t)(n * K + 1), sizeof *d);
    uint8_t *np = calloc((size_t)(n + 1), 1);
    if (!d || !np) {
        free(d);
        free(np);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!mpfr_regular_p(v + i))
            continue;
        int k = lrp_ref_split29(d + i * K, v + i, scale);
        if (k == 0 || k >= K) {
            free(d);
            free(np);
            return 0;
        }
        np[i] = (uint8_t)k;
    }
    *out = d;
    *npo = np;
    *Kp = K;
    *scalep = scale;
    return 1;
}

/* 1 when the vector kernel runs on this layer: a conv with stride 1
 * along x, rows of at least two outputs (fwd) / inputs (bwd), and lanes
 * that reach at most LRP_REF_VX_PAD values past a tensor's ends */
static int vec_rows(const lrp_lin *L, int bwd)
{
    if (!L->conv || L->sw != 1 || !lrp_ref_vx_available())
        return 0;
    int64_t span = (int64_t)(L->kw - 1) * L->dw;
    /* the farthest a lane's index reaches before the row's first value and
     * after its last (the next row's values or the padding stand there) */
    int64_t before = bwd ? span - L->pl : L->pl;
    int64_t after = bwd ? (L->W - 1) + 7 + L->pl - (L->Wo - 1)
                        : (L->Wo - 1) + 7 - L->pl + span - (L->W - 1);
    if (before > LRP_REF_VX_PAD || after > LRP_REF_VX_PAD - 8)
        return 0;
    return (bwd ? L->W : L->Wo) >= 2;
}

static uint64_t *vec_weights(const lrp_lin *L)
{
    int64_t n = L->O * L->fanin;
    uint64_t *vw = malloc((size_t)(n + 1) * sizeof *vw);
    if (vw)
        lrp_ref_vx_weights(vw, L->w32, n);
    return vw;
}

static int weights_fx(int64_t **wd, const lrp_lin *L)
{
    int64_t n = L->O * L->fanin;
    *wd = malloc((size_t)(n + 1) * sizeof **wd);
    if (!*wd)
        return 0;
    lrp_ref_fx_weights(*wd, L->w32, n);
    return 1;
}

/* 1 when no term reads the weights' values (weights all ones: the flat
 * rule): a BN-folded scale changes nothing, ones(sc w) = 1 = ones(w), and
 * the layer runs as unscaled, except under slow = 1, which forms every
 * product with the scale (the tests' witness).  The scale has no
 * digit-kernel path for ones: found by perf, the canonized first conv
 * under EpsilonPlusFlat ran exact MPFR products with it, nearly half of a
 * ResNet-50 112 check. */
static int ones_only(const lrp_term *t, int nt)
{
    for (int k = 0; k < nt; k++)
        if (t[k].w != LRP_WM_ONES)
            return 0;
    return 1;
}

void lrp_ref_lin_fwd(void *c, void *out, const lrp_lin *L, const void *x, const lrp_term *t,
                     int nt, const lrp_bterm *bt, int nb, int absval, int64_t batch)
{
    ref_ctx *cx = c;
    lrp_lin Lu;
    if (L->wscale && cx->slow != 1 && ones_only(t, nt)) { /* slow 1: the definition */
        Lu = *L;
        Lu.wscale = NULL; /* (the bias is the folded one either way) */
        L = &Lu;
    }
    lin_job J;
    memset(&J, 0, sizeof J);
    J.cx = cx;
    J.L = L;
    J.out = T(out);
    J.x = TC(x);
    J.t = t;
    J.nt = nt;
    J.bt = bt;
    J.nb = L->b ? nb : 0;
    J.absval = absval;
    double *xd = NULL;
    uint8_t *np = NULL;
    ref_fx fx;
    int have_fx = 0, need_pieces = 0, ok = 1;
    for (int k = 0; k < nt; k++)
        need_pieces |= (t[k].in == LRP_IM_ID || t[k].in == LRP_IM_POS || t[k].in == LRP_IM_NEG) &&
                       (t[k].w == LRP_WM_SQUARE || t[k].w == LRP_WM_ONES);
    int64_t *wd = NULL;
    /* BN-folded weights (wscale): only the digit kernel knows the scale,
     * and only for terms with inputs x / x+ / x- and weights w / w+ / w-. */
    int scaled_ok = 1;
    for (int k = 0; k < nt && L->wscale; k++)
        scaled_ok &= (t[k].in == LRP_IM_ID || t[k].in == LRP_IM_POS || t[k].in == LRP_IM_NEG) &&
                     (t[k].w == LRP_WM_ID || t[k].w == LRP_WM_POS || t[k].w == LRP_WM_NEG);
    if (L->wscale && cx->slow == 2)
        scaled_ok = 0;
    if (cx->slow != 1 && L->w32 && cx->prec >= 24 && scaled_ok) {
        if (cx->slow != 2 && weights_fx(&wd, L))
            have_fx = lrp_ref_fx_build(&fx, J.x, L->n_in * batch);
        J.wd = wd;
        if (L->wscale && !have_fx)
            ok = 0;
        else if (!have_fx || need_pieces)
            ok = split_tensor(&xd, &np, &J.K, &J.xscale, J.x, L->n_in * batch, cx->prec);
        ref_vx vx;
        ref_vx_plan plan;
        uint64_t *vw = NULL;
        int have_vx = 0, have_plan = 0;
        if (ok) {
            J.xd = xd;
            J.xnp = np;
            J.xfx = have_fx ? &fx : NULL;
            if (have_fx && cx->slow == 0 && vec_rows(L, 0) &&
                (vw = vec_weights(L)) != NULL)
                have_vx = lrp_ref_vx_build(&vx, &fx);
            if (have_vx)
                have_plan = (int64_t)L->kh * L->kw <= 65536 && plan_fwd(&plan, L, vw);
            if (have_vx && !have_plan) {
                /* the forward's tiles take their taps from the plan only */
                lrp_ref_vx_free(&vx);
                have_vx = 0;
            }
            J.xvx = have_vx ? &vx : NULL;
            J.vw = vw;
            J.plan = have_plan ? &plan : NULL;
            cx->fast_calls++;
            cx->vec_calls += have_vx;
            lrp_ref_par_work(cx->threads, L->n_out * batch, fwd_fast, &J);
        }
        if (have_vx)
            lrp_ref_vx_free(&vx);
        if (have_plan)
            lrp_ref_vx_plan_free(&plan);
        free(vw);
        free(xd);
        free(np);
        free(wd);
        if (have_fx)
            lrp_ref_fx_free(&fx);
        if (ok)
            return;
    }
    cx->slow_calls++;
    lrp_ref_par_work(cx->threads, L->n_out * batch, fwd_slow, &J);
}

void lrp_ref_lin_bwd(void *c, void *out, const lrp_lin *L, const void *x,
                     const lrp_bwd_part *parts, int np, int64_t batch)
{
    ref_ctx *cx = c;
    int ones = 1;
    for (int k = 0; k < np; k++)
        ones &= ones_only(parts[k].t, parts[k].nt);
    lrp_lin Lu;
    if (L->wscale && cx->slow != 1 && ones) {
        Lu = *L;
        Lu.wscale = NULL;
        L = &Lu;
    }
    lin_job J;
    memset(&J, 0, sizeof J);
    J.cx = cx;
    J.L = L;
    J.out = T(out);
    J.x = TC(x);
    J.parts = parts;
    J.np = np;
    int fast = cx->slow != 1 && L->w32 && cx->prec >= 24;
    if (L->wscale) {
        /* BN-folded: digit kernel on s' = |wscale| s (exact, 2p bits), the
         * scale's sign in the weights (below) */
        fast &= cx->slow != 2;
        for (int k = 0; k < np; k++)
            for (int u = 0; u < parts[k].nt; u++)
                fast &= parts[k].t[u].w == LRP_WM_ID || parts[k].t[u].w == LRP_WM_POS ||
                        parts[k].t[u].w == LRP_WM_NEG;
    }
    mpfr_ptr sfold[LRP_PIPE_MAX_PARTS] = {NULL, NULL};
    int64_t ns = L->n_out * batch;
    /* BN-folded: the sign of the scale moved into the weights.  With
     * sc_o = wscale[o], w~ = w of output o negated where sc_o < 0 and
     * s'' = |sc_o| s: sc w s = w~ s'', pos(sc w) s = pos(w~) s'' and
     * neg(sc w) s = neg(w~) s'' (sc < 0: pos(sc w) = sc neg(w) = |sc|
     * pos(-w)), so every kernel sums w / w+ / w- terms of w~ and s'' with
     * no per-output flip of the selection, and the vector kernel takes
     * them too.  The same exact sums, rounded once: the same bits.  The
     * sign of an exact zero is decided from L and s as before
     * (zsign_neg_bwd). */
    lrp_lin Lw = *L;     /* the weights the digit kernels read */
    float *wflip = NULL; /* w~ (a copy only when some scale is negative) */
    int anyneg = 0;
    for (int64_t o = 0; fast && L->wscale && o < L->O && !anyneg; o++)
        anyneg = mpfr_signbit(TC(L->wscale) + o) != 0;
    if (anyneg) {
        int64_t nw = L->O * L->fanin;
        wflip = malloc((size_t)(nw + 1) * sizeof *wflip);
        fast = wflip != NULL;
        for (int64_t o = 0; o < L->O && fast; o++) {
            int neg = mpfr_signbit(TC(L->wscale) + o) != 0;
            const float *w = L->w32 + o * L->fanin;
            for (int64_t q = 0; q < L->fanin; q++)
                wflip[o * L->fanin + q] = neg ? -w[q] : w[q];
        }
        Lw.w32 = wflip;
    }
    if (fast && L->wscale) {
        for (int k = 0; k < np && fast; k++) {
            sfold[k] = lrp_ref_tensor_new(2 * cx->prec + 8, ns);
            fast = sfold[k] != NULL;
            for (int64_t j = 0; j < ns && fast; j++) {
                mpfr_srcptr sc = TC(L->wscale) + out_unit(L, j % L->n_out);
                mpfr_mul(sfold[k] + j, TC(parts[k].s) + j, sc, MPFR_RNDN); /* exact */
                if (mpfr_signbit(sc)) /* s |sc| */
                    mpfr_neg(sfold[k] + j, sfold[k] + j, MPFR_RNDN);
            }
        }
    }
    double *sd[LRP_PIPE_MAX_PARTS] = {NULL, NULL};
    uint8_t *snp[LRP_PIPE_MAX_PARTS] = {NULL, NULL};
    ref_fx fx[LRP_PIPE_MAX_PARTS];
    int have_fx[LRP_PIPE_MAX_PARTS] = {0, 0};
    int64_t *wd = NULL;
    int wok = fast && cx->slow != 2 && weights_fx(&wd, &Lw);
    J.wd = wd;
    for (int k = 0; k < np && fast; k++) {
        int K, need_pieces = 0;
        for (int u = 0; u < parts[k].nt; u++)
            need_pieces |= parts[k].t[u].w == LRP_WM_SQUARE || parts[k].t[u].w == LRP_WM_ONES;
        if (wok)
            have_fx[k] = lrp_ref_fx_build(&fx[k], sfold[k] ? sfold[k] : TC(parts[k].s),
                                          L->n_out * batch);
        J.sfx[k] = have_fx[k] ? &fx[k] : NULL;
        if (have_fx[k] && !need_pieces)
            continue;
        if (L->wscale) {
            fast = 0; /* no binary64-piece path with a scale */
            break;
        }
        fast = split_tensor(&sd[k], &snp[k], &K, &J.sscale[k], TC(parts[k].s),
                            L->n_out * batch, cx->prec);
        J.K = K;
        J.sd[k] = sd[k];
        J.snp[k] = snp[k];
    }
    ref_vx vx[LRP_PIPE_MAX_PARTS];
    int have_vx[LRP_PIPE_MAX_PARTS] = {0, 0};
    uint64_t *vw = NULL;
    if (fast && cx->slow == 0 && vec_rows(L, 1)) {
        for (int k = 0; k < np; k++)
            if (have_fx[k] && (vw || (vw = vec_weights(&Lw)) != NULL))
                have_vx[k] = lrp_ref_vx_build(&vx[k], &fx[k]);
    }
    ref_vx_plan plan;
    int have_plan = (have_vx[0] || have_vx[1]) && L->sh == 1 &&
                    (int64_t)L->kh * L->kw <= 65536 && plan_bwd(&plan, L, vw);
    for (int k = 0; k < np; k++)
        J.svx[k] = have_vx[k] ? &vx[k] : NULL;
    J.vw = vw;
    J.plan = have_plan ? &plan : NULL;
    if (fast) {
        cx->fast_calls++;
        cx->vec_calls += have_vx[0] || have_vx[1];
        lrp_ref_par_work(cx->threads, L->n_in * batch, bwd_fast, &J);
    } else {
        cx->slow_calls++;
        lrp_ref_par_work(cx->threads, L->n_in * batch, bwd_slow, &J);
    }
    for (int k = 0; k < np; k++) {
        if (have_vx[k])
            lrp_ref_vx_free(&vx[k]);
        free(sd[k]);
        free(snp[k]);
        if (have_fx[k])
            lrp_ref_fx_free(&fx[k]);
        if (sfold[k])
            lrp_ref_tensor_free(sfold[k]);
    }
    if (have_plan)
        lrp_ref_vx_plan_free(&plan);
    free(wflip);
    free(wd);
    free(vw);
}
