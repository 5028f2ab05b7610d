/*
 * gauge_attn.c -- a-priori float32 error bounds of the attention kinds
 * (Softmax, Mul, MultiHeadAttention, Embedding, SelectToken; Position is an
 * Add with a constant and stays in gauge.c), in units of u = 2^-24, first
 * order, rigorous (worst case).  Everything is binary64 from the
 * reference's activations and relevance rounded to binary32; the
 * attention's internal tensors are recomputed here in binary64, with code
 * of this file's own (docs/TRANSFORMERS.md section 9 is the analysis).
 *
 * Bounds are absolute, at the scale of the row or layer: a softmax weight
 * that underflows to 0 in float32 is 100% wrong relative to the reference
 * and still within 2^-148 absolutely (the term UF below).  Per cell, for an
 * op out = f(in) the bound is  (own roundings) + (sensitivity) x (input
 * bounds), every sum of n terms charged n u sum |terms| (the sequential
 * float chain's worst case), every division by a stabilized denominator
 * st charged (bound of the numerator + |quotient| bound of st) / |st|.
 * The cond of a cell is u * (bound of a denominator) / |st| over the
 * denominators it depends on.  MultiHeadAttention (judged whole: its stages
 * are not traced) mixes every cell of a sample, so a first-order cond there
 * covers the sample; its quotients whose denominator is ill-determined are
 * bounded instead wherever the convention allows, and give each input cell
 * a cond of its own (below, "quotients whose denominator is ill-determined").
 * MultiHeadAttention also has a sharp tier of its own (below, "the sharp
 * tier of the attention"); the other kinds' rigorous bounds serve as their
 * sharp ones.
 */
#include "gauge_attn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gauge.h"
#include "pipeline.h"

#define U32 0x1p-24
/* an underflowed exp / quotient: at most 2^-148 absolutely, in units of u */
#define UF 0x1p-124

int lrp_gauge_attn_kind(lrp_layer_kind k)
{
    return k == LRP_LAYER_SOFTMAX || k == LRP_LAYER_MUL || k == LRP_LAYER_MHA ||
           k == LRP_LAYER_EMBEDDING || k == LRP_LAYER_SELECTTOKEN ||
           k == LRP_LAYER_ATTNSCORES || k == LRP_LAYER_ATTNSOFTMAX ||
           k == LRP_LAYER_ATTNCONTEXT;
}

static int64_t numel(const lrp_net *n, int li)
{
    return lrp_shape_numel(&n->layers[li].shape);
}

/* ---- softmax rows (shared by Softmax and the attention) ----
 * forward: s_k (1 + d_k), |d_k| <= (|x_k - m| + 2 + Ax_k + Ax_m) + D + cols + 2
 * with D the largest of the first part over the row (the sum's terms), plus
 * UF for underflow; Ax the input's bounds (absolute, units of u: an absolute
 * error of x is a relative error of exp(x)). */
static void sm_fwd_row(double *As, const double *x, const double *s, const double *Ax,
                       const uint8_t *msk, int64_t cols)
{
    double m = -INFINITY, Am = 0, D = 0;
    for (int64_t k = 0; k < cols; k++)
        if (!(msk && msk[k]) && x[k] > m) {
            m = x[k];
            Am = Ax[k];
        }
    for (int64_t k = 0; k < cols; k++)
        if (!(msk && msk[k]))
            D = fmax(D, fabs(x[k] - m) + 2 + Ax[k] + Am);
    for (int64_t k = 0; k < cols; k++)
        As[k] = (msk && msk[k]) ? 0.0
                                : s[k] * (fabs(x[k] - m) + 2 + Ax[k] + Am + D + (double)cols + 2) +
                                      UF;
}

/* backward of the Taylor rule on one row: out_i = xr_i (R_i - s_i sR).
 * Given R and its bounds Rb, s and its bounds As, xr and its bounds Axr:
 * writes the bound of out into ob and |out| into om; returns sR. */
static void sm_bwd_row(double *ob, double *om, const double *x, const double *xr,
                       const double *Axr, const double *s, const double *As, const double *R,
                       const double *Rb, const uint8_t *msk, int64_t cols)
{
    double sR = 0, sa = 0, sb = 0;
    (void)x;
    for (int64_t k = 0; k < cols; k++)
        if (!(msk && msk[k])) {
            sR += R[k];
            sa += fabs(R[k]);
            sb += Rb[k];
        }
    double esR = (double)cols * sa + sb;
    for (int64_t k = 0; k < cols; k++) {
        if (msk && msk[k]) {
            ob[k] = 0;
            om[k] = 0;
            continue;
        }
        double d = R[k] - s[k] * sR;
        double ed = Rb[k] + s[k] * esR + fabs(sR) * As[k] + fabs(s[k] * sR) + fabs(d);
        ob[k] = fabs(xr[k]) * ed + fabs(d) * Axr[k] + fabs(xr[k] * d);
        om[k] = fabs(xr[k] * d);
    }
}

/* ---- MultiHeadAttention in binary64 ---- */

typedef struct mha64 {
    int64_t T, F, H, d;
    double c;
    double *qkv, *Eqkv; /* (T, 3F) values and bounds */
    double *S, *ES;     /* (H, T, T) */
    double *X, *EX;     /* softmax input */
    double *A, *EA;
    double *O, *EO;     /* (T, F) */
    uint8_t *msk;       /* (T, T): excluded entries, or NULL */
    /* the sharp tier (lam > 0; below, "the sharp tier of the attention"):
     * the same bounds with independent roundings combined as a root of a
     * sum of squares; EAs is the softmax's per-cell part and kA (H, T) its
     * row's common relative part */
    double lam;
    double *Eqkvs, *ESs, *EXs, *EAs, *kA, *EOs;
} mha64;

static void mha64_free(mha64 *m)
{
    free(m->qkv), free(m->Eqkv), free(m->S), free(m->ES), free(m->X), free(m->EX);
    free(m->A), free(m->EA), free(m->O), free(m->EO), free(m->msk);
    free(m->Eqkvs), free(m->ESs), free(m->EXs), free(m->EAs), free(m->kA), free(m->EOs);
    memset(m, 0, sizeof *m);
}

static double sq(double v)
{
    return v * v;
}

/* the sharp bound of one softmax row: per cell, the relative error of the
 * cell's own exponential (its input's sharp bound Axs, the rounding of
 * x - m, of exp and of the division: independent per cell) times s_k into
 * Es; the row's common relative error into *kap: the weighted mean of the
 * cells' own errors (the normalising sum carries sum_k s_k e_k, bounded
 * linearly: those errors share their inputs' errors) and the sum's
 * roundings (lam sqrt(cols)).  The maximum's error is left out: exp(x - m)
 * / sum_k exp(x_k - m) does not depend on m, and the float32 maximum is
 * one of the float32 inputs. */
static void sm_fwd_row_s(double *Es, double *kap, const double *x, const double *s,
                         const double *Axs, const uint8_t *msk, int64_t cols, double lam)
{
    double m = -INFINITY, k = 0;
    for (int64_t j = 0; j < cols; j++)
        if (!(msk && msk[j]) && x[j] > m)
            m = x[j];
    for (int64_t j = 0; j < cols; j++) {
        if (msk && msk[j]) {
            Es[j] = 0;
            continue;
        }
        double e = sqrt(sq(Axs[j]) + lam * lam * (sq(x[j] - m) + 2));
        Es[j] = s[j] * e + UF;
        k += s[j] * e;
    }
    *kap = k + lam * sqrt((double)cols);
}

/* the forward of sample b in binary64 with its float32 bounds; pad: the
 * sample's key padding mask (T) or NULL */
static int mha64_fwd(mha64 *m, const lrp_layer *l, const float *x, const double *Ax,
                     const double *Axs, const float *pad)
{
    int64_t T = m->T, F = m->F, H = m->H, d = m->d;
    size_t n3 = (size_t)(T * 3 * F), nh = (size_t)(H * T * T), nf = (size_t)(T * F);
    const double lam = m->lam, L2 = lam * lam;
    m->qkv = calloc(n3, sizeof(double)), m->Eqkv = calloc(n3, sizeof(double));
    m->S = calloc(nh, sizeof(double)), m->ES = calloc(nh, sizeof(double));
    m->X = calloc(nh, sizeof(double)), m->EX = calloc(nh, sizeof(double));
    m->A = calloc(nh, sizeof(double)), m->EA = calloc(nh, sizeof(double));
    m->O = calloc(nf, sizeof(double)), m->EO = calloc(nf, sizeof(double));
    if (!m->qkv || !m->Eqkv || !m->S || !m->ES || !m->X || !m->EX || !m->A || !m->EA || !m->O ||
        !m->EO)
        return -1;
    if (lam > 0) {
        m->Eqkvs = calloc(n3, sizeof(double)), m->ESs = calloc(nh, sizeof(double));
        m->EXs = calloc(nh, sizeof(double)), m->EAs = calloc(nh, sizeof(double));
        m->kA = calloc((size_t)(H * T), sizeof(double)), m->EOs = calloc(nf, sizeof(double));
        if (!m->Eqkvs || !m->ESs || !m->EXs || !m->EAs || !m->kA || !m->EOs)
            return -1;
    }
#define MASKED(i, j) ((l->causal && (j) > (i)) || (pad && pad[j] != 0.0f))
    int inf_mask = (l->causal || pad) && isinf(l->mask_value);
    if (inf_mask) {
        if (!(m->msk = calloc((size_t)(T * T), 1)))
            return -1;
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++)
                m->msk[i * T + j] = MASKED(i, j);
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < 3 * F; o++) {
            double s = 0, g = 0, e = 0, v = 0, bj = l->has_bias ? (double)l->b[o] : 0;
            for (int64_t i = 0; i < F; i++) {
                double w = (double)l->w[o * F + i];
                s += (double)x[t * F + i] * w;
                g += fabs((double)x[t * F + i] * w);
                e += fabs(w) * Ax[t * F + i];
                if (lam > 0)
                    v += sq(w * Axs[t * F + i]);
            }
            m->qkv[t * 3 * F + o] = s + bj;
            m->Eqkv[t * 3 * F + o] = (double)(F + 1) * (g + fabs(bj)) + e;
            if (lam > 0)
                m->Eqkvs[t * 3 * F + o] =
                    fmin(sqrt(v + L2 * (double)(F + 1) * sq(g + fabs(bj))), m->Eqkv[t * 3 * F + o]);
        }
    double c = m->c;
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++) {
                double s = 0, g = 0, e = 0, v = 0;
                for (int64_t k = 0; k < d; k++) {
                    int64_t qi = i * 3 * F + h * d + k, ki = j * 3 * F + F + h * d + k;
                    s += m->qkv[qi] * m->qkv[ki];
                    g += fabs(m->qkv[qi] * m->qkv[ki]);
                    e += fabs(m->qkv[ki]) * m->Eqkv[qi] + fabs(m->qkv[qi]) * m->Eqkv[ki];
                    if (lam > 0)
                        v += sq(m->qkv[ki] * m->Eqkvs[qi]) + sq(m->qkv[qi] * m->Eqkvs[ki]);
                }
                int64_t z = (h * T + i) * T + j;
                m->S[z] = c * s;
                m->ES[z] = fabs(c) * ((double)(d + 1) * g + e) + fabs(c * s);
                m->X[z] = m->S[z];
                m->EX[z] = m->ES[z];
                if (lam > 0)
                    m->EXs[z] = m->ESs[z] =
                        fmin(hypot(fabs(c) * sqrt(v + L2 * (double)(d + 1) * g * g),
                                   lam * fabs(c * s)),
                             m->ES[z]);
                if (MASKED(i, j) && !inf_mask) {
                    m->X[z] = m->S[z] + (double)l->mask_value;
                    m->EX[z] += fabs(m->X[z]);
                    if (lam > 0) /* the mask's add: one rounding more */
                        m->EXs[z] = fmin(hypot(m->ESs[z], lam * fabs(m->X[z])), m->EX[z]);
                }
            }
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < T; i++) {
            int64_t z = (h * T + i) * T;
            const uint8_t *mk = m->msk ? m->msk + i * T : NULL;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < T; j++)
                if (!(mk && mk[j]))
                    mx = fmax(mx, m->X[z + j]);
            for (int64_t j = 0; j < T; j++)
                sum += (mk && mk[j]) ? 0 : exp(m->X[z + j] - mx);
            for (int64_t j = 0; j < T; j++) /* an all-masked row: 0 */
                m->A[z + j] = (mk && mk[j]) || sum == 0 ? 0 : exp(m->X[z + j] - mx) / sum;
            sm_fwd_row(m->EA + z, m->X + z, m->A + z, m->EX + z, mk, T);
            if (lam > 0)
                sm_fwd_row_s(m->EAs + z, m->kA + h * T + i, m->X + z, m->A + z, m->EXs + z, mk,
                             T, lam);
        }
#undef MASKED
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t p = 0; p < d; p++) {
                double s = 0, g = 0, e = 0, vs = 0;
                for (int64_t j = 0; j < T; j++) {
                    double a = m->A[(h * T + t) * T + j], v = m->qkv[j * 3 * F + 2 * F + h * d + p];
                    s += a * v;
                    g += fabs(a * v);
                    e += fabs(v) * m->EA[(h * T + t) * T + j] + a * m->Eqkv[j * 3 * F + 2 * F + h * d + p];
                    if (lam > 0)
                        vs += sq(v * m->EAs[(h * T + t) * T + j]) +
                              sq(a * m->Eqkvs[j * 3 * F + 2 * F + h * d + p]);
                }
                m->O[t * F + h * d + p] = s;
                m->EO[t * F + h * d + p] = (double)(T + 1) * g + e;
                /* the row's common relative error kA scales the whole sum:
                 * kA |O| (first order), not kA sum |A v| */
                if (lam > 0)
                    m->EOs[t * F + h * d + p] =
                        fmin(sqrt(vs + L2 * (double)(T + 1) * g * g) + m->kA[h * T + t] * fabs(s),
                             m->EO[t * F + h * d + p]);
            }
    return 0;
}

/* the out projection y_to = sum_i O_ti w2_oi + b_o of the attention
 * computed by mha64_fwd: its value (without the bias) into *s, sum |terms|
 * (the bias's included) into *ga, the propagated part of its bound into
 * *e; returns the rigorous bound, and with m->lam > 0 the sharp one into
 * *as (capped by the rigorous one) */
static double out_bound(const mha64 *m, const lrp_layer *l, int64_t t, int64_t o, double *s,
                        double *ga, double *e, double *as)
{
    int64_t F = m->F;
    double bj = l->has_bias ? (double)l->b2[o] : 0, v = 0;
    *s = *ga = *e = 0;
    for (int64_t i = 0; i < F; i++) {
        double w = (double)l->w2[o * F + i];
        *s += m->O[t * F + i] * w;
        *ga += fabs(m->O[t * F + i] * w);
        *e += fabs(w) * m->EO[t * F + i];
        if (m->lam > 0)
            v += sq(w * m->EOs[t * F + i]);
    }
    *ga += fabs(bj);
    double a = (double)(F + 1) * *ga + *e;
    *as = m->lam > 0 ? fmin(sqrt(v + m->lam * m->lam * (double)(F + 1) * *ga * *ga), a) : a;
    return a;
}

/* stabilized division bound: q = R / st */
static double st_of(const lrp_rule_spec *rs, double den)
{
    int sg = lrp_stab_sign(rs->stab, lrp_zclass_of(den));
    if (sg == LRP_S_SKIP)
        return 1.0; /* s = R: treated as division by 1 */
    return rs->eps != 0 && sg != 0 ? den + sg * (double)rs->eps : den;
}

/* ---- quotients whose denominator is ill-determined ----
 * A first-order bound holds while a denominator's relative error c is small;
 * above LRP_ILL_COND_SHARP the cell used to be ILL-CONDITIONED, and since
 * the attention mixes every cell of a sample, one such denominator excused
 * the sample's whole input.  Where the convention allows, the quotient gets
 * a bound that holds at any c instead, and no cond:
 * - c <= ILL_EXACT: |st_f| >= (1 - c) |st| (for R / stab(y) where y keeps
 *   its sign; for v / stab(v) = |v| / (|v| + eps) whatever v's sign), so the
 *   first-order terms divided by (1 - c) (squared for v / stab(v)) bound the
 *   error exactly;
 * - beyond: the quotient's magnitude alone, |R_f| / eps when |stab| >= eps
 *   whatever the float32 denominator (den_floored), h |g_f| when v / stab(v)
 *   lies in [0, 1] (ratio_bounded).
 * What such a denominator's error may move (its whole share of the
 * quotient's bound, in either case) is also carried on its own by the same
 * linear steps (the n arrays of mha64_bwd), and an input cell it may move
 * by more than LRP_ILL_COND_SHARP of itself (u N > 2^-4 |cell|) gets the
 * cond u N / |cell|: ILL-CONDITIONED where the ill-determined denominators
 * decide it, judged on its bound where they do not. */
#define ILL_EXACT 0.9990234375 /* 1 - 2^-10 */
/* the roundings of a quotient's magnitude bound (product, add, division) */
#define NL_ROUND (1 + 0x1p-20)

/* stab(v) = v + sign(v) eps, eps > 0: v / stab(v) = |v| / (|v| + eps) is
 * continuous in v, with slope eps / (|v| + eps)^2 */
static int sign_following(const lrp_rule_spec *rs)
{
    return rs->eps > 0 && lrp_stab_sign(rs->stab, LRP_ZC_NEG) == -1 &&
           lrp_stab_sign(rs->stab, LRP_ZC_POS) == 1;
}

/* v / stab(v) in [0, 1] for every finite float32 v (at a zero stab(0) the
 * quotient is not finite, which the non-finite checks judge) */
static int ratio_bounded(const lrp_rule_spec *rs)
{
    int sn = lrp_stab_sign(rs->stab, LRP_ZC_NEG), sp = lrp_stab_sign(rs->stab, LRP_ZC_POS);
    return rs->eps == 0 || ((sn == -1 || sn == 0) && (sp == 1 || sp == 0));
}

/* |stab(y)| >= eps > 0 for every finite float32 y, zeros included */
static int den_floored(const lrp_rule_spec *rs)
{
    return sign_following(rs) && abs(lrp_stab_sign(rs->stab, LRP_ZC_NEGZERO)) == 1 &&
           abs(lrp_stab_sign(rs->stab, LRP_ZC_POSZERO)) == 1;
}

/* q = R / stab(den), its bound eq and nonlinear part nq (units of u); the
 * cond of a first-order bound maxed into *cnd */
/* a linear part lin and n roundings of size r: lin + n r (rigorous, lam
 * 0), or under the sharp tier (lam > 0: lin already a sharp bound) the
 * roundings as independent, hypot(lin, lam sqrt(n) r) */
static double comb(double lin, double n, double r, double lam)
{
    return lam > 0 ? hypot(lin, lam * sqrt(n) * r) : lin + n * r;
}

static void divb(double *q, double *eq, double *nq, double R, double Rb, double den,
                 double Eden, const lrp_rule_spec *rs, double *cnd, double lam)
{
    double st = st_of(rs, den);
    *nq = 0;
    if (st == 0) {
        *q = 0;
        *eq = 0;
        *cnd = fmax(*cnd, 1.0);
        return;
    }
    *q = R / st;
    double c = U32 * Eden / fabs(st);
    double first = comb((Rb + fabs(*q) * Eden) / fabs(st), 2, fabs(*q), lam); /* first order */
    if ((R == 0 && Rb == 0) || !(c > LRP_ILL_COND_SHARP)) {
        *eq = first;
        if (R != 0 || Rb != 0)
            *cnd = fmax(*cnd, c);
        return;
    }
    if (c <= ILL_EXACT && fabs(den) > U32 * Eden) {
        /* y_f keeps y's sign, so st_f = y_f + s eps with the same s and
         * |st_f| >= (1 - c) |st|: |R_f / st_f - R / st| <= (u Rb + |q| u
         * Eden) / |st_f|.  (A y_f of the other sign takes the other
         * stabilizer: below.) */
        *nq = fabs(*q) * Eden / (fabs(st) * (1 - c));
        *eq = comb(Rb / (fabs(st) * (1 - c)) + *nq, 2, fabs(*q), lam);
        return;
    }
    if (den_floored(rs)) { /* |q_f| <= |R_f| / eps */
        *eq = *nq = fabs(*q) / U32 + (fabs(R) / U32 + Rb) * NL_ROUND / (double)rs->eps;
        return;
    }
    *eq = first;
    *cnd = fmax(*cnd, c);
}

/* q = h v g / stab(v), the quotient of a relevance that is itself
 * proportional to the denominator (R_v = h v g): the same float32 v is in
 * both, so only the stabilizer's share feels v's error:
 * d q / d v = h g s(v) eps / stab(v)^2.  Roundings: the product, the
 * stabilizer's add, the division (3 |q|), and an underflow.  ng: the
 * nonlinear part of eg, carried into nq. */
static int divg(double *q, double *eq, double *nq, double g, double eg, double ng, double v,
                double Ev, double h, const lrp_rule_spec *rs, double *cnd, double lam)
{
    double st = st_of(rs, v);
    if (st == 0) {
        *q = 0;
        *eq = 0;
        *nq = 0;
        if (g != 0 || eg != 0)
            *cnd = fmax(*cnd, 1.0);
        return 0;
    }
    double se = fabs(st - v);
    *q = h * v * g / st;
    *nq = h * fabs(v) * ng / fabs(st);
    double c = U32 * Ev * se / (st * st);
    double first =
        comb(h * (fabs(v) * eg / fabs(st) + fabs(g) * se * Ev / (st * st)), 3, fabs(*q), lam) +
        UF;
    if (g == 0 || se == 0 || !(c > LRP_ILL_COND_SHARP)) {
        *eq = first;
        if (g != 0 && se != 0)
            *cnd = fmax(*cnd, c);
        return 0;
    }
    double r = U32 * Ev / fabs(st);
    if (sign_following(rs) && r <= ILL_EXACT) {
        /* ||v_f| - |v|| <= r |st|: the slope of |v| / (|v| + eps) is at
         * most eps / ((1 - r) |st|)^2 between them */
        double dv = h * fabs(g) * se * Ev / (st * st * (1 - r) * (1 - r));
        /* g_f's error times v_f / stab(v_f), which is at most 1 */
        double rf = fmin(1.0, fabs(v) / fabs(st) + U32 * dv / fmax(h * fabs(g), 0x1p-1022));
        *eq = comb(h * rf * eg + dv, 3, fabs(*q), lam) + UF;
        *nq += dv;
        return 1;
    }
    if (ratio_bounded(rs)) { /* |q_f| <= h |g_f| */
        *eq = *nq = h * (fabs(g) / U32 + eg) * NL_ROUND + fabs(*q) / U32 + UF;
        return 1;
    }
    *eq = first;
    *cnd = fmax(*cnd, c);
    return 0;
}

/* ---- the sharp tier of the attention ----
 * The rigorous bound charges every sum its worst case, n u sum |terms|,
 * and hands every error on in absolute value.  Through the attention's
 * five sums of 64 to 2305 terms that exceeds most cells of its input at
 * BERT's width (docs/ORACLE.md, "Known gaps").  The sharp tier is the
 * model of oracle/gauge.c's (Higham and Mary 2019): roundings are
 * independent, mean-zero, and a sum of them is at most lam times the root
 * of the sum of their squared bounds (Hoeffding; lam = 8).  So here:
 * - a sum of n terms adds lam sqrt(n + 1) sum |terms| of its own, and the
 *   errors of its terms enter as a root of the sum of their squares times
 *   the terms' coefficients: the errors of different cells are taken as
 *   independent, as the forward sharp tier takes those of different
 *   activations mixed by the weights.  That is an assumption where cells
 *   share an upstream error: a query's rounding errors reach every score
 *   of its row (mixed by the keys), x's storage error every projection of
 *   its token (mixed by the weights).  Measured: clean traces at most 0.11
 *   of the sharp bound (ours up to BERT-base, LXT's on 2 BERT blocks), and
 *   bench/torch_lrp.py's within it on the attention fixtures; a trace
 *   beyond it but within 30 rigorous bounds is SUSPECT, never FAIL;
 * - except where one error is common to many cells, which no mixing
 *   averages: a softmax row's normalisation.  Its weights carry a common
 *   relative error gamma (kA: the weighted mean of the cells' own errors
 *   and the sum's roundings), and the Taylor rule's row sum sR an error
 *   common to the row's factors d_j = R_A,j - A_j sR.  These enter with
 *   their signed first-order coefficients: O = A v moves by gamma O, d_j
 *   by gamma (d_j - A_j sR) and by -A_j dsR, and a query's gradient
 *   sum_j s3_j k_j by the signed sums of those coefficients over the row
 *   (cg, ca below), exactly, without any assumption about signs;
 * - a quotient whose denominator is ill-determined keeps the rigorous
 *   tier's treatment (divb, divg with the sharp bounds as input).
 * Every sharp intermediate is capped by its rigorous bound, and each input
 * cell's sharp bound by its rigorous one.  The sharp cond is that of the
 * sharp denominators' errors; the share of ill-determined denominators
 * (the n arrays) is the rigorous tier's, which is at least the sharp one.
 * A cell beyond the sharp bound but within the rigorous one is SUSPECT
 * (correlated roundings), not FAIL (docs/ORACLE.md, "Per-cell checks"). */

/* the bound of the relevance to x of one sample: rigorous into bnd / cnd
 * (mag: |contribution|), and with m->lam > 0 the sharp tier into bnds /
 * cnds, from the sharp bounds Axs (x), Ays (y) and Rbs (R) */
static int mha64_bwd(const mha64 *m, const lrp_layer *l, const float *x, const double *Ax,
                     const double *Axs, const float *y, const double *Ay, const double *Ays,
                     const float *R32, const double *Rb, const double *Rbs, double *bnd,
                     double *cnd, double *mag, double *bnds, double *cnds)
{
    int64_t T = m->T, F = m->F, H = m->H, d = m->d;
    const lrp_rule_spec *rs = &l->rule;
    int cp = rs->rule == LRP_RULE_CPLRP;
    const double lam = m->lam, L2 = lam * lam;
    const int sh = lam > 0;
    size_t nf = (size_t)(T * F), n3 = (size_t)(T * 3 * F), nh = (size_t)(H * T * T);
    double *s1 = calloc(nf, 8), *e1 = calloc(nf, 8), *rO = calloc(nf, 8), *erO = calloc(nf, 8);
    double *s2 = calloc(nf, 8), *e2 = calloc(nf, 8), *g = calloc(n3, 8), *eg = calloc(n3, 8);
    double *RS = calloc(nh, 8), *eRS = calloc(nh, 8), *s3 = calloc(nh, 8), *e3 = calloc(nh, 8);
    double *RA = calloc((size_t)T, 8), *eRA = calloc((size_t)T, 8);
    double *s4 = calloc(n3, 8), *e4 = calloc(n3, 8);
    /* the nonlinear parts (above, "quotients whose denominator is
     * ill-determined"), carried by the same linear steps as the e arrays */
    double *n1 = calloc(nf, 8), *nrO = calloc(nf, 8), *n2 = calloc(nf, 8), *ng = calloc(n3, 8);
    double *nRA = calloc((size_t)T, 8), *nRS = calloc(nh, 8), *n3a = calloc(nh, 8);
    double *n4 = calloc(n3, 8);
    /* the sharp tier: the bounds of s1, rO, s2, g, the factors d (their
     * cells' own part), s3 (likewise) and s4; per score cell the signed
     * coefficients of its row's gamma (cg) and of its row's dsR (ca) in
     * s3, and whether they are exact (fo: s3's division first order) or
     * bounds of the magnitude; per row the bound of dsR (rsR) and the
     * row's sigma_j = s2 . v_j with its bound */
    double *e1s = NULL, *erOs = NULL, *e2s = NULL, *egs = NULL, *eRSs = NULL, *e3s = NULL;
    double *e4s = NULL, *cg = NULL, *ca = NULL, *rsR = NULL, *sg = NULL, *esg = NULL;
    double *eRAs = NULL, *rowsR = NULL;
    uint8_t *fo = NULL;
    int rc = -1;
    double cond = 0, conds = 0, dum = 0;
    if (!s1 || !e1 || !rO || !erO || !s2 || !e2 || !g || !eg || !RS || !eRS || !s3 || !e3 ||
        !RA || !eRA || !s4 || !e4 || !n1 || !nrO || !n2 || !ng || !nRA || !nRS || !n3a || !n4)
        goto done;
    if (sh) {
        e1s = calloc(nf, 8), erOs = calloc(nf, 8), e2s = calloc(nf, 8), egs = calloc(n3, 8);
        eRSs = calloc(nh, 8), e3s = calloc(nh, 8), e4s = calloc(n3, 8), cg = calloc(nh, 8);
        ca = calloc(nh, 8), rsR = calloc((size_t)(H * T), 8), sg = calloc((size_t)T, 8);
        esg = calloc((size_t)T, 8), eRAs = calloc((size_t)T, 8), fo = calloc(nh, 1);
        rowsR = calloc((size_t)(H * T), 8);
        if (!e1s || !erOs || !e2s || !egs || !eRSs || !e3s || !e4s || !cg || !ca || !rsR ||
            !sg || !esg || !eRAs || !fo || !rowsR)
            goto done;
    }
    for (int64_t i = 0; i < T * F; i++) {
        divb(&s1[i], &e1[i], &n1[i], (double)R32[i], Rb[i], (double)y[i], Ay[i], rs, &cond, 0);
        if (sh) {
            double q;
            divb(&q, &e1s[i], &dum, (double)R32[i], Rbs[i], (double)y[i], Ays[i], rs, &conds,
                 lam);
            e1s[i] = fmin(e1s[i], e1[i]);
        }
    }
    /* rO_p = O_p sum_j Wout_jp s1_j */
    for (int64_t t = 0; t < T; t++)
        for (int64_t p = 0; p < F; p++) {
            double s = 0, ga = 0, e = 0, nn = 0, v = 0;
            for (int64_t j = 0; j < F; j++) {
                double w = (double)l->w2[j * F + p];
                s += w * s1[t * F + j];
                ga += fabs(w * s1[t * F + j]);
                e += fabs(w) * e1[t * F + j];
                nn += fabs(w) * n1[t * F + j];
                if (sh)
                    v += sq(w * e1s[t * F + j]);
            }
            rO[t * F + p] = s; /* the gradient at O: R_O = O g */
            erO[t * F + p] = e + (double)(F + 1) * ga + UF;
            nrO[t * F + p] = nn;
            if (sh)
                erOs[t * F + p] =
                    fmin(sqrt(v + L2 * (double)(F + 1) * ga * ga) + UF, erO[t * F + p]);
        }
    for (int64_t i = 0; i < T * F; i++) {
        divg(&s2[i], &e2[i], &n2[i], rO[i], erO[i], nrO[i], m->O[i], m->EO[i], 1.0, rs, &cond, 0);
        if (sh) {
            double q;
            divg(&q, &e2s[i], &dum, rO[i], erOs[i], nrO[i], m->O[i], m->EOs[i], 1.0, rs, &conds,
                 lam);
            e2s[i] = fmin(e2s[i], e2[i]);
        }
    }
    /* g_v = A^T s2 */
    for (int64_t h = 0; h < H; h++)
        for (int64_t j = 0; j < T; j++)
            for (int64_t p = 0; p < d; p++) {
                double s = 0, ga = 0, e = 0, nn = 0, v = 0;
                for (int64_t t = 0; t < T; t++) {
                    double a = m->A[(h * T + t) * T + j], q = s2[t * F + h * d + p];
                    s += a * q;
                    ga += fabs(a * q);
                    e += a * e2[t * F + h * d + p] + fabs(q) * m->EA[(h * T + t) * T + j];
                    nn += a * n2[t * F + h * d + p];
                    if (sh) /* rows t apart: their gammas independent */
                        v += sq(a * e2s[t * F + h * d + p]) +
                             sq(q * m->EAs[(h * T + t) * T + j]) + sq(q * a * m->kA[h * T + t]);
                }
                int64_t gi = j * 3 * F + 2 * F + h * d + p;
                g[gi] = s;
                eg[gi] = e + (double)(T + 1) * ga;
                ng[gi] = nn;
                if (sh)
                    egs[gi] = fmin(sqrt(v + L2 * (double)(T + 1) * ga * ga), eg[gi]);
            }
    if (!cp) {
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                int64_t z = (h * T + t) * T;
                for (int64_t j = 0; j < T; j++) {
                    double s = 0, ga = 0, e = 0, nn = 0, v = 0;
                    for (int64_t p = 0; p < d; p++) {
                        double vv = m->qkv[j * 3 * F + 2 * F + h * d + p];
                        double q = s2[t * F + h * d + p];
                        s += q * vv;
                        ga += fabs(q * vv);
                        e += fabs(vv) * e2[t * F + h * d + p] +
                             fabs(q) * m->Eqkv[j * 3 * F + 2 * F + h * d + p];
                        nn += fabs(vv) * n2[t * F + h * d + p];
                        if (sh)
                            v += sq(vv * e2s[t * F + h * d + p]) +
                                 sq(q * m->Eqkvs[j * 3 * F + 2 * F + h * d + p]);
                    }
                    double a = m->A[z + j];
                    RA[j] = 0.5 * a * s;
                    eRA[j] = 0.5 * (a * (e + (double)(d + 1) * ga) + fabs(s) * m->EA[z + j]) +
                             fabs(RA[j]);
                    nRA[j] = 0.5 * a * nn;
                    if (sh) {
                        sg[j] = s;
                        esg[j] = sqrt(v + L2 * (double)(d + 1) * ga * ga);
                        /* sigma_j's error, A_j's own, two roundings */
                        eRAs[j] = sqrt(sq(0.5 * a * esg[j]) + sq(0.5 * s * m->EAs[z + j]) +
                                       2 * L2 * RA[j] * RA[j]);
                    }
                }
                /* the Taylor rule's factor d = R_A - A sR (R_S = S d) */
                const uint8_t *mk = m->msk ? m->msk + t * T : NULL;
                double sR = 0, sa = 0, sb = 0, sn = 0, sv = 0;
                for (int64_t j = 0; j < T; j++)
                    if (!(mk && mk[j])) {
                        sR += RA[j];
                        sa += fabs(RA[j]);
                        sb += eRA[j];
                        sn += nRA[j];
                        if (sh)
                            sv += eRAs[j] * eRAs[j];
                    }
                double esR = (double)T * sa + sb;
                if (sh) { /* dsR: common to the row's factors */
                    rsR[h * T + t] = fmin(sqrt(sv + L2 * (double)(T + 1) * sa * sa), esR);
                    rowsR[h * T + t] = sR;
                }
                for (int64_t j = 0; j < T; j++) {
                    if (mk && mk[j]) {
                        RS[z + j] = eRS[z + j] = nRS[z + j] = 0;
                        continue;
                    }
                    double dd = RA[j] - m->A[z + j] * sR;
                    RS[z + j] = dd;
                    eRS[z + j] = eRA[j] + m->A[z + j] * esR + fabs(sR) * m->EA[z + j] +
                                 fabs(m->A[z + j] * sR) + fabs(dd) + UF;
                    nRS[z + j] = nRA[j] + m->A[z + j] * sn;
                    if (sh) {
                        /* the cell's own part: sigma_j's error, A_j's own
                         * error with its signed coefficient s_j / 2 - sR,
                         * the roundings of RA_j (2), A_j sR and the
                         * difference; the row's gamma and dsR go by cg, ca */
                        double a = m->A[z + j];
                        eRSs[z + j] = fmin(sqrt(sq(0.5 * a * esg[j]) +
                                                sq((0.5 * sg[j] - sR) * m->EAs[z + j]) +
                                                L2 * (2 * RA[j] * RA[j] + sq(a * sR) + dd * dd)) +
                                               UF,
                                           eRS[z + j]);
                    }
                }
            }
        /* s3 = S d / stab(S) */
        for (int64_t i = 0; i < H * T * T; i++) {
            divg(&s3[i], &e3[i], &n3a[i], RS[i], eRS[i], nRS[i], m->S[i], m->ES[i], 1.0, rs,
                 &cond, 0);
            if (sh) {
                double q;
                int bounded = divg(&q, &e3s[i], &dum, RS[i], eRSs[i], nRS[i], m->S[i], m->ESs[i],
                                   1.0, rs, &conds, lam);
                e3s[i] = fmin(e3s[i], e3[i]);
                /* s3's sensitivity to d: S / stab(S) to first order, at most
                 * 1 where divg bounded it; d's to gamma: d - A sR; to dsR:
                 * -A */
                double st = st_of(rs, m->S[i]);
                double f = bounded || st == 0 ? 1.0 : m->S[i] / st;
                fo[i] = (uint8_t)(!bounded && st != 0);
                cg[i] = f * (RS[i] - m->A[i] * rowsR[i / T]);
                ca[i] = -f * m->A[i];
            }
        }
        double c = m->c;
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++)
                for (int64_t k = 0; k < d; k++) {
                    /* g_q(t, k) = c sum_j s3(t, j) k(j, k); g_k(t, k) = c sum_j s3(j, t) q(j, k) */
                    double sq_ = 0, gq = 0, eq = 0, sk = 0, gk = 0, ek = 0, nq = 0, nk = 0;
                    double vq = 0, vk = 0, c1 = 0, c2 = 0, a1 = 0, a2 = 0;
                    for (int64_t j = 0; j < T; j++) {
                        int64_t zi = (h * T + t) * T + j, zj = (h * T + j) * T + t;
                        double a = s3[zi], ea = e3[zi];
                        double kk = m->qkv[j * 3 * F + F + h * d + k];
                        double ekk = m->Eqkv[j * 3 * F + F + h * d + k];
                        sq_ += a * kk;
                        gq += fabs(a * kk);
                        eq += fabs(kk) * ea + fabs(a) * ekk;
                        nq += fabs(kk) * n3a[zi];
                        double b = s3[zj], eb = e3[zj];
                        double qq = m->qkv[j * 3 * F + h * d + k];
                        double eqq = m->Eqkv[j * 3 * F + h * d + k];
                        sk += b * qq;
                        gk += fabs(b * qq);
                        ek += fabs(qq) * eb + fabs(b) * eqq;
                        nk += fabs(qq) * n3a[zj];
                        if (sh) {
                            vq += sq(kk * e3s[zi]) +
                                  sq(a * m->Eqkvs[j * 3 * F + F + h * d + k]);
                            /* row (h, t)'s common errors, signed where exact */
                            if (fo[zi])
                                c1 += kk * cg[zi], c2 += kk * ca[zi];
                            else
                                a1 += fabs(kk * cg[zi]), a2 += fabs(kk * ca[zi]);
                            /* row (h, j)'s: one term of this sum each */
                            vk += sq(qq * e3s[zj]) + sq(b * m->Eqkvs[j * 3 * F + h * d + k]) +
                                  sq(qq * (fabs(cg[zj]) * m->kA[h * T + j] +
                                           fabs(ca[zj]) * rsR[h * T + j]));
                        }
                    }
                    int64_t qi = t * 3 * F + h * d + k, ki = t * 3 * F + F + h * d + k;
                    g[qi] = c * sq_;
                    eg[qi] = fabs(c) * (eq + (double)(T + 1) * gq) + fabs(c * sq_);
                    ng[qi] = fabs(c) * nq;
                    g[ki] = c * sk;
                    eg[ki] = fabs(c) * (ek + (double)(T + 1) * gk) + fabs(c * sk);
                    ng[ki] = fabs(c) * nk;
                    if (sh) {
                        double cq = m->kA[h * T + t] * (fabs(c1) + a1) +
                                    rsR[h * T + t] * (fabs(c2) + a2);
                        egs[qi] = fmin(fabs(c) * (hypot(sqrt(vq + L2 * (double)(T + 1) * gq * gq),
                                                        lam * fabs(sq_)) +
                                                  cq),
                                       eg[qi]);
                        egs[ki] = fmin(fabs(c) * hypot(sqrt(vk + L2 * (double)(T + 1) * gk * gk),
                                                       lam * fabs(sk)),
                                       eg[ki]);
                    }
                }
    }
    double half = cp ? 1.0 : 0.5;
    for (int64_t i = 0; i < T * 3 * F; i++) {
        divg(&s4[i], &e4[i], &n4[i], g[i], eg[i] + UF, ng[i], m->qkv[i], m->Eqkv[i], half, rs,
             &cond, 0);
        if (sh) {
            double q;
            divg(&q, &e4s[i], &dum, g[i], egs[i] + UF, ng[i], m->qkv[i], m->Eqkvs[i], half, rs,
                 &conds, lam);
            e4s[i] = fmin(e4s[i], e4[i]);
        }
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < F; i++) {
            double s = 0, ga = 0, e = 0, nn = 0, v = 0;
            for (int64_t o = 0; o < 3 * F; o++) {
                double w = (double)l->w[o * F + i];
                s += w * s4[t * 3 * F + o];
                ga += fabs(w * s4[t * 3 * F + o]);
                e += fabs(w) * e4[t * 3 * F + o];
                nn += fabs(w) * n4[t * 3 * F + o];
                if (sh)
                    v += sq(w * e4s[t * 3 * F + o]);
            }
            double xv = (double)x[t * F + i];
            double b =
                fabs(xv) * (e + (double)(3 * F + 1) * ga) + Ax[t * F + i] * ga + fabs(xv * s);
            bnd[t * F + i] += b;
            mag[t * F + i] += fabs(xv * s);
            /* the cell's own cond: how much of it the ill-determined
             * denominators may move (their nonlinear parts) */
            double N = fabs(xv) * nn, cc = 0;
            if (N > 0)
                cc = fabs(xv * s) > 0 ? fmin(U32 * N / fabs(xv * s), 1.0e30) : 1.0;
            cnd[t * F + i] = fmax(cnd[t * F + i], cc);
            if (sh) {
                /* x's own error moves R_x = x s by dx s */
                double bs = hypot(fabs(xv) * sqrt(v + L2 * (double)(3 * F + 1) * ga * ga),
                                  hypot(Axs[t * F + i] * fabs(s), lam * fabs(xv * s)));
                bnds[t * F + i] += fmin(bs, b);
                cnds[t * F + i] = fmax(cnds[t * F + i], cc);
            }
        }
    for (int64_t i = 0; i < T * F; i++) {
        cnd[i] = fmax(cnd[i], cond);
        if (sh)
            cnds[i] = fmax(cnds[i], conds);
    }
    rc = 0;
done:
    free(s1), free(e1), free(rO), free(erO), free(s2), free(e2), free(g), free(eg);
    free(RS), free(eRS), free(s3), free(e3), free(RA), free(eRA), free(s4), free(e4);
    free(n1), free(nrO), free(n2), free(ng), free(nRA), free(nRS), free(n3a), free(n4);
    free(e1s), free(erOs), free(e2s), free(egs), free(eRSs), free(e3s), free(e4s), free(cg);
    free(ca), free(rsR), free(sg), free(esg), free(eRAs), free(fo), free(rowsR);
    return rc;
}

/* ---- the attention as stages (core/kind_attnparts.c) ----
 * Each stage is one sum per cell, judged on its own inputs: with the
 * trace's activations those are the subject's q, k, S, A, v, exact, and
 * the bounds are those of one product (as a Dense layer's), not of the
 * whole attention's chain.  The quotient R / stab(out) divides the trace's
 * relevance by the stage's output, recomputed here from the inputs with
 * its forward bound (which covers the subject's stored output and any
 * recomputation of it); divb treats an ill-determined one as above.  A
 * cell's cond: the largest first-order cond of the quotients it draws
 * from, and the share the ill-determined ones may move (u N / |cell|). */

typedef struct stage_q {
    double *s, *e, *nl, *cd; /* quotient, its bound, nonlinear part, cond */
} stage_q;

static void stage_q_free(stage_q *z)
{
    free(z->s), free(z->e), free(z->nl), free(z->cd);
    memset(z, 0, sizeof *z);
}

static int stage_q_alloc(stage_q *z, int64_t n)
{
    z->s = calloc((size_t)n, 8), z->e = calloc((size_t)n, 8);
    z->nl = calloc((size_t)n, 8), z->cd = calloc((size_t)n, 8);
    return z->s && z->e && z->nl && z->cd ? 0 : -1;
}

/* S_hij = c sum_p q_i,hd+p k_j,hd+p of one sample and its forward bound */
static void scores64(double *S, double *ES, const float *q, const double *Aq, const float *k,
                     const double *Ak, int64_t H, int64_t T, int64_t F, double c)
{
    int64_t d = F / H;
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++) {
                double s = 0, g = 0, e = 0;
                for (int64_t p = 0; p < d; p++) {
                    int64_t qi = i * F + h * d + p, kj = j * F + h * d + p;
                    s += (double)q[qi] * k[kj];
                    g += fabs((double)q[qi] * k[kj]);
                    e += fabs((double)k[kj]) * Aq[qi] + fabs((double)q[qi]) * Ak[kj];
                }
                int64_t z = (h * T + i) * T + j;
                S[z] = c * s;
                ES[z] = fabs(c) * ((double)(d + 1) * g + e) + fabs(c * s) + UF;
            }
}

/* O_t,hd+p = sum_j A_htj v_j,hd+p of one sample and its forward bound */
static void context64(double *O, double *EO, const float *A, const double *AA, const float *v,
                      const double *Av, int64_t H, int64_t T, int64_t F)
{
    int64_t d = F / H;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t p = 0; p < d; p++) {
                double s = 0, g = 0, e = 0;
                for (int64_t j = 0; j < T; j++) {
                    int64_t a = (h * T + t) * T + j, vj = j * F + h * d + p;
                    s += (double)A[a] * v[vj];
                    g += fabs((double)A[a] * v[vj]);
                    e += fabs((double)v[vj]) * AA[a] + fabs((double)A[a]) * Av[vj];
                }
                O[t * F + h * d + p] = s;
                EO[t * F + h * d + p] = (double)(T + 1) * g + e + UF;
            }
}

/* the quotients R / stab(den) of n cells; yt (or NULL): the stage's
 * output as the trace holds it, the denominator when the subject divides
 * by it (lrp_ga.den_traced), with its storage rounding u |y| alone */
static void stage_divide(stage_q *z, const float *R, const double *Rb, const double *den,
                         const double *Eden, const float *yt, const lrp_rule_spec *rs, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        z->cd[i] = 0;
        double dv = yt ? (double)yt[i] : den[i], ev = yt ? fabs(dv) : Eden[i];
        divb(&z->s[i], &z->e[i], &z->nl[i], (double)R[i], Rb[i], dv, ev, rs, &z->cd[i], 0);
    }
}

/* one input cell x . (scale * sum of terms) times the factor h: the sums
 * already taken (g the value, ga sum |terms|, e the propagated bound, nn
 * the nonlinear part, cm the largest cond), n terms */
static void stage_cell(double *bnd, double *cnd, double *mag, double x, double Ax, double h,
                       double scale, double g, double ga, double e, double nn, double cm,
                       int64_t n)
{
    double gv = scale * g;
    double eg = fabs(scale) * (e + (double)(n + 1) * ga) + fabs(gv);
    double v = h * x * gv;
    /* every term exactly 0 (a relevance that is 0 where it comes from):
     * the cell is an exact 0, nothing to underflow */
    *bnd += h * (fabs(x) * eg + Ax * fabs(gv)) + fabs(v) + (ga > 0 || e > 0 ? UF : 0.0);
    *mag += fabs(v);
    double N = h * fabs(x) * fabs(scale) * nn, c = cm;
    if (N > 0)
        c = fmax(c, fabs(v) > 0 ? fmin(U32 * N / fabs(v), 1.0e30) : 1.0);
    *cnd = fmax(*cnd, c);
}

static int scores_bwd(const lrp_ga *g, int k, double *bnd, double *cnd, double *mag)
{
    const lrp_net *net = g->net;
    const lrp_layer *l = &net->layers[g->li];
    int64_t H = l->shape.d[0], T = l->shape.d[1], F = net->layers[l->in[0]].shape.d[1];
    int64_t d = F / H, n = H * T * T, nin = T * F;
    double c = (double)l->scale;
    double *S = malloc((size_t)n * 8), *ES = malloc((size_t)n * 8);
    stage_q z = {0};
    int rc = -1;
    if (!S || !ES || stage_q_alloc(&z, n))
        goto done;
    for (int64_t b = 0; b < g->B; b++) {
        const float *q = g->act[l->in[0]] + b * nin, *kk = g->act[l->in[1]] + b * nin;
        const double *Aq = g->A[l->in[0]] + b * nin, *Ak = g->A[l->in[1]] + b * nin;
        scores64(S, ES, q, Aq, kk, Ak, H, T, F, c);
        stage_divide(&z, g->rel[g->li] + b * n, g->Rb + b * n, S, ES,
                     g->den_traced ? g->act[g->li] + b * n : NULL, &l->rule, n);
        /* k = 0: cell (i, hd+p) sums s3_ij k_j over j; k = 1: cell (j,
         * hd+p) sums s3_ij q_i over i */
        const float *x = k == 0 ? q : kk, *o = k == 0 ? kk : q;
        const double *Ax = k == 0 ? Aq : Ak, *Ao = k == 0 ? Ak : Aq;
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++)
                for (int64_t p = 0; p < d; p++) {
                    double s = 0, ga = 0, e = 0, nn = 0, cm = 0;
                    for (int64_t j = 0; j < T; j++) {
                        int64_t zz = k == 0 ? (h * T + i) * T + j : (h * T + j) * T + i;
                        int64_t oj = j * F + h * d + p;
                        double ov = (double)o[oj];
                        s += z.s[zz] * ov;
                        ga += fabs(z.s[zz] * ov);
                        e += fabs(ov) * z.e[zz] + fabs(z.s[zz]) * Ao[oj];
                        nn += fabs(ov) * z.nl[zz];
                        cm = fmax(cm, z.cd[zz]);
                    }
                    int64_t xi = i * F + h * d + p;
                    stage_cell(bnd + b * nin + xi, cnd + b * nin + xi, mag + b * nin + xi,
                               (double)x[xi], Ax[xi], 0.5, c, s, ga, e, nn, cm, T);
                }
    }
    rc = 0;
done:
    free(S), free(ES);
    stage_q_free(&z);
    return rc;
}

static int context_bwd(const lrp_ga *g, int k, double *bnd, double *cnd, double *mag)
{
    const lrp_net *net = g->net;
    const lrp_layer *l = &net->layers[g->li];
    int64_t H = net->layers[l->in[0]].shape.d[0], T = l->shape.d[0], F = l->shape.d[1];
    int64_t d = F / H, n = T * F, na = H * T * T;
    int cp = l->rule.rule == LRP_RULE_CPLRP;
    if (cp && k == 0)
        return 0; /* the weights are constants: R_A = +0, exactly */
    double *O = malloc((size_t)n * 8), *EO = malloc((size_t)n * 8);
    stage_q z = {0};
    int rc = -1;
    if (!O || !EO || stage_q_alloc(&z, n))
        goto done;
    for (int64_t b = 0; b < g->B; b++) {
        const float *A = g->act[l->in[0]] + b * na, *v = g->act[l->in[1]] + b * n;
        const double *AA = g->A[l->in[0]] + b * na, *Av = g->A[l->in[1]] + b * n;
        context64(O, EO, A, AA, v, Av, H, T, F);
        stage_divide(&z, g->rel[g->li] + b * n, g->Rb + b * n, O, EO,
                     g->den_traced ? g->act[g->li] + b * n : NULL, &l->rule, n);
        if (k == 0) { /* cell (h, t, j): sum over p of s2_t,hd+p v_j,hd+p */
            for (int64_t h = 0; h < H; h++)
                for (int64_t t = 0; t < T; t++)
                    for (int64_t j = 0; j < T; j++) {
                        double s = 0, ga = 0, e = 0, nn = 0, cm = 0;
                        for (int64_t p = 0; p < d; p++) {
                            int64_t zt = t * F + h * d + p, vj = j * F + h * d + p;
                            double vv = (double)v[vj];
                            s += z.s[zt] * vv;
                            ga += fabs(z.s[zt] * vv);
                            e += fabs(vv) * z.e[zt] + fabs(z.s[zt]) * Av[vj];
                            nn += fabs(vv) * z.nl[zt];
                            cm = fmax(cm, z.cd[zt]);
                        }
                        int64_t a = (h * T + t) * T + j;
                        stage_cell(bnd + b * na + a, cnd + b * na + a, mag + b * na + a,
                                   (double)A[a], AA[a], 0.5, 1.0, s, ga, e, nn, cm, d);
                    }
        } else { /* cell (j, hd+p): sum over t of A_htj s2_t,hd+p */
            for (int64_t h = 0; h < H; h++)
                for (int64_t j = 0; j < T; j++)
                    for (int64_t p = 0; p < d; p++) {
                        double s = 0, ga = 0, e = 0, nn = 0, cm = 0;
                        for (int64_t t = 0; t < T; t++) {
                            int64_t zt = t * F + h * d + p, a = (h * T + t) * T + j;
                            double av = (double)A[a];
                            s += av * z.s[zt];
                            ga += fabs(av * z.s[zt]);
                            e += fabs(av) * z.e[zt] + fabs(z.s[zt]) * AA[a];
                            nn += fabs(av) * z.nl[zt];
                            cm = fmax(cm, z.cd[zt]);
                        }
                        int64_t vj = j * F + h * d + p;
                        stage_cell(bnd + b * n + vj, cnd + b * n + vj, mag + b * n + vj,
                                   (double)v[vj], Av[vj], cp ? 1.0 : 0.5, 1.0, s, ga, e, nn, cm,
                                   T);
                    }
        }
    }
    rc = 0;
done:
    free(O), free(EO);
    stage_q_free(&z);
    return rc;
}

/* the masks of AttnSoftmax row (sample b, query i): -inf entries excluded
 * (mk, or NULL when none), finite ones added (madd) */
static const uint8_t *asm_row_mask(const lrp_net *net, const lrp_layer *l, int64_t b, int64_t i,
                                   int64_t T, uint8_t *mk, double *madd)
{
    const float *kpm = l->use_padding_mask ? net->key_padding_mask + b * T : NULL;
    int any = 0;
    for (int64_t j = 0; j < T; j++) {
        int m = (l->causal && j > i) || (kpm && kpm[j] != 0.0f);
        any |= m;
        mk[j] = (uint8_t)m;
        madd[j] = m && !isinf(l->mask_value) ? (double)l->mask_value : 0.0;
    }
    return any && isinf(l->mask_value) ? mk : NULL;
}

/* AttnSoftmax: forward (ob NULL: the bound of A into As) or the Taylor
 * rule's bound at the input */
static int asm_gauge(const lrp_ga *g, double *Aout, double *bnd, double *mag)
{
    const lrp_net *net = g->net;
    const lrp_layer *l = &net->layers[g->li];
    int64_t H = l->shape.d[0], T = l->shape.d[1], n = H * T * T;
    double *buf = malloc((size_t)(9 * T) * sizeof *buf);
    uint8_t *mk = malloc((size_t)T);
    if (!buf || !mk) {
        free(buf), free(mk);
        return -1;
    }
    double *X = buf, *EX = buf + T, *sd = buf + 2 * T, *As = buf + 3 * T, *xr = buf + 4 * T,
           *Rd = buf + 5 * T, *ob = buf + 6 * T, *om = buf + 7 * T, *madd = buf + 8 * T;
    for (int64_t b = 0; b < g->B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                int64_t r0 = b * n + (h * T + i) * T;
                const float *S = g->act[l->in[0]] + r0;
                const double *AS = g->A[l->in[0]] + r0;
                const uint8_t *m = asm_row_mask(net, l, b, i, T, mk, madd);
                for (int64_t j = 0; j < T; j++) {
                    xr[j] = (double)S[j];
                    X[j] = xr[j] + madd[j];
                    /* a finite mask added: one rounding of X */
                    EX[j] = AS[j] + (madd[j] != 0 ? fabs(X[j]) : 0.0);
                    sd[j] = (double)g->act[g->li][r0 + j];
                }
                sm_fwd_row(Aout ? Aout + r0 : As, X, sd, EX, m, T);
                if (Aout)
                    continue;
                for (int64_t j = 0; j < T; j++)
                    Rd[j] = (double)g->rel[g->li][r0 + j];
                sm_bwd_row(ob, om, X, xr, AS, sd, As, Rd, g->Rb + r0, m, T);
                for (int64_t j = 0; j < T; j++) {
                    bnd[r0 + j] += ob[j];
                    mag[r0 + j] += om[j];
                }
            }
    free(buf), free(mk);
    return 0;
}

/* ---- the entry points ---- */

int lrp_gauge_attn_fwd(const lrp_ga *g, double *Aout, double *Aouts)
{
    const lrp_net *net = g->net;
    const lrp_layer *l = &net->layers[g->li];
    int in0 = l->in[0];
    int64_t n = numel(net, g->li), nin = numel(net, in0), B = g->B;
    const float *x = g->act[in0];
    const double *Ax = g->A[in0];
    switch (l->kind) {
    case LRP_LAYER_SOFTMAX: {
        int64_t cols = l->shape.d[l->shape.rank - 1];
        double *xd = malloc((size_t)cols * sizeof *xd), *sd = malloc((size_t)cols * sizeof *sd);
        if (!xd || !sd) {
            free(xd), free(sd);
            return -1;
        }
        for (int64_t r = 0; r < B * n / cols; r++) {
            for (int64_t k = 0; k < cols; k++) {
                xd[k] = (double)x[r * cols + k];
                sd[k] = (double)g->act[g->li][r * cols + k];
            }
            sm_fwd_row(Aout + r * cols, xd, sd, Ax + r * cols, NULL, cols);
        }
        free(xd), free(sd);
        return 0;
    }
    case LRP_LAYER_MUL: {
        const float *y = g->act[l->in[1]];
        const double *Ay = g->A[l->in[1]];
        for (int64_t i = 0; i < B * n; i++)
            Aout[i] = fabs((double)y[i]) * Ax[i] + fabs((double)x[i]) * Ay[i] +
                      fabs((double)x[i] * y[i]) + UF;
        return 0;
    }
    case LRP_LAYER_EMBEDDING: /* rows of binary32 weights, copied */
        memset(Aout, 0, (size_t)(B * n) * sizeof *Aout);
        return 0;
    case LRP_LAYER_SELECTTOKEN:
        for (int64_t b = 0; b < B; b++)
            memcpy(Aout + b * n, Ax + b * nin + l->index * n, (size_t)n * sizeof *Aout);
        return 0;
    case LRP_LAYER_ATTNSCORES:
    case LRP_LAYER_ATTNCONTEXT: {
        int sc = l->kind == LRP_LAYER_ATTNSCORES;
        int64_t H = sc ? l->shape.d[0] : net->layers[in0].shape.d[0];
        int64_t T = sc ? l->shape.d[1] : l->shape.d[0];
        int64_t F = sc ? net->layers[in0].shape.d[1] : l->shape.d[1];
        int64_t n0 = numel(net, in0), n1 = numel(net, l->in[1]);
        double *val = malloc((size_t)n * sizeof *val);
        if (!val)
            return -1;
        for (int64_t b = 0; b < B; b++) {
            const float *y = g->act[l->in[1]] + b * n1;
            const double *Ay = g->A[l->in[1]] + b * n1;
            if (sc)
                scores64(val, Aout + b * n, x + b * n0, Ax + b * n0, y, Ay, H, T, F,
                         (double)l->scale);
            else
                context64(val, Aout + b * n, x + b * n0, Ax + b * n0, y, Ay, H, T, F);
        }
        free(val);
        return 0;
    }
    case LRP_LAYER_ATTNSOFTMAX: return asm_gauge(g, Aout, NULL, NULL);
    case LRP_LAYER_MHA: {
        const int sharp = g->lam > 0 && Aouts && g->As;
        for (int64_t b = 0; b < B; b++) {
            mha64 m;
            memset(&m, 0, sizeof m);
            m.T = l->shape.d[0], m.F = l->shape.d[1], m.H = l->heads, m.d = m.F / m.H;
            m.c = (double)l->scale;
            m.lam = sharp ? g->lam : 0;
            const float *pad = l->use_padding_mask ? net->key_padding_mask + b * m.T : NULL;
            if (mha64_fwd(&m, l, x + b * nin, Ax + b * nin, sharp ? g->As[in0] + b * nin : NULL,
                          pad)) {
                mha64_free(&m);
                return -1;
            }
            for (int64_t t = 0; t < m.T; t++)
                for (int64_t o = 0; o < m.F; o++) {
                    double s, ga, e, as;
                    Aout[b * n + t * m.F + o] = out_bound(&m, l, t, o, &s, &ga, &e, &as);
                    if (sharp)
                        Aouts[b * n + t * m.F + o] = as;
                }
            mha64_free(&m);
        }
        return sharp;
    }
    default: LRP_ASSERT(0);
    }
    return -1;
}

int lrp_gauge_attn_bwd(const lrp_ga *g, int k, double *bnd, double *cnd, double *mag,
                       double *bnds, double *cnds)
{
    const lrp_net *net = g->net;
    const lrp_layer *l = &net->layers[g->li];
    int in = l->in[k];
    int64_t n = numel(net, g->li), nin = numel(net, in), B = g->B;
    const float *R = g->rel[g->li];
    const double *Rb = g->Rb;
    switch (l->kind) {
    case LRP_LAYER_SOFTMAX: {
        int64_t cols = l->shape.d[l->shape.rank - 1];
        double *buf = malloc((size_t)(7 * cols) * sizeof *buf);
        if (!buf)
            return -1;
        double *xd = buf, *sd = buf + cols, *Rd = buf + 2 * cols, *As = buf + 3 * cols,
               *ob = buf + 4 * cols, *om = buf + 5 * cols, *Ax = buf + 6 * cols;
        for (int64_t r = 0; r < B * n / cols; r++) {
            for (int64_t q = 0; q < cols; q++) {
                xd[q] = (double)g->act[in][r * cols + q];
                sd[q] = (double)g->act[g->li][r * cols + q];
                Rd[q] = (double)R[r * cols + q];
                Ax[q] = g->A[in][r * cols + q];
            }
            sm_fwd_row(As, xd, sd, Ax, NULL, cols);
            sm_bwd_row(ob, om, xd, xd, Ax, sd, As, Rd, Rb + r * cols, NULL, cols);
            for (int64_t q = 0; q < cols; q++) {
                bnd[r * cols + q] += ob[q];
                mag[r * cols + q] += om[q];
            }
        }
        free(buf);
        return 0;
    }
    case LRP_LAYER_MUL:
        /* halving: exact unless subnormal.  Plus the roundings of a valid
         * evaluation that re-forms R (gradient-times-input code, LXT: R_a =
         * a (b g / 2) with R = (a b) g): three of R / 2's size (as for the
         * identity rule, oracle/gauge.c identity_back) */
        for (int64_t i = 0; i < B * n; i++) {
            bnd[i] += 0.5 * Rb[i] + UF + 1.5 * fabs((double)R[i]);
            mag[i] += 0.5 * fabs((double)R[i]);
        }
        return 0;
    case LRP_LAYER_ATTNSCORES: return scores_bwd(g, k, bnd, cnd, mag);
    case LRP_LAYER_ATTNCONTEXT: return context_bwd(g, k, bnd, cnd, mag);
    case LRP_LAYER_ATTNSOFTMAX: return asm_gauge(g, NULL, bnd, mag);
    case LRP_LAYER_SELECTTOKEN:
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < n; i++) {
                bnd[b * nin + l->index * n + i] += Rb[b * n + i];
                mag[b * nin + l->index * n + i] += fabs((double)R[b * n + i]);
            }
        return 0;
    case LRP_LAYER_EMBEDDING: {
        int64_t T = l->shape.d[0], F = l->shape.d[1];
        for (int64_t bt = 0; bt < B * T; bt++) {
            double s = 0, a = 0, e = 0;
            for (int64_t f = 0; f < F; f++) {
                s += (double)R[bt * F + f];
                a += fabs((double)R[bt * F + f]);
                e += Rb[bt * F + f];
            }
            bnd[bt] += e + (double)F * a;
            mag[bt] += fabs(s);
        }
        return 0;
    }
    case LRP_LAYER_MHA: {
        int64_t T = l->shape.d[0], F = l->shape.d[1];
        const int sharp = g->lam > 0 && bnds && cnds && g->As && g->Rbs;
        for (int64_t b = 0; b < B; b++) {
            mha64 m;
            memset(&m, 0, sizeof m);
            m.T = T, m.F = F, m.H = l->heads, m.d = F / l->heads, m.c = (double)l->scale;
            m.lam = sharp ? g->lam : 0;
            const float *x = g->act[in] + b * nin;
            const double *Ax = g->A[in] + b * nin, *Axs = sharp ? g->As[in] + b * nin : NULL;
            /* the forward bound of y, recomputed (rigorous, sharp) */
            double *Ay = malloc((size_t)(2 * T * F) * sizeof *Ay), *Ays = Ay + T * F;
            const float *pad = l->use_padding_mask ? net->key_padding_mask + b * T : NULL;
            if (!Ay || mha64_fwd(&m, l, x, Ax, Axs, pad)) {
                free(Ay);
                mha64_free(&m);
                return -1;
            }
            const float *yt = g->act[g->li] + b * n;
            for (int64_t t = 0; t < T; t++)
                for (int64_t o = 0; o < F; o++) {
                    double s, ga, e, as, bj = l->has_bias ? (double)l->b2[o] : 0;
                    double a = out_bound(&m, l, t, o, &s, &ga, &e, &as);
                    if (g->den_traced) {
                        /* the subject divides by the y the trace holds,
                         * as the reference's local run does: its storage
                         * rounding u |y| alone */
                        a = as = fabs((double)yt[t * F + o]);
                    } else if (g->exact) {
                        /* the subject's own output is in the trace: its
                         * denominator is that y (or the binary32 rounding
                         * of what it held: u |y|), or y computed again
                         * from its own O (2 (F + 1) u sum |O w| apart,
                         * with |O_f| <= |O| + u EO); ours is y64 = s + bj,
                         * within 2^-29 Ay of the exact one.  The a-priori
                         * chain bound a is vacuous at BERT's width (the
                         * worst case of five sums of 64 to 769 terms) */
                        double yv = (double)yt[t * F + o];
                        double obs = fabs(yv - (s + bj)) / U32 + fabs(yv) +
                                     2.0 * (double)(F + 1) * (ga + U32 * e) + 0x1p-29 * a;
                        a = fmin(a, obs);
                        as = fmin(as, obs);
                    }
                    Ay[t * F + o] = a;
                    Ays[t * F + o] = as;
                }
            int rc = mha64_bwd(&m, l, x, Ax, Axs, g->act[g->li] + b * n, Ay, Ays, R + b * n,
                               Rb + b * n, sharp ? g->Rbs + b * n : NULL, bnd + b * nin,
                               cnd + b * nin, mag + b * nin, sharp ? bnds + b * nin : NULL,
                               sharp ? cnds + b * nin : NULL);
            free(Ay);
            mha64_free(&m);
            if (rc)
                return -1;
        }
        return sharp;
    }
    default: LRP_ASSERT(0);
    }
    return -1;
}
