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

#endif
