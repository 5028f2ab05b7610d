/*
 * ref_attn.c -- the MPFR ops of the attention kinds (core/pipeline.h,
 * lrp_backend.softmax_fwd / softmax_taylor / rowsum / bmm; the kinds are
 * core/kind_attn.c; the mathematics docs/TRANSFORMERS.md sections 4, 5).
 *
 * Accuracy (u = 2^-p, p the context's precision):
 *   softmax_fwd     e_i = exp(x_i - m) at p + 64 bits (x_i - m exact at
 *                   that precision for p-bit x), the row sum exact (mpfr_sum
 *                   at p + 64), s_i = e_i / sum rounded to p: about 1u, and
 *                   no dependence on the max subtraction (exp is exact up to
 *                   one rounding wherever it is taken).  Masked entries and
 *                   -inf logits give +0; an all-masked row is all +0.
 *   softmax_taylor  sR exact sum (mpfr_sum), d_i = R_i - s_i sR with one
 *                   rounding (fmms at p + 64), rin_i = xr_i d_i rounded to p;
 *                   absb from the closed form with exact sums at p + 64;
 *                   absm = sum (x_i - xr_i) d_i at p + 64: each a few u.
 *   rowsum          mpfr_sum: correctly rounded.
 *   bmm             c * sum_k a_k b_k: the products exact (2p + 24 bits),
 *                   one rounding of the exact sum (mpfr_sum).
 * Nothing here can produce a NaN from finite inputs: masked -inf logits are
 * never subtracted or multiplied.
 */
#include "ref_int.h"

#include <math.h>
#include <stdlib.h>

#define CX(c) ((ref_ctx *)(c))
#define T(t) ((mpfr_ptr)(t))
#define TC(t) ((mpfr_srcptr)(t))

static int masked(const uint8_t *mask, int64_t mrows, int64_t r, int64_t cols, int64_t c,
                  mpfr_srcptr x)
{
    if (mask && mask[(r % mrows) * cols + c])
        return 1;
    return mpfr_inf_p(x) && mpfr_sgn(x) < 0;
}

/* softmax_fwd, softmax_taylor and rowsum compute each row from its own
 * inputs alone: the rows run in chunks on the context's threads
 * (lrp_ref_par_values), with the bits of one thread. */
typedef struct sm_job {
    mpfr_prec_t prec;
    mpfr_ptr out, absb, absm;
    mpfr_srcptr x, xr, s, R;
    const uint8_t *mask;
    int64_t mrows, cols;
} sm_job;

static void smf_range(void *arg, int64_t lo, int64_t hi)
{
    const sm_job *J = arg;
    const uint8_t *mask = J->mask;
    const int64_t mrows = J->mrows, cols = J->cols;
    const void *x = J->x;
    void *out = J->out;
    mpfr_prec_t p = J->prec, q = p + 64;
    mpfr_t m, t, sum;
    mpfr_ptr e = lrp_ref_tensor_new(q, cols);
    mpfr_ptr *pp = malloc((size_t)(cols ? cols : 1) * sizeof *pp);
    LRP_ASSERT(e && pp);
    mpfr_inits2(q, m, t, sum, (mpfr_ptr)0);
    for (int64_t r = lo; r < hi; r++) {
        mpfr_srcptr xr = TC(x) + r * cols;
        mpfr_ptr o = T(out) + r * cols;
        int any = 0;
        for (int64_t k = 0; k < cols; k++) {
            if (masked(mask, mrows, r, cols, k, xr + k))
                continue;
            if (!any || mpfr_greater_p(xr + k, m))
                mpfr_set(m, xr + k, MPFR_RNDN);
            any = 1;
        }
        int64_t n = 0;
        for (int64_t k = 0; k < cols; k++) {
            if (!any || masked(mask, mrows, r, cols, k, xr + k)) {
                mpfr_set_zero(e + k, 1);
                continue;
            }
            mpfr_sub(t, xr + k, m, MPFR_RNDN); /* exact: p-bit operands, q >= p + 64 */
            mpfr_exp(e + k, t, MPFR_RNDN);
            pp[n++] = e + k;
        }
        mpfr_sum(sum, pp, (unsigned long)n, MPFR_RNDN);
        for (int64_t k = 0; k < cols; k++) {
            if (mpfr_zero_p(e + k))
                mpfr_set_zero(o + k, 1);
            else
                mpfr_div(o + k, e + k, sum, MPFR_RNDN);
        }
    }
    mpfr_clears(m, t, sum, (mpfr_ptr)0);
    lrp_ref_tensor_free(e);
    free(pp);
}

void lrp_ref_softmax_fwd(void *c, void *out, const void *x, const uint8_t *mask, int64_t mrows,
                         int64_t rows, int64_t cols)
{
    sm_job J = {CX(c)->prec, T(out), NULL, NULL, TC(x), NULL, NULL, NULL, mask, mrows, cols};
    lrp_ref_par_values(CX(c), rows, cols, smf_range, &J);
}

static void smt_range(void *arg, int64_t lo, int64_t hi)
{
    const sm_job *J = arg;
    const uint8_t *mask = J->mask;
    const int64_t mrows = J->mrows, cols = J->cols;
    const void *x = J->x, *xr = J->xr, *s = J->s, *R = J->R;
    void *rin = J->out, *absb = J->absb, *absm = J->absm;
    mpfr_prec_t p = J->prec, q = 2 * p + 64;
    mpfr_t sR, xbar, d, one, tb, tm;
    mpfr_ptr tmp = lrp_ref_tensor_new(q, 2 * cols + 1);
    mpfr_ptr *pp = malloc((size_t)(2 * cols + 1) * sizeof *pp);
    LRP_ASSERT(tmp && pp);
    mpfr_inits2(q, sR, xbar, d, one, tb, tm, (mpfr_ptr)0);
    mpfr_set_ui(one, 1, MPFR_RNDN);
    for (int64_t r = lo; r < hi; r++) {
        mpfr_srcptr X = TC(x) + r * cols, XR = TC(xr) + r * cols, S = TC(s) + r * cols,
                    RR = TC(R) + r * cols;
        mpfr_ptr o = T(rin) + r * cols;
        int64_t n = 0;
        /* sR over the unmasked entries (a masked entry's R is 0 in a
         * correct run; a nonzero one is not silently multiplied by -inf) */
        for (int64_t k = 0; k < cols; k++)
            if (!masked(mask, mrows, r, cols, k, X + k))
                pp[n++] = (mpfr_ptr)(RR + k);
        mpfr_sum(sR, pp, (unsigned long)n, MPFR_RNDN);
        /* xbar = sum s_i x_i (products exact at q) */
        n = 0;
        for (int64_t k = 0; k < cols; k++)
            if (!masked(mask, mrows, r, cols, k, X + k)) {
                mpfr_mul(tmp + n, S + k, X + k, MPFR_RNDN);
                pp[n] = tmp + n;
                n++;
            }
        mpfr_sum(xbar, pp, (unsigned long)n, MPFR_RNDN);
        /* rin and absm */
        int64_t nm = 0;
        for (int64_t k = 0; k < cols; k++) {
            if (masked(mask, mrows, r, cols, k, X + k)) {
                mpfr_set_zero(o + k, 1);
                continue;
            }
            mpfr_fmms(d, RR + k, one, S + k, sR, MPFR_RNDN); /* R - s sR */
            mpfr_mul(o + k, XR + k, d, MPFR_RNDN);
            if (absm) {
                mpfr_sub(tm, X + k, XR + k, MPFR_RNDN);
                mpfr_mul(tmp + nm, tm, d, MPFR_RNDN);
                pp[nm] = tmp + nm;
                nm++;
            }
        }
        if (absm)
            mpfr_sum(T(absm) + r, pp, (unsigned long)nm, MPFR_RNDN);
        /* absb = sR (1 + xbar) - sum R_j x_j */
        n = 0;
        for (int64_t k = 0; k < cols; k++)
            if (!masked(mask, mrows, r, cols, k, X + k)) {
                mpfr_mul(tmp + n, RR + k, X + k, MPFR_RNDN);
                mpfr_neg(tmp + n, tmp + n, MPFR_RNDN);
                pp[n] = tmp + n;
                n++;
            }
        mpfr_add(tb, one, xbar, MPFR_RNDN);
        mpfr_mul(tmp + n, sR, tb, MPFR_RNDN);
        pp[n] = tmp + n;
        n++;
        mpfr_sum(T(absb) + r, pp, (unsigned long)n, MPFR_RNDN);
    }
    mpfr_clears(sR, xbar, d, one, tb, tm, (mpfr_ptr)0);
    lrp_ref_tensor_free(tmp);
    free(pp);
}

void lrp_ref_softmax_taylor(void *c, void *rin, void *absb, void *absm, const void *x,
                            const void *xr, const void *s, const void *R, const uint8_t *mask,
                            int64_t mrows, int64_t rows, int64_t cols)
{
    sm_job J = {CX(c)->prec, T(rin), T(absb), absm ? T(absm) : NULL, TC(x), TC(xr), TC(s), TC(R),
                mask, mrows, cols};
    lrp_ref_par_values(CX(c), rows, cols, smt_range, &J);
}

static void rowsum_range(void *arg, int64_t lo, int64_t hi)
{
    const sm_job *J = arg;
    const int64_t cols = J->cols;
    mpfr_ptr *pp = malloc((size_t)(cols ? cols : 1) * sizeof *pp);
    LRP_ASSERT(pp);
    for (int64_t r = lo; r < hi; r++) {
        for (int64_t k = 0; k < cols; k++)
            pp[k] = (mpfr_ptr)(J->x + r * cols + k);
        mpfr_sum(J->out + r, pp, (unsigned long)cols, MPFR_RNDN);
    }
    free(pp);
}

void lrp_ref_rowsum(void *c, void *out, const void *a, int64_t rows, int64_t cols)
{
    sm_job J = {CX(c)->prec, T(out), NULL, NULL, TC(a), NULL, NULL, NULL, NULL, 1, cols};
    lrp_ref_par_values(CX(c), rows, cols, rowsum_range, &J);
}

int lrp_ref_bmm_pow2(float c, long *e2)
{
    int e;
    *e2 = 0;
    if (!(c > 0) || !isfinite(c) || frexpf(c, &e) != 0.5f)
        return 0;
    *e2 = (long)e - 1; /* c = 0.5 2^e */
    return 1;
}

typedef struct bmm_job {
    ref_ctx *cx;
    mpfr_ptr out;
    mpfr_srcptr a, b;
    const lrp_bmm *G;
} bmm_job;

/* output rows (i1, i2, m) in [lo, hi) */
static void bmm_range(void *arg, int64_t lo, int64_t hi)
{
    bmm_job *J = arg;
    const lrp_bmm *G = J->G;
    mpfr_prec_t p = J->cx->prec, q = 2 * p + 24;
    mpfr_ptr tmp = lrp_ref_tensor_new(q, G->K ? G->K : 1);
    mpfr_ptr *pp = malloc((size_t)(G->K ? G->K : 1) * sizeof *pp);
    mpfr_t cf;
    LRP_ASSERT(tmp && pp);
    mpfr_init2(cf, 24);
    mpfr_set_flt(cf, G->c, MPFR_RNDN);
    /* c = 2^e > 0 (1 for A V, 1 / sqrt(d) = 2^-3 for Q K^T at d = 64):
     * the rounded sum of the products is scaled after the sum instead of
     * each product before it, one mpfr_mul a term fewer.  The same bits:
     * a power of two commutes with rounding to p bits (MPFR's exponent
     * range leaves no overflow or underflow here), and a positive one
     * keeps every sign, a zero's included. */
    long e2;
    int pow2 = lrp_ref_bmm_pow2(G->c, &e2);
    for (int64_t row = lo; row < hi; row++) {
        int64_t m = row % G->M, i2 = row / G->M % G->n2, i1 = row / G->M / G->n2;
        mpfr_srcptr a = J->a + i1 * G->a1 + i2 * G->a2 + m * G->am;
        mpfr_srcptr b = J->b + i1 * G->b1 + i2 * G->b2;
        mpfr_ptr o = J->out + i1 * G->o1 + i2 * G->o2 + m * G->om;
        for (int64_t n = 0; n < G->N; n++) {
            for (int64_t k = 0; k < G->K; k++) {
                mpfr_mul(tmp + k, a + k * G->ak, b + k * G->bk + n * G->bn, MPFR_RNDN);
                if (!pow2)
                    mpfr_mul(tmp + k, tmp + k, cf, MPFR_RNDN); /* exact at 2p + 24 */
                pp[k] = tmp + k;
            }
            /* an exact zero is -0 iff every product is -0 (mpfr_sum, IEEE) */
            mpfr_sum(o + n * G->on, pp, (unsigned long)G->K, MPFR_RNDN);
            if (pow2 && e2)
                mpfr_mul_2si(o + n * G->on, o + n * G->on, e2, MPFR_RNDN);
        }
    }
    mpfr_clear(cf);
    lrp_ref_tensor_free(tmp);
    free(pp);
}

void lrp_ref_bmm(void *c, void *out, const void *a, const void *b, const lrp_bmm *G)
{
    bmm_job J = {CX(c), T(out), TC(a), TC(b), G};
    lrp_ref_par_for(CX(c)->threads, G->n1 * G->n2 * G->M, bmm_range, &J);
}
