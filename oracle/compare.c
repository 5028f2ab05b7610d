/*
 * compare.c -- per-cell classification and per-layer statistics.
 *
 * Order of checks for one cell (docs/SPEC.md section 7):
 *   1. categories: a NaN or inf under test is NONFINITE (the reference is
 *      never NaN; where the mathematics is undefined it says so in cflags,
 *      and the cause is reported with the verdict);
 *   2. bitwise equality with the reference rounded to binary32: PASS;
 *   3. the reference itself unresolved at p: UNRESOLVED (raise p);
 *   4. float32 cannot determine a denominator the cell depends on (cond =
 *      u n kappa above ill_cond, propagated toward the input): the
 *      first-order bound is no bound there, so the cell is ILL-CONDITIONED
 *      (a property of network and input, not a bug) unless it agrees with
 *      the reference to ill_agree relative anyway (then PASS);
 *   5. a sign opposite to the reference's where the bound is smaller than
 *      |ref| (no rounding can explain it): FAIL;
 *   6. gauge ratio = |got - ref| / (u * bound): below pass_ratio PASS,
 *      below fail_ratio SUSPECT, else FAIL.
 */
#include "oracle.h"
#include "oracle_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const verdict_tab[] = {
#define X(e, s) s,
    LRP_VERDICT_LIST(X)
#undef X
};
_Static_assert(sizeof verdict_tab / sizeof verdict_tab[0] == LRP_V_COUNT,
               "verdict table and enum disagree");

const char *lrp_verdict_name(lrp_verdict v)
{
    return (unsigned)v < LRP_V_COUNT ? verdict_tab[v] : "?";
}

int lrp_verdict_parse(const char *name, lrp_verdict *out)
{
    for (int i = 0; i < LRP_V_COUNT; i++)
        if (!strcasecmp(name, verdict_tab[i])) {
            *out = (lrp_verdict)i;
            return 0;
        }
    return -1;
}

/* Maps binary32 to a signed integer monotone in the value: adjacent floats
 * differ by 1; +0 and -0 both map to 0. */
static int64_t ordinal(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    int64_t mag = (int64_t)(u & 0x7fffffffu);
    return (u >> 31) ? -mag : mag;
}

double lrp_ulp_distance(float a, float b)
{
    return fabs((double)(ordinal(a) - ordinal(b)));
}

static int same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* u = 2^-24, the unit roundoff of binary32 round-to-nearest. */
#define U32 0x1p-24

lrp_verdict lrp_classify_cell(double *ratio_out, float got, const lrp_cell_ref *ref, int64_t i,
                              const lrp_tolerance *tol)
{
    float hi = ref->hi[i];
    double r = (double)hi + (ref->lo ? (double)ref->lo[i] : 0.0); /* exact in binary64 */
    unsigned cf = ref->cflags ? ref->cflags[i] : 0;
    double ratio = 0.0;
    lrp_verdict v;

    if (!isfinite(got)) {
        ratio = INFINITY;
        v = LRP_V_NONFINITE;
    } else if (same_bits(got, hi)) {
        v = LRP_V_PASS;
    } else if (cf & LRP_CELL_UNRESOLVED) {
        v = LRP_V_UNRESOLVED;
        ratio = NAN;
    } else {
        double err = fabs((double)got - r);
        if (ref->bound) {
            double b = (double)ref->bound[i] * U32;
            ratio = err == 0.0 ? 0.0 : (b > 0.0 ? err / b : INFINITY);
        } else {
            ratio = lrp_ulp_distance(got, hi);
        }
        /* a sign the bound cannot explain: the error bound is smaller than
         * |ref|, so no float32 rounding can flip it -- FAIL whatever the
         * ratio (worst-case bounds are loose enough that a flipped sign
         * can stay below fail_ratio) */
        int wrong_sign = ((double)got < 0 && r > 0) || ((double)got > 0 && r < 0);
        double babs = ref->bound ? (double)ref->bound[i] * U32 : 0.0;
        if (ref->sharp) {
            /* two tiers: judged on the sharp bound; beyond it, the rigorous
             * worst case decides between SUSPECT (only correlated roundings
             * could explain it) and FAIL (nothing explains it) */
            double bs = (double)ref->sharp[i] * U32;
            double rs = err == 0.0 ? 0.0 : (bs > 0.0 ? err / bs : INFINITY);
            if (ref->scond && (double)ref->scond[i] > tol->ill_cond)
                /* first-order bounds are no bounds where the float32
                 * denominator is undetermined even in the sharp model */
                v = err <= tol->ill_agree * fabs(r) ? LRP_V_PASS : LRP_V_ILL_CONDITIONED;
            else if (rs <= tol->sharp_pass)
                v = LRP_V_PASS;
            else if (wrong_sign && babs < fabs(r))
                v = LRP_V_FAIL;
            else if (ratio < tol->pass_ratio)
                v = LRP_V_SUSPECT;
            else
                v = LRP_V_FAIL;
            ratio = rs;
        } else if (ref->cond && (double)ref->cond[i] > tol->ill_cond)
            v = err <= tol->ill_agree * fabs(r) ? LRP_V_PASS : LRP_V_ILL_CONDITIONED;
        else if (wrong_sign && babs < fabs(r))
            v = LRP_V_FAIL;
        else if (ratio < tol->pass_ratio)
            v = LRP_V_PASS;
        else if (ratio < tol->fail_ratio)
            v = LRP_V_SUSPECT;
        else
            v = LRP_V_FAIL;
    }
    if (ratio_out)
        *ratio_out = ratio;
    return v;
}

/* a wrong sign, a zero, or a factor of 2 or 1/2 against r != 0 (got
 * finite); the gross, ill_gross and undecided_gross counts share it */
static int grossly_off(double gd, double r)
{
    return (gd < 0) != (r < 0) || gd == 0.0 || fabs(gd - r) >= 0.5 * fabs(r);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The k-th smallest of v[0..n) (no NaN), v rearranged so that v[0..k) <=
 * v[k] <= v[k+1..n): a quickselect with a three-way partition (runs of
 * equal values, such as the ratios 0 of the bitwise-equal cells, leave in
 * one pass), insertion sort below 16 values, and qsort if 64 rounds did
 * not finish (a pivot sequence chosen badly every time).  The value is
 * the one a full sort puts at k; the ratios are never -0, so equal values
 * have equal bits. */
static int select_rounds = 64; /* (lrp_ratio_select_rounds: the tests') */

void lrp_ratio_select_rounds(int r) { select_rounds = r; }

static double select_k(double *v, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n;
    for (int round = 0; hi - lo > 16; round++) {
        if (round == select_rounds) {
            qsort(v + lo, (size_t)(hi - lo), sizeof *v, cmp_double);
            return v[k];
        }
        double a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi - 1];
        double p = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int64_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            double x = v[i];
            if (x < p) {
                v[i++] = v[lt];
                v[lt++] = x;
            } else if (x > p) {
                v[i] = v[--gt];
                v[gt] = x;
            } else {
                i++;
            }
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return p;
    }
    for (int64_t i = lo + 1; i < hi; i++) {
        double x = v[i];
        int64_t j = i;
        for (; j > lo && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
    return v[k];
}

void lrp_ratio_percentiles(double *v, int64_t n, double out[LRP_PCTL_N])
{
    static const double q[LRP_PCTL_N] = {0.50, 0.90, 0.99, 1.0};
    /* from the largest rank down: after selecting rank k, the ranks below
     * it are among v[0..k], so each selection reads only that prefix */
    int64_t top = n;
    for (int j = LRP_PCTL_N - 1; j >= 0; j--) {
        int64_t idx = (int64_t)ceil(q[j] * (double)n) - 1;
        if (idx < 0)
            idx = 0;
        out[j] = select_k(v, top, idx);
        top = idx + 1;
    }
}

lrp_verdict lrp_compare_cells(lrp_layer_cmp *out, const float *got, const lrp_cell_ref *ref,
                              int64_t n, const lrp_tolerance *tol)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    out->worst = -1;
    out->first_nonfinite = -1;
    out->first_gross = -1;
    out->sharp = ref->sharp != NULL;
    out->worst_verdict = LRP_V_PASS;
    out->first_ill_gross = -1;
    out->first_undecided_gross = -1;
    /* the mean |ref| of the defined cells: the floor of ill_gross */
    double mean_abs = 0;
    {
        double s = 0;
        int64_t nd = 0;
        for (int64_t i = 0; i < n; i++) {
            double r = (double)ref->hi[i] + (ref->lo ? (double)ref->lo[i] : 0.0);
            if (isfinite(r) && !(ref->cflags && (ref->cflags[i] & LRP_CELL_UNDEFINED))) {
                s += fabs(r);
                nd++;
            }
        }
        mean_abs = nd > 0 ? s / (double)nd : 0;
    }
    double *ratios = malloc((size_t)(n > 0 ? n : 1) * sizeof *ratios);
    int64_t nr = 0;
    for (int64_t i = 0; i < n; i++) {
        double ratio;
        float g = got[i], h = ref->hi[i];
        lrp_verdict v = lrp_classify_cell(&ratio, g, ref, i, tol);
        out->count[v]++;
        if (v == LRP_V_ILL_CONDITIONED) {
            out->ill++;
            double r = (double)h + (ref->lo ? (double)ref->lo[i] : 0.0), gd = (double)g;
            if (isfinite(r) && r != 0.0 && fabs(r) >= LRP_ILL_GROSS_FLOOR * mean_abs &&
                grossly_off(gd, r)) {
                out->ill_gross++;
                if (out->first_ill_gross < 0)
                    out->first_ill_gross = i;
            }
        }
        {
            /* gross: what no rounding and no ill-conditioning of a few
             * cells explains once it covers a layer -- a wrong sign, a zero
             * or a factor of 2 where the reference exceeds the sharp (else
             * the rigorous) bound */
            double r = (double)h + (ref->lo ? (double)ref->lo[i] : 0.0);
            int undef = ref->cflags && (ref->cflags[i] & LRP_CELL_UNDEFINED);
            if (isfinite(r) && !undef) {
                out->defined++;
                const float *bb = ref->sharp ? ref->sharp : ref->bound;
                double floor = bb ? (double)bb[i] * U32 : 0.0;
                double gd = (double)g;
                int gross = 0;
                if (fabs(r) > floor && r != 0.0) {
                    if (!isfinite(gd) || grossly_off(gd, r))
                        gross = 1;
                }
                if (gross) {
                    out->gross++;
                    if (out->first_gross < 0)
                        out->first_gross = i;
                }
                /* resolved: the bound decides the cell whatever the value
                 * under test -- its cond is within the tolerance (not the
                 * verdict: an ill-conditioned cell that happens to agree
                 * with the reference is PASS, and would not be resolved
                 * for a value that does not), and |ref| is above its
                 * bound, or a zero reference has a zero bound (any value
                 * but 0 fails its ratio) */
                const float *cc = ref->sharp ? ref->scond : ref->cond;
                int ill_cell = cc && (double)cc[i] > tol->ill_cond;
                if (!ill_cell && ((fabs(r) > floor && r != 0.0) || (r == 0.0 && floor == 0.0)))
                    out->resolved++;
                if (v != LRP_V_ILL_CONDITIONED && v != LRP_V_NONFINITE && r != 0.0 &&
                    fabs(r) <= floor && fabs(r) >= LRP_ILL_GROSS_FLOOR * mean_abs &&
                    grossly_off(gd, r)) {
                    out->undecided_gross++;
                    if (out->first_undecided_gross < 0)
                        out->first_undecided_gross = i;
                }
            }
        }
        if (same_bits(g, h))
            out->bitwise_equal++;
        else if (g == 0.0f && h == 0.0f) {
            out->zero_sign_differs++;
            if (!signbit(g))
                out->zero_pos_for_neg++;
        }
        if (isnan(g))
            out->got_nan++;
        else if (isinf(g))
            out->got_inf++;
        if (ref->cflags && (ref->cflags[i] & LRP_CELL_UNDEFINED))
            out->ref_undefined++;
        if (!isfinite(g) && out->first_nonfinite < 0)
            out->first_nonfinite = i;
        if (isfinite(g)) {
            double u = lrp_ulp_distance(g, h);
            if (u > out->max_ulp)
                out->max_ulp = u;
            double r = (double)h + (ref->lo ? (double)ref->lo[i] : 0.0);
            if (r != 0.0) {
                double rel = fabs((double)g - r) / fabs(r);
                if (rel > out->max_rel)
                    out->max_rel = rel;
            }
        }
        if (ratios && !isnan(ratio))
            ratios[nr++] = ratio;
        /* worst: highest verdict, then highest ratio */
        if (out->worst < 0 || v > out->worst_verdict ||
            (v == out->worst_verdict && !isnan(ratio) && ratio > out->worst_ratio)) {
            out->worst = i;
            out->worst_verdict = v;
            out->worst_ratio = isnan(ratio) ? 0.0 : ratio;
            out->worst_got = g;
            out->worst_ref = h;
        }
    }
    if (ratios && nr > 0)
        lrp_ratio_percentiles(ratios, nr, out->ratio_pctl);
    free(ratios);
    return out->worst_verdict;
}
