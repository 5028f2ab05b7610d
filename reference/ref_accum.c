/*
 * ref_accum.c -- an exact accumulator of binary64 values (a small
 * "superaccumulator", after R. M. Neal, "Fast exact summation using small
 * and large superaccumulators", 2015) and the 29-bit splitting of p-bit
 * MPFR values that makes every product with a binary32 weight exact.
 *
 * Representation: a finite double d = m * 2^(E - 1075) (m < 2^53 integer,
 * E the biased exponent, E = 1 for subnormals).  Level 1: +-m is added to
 * the 128-bit bin[bank][E] (2^28 adds of |m| < 2^53 stay below 2^81, even
 * summed over the banks).  Level 2 (fold, every 2^28 adds and at the end):
 * each touched exponent's sum S is placed at bit offset E of a fixed-point number with unit
 * 2^-1075 held as 32-bit chunks in int64 cells (S << (E mod 32) < 2^95
 * spans three cells), then carries are propagated.  Everything is integer
 * arithmetic: the sum is exact, whatever the order -- which is why results
 * do not depend on threads.
 *
 * Correctness is tested against mpfr_sum on random data with extreme
 * exponents, subnormals and cancellation (tests/test_reference.c).
 */
#include "ref_int.h"

#define NCELL LRP_REF_NCELL
_Static_assert(2047 / 32 + 4 < LRP_REF_NCELL, "cells cover the binary64 range");

#include <limits.h>
#include <pthread.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One spare accumulator per thread.  The dot-product kernels take an
 * accumulator for every chunk of work they are handed (ref_backend.c
 * lrp_ref_par_for: about 16 chunks a thread per op), and a fresh one is
 * 130 KB of zeroed memory: on small layers the allocation cost more than
 * the sums (under ASan it was a third of test_reference's time, in page
 * faults and madvise).  A freed accumulator is cleared (only its touched
 * bins) and kept for the thread's next chunk; the thread-specific key's
 * destructor frees it when the thread ends. */
static pthread_key_t acc_key;
static pthread_once_t acc_once = PTHREAD_ONCE_INIT;
static int acc_key_ok;

static void acc_key_make(void) { acc_key_ok = pthread_key_create(&acc_key, free) == 0; }

ref_acc *lrp_ref_acc_new(void)
{
    pthread_once(&acc_once, acc_key_make);
    ref_acc *a = acc_key_ok ? pthread_getspecific(acc_key) : NULL;
    if (a) {
        pthread_setspecific(acc_key, NULL);
        return a; /* cleared when it was freed */
    }
    a = calloc(1, sizeof *a);
    LRP_ASSERT(a);
    a->lo = 2048;
    a->hi = -1;
    return a;
}

void lrp_ref_acc_free(ref_acc *a)
{
    if (!a)
        return;
    if (acc_key_ok && !pthread_getspecific(acc_key)) {
        lrp_ref_acc_clear(a);
        if (pthread_setspecific(acc_key, a) == 0)
            return;
    }
    free(a);
}

static void lrp_ref_acc_normalize(ref_acc *a);

void lrp_ref_acc_clear(ref_acc *a)
{
    memset(a->c, 0, sizeof a->c);
    if (a->lo <= a->hi)
        for (int k = 0; k < LRP_REF_BANKS; k++)
            memset(&a->bin[k][a->lo], 0, (size_t)(a->hi - a->lo + 1) * sizeof(__int128));
    a->lo = 2048;
    a->hi = -1;
    a->n = 0;
}

/* bins -> cells: bin E holds S = signed sum of significands over all banks
 * (|S| < 2^28 * 2^53 = 2^81), value S * 2^(max(E,1) - 1075), placed at bit
 * max(E,1) of the cells (|S| << (E mod 32) < 2^113: four cells). */
void lrp_ref_acc_fold(ref_acc *a)
{
    for (int E = a->lo; E <= a->hi; E++) {
        __int128 v = 0;
        for (int k = 0; k < LRP_REF_BANKS; k++) {
            v += a->bin[k][E];
            a->bin[k][E] = 0;
        }
        if (!v)
            continue;
        unsigned e = E == 0 ? 1u : (unsigned)E;
        unsigned k = e >> 5, sh = e & 31;
        unsigned __int128 mag = v < 0 ? (unsigned __int128)0 - (unsigned __int128)v
                                      : (unsigned __int128)v;
        unsigned __int128 t = mag << sh;
        int64_t c0 = (int64_t)(uint64_t)(t & 0xffffffffu);
        int64_t c1 = (int64_t)(uint64_t)((t >> 32) & 0xffffffffu);
        int64_t c2 = (int64_t)(uint64_t)((t >> 64) & 0xffffffffu);
        int64_t c3 = (int64_t)(uint64_t)(t >> 96);
        if (v < 0) {
            a->c[k] -= c0;
            a->c[k + 1] -= c1;
            a->c[k + 2] -= c2;
            a->c[k + 3] -= c3;
        } else {
            a->c[k] += c0;
            a->c[k + 1] += c1;
            a->c[k + 2] += c2;
            a->c[k + 3] += c3;
        }
    }
    a->lo = 2048;
    a->hi = -1;
    a->n = 0;
    lrp_ref_acc_normalize(a);
}

/* carries: every cell but the last in [0, 2^32) */
static void lrp_ref_acc_normalize(ref_acc *a)
{
    int64_t carry = 0;
    for (int k = 0; k < NCELL - 1; k++) {
        int64_t v = a->c[k] + carry;
        carry = v >> 32; /* arithmetic shift: floor division */
        a->c[k] = v - (carry * ((int64_t)1 << 32));
    }
    a->c[NCELL - 1] += carry;
}

void lrp_ref_acc_get_z(mpz_ptr z, long *e, ref_acc *a)
{
    lrp_ref_acc_fold(a);
    int neg = a->c[NCELL - 1] < 0;
    if (neg) {
        /* two's complement over NCELL cells: negate the whole number */
        int64_t carry = 1;
        for (int k = 0; k < NCELL - 1; k++) {
            int64_t v = (int64_t)((~(uint64_t)a->c[k]) & 0xffffffffu) + carry;
            carry = v >> 32;
            a->c[k] = v & 0xffffffff;
        }
        a->c[NCELL - 1] = -a->c[NCELL - 1] - 1 + carry;
    }
    int lo = 0, hi = NCELL - 1;
    while (lo < NCELL && a->c[lo] == 0)
        lo++;
    if (lo == NCELL) {
        mpz_set_ui(z, 0);
        *e = 0;
        return;
    }
    while (a->c[hi] == 0)
        hi--;
    uint32_t w[NCELL];
    for (int k = lo; k <= hi; k++)
        w[k - lo] = (uint32_t)a->c[k];
    mpz_import(z, (size_t)(hi - lo + 1), -1, sizeof(uint32_t), 0, 0, w);
    if (neg)
        mpz_neg(z, z);
    *e = 32L * lo - 1075;
    /* the accumulator was consumed (negated in place): callers clear it */
}

void lrp_ref_acc_get(mpfr_ptr rop, ref_acc *a, long scale, int zero_neg)
{
    mpz_t z;
    long e;
    mpz_init(z);
    lrp_ref_acc_get_z(z, &e, a);
    if (mpz_sgn(z) == 0)
        mpfr_set_zero(rop, zero_neg ? -1 : 1);
    else
        mpfr_set_z_2exp(rop, z, e + scale, MPFR_RNDN);
    mpz_clear(z);
}

int lrp_ref_split29(double *d, mpfr_srcptr x, long scale)
{
    mpz_t z;
    mpz_init(z);
    mpfr_exp_t ez = mpfr_get_z_2exp(z, x); /* x = z 2^ez, |z| < 2^prec */
    int neg = mpz_sgn(z) < 0;
    mpz_abs(z, z);
    long nb = (long)mpz_sizeinbase(z, 2);
    /* strip trailing zero bits: fewer pieces */
    unsigned long tz = mpz_scan1(z, 0);
    int k = 0;
    long top = nb; /* bit index above the current chunk */
    long lsb_exp = (long)ez - scale;
    while (top > (long)tz) {
        long low = top - 29;
        if (low < (long)tz)
            low = (long)tz;
        /* chunk = bits [low, top) of z */
        mpz_t c;
        mpz_init(c);
        mpz_tdiv_q_2exp(c, z, (mp_bitcnt_t)low);
        mpz_tdiv_r_2exp(c, c, (mp_bitcnt_t)(top - low));
        unsigned long cv = mpz_get_ui(c);
        mpz_clear(c);
        if (cv != 0) {
            long ex = lsb_exp + low;
            if (ex < -700 || ex > 900) {
                mpz_clear(z);
                return 0;
            }
            double v = ldexp((double)cv, (int)ex);
            d[k++] = neg ? -v : v;
        }
        top = low;
    }
    mpz_clear(z);
    return k;
}
