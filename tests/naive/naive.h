/*
 * naive.h -- textbook LRP on one Dense / Conv2D layer in exact rational
 * arithmetic (GMP mpq_t), independent of core/ and reference/ (only plain
 * float arrays and gmp.h), so a bug shared by the pipeline and the MPFR
 * backend cannot hide.  Every rule is written per contribution, the way
 * the papers write it:  R_i = sum_j num_ij / stab(den_j) R_j.
 *
 * Float inputs are dyadic rationals, so everything but BatchNorm's sqrt is
 * exact here; the reference must agree to its own rounding.
 */
#ifndef LRP_NAIVE_H
#define LRP_NAIVE_H

#include <gmp.h>

/* Dense is the conv with C = inputs, H = W = 1, O = outputs, 1x1 kernel. */
typedef struct naive_geom {
    int C, H, W, O;
    int kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, groups;
} naive_geom;

int naive_out_h(const naive_geom *g);
int naive_out_w(const naive_geom *g);

enum { NV_LRP0, NV_EPS, NV_GAMMA, NV_AB, NV_ZPLUS, NV_WSQUARE, NV_FLAT, NV_ZBOX };
/* stabilizer conventions, in docs/SPEC.md section 5 table order */
enum { NV_SIGN0_POS, NV_SIGNBIT, NV_SIGN0_ZERO, NV_ZERO_ONLY, NV_SKIP_ZERO, NV_POSITIVE };

typedef struct naive_rule {
    int rule, stab;
    float eps, gamma, alpha, beta, low, high;
    const float *lowv, *highv; /* per input or NULL */
    int bias;                  /* bias in the denominator */
    int generalized, drop0;    /* gamma variants (Zennit) */
    int fullbias, captum;      /* alpha-beta peer variants; captum on gamma: bias b only */
} naive_rule;

/* unit status */
enum { NV_OK, NV_UNDEF, NV_SKIP, NV_EMPTY, NV_DROPPED };

/* R_in[n_in] (init'ed by caller), gauge[n_in] = sum_j |term_ij| exactly,
 * absorbed[n_out] = R_j - sum_i (contributions of j), ugauge[n_out] =
 * |R_j| + sum_i |contribution_ij|, status[n_out] (the last part's unusual
 * status).  w: (O, C/g, kh, kw); b may be NULL. */
void naive_lrp(mpq_t *R_in, mpq_t *gauge, mpq_t *absorbed, mpq_t *ugauge, int *status,
               const naive_geom *g, const float *x, const float *w, const float *b,
               const float *R_out, const naive_rule *r);

/* Plain forward z_j (with bias) exactly. */
void naive_forward(mpq_t *z, const naive_geom *g, const float *x, const float *w,
                   const float *b);

#endif
