/*
 * test_refvec.c -- the reference's vector digit kernel (reference/ref_vec.c:
 * eight outputs of a stride-1 convolution at a time, AVX-512 IFMA) against
 * the scalar digit kernel it replaces (lrp_ref_ctx.slow = 3) and against
 * exact products + mpfr_sum (slow = 1), value for value and sign of zero
 * for sign of zero: every one of these kernels computes the exact sum and
 * rounds it once, so any difference at all is a bug (no tolerance).
 *
 * The cases are built to reach what the vector kernel does differently:
 * tiles cut short by the row's end and by a thread's range, tiles with
 * lanes clipped by the padding (their own tap lists) and tiles inside the
 * input (the layer's plan: taps sorted once per row);
 * taps of every weight class (subnormal to 2^100) and both signs, +-0
 * weights; values on grids of 1 to 10 digits and values below the grid
 * (the scalar kernel adds those lane by lane); input and weight modifiers
 * (x+, x-, w+, w-), several terms with and without the digit kernel in one
 * tile, biases, a BN-folded scale of either sign (w+ / w- flip), |x| |w|
 * (the gauges' sums),
 * groups, dilation and vertical stride.
 *
 * On a CPU without AVX-512 IFMA the vector kernel never runs; the tests
 * then still compare slow = 0 with slow = 3 and 1 (all scalar) and say so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gmp.h>
#include <math.h>
#include <mpfr.h>

#include "lrp.h"
#include "pipeline.h"
#include "ref_int.h"
#include "reference.h"

static uint64_t st = 7;
static uint64_t rnd(void)
{
    uint64_t z = (st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

/* value kinds */
enum { V_RELU, V_SIGNED, V_F32, V_SPREAD, V_OUTLIERS, V_SPARSE };
/* weight kinds */
enum { W_NORMAL, W_CLASSES };

static void fill_values(mpfr_ptr v, int64_t n, int kind, gmp_randstate_t gr)
{
    for (int64_t i = 0; i < n; i++) {
        mpfr_ptr x = v + i;
        switch (kind) {
        case V_RELU:
            if (rnd() & 1)
                mpfr_set_zero(x, 1);
            else
                mpfr_urandomb(x, gr);
            break;
        case V_SIGNED:
            mpfr_urandomb(x, gr);
            mpfr_mul_2si(x, x, (long)(rnd() % 9) - 4, MPFR_RNDN);
            if (rnd() & 1)
                mpfr_neg(x, x, MPFR_RNDN);
            if (rnd() % 16 == 0)
                mpfr_set_zero(x, (rnd() & 1) ? 1 : -1);
            break;
        case V_F32: /* binary32 activations (the trace-local run) */
            mpfr_set_flt(x, (float)((unif() - 0.3) * 4.0), MPFR_RNDN);
            break;
        case V_SPREAD: /* exponents over 2^-60 .. 2^20: several grids */
            mpfr_urandomb(x, gr);
            mpfr_mul_2si(x, x, (long)(rnd() % 81) - 60, MPFR_RNDN);
            if (rnd() & 1)
                mpfr_neg(x, x, MPFR_RNDN);
            break;
        case V_OUTLIERS: /* O(1), and 1 in 200 at 2^-60: below the grid that holds the
                          * rest at every p tested (156 bits at p = 128), yet large
                          * enough to change the rounded sums */
            mpfr_urandomb(x, gr);
            if (rnd() % 200 == 0)
                mpfr_mul_2si(x, x, -60, MPFR_RNDN);
            if (rnd() % 3 == 0)
                mpfr_neg(x, x, MPFR_RNDN);
            break;
        default: /* V_SPARSE: almost all +-0 */
            if (rnd() % 23 == 0)
                mpfr_urandomb(x, gr);
            else
                mpfr_set_zero(x, (rnd() & 1) ? 1 : -1);
            break;
        }
    }
}

static float weight(int kind)
{
    uint64_t r = rnd();
    if (r % 29 == 0)
        return (r & 64) ? -0.0f : 0.0f;
    float w = (float)((unif() - 0.5) * 0.2);
    if (kind == W_CLASSES) {
        /* every class of 28 binades, subnormals included */
        int e = (int)(rnd() % 250) - 148;
        w = ldexpf((float)(unif() + 0.5), e);
        if (rnd() & 1)
            w = -w;
    }
    return w;
}

typedef struct geo {
    int C, O, H, W, kh, kw, pt, pl, sh, sw, dh, dw, groups, batch;
} geo;

static void set_geo(lrp_lin *L, const geo *g)
{
    memset(L, 0, sizeof *L);
    L->conv = 1;
    L->C = g->C;
    L->O = g->O;
    L->H = g->H;
    L->W = g->W;
    L->kh = g->kh;
    L->kw = g->kw;
    L->pt = g->pt;
    L->pl = g->pl;
    L->sh = g->sh;
    L->sw = g->sw;
    L->dh = g->dh;
    L->dw = g->dw;
    L->groups = g->groups;
    /* PyTorch's output size, padding on both sides */
    L->Ho = (g->H + 2 * g->pt - g->dh * (g->kh - 1) - 1) / g->sh + 1;
    L->Wo = (g->W + 2 * g->pl - g->dw * (g->kw - 1) - 1) / g->sw + 1;
    L->fanin = (int64_t)(g->C / g->groups) * g->kh * g->kw;
    L->n_in = (int64_t)g->C * g->H * g->W;
    L->n_out = L->O * L->Ho * L->Wo;
    L->rows = 1;
}

typedef struct layer {
    lrp_lin L;
    float *w32, *b32;
    mpfr_ptr w, b, sc, x, s[2];
    int64_t nw;
} layer;

static void layer_new(layer *Y, const geo *g, int wkind, int vkind, int skind, int scaled,
                      int prec, gmp_randstate_t gr)
{
    set_geo(&Y->L, g);
    lrp_lin *L = &Y->L;
    Y->nw = L->O * L->fanin;
    Y->w32 = malloc((size_t)Y->nw * sizeof(float));
    Y->b32 = malloc((size_t)L->O * sizeof(float));
    Y->w = lrp_ref_tensor_new(24, Y->nw);
    Y->b = lrp_ref_tensor_new(prec, L->O);
    for (int64_t k = 0; k < Y->nw; k++) {
        Y->w32[k] = weight(wkind);
        mpfr_set_flt(Y->w + k, Y->w32[k], MPFR_RNDN);
    }
    for (int64_t o = 0; o < L->O; o++) {
        Y->b32[o] = (float)((unif() - 0.5) * 0.1);
        mpfr_set_flt(Y->b + o, Y->b32[o], MPFR_RNDN);
    }
    Y->sc = NULL;
    if (scaled) {
        /* a BN factor per channel, negative for some */
        Y->sc = lrp_ref_tensor_new(prec, L->O);
        for (int64_t o = 0; o < L->O; o++) {
            mpfr_urandomb(Y->sc + o, gr);
            mpfr_add_d(Y->sc + o, Y->sc + o, 0.25, MPFR_RNDN);
            if (o % 3 == 1)
                mpfr_neg(Y->sc + o, Y->sc + o, MPFR_RNDN);
        }
    }
    int64_t nx = L->n_in * g->batch, ns = L->n_out * g->batch;
    Y->x = lrp_ref_tensor_new(prec, nx);
    fill_values(Y->x, nx, vkind, gr);
    for (int k = 0; k < 2; k++) {
        Y->s[k] = lrp_ref_tensor_new(prec, ns);
        fill_values(Y->s[k], ns, k ? V_SIGNED : skind, gr);
    }
    L->w = Y->w;
    L->b = Y->b;
    L->w32 = Y->w32;
    L->b32 = Y->b32;
    L->wscale = Y->sc;
}

static void layer_free(layer *Y, const geo *g)
{
    (void)g;
    lrp_ref_tensor_free(Y->w);
    lrp_ref_tensor_free(Y->b);
    if (Y->sc)
        lrp_ref_tensor_free(Y->sc);
    lrp_ref_tensor_free(Y->x);
    lrp_ref_tensor_free(Y->s[0]);
    lrp_ref_tensor_free(Y->s[1]);
    free(Y->w32);
    free(Y->b32);
}

static int same(mpfr_srcptr a, mpfr_srcptr b)
{
    return mpfr_equal_p(a, b) && !mpfr_signbit(a) == !mpfr_signbit(b);
}

static int64_t vec_runs;   /* calls that ran the vector kernel, all cases */
static int64_t vec_absent; /* cases where it could have and the CPU lacks it */

/* the layer's forward (terms t) and backward (parts) under slow = 0, 3
 * and (small layers) 1, at 1 and 2 threads: identical values */
static void check_layer(const char *what, layer *Y, const geo *g, int prec, const lrp_term *t,
                        int nt, int nb, int absval, const lrp_term *bt0, int nt0,
                        const lrp_term *bt1, int nt1, int expect_vec)
{
    lrp_lin *L = &Y->L;
    int64_t no = L->n_out * g->batch, ni = L->n_in * g->batch;
    lrp_bterm bt[1] = {{LRP_BM_ID, 1.0f}};
    lrp_bwd_part parts[2] = {{1.0f, Y->s[0], bt0, nt0}, {-0.5f, Y->s[1], bt1, nt1}};
    int np = nt1 ? 2 : 1;
    /* run 0: the vector kernel, one thread; 1: the scalar digit kernel,
     * two threads; 2: the vector kernel, two threads (tiles cut by the
     * threads' ranges); 3 (small layers): exact products + mpfr_sum */
    mpfr_ptr yo[4], ro[4];
    const int slows[4] = {0, 3, 0, 1}, ths[4] = {1, 2, 2, 1};
    int nruns = L->n_out * L->fanin * g->batch <= 400000 ? 4 : 3;
    int64_t vc[4] = {0, 0, 0, 0};
    for (int r = 0; r < nruns; r++) {
        lrp_ref_ctx cx;
        lrp_ref_ctx_init(&cx, prec, ths[r]);
        cx.slow = slows[r];
        yo[r] = lrp_ref_tensor_new(prec, no);
        ro[r] = lrp_ref_tensor_new(prec, ni);
        lrp_ref_lin_fwd(&cx, yo[r], L, Y->x, t, nt, bt, nb, absval, g->batch);
        lrp_ref_lin_bwd(&cx, ro[r], L, Y->x, parts, np, g->batch);
        vc[r] = cx.vec_calls;
        if (slows[r])
            assert_int_equal(cx.vec_calls, 0);
    }
    for (int r = 1; r < nruns; r++) {
        for (int64_t j = 0; j < no; j++)
            if (!same(yo[0] + j, yo[r] + j)) {
                mpfr_fprintf(stderr, "%s: forward run %d, output %lld: %.40Rg against %.40Rg\n",
                             what, r, (long long)j, yo[r] + j, yo[0] + j);
                fail();
            }
        for (int64_t i = 0; i < ni; i++)
            if (!same(ro[0] + i, ro[r] + i)) {
                mpfr_fprintf(stderr, "%s: backward run %d, input %lld: %.40Rg against %.40Rg\n",
                             what, r, (long long)i, ro[r] + i, ro[0] + i);
                fail();
            }
    }
    if (expect_vec) {
        if (lrp_ref_vx_available()) {
            if (vc[0] == 0)
                fprintf(stderr, "%s: the vector kernel did not run\n", what);
            assert_true(vc[0] > 0); /* the comparison above is the vector kernel's */
        } else {
            vec_absent++;
        }
    }
    vec_runs += vc[0];
    for (int r = 0; r < nruns; r++) {
        lrp_ref_tensor_free(yo[r]);
        lrp_ref_tensor_free(ro[r]);
    }
}

static const geo geos[] = {
    /* C, O, H, W, kh, kw, pt, pl, sh, sw, dh, dw, groups, batch */
    {4, 5, 9, 21, 3, 3, 1, 1, 1, 1, 1, 1, 1, 2},  /* rows of 21: tiles 8, 8, 5 */
    {3, 4, 6, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   /* 7 wide: one tile a row */
    {6, 6, 5, 12, 1, 1, 0, 0, 1, 1, 1, 1, 1, 2},  /* 1x1: whole rows */
    {4, 6, 7, 17, 3, 5, 0, 2, 2, 1, 1, 2, 2, 1},  /* groups, dilation, stride 2 in y */
    {2, 3, 8, 30, 5, 5, 2, 2, 1, 1, 1, 1, 1, 1},  /* 5x5 */
    {3, 4, 9, 19, 3, 3, 2, 2, 1, 1, 2, 2, 1, 1},  /* dilation 2 both ways */
    {4, 4, 5, 26, 7, 7, 3, 3, 1, 1, 1, 1, 2, 1},  /* 7x7, groups */
    {3, 3, 6, 16, 3, 3, 1, 1, 1, 2, 1, 1, 1, 1},  /* stride 2 in x: no tiles */
    {2, 2, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   /* 3 wide: one tile, every edge */
};

static void t_kernels(void **state, int prec)
{
    (void)state;
    gmp_randstate_t gr;
    gmp_randinit_default(gr);
    gmp_randseed_ui(gr, (unsigned long)prec);
    vec_runs = 0;
    lrp_term e1[] = {{LRP_IM_ID, LRP_WM_ID, 1.0f}};
    lrp_term ab[] = {{LRP_IM_ID, LRP_WM_POS, 1.0f}, {LRP_IM_ID, LRP_WM_NEG, 0.25f}};
    lrp_term xs[] = {{LRP_IM_POS, LRP_WM_POS, 1.0f}, {LRP_IM_NEG, LRP_WM_NEG, -1.5f},
                     {LRP_IM_NEG, LRP_WM_ID, 0.5f}};
    lrp_term mix[] = {{LRP_IM_ID, LRP_WM_ID, 1.0f}, {LRP_IM_ID, LRP_WM_SQUARE, 0.5f},
                      {LRP_IM_ONES, LRP_WM_POS, 0.125f}};
    lrp_term bwp[] = {{LRP_IM_POS, LRP_WM_POS, 1.0f}, {LRP_IM_ID, LRP_WM_ID, 2.0f}};
    lrp_term bwn[] = {{LRP_IM_NEG, LRP_WM_NEG, 1.0f}};
    lrp_term bsq[] = {{LRP_IM_ID, LRP_WM_ID, 1.0f}, {LRP_IM_ONES, LRP_WM_SQUARE, 1.0f}};
    int cases = 0;
    for (size_t gi = 0; gi < sizeof geos / sizeof geos[0]; gi++) {
        const geo *g = &geos[gi];
        int tiles = g->sw == 1 && g->W >= 5;
        for (int vk = V_RELU; vk <= V_SPARSE; vk++) {
            int wk = (vk + (int)gi) % 2 ? W_CLASSES : W_NORMAL;
            int scaled = vk == V_SIGNED || vk == V_OUTLIERS;
            if (scaled && prec < 24)
                scaled = 0;
            layer Y;
            /* the outliers (1 in 200) are below the grid: let the grid
             * leave up to 1 in 4 there, so the lanes' scalar adds run */
            lrp_ref_vx_oob_share = vk == V_OUTLIERS ? 4 : 1024;
            layer_new(&Y, g, wk, vk, vk == V_F32 ? V_SPARSE : vk, scaled, prec, gr);
            char what[160];
            snprintf(what, sizeof what, "p=%d geo %zu values %d weights %d%s", prec, gi, vk,
                     wk, scaled ? " scaled" : "");
            /* BN-folded layers take only x / x+ / x- with w / w+ / w- */
            check_layer(what, &Y, g, prec, e1, 1, 1, 0, e1, 1, NULL, 0, tiles);
            check_layer(what, &Y, g, prec, ab, 2, 0, 0, ab, 2, bwn, 1, tiles);
            check_layer(what, &Y, g, prec, xs, 3, 1, 0, bwp, 2, xs, 3, tiles);
            check_layer(what, &Y, g, prec, e1, 1, 1, 1, e1, 1, NULL, 0, tiles); /* |x| |w| */
            if (!scaled) {
                check_layer(what, &Y, g, prec, mix, 3, 1, 0, bsq, 2, e1, 1, tiles);
                check_layer(what, &Y, g, prec, ab, 2, 1, 1, e1, 1, NULL, 0, tiles);
                check_layer(what, &Y, g, prec, xs, 3, 0, 1, e1, 1, NULL, 0, tiles);
            }
            layer_free(&Y, g);
            lrp_ref_vx_oob_share = 1024;
            cases++;
        }
    }
    print_message("t_kernels p = %d: %d layers, vector kernel in %lld calls%s\n", prec, cases,
                  (long long)vec_runs,
                  vec_absent ? " (this CPU has no AVX-512 IFMA: scalar kernels only)" : "");
    gmp_randclear(gr);
}

static void t_p128(void **s) { t_kernels(s, 128); }
static void t_p192(void **s) { t_kernels(s, 192); }
static void t_p53(void **s) { t_kernels(s, 53); }
/* grids of 7 to 10 digits in the kernel (the spread and signed values at
 * 320 and 400 bits: each of 7, 8, 9 and 10 digits runs in one of them) */
static void t_p320(void **s) { t_kernels(s, 320); }
static void t_p400(void **s) { t_kernels(s, 400); }

/* The grid: one digit for binary32 values, up to ten for a wide spread, the
 * values below it flagged and zero in the digits; every value's digits
 * put back together are the value. */
static void t_grid(void **state)
{
    (void)state;
    if (!lrp_ref_vx_available()) {
        print_message("t_grid: no AVX-512 IFMA on this CPU: the vector form is not built\n");
        ref_fx f;
        mpfr_t one;
        mpfr_init2(one, 24);
        mpfr_set_ui(one, 1, MPFR_RNDN);
        assert_int_equal(lrp_ref_fx_build(&f, one, 1), 1);
        ref_vx v;
        assert_int_equal(lrp_ref_vx_build(&v, &f), 0);
        lrp_ref_fx_free(&f);
        mpfr_clear(one);
        return;
    }
    gmp_randstate_t gr;
    gmp_randinit_default(gr);
    int kinds[] = {V_F32, V_RELU, V_SPREAD, V_OUTLIERS, V_SPARSE};
    int seen_nd[11] = {0}, seen_oob = 0;
    /* up to p = 416: the spread values then need 7 to 10 digits (the
     * BN-folded quotients, exact products of 2p + 8 bits, do at p = 128) */
    for (int p = 24; p <= 416; p += 56)
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            int64_t n = 5000;
            mpfr_ptr v = lrp_ref_tensor_new(p, n);
            fill_values(v, n, kinds[k], gr);
            ref_fx f;
            assert_int_equal(lrp_ref_fx_build(&f, v, n), 1);
            ref_vx x;
            lrp_ref_vx_oob_share = kinds[k] == V_OUTLIERS ? 4 : 1024;
            int built = lrp_ref_vx_build(&x, &f);
            lrp_ref_vx_oob_share = 1024;
            if (!built) {
                /* only when more than 1 in 1024 would fall below ten digits */
                assert_true(kinds[k] == V_SPREAD);
            } else {
                seen_nd[x.nd]++;
                seen_oob += x.noob > 0;
                assert_true(x.noob * (kinds[k] == V_OUTLIERS ? 4 : 1024) <= n - f.nzero);
                mpfr_t r, d;
                mpfr_init2(r, 52 * 10 + 8);
                mpfr_init2(d, 64);
                int64_t oob = 0;
                for (int64_t i = 0; i < n; i++) {
                    if (x.flag[i] & 2) {
                        oob++;
                        assert_false(mpfr_zero_p(v + i));
                        for (int j = 0; j < x.nd; j++)
                            assert_true(x.dig[j * x.stride + i] == 0);
                        continue;
                    }
                    mpfr_set_zero(r, 1);
                    for (int j = 0; j < x.nd; j++) {
                        uint64_t dj = x.dig[j * x.stride + i];
                        assert_true(dj < (UINT64_C(1) << 52));
                        mpfr_set_ui_2exp(d, dj, 52L * j, MPFR_RNDN);
                        mpfr_add(r, r, d, MPFR_RNDN); /* exact: 528 bits */
                    }
                    mpfr_mul_2si(r, r, 16L * x.lev0 + f.base, MPFR_RNDN);
                    if (x.flag[i] & 1)
                        mpfr_neg(r, r, MPFR_RNDN);
                    if (mpfr_zero_p(v + i))
                        assert_true(mpfr_zero_p(r) && !(x.flag[i] & 1));
                    else
                        assert_true(mpfr_equal_p(r, v + i));
                }
                assert_int_equal(oob, x.noob);
                mpfr_clear(r);
                mpfr_clear(d);
                lrp_ref_vx_free(&x);
            }
            lrp_ref_fx_free(&f);
            lrp_ref_tensor_free(v);
        }
    print_message("t_grid: grids of 1..10 digits seen %d %d %d %d %d %d %d %d %d %d; with values "
                  "below: %d\n",
                  seen_nd[1], seen_nd[2], seen_nd[3], seen_nd[4], seen_nd[5], seen_nd[6],
                  seen_nd[7], seen_nd[8], seen_nd[9], seen_nd[10], seen_oob);
    assert_true(seen_nd[1] > 0); /* binary32 values: one digit */
    assert_true(seen_nd[7] + seen_nd[8] + seen_nd[9] + seen_nd[10] > 0); /* wide grids */
    assert_true(seen_oob > 0);   /* the outliers */
    gmp_randclear(gr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_grid),
        cmocka_unit_test(t_p128),
        cmocka_unit_test(t_p192),
        cmocka_unit_test(t_p53),
        cmocka_unit_test(t_p320),
        cmocka_unit_test(t_p400),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
