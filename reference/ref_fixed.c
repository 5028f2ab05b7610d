/*
 * ref_fixed.c -- the fast exact kernel of the reference: p-bit MPFR values
 * times binary32 weights, accumulated exactly in 128-bit integer bins.
 *
 * A tensor of p-bit values is rewritten once (lrp_ref_fx_build) on a grid
 * of 16-bit units shared by the whole tensor, in 48-bit digits:
 *     v = sign * sum_d dig[d] * 2^(16 (lev + 3 d)) * 2^base,  dig[d] < 2^48,
 * (p = 128: at most 3 digits; p + 64 = 192: at most 5).  A binary32 weight
 * w = m * 2^(E - 150) (m < 2^24, E the biased exponent, 1 for subnormals)
 * is rewritten as
 *     w = W * 2^(16 bw - 160),  W = m << ((E + 10) mod 16) < 2^39,
 *     bw = (E + 10) / 16 in [0, 16].
 * So dig[d] * W (|.| < 2^87, one signed 64x64->128 multiply) sits exactly
 * at unit position lev + 3 d + bw: it is added to the 128-bit bin of that
 * key.  A bin holds 2^40 such products; the accumulator folds its bins
 * (each bin's bits above 48 carried three units up) before 2^30 adds
 * (lrp_ref_fx_fold_at), more than any fan-in.  At the end the
 * bins are split into 16-bit cells, carries propagated, and the exact
 * integer rounded once by MPFR.  Two banks of bins (alternating by tap)
 * keep consecutive adds to the same key from waiting on each other.
 *
 * Until December 2026 the grid was 32-bit digits with W < 2^55: 5 digits a
 * p = 128 value and 7 at p + 64.  A finer weight grid (16 bits: W < 2^39)
 * leaves room for 48-bit digits in the same product size.  (64-bit digits
 * with an unsigned multiply and the sign applied after it measured slower:
 * the sign of each product is unpredictable.)
 *
 * Everything is integer arithmetic, so the result is the exact sum
 * (checked against the exact-product + mpfr_sum kernel in the tests, bit
 * for bit) and independent of order and threads.
 */
#include "ref_int.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(GMP_NUMB_BITS == 64 && sizeof(mp_limb_t) == 8, "64-bit GMP limbs");

#define BANKS 2
#define DSTEP 3     /* a 48-bit digit spans 3 units of 16 bits */
#define DBITS 48
/* a weight as one int64: W * 32 + bw (W signed, |W| < 2^39, bw <= 16) */
#define WPACK(W, bw) ((int64_t)((uint64_t)(W) << 5) | (int64_t)(bw))
#define WVAL(p) ((p) >> 5) /* arithmetic */
#define WBW(p) ((int)((p) & 31))
/* a value's metadata as one uint32: lev * 256 + neg * 128 + digit count */
#define MPACK(lev, neg, cnt) (((uint32_t)(lev) << 8) | ((uint32_t)(neg) << 7) | (uint32_t)(cnt))
#define BW_MAX 16   /* (254 + 10) / 16 */
#define KEY_SLACK (BW_MAX + DSTEP + 4)

/* adds between folds: products < 2^87 in bins of 2^127 */
int lrp_ref_fx_fold_at = 1 << 30;
/* a fold carries from the bins beyond +-2^lrp_ref_fx_fold_bits */
int lrp_ref_fx_fold_bits = 100;

void lrp_ref_fx_free(ref_fx *f)
{
    free(f->meta);
    free(f->dig);
    memset(f, 0, sizeof *f);
}

int lrp_ref_fx_build(ref_fx *f, mpfr_srcptr v, int64_t n)
{
    memset(f, 0, sizeof *f);
    long minlsb = 0, maxlsb = 0;
    int have = 0, nl = 1;
    for (int64_t i = 0; i < n; i++) {
        mpfr_srcptr x = v + i;
        if (!mpfr_number_p(x))
            return 0;
        if (!mpfr_regular_p(x))
            continue;
        int l = (int)((mpfr_get_prec(x) + 63) / 64);
        nl = l > nl ? l : nl;
        long lsb = (long)mpfr_get_exp(x) - 64L * l;
        if (!have || lsb < minlsb)
            minlsb = lsb;
        if (!have || lsb > maxlsb)
            maxlsb = lsb;
        have = 1;
    }
    int ndig = (64 * nl + 15 + DBITS - 1) / DBITS;
    if (ndig > 60)
        return 0; /* p > 2800: digits buffer below; slow path */
    long base = minlsb >= 0 ? minlsb / 16 * 16 : -((-minlsb + 15) / 16) * 16;
    f->n = n;
    f->nd = ndig;
    f->base = base;
    if (have && (maxlsb - base) / 16 + DSTEP * f->nd > (1 << 15))
        return 0; /* values spread over > 2^19 bits: slow path */
    /* twice the digits' span: dot_plain runs cm digits from a value's first
     * nonzero one, which may start up to nd - 1 digits up */
    f->nlev = (have ? (int)((maxlsb - base) / 16) : 0) + 2 * DSTEP * f->nd;
    f->meta = calloc((size_t)n + 1, sizeof *f->meta);
    f->dig = calloc((size_t)(n * f->nd + 1), sizeof *f->dig);
    if (!f->meta || !f->dig) {
        lrp_ref_fx_free(f);
        return 0;
    }
    uint64_t sh[64], tmp[64];
    for (int64_t i = 0; i < n; i++) {
        mpfr_srcptr x = v + i;
        if (!mpfr_regular_p(x)) {
            f->nzero++; /* +-0: NaN / inf were refused above */
            continue;
        }
        int l = (int)((mpfr_get_prec(x) + 63) / 64);
        const mp_limb_t *M = mpfr_custom_get_significand(x);
        long lsb = (long)mpfr_get_exp(x) - 64L * l;
        long r = lsb - base;
        int lev = (int)(r >> 4), s = (int)(r & 15);
        /* M << s as 64-bit words, then as 48-bit digits, little endian */
        int nd = (64 * l + 15 + DBITS - 1) / DBITS;
        uint64_t carry = 0;
        for (int k = 0; k < l; k++) {
            uint64_t limb = M[k];
            sh[k] = (limb << s) | carry;
            carry = s ? limb >> (64 - s) : 0;
        }
        sh[l] = carry;
        sh[l + 1] = 0;
        for (int d = 0; d < nd; d++) {
            int bit = DBITS * d, w = bit >> 6, o = bit & 63;
            uint64_t lo64 = sh[w] >> o;
            if (o > 64 - DBITS)
                lo64 |= sh[w + 1] << (64 - o);
            tmp[d] = lo64 & ((UINT64_C(1) << DBITS) - 1);
        }
        int lo = 0, hi = nd - 1;
        while (lo < nd && tmp[lo] == 0)
            lo++;
        while (hi > lo && tmp[hi] == 0)
            hi--;
        f->meta[i] = MPACK(lev + DSTEP * lo, mpfr_signbit(x) != 0, hi - lo + 1);
        if (hi - lo + 1 > f->cm)
            f->cm = hi - lo + 1;
        memcpy(f->dig + i * f->nd, tmp + lo, (size_t)(hi - lo + 1) * sizeof(uint64_t));
    }
    return 1;
}

ref_fxacc *lrp_ref_fxacc_new(int nkeys)
{
    ref_fxacc *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->nk = nkeys + KEY_SLACK;
    a->bin = calloc((size_t)a->nk * BANKS, sizeof *a->bin);
    a->cell = calloc((size_t)a->nk + 16, sizeof *a->cell);
    if (!a->bin || !a->cell) {
        lrp_ref_fxacc_free(a);
        return NULL;
    }
    a->lo = a->nk;
    a->hi = -1;
    return a;
}

void lrp_ref_fxacc_free(ref_fxacc *a)
{
    if (!a)
        return;
    free(a->bin);
    free(a->cell);
    free(a);
}

void lrp_ref_fxacc_clear(ref_fxacc *a)
{
    if (a->lo <= a->hi)
        for (int b = 0; b < BANKS; b++)
            memset(a->bin + (size_t)b * a->nk + a->lo, 0,
                   (size_t)(a->hi - a->lo + 1) * sizeof *a->bin);
    a->lo = a->nk;
    a->hi = -1;
    a->adds = 0;
}

/* Keeps every bin's magnitude far below 2^127: a bin beyond +-2^100 (the
 * tests lower it to 2^70 to exercise this on small nets) keeps its low 48
 * bits (as a non-negative value) and hands the rest, an exact multiple of
 * 2^48 = 3 units, to the bin three keys up.  Bins above the products' keys
 * only ever receive such carries (< 2^79 each), so they never need folding
 * themselves; KEY_SLACK leaves them room. */
static void fold(ref_fxacc *A)
{
    const __int128 big = (__int128)1 << lrp_ref_fx_fold_bits;
    int hi = A->hi;
    for (int b = 0; b < BANKS; b++) {
        __int128 *bin = A->bin + (size_t)b * A->nk;
        for (int k = A->lo; k <= hi; k++) {
            __int128 v = bin[k];
            if (v > big || v < -big) {
                __int128 low = (__int128)((uint64_t)v & ((UINT64_C(1) << DBITS) - 1));
                bin[k] = low;
                bin[k + DSTEP] += (v - low) / ((__int128)1 << DBITS); /* exact */
                if (k + DSTEP > A->hi)
                    A->hi = k + DSTEP;
            }
        }
    }
    A->adds = 0;
}

void lrp_ref_fx_weights(int64_t *wd, const float *w32, int64_t n)
{
    for (int64_t k = 0; k < n; k++) {
        uint64_t m;
        unsigned E, neg = lrp_ref_f32_parts(w32[k], &m, &E);
        unsigned t = E + 10;
        int64_t W = (int64_t)(m << (t & 15));
        if (!W)
            wd[k] = 0; /* +-0: no product, whatever bw */
        else
            wd[k] = WPACK(neg ? -W : W, t >> 4);
    }
}

/* bin += W * d (W signed with the product's sign, |W| < 2^39; d < 2^48):
 * one signed 64x64->128 multiply, no branch on the sign */
static inline __attribute__((always_inline)) void madd(__int128 *restrict bin, int64_t W,
                                                       uint64_t d)
{
    *bin += (__int128)W * (int64_t)d;
}

/* The common cases (inputs as they are, signed products; weights as they
 * are or only the positive / negative ones).  With compact (a tensor with
 * many zeros, or a weight selection), two passes over blocks of taps: the
 * first keeps the taps with a nonzero value and a nonzero (selected)
 * weight without a branch, a list written at every tap and advanced only
 * for the kept ones.  (A branch per tap on ReLU zeros and on the weight's
 * sign is a coin flip the predictor loses half the time, and cost as much
 * as the products.)  The second multiplies the kept taps.  Without compact
 * (a tensor almost free of zeros, all weights: the branch is nearly always
 * taken the same way, and the list would only cost) one pass multiplies
 * as it goes.  Either multiplies CM digits, CM the tensor's most digits a
 * value uses, a compile-time count (the digits past a value's own count
 * are zero: they add nothing).  Same sums as the general loop below
 * (integer adds: order does not matter). */
#define TAPBLK 256
static inline __attribute__((always_inline)) void
dot_plain(ref_fxacc *A, const ref_fx *f, int64_t off, const int64_t *restrict ii,
          const int64_t *restrict ww, int64_t cnt, const int64_t *restrict wd,
          const int wsel, const int CM, const int compact)
{
    const uint32_t *restrict fm = f->meta;
    const uint64_t *restrict fd = f->dig;
    const int64_t nd = f->nd;
    __int128 *const b0 = A->bin, *const b1 = A->bin + A->nk;
    int lo = A->lo, kmax = -1;
    int64_t ki[TAPBLK], kw[TAPBLK];
    int kk[TAPBLK];
    for (int64_t q0 = 0; q0 < cnt; q0 += TAPBLK) {
        const int64_t n = cnt - q0 < TAPBLK ? cnt - q0 : TAPBLK;
        int m = 0;
        for (int64_t q = q0; q < q0 + n; q++) {
            const int64_t i = off + ii[q];
            const uint32_t mt = fm[i];
            const int64_t Wp = wd[ww[q]], W = WVAL(Wp);
            int keep = ((mt & 127) != 0) & (W != 0);
            if (wsel)
                keep &= (wsel > 0) != (W < 0);
            const int64_t sg = -(int64_t)((mt >> 7) & 1);
            const int key = (int)(mt >> 8) + WBW(Wp);
            if (!compact) {
                if (!keep)
                    continue;
                __int128 *restrict bin = ((q & 1) ? b1 : b0) + key;
                const uint64_t *restrict dg = fd + i * nd;
                const int64_t Ws = (W ^ sg) - sg;
                for (int d = 0; d < CM; d++)
                    madd(bin + DSTEP * d, Ws, dg[d]);
                lo = key < lo ? key : lo;
                kmax = key > kmax ? key : kmax;
                continue;
            }
            ki[m] = i;
            kw[m] = (W ^ sg) - sg;
            kk[m] = key;
            lo = keep && key < lo ? key : lo;
            kmax = keep && key > kmax ? key : kmax;
            m += keep;
        }
        for (int t = 0; t < m; t++) {
            __int128 *restrict bin = ((t & 1) ? b1 : b0) + kk[t];
            const uint64_t *restrict dg = fd + ki[t] * nd;
            const int64_t Ws = kw[t];
            for (int d = 0; d < CM; d++)
                madd(bin + DSTEP * d, Ws, dg[d]);
        }
    }
    A->lo = lo;
    if (kmax >= 0 && kmax + DSTEP * (CM - 1) > A->hi)
        A->hi = kmax + DSTEP * (CM - 1);
}

/* dot_plain with its digit count and its choice of passes as constants:
 * one pass for all weights on a tensor with fewer than 1 value in 8 zero
 * (bench_reference: the two passes cost a dense epsilon backward 1.1x) */
static void dot_plain_cm(ref_fxacc *A, const ref_fx *f, int64_t off, const int64_t *ii,
                         const int64_t *ww, int64_t cnt, const int64_t *wd, int wsel)
{
    const int dense = !wsel && f->nzero < f->n / 8;
#define DP_CASE(c)                                                                    \
    case c:                                                                           \
        if (dense)                                                                    \
            dot_plain(A, f, off, ii, ww, cnt, wd, 0, c, 0);                           \
        else if (!wsel)                                                               \
            dot_plain(A, f, off, ii, ww, cnt, wd, 0, c, 1);                           \
        else                                                                          \
            dot_plain(A, f, off, ii, ww, cnt, wd, wsel, c, 1);                        \
        return;
    switch (f->cm) {
    case 0: return; /* every value is +-0 */
        DP_CASE(1)
        DP_CASE(2)
        DP_CASE(3)
        DP_CASE(4)
        DP_CASE(5)
    default: dot_plain(A, f, off, ii, ww, cnt, wd, wsel, f->cm, 1); return;
    }
#undef DP_CASE
}

static void dot_general(ref_fxacc *A, const ref_fx *f, int64_t off, const int64_t *ii,
                        const int64_t *ww, int64_t cnt, const int64_t *wd, int wmod, int xsel,
                        int absval)
{
    int lo = A->lo, hi = A->hi, nd = f->nd;
    for (int64_t q = 0; q < cnt; q++) {
        int64_t i = off + ii[q];
        uint32_t mt = f->meta[i];
        int c = (int)(mt & 127), xneg = (int)((mt >> 7) & 1);
        int64_t Wp = wd[ww[q]], W = WVAL(Wp);
        if (!c || !W)
            continue;
        if (xsel && (xneg != (xsel < 0)))
            continue;
        if (wmod != LRP_WM_ID && (wmod == LRP_WM_POS) == (W < 0))
            continue;
        int64_t sg = absval ? -(int64_t)(W < 0) : -(int64_t)xneg; /* 0 or -1 */
        int64_t Ws = (W ^ sg) - sg;
        int key = (int)(mt >> 8) + WBW(Wp);
        __int128 *bin = A->bin + (size_t)(q & (BANKS - 1)) * A->nk + key;
        const uint64_t *dg = f->dig + i * nd;
        for (int d = 0; d < c; d++)
            madd(bin + DSTEP * d, Ws, dg[d]);
        lo = key < lo ? key : lo;
        hi = key + DSTEP * (c - 1) > hi ? key + DSTEP * (c - 1) : hi;
    }
    A->lo = lo;
    A->hi = hi;
}

void lrp_ref_fxacc_dot(ref_fxacc *A, const ref_fx *f, int64_t off, const int64_t *ii,
                       const int64_t *ww, int64_t cnt, const int64_t *wd, int wmod, int xsel,
                       int absval)
{
    _Static_assert(BANKS == 2, "dot_plain alternates two banks");
    /* at most nd adds a tap; fold before the bins could come near 2^127 */
    int64_t chunk = lrp_ref_fx_fold_at / f->nd;
    if (chunk < 1)
        chunk = 1;
    for (int64_t q0 = 0; q0 < cnt; q0 += chunk) {
        int64_t m = cnt - q0 < chunk ? cnt - q0 : chunk;
        if (A->adds + m * f->nd > lrp_ref_fx_fold_at)
            fold(A);
        A->adds += m * f->nd;
        const int64_t *iq = ii + q0, *wq = ww + q0;
        if (!xsel && !absval && wmod == LRP_WM_ID)
            dot_plain_cm(A, f, off, iq, wq, m, wd, 0);
        else if (!xsel && !absval && (wmod == LRP_WM_POS || wmod == LRP_WM_NEG))
            dot_plain_cm(A, f, off, iq, wq, m, wd, wmod == LRP_WM_POS ? 1 : -1);
        else
            dot_general(A, f, off, iq, wq, m, wd, wmod, xsel, absval);
    }
}

void lrp_ref_fxacc_add_shifted(ref_fxacc *A, long bit, __int128 v)
{
    /* |v| < 2^65 shifted by r < 16: < 2^81, like a product's 2^87 for the
     * fold's count; the key leaves the get_z / fold room above it */
    long key = bit >> 4;
    int r = (int)(bit & 15);
    LRP_ASSERT(bit >= 0 && key + 2 * DSTEP + 4 < A->nk);
    if (A->adds + 1 > lrp_ref_fx_fold_at)
        fold(A);
    A->adds++;
    A->bin[key] += v * ((__int128)1 << r);
    if (key < A->lo)
        A->lo = (int)key;
    if (key > A->hi)
        A->hi = (int)key;
}

void lrp_ref_fxacc_get_z(mpz_ptr z, long *e, ref_fxacc *A, const ref_fx *f)
{
    if (A->lo > A->hi) {
        mpz_set_ui(z, 0);
        *e = 0;
        return;
    }
    /* cells of 16 bits.  The banks' sum of each bin is first normalized to
     * 48 bits (the rest, an exact multiple of 2^48, carried to the bin
     * three keys up, in key order), so a bin adds three unsigned 16-bit
     * chunks to the cells from its key up; the last three bins, which keep
     * what is carried into them, add seven and a signed remainder
     * (|.| < 2^15). */
    int lo = A->lo, n = A->hi - A->lo + 1, nc = n + 9;
    int64_t *c = A->cell;
    memset(c, 0, (size_t)nc * sizeof *c);
    __int128 *b0 = A->bin + lo, *b1 = A->bin + A->nk + lo;
    for (int k = 0; k < n; k++) {
        __int128 v = b0[k] + b1[k];
        b0[k] = 0;
        b1[k] = 0;
        if (!v)
            continue;
        if (k + DSTEP < n) {
            int64_t low = (int64_t)((uint64_t)v & ((UINT64_C(1) << DBITS) - 1));
            b0[k + DSTEP] += (v - low) / ((__int128)1 << DBITS); /* exact */
            c[k] += low & 0xffff;
            c[k + 1] += (low >> 16) & 0xffff;
            c[k + 2] += low >> 32;
            continue;
        }
        for (int d = 0; d < 7; d++) {
            c[k + d] += (int64_t)(uint64_t)((unsigned __int128)v & 0xffffu);
            v >>= 16; /* arithmetic: floor */
        }
        c[k + 7] += (int64_t)v;
    }
    /* the bins are zero again: clear has nothing left to do */
    A->lo = A->nk;
    A->hi = -1;
    A->adds = 0;
    int64_t carry = 0;
    for (int k = 0; k < nc - 1; k++) {
        int64_t v = c[k] + carry;
        carry = v >> 16;
        c[k] = v - carry * ((int64_t)1 << 16);
    }
    c[nc - 1] += carry;
    int neg = c[nc - 1] < 0;
    if (neg) {
        int64_t cy = 1;
        for (int k = 0; k < nc - 1; k++) {
            int64_t v = (int64_t)((~(uint64_t)c[k]) & 0xffffu) + cy;
            cy = v >> 16;
            c[k] = v & 0xffff;
        }
        c[nc - 1] = -c[nc - 1] - 1 + cy;
    }
    int a = 0, b = nc - 1;
    while (a < nc && c[a] == 0)
        a++;
    if (a == nc) {
        mpz_set_ui(z, 0);
        *e = 0;
        return;
    }
    while (c[b] == 0)
        b--;
    uint16_t wbuf[512];
    uint16_t *w = (b - a + 1) <= 512 ? wbuf : malloc((size_t)(b - a + 1) * sizeof *w);
    LRP_ASSERT(w);
    for (int k = a; k <= b; k++)
        w[k - a] = (uint16_t)c[k];
    mpz_import(z, (size_t)(b - a + 1), -1, sizeof(uint16_t), 0, 0, w);
    if (w != wbuf)
        free(w);
    if (neg)
        mpz_neg(z, z);
    *e = f->base - 160 + 16L * (lo + a);
}
