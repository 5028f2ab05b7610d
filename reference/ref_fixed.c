/*
 * ref_fixed.c -- the fast exact kernel of the reference: p-bit MPFR values
 * times binary32 weights, accumulated exactly in 128-bit integer bins.
 *
 * A tensor of p-bit values is rewritten once (lrp_ref_fx_build) on a grid
 * of 32-bit digits shared by the whole tensor:
 *     v = sign * sum_d dig[d] * 2^(32 (lev + d)) * 2^base,   dig[d] < 2^32,
 * (p = 128: at most 5 digits).  A binary32 weight w = m * 2^(E - 150)
 * (m < 2^24, E the biased exponent, 1 for subnormals) is rewritten as
 *     w = W * 2^(32 bw - 160),  W = m << ((E + 10) mod 32) < 2^55,
 *     bw = (E + 10) / 32 in [0, 8].
 * So dig[d] * W (< 2^87, one 64x64->128 multiply) sits exactly at
 * 32-bit position lev + d + bw: it is added to the 128-bit bin of that key.
 * 2^40 such products fit a bin, far more than any fan-in.  At the end the
 * bins are split into 32-bit cells, carries propagated, and the exact
 * integer rounded once by MPFR.  Two banks of bins (alternating by tap)
 * keep consecutive adds to the same key from waiting on each other.
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

void lrp_ref_fx_free(ref_fx *f)
{
    free(f->lev);
    free(f->cnt);
    free(f->neg);
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
    if (2 * nl + 1 > 64)
        return 0; /* p > 1984: digits buffer below; slow path */
    long base = minlsb >= 0 ? minlsb / 32 * 32 : -((-minlsb + 31) / 32) * 32;
    f->n = n;
    f->nd = 2 * nl + 1;
    f->base = base;
    if (have && (maxlsb - base) / 32 + f->nd > (1 << 14))
        return 0; /* values spread over > 2^19 bits: slow path */
    f->nlev = have ? (int)((maxlsb - base) / 32) + f->nd : f->nd;
    f->lev = calloc((size_t)n + 1, sizeof *f->lev);
    f->cnt = calloc((size_t)n + 1, 1);
    f->neg = calloc((size_t)n + 1, 1);
    f->dig = calloc((size_t)(n * f->nd + 1), sizeof *f->dig);
    if (!f->lev || !f->cnt || !f->neg || !f->dig) {
        lrp_ref_fx_free(f);
        return 0;
    }
    uint32_t tmp[64];
    for (int64_t i = 0; i < n; i++) {
        mpfr_srcptr x = v + i;
        if (!mpfr_regular_p(x))
            continue;
        int l = (int)((mpfr_get_prec(x) + 63) / 64);
        const mp_limb_t *M = mpfr_custom_get_significand(x);
        long lsb = (long)mpfr_get_exp(x) - 64L * l;
        long r = lsb - base;
        int lev = (int)(r >> 5), s = (int)(r & 31);
        /* M << s as 32-bit digits, little endian */
        int nd = 2 * l + 1;
        uint32_t carry = 0;
        for (int k = 0; k < l; k++) {
            uint64_t limb = M[k];
            uint32_t lo = (uint32_t)limb, hi = (uint32_t)(limb >> 32);
            uint64_t a = ((uint64_t)lo << s) | carry;
            tmp[2 * k] = (uint32_t)a;
            uint64_t b = ((uint64_t)hi << s) | (a >> 32);
            tmp[2 * k + 1] = (uint32_t)b;
            carry = (uint32_t)(b >> 32);
        }
        tmp[2 * l] = carry;
        int lo = 0, hi = nd - 1;
        while (lo < nd && tmp[lo] == 0)
            lo++;
        while (hi > lo && tmp[hi] == 0)
            hi--;
        f->lev[i] = lev + lo;
        f->cnt[i] = (uint8_t)(hi - lo + 1);
        f->neg[i] = mpfr_signbit(x) != 0;
        memcpy(f->dig + i * f->nd, tmp + lo, (size_t)(hi - lo + 1) * sizeof(uint32_t));
    }
    return 1;
}

ref_fxacc *lrp_ref_fxacc_new(int nkeys)
{
    ref_fxacc *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->nk = nkeys + 9; /* + bw <= 8 */
    a->bin = calloc((size_t)a->nk * BANKS, sizeof *a->bin);
    a->cell = calloc((size_t)a->nk + 8, sizeof *a->cell);
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
}

void lrp_ref_fx_weights(int64_t *wd, uint8_t *wb, const float *w32, int64_t n)
{
    for (int64_t k = 0; k < n; k++) {
        uint32_t u;
        memcpy(&u, &w32[k], sizeof u);
        unsigned E = (u >> 23) & 0xffu;
        uint64_t m = u & 0x7fffffu;
        if (E)
            m |= 1u << 23;
        else
            E = 1;
        unsigned t = E + 10;
        int64_t W = (int64_t)(m << (t & 31));
        wd[k] = (u >> 31) ? -W : W; /* +-0 gives 0 */
        wb[k] = (uint8_t)(t >> 5);
    }
}

/* The common cases (inputs as they are, signed products; weights as they
 * are or only the positive / negative ones): every array in a local the
 * compiler can keep in a register, one test for a zero input or weight, the
 * digit loop unrolled by the digit count.  Same sums as the general loop
 * below (integer adds: order does not matter). */
static inline __attribute__((always_inline)) void
dot_plain(ref_fxacc *A, const ref_fx *f, int64_t off, const int64_t *restrict ii,
          const int64_t *restrict ww, int64_t cnt, const int64_t *restrict wd,
          const uint8_t *restrict wbk, const int wsel, const uint8_t *restrict flip)
{
    const uint8_t *restrict fc = f->cnt, *restrict fn = f->neg;
    const int32_t *restrict fl = f->lev;
    const uint32_t *restrict fd = f->dig;
    const int64_t nd = f->nd;
    __int128 *const b0 = A->bin, *const b1 = A->bin + A->nk;
    int lo = A->lo, hi = A->hi;
    for (int64_t q = 0; q < cnt; q++) {
        const int64_t i = off + ii[q], k = ww[q];
        const int c = fc[i];
        int64_t W = wd[k];
        if ((c == 0) | (W == 0))
            continue;
        if (wsel) {
            /* the effective weight's sign (flip: wscale < 0 for this v) */
            const int wneg = (W < 0) ^ (flip ? flip[i] : 0);
            if ((wsel > 0) == wneg)
                continue;
        }
        const int64_t sg = -(int64_t)fn[i];
        W = (W ^ sg) - sg;
        const int key = fl[i] + wbk[k];
        __int128 *restrict bin = ((q & 1) ? b1 : b0) + key;
        const uint32_t *restrict dg = fd + i * nd;
        const __int128 Wl = W;
        switch (c) {
        default:
            for (int d = c - 1; d >= 5; d--)
                bin[d] += Wl * dg[d];
            /* fall through */
        case 5:
            bin[4] += Wl * dg[4];
            /* fall through */
        case 4:
            bin[3] += Wl * dg[3];
            /* fall through */
        case 3:
            bin[2] += Wl * dg[2];
            /* fall through */
        case 2:
            bin[1] += Wl * dg[1];
            /* fall through */
        case 1:
            bin[0] += Wl * dg[0];
        }
        lo = key < lo ? key : lo;
        hi = key + c - 1 > hi ? key + c - 1 : hi;
    }
    A->lo = lo;
    A->hi = hi;
}

void lrp_ref_fxacc_dot(ref_fxacc *A, const ref_fx *f, int64_t off, const int64_t *ii,
                       const int64_t *ww, int64_t cnt, const int64_t *wd, const uint8_t *wbk,
                       int wmod, int xsel, int absval, const uint8_t *flip)
{
    _Static_assert(BANKS == 2, "dot_plain alternates two banks");
    if (!xsel && !absval) {
        if (wmod == LRP_WM_ID)
            dot_plain(A, f, off, ii, ww, cnt, wd, wbk, 0, NULL);
        else if (wmod == LRP_WM_POS && flip)
            dot_plain(A, f, off, ii, ww, cnt, wd, wbk, 1, flip);
        else if (wmod == LRP_WM_POS)
            dot_plain(A, f, off, ii, ww, cnt, wd, wbk, 1, NULL);
        else if (wmod == LRP_WM_NEG)
            dot_plain(A, f, off, ii, ww, cnt, wd, wbk, -1, flip);
        else
            goto general;
        return;
    }
general:;
    int lo = A->lo, hi = A->hi, nd = f->nd;
    for (int64_t q = 0; q < cnt; q++) {
        int64_t i = off + ii[q];
        int c = f->cnt[i];
        int64_t W = wd[ww[q]];
        if (!c || !W)
            continue;
        if (xsel && (f->neg[i] != (xsel < 0)))
            continue;
        if (wmod != LRP_WM_ID) {
            /* sign of the effective weight (flip: wscale < 0 for this v) */
            int wneg = (W < 0) ^ (flip ? flip[i] : 0);
            if ((wmod == LRP_WM_POS) == wneg)
                continue;
        }
        int64_t sg = absval ? -(int64_t)(W < 0) : -(int64_t)f->neg[i]; /* 0 or -1 */
        W = (W ^ sg) - sg;
        int key = f->lev[i] + wbk[ww[q]];
        __int128 *bin = A->bin + (size_t)(q & (BANKS - 1)) * A->nk + key;
        const uint32_t *dg = f->dig + i * nd;
        for (int d = 0; d < c; d++)
            bin[d] += (__int128)W * dg[d];
        lo = key < lo ? key : lo;
        hi = key + c - 1 > hi ? key + c - 1 : hi;
    }
    A->lo = lo;
    A->hi = hi;
}

void lrp_ref_fxacc_get_z(mpz_ptr z, long *e, ref_fxacc *A, const ref_fx *f)
{
    if (A->lo > A->hi) {
        mpz_set_ui(z, 0);
        *e = 0;
        return;
    }
    int lo = A->lo, n = A->hi - A->lo + 1, nc = n + 5;
    int64_t *c = A->cell;
    memset(c, 0, (size_t)nc * sizeof *c);
    for (int k = 0; k < n; k++) {
        __int128 v = 0;
        for (int b = 0; b < BANKS; b++)
            v += A->bin[(size_t)b * A->nk + lo + k];
        /* three unsigned 32-bit chunks and a signed remainder */
        for (int d = 0; d < 3; d++) {
            c[k + d] += (int64_t)(uint64_t)((unsigned __int128)v & 0xffffffffu);
            v >>= 32; /* arithmetic: floor */
        }
        c[k + 3] += (int64_t)v;
    }
    int64_t carry = 0;
    for (int k = 0; k < nc - 1; k++) {
        int64_t v = c[k] + carry;
        carry = v >> 32;
        c[k] = v - carry * ((int64_t)1 << 32);
    }
    c[nc - 1] += carry;
    int neg = c[nc - 1] < 0;
    if (neg) {
        int64_t cy = 1;
        for (int k = 0; k < nc - 1; k++) {
            int64_t v = (int64_t)((~(uint64_t)c[k]) & 0xffffffffu) + cy;
            cy = v >> 32;
            c[k] = v & 0xffffffff;
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
    uint32_t wbuf[256];
    uint32_t *w = (b - a + 1) <= 256 ? wbuf : malloc((size_t)(b - a + 1) * sizeof *w);
    LRP_ASSERT(w);
    for (int k = a; k <= b; k++)
        w[k - a] = (uint32_t)c[k];
    mpz_import(z, (size_t)(b - a + 1), -1, sizeof(uint32_t), 0, 0, w);
    if (w != wbuf)
        free(w);
    if (neg)
        mpz_neg(z, z);
    *e = f->base - 160 + 32L * (lo + a);
}
