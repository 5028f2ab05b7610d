/*
 * naive_token.c -- see naive_token.h.  Everything at the precision of the
 * mpfr_t arguments (the tests use 256 bits), so rounding here is far below
 * the reference's own at p = 128.
 */
#include "naive_token.h"

#include <stdlib.h>

int naive_ln_row(mpfr_t *y, mpfr_t *R_in, mpfr_t bias, mpfr_t stab, mpfr_t mean, const float *x,
                 const float *w, const float *b, float eps, int F, const float *R_out,
                 float rule_eps, int (*stab_sign)(mpfr_srcptr y), int fine)
{
    mpfr_prec_t p = mpfr_get_prec(bias);
    mpfr_t mu, var, sig, t, d, den, s, m;
    mpfr_inits2(p, mu, var, sig, t, d, den, s, m, (mpfr_ptr)0);
    int bad = 0;
    /* mu and the biased variance, two passes */
    mpfr_set_zero(mu, 1);
    for (int i = 0; i < F; i++)
        mpfr_add_d(mu, mu, (double)x[i], MPFR_RNDN);
    mpfr_div_si(mu, mu, F, MPFR_RNDN);
    mpfr_set_zero(var, 1);
    for (int i = 0; i < F; i++) {
        mpfr_d_sub(d, (double)x[i], mu, MPFR_RNDN);
        mpfr_mul(t, d, d, MPFR_RNDN);
        mpfr_add(var, var, t, MPFR_RNDN);
    }
    mpfr_div_si(var, var, F, MPFR_RNDN);
    mpfr_add_d(sig, var, (double)eps, MPFR_RNDN);
    mpfr_sqrt(sig, sig, MPFR_RNDN);
    if (mpfr_zero_p(sig))
        bad = 1;
    mpfr_set_zero(bias, 1);
    mpfr_set_zero(stab, 1);
    mpfr_set_zero(mean, 1);
    for (int i = 0; i < F; i++)
        mpfr_set_zero(R_in[i], 1);
    for (int k = 0; k < F && !bad; k++) {
        double wk = w ? (double)w[k] : 1.0, bk = b ? (double)b[k] : 0.0;
        mpfr_d_sub(d, (double)x[k], mu, MPFR_RNDN);
        mpfr_mul_d(t, d, wk, MPFR_RNDN);
        mpfr_div(t, t, sig, MPFR_RNDN);
        mpfr_add_d(y[k], t, bk, MPFR_RNDN);
        int sg = stab_sign(y[k]);
        mpfr_set(den, y[k], MPFR_RNDN);
        if (sg)
            mpfr_add_d(den, den, sg * (double)rule_eps, MPFR_RNDN);
        if (mpfr_zero_p(den)) {
            bad = 1;
            break;
        }
        /* s = R_k / stab(y_k) */
        mpfr_d_div(s, (double)R_out[k], den, MPFR_RNDN);
        /* contributions z_ik s: ln_linear M_ki x_i = (w_k / sigma)(delta_ik - 1/F) x_i;
         * ln_fine: (w_k / sigma) delta_ik x_i, and the mean share -(w_k / sigma) mu */
        for (int i = 0; i < F; i++) {
            if (fine && i != k)
                continue;
            mpfr_set_d(m, (i == k ? 1.0 : 0.0), MPFR_RNDN);
            if (!fine)
                mpfr_sub_d(m, m, 1.0 / F, MPFR_RNDN); /* 1/F: F a power of 2 in the tests */
            mpfr_mul_d(m, m, wk, MPFR_RNDN);
            mpfr_div(m, m, sig, MPFR_RNDN);
            mpfr_mul_d(m, m, (double)x[i], MPFR_RNDN);
            mpfr_mul(m, m, s, MPFR_RNDN);
            mpfr_add(R_in[i], R_in[i], m, MPFR_RNDN);
        }
        if (fine) {
            mpfr_mul_d(m, mu, -wk, MPFR_RNDN);
            mpfr_div(m, m, sig, MPFR_RNDN);
            mpfr_mul(m, m, s, MPFR_RNDN);
            mpfr_add(mean, mean, m, MPFR_RNDN);
        }
        mpfr_mul_d(m, s, bk, MPFR_RNDN);
        mpfr_add(bias, bias, m, MPFR_RNDN);
        mpfr_sub(m, den, y[k], MPFR_RNDN);
        mpfr_mul(m, m, s, MPFR_RNDN);
        mpfr_add(stab, stab, m, MPFR_RNDN);
    }
    mpfr_clears(mu, var, sig, t, d, den, s, m, (mpfr_ptr)0);
    return bad ? -1 : 0;
}

void naive_gelu(mpfr_t y, float x, int approximate)
{
    /* 1 + erf and 1 + tanh as written: they cancel for x << 0 (down to
     * 2^-3000 for |x| <= 30), so the working precision is large */
    mpfr_prec_t p = mpfr_get_prec(y) + 4096;
    mpfr_t t, c;
    mpfr_inits2(p, t, c, (mpfr_ptr)0);
    if (approximate) {
        /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
        mpfr_set_d(t, (double)x, MPFR_RNDN);
        mpfr_pow_ui(t, t, 3, MPFR_RNDN);
        mpfr_set_str(c, "0.044715", 10, MPFR_RNDN);
        mpfr_mul(t, t, c, MPFR_RNDN);
        mpfr_add_d(t, t, (double)x, MPFR_RNDN);
        mpfr_const_pi(c, MPFR_RNDN);
        mpfr_d_div(c, 2.0, c, MPFR_RNDN);
        mpfr_sqrt(c, c, MPFR_RNDN);
        mpfr_mul(t, t, c, MPFR_RNDN);
        mpfr_tanh(t, t, MPFR_RNDN);
        mpfr_add_ui(t, t, 1, MPFR_RNDN);
    } else {
        /* 2 Phi(x) = 1 + erf(x / sqrt 2) */
        mpfr_sqrt_ui(c, 2, MPFR_RNDN);
        mpfr_set_d(t, (double)x, MPFR_RNDN);
        mpfr_div(t, t, c, MPFR_RNDN);
        mpfr_erf(t, t, MPFR_RNDN);
        mpfr_add_ui(t, t, 1, MPFR_RNDN);
    }
    mpfr_mul_d(t, t, 0.5 * (double)x, MPFR_RNDN);
    mpfr_set(y, t, MPFR_RNDN);
    mpfr_clears(t, c, (mpfr_ptr)0);
}

void naive_silu(mpfr_t y, float x)
{
    mpfr_t t;
    mpfr_init2(t, mpfr_get_prec(y) + 32);
    mpfr_set_d(t, -(double)x, MPFR_RNDN);
    mpfr_exp(t, t, MPFR_RNDN);
    mpfr_add_ui(t, t, 1, MPFR_RNDN);
    mpfr_d_div(y, (double)x, t, MPFR_RNDN);
    mpfr_clear(t);
}

void naive_tanh(mpfr_t y, float x)
{
    /* (e^2x - 1) / (e^2x + 1), another route than mpfr_tanh */
    mpfr_t t, u;
    mpfr_inits2(mpfr_get_prec(y) + 32, t, u, (mpfr_ptr)0);
    mpfr_set_d(t, 2.0 * (double)x, MPFR_RNDN);
    mpfr_expm1(t, t, MPFR_RNDN);
    mpfr_add_ui(u, t, 2, MPFR_RNDN);
    mpfr_div(y, t, u, MPFR_RNDN);
    mpfr_clears(t, u, (mpfr_ptr)0);
}
