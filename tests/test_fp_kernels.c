/*
 * test_fp_kernels.c -- the float32 fast-path kernels (fastpath/fp_kernels.h)
 * against straightforward double-precision loops, plus the determinism
 * contract: bitwise equality between 1 and 2 threads and between every
 * dispatch path this CPU supports (portable / AVX2 / AVX-512).
 *
 * Tolerance.  Each float32 output is a chain of n single-rounding fmas
 * (plus one add for a bias), so with u = 2^-24 and gamma_n = n u / (1 - n u)
 *     |fl(s) - s| <= gamma_n * sum |terms|
 * (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., 3.1).
 * The double loop is exact to ~n 2^-53 sum|terms|, far below that; we add
 * 2^-40 sum|terms| for it.  A kernel that sums in the wrong order still
 * passes this bound, which is why the bitwise cross-path tests exist; a
 * kernel that drops, repeats or misplaces a term fails it.
 *
 * Seed: LRP_TEST_SEED (printed) overrides the fixed default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fp_kernels.h"

/* the frozen pre-rewrite conv engine: the bitwise gate below */
#include "fp_conv_old.inc"

/* ---- helpers ---- */

static uint64_t rng_state;

static uint64_t splitmix(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1), multiples of 2^-23 */
static float urand(void)
{
    return (float)((int64_t)(splitmix() >> 40) - (1 << 23)) * 0x1p-23f;
}

static float *rand_buf(size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = urand();
    return p;
}

static double gamma_n(double n)
{
    double u = 0x1p-24;
    return n * u / (1.0 - n * u);
}

/* got vs exact within gamma_n * abssum; fail_msg names the place. */
static void check_close(const float *got, const double *ref, const double *abssum,
                        size_t cnt, double nterms, const char *what)
{
    double g = gamma_n(nterms);
    for (size_t i = 0; i < cnt; i++) {
        double err = fabs((double)got[i] - ref[i]);
        double tol = g * abssum[i] + 0x1p-40 * abssum[i];
        if (!(err <= tol))
            fail_msg("%s: element %zu got %.9g want %.17g (err %.3g > tol %.3g)",
                     what, i, (double)got[i], ref[i], err, tol);
    }
}

/* bit-equal, or both NaN */
static void check_same_bits(const float *a, const float *b, size_t cnt,
                            const char *what)
{
    for (size_t i = 0; i < cnt; i++) {
        uint32_t ua, ub;
        memcpy(&ua, &a[i], 4);
        memcpy(&ub, &b[i], 4);
        if (ua != ub && !(isnan(a[i]) && isnan(b[i])))
            fail_msg("%s: element %zu differs: %a vs %a", what, i, (double)a[i],
                     (double)b[i]);
    }
}

static int n_isa_checked;

/* ---- conv references ---- */

static void ref_conv_fwd(double *out, double *abss, const float *in,
                         const float *w, const float *bias,
                         const lrp_fp_conv_geom *g, int oh, int ow)
{
    int cig = g->c / g->groups, cog = g->co / g->groups;
    for (int n = 0; n < g->n; n++)
        for (int co = 0; co < g->co; co++) {
            int gr = co / cog;
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    double s = bias ? bias[co] : 0.0, a = bias ? fabs(bias[co]) : 0.0;
                    for (int ci = 0; ci < cig; ci++)
                        for (int ky = 0; ky < g->kh; ky++)
                            for (int kx = 0; kx < g->kw; kx++) {
                                int iy = y * g->sh - g->pt + ky * g->dh;
                                int ix = x * g->sw - g->pl + kx * g->dw;
                                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                    continue;
                                double t = (double)in[(((size_t)n * g->c + gr * cig + ci) * g->h + iy) * g->w + ix] *
                                           w[(((size_t)co * cig + ci) * g->kh + ky) * g->kw + kx];
                                s += t;
                                a += fabs(t);
                            }
                    size_t o = (((size_t)n * g->co + co) * oh + y) * ow + x;
                    out[o] = s;
                    abss[o] = a;
                }
        }
}

static void ref_conv_bwd(double *gin, double *abss, const float *gout,
                         const float *w, const lrp_fp_conv_geom *g, int oh, int ow)
{
    int cig = g->c / g->groups, cog = g->co / g->groups;
    size_t nin = (size_t)g->n * g->c * g->h * g->w;
    memset(gin, 0, sizeof(double) * nin);
    memset(abss, 0, sizeof(double) * nin);
    for (int n = 0; n < g->n; n++)
        for (int co = 0; co < g->co; co++) {
            int gr = co / cog;
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    double gv = gout[(((size_t)n * g->co + co) * oh + y) * ow + x];
                    for (int ci = 0; ci < cig; ci++)
                        for (int ky = 0; ky < g->kh; ky++)
                            for (int kx = 0; kx < g->kw; kx++) {
                                int iy = y * g->sh - g->pt + ky * g->dh;
                                int ix = x * g->sw - g->pl + kx * g->dw;
                                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                    continue;
                                double t = gv * w[(((size_t)co * cig + ci) * g->kh + ky) * g->kw + kx];
                                size_t i = (((size_t)n * g->c + gr * cig + ci) * g->h + iy) * g->w + ix;
                                gin[i] += t;
                                abss[i] += fabs(t);
                            }
                }
        }
}

/* n, c, h, w, co, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, groups */
static const lrp_fp_conv_geom shapes[] = {
    {1, 3, 7, 7, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},       /* basic 3x3 same */
    {1, 4, 9, 8, 6, 3, 3, 2, 2, 1, 1, 0, 1, 1, 0, 1},       /* stride 2, asym pad */
    {1, 3, 11, 10, 4, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1},     /* dilation 2 */
    {1, 6, 8, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},      /* groups 2 */
    {1, 6, 9, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6},       /* depthwise */
    {1, 5, 9, 9, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 5},      /* depthwise x2 mult, s2 */
    {1, 19, 6, 7, 17, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},     /* 1x1, odd channels */
    {3, 7, 5, 6, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},       /* batch 3 */
    {2, 8, 1, 1, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},      /* 1x1 spatial */
    {1, 3, 15, 15, 8, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, 1},     /* ResNet stem-like */
    {1, 16, 7, 7, 33, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* 7x7, co 33 */
    {1, 5, 10, 11, 7, 2, 2, 3, 3, 1, 1, 0, 1, 0, 2, 1},     /* stride 3 > kernel */
    {1, 4, 8, 8, 5, 3, 3, 1, 1, 1, 1, 3, 2, 0, 3, 1},       /* pad > extent */
    {1, 32, 15, 13, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},   /* many tiles/panels */
    {2, 12, 9, 10, 18, 3, 5, 2, 1, 2, 1, 1, 2, 3, 0, 3},    /* mixed everything */
    {1, 20, 14, 14, 24, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1},   /* 1x1 stride 2 */
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

static void conv_case(const lrp_fp_conv_geom *g, int with_bias)
{
    int oh, ow;
    assert_int_equal(lrp_fp_conv_out_hw(g, &oh, &ow), 0);
    size_t nin = (size_t)g->n * g->c * g->h * g->w;
    size_t nout = (size_t)g->n * g->co * oh * ow;
    size_t nw = (size_t)g->co * (g->c / g->groups) * g->kh * g->kw;
    float *in = rand_buf(nin), *w = rand_buf(nw), *b = rand_buf(g->co);
    float *gout = rand_buf(nout);
    double *rf = malloc(sizeof(double) * nout), *af = malloc(sizeof(double) * nout);
    double *rb = malloc(sizeof(double) * nin), *ab = malloc(sizeof(double) * nin);
    float *f0 = malloc(sizeof(float) * nout), *f1 = malloc(sizeof(float) * nout);
    float *b0 = malloc(sizeof(float) * nin), *b1 = malloc(sizeof(float) * nin);
    assert_true(rf && af && rb && ab && f0 && f1 && b0 && b1);
    const float *bias = with_bias ? b : NULL;
    ref_conv_fwd(rf, af, in, w, bias, g, oh, ow);
    ref_conv_bwd(rb, ab, gout, w, g, oh, ow);
    int kf = (g->c / g->groups) * g->kh * g->kw + 1;
    int kb = (g->co / g->groups) * g->kh * g->kw;
    lrp_fp_isa saved = lrp_fp_get_isa();
    int first = 1;
    for (int isa = 0; isa < LRP_FP_ISA_COUNT; isa++) {
        if (lrp_fp_set_isa((lrp_fp_isa)isa) != 0)
            continue;
        for (int nt = 1; nt <= 2; nt++) {
            float *fo = first ? f0 : f1, *bo = first ? b0 : b1;
            memset(fo, 0xff, sizeof(float) * nout); /* NaN: catch unwritten */
            memset(bo, 0xff, sizeof(float) * nin);
            assert_int_equal(lrp_fp_conv2d_fwd(fo, in, w, bias, g, nt), 0);
            assert_int_equal(lrp_fp_conv2d_bwd_data(bo, gout, w, g, nt), 0);
            char what[96];
            snprintf(what, sizeof what, "fwd %s t%d", lrp_fp_isa_name((lrp_fp_isa)isa), nt);
            check_close(fo, rf, af, nout, kf, what);
            if (!first)
                check_same_bits(f0, f1, nout, what);
            snprintf(what, sizeof what, "bwd %s t%d", lrp_fp_isa_name((lrp_fp_isa)isa), nt);
            check_close(bo, rb, ab, nin, kb, what);
            if (!first)
                check_same_bits(b0, b1, nin, what);
            first = 0;
            n_isa_checked++;
        }
    }
    lrp_fp_set_isa(saved);
    free(in); free(w); free(b); free(gout);
    free(rf); free(af); free(rb); free(ab);
    free(f0); free(f1); free(b0); free(b1);
}

static void test_conv_shapes(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSHAPES; i++) {
        conv_case(&shapes[i], (int)(i % 2));
        conv_case(&shapes[i], (int)(1 - i % 2));
    }
}

static void test_conv_random_shapes(void **state)
{
    (void)state;
    for (int r = 0; r < 40; r++) {
        lrp_fp_conv_geom g;
        int oh, ow;
        do {
            g.groups = 1 + (int)(splitmix() % 3);
            g.n = 1 + (int)(splitmix() % 2);
            g.c = g.groups * (1 + (int)(splitmix() % 6));
            g.co = g.groups * (1 + (int)(splitmix() % 11));
            g.h = 1 + (int)(splitmix() % 12);
            g.w = 1 + (int)(splitmix() % 12);
            g.kh = 1 + (int)(splitmix() % 4);
            g.kw = 1 + (int)(splitmix() % 4);
            g.sh = 1 + (int)(splitmix() % 3);
            g.sw = 1 + (int)(splitmix() % 3);
            g.dh = 1 + (int)(splitmix() % 2);
            g.dw = 1 + (int)(splitmix() % 2);
            g.pt = (int)(splitmix() % 3);
            g.pb = (int)(splitmix() % 3);
            g.pl = (int)(splitmix() % 3);
            g.pr = (int)(splitmix() % 3);
        } while (lrp_fp_conv_out_hw(&g, &oh, &ow) != 0);
        conv_case(&g, r % 2);
    }
}

/* Larger layer: several K and pixel chunks, many items for 2 threads. */
static void test_conv_larger(void **state)
{
    (void)state;
    lrp_fp_conv_geom g = {2, 24, 30, 29, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    conv_case(&g, 1);
    lrp_fp_conv_geom g2 = {1, 40, 23, 23, 36, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1};
    conv_case(&g2, 0);
}

/* All-zero input, negative weights: every sum is +0 (never -0). */
static void test_conv_zero_sign(void **state)
{
    (void)state;
    lrp_fp_conv_geom g = {1, 4, 5, 5, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    float in[100], w[9 * 4 * 9], out[9 * 25], gin[100], gout[9 * 25];
    for (size_t i = 0; i < 100; i++) in[i] = (i % 2) ? 0.0f : -0.0f;
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) w[i] = -1.0f - (float)(i % 3);
    for (size_t i = 0; i < 225; i++) gout[i] = -0.0f;
    lrp_fp_isa saved = lrp_fp_get_isa();
    for (int isa = 0; isa < LRP_FP_ISA_COUNT; isa++) {
        if (lrp_fp_set_isa((lrp_fp_isa)isa) != 0)
            continue;
        assert_int_equal(lrp_fp_conv2d_fwd(out, in, w, NULL, &g, 2), 0);
        for (int i = 0; i < 225; i++) {
            assert_true(out[i] == 0.0f);
            assert_false(signbit(out[i]));
        }
        assert_int_equal(lrp_fp_conv2d_bwd_data(gin, gout, w, &g, 1), 0);
        for (int i = 0; i < 100; i++) {
            assert_true(gin[i] == 0.0f);
            assert_false(signbit(gin[i]));
        }
    }
    lrp_fp_set_isa(saved);
}

/* Non-finite weights/inputs: same results (NaN in the same places) on all
 * paths and thread counts, including NaN from padding terms 0 * inf. */
static void test_conv_nonfinite_paths_agree(void **state)
{
    (void)state;
    lrp_fp_conv_geom g = {1, 3, 6, 6, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    size_t nin = 108, nout = 360, nw = 270;
    float *in = rand_buf(nin), *w = rand_buf(nw);
    w[5] = INFINITY;
    w[100] = NAN;
    in[7] = -INFINITY;
    float *gout = rand_buf(nout);
    gout[11] = INFINITY;
    float *a = malloc(sizeof(float) * nout), *b = malloc(sizeof(float) * nout);
    float *ga = malloc(sizeof(float) * nin), *gb = malloc(sizeof(float) * nin);
    assert_true(a && b && ga && gb);
    lrp_fp_isa saved = lrp_fp_get_isa();
    assert_int_equal(lrp_fp_set_isa(LRP_FP_ISA_PORTABLE), 0);
    assert_int_equal(lrp_fp_conv2d_fwd(a, in, w, NULL, &g, 1), 0);
    assert_int_equal(lrp_fp_conv2d_bwd_data(ga, gout, w, &g, 1), 0);
    int nnan = 0;
    for (size_t i = 0; i < nout; i++)
        nnan += isnan(a[i]) != 0;
    assert_true(nnan > 0); /* the test has teeth: 0 * inf happened */
    for (int isa = 0; isa < LRP_FP_ISA_COUNT; isa++) {
        if (lrp_fp_set_isa((lrp_fp_isa)isa) != 0)
            continue;
        assert_int_equal(lrp_fp_conv2d_fwd(b, in, w, NULL, &g, 2), 0);
        check_same_bits(a, b, nout, "nonfinite fwd");
        assert_int_equal(lrp_fp_conv2d_bwd_data(gb, gout, w, &g, 2), 0);
        check_same_bits(ga, gb, nin, "nonfinite bwd");
    }
    lrp_fp_set_isa(saved);
    free(in); free(w); free(gout); free(a); free(b); free(ga); free(gb);
}


/* ---- bitwise gate against the frozen old engine (fp_conv_old.inc) ---- */

/* exact bits, NaN payloads included */
static void check_identical(const float *a, const float *b, size_t cnt, const char *what,
                            const lrp_fp_conv_geom *g)
{
    if (memcmp(a, b, sizeof(float) * cnt) == 0)
        return;
    for (size_t i = 0; i < cnt; i++) {
        uint32_t ua, ub;
        memcpy(&ua, &a[i], 4);
        memcpy(&ub, &b[i], 4);
        if (ua != ub)
            fail_msg("%s: element %zu differs: %08x vs %08x (geom n%d c%d %dx%d co%d "
                     "k%dx%d s%d,%d d%d,%d p%d,%d,%d,%d g%d)",
                     what, i, ua, ub, g->n, g->c, g->h, g->w, g->co, g->kh, g->kw, g->sh,
                     g->sw, g->dh, g->dw, g->pt, g->pb, g->pl, g->pr, g->groups);
    }
}

/* The documented chain of one output over its in-range terms only (input
 * cells inside the image; gout cells inside the output), from -0, in the
 * documented order, fmaf per step; no term and no bias: +0.  Written
 * independently of fp_conv.c: it decides the sign of every exact-zero
 * output (the old engine started from +0 and counted padding products,
 * so its zeros were +0 where IEEE gives -0). */
static float naive_fwd_chain(const float *in, const float *w, const float *bias,
                             const lrp_fp_conv_geom *g, size_t o, int oh, int ow)
{
    int x = (int)(o % (size_t)ow), y = (int)(o / (size_t)ow % (size_t)oh);
    int co = (int)(o / ((size_t)ow * oh) % (size_t)g->co), n = (int)(o / ((size_t)ow * oh * g->co));
    int cig = g->c / g->groups, gr = co / (g->co / g->groups);
    float acc = -0.0f;
    int any = 0;
    for (int ci = 0; ci < cig; ci++)
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                int iy = y * g->sh - g->pt + ky * g->dh, ix = x * g->sw - g->pl + kx * g->dw;
                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                    continue;
                acc = fmaf(in[(((size_t)n * g->c + gr * cig + ci) * g->h + iy) * g->w + ix],
                           w[(((size_t)co * cig + ci) * g->kh + ky) * g->kw + kx], acc);
                any = 1;
            }
    if (!any && !bias)
        return 0.0f;
    return bias ? acc + bias[co] : acc;
}

static float naive_bwd_chain(const float *gout, const float *w, const lrp_fp_conv_geom *g,
                             size_t i, int oh, int ow)
{
    int ix = (int)(i % (size_t)g->w), iy = (int)(i / (size_t)g->w % (size_t)g->h);
    int ci = (int)(i / ((size_t)g->w * g->h) % (size_t)g->c), n = (int)(i / ((size_t)g->w * g->h * g->c));
    int cig = g->c / g->groups, cog = g->co / g->groups, gr = ci / cig;
    float acc = -0.0f;
    int any = 0;
    for (int co = gr * cog; co < (gr + 1) * cog; co++)
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                int ty = iy + g->pt - ky * g->dh, tx = ix + g->pl - kx * g->dw;
                if (ty < 0 || tx < 0 || ty % g->sh || tx % g->sw || ty / g->sh >= oh ||
                    tx / g->sw >= ow)
                    continue;
                acc = fmaf(gout[(((size_t)n * g->co + co) * oh + ty / g->sh) * ow + tx / g->sw],
                           w[(((size_t)co * cig + (ci - gr * cig)) * g->kh + ky) * g->kw + kx],
                           acc);
                any = 1;
            }
    return any ? acc : 0.0f;
}

/* The gate since the chains start from -0: every nonzero output (NaN
 * payloads included) has the old engine's bits; an exact-zero output is a
 * zero in the old engine too, and carries the sign of the naive chain
 * (bitwise: both are exact zeros, only the sign can differ). */
static long n_gate_negzero; /* -0 outputs the gate checked: it has teeth */

static void check_gate(const float *old, const float *got, size_t cnt, const char *what,
                       const lrp_fp_conv_geom *g, const float *in, const float *w,
                       const float *bias, int fwd, int oh, int ow)
{
    for (size_t i = 0; i < cnt; i++) {
        if (got[i] != 0.0f) {
            check_identical(old + i, got + i, 1, what, g);
            continue;
        }
        float nv = fwd ? naive_fwd_chain(in, w, bias, g, i, oh, ow)
                       : naive_bwd_chain(in, w, g, i, oh, ow);
        uint32_t ug, un;
        memcpy(&ug, &got[i], 4);
        memcpy(&un, &nv, 4);
        if (old[i] != 0.0f || ug != un)
            fail_msg("%s: zero element %zu: got %08x, naive chain %a, old %a", what, i, ug,
                     (double)nv, (double)old[i]);
        n_gate_negzero += signbit(got[i]) != 0;
    }
}

/* random values with exact zeros of both signs; nonfinite > 0 sprinkles
 * that many +-inf / NaN */
static float *gate_buf(size_t n, int nonfinite)
{
    float *p = rand_buf(n);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = splitmix() % 16;
        if (r == 0)
            p[i] = 0.0f;
        else if (r == 1)
            p[i] = -0.0f;
    }
    for (int i = 0; i < nonfinite && n > 0; i++) {
        size_t at = (size_t)(splitmix() % n);
        uint64_t r = splitmix() % 3;
        p[at] = r == 0 ? INFINITY : r == 1 ? -INFINITY : NAN;
    }
    return p;
}

static void gate_case(const lrp_fp_conv_geom *g, int nonfinite)
{
    int oh, ow;
    assert_int_equal(lrp_fp_conv_out_hw(g, &oh, &ow), 0);
    size_t nin = (size_t)g->n * g->c * g->h * g->w;
    size_t nout = (size_t)g->n * g->co * oh * ow;
    size_t nw = (size_t)g->co * (g->c / g->groups) * g->kh * g->kw;
    int nfi = nonfinite ? 1 + (int)(splitmix() % 3) : 0;
    int nfw = nonfinite ? (int)(splitmix() % 3) : 0;
    float *in = gate_buf(nin, nfi), *w = gate_buf(nw, nfw), *b = gate_buf(g->co, 0);
    float *gout = gate_buf(nout, nfi);
    float *fo = malloc(sizeof(float) * nout), *fn = malloc(sizeof(float) * nout);
    float *bo = malloc(sizeof(float) * nin), *bn = malloc(sizeof(float) * nin);
    assert_true(fo && fn && bo && bn);
    const float *bias = (splitmix() % 2) ? b : NULL;
    lrp_fp_isa saved = lrp_fp_get_isa();
    for (int isa = 0; isa < LRP_FP_ISA_COUNT; isa++) {
        if (lrp_fp_set_isa((lrp_fp_isa)isa) != 0)
            continue;
        assert_int_equal(old_conv2d_fwd(fo, in, w, bias, g, 1), 0);
        assert_int_equal(old_conv2d_bwd_data(bo, gout, w, g, 1), 0);
        for (int nt = 1; nt <= 3; nt++) {
            char what[64];
            memset(fn, 0xff, sizeof(float) * nout);
            memset(bn, 0xff, sizeof(float) * nin);
            assert_int_equal(lrp_fp_conv2d_fwd(fn, in, w, bias, g, nt), 0);
            snprintf(what, sizeof what, "gate fwd %s t%d", lrp_fp_isa_name((lrp_fp_isa)isa), nt);
            check_gate(fo, fn, nout, what, g, in, w, bias, 1, oh, ow);
            assert_int_equal(lrp_fp_conv2d_bwd_data(bn, gout, w, g, nt), 0);
            snprintf(what, sizeof what, "gate bwd %s t%d", lrp_fp_isa_name((lrp_fp_isa)isa), nt);
            check_gate(bo, bn, nin, what, g, gout, w, NULL, 0, oh, ow);
        }
    }
    lrp_fp_set_isa(saved);
    free(in); free(w); free(b); free(gout);
    free(fo); free(fn); free(bo); free(bn);
}

static void test_conv_gate_old(void **state)
{
    (void)state;
    /* n, c, h, w, co, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, groups */
    static const lrp_fp_conv_geom fixed[] = {
        {1, 3, 40, 38, 16, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, 1},    /* stem 7x7/2 */
        {2, 64, 14, 14, 40, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},   /* 1x1 14x14 */
        {1, 96, 7, 7, 72, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},     /* 1x1 7x7 */
        {1, 48, 7, 7, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* 3x3 7x7 */
        {2, 32, 14, 14, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},   /* 3x3/2 */
        {1, 40, 14, 14, 80, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1},   /* 1x1/2 ds */
        {1, 16, 28, 28, 33, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},
        {3, 20, 13, 11, 12, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 4},   /* groups, dilation */
        {1, 24, 9, 9, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 24},    /* depthwise */
        {1, 8, 56, 57, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* wide rows */
        {1, 12, 17, 19, 21, 5, 3, 3, 2, 1, 2, 2, 0, 1, 3, 3},   /* mixed */
        {1, 160, 7, 7, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* fwd K > 1 block */
        {1, 24, 7, 7, 180, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* bwd K > 1 block */
        {2, 16, 9, 9, 200, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},    /* bwd blocks, phases */
        {1, 1100, 5, 6, 17, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},   /* 1x1, 3 blocks */
        {1, 200, 16, 15, 140, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}, /* many panels+blocks */
        {3, 12, 5, 7, 18, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 3},     /* 1x1 direct, groups */
        {2, 9, 8, 8, 30, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1},      /* 1x1/2, batch */
        {1, 4, 6, 6, 5, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1},       /* 1x1/2 padded: shifted taps */
        {1, 3, 7, 6, 20, 1, 1, 3, 2, 1, 1, 2, 0, 1, 1, 1},      /* 1x1 odd strides/pads */
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        gate_case(&fixed[i], 0);
        gate_case(&fixed[i], 1);
    }
    for (int r = 0; r < 60; r++) {
        lrp_fp_conv_geom g;
        int oh, ow;
        do {
            g.groups = 1 + (int)(splitmix() % 3);
            g.n = 1 + (int)(splitmix() % 3);
            g.c = g.groups * (1 + (int)(splitmix() % 24));
            g.co = g.groups * (1 + (int)(splitmix() % 40));
            g.h = 1 + (int)(splitmix() % 30);
            g.w = 1 + (int)(splitmix() % 30);
            g.kh = 1 + (int)(splitmix() % 7);
            g.kw = 1 + (int)(splitmix() % 7);
            g.sh = 1 + (int)(splitmix() % 3);
            g.sw = 1 + (int)(splitmix() % 3);
            g.dh = 1 + (int)(splitmix() % 2);
            g.dw = 1 + (int)(splitmix() % 2);
            g.pt = (int)(splitmix() % 4);
            g.pb = (int)(splitmix() % 4);
            g.pl = (int)(splitmix() % 4);
            g.pr = (int)(splitmix() % 4);
        } while (lrp_fp_conv_out_hw(&g, &oh, &ow) != 0);
        gate_case(&g, r % 3 == 0);
    }
    assert_true(n_gate_negzero > 0);
}

static void test_conv_bad_geometry(void **state)
{
    (void)state;
    int oh, ow;
    lrp_fp_conv_geom g = {1, 3, 2, 2, 4, 5, 5, 1, 1, 1, 1, 0, 0, 0, 0, 1};
    assert_int_equal(lrp_fp_conv_out_hw(&g, &oh, &ow), -1);
    g.kh = g.kw = 1;
    g.groups = 2; /* 3 % 2 */
    assert_int_equal(lrp_fp_conv_out_hw(&g, &oh, &ow), -1);
    float x[12], y[16];
    assert_int_equal(lrp_fp_conv2d_fwd(y, x, x, NULL, &g, 1), -1);
}

/* ---- dense ---- */

static void dense_case(int batch, int in, int out, int with_bias)
{
    float *x = rand_buf((size_t)batch * in), *W = rand_buf((size_t)in * out);
    float *bias = rand_buf(out), *g = rand_buf((size_t)batch * out);
    double *ry = malloc(sizeof(double) * batch * out), *ay = malloc(sizeof(double) * batch * out);
    double *rx = malloc(sizeof(double) * batch * in), *ax = malloc(sizeof(double) * batch * in);
    float *y0 = malloc(sizeof(float) * batch * out), *y1 = malloc(sizeof(float) * batch * out);
    float *x0 = malloc(sizeof(float) * batch * in), *x1 = malloc(sizeof(float) * batch * in);
    assert_true(ry && ay && rx && ax && y0 && y1 && x0 && x1);
    for (int b = 0; b < batch; b++) {
        for (int o = 0; o < out; o++) {
            double s = with_bias ? bias[o] : 0.0, a = with_bias ? fabs(bias[o]) : 0.0;
            for (int i = 0; i < in; i++) {
                double t = (double)W[(size_t)o * in + i] * x[(size_t)b * in + i];
                s += t;
                a += fabs(t);
            }
            ry[(size_t)b * out + o] = s;
            ay[(size_t)b * out + o] = a;
        }
        for (int i = 0; i < in; i++) {
            double s = 0, a = 0;
            for (int o = 0; o < out; o++) {
                double t = (double)W[(size_t)o * in + i] * g[(size_t)b * out + o];
                s += t;
                a += fabs(t);
            }
            rx[(size_t)b * in + i] = s;
            ax[(size_t)b * in + i] = a;
        }
    }
    lrp_fp_isa saved = lrp_fp_get_isa();
    int first = 1;
    for (int isa = 0; isa < LRP_FP_ISA_COUNT; isa++) {
        if (lrp_fp_set_isa((lrp_fp_isa)isa) != 0)
            continue;
        for (int nt = 1; nt <= 2; nt++) {
            float *yo = first ? y0 : y1, *xo = first ? x0 : x1;
            assert_int_equal(lrp_fp_dense_fwd(yo, x, W, with_bias ? bias : NULL,
                                              batch, in, out, nt), 0);
            assert_int_equal(lrp_fp_dense_bwd_data(xo, g, W, batch, in, out, nt), 0);
            check_close(yo, ry, ay, (size_t)batch * out, in + 1, "dense fwd");
            check_close(xo, rx, ax, (size_t)batch * in, out, "dense bwd");
            if (!first) {
                check_same_bits(y0, y1, (size_t)batch * out, "dense fwd paths");
                check_same_bits(x0, x1, (size_t)batch * in, "dense bwd paths");
            }
            first = 0;
        }
    }
    lrp_fp_set_isa(saved);
    free(x); free(W); free(bias); free(g); free(ry); free(ay); free(rx); free(ax);
    free(y0); free(y1); free(x0); free(x1);
}

static void test_dense(void **state)
{
    (void)state;
    dense_case(1, 37, 23, 1);
    dense_case(3, 300, 70, 0);
    dense_case(9, 1100, 17, 1);
    dense_case(2, 5, 1, 1);
    dense_case(1, 2100, 40, 0);
}

/* ---- elementwise ---- */

static void test_elementwise(void **state)
{
    (void)state;
    float x[7] = {1.5f, -2.0f, 0.0f, -0.0f, INFINITY, -INFINITY, NAN};
    float y[7];
    lrp_fp_clamp_pos(y, x, 7);
    assert_true(y[0] == 1.5f && y[1] == 0.0f && !signbit(y[1]) && y[2] == 0.0f &&
                !signbit(y[3]) && y[4] == INFINITY && y[5] == 0.0f && isnan(y[6]));
    lrp_fp_clamp_neg(y, x, 7);
    assert_true(y[0] == 0.0f && !signbit(y[0]) && y[1] == -2.0f && !signbit(y[2]) &&
                !signbit(y[3]) && y[4] == 0.0f && y[5] == -INFINITY && isnan(y[6]));
    float a[5] = {1, 2, 3, -4, 0x1p-149f}, b[5] = {3, 0, -0.0f, 7, 0.5f}, r[5];
    lrp_fp_mul(r, a, b, 5);
    for (int i = 0; i < 5; i++)
        assert_true(r[i] == a[i] * b[i]);
    lrp_fp_div(r, a, b, 5);
    assert_true(r[0] == 1.0f / 3.0f && r[1] == INFINITY && r[2] == -INFINITY &&
                r[3] == -4.0f / 7.0f && r[4] == 0x1p-148f);
}

/* ---- pooling ---- */

static void test_maxpool(void **state)
{
    (void)state;
    lrp_fp_pool_geom g = {2, 3, 7, 8, 3, 3, 2, 2, 1, 1, 1, 0, 0};
    int oh, ow;
    assert_int_equal(lrp_fp_pool_out_hw(&g, &oh, &ow), 0);
    size_t nin = (size_t)2 * 3 * 7 * 8, nout = (size_t)2 * 3 * oh * ow;
    float *in = malloc(sizeof(float) * nin), *out = malloc(sizeof(float) * nout);
    float *gout = rand_buf(nout), *gin = malloc(sizeof(float) * nin);
    int32_t *am = malloc(sizeof(int32_t) * nout);
    double *ref = calloc(nin, sizeof(double));
    assert_true(in && out && gin && am && ref);
    for (size_t i = 0; i < nin; i++) /* few distinct values: many ties */
        in[i] = (float)(splitmix() % 4) - 1.5f;
    assert_int_equal(lrp_fp_maxpool_fwd(out, am, in, &g), 0);
    for (int pc = 0; pc < 6; pc++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float best = -INFINITY;
                int bi = -1;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int y = oy * 2 - 1 + ky, x = ox * 2 - 1 + kx;
                        if (y < 0 || y >= 7 || x < 0 || x >= 8)
                            continue;
                        float v = in[(size_t)pc * 56 + y * 8 + x];
                        if (bi < 0 || v > best) {
                            best = v;
                            bi = y * 8 + x;
                        }
                    }
                size_t o = ((size_t)pc * oh + oy) * ow + ox;
                assert_true(out[o] == best);
                assert_int_equal(am[o], bi);
                ref[(size_t)pc * 56 + bi] += gout[o];
            }
    assert_int_equal(lrp_fp_maxpool_bwd(gin, gout, am, &g), 0);
    for (size_t i = 0; i < nin; i++) /* at most 4 terms, sums of 2^-23 grid */
        assert_true(fabs(gin[i] - ref[i]) <= gamma_n(4) * 4.0);
    /* NaN wins */
    float nanin[4] = {1.0f, NAN, 5.0f, 2.0f}, o1;
    int32_t a1;
    lrp_fp_pool_geom g1 = {1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0};
    assert_int_equal(lrp_fp_maxpool_fwd(&o1, &a1, nanin, &g1), 0);
    assert_true(isnan(o1));
    assert_int_equal(a1, 1);
    free(in); free(out); free(gout); free(gin); free(am); free(ref);
}

static void test_avgpool(void **state)
{
    (void)state;
    for (int cip = 0; cip <= 1; cip++) {
        lrp_fp_pool_geom g = {1, 2, 6, 5, 3, 2, 2, 1, 1, 0, 1, 1, cip};
        int oh, ow;
        assert_int_equal(lrp_fp_pool_out_hw(&g, &oh, &ow), 0);
        size_t nin = 60, nout = (size_t)2 * oh * ow;
        float *in = rand_buf(nin), *out = malloc(sizeof(float) * nout);
        float *gout = rand_buf(nout), *gin = malloc(sizeof(float) * nin);
        double *rb = calloc(nin, sizeof(double)), *ab = calloc(nin, sizeof(double));
        assert_true(out && gin && rb && ab);
        assert_int_equal(lrp_fp_avgpool_fwd(out, in, &g), 0);
        assert_int_equal(lrp_fp_avgpool_bwd(gin, gout, &g), 0);
        for (int pc = 0; pc < 2; pc++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double s = 0, a = 0;
                    int cnt = 0;
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 2; kx++) {
                            int y = oy * 2 - 1 + ky, x = ox - 1 + kx;
                            if (y < 0 || y >= 6 || x < 0 || x >= 5)
                                continue;
                            s += in[pc * 30 + y * 5 + x];
                            a += fabs(in[pc * 30 + y * 5 + x]);
                            cnt++;
                        }
                    int div = cip ? 6 : cnt;
                    size_t o = ((size_t)pc * oh + oy) * ow + ox;
                    assert_true(fabs(out[o] - s / div) <= gamma_n(7) * a / div);
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 2; kx++) {
                            int y = oy * 2 - 1 + ky, x = ox - 1 + kx;
                            if (y < 0 || y >= 6 || x < 0 || x >= 5)
                                continue;
                            rb[pc * 30 + y * 5 + x] += (double)gout[o] / div;
                            ab[pc * 30 + y * 5 + x] += fabs((double)gout[o] / div);
                        }
                }
        check_close(gin, rb, ab, nin, 8, "avgpool bwd");
        free(in); free(out); free(gout); free(gin); free(rb); free(ab);
    }
    float x[12], y[3], gx[12];
    for (int i = 0; i < 12; i++) x[i] = (float)i;
    lrp_fp_gap_fwd(y, x, 1, 3, 2, 2);
    assert_true(y[0] == 1.5f && y[1] == 5.5f && y[2] == 9.5f);
    lrp_fp_gap_bwd(gx, y, 1, 3, 2, 2);
    assert_true(gx[0] == 0.375f && gx[11] == 9.5f / 4);
}

static void test_dispatch(void **state)
{
    (void)state;
    assert_true(lrp_fp_isa_supported(LRP_FP_ISA_PORTABLE));
    lrp_fp_isa cur = lrp_fp_get_isa();
    assert_true(lrp_fp_isa_supported(cur));
    assert_int_equal(lrp_fp_set_isa(LRP_FP_ISA_COUNT), -1);
    assert_int_equal(lrp_fp_get_isa(), cur);
    assert_true(lrp_fp_default_threads() >= 1);
    printf("# fp kernels: active ISA %s; supported:", lrp_fp_isa_name(cur));
    for (int i = 0; i < LRP_FP_ISA_COUNT; i++)
        if (lrp_fp_isa_supported((lrp_fp_isa)i))
            printf(" %s", lrp_fp_isa_name((lrp_fp_isa)i));
    printf("\n");
}

int main(void)
{
    uint64_t seed = 0x5eed2024ULL;
    const char *env = getenv("LRP_TEST_SEED");
    if (env && *env)
        seed = strtoull(env, NULL, 0);
    rng_state = seed;
    printf("# test_fp_kernels seed 0x%llx (LRP_TEST_SEED)\n", (unsigned long long)seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_conv_shapes),
        cmocka_unit_test(test_conv_random_shapes),
        cmocka_unit_test(test_conv_larger),
        cmocka_unit_test(test_conv_zero_sign),
        cmocka_unit_test(test_conv_nonfinite_paths_agree),
        cmocka_unit_test(test_conv_gate_old),
        cmocka_unit_test(test_conv_bad_geometry),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_avgpool),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("# conv (shape, isa, threads) runs checked: %d\n", n_isa_checked);
    return rc;
}
