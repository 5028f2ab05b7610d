/*
 * naive_token.h -- textbook LayerNorm LRP and the activations, written
 * from docs/TRANSFORMERS.md sections 2 and 3 the way the papers write
 * them, independent of core/ and reference/ (plain arrays, MPFR at a
 * precision of the caller's choice).  LayerNorm's relevance is written per
 * contribution through the frozen-sigma matrix
 *     M = diag(w / sigma) (I - 1 1^T / F),   R_i = sum_k M_ki x_i R_k / stab(y_k)
 * (ln_linear), or with the mean as a constant shift (ln_fine), not with
 * the backends' factored formula.
 */
#ifndef LRP_NAIVE_TOKEN_H
#define LRP_NAIVE_TOKEN_H

#include <mpfr.h>

/* One row of F: y (forward), R_in, and the absorbed totals bias, stab,
 * mean (each an initialised mpfr_t; the caller's precision).  w, b may be
 * NULL.  stab_sign(y) gives the stabilizer's sign s(y) (or 0); fine 0:
 * ln_linear, 1: ln_fine.  Returns 0, or -1 when the row is 0/0 (sigma 0)
 * or a denominator is zero without a stabilizer. */
int naive_ln_row(mpfr_t *y, mpfr_t *R_in, mpfr_t bias, mpfr_t stab, mpfr_t mean, const float *x,
                 const float *w, const float *b, float eps, int F, const float *R_out,
                 float rule_eps, int (*stab_sign)(mpfr_srcptr y), int fine);

/* GELU as x (1 + erf(x / sqrt 2)) / 2 and its tanh form as written (at
 * 4096 more bits than y, where they cancel; the reference takes erfc and
 * 1 / (1 + e^-2z) instead), SiLU as x / (1 + e^-x), tanh as
 * expm1(2x) / (expm1(2x) + 2). */
void naive_gelu(mpfr_t y, float x, int approximate);
void naive_silu(mpfr_t y, float x);
void naive_tanh(mpfr_t y, float x);

#endif
