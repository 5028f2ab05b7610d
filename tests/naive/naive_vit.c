/*
 * naive_vit.c -- see naive_vit.h.
 */
#include "naive_vit.h"

#include <mpfr.h>
#include <stdlib.h>

#define P 256

void naive_vit_embed(double *R_in, double *cls, double *absorbed, const float *x, int C, int H,
                     int W, int p, int F, const float *w, const float *b, const float *R_out,
                     float eps)
{
    int nx = W / p, ny = H / p, K = C * p * p;
    mpfr_t z, t, s, acc, tot, clsum;
    mpfr_inits2(P, z, t, s, acc, tot, clsum, (mpfr_ptr)0);
    mpfr_set_zero(tot, 1);
    mpfr_set_zero(clsum, 1);
    for (int f = 0; f < F; f++)
        mpfr_add_d(clsum, clsum, (double)R_out[f], MPFR_RNDN);
    *cls = mpfr_get_d(clsum, MPFR_RNDN);
    /* the patch vector of token tok: v[k], k = (c p + dy) p + dx */
    double *v = malloc((size_t)K * sizeof *v);
    mpfr_t *Ri = malloc((size_t)(C * H * W) * sizeof *Ri);
    for (int i = 0; i < C * H * W; i++) {
        mpfr_init2(Ri[i], P);
        mpfr_set_zero(Ri[i], 1);
    }
    for (int ty = 0; ty < ny; ty++)
        for (int tx = 0; tx < nx; tx++) {
            int tok = ty * nx + tx;
            for (int c = 0; c < C; c++)
                for (int dy = 0; dy < p; dy++)
                    for (int dx = 0; dx < p; dx++)
                        v[(c * p + dy) * p + dx] =
                            (double)x[(c * H + ty * p + dy) * W + tx * p + dx];
            for (int f = 0; f < F; f++) {
                /* z = sum_k w_fk v_k + b_f: each product of two binary32
                 * exact at 256 bits, the sum rounded there (2^-256) */
                mpfr_set_d(z, b ? (double)b[f] : 0.0, MPFR_RNDN);
                for (int k = 0; k < K; k++) {
                    mpfr_set_d(t, (double)w[f * K + k], MPFR_RNDN);
                    mpfr_mul_d(t, t, v[k], MPFR_RNDN);
                    mpfr_add(z, z, t, MPFR_RNDN);
                }
                /* token tok is row 1 + tok of the CLS-prepended output */
                double R = (double)R_out[(1 + tok) * F + f];
                mpfr_set(s, z, MPFR_RNDN);
                if (mpfr_sgn(z) >= 0)
                    mpfr_add_d(s, s, (double)eps, MPFR_RNDN);
                else
                    mpfr_sub_d(s, s, (double)eps, MPFR_RNDN);
                if (mpfr_zero_p(s))
                    continue; /* no test draws a zero denominator */
                mpfr_d_div(s, R, s, MPFR_RNDN); /* R / stab(z) */
                mpfr_set_zero(acc, 1);
                for (int c = 0; c < C; c++)
                    for (int dy = 0; dy < p; dy++)
                        for (int dx = 0; dx < p; dx++) {
                            int k = (c * p + dy) * p + dx;
                            mpfr_set_d(t, (double)w[f * K + k], MPFR_RNDN);
                            mpfr_mul_d(t, t, v[k], MPFR_RNDN);
                            mpfr_mul(t, t, s, MPFR_RNDN);
                            int i = (c * H + ty * p + dy) * W + tx * p + dx;
                            mpfr_add(Ri[i], Ri[i], t, MPFR_RNDN);
                            mpfr_add(acc, acc, t, MPFR_RNDN);
                        }
                /* absorbed by this unit: R - what reached the pixels */
                mpfr_d_sub(t, R, acc, MPFR_RNDN);
                mpfr_add(tot, tot, t, MPFR_RNDN);
            }
        }
    for (int i = 0; i < C * H * W; i++) {
        R_in[i] = mpfr_get_d(Ri[i], MPFR_RNDN);
        mpfr_clear(Ri[i]);
    }
    *absorbed = mpfr_get_d(tot, MPFR_RNDN);
    free(Ri);
    free(v);
    mpfr_clears(z, t, s, acc, tot, clsum, (mpfr_ptr)0);
}
