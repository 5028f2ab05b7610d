/*
 * oracle.h -- judging a float32 relevance trace against the reference
 * (docs/SPEC.md section 7; docs/ORACLE.md says exactly how).
 *
 * Per cell the oracle sees:
 *   got      the float32 value under test;
 *   ref      the reference value as hi + lo (hi = the reference rounded to
 *            nearest binary32, lo = the binary32 rounding of the rest), i.e.
 *            about 48 correct bits: enough to measure float32 errors;
 *   bound    the a-priori float32 error bound of the cell in units of u
 *            (u = 2^-24), propagated through the layers (the "gauge");
 *   cond     u * max_j (n_j kappa_j) over the output units j the cell draws
 *            from: how much of a denominator float32 can lose;
 *   cflags   reference facts: unresolved at p, undefined (zero denominator
 *            without stabilizer), ...
 * and classifies it; a layer's verdict is its worst cell's.
 */
#ifndef LRP_ORACLE_H
#define LRP_ORACLE_H

#include <stdint.h>

#include "lrp.h"

/* Verdicts (lrp_verdict, LRP_V_*) are public: include/lrp.h. */

/* Per-cell reference flags. */
enum {
    LRP_CELL_UNRESOLVED = 1u << 0, /* p and p+64 round to different binary32 */
    LRP_CELL_UNDEFINED = 1u << 1,  /* depends on a zero denominator with no
                                      stabilizer: mathematically undefined */
    LRP_CELL_ZERO_DEN = 1u << 2,   /* a contributing den_j is exactly zero */
    /* linear layers (Dense/Conv2D), by connectivity: a contributing unit j
     * carries relevance R_j != 0 (the gauge's R: the reference's end to
     * end, the subject's locally) with den_j exactly zero (ZDEN_LIVE) or
     * not (LIVE_TERM).  They tell the oracle whether a zero cell's sign
     * could have been decided by a zero denominator's stabilizer
     * (oracle/check.c, sign of zero). */
    LRP_CELL_ZDEN_LIVE = 1u << 3,
    LRP_CELL_LIVE_TERM = 1u << 4,
};

/* One row of the tolerance table (oracle/tolerance.c). */
typedef struct lrp_tolerance {
    double pass_ratio;  /* gauge ratio below this: PASS (LAPACK drivers: 16..30) */
    double fail_ratio;  /* at or above: FAIL; in between: SUSPECT (1/sqrt(u)) */
    double ill_cond;    /* cond above this: ILL-CONDITIONED ...          */
    double ill_agree;   /* ... unless |got - ref| <= ill_agree * |ref|   */
    double sharp_pass;  /* sharp tier: ratio to the sharp bound below this: PASS;
                           above it, SUSPECT while the rigorous ratio stays below
                           pass_ratio, else FAIL */
    double gross_frac;  /* a layer whose grossly wrong cells (sign, zero, factor
                           >= 2 or <= 1/2, beyond the sharp bound) exceed this
                           fraction of its defined cells is FAIL, whatever the
                           condition numbers say */
} lrp_tolerance;

/* The tolerance promised for a rule on a layer kind. */
const lrp_tolerance *lrp_tolerance_for(lrp_rule_id r, lrp_layer_kind k);

typedef struct lrp_cell_ref {
    const float *hi;
    const float *lo;       /* may be NULL (then ref = hi) */
    const float *bound;    /* may be NULL (then no gauge: ratio from ULPs) */
    const float *cond;     /* may be NULL (then never ill-conditioned) */
    const uint8_t *cflags; /* may be NULL */
    /* The sharp tier (may be NULL: judged on the rigorous bound alone):
     * the probabilistic bound (units of u) and its cond.  With it the
     * verdict uses the sharp ratio, the rigorous bound only as upper tier. */
    const float *sharp;
    const float *scond;
} lrp_cell_ref;

#define LRP_PCTL_N 4 /* 50, 90, 99, 100 */

typedef struct lrp_layer_cmp {
    int64_t n;                     /* cells compared */
    int64_t count[LRP_V_COUNT];    /* cells per verdict */
    int64_t bitwise_equal;
    int64_t zero_sign_differs;     /* +0 vs -0 */
    int64_t zero_pos_for_neg;      /* of those: got +0 where the reference is -0 */
    int64_t got_nan, got_inf, ref_undefined;
    double max_ulp;                /* over finite pairs */
    double max_rel;                /* relative to |ref|, finite pairs, ref != 0 */
    double ratio_pctl[LRP_PCTL_N]; /* gauge ratio percentiles 50/90/99/max */
    int64_t worst;                 /* index of the worst cell (-1 if none) */
    lrp_verdict worst_verdict;     /* that cell's verdict == layer verdict */
    double worst_ratio;
    float worst_got, worst_ref;
    int64_t first_nonfinite;       /* first NaN/inf cell index, -1 if none */
    /* layer-level figures (all cells, whatever their condition) */
    int sharp;                     /* ratios are to the sharp bound */
    int64_t defined;               /* cells whose reference is defined and finite */
    int64_t gross;                 /* of those: wrong sign, zero or factor >= 2 where
                                      |ref| exceeds the sharp bound */
    int64_t ill;                   /* cells excused as ill-conditioned */
    int64_t resolved;              /* of the defined cells: not ILL-CONDITIONED and |ref|
                                      above the bound that counts gross (sharp, else
                                      rigorous) -- where a wrong sign, a zero or a factor
                                      of 2 fails the cell's layer; elsewhere only the
                                      rule for cells no bound decides sees it */
    int64_t first_gross;           /* index of the first gross cell, -1 */
    /* of the ILL-CONDITIONED cells: wrong sign, zero or factor >= 2 against
     * |ref| itself (no bound), where |ref| is at least LRP_ILL_GROSS_FLOOR
     * times the mean |ref| of the defined cells -- what only a bound too wide
     * to decide has excused (check.c: SUSPECT when the bounds carry the
     * forward error of a trace without activations) */
    int64_t ill_gross;
    int64_t first_ill_gross;       /* index of the first such cell, -1 */
    /* of the defined cells not ILL-CONDITIONED whose bound is at least |ref|
     * (no rounding within it is excluded, so neither the sign check nor the
     * gross count above can fail them): wrong sign, zero or factor >= 2,
     * with the floor of ill_gross -- what a bound too wide to decide lets
     * through, as ill_gross is for the cells excused by their cond */
    int64_t undecided_gross;
    int64_t first_undecided_gross; /* index of the first such cell, -1 */
} lrp_layer_cmp;

/* The floor of ill_gross above, relative to the layer's mean |ref|: a cell
 * that small may flip its sign under a forward error no bound resolves;
 * larger ones flipping, vanishing or doubling are what a wrong rule does. */
#define LRP_ILL_GROSS_FLOOR 0x1p-4

/* ULP distance between two finite binary32 values (+0 and -0 are 0 apart).
 * Returns a double so that distances across the whole range fit. */
double lrp_ulp_distance(float a, float b);

/* Classifies one cell. ratio_out (may be NULL) gets the gauge ratio. */
lrp_verdict lrp_classify_cell(double *ratio_out, float got, const lrp_cell_ref *ref, int64_t i,
                              const lrp_tolerance *tol);

/* Compares n cells; fills out.  Returns the layer verdict. */
lrp_verdict lrp_compare_cells(lrp_layer_cmp *out, const float *got, const lrp_cell_ref *ref,
                              int64_t n, const lrp_tolerance *tol);

#endif
