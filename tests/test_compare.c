/*
 * test_compare.c -- the cell classifier and layer statistics of the oracle
 * on hand-made cells, one per verdict and per edge (signed zeros, NaN/inf,
 * subnormal ULPs).  The end-to-end verdict tests on real fixtures live in
 * test_oracle.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "oracle.h"
#include "oracle_int.h"

#include <mpfr.h>

/* the rigorous tier alone (no sharp bound given below) */
static const lrp_tolerance tol = {30.0, 4096.0, 0x1p-4, 0x1p-12, 1.0, 0x1p-6};

static void test_ulp_distance(void **state)
{
    (void)state;
    assert_true(lrp_ulp_distance(1.0f, 1.0f) == 0.0);
    assert_true(lrp_ulp_distance(1.0f, nextafterf(1.0f, 2.0f)) == 1.0);
    assert_true(lrp_ulp_distance(0.0f, -0.0f) == 0.0);
    /* ulp(0) is the smallest subnormal: 0 to +-2^-149 is one ULP each */
    assert_true(lrp_ulp_distance(0.0f, 0x1p-149f) == 1.0);
    assert_true(lrp_ulp_distance(-0x1p-149f, 0x1p-149f) == 2.0);
    /* across the binade boundary and across zero */
    assert_true(lrp_ulp_distance(nextafterf(2.0f, 0.0f), 2.0f) == 1.0);
    assert_true(lrp_ulp_distance(-FLT_MAX, FLT_MAX) == 2.0 * 0x7f7fffff);
}

static lrp_verdict one(float got, float hi, float lo, float bound, float cond, uint8_t cf,
                       double *ratio)
{
    lrp_cell_ref r = {&hi, &lo, &bound, &cond, &cf, NULL, NULL};
    return lrp_classify_cell(ratio, got, &r, 0, &tol);
}

static void test_verdicts(void **state)
{
    (void)state;
    double ratio;
    /* bitwise equal */
    assert_int_equal(one(1.5f, 1.5f, 0.0f, 10.0f, 0.0f, 0, &ratio), LRP_V_PASS);
    assert_true(ratio == 0.0);
    /* one ULP off with a gauge of 10 u|R|: ratio ~ 2^-23 / (10 * 2^-24) = 0.2 */
    float x = 1.0f, x1 = nextafterf(1.0f, 2.0f);
    assert_int_equal(one(x1, x, 0.0f, 10.0f, 0.0f, 0, &ratio), LRP_V_PASS);
    assert_true(ratio > 0.19 && ratio < 0.21);
    /* wrong sign: error 2, gauge 10 u: ratio 2 / (10 * 2^-24) >> 4096 */
    assert_int_equal(one(-1.0f, 1.0f, 0.0f, 10.0f, 0.0f, 0, &ratio), LRP_V_FAIL);
    /* wrong sign under a loose gauge (ratio 2/(2^20 u) = 32, SUSPECT by
     * ratio): the bound 2^-4 < |ref| cannot explain a sign change: FAIL */
    assert_int_equal(one(-1.0f, 1.0f, 0.0f, 0x1p20f, 0.0f, 0, &ratio), LRP_V_FAIL);
    assert_true(ratio > 30.0 && ratio < 4096.0);
    /* a bound wider than |ref| can explain it: judged by ratio (PASS) */
    assert_int_equal(one(-0x1p-30f, 0x1p-30f, 0.0f, 0x1p20f, 0.0f, 0, &ratio), LRP_V_PASS);
    /* in between: 1000 ULP with gauge 10: ratio ~ 200 -> SUSPECT */
    float y = 1.0f;
    for (int i = 0; i < 1000; i++)
        y = nextafterf(y, 2.0f);
    assert_int_equal(one(y, 1.0f, 0.0f, 10.0f, 0.0f, 0, &ratio), LRP_V_SUSPECT);
    /* an error beyond ill_agree (2^-12 relative) where the cell's
     * denominator is ill-conditioned: ILL-CONDITIONED, where a
     * well-conditioned cell with the same error FAILs */
    assert_int_equal(one(1.01f, 1.0f, 0.0f, 10.0f, 0.5f, 0, &ratio), LRP_V_ILL_CONDITIONED);
    assert_int_equal(one(1.01f, 1.0f, 0.0f, 10.0f, 0.0f, 0, &ratio), LRP_V_FAIL);
    /* ill-conditioned: the bound is void, but 1 ULP (2^-23 relative) is
     * within ill_agree (2^-12) of the reference: determined after all */
    assert_int_equal(one(x1, x, 0.0f, 10.0f, 0.5f, 0, &ratio), LRP_V_PASS);
    /* ... while a factor-2 disagreement is ILL-CONDITIONED, not FAIL */
    assert_int_equal(one(2.0f, 1.0f, 0.0f, 10.0f, 0.5f, 0, &ratio), LRP_V_ILL_CONDITIONED);
    /* bitwise equal stays PASS whatever the condition */
    assert_int_equal(one(x, x, 0.0f, 10.0f, 0.5f, 0, &ratio), LRP_V_PASS);
    /* the reference unresolved: not float32's fault */
    assert_int_equal(one(y, 1.0f, 0.0f, 10.0f, 0.0f, LRP_CELL_UNRESOLVED, &ratio),
                     LRP_V_UNRESOLVED);
    /* NaN and inf are categories, checked before anything else */
    assert_int_equal(one(NAN, 1.0f, 0.0f, 10.0f, 0.0f, 0, &ratio), LRP_V_NONFINITE);
    assert_int_equal(one(INFINITY, 1.0f, 0.0f, 10.0f, 0.0f, 0, &ratio), LRP_V_NONFINITE);
    assert_int_equal(one(NAN, 0.0f, 0.0f, 0.0f, 0.0f, LRP_CELL_UNDEFINED, &ratio),
                     LRP_V_NONFINITE);
}

static void test_lo_part_counts(void **state)
{
    (void)state;
    double ratio;
    /* got == hi bitwise passes even if lo says the reference is between
     * floats: hi is the correctly rounded binary32 value */
    assert_int_equal(one(1.0f, 1.0f, 0x1p-25f, 1.0f, 0.0f, 0, &ratio), LRP_V_PASS);
    /* got one ULP above hi (1 + 2^-23), the reference is 1 + 2^-25: the
     * error is 2^-23 - 2^-25 = 1.5 u; with bound 1 (gauge u) ratio 1.5,
     * where ignoring lo would have said 2 */
    float up = nextafterf(1.0f, 2.0f);
    assert_int_equal(one(up, 1.0f, 0x1p-25f, 1.0f, 0.0f, 0, &ratio), LRP_V_PASS);
    assert_true(fabs(ratio - 1.5) < 1e-12);
}

static void test_zero_bound(void **state)
{
    (void)state;
    double ratio;
    /* a cell whose bound is 0 (all contributions exactly zero) must be
     * exact: any error is infinitely many gauges */
    assert_int_equal(one(0x1p-149f, 0.0f, 0.0f, 0.0f, 0.0f, 0, &ratio), LRP_V_FAIL);
    assert_true(isinf(ratio));
    /* -0 vs +0 with bound 0: not bitwise equal, but zero error: PASS */
    assert_int_equal(one(-0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0, &ratio), LRP_V_PASS);
}

static void test_layer_stats(void **state)
{
    (void)state;
    enum { N = 200 };
    float got[N], hi[N], lo[N], bound[N], cond[N];
    uint8_t cf[N];
    for (int i = 0; i < N; i++) {
        hi[i] = (float)(i + 1);
        got[i] = hi[i];
        lo[i] = 0.0f;
        bound[i] = 100.0f;
        cond[i] = 0.0f;
        cf[i] = 0;
    }
    got[7] = nextafterf(hi[7], 1e9f); /* one ULP */
    got[50] = -0.0f;
    hi[50] = 0.0f;                    /* signed zero differs */
    got[120] = NAN;
    got[121] = INFINITY;
    got[130] = -hi[130];              /* wrong sign */
    lrp_cell_ref r = {hi, lo, bound, cond, cf, NULL, NULL};
    lrp_layer_cmp c;
    lrp_verdict v = lrp_compare_cells(&c, got, &r, N, &tol);
    assert_int_equal(v, LRP_V_NONFINITE);
    assert_int_equal(c.worst, 120);
    assert_int_equal(c.first_nonfinite, 120);
    assert_int_equal(c.got_nan, 1);
    assert_int_equal(c.got_inf, 1);
    assert_int_equal(c.count[LRP_V_NONFINITE], 2);
    assert_int_equal(c.count[LRP_V_FAIL], 1);
    assert_int_equal(c.count[LRP_V_PASS], N - 3);
    assert_int_equal(c.bitwise_equal, N - 5);
    assert_int_equal(c.zero_sign_differs, 1);
    assert_int_equal(c.zero_pos_for_neg, 0); /* got -0 for +0: the other direction */
    assert_true(c.max_ulp >= 1.0);
    assert_true(fabs(c.max_rel - 2.0) < 1e-12); /* the sign flip: |(-h) - h| / h */
    /* percentiles are sorted and the max is infinite (the NaN cell) */
    assert_true(c.ratio_pctl[0] <= c.ratio_pctl[1] && c.ratio_pctl[1] <= c.ratio_pctl[2]);
    assert_true(isinf(c.ratio_pctl[3]));
}

/* ill_gross counts the ILL-CONDITIONED cells that are grossly off |ref|
 * (sign, zero, factor 2) and not small for their layer; cells the bound
 * resolves, cells that agree to ill_agree and cells under the floor do not
 * count */
/* n cells of reference 1 and value 1, each with bound b and cond c */
static void gross_cells(int n, float *got, float *hi, float *lo, float *bound, float *cond,
                        uint8_t *cf, float b, float c)
{
    for (int i = 0; i < n; i++) {
        hi[i] = got[i] = 1.0f;
        lo[i] = 0.0f;
        bound[i] = b;
        cond[i] = c;
        cf[i] = 0;
    }
}

static void test_ill_gross(void **state)
{
    (void)state;
    enum { N = 100 };
    float got[N], hi[N], lo[N], bound[N], cond[N];
    uint8_t cf[N];
    /* u * bound ~ 60: no gross by the bound's floor; every cell
     * ill-conditioned */
    gross_cells(N, got, hi, lo, bound, cond, cf, 1e9f, 1.0f);
    got[3] = -1.0f;                  /* sign: counts */
    got[4] = 0.0f;                   /* zero: counts */
    got[5] = 2.5f;                   /* factor 2.5: counts */
    got[6] = 1.2f;                   /* 20 % off: ILL, not gross */
    hi[7] = 1e-3f, got[7] = -1e-3f;  /* a flipped sign under the floor (1/16 of the mean) */
    got[8] = 1.0f + 0x1p-14f;        /* agrees to ill_agree: PASS */
    bound[9] = 0.0f, cond[9] = 0.0f; /* resolved by its bound: FAIL, not ill */
    got[9] = -1.0f;
    lrp_cell_ref r = {hi, lo, bound, cond, cf, NULL, NULL};
    lrp_layer_cmp c;
    lrp_compare_cells(&c, got, &r, N, &tol);
    assert_int_equal(c.count[LRP_V_FAIL], 1);
    assert_int_equal(c.ill, 5); /* 3, 4, 5, 6, 7 */
    assert_int_equal(c.ill_gross, 3);
    assert_int_equal(c.first_ill_gross, 3);
}

/* undecided_gross counts the cells not ILL-CONDITIONED whose bound is at
 * least |ref| (neither the sign check nor gross can fail them) that are
 * grossly off |ref| and not small for their layer; cells the bound
 * resolves, ill-conditioned cells and cells under the floor do not count.
 * resolved counts the cells the bound resolves (and zeros with a zero
 * bound) */
static void test_undecided_gross(void **state)
{
    (void)state;
    enum { N = 100 };
    float got[N], hi[N], lo[N], bound[N], cond[N];
    uint8_t cf[N];
    /* u * bound = 4 >= |ref|: no cell is resolved; none ill-conditioned */
    gross_cells(N, got, hi, lo, bound, cond, cf, 0x1p26f, 0.0f);
    got[2] = 1.2f;                   /* 20 % off: within its bound, not gross */
    got[3] = -1.0f;                  /* sign: counts (ratio 0.5: PASS) */
    got[4] = 0.0f;                   /* zero: counts */
    got[5] = 2.5f;                   /* factor 2.5: counts */
    hi[7] = 1e-3f, got[7] = -1e-3f;  /* a flipped sign under the floor */
    cond[8] = 1.0f, got[8] = -1.0f;  /* ill-conditioned: ill_gross, not this */
    bound[9] = 0.0f, got[9] = -1.0f; /* resolved by its bound: gross and FAIL */
    hi[10] = got[10] = bound[10] = 0.0f; /* 0 with a zero bound: resolved */
    /* ill-conditioned with a zero bound, and the value agrees (PASS): the
     * bound decides nothing there, so not resolved whatever the value */
    cond[11] = 1.0f, bound[11] = 0.0f;
    lrp_cell_ref r = {hi, lo, bound, cond, cf, NULL, NULL};
    lrp_layer_cmp c;
    lrp_compare_cells(&c, got, &r, N, &tol);
    assert_int_equal(c.resolved, 2); /* 9 and 10 */
    assert_int_equal(c.undecided_gross, 3);
    assert_int_equal(c.first_undecided_gross, 3);
    assert_int_equal(c.ill_gross, 1);
    assert_int_equal(c.gross, 1);
    assert_int_equal(c.count[LRP_V_FAIL], 1);
    assert_int_equal(c.count[LRP_V_PASS], N - 2);
}

/* lrp_xsum: the exact sum of binary32 values, read as binary64, against
 * the same values added one by one to a 400-bit MPFR number (exact: 277
 * bits span every binary32, the rest the terms' count), then rounded to
 * nearest.
 * Tolerance: none, the two must give the same double bit for bit.  The
 * values are random bit patterns (every exponent field, subnormals, both
 * zeros, both signs), mixed with cancelling pairs; added in chunks with
 * either sign, and with the bins carried every k values (k = 1, 3, 1000:
 * the carry runs every 2^38 values otherwise). */
static uint64_t xs_state;
static uint32_t xs_rand(void)
{
    xs_state += 0x9e3779b97f4a7c15ull;
    uint64_t z = xs_state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 16);
}

static double mpfr_exact_sum(const float *x, const int *sg, int n, int absval)
{
    mpfr_t acc, t;
    mpfr_inits2(400, acc, t, (mpfr_ptr)0);
    mpfr_set_zero(acc, 1);
    for (int i = 0; i < n; i++) {
        mpfr_set_flt(t, x[i], MPFR_RNDN);
        if (absval)
            mpfr_abs(t, t, MPFR_RNDN);
        else if (sg[i] < 0)
            mpfr_neg(t, t, MPFR_RNDN);
        mpfr_add(acc, acc, t, MPFR_RNDN); /* exact at 400 bits */
    }
    double d = mpfr_get_d(acc, MPFR_RNDN);
    mpfr_clears(acc, t, (mpfr_ptr)0);
    return d;
}

static void test_exact_sum(void **state)
{
    (void)state;
    enum { N = 4000 };
    static float x[N + 1];
    static int sg[N + 1];
    const int64_t every[] = {1, 3, 1000, 0};
    xs_state = 7;
    for (int round = 0; round < 40; round++) {
        int n = 1 + (int)(xs_rand() % N);
        for (int i = 0; i < n; i++) {
            uint32_t u = (xs_rand() << 16) ^ xs_rand();
            if (round % 4 == 1) /* exponents near the bottom: subnormals */
                u = (u & 0x807fffffu) | ((xs_rand() % 3u) << 23);
            if (round % 4 == 2) /* one exponent range: much cancellation */
                u = (u & 0x807fffffu) | ((120u + xs_rand() % 8u) << 23);
            if ((u >> 23 & 0xffu) == 0xffu)
                u ^= 0x00800000u; /* finite */
            memcpy(&x[i], &u, sizeof u);
            if (i > 0 && xs_rand() % 5 == 0)
                x[i] = -x[i - 1]; /* an exact cancellation */
        }
        lrp_xsum *s = lrp_xsum_new();
        assert_non_null(s);
        lrp_xsum_flush_every(s, every[round % 4]);
        /* chunks of 1 to 64 values, each with its own sign */
        for (int i = 0; i < n;) {
            int c = 1 + (int)(xs_rand() % 64), g = xs_rand() % 2 ? 1 : -1;
            if (c > n - i)
                c = n - i;
            lrp_xsum_add(s, x + i, c, g);
            for (int k = 0; k < c; k++)
                sg[i + k] = g;
            i += c;
        }
        double want = mpfr_exact_sum(x, sg, n, 0), wabs = mpfr_exact_sum(x, sg, n, 1);
        double got = lrp_xsum_value(s), gabs = lrp_xsum_abs(s);
        if (memcmp(&got, &want, sizeof got) != 0 || memcmp(&gabs, &wabs, sizeof gabs) != 0)
            fail_msg("round %d (n %d): sum %a against %a, abs %a against %a", round, n, got,
                     want, gabs, wabs);
        /* a non-finite value makes the sum NaN; |x| skips it */
        float bad[2] = {INFINITY, 1.0f};
        lrp_xsum_add(s, bad, 2, 1);
        assert_true(isnan(lrp_xsum_value(s)));
        x[n] = 1.0f;
        wabs = mpfr_exact_sum(x, sg, n + 1, 1);
        gabs = lrp_xsum_abs(s);
        if (memcmp(&gabs, &wabs, sizeof gabs) != 0)
            fail_msg("round %d: abs after inf and 1: %a against %a", round, gabs, wabs);
        lrp_xsum_free(s);
    }
}

/* lrp_ratio_percentiles (a selection) against a full sort, value for
 * value (tolerance: none, both pick an element of the array).  Arrays of
 * n = 1 .. 3000 values with runs of equal values (ratio 0 for bitwise
 * cells), infinities, sorted, reversed, constant and organ-pipe orders;
 * and again with the selection's sort fallback reached early. */
static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_ratio_percentiles(void **state)
{
    (void)state;
    enum { N = 3000 };
    static double v[N], w[N];
    static const double q[LRP_PCTL_N] = {0.50, 0.90, 0.99, 1.0};
    xs_state = 11;
    /* the last 200 rounds with the selection cut short after 0, 1 or 2
     * partitions: the sort it falls back to (after 64 rounds, which no
     * input here reaches) must give the same values */
    for (int round = 0; round < 500; round++) {
        lrp_ratio_select_rounds(round < 300 ? 64 : round % 3);
        int n = round < 40 ? 1 + round : 1 + (int)(xs_rand() % N);
        int shape = round % 6;
        for (int i = 0; i < n; i++) {
            uint32_t r = xs_rand();
            double x = r % 3 == 0 ? 0.0 : (double)(r % 97) / 8.0;
            if (r % 211 == 0)
                x = INFINITY;
            if (shape == 1)
                x = i;
            else if (shape == 2)
                x = n - i;
            else if (shape == 3)
                x = 0.5;
            else if (shape == 4)
                x = i < n / 2 ? i : n - i;
            v[i] = w[i] = x;
        }
        double got[LRP_PCTL_N];
        lrp_ratio_percentiles(v, n, got);
        qsort(w, (size_t)n, sizeof *w, cmp_d);
        for (int k = 0; k < LRP_PCTL_N; k++) {
            int64_t idx = (int64_t)ceil(q[k] * (double)n) - 1;
            double want = w[idx < 0 ? 0 : idx];
            if (memcmp(&got[k], &want, sizeof want) != 0)
                fail_msg("round %d (n %d, shape %d): percentile %g is %g, sorted %g", round, n,
                         shape, q[k], got[k], want);
        }
    }
    lrp_ratio_select_rounds(64);
}

static void test_tolerance_table(void **state)
{
    (void)state;
    for (int r = 0; r < LRP_RULE_COUNT; r++) {
        const lrp_tolerance *t = lrp_tolerance_for((lrp_rule_id)r, LRP_LAYER_DENSE);
        assert_non_null(t);
        assert_true(t->pass_ratio > 1.0 && t->pass_ratio < t->fail_ratio);
        assert_true(t->ill_cond > 0.0 && t->ill_cond < 1.0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ulp_distance),    cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_lo_part_counts),  cmocka_unit_test(test_zero_bound),
        cmocka_unit_test(test_layer_stats),     cmocka_unit_test(test_tolerance_table),
        cmocka_unit_test(test_ill_gross),       cmocka_unit_test(test_undecided_gross),
        cmocka_unit_test(test_exact_sum),       cmocka_unit_test(test_ratio_percentiles),
    };
    return cmocka_run_group_tests_name("compare", tests, NULL, NULL);
}
