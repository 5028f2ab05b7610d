/*
 * naive.c -- textbook LRP rules in exact rationals (see naive.h).
 *
 * For every output unit j the rule gives one or two (num_ij, den_j, coef)
 * parts; den_j is computed as the exact sum of num_ij plus the rule's bias
 * term, stabilized by the convention, and
 *     R_i += coef * num_ij / stab(den_j) * R_j.
 * The sign of a zero den (signbit convention) follows IEEE: -0 iff every
 * summand is a zero with its sign bit set (a zero product's sign is the
 * xor of the factors' signs; modified values like max(x, 0) are +0).
 */
#include "naive.h"

#include <math.h>
#include <stdlib.h>

int naive_out_h(const naive_geom *g)
{
    return (g->H + g->pt + g->pb - g->dh * (g->kh - 1) - 1) / g->sh + 1;
}

int naive_out_w(const naive_geom *g)
{
    return (g->W + g->pl + g->pr - g->dw * (g->kw - 1) - 1) / g->sw + 1;
}

static float fpos(float v) { return v > 0 ? v : 0.0f; }
static float fneg(float v) { return v < 0 ? v : 0.0f; }

/* One summand: value q, and its sign-of-zero if it is a zero. */
typedef struct term {
    mpq_t v;
    int negzero; /* the summand is a zero with sign bit set */
} term;

/* numerator of part k for (input value x, weight w, input index i) */
static int num(mpq_t out, int *negzero, const naive_rule *r, int part, int sel_pos, float x,
               float w, int i)
{
    mpq_t a, t;
    mpq_inits(a, t, NULL);
    float g = r->gamma;
    int nz = 0;
    mpq_set_ui(out, 0, 1);
    switch (r->rule) {
    case NV_LRP0:
    case NV_EPS:
        mpq_set_d(a, x);
        mpq_set_d(t, w);
        mpq_mul(out, a, t);
        nz = (x == 0 || w == 0) && (signbit(x) != signbit(w));
        break;
    case NV_GAMMA:
        if (!r->generalized) {
            /* x (w + g w+) */
            mpq_set_d(a, w);
            mpq_set_d(t, fpos(w));
            mpq_set_d(out, g);
            mpq_mul(t, t, out);
            mpq_add(a, a, t);
            mpq_set_d(t, x);
            mpq_mul(out, a, t);
            nz = (x == 0 || w == 0) && (signbit(x) != signbit(w));
        } else {
            /* z_j >= 0: x+ (w + g w+) + x- (w + g w-);  z_j < 0: swapped */
            float xp = fpos(x), xn = fneg(x);
            float wp = sel_pos ? fpos(w) : fneg(w), wn = sel_pos ? fneg(w) : fpos(w);
            mpq_t u;
            mpq_init(u);
            mpq_set_d(a, wp);
            mpq_set_d(t, g);
            mpq_mul(a, a, t);
            mpq_set_d(t, w);
            mpq_add(a, a, t);
            mpq_set_d(t, xp);
            mpq_mul(out, a, t);
            mpq_set_d(a, wn);
            mpq_set_d(t, g);
            mpq_mul(a, a, t);
            mpq_set_d(t, w);
            mpq_add(a, a, t);
            mpq_set_d(t, xn);
            mpq_mul(u, a, t);
            mpq_add(out, out, u);
            mpq_clear(u);
            nz = 0; /* x+ and x- are +0 when zero: some summand is +0 */
        }
        break;
    case NV_AB:
    case NV_ZPLUS:
        if (r->captum) {
            float wm = part == 0 ? fpos(w) : fneg(w);
            mpq_set_d(a, x);
            mpq_set_d(t, wm);
            mpq_mul(out, a, t);
            nz = (x == 0 || wm == 0) && signbit(x) != signbit(wm);
        } else if (part == 0) {
            mpq_set_d(a, fpos(x));
            mpq_set_d(t, fpos(w));
            mpq_mul(out, a, t);
            mpq_set_d(a, fneg(x));
            mpq_set_d(t, fneg(w));
            mpq_mul(a, a, t);
            mpq_add(out, out, a);
        } else {
            mpq_set_d(a, fpos(x));
            mpq_set_d(t, fneg(w));
            mpq_mul(out, a, t);
            mpq_set_d(a, fneg(x));
            mpq_set_d(t, fpos(w));
            mpq_mul(a, a, t);
            mpq_add(out, out, a);
        }
        break;
    case NV_WSQUARE:
        mpq_set_d(a, w);
        mpq_mul(out, a, a);
        break;
    case NV_FLAT: mpq_set_ui(out, 1, 1); break;
    case NV_ZBOX: {
        float l = r->lowv ? r->lowv[i] : r->low, h = r->highv ? r->highv[i] : r->high;
        mpq_set_d(a, x);
        mpq_set_d(t, w);
        mpq_mul(out, a, t);
        mpq_set_d(a, l);
        mpq_set_d(t, fpos(w));
        mpq_mul(a, a, t);
        mpq_sub(out, out, a);
        mpq_set_d(a, h);
        mpq_set_d(t, fneg(w));
        mpq_mul(a, a, t);
        mpq_sub(out, out, a);
        /* the sign of a zero numerator depends on how the three products
         * are grouped; callers do not test signbit at a zero z^B den */
        nz = 0;
        break;
    }
    }
    *negzero = nz;
    mpq_clears(a, t, NULL);
    return 0;
}

/* bias term of part k */
static void bias_term(mpq_t out, int *negzero, const naive_rule *r, int part, int sel_pos,
                      float b)
{
    mpq_t t, u;
    mpq_inits(t, u, NULL);
    mpq_set_ui(out, 0, 1);
    *negzero = 0;
    switch (r->rule) {
    case NV_LRP0:
    case NV_EPS:
        mpq_set_d(out, b);
        *negzero = b == 0 && signbit(b);
        break;
    case NV_GAMMA: {
        /* Captum's GammaRule: the bias stays b (the g b+ term is 0) */
        float bm = r->captum ? 0.0f : r->generalized && !sel_pos ? fneg(b) : fpos(b);
        mpq_set_d(t, bm);
        mpq_set_d(u, r->gamma);
        mpq_mul(t, t, u);
        mpq_set_d(out, b);
        mpq_add(out, out, t);
        *negzero = b == 0 && signbit(b);
        break;
    }
    case NV_AB:
    case NV_ZPLUS:
        if (r->fullbias || r->captum) {
            mpq_set_d(out, b);
            *negzero = b == 0 && signbit(b);
        } else {
            mpq_set_d(out, part == 0 ? fpos(b) : fneg(b));
        }
        break;
    case NV_WSQUARE:
        mpq_set_d(t, b);
        mpq_mul(out, t, t);
        break;
    default: break; /* flat, zbox: no bias */
    }
    mpq_clears(t, u, NULL);
}

void naive_forward(mpq_t *z, const naive_geom *g, const float *x, const float *w,
                   const float *b)
{
    int Ho = naive_out_h(g), Wo = naive_out_w(g);
    int Cg = g->C / g->groups, Og = g->O / g->groups;
    mpq_t t, u;
    mpq_inits(t, u, NULL);
    for (int o = 0; o < g->O; o++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                mpq_ptr zj = z[(o * Ho + oy) * Wo + ox];
                mpq_set_d(zj, b ? b[o] : 0.0);
                int grp = o / Og;
                for (int cc = 0; cc < Cg; cc++)
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int iy = oy * g->sh - g->pt + ky * g->dh;
                            int ix = ox * g->sw - g->pl + kx * g->dw;
                            if (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W)
                                continue;
                            int c = grp * Cg + cc;
                            mpq_set_d(t, x[(c * g->H + iy) * g->W + ix]);
                            mpq_set_d(u, w[((o * Cg + cc) * g->kh + ky) * g->kw + kx]);
                            mpq_mul(t, t, u);
                            mpq_add(zj, zj, t);
                        }
            }
    mpq_clears(t, u, NULL);
}

void naive_lrp(mpq_t *R_in, mpq_t *gauge, mpq_t *absorbed, mpq_t *ugauge, int *status,
               const naive_geom *g, const float *x, const float *w, const float *b,
               const float *R_out, const naive_rule *r)
{
    int Ho = naive_out_h(g), Wo = naive_out_w(g);
    int Cg = g->C / g->groups, Og = g->O / g->groups;
    int n_in = g->C * g->H * g->W;
    int fan = Cg * g->kh * g->kw;
    mpq_t *nums = malloc((size_t)fan * sizeof *nums);
    int *idx = malloc((size_t)fan * sizeof *idx);
    for (int q = 0; q < fan; q++)
        mpq_init(nums[q]);
    mpq_t den, bt, Rj, s, t, eps, zplain, given;
    mpq_inits(den, bt, Rj, s, t, eps, zplain, given, NULL);
    mpq_set_d(eps, r->eps);
    for (int i = 0; i < n_in; i++) {
        mpq_set_ui(R_in[i], 0, 1);
        mpq_set_ui(gauge[i], 0, 1);
    }
    int nparts = (r->rule == NV_AB && r->beta != 0) ? 2 : 1;
    for (int o = 0; o < g->O; o++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                int j = (o * Ho + oy) * Wo + ox;
                mpq_set_d(Rj, R_out[j]);
                mpq_set_ui(given, 0, 1);
                mpq_abs(ugauge[j], Rj);
                status[j] = NV_OK;
                /* receptive field */
                int m = 0, grp = o / Og;
                int widx[4096];
                for (int cc = 0; cc < Cg; cc++)
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int iy = oy * g->sh - g->pt + ky * g->dh;
                            int ix = ox * g->sw - g->pl + kx * g->dw;
                            if (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W)
                                continue;
                            idx[m] = ((grp * Cg + cc) * g->H + iy) * g->W + ix;
                            widx[m] = ((o * Cg + cc) * g->kh + ky) * g->kw + kx;
                            m++;
                        }
                /* the gamma selectors look at the layer's real output
                 * z_j = sum x w + b, with the bias whatever the rule's bias
                 * switch (Zennit's Gamma under zero_params=['bias']) */
                int sel_pos = 1, dropped = 0;
                if (r->rule == NV_GAMMA && (r->generalized || r->drop0)) {
                    mpq_set_d(zplain, b ? b[o] : 0.0);
                    for (int q = 0; q < m; q++) {
                        mpq_set_d(t, x[idx[q]]);
                        mpq_set_d(s, w[widx[q]]);
                        mpq_mul(t, t, s);
                        mpq_add(zplain, zplain, t);
                    }
                    int sg = mpq_sgn(zplain);
                    sel_pos = sg >= 0;
                    if (r->drop0 && sg == 0)
                        dropped = 1;
                }
                if (dropped) {
                    status[j] = NV_DROPPED;
                    mpq_set(absorbed[j], Rj);
                    continue;
                }
                for (int k = 0; k < nparts; k++) {
                    double coefd = r->rule == NV_AB ? (k == 0 ? r->alpha : -r->beta) : 1.0;
                    int all_negzero = 1, nz;
                    mpq_set_ui(den, 0, 1);
                    for (int q = 0; q < m; q++) {
                        num(nums[q], &nz, r, k, sel_pos, x[idx[q]], w[widx[q]], idx[q]);
                        mpq_add(den, den, nums[q]);
                        all_negzero &= nz;
                    }
                    if (b && r->bias) {
                        bias_term(bt, &nz, r, k, sel_pos, b[o]);
                        mpq_add(den, den, bt);
                        all_negzero &= nz;
                    }
                    if (m == 0 && !(b && r->bias))
                        all_negzero = 0; /* empty sum is +0 */
                    int zero = mpq_sgn(den) == 0;
                    int ab_empty = (r->rule == NV_AB || r->rule == NV_ZPLUS) && !r->fullbias &&
                                   !r->captum;
                    mpq_set_d(t, coefd);
                    if (zero && ab_empty) {
                        status[j] = NV_EMPTY;
                        continue; /* share lost: absorbed */
                    }
                    int sg = zero ? 0 : mpq_sgn(den);
                    int skip = 0;
                    switch (r->stab) {
                    case NV_SIGN0_POS: sg = zero ? 1 : sg; break;
                    case NV_SIGNBIT: sg = zero ? (all_negzero ? -1 : 1) : sg; break;
                    case NV_SIGN0_ZERO: break;
                    case NV_ZERO_ONLY: sg = zero ? 1 : 0; break;
                    case NV_SKIP_ZERO: skip = zero; break;
                    case NV_POSITIVE: sg = 1; break;
                    }
                    if (skip) {
                        mpq_set(s, Rj); /* as if divided by 1 */
                        status[j] = NV_SKIP;
                    } else {
                        if (r->eps != 0 && sg != 0) {
                            if (sg > 0)
                                mpq_add(den, den, eps);
                            else
                                mpq_sub(den, den, eps);
                        }
                        if (mpq_sgn(den) == 0) {
                            status[j] = NV_UNDEF;
                            continue;
                        }
                        mpq_div(s, Rj, den);
                    }
                    mpq_mul(s, s, t); /* coef */
                    for (int q = 0; q < m; q++) {
                        mpq_mul(t, nums[q], s);
                        mpq_add(R_in[idx[q]], R_in[idx[q]], t);
                        mpq_add(given, given, t);
                        mpq_abs(t, t);
                        mpq_add(gauge[idx[q]], gauge[idx[q]], t);
                        mpq_add(ugauge[j], ugauge[j], t);
                    }
                }
                mpq_sub(absorbed[j], Rj, given);
            }
    for (int q = 0; q < fan; q++)
        mpq_clear(nums[q]);
    free(nums);
    free(idx);
    mpq_clears(den, bt, Rj, s, t, eps, zplain, given, NULL);
}
