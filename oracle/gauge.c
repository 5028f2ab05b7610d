/*
 * gauge.c -- the a-priori float32 error bound of every relevance cell
 * ("the gauge"), its condition measure, and the reference cell flags
 * (docs/ORACLE.md gives the formulas; this file is their implementation).
 *
 * Everything is binary64, computed from the reference's activations and
 * relevance rounded to binary32: a bound needs no more accuracy than that.
 * Bounds are in units of u = 2^-24 (first order).  The loops are plain and
 * independent of the float32 kernels on purpose: the gauge must not share
 * code with the thing it measures.
 */
#include "gauge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

#define U32 0x1p-24

/* ---- linear connectivity (Dense, Conv2D) ----
 * Iterates over all (sample-free) connections j <- i with weight index k:
 * unit j of the output (o, y, x), input i (c, iy, ix), weight (o, c', ky, kx).
 * Padding connections (input outside the image) are skipped: they carry
 * an exact zero. */
#define FOR_CONN(Lp, J, I, K, BODY)                                                            \
    do {                                                                                       \
        const lrp_lin *L_ = (Lp);                                                              \
        if (!L_->conv) {                                                                       \
            for (int64_t J = 0; J < L_->n_out; J++)                                            \
                for (int64_t I = 0; I < L_->n_in; I++) {                                       \
                    int64_t K = J * L_->n_in + I;                                              \
                    BODY;                                                                      \
                }                                                                              \
        } else {                                                                               \
            int64_t cg_ = L_->C / L_->groups, og_ = L_->O / L_->groups;                        \
            for (int64_t o_ = 0; o_ < L_->O; o_++) {                                           \
                int64_t g_ = o_ / og_;                                                         \
                for (int64_t y_ = 0; y_ < L_->Ho; y_++)                                        \
                    for (int64_t x_ = 0; x_ < L_->Wo; x_++) {                                  \
                        int64_t J = (o_ * L_->Ho + y_) * L_->Wo + x_;                          \
                        for (int64_t c_ = 0; c_ < cg_; c_++)                                   \
                            for (int ky_ = 0; ky_ < L_->kh; ky_++) {                           \
                                int64_t iy_ = y_ * L_->sh - L_->pt + (int64_t)ky_ * L_->dh;    \
                                if (iy_ < 0 || iy_ >= L_->H)                                   \
                                    continue;                                                  \
                                for (int kx_ = 0; kx_ < L_->kw; kx_++) {                       \
                                    int64_t ix_ = x_ * L_->sw - L_->pl + (int64_t)kx_ * L_->dw; \
                                    if (ix_ < 0 || ix_ >= L_->W)                               \
                                        continue;                                              \
                                    int64_t I = ((g_ * cg_ + c_) * L_->H + iy_) * L_->W + ix_; \
                                    int64_t K = ((o_ * cg_ + c_) * L_->kh + ky_) * L_->kw + kx_; \
                                    BODY;                                                      \
                                }                                                              \
                            }                                                                  \
                    }                                                                          \
            }                                                                                  \
        }                                                                                      \
    } while (0)

static double imod(int mod, double a, const lrp_lin *L, int64_t i)
{
    switch (mod) {
    case LRP_IM_POS: return a > 0 ? a : 0;
    case LRP_IM_NEG: return a < 0 ? a : 0;
    case LRP_IM_ONES: return 1;
    case LRP_IM_LOW: return L->low ? L->low[i] : L->low_s;
    case LRP_IM_HIGH: return L->high ? L->high[i] : L->high_s;
    default: return a;
    }
}

static double wmod(int mod, double w)
{
    switch (mod) {
    case LRP_WM_POS: return w > 0 ? w : 0;
    case LRP_WM_NEG: return w < 0 ? w : 0;
    case LRP_WM_SQUARE: return w * w;
    case LRP_WM_ONES: return 1;
    default: return w;
    }
}

static double bmod(int mod, double b)
{
    switch (mod) {
    case LRP_BM_POS: return b > 0 ? b : 0;
    case LRP_BM_NEG: return b < 0 ? b : 0;
    case LRP_BM_SQUARE: return b * b;
    default: return b;
    }
}

static int inmod_uses_input(int mod)
{
    return mod == LRP_IM_ID || mod == LRP_IM_POS || mod == LRP_IM_NEG;
}

/* Effective stabilizer sign s(d) (LRP-SPEC section 5); 2 means skip. */
static double stab_sign(lrp_stab_id c, double d)
{
    switch (c) {
    case LRP_STAB_SIGN0_POS: return d < 0 ? -1 : 1;
    case LRP_STAB_SIGNBIT: return signbit(d) ? -1 : 1;
    case LRP_STAB_SIGN0_ZERO: return d > 0 ? 1 : (d < 0 ? -1 : 0);
    case LRP_STAB_ZERO_ONLY: return d == 0 ? 1 : 0;
    case LRP_STAB_SKIP_ZERO: return d == 0 ? 2 : (d > 0 ? 1 : -1);
    case LRP_STAB_POSITIVE: return 1;
    default: return 0;
    }
}

void lrp_gauge_free(lrp_gauge *g)
{
    if (!g || !g->bound)
        return;
    for (int i = 0; i < g->n_layers; i++) {
        free(g->bound[i]);
        free(g->cond[i]);
        free(g->cflags[i]);
        free(g->fwd[i]);
    }
    free(g->bound);
    free(g->cond);
    free(g->cflags);
    free(g->fwd);
    memset(g, 0, sizeof *g);
}

typedef struct ctx {
    const lrp_net *net;
    float *const *act;
    float *const *rel;
    lrp_gauge *g;
    int64_t B;
    double **A;   /* forward bounds (units of u), per layer */
    double **Bd;  /* backward bounds accumulated, per layer */
    double **cd;  /* cond accumulated (max), per layer */
    uint8_t **cf; /* cell flags, per layer */
    int local;    /* bounds of each layer alone, on binary32-rounded inputs */
} ctx;

static int64_t numel(const lrp_net *n, int li)
{
    return lrp_shape_numel(&n->layers[li].shape);
}

/* The BN consumer of layer li that canonizes it, or -1. */
static int canon_bn(const lrp_net *net, int li)
{
    for (int j = li + 1; j < net->n_layers; j++) {
        const lrp_layer *l = &net->layers[j];
        if (l->kind == LRP_LAYER_BATCHNORM && l->in[0] == li &&
            (l->rule.flags & LRP_F_BN_CANONIZE))
            return j;
    }
    return -1;
}

static void bn_affine(const lrp_layer *l, int64_t c, double *w, double *shift)
{
    double wc = (double)l->bn_gamma[c] / sqrt((double)l->bn_var[c] + (double)l->bn_eps);
    *w = wc;
    *shift = (double)l->bn_beta[c] - wc * (double)l->bn_mean[c];
}

/* ---- forward bounds ---- */

static int forward_bounds(ctx *c)
{
    const lrp_net *net = c->net;
    for (int li = 0; li < net->n_layers; li++) {
        const lrp_layer *l = &net->layers[li];
        int64_t n = numel(net, li), B = c->B;
        double *A = c->A[li];
        const int in0 = l->n_in ? l->in[0] : -1;
        const double *Ai = in0 >= 0 ? c->A[in0] : NULL;
        const float *xi = in0 >= 0 ? c->act[in0] : NULL;
        int64_t nin = in0 >= 0 ? numel(net, in0) : 0;
        switch (l->kind) {
        case LRP_LAYER_INPUT: break; /* inputs are exact */
        case LRP_LAYER_DENSE:
        case LRP_LAYER_CONV2D: {
            lrp_lin L;
            lrp_pipe_lin_geom(&L, net, li);
            double *G = calloc((size_t)n, sizeof *G);
            if (!G)
                return -1;
            for (int64_t b = 0; b < B; b++) {
                memset(G, 0, (size_t)n * sizeof *G);
                double *Ab = A + b * n;
                FOR_CONN(&L, j, i, k, {
                    double w = fabs((double)l->w[k]);
                    G[j] += fabs((double)xi[b * nin + i]) * w;
                    Ab[j] += w * Ai[b * nin + i];
                });
                for (int64_t j = 0; j < n; j++) {
                    int64_t unit = L.conv ? j / (L.Ho * L.Wo) : j;
                    double bj = l->has_bias ? fabs((double)l->b[unit]) : 0;
                    Ab[j] += (double)(L.fanin + 1) * (G[j] + bj);
                }
            }
            free(G);
            break;
        }
        case LRP_LAYER_BATCHNORM: {
            int64_t C = l->shape.d[0], hw = n / C;
            for (int64_t b = 0; b < B; b++)
                for (int64_t ch = 0; ch < C; ch++) {
                    double w, sh;
                    bn_affine(l, ch, &w, &sh);
                    for (int64_t k = 0; k < hw; k++) {
                        int64_t i = b * n + ch * hw + k;
                        /* coefficient (sqrt, div: ~3u relative), product, sum */
                        A[i] = fabs(w) * Ai[i] + 4 * fabs(w * xi[i]) + 2 * fabs(sh);
                    }
                }
            break;
        }
        case LRP_LAYER_MAXPOOL2D:
        case LRP_LAYER_AVGPOOL2D:
        case LRP_LAYER_GLOBALAVGPOOL: {
            lrp_pool P;
            lrp_pipe_pool_geom(&P, net, li);
            for (int64_t b = 0; b < B; b++)
                for (int64_t ch = 0; ch < P.C; ch++)
                    for (int64_t y = 0; y < P.Ho; y++)
                        for (int64_t x = 0; x < P.Wo; x++) {
                            double m = 0, s = 0, sa = 0;
                            int cnt = 0;
                            for (int ky = 0; ky < P.kh; ky++)
                                for (int kx = 0; kx < P.kw; kx++) {
                                    int64_t iy = y * P.sh - P.pt + ky, ix = x * P.sw - P.pl + kx;
                                    if (iy < 0 || iy >= P.H || ix < 0 || ix >= P.W)
                                        continue;
                                    int64_t i = b * nin + (ch * P.H + iy) * P.W + ix;
                                    m = fmax(m, Ai[i]);
                                    s += Ai[i];
                                    sa += fabs((double)xi[i]);
                                    cnt++;
                                }
                            int64_t j = b * n + (ch * P.Ho + y) * P.Wo + x;
                            int k = P.count_include_pad ? P.kh * P.kw : cnt;
                            if (l->kind == LRP_LAYER_MAXPOOL2D)
                                A[j] = m;
                            else
                                A[j] = (s + (double)(cnt + 1) * sa) / (k > 0 ? k : 1);
                        }
            break;
        }
        case LRP_LAYER_ADD:
            for (int64_t i = 0; i < B * n; i++) {
                double s = 0, sa = 0;
                for (int q = 0; q < l->n_in; q++) {
                    s += c->A[l->in[q]][i];
                    sa += fabs((double)c->act[l->in[q]][i]);
                }
                A[i] = s + (double)(l->n_in - 1) * sa;
            }
            break;
        case LRP_LAYER_CONCAT: {
            int64_t off = 0;
            for (int q = 0; q < l->n_in; q++) {
                int64_t nq = numel(net, l->in[q]);
                for (int64_t b = 0; b < B; b++)
                    memcpy(A + b * n + off, c->A[l->in[q]] + b * nq, (size_t)nq * sizeof *A);
                off += nq;
            }
            break;
        }
        case LRP_LAYER_RELU:
            /* 1-Lipschitz; and where the input is certainly negative
             * (|z| beyond its error bound) float32 returns exactly 0 */
            for (int64_t i = 0; i < B * n; i++)
                A[i] = (xi[i] < 0.0f && fabs((double)xi[i]) > U32 * Ai[i]) ? 0.0 : Ai[i];
            break;
        default: /* Flatten, Reshape, Dropout: no arithmetic */
            memcpy(A, Ai, (size_t)(B * n) * sizeof *A);
            break;
        }
    }
    return 0;
}

/* ---- backward bounds ---- */

/* The relevance bound and condition flowing into input cell i of a layer
 * are added (several consumers sum their relevance: one more rounding each,
 * accounted by the |R| term added in merge()). */

static int linear_backward(ctx *c, int li)
{
    const lrp_net *net = c->net;
    const lrp_layer *l = &net->layers[li];
    int bn = canon_bn(net, li);
    const lrp_rule_spec *rs = &l->rule;
    /* with canonization the relevance arrives at the BN output and the
     * folded layer's rule is the conv's own */
    int top = bn >= 0 ? bn : li;
    const lrp_rule_desc *d = lrp_rule_describe(rs);
    if (!d)
        return 0;
    lrp_lin L;
    lrp_pipe_lin_geom(&L, net, li);
    int in0 = l->in[0];
    int64_t n = numel(net, li), nin = numel(net, in0), B = c->B;
    int64_t units = L.conv ? L.O : L.n_out, hw = n / units;
    int64_t nw = units * L.fanin;
    /* weights and bias in binary64, folded if canonized */
    double *w = malloc((size_t)nw * sizeof *w), *bias = calloc((size_t)units, sizeof *bias);
    double *den = malloc((size_t)n * sizeof *den), *G = malloc((size_t)n * sizeof *G);
    double *D = malloc((size_t)n * sizeof *D), *z = malloc((size_t)n * sizeof *z);
    double *v1 = malloc((size_t)n * sizeof *v1), *v2 = malloc((size_t)n * sizeof *v2);
    double *kap = malloc((size_t)n * sizeof *kap);
    uint8_t *und = malloc((size_t)n);
    if (!w || !bias || !den || !G || !D || !z || !v1 || !v2 || !kap || !und) {
        free(w), free(bias), free(den), free(G), free(D), free(z), free(v1), free(v2), free(kap);
        free(und);
        return -1;
    }
    /* Canonization folds in float32 too: each folded weight w*W carries
     * ~3u (sqrt, division, product) and the folded bias w (b - mu) + beta
     * ~4u of the sizes of its terms, which may cancel: bgauge holds those
     * sizes so that the error terms below do not underestimate them. */
    double *bgauge = calloc((size_t)units, sizeof *bgauge);
    double fold_err = bn >= 0 ? 3.0 : 0.0;
    if (!bgauge) {
        free(w), free(bias), free(den), free(G), free(D), free(z), free(v1), free(v2), free(kap);
        free(und);
        return -1;
    }
    for (int64_t u = 0; u < units; u++) {
        double fw = 1, fb = 0;
        if (bn >= 0)
            bn_affine(&net->layers[bn], u, &fw, &fb);
        for (int64_t k = 0; k < L.fanin; k++)
            w[u * L.fanin + k] = fw * (double)l->w[u * L.fanin + k];
        double b0 = l->has_bias ? (double)l->b[u] : 0;
        bias[u] = bn >= 0 ? fw * b0 + fb : b0;
        if (bn >= 0) {
            const lrp_layer *bl = &net->layers[bn];
            bgauge[u] = 4 * (fabs(fw * b0) + fabs(fw * (double)bl->bn_mean[u]) +
                             fabs((double)bl->bn_beta[u]));
        }
    }
    int has_bias = l->has_bias || bn >= 0;
    int64_t fanout = L.conv ? (L.O / L.groups) * L.kh * L.kw : L.n_out;
    const float *x = c->act[in0];
    const float *R = c->rel[top];
    const double *Rb = c->Bd[top], *Ax = c->A[in0], *Rc = c->cd[top];
    double *Bi = c->Bd[in0], *ci = c->cd[in0];
    uint8_t *fi = c->cf[in0];
    for (int64_t b = 0; b < B; b++) {
        const float *xb = x + b * nin;
        /* plain z for the part selectors */
        for (int64_t j = 0; j < n; j++)
            z[j] = (has_bias && rs->bias) ? bias[j / hw] : 0;
        FOR_CONN(&L, j, i, k, { z[j] += (double)xb[i] * w[k]; });
        for (int p = 0; p < d->n_parts; p++) {
            const lrp_part_desc *pd = &d->p[p];
            double coef = lrp_coef_value((lrp_coefsrc)pd->coef, rs);
            if (coef == 0)
                continue;
            int nt = pd->n_terms;
            double tc[LRP_PIPE_MAX_TERMS];
            for (int t = 0; t < nt; t++)
                tc[t] = lrp_coef_value((lrp_coefsrc)pd->t[t].coef, rs);
            /* den, its gauge G and the error bound D of the float32 den */
            for (int64_t j = 0; j < n; j++) {
                double bd = 0, bg = 0;
                if (has_bias && rs->bias)
                    for (int q = 0; q < pd->n_bias; q++) {
                        double v = lrp_coef_value((lrp_coefsrc)pd->b[q].coef, rs) *
                                   bmod(pd->b[q].mod, bias[j / hw]);
                        bd += v;
                        bg += fabs(v);
                    }
                den[j] = bd;
                G[j] = bg;
                D[j] = (has_bias && rs->bias) ? bgauge[j / hw] : 0;
            }
            FOR_CONN(&L, j, i, k, {
                for (int t = 0; t < nt; t++) {
                    double a = imod(pd->t[t].in, xb[i], &L, i);
                    double wm = tc[t] * wmod(pd->t[t].w, w[k]);
                    den[j] += a * wm;
                    G[j] += fabs(a * wm);
                    D[j] += fold_err * fabs(a * wm);
                    if (inmod_uses_input(pd->t[t].in))
                        D[j] += fabs(wm) * Ax[b * nin + i];
                }
            });
            int64_t nterms = L.fanin * nt + pd->n_bias + 1;
            for (int64_t j = 0; j < n; j++) {
                int sel = 1;
                switch (pd->sel) {
                case LRP_SEL_ZPOS: sel = z[j] > 0; break;
                case LRP_SEL_ZNONNEG: sel = z[j] >= 0; break;
                case LRP_SEL_ZNEG: sel = z[j] < 0; break;
                case LRP_SEL_ZNONZERO: sel = z[j] != 0; break;
                default: break;
                }
                D[j] += (double)nterms * G[j];
                double sg = stab_sign(rs->stab, den[j]);
                double st = den[j];
                und[j] = 0;
                if (sg == 2) { /* skip_zero at 0: s = R */
                    v1[j] = Rb[b * n + j] + fabs((double)R[b * n + j]);
                    v2[j] = fabs((double)R[b * n + j]);
                    kap[j] = 0;
                    continue;
                }
                if (rs->eps != 0 && sg != 0)
                    st = den[j] + sg * (double)rs->eps;
                if (!sel || (pd->empty_lost && den[j] == 0)) {
                    v1[j] = v2[j] = kap[j] = 0;
                    continue;
                }
                if (st == 0) {
                    und[j] = 1;
                    v1[j] = v2[j] = 0;
                    kap[j] = INFINITY;
                    continue;
                }
                double s = fabs((double)R[b * n + j] / st);
                /* a unit carrying exactly no relevance (R_j = 0 with no error)
                 * gives s_j = 0 in float32 too, however ill-determined its
                 * denominator: it spreads no ill-conditioning */
                /* cond (LRP-SPEC 7): the worst relative error of the float32
                 * den, n kappa u, kappa = G / |den|; the propagated input
                 * error (the A terms of D) enters the bound, not cond */
                kap[j] = (R[b * n + j] == 0.0f && Rb[b * n + j] == 0.0)
                             ? 0.0
                             : (double)nterms * G[j] / fabs(st);
                v1[j] = s * (1 + D[j] / fabs(st) + (double)(fanout + 2) + fold_err) +
                        Rb[b * n + j] / fabs(st);
                v2[j] = s;
            }
            /* scatter to the inputs */
            FOR_CONN(&L, j, i, k, {
                double add = 0;
                for (int t = 0; t < nt; t++) {
                    double wm = fabs(tc[t] * wmod(pd->t[t].w, w[k]));
                    double a = fabs(imod(pd->t[t].in, xb[i], &L, i));
                    add += a * wm * v1[j];
                    if (inmod_uses_input(pd->t[t].in))
                        add += Ax[b * nin + i] * wm * v2[j];
                }
                Bi[b * nin + i] += fabs(coef) * add;
                /* ill-conditioning propagates toward the input: a cell is as
                 * undetermined as the relevance it is made of */
                double cj = fmax(U32 * kap[j], Rc[b * n + j]);
                if (cj > ci[b * nin + i])
                    ci[b * nin + i] = cj;
                if (und[j])
                    fi[b * nin + i] |= LRP_CELL_UNDEFINED | LRP_CELL_ZERO_DEN;
                else if (den[j] == 0)
                    fi[b * nin + i] |= LRP_CELL_ZERO_DEN;
            });
        }
    }
    free(w), free(bias), free(den), free(G), free(D), free(z), free(v1), free(v2), free(kap);
    free(und);
    free(bgauge);
    return 0;
}

/* Proportional-type split R_k = x_k / stab(y) R (Add, BN explicit on its
 * input part, AvgPool per window).  Adds into the input bounds. */
/* Dy: error bound of the float32 y (units of u); Gy: its cond part (n sum |terms|). */
static void prop_cell(ctx *c, int in_layer, int64_t i, double xk, double Axk, double y, double Dy,
                      double Gy, double R, double Rb, double Rc, const lrp_rule_spec *rs,
                      double scale)
{
    if (Rc > c->cd[in_layer][i])
        c->cd[in_layer][i] = Rc;
    double sg = stab_sign(rs->stab, y);
    double st = y;
    if (sg == 2) {
        c->Bd[in_layer][i] += scale * (Rb + 2 * fabs(R));
        return;
    }
    if (rs->eps != 0 && sg != 0)
        st = y + sg * (double)rs->eps;
    if (st == 0) {
        c->cf[in_layer][i] |= LRP_CELL_UNDEFINED | LRP_CELL_ZERO_DEN;
        if (c->cd[in_layer][i] < 1)
            c->cd[in_layer][i] = 1;
        return;
    }
    double s = fabs(R / st), kap = (R == 0 && Rb == 0) ? 0.0 : Gy / fabs(st);
    c->Bd[in_layer][i] += scale * (fabs(xk) * (s * (Dy / fabs(st) + 3) + Rb / fabs(st)) + Axk * s);
    if (U32 * kap > c->cd[in_layer][i])
        c->cd[in_layer][i] = U32 * kap;
    if (y == 0)
        c->cf[in_layer][i] |= LRP_CELL_ZERO_DEN;
}

static int backward_bounds(ctx *c)
{
    const lrp_net *net = c->net;
    int64_t B = c->B;
    int last = net->n_layers - 1;
    /* start: the one-hot logit (or given R_out) carries the forward error of
     * the logit it copies */
    {
        int64_t n = numel(net, last);
        for (int64_t i = 0; i < B * n; i++)
            if (c->rel[last][i] != 0)
                c->Bd[last][i] = net->r_out ? 0 : c->A[last][i];
    }
    for (int li = last; li >= 0; li--) {
        const lrp_layer *l = &net->layers[li];
        int64_t n = numel(net, li);
        const float *R = c->rel[li];
        if (c->local) {
            /* every consumer of li has contributed: what arrived is the
             * local bound of li's relevance; then restart from the binary32
             * rounding of the reference (0.5 u |R|), nothing propagated */
            for (int64_t i = 0; i < B * n; i++) {
                double bnd = c->Bd[li][i] + 2 * fabs((double)R[i]);
                c->g->bound[li][i] = (float)fmin(bnd, 3.0e38);
                c->g->cond[li][i] = (float)fmin(c->cd[li][i], 3.0e38);
                c->Bd[li][i] = 0.5 * fabs((double)R[i]);
                c->cd[li][i] = 0;
            }
        }
        const double *Rb = c->Bd[li];
        switch (l->kind) {
        case LRP_LAYER_DENSE:
        case LRP_LAYER_CONV2D:
            if (linear_backward(c, li))
                return -1;
            break;
        case LRP_LAYER_BATCHNORM: {
            int in0 = l->in[0];
            if (l->rule.flags & LRP_F_BN_CANONIZE) {
                /* passes to the folded layer, which reads R at this output:
                 * handled in linear_backward via canon_bn(); the conv's own
                 * output relevance is this one */
                break;
            }
            int64_t C = l->shape.d[0], hw = n / C;
            for (int64_t b = 0; b < B; b++)
                for (int64_t ch = 0; ch < C; ch++) {
                    double w, sh;
                    bn_affine(l, ch, &w, &sh);
                    for (int64_t k = 0; k < hw; k++) {
                        int64_t i = b * n + ch * hw + k;
                        double xk = w * (double)c->act[in0][i];
                        double y = (double)c->act[li][i];
                        double Gy = 4 * (fabs(xk) + fabs(sh));
                        double Dy = Gy + fabs(w) * c->A[in0][i];
                        prop_cell(c, in0, i, xk, fabs(w) * c->A[in0][i], y, Dy, Gy, R[i], Rb[i],
                                  c->cd[li][i], &l->rule, 1);
                    }
                }
            break;
        }
        case LRP_LAYER_ADD:
            for (int64_t i = 0; i < B * n; i++) {
                double y = (double)c->act[li][i], sa = 0, sA = 0;
                for (int q = 0; q < l->n_in; q++) {
                    sa += fabs((double)c->act[l->in[q]][i]);
                    sA += c->A[l->in[q]][i];
                }
                double Gy = (double)l->n_in * sa, Dy = Gy + sA;
                for (int q = 0; q < l->n_in; q++)
                    prop_cell(c, l->in[q], i, (double)c->act[l->in[q]][i], c->A[l->in[q]][i], y,
                              Dy, Gy, R[i], Rb[i], c->cd[li][i], &l->rule, 1);
            }
            break;
        case LRP_LAYER_CONCAT: {
            int64_t off = 0;
            for (int q = 0; q < l->n_in; q++) {
                int in = l->in[q];
                int64_t nq = numel(net, in);
                for (int64_t b = 0; b < B; b++)
                    for (int64_t i = 0; i < nq; i++) {
                        c->Bd[in][b * nq + i] += Rb[b * n + off + i];
                        if (c->cd[li][b * n + off + i] > c->cd[in][b * nq + i])
                            c->cd[in][b * nq + i] = c->cd[li][b * n + off + i];
                        c->cf[in][b * nq + i] |= c->cf[li][b * n + off + i];
                    }
                off += nq;
            }
            break;
        }
        case LRP_LAYER_MAXPOOL2D:
        case LRP_LAYER_AVGPOOL2D:
        case LRP_LAYER_GLOBALAVGPOOL: {
            int in0 = l->in[0];
            int64_t nin = numel(net, in0);
            lrp_pool P;
            lrp_pipe_pool_geom(&P, net, li);
            for (int64_t b = 0; b < B; b++)
                for (int64_t ch = 0; ch < P.C; ch++)
                    for (int64_t y = 0; y < P.Ho; y++)
                        for (int64_t x = 0; x < P.Wo; x++) {
                            int64_t j = b * n + (ch * P.Ho + y) * P.Wo + x;
                            double yj = (double)c->act[li][j], best = -INFINITY, second = -INFINITY;
                            int64_t win = -1, sec = -1;
                            int cnt = 0;
                            double sa = 0, sA = 0;
                            for (int ky = 0; ky < P.kh; ky++)
                                for (int kx = 0; kx < P.kw; kx++) {
                                    int64_t iy = y * P.sh - P.pt + ky, ix = x * P.sw - P.pl + kx;
                                    if (iy < 0 || iy >= P.H || ix < 0 || ix >= P.W)
                                        continue;
                                    int64_t i = b * nin + (ch * P.H + iy) * P.W + ix;
                                    double v = (double)c->act[in0][i];
                                    if (win < 0 || v > best) {
                                        second = best;
                                        sec = win;
                                        best = v;
                                        win = i;
                                    } else if (sec < 0 || v > second) {
                                        second = v;
                                        sec = i;
                                    }
                                    sa += fabs(v);
                                    sA += c->A[in0][i];
                                    cnt++;
                                }
                            if (win < 0)
                                continue;
                            if (l->kind == LRP_LAYER_MAXPOOL2D) {
                                /* winner-take-all routes R and its bound; a
                                 * runner-up within the forward error bounds
                                 * means float32 may pick another winner */
                                c->Bd[in0][win] += Rb[j];
                                c->cd[in0][win] = fmax(c->cd[in0][win], c->cd[li][j]);
                                if (sec >= 0) {
                                    double slack = U32 * (c->A[in0][win] + c->A[in0][sec]);
                                    /* exact ties of exact values are no
                                     * ambiguity: every path keeps the first */
                                    if (best - second <= slack && slack > 0) {
                                        c->cd[in0][win] = fmax(c->cd[in0][win], 1.0);
                                        c->cd[in0][sec] = fmax(c->cd[in0][sec], 1.0);
                                    }
                                }
                                continue;
                            }
                            int k = P.count_include_pad ? P.kh * P.kw : cnt;
                            double Gy = (double)(cnt + 1) * sa / (k ? k : 1);
                            double Dy = Gy + sA / (k ? k : 1);
                            for (int ky = 0; ky < P.kh; ky++)
                                for (int kx = 0; kx < P.kw; kx++) {
                                    int64_t iy = y * P.sh - P.pt + ky, ix = x * P.sw - P.pl + kx;
                                    if (iy < 0 || iy >= P.H || ix < 0 || ix >= P.W)
                                        continue;
                                    int64_t i = b * nin + (ch * P.H + iy) * P.W + ix;
                                    prop_cell(c, in0, i, (double)c->act[in0][i] / k,
                                              c->A[in0][i] / k, yj, Dy, Gy, (double)c->rel[li][j],
                                              Rb[j], c->cd[li][j], &l->rule, 1);
                                }
                        }
            break;
        }
        case LRP_LAYER_INPUT: break;
        default: { /* pass: ReLU, Flatten, Reshape, Dropout */
            int in0 = l->in[0];
            for (int64_t i = 0; i < B * n; i++) {
                c->Bd[in0][i] += Rb[i];
                if (c->cd[li][i] > c->cd[in0][i])
                    c->cd[in0][i] = c->cd[li][i];
                c->cf[in0][i] |= c->cf[li][i];
            }
            break;
        }
        }
        /* a canonized BN's input (the folded conv's output) carries the
         * BN output's relevance: copy bounds down so the conv sees them */
        if (l->kind == LRP_LAYER_BATCHNORM && (l->rule.flags & LRP_F_BN_CANONIZE)) {
            int in0 = l->in[0];
            for (int64_t i = 0; i < B * n; i++) {
                c->Bd[in0][i] += c->Bd[li][i];
                c->cd[in0][i] = fmax(c->cd[in0][i], c->cd[li][i]);
                c->cf[in0][i] |= c->cf[li][i];
            }
        }
    }
    return 0;
}

lrp_status lrp_gauge_compute(lrp_gauge *g, const lrp_net *net, float *const *act,
                             float *const *rel, lrp_err *err)
{
    return lrp_gauge_compute_ex(g, net, act, rel, 0, err);
}

lrp_status lrp_gauge_compute_ex(lrp_gauge *g, const lrp_net *net, float *const *act,
                                float *const *rel, int local, lrp_err *err)
{
    memset(g, 0, sizeof *g);
    int nl = net->n_layers;
    ctx c = {net, act, rel, g, net->batch, NULL, NULL, NULL, NULL, local};
    g->n_layers = nl;
    g->bound = calloc((size_t)nl, sizeof *g->bound);
    g->cond = calloc((size_t)nl, sizeof *g->cond);
    g->cflags = calloc((size_t)nl, sizeof *g->cflags);
    g->fwd = calloc((size_t)nl, sizeof *g->fwd);
    c.A = calloc((size_t)nl, sizeof *c.A);
    c.Bd = calloc((size_t)nl, sizeof *c.Bd);
    c.cd = calloc((size_t)nl, sizeof *c.cd);
    c.cf = g->cflags;
    lrp_status st = LRP_OK;
    if (!g->bound || !g->cond || !g->cflags || !g->fwd || !c.A || !c.Bd || !c.cd)
        goto oom;
    for (int i = 0; i < nl; i++) {
        int64_t n = net->batch * numel(net, i);
        c.A[i] = calloc((size_t)n, sizeof **c.A);
        c.Bd[i] = calloc((size_t)n, sizeof **c.Bd);
        c.cd[i] = calloc((size_t)n, sizeof **c.cd);
        g->cflags[i] = calloc((size_t)n, 1);
        g->bound[i] = malloc((size_t)n * sizeof **g->bound);
        g->cond[i] = malloc((size_t)n * sizeof **g->cond);
        g->fwd[i] = malloc((size_t)n * sizeof **g->fwd);
        if (!c.A[i] || !c.Bd[i] || !c.cd[i] || !g->cflags[i] || !g->bound[i] || !g->cond[i] ||
            !g->fwd[i])
            goto oom;
    }
    if (forward_bounds(&c))
        goto oom;
    if (local) /* inputs are the reference rounded to binary32: 0.5 u |a| */
        for (int i = 0; i < nl; i++)
            for (int64_t k = 0; k < net->batch * numel(net, i); k++)
                c.A[i][k] = 0.5 * fabs((double)act[i][k]);
    if (backward_bounds(&c))
        goto oom;
    for (int i = 0; i < nl; i++) {
        int64_t n = net->batch * numel(net, i);
        for (int64_t k = 0; k < n; k++) {
            if (!local) {
                /* the cell's own final rounding (sum of consumers, product) */
                double bnd = c.Bd[i][k] + 2 * fabs((double)rel[i][k]);
                g->bound[i][k] = (float)fmin(bnd, 3.0e38);
                g->cond[i][k] = (float)fmin(c.cd[i][k], 3.0e38);
            }
            g->fwd[i][k] = (float)fmin(c.A[i][k], 3.0e38);
        }
    }
    goto done;
oom:
    st = lrp_err_set(err, LRP_E_NOMEM, "<network>: out of memory computing the gauge");
    lrp_gauge_free(g);
done:
    if (c.A)
        for (int i = 0; i < nl; i++) {
            free(c.A[i]);
            free(c.Bd[i]);
            free(c.cd[i]);
        }
    free(c.A);
    free(c.Bd);
    free(c.cd);
    return st;
}
