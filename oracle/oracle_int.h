/*
 * oracle_int.h -- internal helpers of the oracle module.
 */
#ifndef LRP_ORACLE_INT_H
#define LRP_ORACLE_INT_H

#include <stdint.h>

#include "oracle.h"

/* Exact accumulation of binary32 values (400-bit MPFR accumulator). */
typedef struct lrp_xsum lrp_xsum;
lrp_xsum *lrp_xsum_new(void);
void lrp_xsum_free(lrp_xsum *s);
void lrp_xsum_add(lrp_xsum *s, const float *x, int64_t n, int sign);
double lrp_xsum_value(const lrp_xsum *s); /* NaN if a non-finite value was added */
double lrp_xsum_abs(const lrp_xsum *s);   /* sum of |x| */
/* Carry the binned partial sums into the accumulator every k values
 * instead of every 2^38 (the tests reach the carry so). */
void lrp_xsum_flush_every(lrp_xsum *s, int64_t k);

/* The ratio percentiles of lrp_layer_cmp (50, 90, 99, 100: the values a
 * sort of v[0..n), n >= 1, puts at ceil(q n) - 1); v is rearranged. */
void lrp_ratio_percentiles(double *v, int64_t n, double out[LRP_PCTL_N]);
/* The selection's rounds before it sorts the rest (64; the tests reach
 * the sort with fewer).  Not for concurrent use with the above. */
void lrp_ratio_select_rounds(int r);

#endif
