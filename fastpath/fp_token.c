/*
 * fp_token.c -- the float32 backend's token-layer ops (core/pipeline.h:
 * norm_fwd, norm_bwd, act_map; core/kind_token.c has the formulas; the
 * MPFR twin is reference/ref_token.c).  Plain loops in the order a
 * framework computes them (PyTorch's CPU LayerNorm: the mean, then the
 * two-pass variance, rstd = 1 / sqrt(var + eps), (x - mu) rstd w + b), so
 * that the oracle measures an ordinary float32 implementation.
 *
 * Error (u = 2^-24, first order; the gauge, oracle/gauge_token.c, bounds
 * it independently):
 *   norm_fwd  mu: (F - 1) u of sum |x| / F (sequential sum) plus the
 *             division; var likewise of sum d^2 / F; sigma relative
 *             ~ (var error) / (2 (var + eps)) + 2u; y ~ 3u of |y - b| + |b|
 *             beyond what mu and sigma carry.  A constant row: d is the
 *             rounding noise of mu (0 when the sum is exact), amplified by
 *             1 / sqrt(eps).  sigma = 0: (x - mu) * inf = 0 * inf = NaN.
 *   norm_bwd  t = (w / sigma) s (2u), M = sum t / F (F u), x (t - M) (2u).
 *   act_map   glibc's erff, tanhf, expf are within 1-2 ulp (their
 *             documented maximal errors on x86-64); GELU's 1 + erff(x / sqrt 2)
 *             cancels for x << 0, where the error is about u |x| rather
 *             than u |y|; SiLU's x / (1 + expf(-x)) and tanhf are within a
 *             few u of |y|.
 */
#include "backend_f32.h"

#include <math.h>

void lrp_fp_norm_fwd(void *c, void *y, void *stat, const void *x, const float *w,
                     const float *b, float eps, int rms, int64_t rows, int64_t F)
{
    (void)c;
    float *Y = y, *S = stat;
    const float *X = x;
    for (int64_t q = 0; q < rows; q++) {
        const float *xr = X + q * F;
        float *yr = Y + q * F;
        float mu = 0.0f, var = 0.0f;
        if (!rms) {
            for (int64_t k = 0; k < F; k++)
                mu += xr[k];
            mu /= (float)F;
        }
        for (int64_t k = 0; k < F; k++) {
            float d = xr[k] - mu;
            var += d * d;
        }
        var /= (float)F;
        float sig = sqrtf(var + eps);
        float rstd = 1.0f / sig;
        S[2 * q] = mu;
        S[2 * q + 1] = sig;
        for (int64_t k = 0; k < F; k++) {
            float v = (xr[k] - mu) * rstd;
            if (w)
                v *= w[k];
            yr[k] = b ? v + b[k] : v;
        }
    }
}

void lrp_fp_norm_bwd(void *c, void *rin, void *absmean, const void *x, const void *stat,
                     const float *w, const void *s, int centre, int64_t rows, int64_t F)
{
    (void)c;
    float *Ri = rin, *Am = absmean;
    const float *X = x, *S = stat, *Sv = s;
    for (int64_t q = 0; q < rows; q++) {
        float mu = S[2 * q], sig = S[2 * q + 1];
        float M = 0.0f;
        if (centre) {
            for (int64_t k = 0; k < F; k++)
                M += (w ? w[k] / sig : 1.0f / sig) * Sv[q * F + k];
            M /= (float)F;
        }
        for (int64_t k = 0; k < F; k++) {
            float t = (w ? w[k] / sig : 1.0f / sig) * Sv[q * F + k];
            Ri[q * F + k] = X[q * F + k] * (centre ? t - M : t);
            if (Am)
                Am[q * F + k] = -(t * mu);
        }
    }
}

void lrp_fp_act_map(void *c, void *y, const void *x, int op, int64_t n)
{
    (void)c;
    float *Y = y;
    const float *X = x;
    /* 1 / sqrt 2, sqrt(2 / pi) and 0.044715 rounded to binary32 */
    const float rs2 = 0x1.6a09e6p-1f, k1 = 0x1.988454p-1f, k2 = 0.044715f;
    for (int64_t i = 0; i < n; i++) {
        float v = X[i];
        switch ((lrp_act_op)op) {
        case LRP_ACT_GELU: Y[i] = 0.5f * v * (1.0f + erff(v * rs2)); break;
        case LRP_ACT_GELU_TANH:
            Y[i] = 0.5f * v * (1.0f + tanhf(k1 * (v + k2 * v * v * v)));
            break;
        case LRP_ACT_SILU: Y[i] = v / (1.0f + expf(-v)); break;
        case LRP_ACT_TANH: Y[i] = tanhf(v); break;
        }
    }
}
