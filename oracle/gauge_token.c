/*
 * gauge_token.c -- the gauge of the token layers (gauge_token.h): first-
 * order float32 error bounds in units of u = 2^-24, derived here from the
 * formulas of docs/TRANSFORMERS.md sections 2 and 3, not from the code
 * that computes them (core/kind_token.c, fastpath/fp_token.c).
 *
 * LayerNorm / RMSNorm forward, per row of F (x with bound A_i):
 *   mu:     A_mu = (sum_i A_i + (F + 1) sum_i |x_i|) / F   (sum, division)
 *   d_i:    A_d = A_i + A_mu + |d_i|                        (subtraction)
 *   var:    A_var = (sum_i (2 |d_i| A_d + u A_d^2) + (F + 2) sum_i d_i^2) / F
 *           (the second-order term keeps a zero-variance row honest: there
 *           the first-order term vanishes while sigma moves by A_d^2)
 *   sigma:  relative  r_s = A_var / (2 (var + eps)) + 3   (add, sqrt, rstd)
 *   y_k:    |w_k| / sigma (A_d + |d_k| r_s) + 3 (|w_k d_k / sigma| + |b_k|)
 * var + eps = 0 makes the bound infinite (the forward is 0/0 there).
 * Activations: Lipschitz constant L times A plus the float32 evaluation:
 *   GELU (erf)  L = 1.13, 0.5 |x| (1.13 |t| exp(-t^2) + 10) + 3 |y|, t = x / sqrt 2
 *               (1 + erff cancels for x << 0: the error follows |x|, not |y|;
 *               10: 1 + w's rounding and an absolute error of erf up to 8 u:
 *               PyTorch 1.13's GELU kernel (vectorised erf, any tensor of 7
 *               elements or more) needs 6.6 there, measured on 2e7 inputs,
 *               |x| log-uniform in [1e-7, 12]: relative errors to 12 ulps
 *               near 0; with 4, as for glibc's erff, a clean LXT trace of a
 *               12-block BERT was SUSPECT, ratio 1.35; test_peer_capture.py
 *               test_torch_gelu_forward)
 *   GELU tanh   L = 1.13, 2 |x| (|x| + 0.045 |x|^3) sech^2(z) + 4 (|x| + |y|)
 *               (the rounded constants of z = sqrt(2/pi)(x + 0.044715 x^3))
 *   SiLU        L = 1.1,  4 |y|, or 2 |y| / u for x < -88 (expf(-x) overflows:
 *               float32 gives -0)
 *   Tanh        L = 1,    3 |y|
 * and every one 2^-149 absolute (a subnormal result).
 * (the glibc erff / expf / tanhf are within 2 ulp: 2u relative.)
 *
 * LayerNorm backward (ln_linear, ln_fine), per row, with s_k = R_k /
 * stab(y_k), c_k = w_k / sigma, t_k = c_k s_k, M = sum t / F:
 *   D_k  = the forward bound of y_k above, recomputed from A(x); or, where
 *          the subject divides by the y it stored (io->den_traced), |y_k|
 *          (its storage rounding)
 *   ds_k = |s_k| (D_k / |st_k| + 2) + B(R_k) / |st_k|
 *   dt_k = |t_k| (r_s + 2) + |c_k| ds_k
 *   dM   = (sum dt_k + (F + 1) sum |t_k|) / F
 *   ln_linear  d rin_i = A_i |t_i - M| + |x_i| (dt_i + dM) + 2 |x_i| (|t_i| + |M|)
 *   ln_fine    d rin_i = A_i |t_i| + |x_i| dt_i + |x_i t_i|
 * cond of a unit: u D_k / |st_k| (1 where st_k is within u D_k of 0); a
 * cell takes the largest cond of the units it draws from (the whole row
 * under ln_linear, its own unit under ln_fine) and of their R.  The sharp
 * tier takes the same figures (no independence is claimed here).
 */
#include "gauge_token.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gauge.h"
#include "oracle.h"
#include "pipeline.h"

#define U32 0x1p-24

typedef struct row_stats {
    double mu, var, sig, rs; /* rs: relative bound of sigma, units of u */
    double Amu;
} row_stats;

static void norm_row(row_stats *st, const float *x, const double *A, int64_t F, int rms,
                     double eps)
{
    double s = 0, sa = 0, sA = 0;
    for (int64_t i = 0; i < F; i++) {
        s += (double)x[i];
        sa += fabs((double)x[i]);
        sA += A[i];
    }
    st->mu = rms ? 0.0 : s / (double)F;
    st->Amu = rms ? 0.0 : (sA + (double)(F + 1) * sa) / (double)F;
    double v = 0, Av = 0;
    for (int64_t i = 0; i < F; i++) {
        double d = (double)x[i] - st->mu;
        double Ad = A[i] + st->Amu + fabs(d);
        v += d * d;
        Av += 2 * fabs(d) * Ad + U32 * Ad * Ad;
    }
    st->var = v / (double)F;
    Av = (Av + (double)(F + 2) * v) / (double)F;
    double ve = st->var + eps;
    st->sig = sqrt(ve);
    st->rs = ve > 0 ? Av / (2 * ve) + 3 : INFINITY;
}

/* the forward bound of y_k (units of u) */
static double norm_Dy(const row_stats *st, const lrp_layer *l, int64_t k, double xk, double Ak)
{
    double w = l->has_weight ? fabs((double)l->w[k]) : 1.0;
    double b = (l->kind == LRP_LAYER_LAYERNORM && l->has_bias) ? fabs((double)l->b[k]) : 0.0;
    double d = xk - st->mu;
    double Ad = Ak + st->Amu + fabs(d);
    if (!(st->sig > 0))
        return INFINITY;
    return w / st->sig * (Ad + fabs(d) * st->rs) + 3 * (w * fabs(d) / st->sig + b);
}

int lrp_gauge_token_fwd(const lrp_net *net, int li, int64_t B, const float *x, const float *y,
                        const double *Ai, const double *Asi, double *A, double *As)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    int64_t F = in->d[in->rank - 1], n = lrp_shape_numel(in), rows = B * (n / F);
    if (l->kind == LRP_LAYER_LAYERNORM || l->kind == LRP_LAYER_RMSNORM) {
        int rms = l->kind == LRP_LAYER_RMSNORM;
        for (int64_t q = 0; q < rows; q++) {
            row_stats st, ss;
            norm_row(&st, x + q * F, Ai + q * F, F, rms, (double)l->bn_eps);
            norm_row(&ss, x + q * F, Asi + q * F, F, rms, (double)l->bn_eps);
            for (int64_t k = 0; k < F; k++) {
                int64_t i = q * F + k;
                A[i] = norm_Dy(&st, l, k, (double)x[i], Ai[i]);
                As[i] = fmin(norm_Dy(&ss, l, k, (double)x[i], Asi[i]), A[i]);
            }
        }
        return 0;
    }
    (void)y;
    for (int64_t i = 0; i < B * n; i++) {
        /* |y| from x in binary64 (not the stored output, which may be the
         * subject's own: a float32 -0 where the value is 7e-38) */
        double xd = (double)x[i], v = fabs(xd), yy, L = 1.0, e = 0;
        switch (l->kind) {
        case LRP_LAYER_GELU: yy = fabs(0.5 * xd * erfc(-xd / sqrt(2.0))); break;
        case LRP_LAYER_SILU: yy = fabs(xd / (1 + exp(-xd))); break;
        default: yy = fabs(tanh(xd)); break;
        }
        switch (l->kind) {
        case LRP_LAYER_GELU:
            L = 1.13;
            if (l->approximate) {
                double z = 0.7978845608028654 * ((double)x[i] + 0.044715 * pow((double)x[i], 3));
                double th = tanh(z);
                e = 2 * v * (v + 0.045 * v * v * v) * (1 - th * th) + 4 * (v + yy);
            } else {
                double t = v / sqrt(2.0);
                e = 0.5 * v * (1.13 * t * exp(-t * t) + 10) + 3 * yy;
            }
            break;
        case LRP_LAYER_SILU:
            L = 1.1;
            /* expf(-x) overflows to inf for x < -88.7: y = -0, all of |y| lost */
            e = (double)x[i] < -88.0 ? 2 * yy / U32 : 4 * yy;
            break;
        default: /* Tanh */
            e = 3 * yy;
            break;
        }
        e += 0x1p-149 / U32; /* a subnormal result's absolute rounding */
        A[i] = L * Ai[i] + e;
        As[i] = fmin(L * Asi[i] + e, A[i]);
    }
    return 0;
}

int lrp_gauge_token_bwd(const lrp_net *net, int li, int64_t B, const lrp_gtok_bwd *io)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    int64_t F = in->d[in->rank - 1], n = lrp_shape_numel(in), rows = B * (n / F);
    int centre = l->rule.rule == LRP_RULE_LN_LINEAR;
    double *t = malloc((size_t)F * sizeof *t), *dt = malloc((size_t)F * sizeof *dt);
    double *ck = malloc((size_t)F * sizeof *ck);
    uint8_t *und = malloc((size_t)F);
    if (!t || !dt || !ck || !und) {
        free(t), free(dt), free(ck), free(und);
        return -1;
    }
    for (int64_t q = 0; q < rows; q++) {
        const float *x = io->x + q * F, *y = io->y + q * F, *R = io->R + q * F;
        row_stats st;
        norm_row(&st, x, io->Ax + q * F, F, 0, (double)l->bn_eps);
        double rowc = 0, rowcs = 0, sdt = 0, sat = 0, sum_t = 0;
        int row_und = 0;
        for (int64_t k = 0; k < F; k++) {
            int64_t j = q * F + k;
            double yk = (double)y[k], Rk = (double)R[k];
            double Dy = io->den_traced ? fabs((double)y[k])
                                       : norm_Dy(&st, l, k, (double)x[k], io->Ax[j]);
            double sg = lrp_stab_sign(l->rule.stab, lrp_zclass_of(yk)), stv = yk;
            double w = l->has_weight ? (double)l->w[k] : 1.0;
            double b = l->has_bias ? (double)l->b[k] : 0.0;
            ck[k] = w / st.sig;
            und[k] = 0;
            double cond, s, ds;
            if (sg == LRP_S_SKIP) { /* skip_zero at y = 0: s = R */
                s = Rk;
                ds = io->Rb[j];
                cond = 1; /* float32's y may be nonzero: another branch */
            } else {
                if (l->rule.eps != 0 && sg != 0)
                    stv = yk + sg * (double)l->rule.eps;
                if (stv == 0 || !isfinite(stv)) {
                    und[k] = 1;
                    row_und = 1;
                    t[k] = dt[k] = 0;
                    rowc = fmax(rowc, 1.0);
                    continue;
                }
                s = Rk / stv;
                ds = fabs(s) * (Dy / fabs(stv) + 2) + io->Rb[j] / fabs(stv);
                cond = U32 * Dy / fabs(stv);
                if (!isfinite(cond) || fabs(stv) <= U32 * Dy)
                    cond = fmax(cond, 1.0);
                cond = isfinite(cond) ? cond : 1.0;
            }
            cond = fmax(cond, io->Rc[j]);
            double cs = io->Rcs ? fmax(cond, io->Rcs[j]) : cond;
            if (cond > LRP_ILL_COND_SHARP)
                *io->ill_mass += fabs(Rk) * (1 + fabs(b) / fmax(fabs(stv), U32 * Dy));
            t[k] = ck[k] * s;
            dt[k] = fabs(t[k]) * (st.rs + 2) + fabs(ck[k]) * ds;
            sdt += dt[k];
            sat += fabs(t[k]);
            sum_t += t[k];
            if (centre) {
                rowc = fmax(rowc, cond);
                rowcs = fmax(rowcs, cs);
            }
            dt[k] = isfinite(dt[k]) ? dt[k] : INFINITY;
            /* ln_fine: the cell's cond is its unit's */
            if (!centre) {
                io->ci[j] = fmax(io->ci[j], cond);
                if (io->cs)
                    io->cs[j] = fmax(io->cs[j], cs);
            }
        }
        double M = centre ? sum_t / (double)F : 0.0;
        double dM = centre ? (sdt + (double)(F + 1) * sat) / (double)F : 0.0;
        for (int64_t i = 0; i < F; i++) {
            int64_t j = q * F + i;
            double xi = fabs((double)x[i]), Ai = io->Ax[j], d;
            if (centre)
                d = Ai * fabs(t[i] - M) + xi * (dt[i] + dM) + 2 * xi * (fabs(t[i]) + fabs(M));
            else
                d = Ai * fabs(t[i]) + xi * dt[i] + xi * fabs(t[i]);
            if (!isfinite(d))
                d = 3.0e38;
            io->Bi[j] += d;
            if (centre) {
                io->ci[j] = fmax(io->ci[j], rowc);
                if (io->cs)
                    io->cs[j] = fmax(io->cs[j], rowcs);
            }
            if ((centre && row_und) || (!centre && (und[i] & 1)))
                io->fi[j] |= LRP_CELL_UNDEFINED | LRP_CELL_ZERO_DEN;
            if (io->Ls) {
                io->Ls[j] += d;
                io->Ss[j] += xi * (fabs(t[i]) + fabs(M));
                *io->tl += d;
            }
        }
    }
    free(t), free(dt), free(ck), free(und);
    return 0;
}
