/*
 * test_gauge_lin.c -- the gauge's linear-layer sums (oracle/gauge_lin.c:
 * im2col / col2im around a blocked binary64 GEMM) against plain connection
 * loops written here, on random layers: Dense, Conv2D with groups
 * (depthwise included), stride, dilation, asymmetric padding, fan-ins and
 * channel counts past the GEMM's K, M and column blocks, stacked terms
 * with every weight modifier, absent (NULL) sources.
 *
 *   - forward sums (lrp_gl_conv) and transposed sums (lrp_gl_conv_t) equal
 *     the plain loops' to the rounding of a binary64 sum (the bound below);
 *   - the bits do not depend on the threads (1, 2, 3) nor on the kernel
 *     (AVX or portable);
 *   - a Dense on many token rows at once gives each row the bits of that
 *     row alone (lrp_gl_dense_rows, lrp_gl_dense_rows_t);
 *   - the connectivity propagation (lrp_gl_maxprop) equals the plain loop
 *     exactly (max and or are exact), NaN handling included;
 *   - the whole gauge of a batch of 2 gives each sample the bits of that
 *     sample's gauge alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "fixtures.h"
#include "gauge.h"
#include "gauge_lin.h"
#include "lrp.h"
#include "pipeline.h"
#include "util/testutil.h"

/* ---- random numbers (xorshift64*) ---- */

static uint64_t rng = 88172645463325252ull;

static uint64_t rnext(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static int rint_(int lo, int hi) { return lo + (int)(rnext() % (uint64_t)(hi - lo + 1)); }

static double runif(void) { return (double)(rnext() >> 11) * 0x1p-53 * 2.0 - 1.0; }

/* ---- random geometry ---- */

static void random_conv(lrp_lin *L, int big)
{
    memset(L, 0, sizeof *L);
    L->conv = 1;
    int g = rint_(0, 3) == 0 ? 1 : rint_(1, 3);
    int depthwise = rint_(0, 4) == 0;
    int64_t cg = depthwise ? 1 : rint_(1, big ? 40 : 5), og = depthwise ? 1 : rint_(1, big ? 150 : 6);
    if (depthwise)
        g = rint_(2, 6);
    L->groups = g;
    L->C = cg * g;
    L->O = og * g;
    L->kh = rint_(1, 3);
    L->kw = rint_(1, 3);
    L->sh = rint_(1, 2);
    L->sw = rint_(1, 3);
    L->dh = rint_(1, 2);
    L->dw = rint_(1, 2);
    L->pt = rint_(0, 2);
    L->pl = rint_(0, 2);
    int pb = rint_(0, 2), pr = rint_(0, 2);
    for (;;) {
        L->H = rint_(1, big ? 24 : 9);
        L->W = rint_(1, big ? 24 : 9);
        int64_t eh = L->H + L->pt + pb - (int64_t)L->dh * (L->kh - 1);
        int64_t ew = L->W + L->pl + pr - (int64_t)L->dw * (L->kw - 1);
        if (eh >= 1 && ew >= 1) {
            L->Ho = (eh - 1) / L->sh + 1;
            L->Wo = (ew - 1) / L->sw + 1;
            break;
        }
    }
    L->fanin = cg * L->kh * L->kw;
    L->n_in = L->C * L->H * L->W;
    L->n_out = L->O * L->Ho * L->Wo;
}

/* Dense as lrp_pipe_lin_geom describes it: a 1x1 image */
static void random_dense(lrp_lin *L, int big)
{
    memset(L, 0, sizeof *L);
    L->n_in = rint_(1, big ? 700 : 20);
    L->n_out = rint_(1, big ? 300 : 20);
    L->fanin = L->n_in;
    L->O = L->n_out;
    L->C = L->n_in;
    L->Ho = L->Wo = L->H = L->W = 1;
    L->kh = L->kw = L->sh = L->sw = L->dh = L->dw = L->groups = 1;
}

static double wmod_(int m, double w)
{
    switch (m) {
    case LRP_WM_POS: return w > 0 ? w : 0;
    case LRP_WM_NEG: return w < 0 ? w : 0;
    case LRP_WM_SQUARE: return w * w;
    case LRP_WM_ONES: return 1;
    default: return w;
    }
}

static double wval(const lrp_gl_w *A, int t, int64_t k)
{
    double w = A->wd ? A->wd[k] : (double)A->wf[k];
    double v = A->tc[t] * wmod_(A->wm[t], w);
    return A->op == LRP_GL_ABS ? fabs(v) : A->op == LRP_GL_SQUARE ? v * v : v;
}

/* Calls fn(j, i, k) for every connection: the plain loop. */
#define EACH_CONN(L, BODY)                                                                     \
    do {                                                                                       \
        int64_t cg_ = (L)->C / (L)->groups, og_ = (L)->O / (L)->groups;                        \
        for (int64_t o = 0; o < (L)->O; o++)                                                   \
            for (int64_t y = 0; y < (L)->Ho; y++)                                              \
                for (int64_t x = 0; x < (L)->Wo; x++)                                          \
                    for (int64_t c = 0; c < cg_; c++)                                          \
                        for (int ky = 0; ky < (L)->kh; ky++)                                   \
                            for (int kx = 0; kx < (L)->kw; kx++) {                             \
                                int64_t iy = y * (L)->sh - (L)->pt + (int64_t)ky * (L)->dh;    \
                                int64_t ix = x * (L)->sw - (L)->pl + (int64_t)kx * (L)->dw;    \
                                if (iy < 0 || iy >= (L)->H || ix < 0 || ix >= (L)->W)          \
                                    continue;                                                  \
                                int64_t j = (o * (L)->Ho + y) * (L)->Wo + x;                   \
                                int64_t i = (((o / og_) * cg_ + c) * (L)->H + iy) * (L)->W + ix; \
                                int64_t k = ((o * cg_ + c) * (L)->kh + ky) * (L)->kw + kx;     \
                                (void)i, (void)j, (void)k;                                     \
                                BODY;                                                          \
                            }                                                                  \
    } while (0)

typedef struct layer_case {
    lrp_lin L;
    int64_t nin, nout, nw;
    float *wf;
    double *wd;
    lrp_gl_w A;
} layer_case;

static void make_case(layer_case *lc, int dense, int big, int nt, int op)
{
    memset(lc, 0, sizeof *lc);
    if (dense)
        random_dense(&lc->L, big);
    else
        random_conv(&lc->L, big);
    lrp_lin *L = &lc->L;
    lc->nin = L->C * L->H * L->W;
    lc->nout = L->O * L->Ho * L->Wo;
    lc->nw = L->O * L->fanin;
    lc->wf = malloc((size_t)lc->nw * sizeof *lc->wf);
    assert_non_null(lc->wf);
    for (int64_t k = 0; k < lc->nw; k++)
        lc->wf[k] = rint_(0, 7) == 0 ? 0.0f : (float)runif();
    if (rint_(0, 1)) { /* folded weights in binary64 */
        lc->wd = malloc((size_t)lc->nw * sizeof *lc->wd);
        assert_non_null(lc->wd);
        for (int64_t k = 0; k < lc->nw; k++)
            lc->wd[k] = (double)lc->wf[k] * 1.37;
    }
    lc->A.wf = lc->wf;
    lc->A.wd = lc->wd;
    lc->A.nt = nt;
    lc->A.op = op;
    for (int t = 0; t < nt; t++) {
        lc->A.wm[t] = rint_(LRP_WM_ID, LRP_WM_ONES);
        lc->A.tc[t] = rint_(0, 1) ? 1.0 : runif() * 3;
    }
}

static void free_case(layer_case *lc)
{
    free(lc->wf);
    free(lc->wd);
}

static double *rvec(int64_t n)
{
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++)
        v[i] = rint_(0, 5) == 0 ? 0.0 : runif() * 4;
    return v;
}

static int same_bits(const double *a, const double *b, int64_t n)
{
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* Two binary64 sums of the same n products in different orders are each
 * within gamma_n * sum|products| of the exact sum (Higham, Accuracy and
 * Stability, ch. 4; gamma_n ~ n 2^-53), so they differ by at most about
 * 2 n 2^-53 sum|products|: allowed (n + 2) 2^-52 sum|products|.  An index
 * or padding error moves a sum by a whole product, far beyond that. */
static void assert_close(double got, double want, double absum, int64_t n, const char *what,
                         int64_t at)
{
    double tol = (double)(n + 2) * 0x1p-52 * absum;
    if (!(fabs(got - want) <= tol))
        fail_msg("%s[%lld]: %.17g, plain loop %.17g (allowed %.3g)", what, (long long)at, got,
                 want, tol);
}

static void t_forward(void **state)
{
    (void)state;
    for (int rep = 0; rep < 160; rep++) {
        int dense = rep % 5 == 0, big = rep % 8 == 1;
        int nt = rint_(1, 3), ns = rint_(1, 3), op = rint_(LRP_GL_ID, LRP_GL_SQUARE);
        layer_case lc;
        make_case(&lc, dense, big, nt, op);
        const double *src[9];
        double *srcm[9];
        for (int q = 0; q < nt * ns; q++) {
            srcm[q] = rint_(0, 6) == 0 ? NULL : rvec(lc.nin);
            src[q] = srcm[q];
        }
        double *out[3], *o1[3], *o3[3], *want = malloc((size_t)lc.nout * sizeof *want);
        double *abs_ = malloc((size_t)lc.nout * sizeof *abs_);
        assert_true(want && abs_);
        for (int s = 0; s < ns; s++) {
            out[s] = malloc((size_t)lc.nout * sizeof(double));
            o1[s] = malloc((size_t)lc.nout * sizeof(double));
            o3[s] = malloc((size_t)lc.nout * sizeof(double));
            assert_true(out[s] && o1[s] && o3[s]);
            for (int64_t j = 0; j < lc.nout; j++)
                out[s][j] = o1[s][j] = o3[s][j] = NAN; /* overwritten */
        }
        assert_int_equal(lrp_gl_conv(&lc.L, &lc.A, ns, src, out, 2), 0);
        assert_int_equal(lrp_gl_conv(&lc.L, &lc.A, ns, src, o1, 1), 0);
        assert_int_equal(lrp_gl_conv(&lc.L, &lc.A, ns, src, o3, 3), 0);
        for (int s = 0; s < ns; s++) {
            memset(want, 0, (size_t)lc.nout * sizeof *want);
            memset(abs_, 0, (size_t)lc.nout * sizeof *abs_);
            for (int t = 0; t < nt; t++) {
                const double *xs = src[t * ns + s];
                if (!xs)
                    continue;
                EACH_CONN(&lc.L, {
                    double p = wval(&lc.A, t, k) * xs[i];
                    want[j] += p;
                    abs_[j] += fabs(p);
                });
            }
            for (int64_t j = 0; j < lc.nout; j++)
                assert_close(out[s][j], want[j], abs_[j], (int64_t)nt * lc.L.fanin, "conv", j);
            assert_true(same_bits(out[s], o1[s], lc.nout));
            assert_true(same_bits(out[s], o3[s], lc.nout));
            free(out[s]), free(o1[s]), free(o3[s]);
        }
        for (int q = 0; q < nt * ns; q++)
            free(srcm[q]);
        free(want), free(abs_);
        free_case(&lc);
    }
}

static void t_transposed(void **state)
{
    (void)state;
    for (int rep = 0; rep < 160; rep++) {
        int dense = rep % 5 == 0, big = rep % 8 == 1;
        int ns = rint_(1, 3), op = rint_(LRP_GL_ID, LRP_GL_SQUARE);
        layer_case lc;
        make_case(&lc, dense, big, 1, op);
        const double *v[3];
        double *vm[3], *out[3], *o1[3], *o3[3];
        double *want = malloc((size_t)lc.nin * sizeof *want);
        double *abs_ = malloc((size_t)lc.nin * sizeof *abs_);
        int64_t *cnt = malloc((size_t)lc.nin * sizeof *cnt);
        assert_true(want && abs_ && cnt);
        for (int s = 0; s < ns; s++) {
            vm[s] = rint_(0, 6) == 0 ? NULL : rvec(lc.nout);
            v[s] = vm[s];
            out[s] = malloc((size_t)lc.nin * sizeof(double));
            o1[s] = malloc((size_t)lc.nin * sizeof(double));
            o3[s] = malloc((size_t)lc.nin * sizeof(double));
            assert_true(out[s] && o1[s] && o3[s]);
            for (int64_t i = 0; i < lc.nin; i++)
                out[s][i] = o1[s][i] = o3[s][i] = NAN;
        }
        assert_int_equal(lrp_gl_conv_t(&lc.L, &lc.A, ns, v, out, 2), 0);
        assert_int_equal(lrp_gl_conv_t(&lc.L, &lc.A, ns, v, o1, 1), 0);
        assert_int_equal(lrp_gl_conv_t(&lc.L, &lc.A, ns, v, o3, 3), 0);
        for (int s = 0; s < ns; s++) {
            memset(want, 0, (size_t)lc.nin * sizeof *want);
            memset(abs_, 0, (size_t)lc.nin * sizeof *abs_);
            memset(cnt, 0, (size_t)lc.nin * sizeof *cnt);
            if (v[s])
                EACH_CONN(&lc.L, {
                    double p = wval(&lc.A, 0, k) * v[s][j];
                    want[i] += p;
                    abs_[i] += fabs(p);
                    cnt[i]++;
                });
            for (int64_t i = 0; i < lc.nin; i++)
                assert_close(out[s][i], want[i], abs_[i], cnt[i], "conv_t", i);
            assert_true(same_bits(out[s], o1[s], lc.nin));
            assert_true(same_bits(out[s], o3[s], lc.nin));
            free(out[s]), free(o1[s]), free(o3[s]), free(vm[s]);
        }
        free(want), free(abs_), free(cnt);
        free_case(&lc);
    }
}

/* A Dense on many token rows at once (lrp_gl_dense_rows / _t) gives every
 * row the bits of lrp_gl_conv / lrp_gl_conv_t on that row alone, with NULL
 * sources, row counts past the column blocks and threads 1 and 2. */
static void t_dense_rows(void **state)
{
    (void)state;
    for (int rep = 0; rep < 60; rep++) {
        int big = rep % 4 == 1, nt = rint_(1, 3), op = rint_(LRP_GL_ID, LRP_GL_SQUARE);
        int64_t rows = rep % 3 == 0 ? rint_(1, 4) : rint_(5, big ? 300 : 40);
        int ns = rint_(1, 3), th = 1 + rep % 2;
        layer_case lc;
        make_case(&lc, 1, big, nt, op);
        int64_t nin = lc.nin, nout = lc.nout;
        /* forward: nt x ns sources of rows x nin */
        const double *src[LRP_PIPE_MAX_TERMS * 3];
        double *sm[LRP_PIPE_MAX_TERMS * 3], *out[3], *one[3];
        for (int q = 0; q < nt * ns; q++) {
            sm[q] = rint_(0, 6) == 0 ? NULL : rvec(rows * nin);
            src[q] = sm[q];
        }
        for (int s = 0; s < ns; s++) {
            out[s] = malloc((size_t)(rows * nout) * sizeof(double));
            one[s] = malloc((size_t)nout * sizeof(double));
            assert_true(out[s] && one[s]);
        }
        assert_int_equal(lrp_gl_dense_rows(&lc.L, rows, &lc.A, ns, src, out, th), 0);
        for (int64_t r = 0; r < rows; r++) {
            const double *sr[LRP_PIPE_MAX_TERMS * 3];
            for (int q = 0; q < nt * ns; q++)
                sr[q] = src[q] ? src[q] + r * nin : NULL;
            assert_int_equal(lrp_gl_conv(&lc.L, &lc.A, ns, sr, one, th), 0);
            for (int s = 0; s < ns; s++)
                assert_true(same_bits(out[s] + r * nout, one[s], nout));
        }
        for (int s = 0; s < ns; s++)
            free(out[s]), free(one[s]);
        for (int q = 0; q < nt * ns; q++)
            free(sm[q]);
        /* transposed: one term, ns sources of rows x nout */
        lc.A.nt = 1;
        const double *v[3];
        double *vm[3];
        for (int s = 0; s < ns; s++) {
            vm[s] = rint_(0, 6) == 0 ? NULL : rvec(rows * nout);
            v[s] = vm[s];
            out[s] = malloc((size_t)(rows * nin) * sizeof(double));
            one[s] = malloc((size_t)nin * sizeof(double));
            assert_true(out[s] && one[s]);
            for (int64_t i = 0; i < rows * nin; i++)
                out[s][i] = NAN; /* every value is written */
        }
        assert_int_equal(lrp_gl_dense_rows_t(&lc.L, rows, &lc.A, ns, v, out, th), 0);
        for (int64_t r = 0; r < rows; r++) {
            const double *vr[3];
            for (int s = 0; s < ns; s++)
                vr[s] = v[s] ? v[s] + r * nout : NULL;
            assert_int_equal(lrp_gl_conv_t(&lc.L, &lc.A, ns, vr, one, th), 0);
            for (int s = 0; s < ns; s++)
                assert_true(same_bits(out[s] + r * nin, one[s], nin));
        }
        for (int s = 0; s < ns; s++)
            free(out[s]), free(one[s]), free(vm[s]);
        free_case(&lc);
    }
}

/* the AVX kernel and the portable one: the same bits */
static void t_kernels(void **state)
{
    (void)state;
    for (int rep = 0; rep < 24; rep++) {
        layer_case lc;
        make_case(&lc, rep % 4 == 0, rep % 3 == 1, 2, LRP_GL_ID);
        double *x0 = rvec(lc.nin), *x1 = rvec(lc.nin), *vv = rvec(lc.nout);
        const double *src[2] = {x0, x1}, *v[1] = {vv};
        double *a = malloc((size_t)lc.nout * sizeof *a), *b = malloc((size_t)lc.nout * sizeof *b);
        double *at = malloc((size_t)lc.nin * sizeof *at), *bt = malloc((size_t)lc.nin * sizeof *bt);
        assert_true(a && b && at && bt);
        double *oa[1] = {a}, *ob[1] = {b}, *ota[1] = {at}, *otb[1] = {bt};
        lrp_gl_force_portable(0);
        assert_int_equal(lrp_gl_conv(&lc.L, &lc.A, 1, src, oa, 2), 0);
        lc.A.nt = 1;
        assert_int_equal(lrp_gl_conv_t(&lc.L, &lc.A, 1, v, ota, 2), 0);
        lrp_gl_force_portable(1);
        lc.A.nt = 2;
        assert_int_equal(lrp_gl_conv(&lc.L, &lc.A, 1, src, ob, 2), 0);
        lc.A.nt = 1;
        assert_int_equal(lrp_gl_conv_t(&lc.L, &lc.A, 1, v, otb, 2), 0);
        lrp_gl_force_portable(0);
        assert_true(same_bits(a, b, lc.nout));
        assert_true(same_bits(at, bt, lc.nin));
        free(x0), free(x1), free(vv), free(a), free(b), free(at), free(bt);
        free_case(&lc);
    }
}

static void t_maxprop(void **state)
{
    (void)state;
    for (int rep = 0; rep < 200; rep++) {
        layer_case lc;
        make_case(&lc, rep % 5 == 0, 0, 1, LRP_GL_ID);
        double *v = rvec(lc.nout), *m = rvec(lc.nin), *want = malloc((size_t)lc.nin * sizeof *want);
        uint8_t *fl = malloc((size_t)lc.nout), *f = malloc((size_t)lc.nin), *fw = malloc((size_t)lc.nin);
        assert_true(want && fl && f && fw);
        for (int64_t j = 0; j < lc.nout; j++) {
            fl[j] = (uint8_t)(rint_(0, 9) == 0 ? 1u << rint_(0, 3) : 0);
            if (rint_(0, 9) == 0)
                v[j] = NAN;
        }
        for (int64_t i = 0; i < lc.nin; i++) {
            f[i] = fw[i] = (uint8_t)(rint_(0, 9) == 0 ? 16 : 0);
            if (rint_(0, 19) == 0)
                m[i] = NAN;
        }
        memcpy(want, m, (size_t)lc.nin * sizeof *m);
        EACH_CONN(&lc.L, {
            (void)k;
            if (v[j] > want[i])
                want[i] = v[j];
            fw[i] |= fl[j];
        });
        assert_int_equal(lrp_gl_maxprop(&lc.L, v, m, fl, f), 0);
        for (int64_t i = 0; i < lc.nin; i++) {
            assert_true(memcmp(&m[i], &want[i], sizeof m[i]) == 0 || (isnan(m[i]) && isnan(want[i])));
            assert_int_equal(f[i], fw[i]);
        }
        free(v), free(m), free(want), free(fl), free(f), free(fw);
        free_case(&lc);
    }
}

/* A token Dense's rows in blocks of any size (1, 2, 3 rows: partial blocks
 * and blocks across samples) give the gauge of all rows at once, bit for
 * bit: bounds, conds, sharp bounds, flags, the sharp totals and the
 * ill-conditioned mass; propagated and local, under a one-part and a
 * two-part rule. */
static void t_row_blocks(void **state)
{
    (void)state;
    static const char *const fx[] = {"tokmlp", "bert_tiny"};
    static const lrp_rule_id rules[] = {LRP_RULE_EPSILON, LRP_RULE_ALPHABETA};
    for (size_t f = 0; f < sizeof fx / sizeof fx[0]; f++)
        for (int r = 0; r < 2; r++) {
            lrp_net *net = tu_fixture(fx[f]);
            lrp_rule_spec rs = lrp_rule_default(rules[r]);
            if (rules[r] == LRP_RULE_ALPHABETA)
                rs.alpha = 2.0f, rs.beta = 1.0f;
            lrp_rule_apply_all(net, &rs);
            lrp_err e = {0};
            if (lrp_net_infer(net, "rules", &e))
                fail_msg("%s: %s", fx[f], e.msg);
            int nl = net->n_layers, tokd = 0;
            for (int li = 0; li < nl; li++) {
                lrp_lin L;
                if (net->layers[li].kind == LRP_LAYER_DENSE) {
                    lrp_pipe_lin_geom(&L, net, li);
                    tokd += L.rows > 3;
                }
            }
            assert_true(tokd > 0); /* a token Dense with more rows than a block */
            /* (unsigned: gcc -O1 saw a negative nl reach calloc and warned) */
            float **act = calloc((unsigned)nl, sizeof *act);
            float **rel = calloc((unsigned)nl, sizeof *rel);
            assert_true(act && rel);
            for (int li = 0; li < nl; li++) {
                int64_t n = lrp_shape_numel(&net->layers[li].shape) * net->batch;
                act[li] = malloc((size_t)n * sizeof(float));
                rel[li] = malloc((size_t)n * sizeof(float));
                assert_true(act[li] && rel[li]);
                for (int64_t q = 0; q < n; q++) {
                    act[li][q] = (float)runif();
                    rel[li][q] = (float)runif();
                }
            }
            for (int local = 0; local < 2; local++) {
                lrp_gauge g0, g1;
                lrp_gauge_opts o = {local, local ? LRP_GI_EXACT : LRP_GI_PROPAGATED,
                                    LRP_SHARP_LAMBDA, 2, NULL, NULL, 0, NULL};
                lrp_gauge_set_row_block(0);
                assert_int_equal(lrp_gauge_compute_opts(&g0, net, act, rel, &o, &e), LRP_OK);
                for (int64_t blk = 1; blk <= 3; blk++) {
                    lrp_gauge_set_row_block(blk);
                    assert_int_equal(lrp_gauge_compute_opts(&g1, net, act, rel, &o, &e), LRP_OK);
                    for (int li = 0; li < nl; li++) {
                        int64_t n = lrp_shape_numel(&net->layers[li].shape) * net->batch;
                        size_t nb = (size_t)n * sizeof(float);
                        assert_memory_equal(g0.bound[li], g1.bound[li], nb);
                        assert_memory_equal(g0.cond[li], g1.cond[li], nb);
                        assert_memory_equal(g0.sharp[li], g1.sharp[li], nb);
                        assert_memory_equal(g0.scond[li], g1.scond[li], nb);
                        assert_memory_equal(g0.fwd[li], g1.fwd[li], nb);
                        assert_memory_equal(g0.cflags[li], g1.cflags[li], (size_t)n);
                        assert_true(!g0.total_sharp == !g1.total_sharp &&
                                    !g0.ill_mass == !g1.ill_mass);
                        if (g0.total_sharp)
                            assert_memory_equal(&g0.total_sharp[li], &g1.total_sharp[li],
                                                sizeof(double));
                        if (g0.ill_mass)
                            assert_memory_equal(&g0.ill_mass[li], &g1.ill_mass[li],
                                                sizeof(double));
                    }
                    lrp_gauge_free(&g1);
                }
                lrp_gauge_set_row_block(0);
                lrp_gauge_free(&g0);
            }
            for (int li = 0; li < nl; li++)
                free(act[li]), free(rel[li]);
            free(act), free(rel);
            lrp_net_free(net);
        }
}

/* ---- the whole gauge: a batch of two samples against each alone ---- */

static lrp_net *batch_net(int batch, uint64_t seed)
{
    lrp_err e = {0};
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    lrp_builder b;
    lrp_build_begin(&b, net, seed, &e);
    int x = lrp_build_input(&b, "input", 3, 4, 9, 9);
    x = lrp_build_conv(&b, "conv1", x, 6, 3, 2, 1, 2, 1);
    x = lrp_build_relu(&b, "relu1", x);
    x = lrp_build_conv(&b, "conv2", x, 6, 3, 1, 1, 6, 1); /* depthwise */
    x = lrp_build_relu(&b, "relu2", x);
    x = lrp_build_flatten(&b, "flat", x);
    lrp_build_dense(&b, "fc", x, 5, 1);
    if (lrp_build_finish(&b, batch) != LRP_OK)
        fail_msg("builder: %s", e.msg);
    return net;
}

static void t_batch(void **state)
{
    (void)state;
    static const lrp_rule_id rules[] = {LRP_RULE_EPSILON, LRP_RULE_GAMMA, LRP_RULE_ALPHABETA};
    for (int r = 0; r < 3; r++) {
        lrp_net *net = batch_net(2, 5);
        lrp_rule_spec rs = lrp_rule_default(rules[r]);
        lrp_rule_apply_all(net, &rs);
        lrp_err e = {0};
        if (lrp_net_infer(net, "rules", &e))
            fail_msg("%s", e.msg);
        int nl = net->n_layers;
        float **act = calloc((size_t)nl, sizeof *act), **rel = calloc((size_t)nl, sizeof *rel);
        float **act1 = calloc((size_t)nl, sizeof *act1), **rel1 = calloc((size_t)nl, sizeof *rel1);
        assert_true(act && rel && act1 && rel1);
        for (int li = 0; li < nl; li++) {
            int64_t n = lrp_shape_numel(&net->layers[li].shape);
            act[li] = malloc((size_t)(2 * n) * sizeof(float));
            rel[li] = malloc((size_t)(2 * n) * sizeof(float));
            assert_true(act[li] && rel[li]);
            for (int64_t q = 0; q < 2 * n; q++) {
                act[li][q] = (float)runif();
                rel[li][q] = (float)runif();
            }
            act1[li] = act[li] + n;
            rel1[li] = rel[li] + n;
        }
        for (int local = 0; local < 2; local++) {
            lrp_gauge g2, g1;
            lrp_gauge_opts o = {local, local ? LRP_GI_EXACT : LRP_GI_PROPAGATED, LRP_SHARP_LAMBDA,
                                2, NULL, NULL, 0, NULL};
            net->batch = 2;
            assert_int_equal(lrp_gauge_compute_opts(&g2, net, act, rel, &o, &e), LRP_OK);
            net->batch = 1;
            assert_int_equal(lrp_gauge_compute_opts(&g1, net, act1, rel1, &o, &e), LRP_OK);
            for (int li = 0; li < nl; li++) {
                int64_t n = lrp_shape_numel(&net->layers[li].shape);
                size_t nb = (size_t)n * sizeof(float);
                assert_memory_equal(g2.bound[li] + n, g1.bound[li], nb);
                assert_memory_equal(g2.cond[li] + n, g1.cond[li], nb);
                assert_memory_equal(g2.sharp[li] + n, g1.sharp[li], nb);
                assert_memory_equal(g2.scond[li] + n, g1.scond[li], nb);
                assert_memory_equal(g2.fwd[li] + n, g1.fwd[li], nb);
                assert_memory_equal(g2.cflags[li] + n, g1.cflags[li], (size_t)n);
            }
            lrp_gauge_free(&g2);
            lrp_gauge_free(&g1);
        }
        net->batch = 2;
        for (int li = 0; li < nl; li++)
            free(act[li]), free(rel[li]);
        free(act), free(rel), free(act1), free(rel1);
        lrp_net_free(net);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_forward),
        cmocka_unit_test(t_transposed),
        cmocka_unit_test(t_dense_rows),
        cmocka_unit_test(t_row_blocks),
        cmocka_unit_test(t_kernels),
        cmocka_unit_test(t_maxprop),
        cmocka_unit_test(t_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
