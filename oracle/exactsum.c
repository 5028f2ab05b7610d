/*
 * exactsum.c -- exact sums of binary32 arrays (the conservation audit of a
 * float32 trace).  Every binary32 value is an integer multiple of 2^-149
 * below 2^128, so a sum of n of them is exact in a binary number of
 * 277 + log2(n) bits; mpfr_sum at that precision returns it exactly, and
 * the only rounding is the final conversion to binary64 of the residual.
 */
#include "oracle_int.h"

#include <math.h>
#include <mpfr.h>
#include <stdlib.h>

/* Adds sign * x[0..n) into the accumulator (exact). */
struct lrp_xsum {
    mpfr_t acc, absacc, tmp;
    int bad; /* NaN or inf met */
};

lrp_xsum *lrp_xsum_new(void)
{
    lrp_xsum *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    /* 277 bits cover one value's span; 64 more allow 2^64 terms */
    mpfr_inits2(400, s->acc, s->absacc, s->tmp, (mpfr_ptr)0);
    mpfr_set_zero(s->acc, 1);
    mpfr_set_zero(s->absacc, 1);
    s->bad = 0;
    return s;
}

void lrp_xsum_free(lrp_xsum *s)
{
    if (!s)
        return;
    mpfr_clears(s->acc, s->absacc, s->tmp, (mpfr_ptr)0);
    free(s);
}

void lrp_xsum_add(lrp_xsum *s, const float *x, int64_t n, int sign)
{
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            s->bad = 1;
            continue;
        }
        /* 400 bits hold any partial sum of binary32 values exactly, so
         * plain mpfr_add is exact here (no rounding ever happens) */
        mpfr_set_flt(s->tmp, x[i], MPFR_RNDN);
        if (sign < 0)
            mpfr_sub(s->acc, s->acc, s->tmp, MPFR_RNDN);
        else
            mpfr_add(s->acc, s->acc, s->tmp, MPFR_RNDN);
        mpfr_abs(s->tmp, s->tmp, MPFR_RNDN);
        mpfr_add(s->absacc, s->absacc, s->tmp, MPFR_RNDN);
    }
}

double lrp_xsum_value(const lrp_xsum *s)
{
    return s->bad ? NAN : mpfr_get_d(s->acc, MPFR_RNDN);
}

double lrp_xsum_abs(const lrp_xsum *s)
{
    return mpfr_get_d(s->absacc, MPFR_RNDN);
}
