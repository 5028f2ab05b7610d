/*
 * ref_token.c -- the MPFR backend's token-layer ops (core/pipeline.h:
 * norm_fwd, norm_bwd, act_map; core/kind_token.c has the formulas).
 *
 * Accuracy (u = 2^-p, every stored value has p bits): intermediates are
 * held at wp = p + 64 bits and each stored value is rounded once from them.
 *   norm_fwd  mu = sum x / F from the correctly rounded sum (mpfr_sum at
 *             wp); d = x - mu, var = sum d^2 / F (squares exact, sum at wp):
 *             the two-pass variance; sigma = sqrt(var + eps) at wp;
 *             y = w d / sigma + b rounded once to p: relative error about
 *             u of |w d / sigma| + |b| plus a few 2^-wp.  sigma = 0 gives
 *             0/0 = NaN (eps 0 and a constant row: undefined, reported by
 *             the layer's flag undefined_forward).
 *   norm_bwd  c = w / sigma, t = c s at wp, the row's sum of t by mpfr_sum
 *             at wp, then x (t - M) rounded once: about 1u of |x| (|t| +
 *             |M|).  The stored (mu, sigma) are p-bit roundings of the
 *             forward's wp values: the 2^-p difference is far below the
 *             float32 bounds the oracle works with.
 *   act_map   f(x) at wp (mpfr_erfc, mpfr_tanh, mpfr_exp, each correctly
 *             rounded at wp), a few wp roundings, then rounded to p; GELU
 *             as x erfc(-x / sqrt 2) / 2 and its tanh form as
 *             x / (1 + exp(-2 z)), so that x << 0 does not cancel (1 +
 *             erf(-21) is 0 at 192 bits; the value is 1e-197).
 */
#include "ref_int.h"

#include <stdlib.h>

#define T(t) ((mpfr_ptr)(t))
#define TC(t) ((mpfr_srcptr)(t))

/* Each op computes a row (norms) or a value (act_map) from its own inputs
 * alone: the rows run in chunks on the context's threads
 * (lrp_ref_par_values), with the bits of one thread. */
typedef struct norm_job {
    mpfr_prec_t prec;
    mpfr_ptr y, stat, rin, absmean;
    mpfr_srcptr x, s;
    const float *w, *b;
    float eps;
    int rms, centre;
    int64_t F;
} norm_job;

static void norm_fwd_range(void *arg, int64_t lo, int64_t hi)
{
    const norm_job *J = arg;
    const float *w = J->w, *b = J->b;
    const int rms = J->rms;
    const int64_t F = J->F;
    void *y = J->y, *stat = J->stat;
    const void *x = J->x;
    mpfr_prec_t p = J->prec, wp = p + 64;
    mpfr_t mu, var, sig, t, e, sq;
    mpfr_inits2(wp, mu, var, sig, t, NULL);
    mpfr_init2(e, 24);
    mpfr_init2(sq, 2 * wp);
    mpfr_set_flt(e, J->eps, MPFR_RNDN);
    mpfr_ptr d = malloc((size_t)F * sizeof *d);
    mpfr_ptr *pp = malloc((size_t)F * sizeof *pp);
    LRP_ASSERT(d && pp);
    for (int64_t k = 0; k < F; k++)
        mpfr_init2(&d[k], wp);
    for (int64_t q = lo; q < hi; q++) {
        mpfr_srcptr xr = TC(x) + q * F;
        if (rms) {
            mpfr_set_zero(mu, 1);
        } else {
            for (int64_t k = 0; k < F; k++)
                pp[k] = (mpfr_ptr)(xr + k);
            mpfr_sum(mu, pp, (unsigned long)F, MPFR_RNDN);
            mpfr_div_si(mu, mu, (long)F, MPFR_RNDN);
        }
        /* d_k = x_k - mu (rms: x_k) at wp; d_k^2 exact at 2 wp */
        for (int64_t k = 0; k < F; k++)
            mpfr_sub(&d[k], xr + k, mu, MPFR_RNDN);
        mpfr_ptr d2 = malloc((size_t)F * sizeof *d2);
        LRP_ASSERT(d2);
        for (int64_t k = 0; k < F; k++) {
            mpfr_init2(&d2[k], 2 * wp);
            mpfr_sqr(&d2[k], &d[k], MPFR_RNDN); /* exact */
            pp[k] = &d2[k];
        }
        mpfr_sum(var, pp, (unsigned long)F, MPFR_RNDN);
        for (int64_t k = 0; k < F; k++)
            mpfr_clear(&d2[k]);
        free(d2);
        mpfr_div_si(var, var, (long)F, MPFR_RNDN);
        mpfr_add(sig, var, e, MPFR_RNDN);
        mpfr_sqrt(sig, sig, MPFR_RNDN);
        mpfr_set(T(stat) + 2 * q, mu, MPFR_RNDN);
        mpfr_set(T(stat) + 2 * q + 1, sig, MPFR_RNDN);
        for (int64_t k = 0; k < F; k++) {
            mpfr_ptr yk = T(y) + q * F + k;
            mpfr_div(t, &d[k], sig, MPFR_RNDN); /* 0/0 = NaN when sigma = 0 */
            if (w) {
                mpfr_set_flt(sq, w[k], MPFR_RNDN);
                mpfr_mul(t, t, sq, MPFR_RNDN);
            }
            if (b) {
                mpfr_set_flt(sq, b[k], MPFR_RNDN);
                mpfr_add(yk, t, sq, MPFR_RNDN);
            } else {
                mpfr_set(yk, t, MPFR_RNDN);
            }
        }
    }
    for (int64_t k = 0; k < F; k++)
        mpfr_clear(&d[k]);
    free(d);
    free(pp);
    mpfr_clears(mu, var, sig, t, e, sq, NULL);
}

void lrp_ref_norm_fwd(void *c, void *y, void *stat, const void *x, const float *w,
                      const float *b, float eps, int rms, int64_t rows, int64_t F)
{
    norm_job J = {((ref_ctx *)c)->prec, T(y), T(stat), NULL, NULL, TC(x), NULL, w, b, eps, rms,
                  0, F};
    lrp_ref_par_values(c, rows, F, norm_fwd_range, &J);
}

static void norm_bwd_range(void *arg, int64_t lo, int64_t hi)
{
    const norm_job *J = arg;
    const float *w = J->w;
    const int centre = J->centre;
    const int64_t F = J->F;
    void *rin = J->rin, *absmean = J->absmean;
    const void *x = J->x, *stat = J->stat, *s = J->s;
    mpfr_prec_t p = J->prec, wp = p + 64;
    mpfr_t M, u, wk;
    mpfr_inits2(wp, M, u, NULL);
    mpfr_init2(wk, 24);
    mpfr_ptr t = malloc((size_t)F * sizeof *t);
    mpfr_ptr *pp = malloc((size_t)F * sizeof *pp);
    LRP_ASSERT(t && pp);
    for (int64_t k = 0; k < F; k++)
        mpfr_init2(&t[k], wp);
    for (int64_t q = lo; q < hi; q++) {
        mpfr_srcptr mu = TC(stat) + 2 * q, sig = TC(stat) + 2 * q + 1;
        /* t_k = (w_k / sigma) s_k */
        for (int64_t k = 0; k < F; k++) {
            if (w) {
                mpfr_set_flt(wk, w[k], MPFR_RNDN);
                mpfr_div(&t[k], wk, sig, MPFR_RNDN);
            } else {
                mpfr_ui_div(&t[k], 1, sig, MPFR_RNDN);
            }
            mpfr_mul(&t[k], &t[k], TC(s) + q * F + k, MPFR_RNDN);
            pp[k] = &t[k];
        }
        if (centre) {
            mpfr_sum(M, pp, (unsigned long)F, MPFR_RNDN);
            mpfr_div_si(M, M, (long)F, MPFR_RNDN);
        }
        for (int64_t k = 0; k < F; k++) {
            mpfr_srcptr xk = TC(x) + q * F + k;
            if (centre) {
                mpfr_sub(u, &t[k], M, MPFR_RNDN);
                mpfr_mul(T(rin) + q * F + k, xk, u, MPFR_RNDN);
            } else {
                mpfr_mul(T(rin) + q * F + k, xk, &t[k], MPFR_RNDN);
            }
            if (absmean) {
                mpfr_mul(u, &t[k], mu, MPFR_RNDN);
                mpfr_neg(T(absmean) + q * F + k, u, MPFR_RNDN);
            }
        }
    }
    for (int64_t k = 0; k < F; k++)
        mpfr_clear(&t[k]);
    free(t);
    free(pp);
    mpfr_clears(M, u, wk, NULL);
}

void lrp_ref_norm_bwd(void *c, void *rin, void *absmean, const void *x, const void *stat,
                      const float *w, const void *s, int centre, int64_t rows, int64_t F)
{
    norm_job J = {((ref_ctx *)c)->prec, NULL, T(stat), T(rin), absmean ? T(absmean) : NULL,
                  TC(x), TC(s), w, NULL, 0.0f, 0, centre, F};
    lrp_ref_par_values(c, rows, F, norm_bwd_range, &J);
}

typedef struct act_job {
    mpfr_prec_t prec;
    mpfr_ptr y;
    mpfr_srcptr x;
    int op;
} act_job;

static void act_range(void *arg, int64_t lo, int64_t hi)
{
    const act_job *J = arg;
    const int op = J->op;
    void *y = J->y;
    const void *x = J->x;
    mpfr_prec_t p = J->prec, wp = p + 64;
    mpfr_t t, k1, k2;
    mpfr_inits2(wp, t, k1, k2, NULL);
    if (op == LRP_ACT_GELU) {
        mpfr_sqrt_ui(k1, 2, MPFR_RNDN);
        mpfr_ui_div(k1, 1, k1, MPFR_RNDN); /* 1 / sqrt 2 */
    } else if (op == LRP_ACT_GELU_TANH) {
        mpfr_const_pi(k1, MPFR_RNDN);
        mpfr_ui_div(k1, 2, k1, MPFR_RNDN);
        mpfr_sqrt(k1, k1, MPFR_RNDN);                   /* sqrt(2 / pi) */
        mpfr_set_str(k2, "0.044715", 10, MPFR_RNDN); /* the decimal constant */
    }
    for (int64_t i = lo; i < hi; i++) {
        mpfr_srcptr xi = TC(x) + i;
        mpfr_ptr yi = T(y) + i;
        switch ((lrp_act_op)op) {
        case LRP_ACT_GELU:
            /* 1 + erf(t) = erfc(-t): no cancellation for x << 0 (where
             * 1 + erf(t) at any fixed precision is 0) */
            mpfr_mul(t, xi, k1, MPFR_RNDN);
            mpfr_neg(t, t, MPFR_RNDN);
            mpfr_erfc(t, t, MPFR_RNDN);
            mpfr_mul(t, t, xi, MPFR_RNDN);
            mpfr_div_2ui(yi, t, 1, MPFR_RNDN);
            break;
        case LRP_ACT_GELU_TANH:
            /* (1 + tanh z) / 2 = 1 / (1 + exp(-2 z)): no cancellation */
            mpfr_sqr(t, xi, MPFR_RNDN);
            mpfr_mul(t, t, xi, MPFR_RNDN);
            mpfr_mul(t, t, k2, MPFR_RNDN);
            mpfr_add(t, t, xi, MPFR_RNDN);
            mpfr_mul(t, t, k1, MPFR_RNDN);
            mpfr_mul_si(t, t, -2, MPFR_RNDN);
            mpfr_exp(t, t, MPFR_RNDN);
            mpfr_add_ui(t, t, 1, MPFR_RNDN);
            mpfr_div(yi, xi, t, MPFR_RNDN);
            break;
        case LRP_ACT_SILU:
            mpfr_neg(t, xi, MPFR_RNDN);
            mpfr_exp(t, t, MPFR_RNDN);
            mpfr_add_ui(t, t, 1, MPFR_RNDN);
            mpfr_div(yi, xi, t, MPFR_RNDN);
            break;
        case LRP_ACT_TANH: mpfr_tanh(yi, xi, MPFR_RNDN); break;
        }
    }
    mpfr_clears(t, k1, k2, NULL);
}

void lrp_ref_act_map(void *c, void *y, const void *x, int op, int64_t n)
{
    act_job J = {((ref_ctx *)c)->prec, T(y), TC(x), op};
    lrp_ref_par_values(c, n, 1, act_range, &J);
}
