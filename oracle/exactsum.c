/*
 * exactsum.c -- exact sums of binary32 arrays (the conservation audit of a
 * float32 trace).  Every binary32 value is an integer multiple of 2^-149
 * below 2^128, so a sum of n of them is exact in a binary number of
 * 277 + log2(n) bits, and the only rounding is the final conversion to
 * binary64.
 *
 * The values are added as integers, binned by their exponent field: a
 * finite binary32 x is m 2^(e - 150) with its significand m < 2^24
 * (implicit bit included; a subnormal has e = 1 and no implicit bit), so
 * bin e gathers the signed m of every value of that exponent.  An int64
 * bin takes 2^39 such additions before it could overflow; the bins are
 * carried into a 400-bit MPFR accumulator (exact: 277 bits cover one
 * value's span, 64 more 2^64 terms) every 2^38 values and when the sum is
 * read.  The same exact sums as adding each value to the MPFR accumulator
 * (what this file did until December 2026: an mpfr_set_flt and two
 * mpfr_add a value, 28 % of rank 0's samples in its float32 phases under
 * the layer split), so the same binary64 results.
 */
#include "oracle_int.h"

#include <math.h>
#include <mpfr.h>
#include <stdlib.h>
#include <string.h>

#define XS_BINS 256              /* the exponent field's values */
#define XS_FLUSH ((int64_t)1 << 38) /* values between carries */

struct lrp_xsum {
    mpfr_t acc, absacc; /* what the bins carried so far */
    int64_t bin[XS_BINS], absbin[XS_BINS];
    int64_t pending;    /* values added to the bins since the last carry */
    int64_t flush_at;   /* XS_FLUSH (lrp_xsum_flush_every: the tests) */
    int bad;            /* NaN or inf met */
};

lrp_xsum *lrp_xsum_new(void)
{
    lrp_xsum *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    mpfr_inits2(400, s->acc, s->absacc, (mpfr_ptr)0);
    mpfr_set_zero(s->acc, 1);
    mpfr_set_zero(s->absacc, 1);
    memset(s->bin, 0, sizeof s->bin);
    memset(s->absbin, 0, sizeof s->absbin);
    s->pending = 0;
    s->flush_at = XS_FLUSH;
    s->bad = 0;
    return s;
}

void lrp_xsum_free(lrp_xsum *s)
{
    if (!s)
        return;
    mpfr_clears(s->acc, s->absacc, (mpfr_ptr)0);
    free(s);
}

/* dst += sum_e bin[e] 2^(e - 150), exactly (400 bits hold every partial
 * sum of binary32 values; each term is an int64 times a power of 2) */
static void carry(mpfr_ptr dst, const int64_t *bin)
{
    mpfr_t t;
    mpfr_init2(t, 64);
    for (int e = 0; e < XS_BINS; e++)
        if (bin[e]) {
            mpfr_set_sj_2exp(t, bin[e], e - 150, MPFR_RNDN); /* exact: 64 bits */
            mpfr_add(dst, dst, t, MPFR_RNDN);
        }
    mpfr_clear(t);
}

static void flush(lrp_xsum *s)
{
    carry(s->acc, s->bin);
    carry(s->absacc, s->absbin);
    memset(s->bin, 0, sizeof s->bin);
    memset(s->absbin, 0, sizeof s->absbin);
    s->pending = 0;
}

/* Adds sign * x[0..n) into the accumulator (exact). */
void lrp_xsum_add(lrp_xsum *s, const float *x, int64_t n, int sign)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        uint32_t e = (u >> 23) & 0xffu;
        if (e == 0xffu) { /* NaN or inf */
            s->bad = 1;
            continue;
        }
        int64_t m = (int64_t)(u & 0x7fffffu);
        if (e)
            m |= (int64_t)1 << 23;
        else
            e = 1; /* subnormal (or zero): m 2^-149 */
        s->absbin[e] += m;
        s->bin[e] += ((u >> 31) != 0) != (sign < 0) ? -m : m;
        if (++s->pending >= s->flush_at)
            flush(s);
    }
}

void lrp_xsum_flush_every(lrp_xsum *s, int64_t k)
{
    s->flush_at = k > 0 && k < XS_FLUSH ? k : XS_FLUSH;
}

/* acc plus the bins not yet carried, rounded to binary64 */
static double read_sum(mpfr_srcptr acc, const int64_t *bin)
{
    mpfr_t t;
    mpfr_init2(t, 400);
    mpfr_set(t, acc, MPFR_RNDN); /* exact: the same precision */
    carry(t, bin);
    double d = mpfr_get_d(t, MPFR_RNDN);
    mpfr_clear(t);
    return d;
}

double lrp_xsum_value(const lrp_xsum *s)
{
    return s->bad ? NAN : read_sum(s->acc, s->bin);
}

double lrp_xsum_abs(const lrp_xsum *s)
{
    return read_sum(s->absacc, s->absbin);
}
