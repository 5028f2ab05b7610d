/*
 * ref_vec.c -- the digit kernel eight outputs at a time (AVX-512 IFMA).
 *
 * The scalar digit kernel (ref_fixed.c) spends about twelve cycles a tap
 * on bookkeeping: two index loads, the value's metadata and the weight,
 * a key, a sign, three 128-bit read-modify-writes of bins in memory.  Its
 * multiplies are a small part of that.  A stride-1 convolution has taps
 * that eight neighbouring outputs of a row share: output ox + l reads
 * input ix + l through the same weight, for every tap.  This kernel runs
 * those eight outputs in the eight 64-bit lanes of a zmm register, so a
 * tap costs the bookkeeping once for eight products.
 *
 * Values.  A tensor's values are rewritten on one grid shared by all of
 * them (lrp_ref_vx_build, from the scalar kernel's digits):
 *     v = sign * sum_{k < nd} D_k * 2^(52 k) * 2^(16 lev0 + base),  D_k < 2^52,
 * base being the scalar form's.  nd (at most VX_NDMAX) is chosen so that
 * at most one nonzero value in 1024 (lrp_ref_vx_oob_share) falls below
 * the grid (the grid ends at the largest value's top bit); those are "out
 * of band": their digits here are zero and the scalar kernel adds them,
 * lane by lane.  The digits are stored digit-major (D_k of neighbouring
 * values adjacent), so a lane vector is one load.
 *
 * Weights.  A binary32 weight m * 2^(E - 150) (E the biased exponent, 1
 * for subnormals) is W * 2^(Ec - 150) with Ec = 1 + 28 c, c = (E - 1) / 28
 * its class and W = m << (E - Ec) < 2^51.  A product D_k * W (< 2^103) is
 * split by the IFMA instructions into its low 52 bits, added to
 * accumulator k, and its high bits, added to accumulator k + 1 (the low
 * bits of D_{k+1} * W sit at the same position).  Accumulator j thus holds
 * bits at 52 j + 16 lev0 + Ec + 10 on the scalar kernel's bin grid (bin
 * key k is 2^(16 k + base - 160)).  The lanes are unsigned: positive and
 * negative values go to two accumulator sets by a mask, and the sign of
 * the weight is applied when the sets are emptied.
 *
 * Taps are sorted by weight class and sign, so that within a group the
 * accumulators' positions are fixed: once per layer and row (an output
 * map forward, an input channel backward: lrp_ref_vx_plan_row), or per
 * tile with a counting sort where a layer has no plan.  A tile at a row's
 * end, where the padding clips some lanes' windows, masks its lanes by
 * the tap's kernel position and loads with masked loads (which do not
 * fault on masked lanes).  An accumulator lane gets at most two adds of
 * < 2^52 a tap; a group is emptied every VX_CHUNK taps (2 * 2048 * 2^52 =
 * 2^64), each lane's accumulators into that lane's bins
 * (lrp_ref_fxacc_add_shifted), where the scalar kernel's exact carry and
 * rounding (lrp_ref_fxacc_get_z) finish the sum.
 *
 * All of it is integer arithmetic: the sum is the exact one whatever the
 * grouping, so the result is the scalar kernel's bit for bit
 * (tests/test_refvec.c compares the two, and exact products + mpfr_sum,
 * on convolutions with out-of-band values, every weight class, zeros,
 * negative weights, dilation, groups and clipped windows).
 *
 * The kernel needs AVX-512 F, BW, VL and IFMA at run time; without them
 * (or with lrp_ref_ctx.slow = 3) the scalar kernel runs alone.
 */
#include "ref_int.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VX_X86 1
#include <immintrin.h>
#define VX_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512ifma")))
#endif

/* 10 digits, 520 bits: a value of p = 128 bits keeps 392 bits of range on
 * the grid, a BN-folded quotient (lrp_ref_lin_bwd: an exact product of
 * 2p + 8 = 264 bits) 256; with 6 (until stop 39) those had 48 and most of
 * them went to the scalar kernel.  Each lane set of the groups holds
 * 2 (nd + 1) zmm accumulators: 22 of the 32 at 10. */
#define VX_NDMAX 10
#define VX_CW 28       /* binades a weight class spans */
#define VX_NG 20       /* groups: 10 classes x 2 signs */
#define VX_CHUNK 2048  /* taps between two emptyings of the accumulators */
#define VX_M52 ((UINT64_C(1) << 52) - 1)

/* at most one nonzero value in this many below the grid (tests lower it
 * to reach the scalar kernel's lane-by-lane adds on small tensors) */
int lrp_ref_vx_oob_share = 1024;

int lrp_ref_vx_available(void)
{
#ifdef VX_X86
    /* no cache: the ranks of the tests' threaded split call this at once;
     * libgcc fills the CPU model before main */
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512ifma");
#else
    return 0;
#endif
}

void lrp_ref_vx_free(ref_vx *v)
{
    if (v->dig)
        free(v->dig - LRP_REF_VX_PAD);
    if (v->flag)
        free(v->flag - LRP_REF_VX_PAD);
    memset(v, 0, sizeof *v);
}

static int bitlen64(uint64_t x)
{
    return x ? 64 - __builtin_clzll(x) : 0;
}

int lrp_ref_vx_build(ref_vx *v, const ref_fx *f)
{
    memset(v, 0, sizeof *v);
    if (!lrp_ref_vx_available() || f->cm == 0 || f->n - f->nzero <= 0)
        return 0;
    const int64_t n = f->n;
    /* the top bit of every nonzero value (from 2^base) and its lowest
     * level; the levels' histogram decides the grid */
    long top = -1;
    int minlev = -1, maxlev = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t mt = f->meta[i];
        int c = (int)(mt & 127);
        if (!c)
            continue;
        int lev = (int)(mt >> 8);
        long tb = 16L * lev + 48L * (c - 1) + bitlen64(f->dig[i * f->nd + c - 1]);
        top = tb > top ? tb : top;
        minlev = minlev < 0 || lev < minlev ? lev : minlev;
        maxlev = lev > maxlev ? lev : maxlev;
    }
    int64_t *hist = calloc((size_t)(maxlev - minlev + 2), sizeof *hist);
    if (!hist)
        return 0;
    for (int64_t i = 0; i < n; i++)
        if (f->meta[i] & 127)
            hist[(f->meta[i] >> 8) - (uint32_t)minlev]++;
    /* below[l]: values with a level under minlev + l */
    for (int l = 1; l <= maxlev - minlev + 1; l++)
        hist[l] += hist[l - 1];
    int64_t nonzero = n - f->nzero;
    int nd = 0, lev0 = 0;
    int64_t noob = 0;
    for (int d = 1; d <= VX_NDMAX && !nd; d++) {
        long need = top - 52L * d; /* 16 lev0 >= need */
        int l0 = need <= 16L * minlev ? minlev : (int)((need + 15) / 16);
        int64_t below = l0 <= minlev ? 0 : l0 > maxlev ? nonzero : hist[l0 - minlev - 1];
        if (below * lrp_ref_vx_oob_share <= nonzero) {
            nd = d;
            lev0 = l0;
            noob = below;
        }
    }
    free(hist);
    if (!nd)
        return 0; /* values spread too far: the scalar kernel alone */
    v->n = n;
    v->nd = nd;
    v->lev0 = lev0;
    /* each digit's array with LRP_REF_VX_PAD zero values on either side:
     * a tile's lanes may reach past the tensor's ends (masked out) */
    v->stride = n + 2 * LRP_REF_VX_PAD;
    v->noob = noob;
    uint64_t *dig = calloc((size_t)(nd * v->stride), sizeof *v->dig);
    uint8_t *flag = calloc((size_t)v->stride, 1);
    if (!dig || !flag) {
        free(dig);
        free(flag);
        memset(v, 0, sizeof *v);
        return 0;
    }
    v->dig = dig + LRP_REF_VX_PAD;
    v->flag = flag + LRP_REF_VX_PAD;
    for (int64_t i = 0; i < n; i++) {
        uint32_t mt = f->meta[i];
        int c = (int)(mt & 127);
        if (!c)
            continue;
        int lev = (int)(mt >> 8);
        if (lev < lev0) {
            v->flag[i] = 2; /* out of band: the scalar kernel adds it */
            continue;
        }
        /* the value's bits from 2^(16 lev0 + base), then 52-bit digits;
         * they end below 52 nd <= 520 bits */
        uint64_t buf[VX_NDMAX + 2] = {0};
        const uint64_t *dg = f->dig + i * f->nd;
        for (int d = 0; d < c; d++) {
            long bit = 16L * (lev - lev0) + 48L * d;
            int w = (int)(bit >> 6), s = (int)(bit & 63);
            buf[w] |= dg[d] << s;
            if (s > 16)
                buf[w + 1] |= dg[d] >> (64 - s);
        }
        for (int k = 0; k < nd; k++) {
            int bit = 52 * k, w = bit >> 6, s = bit & 63;
            uint64_t x = buf[w] >> s;
            if (s > 12)
                x |= buf[w + 1] << (64 - s);
            v->dig[k * v->stride + i] = x & VX_M52;
        }
        {
            /* nothing above the grid's top (the choice of lev0 ensures it) */
            int tw = (52 * nd) >> 6, ts = (52 * nd) & 63;
            uint64_t above = buf[tw] >> ts;
            for (int w = tw + 1; w < VX_NDMAX + 2; w++)
                above |= buf[w];
            LRP_ASSERT(!above);
        }
        v->flag[i] = (mt >> 7) & 1;
    }
    return 1;
}

void lrp_ref_vx_weights(uint64_t *vw, const float *w32, int64_t n)
{
    for (int64_t k = 0; k < n; k++) {
        uint64_t m;
        unsigned E, neg = lrp_ref_f32_parts(w32[k], &m, &E);
        if (!m || E == 255) {
            vw[k] = (uint64_t)0xff << 56; /* +-0 (inf / NaN never reach here) */
            continue;
        }
        unsigned c = (E - 1) / VX_CW, Ec = 1 + VX_CW * c;
        vw[k] = (m << (E - Ec)) | ((uint64_t)(2 * c + neg) << 56);
    }
}

#ifdef VX_X86
/* One group's taps (a weight class and sign): P / N get each lane's sums
 * of the positive / negative values' products, accumulator j at 52 j.
 * Tap t reads values base + gi[t] + lane through W = gw[t] (low 52 bits)
 * in the lanes of: lanes (HM 0), gm[t] (HM 1) or tab[gk[t]] (HM 2).  With
 * HM 2 the loads are masked to those lanes (AVX-512 suppresses faults in
 * the others), so a tap no lane takes touches no memory. */
static inline VX_TGT __attribute__((always_inline)) void
vx_group(uint64_t (*P)[8], uint64_t (*N)[8], const ref_vx *v, int64_t base, const int64_t *gi,
         const uint64_t *gw, const uint8_t *gm, const uint16_t *gk, const uint8_t *tab,
         __mmask8 lanes, int64_t cnt, __mmask8 selp, __mmask8 seln, const int ND, const int HM)
{
    __m512i p[VX_NDMAX + 1], q[VX_NDMAX + 1];
    for (int k = 0; k <= ND; k++) {
        p[k] = _mm512_setzero_si512();
        q[k] = _mm512_setzero_si512();
    }
    const uint64_t *dig = v->dig;
    const uint8_t *flag = v->flag;
    const int64_t st = v->stride;
    const __m128i one = _mm_set1_epi8(1);
    for (int64_t t = 0; t < cnt; t++) {
        const int64_t b = base + gi[t];
        const __m512i W = _mm512_set1_epi64((long long)(gw[t] & VX_M52));
        const __mmask8 lm = (__mmask8)(lanes & (HM == 1 ? gm[t] : HM == 2 ? tab[gk[t]] : 0xff));
        /* a tile at an edge (HM 2) may point its masked lanes anywhere:
         * masked loads; elsewhere every lane lies within the padded
         * arrays, and plain loads are faster (measured on VGG-16 224) */
        const __m128i fl = HM == 2 ? _mm_maskz_loadu_epi8(lm, flag + b)
                                   : _mm_loadl_epi64((const __m128i *)(flag + b));
        const __mmask8 kn = (__mmask8)_mm_test_epi8_mask(fl, one);
        const __mmask8 kp = (__mmask8)(~kn & selp & lm), kq = (__mmask8)(kn & seln & lm);
#pragma GCC unroll 8
        for (int k = 0; k < ND; k++) {
            const uint64_t *at = dig + k * st + b;
            const __m512i x = HM == 2 ? _mm512_maskz_loadu_epi64((__mmask8)(kp | kq), at)
                                      : _mm512_loadu_si512((const void *)at);
            p[k] = _mm512_mask_madd52lo_epu64(p[k], kp, x, W);
            p[k + 1] = _mm512_mask_madd52hi_epu64(p[k + 1], kp, x, W);
            q[k] = _mm512_mask_madd52lo_epu64(q[k], kq, x, W);
            q[k + 1] = _mm512_mask_madd52hi_epu64(q[k + 1], kq, x, W);
        }
    }
    for (int k = 0; k <= ND; k++) {
        _mm512_storeu_si512((void *)P[k], p[k]);
        _mm512_storeu_si512((void *)N[k], q[k]);
    }
}

#define VX_ND_CASES(HM)                                                                      \
    switch (v->nd) {                                                                         \
    case 1: vx_group(P, N, v, base, gi, gw, gm, gk, tab, lanes, cnt, selp, seln, 1, HM); return; \
    case 2: vx_group(P, N, v, base, gi, gw, gm, gk, tab, lanes, cnt, selp, seln, 2, HM); return; \
    case 3: vx_group(P, N, v, base, gi, gw, gm, gk, tab, lanes, cnt, selp, seln, 3, HM); return; \
    case 4: vx_group(P, N, v, base, gi, gw, gm, gk, tab, lanes, cnt, selp, seln, 4, HM); return; \
    case 5: vx_group(P, N, v, base, gi, gw, gm, gk, tab, lanes, cnt, selp, seln, 5, HM); return; \
    case 6: vx_group(P, N, v, base, gi, gw, gm, gk, tab, lanes, cnt, selp, seln, 6, HM); return; \
    case 7: vx_group(P, N, v, base, gi, gw, gm, gk, tab, lanes, cnt, selp, seln, 7, HM); return; \
    case 8: vx_group(P, N, v, base, gi, gw, gm, gk, tab, lanes, cnt, selp, seln, 8, HM); return; \
    case 9: vx_group(P, N, v, base, gi, gw, gm, gk, tab, lanes, cnt, selp, seln, 9, HM); return; \
    default: vx_group(P, N, v, base, gi, gw, gm, gk, tab, lanes, cnt, selp, seln, 10, HM); return; \
    }

static VX_TGT void vx_group_nd(uint64_t (*P)[8], uint64_t (*N)[8], const ref_vx *v, int64_t base,
                               const int64_t *gi, const uint64_t *gw, const uint8_t *gm,
                               const uint16_t *gk, const uint8_t *tab, __mmask8 lanes,
                               int64_t cnt, __mmask8 selp, __mmask8 seln)
{
    if (gm)
        VX_ND_CASES(1)
    else if (tab)
        VX_ND_CASES(2)
    else
        VX_ND_CASES(0)
}

/* The sorted taps of a tile (groups g at [start[g], start[g + 1])): the
 * groups the modifiers keep, in chunks, each emptied into the lanes' bins;
 * then the values below the grid lane by lane (gwi: the weights' indices
 * for the scalar kernel). */
static VX_TGT void vx_run(ref_fxacc *const *A, int nl, const ref_vx *v, const ref_fx *f,
                          int64_t base, const int64_t *gi, const uint64_t *gw, const uint8_t *gm,
                          const uint16_t *gk, const uint8_t *tab, const int64_t *gwi,
                          const int64_t *start, const int64_t *wd, int wmod, int xsel,
                          int absval)
{
    LRP_ASSERT(nl >= 1 && nl <= 8);
    const __mmask8 lanes = (__mmask8)((1u << nl) - 1);
    const __mmask8 selp = xsel < 0 ? 0 : 0xff, seln = xsel > 0 ? 0 : 0xff;
    uint64_t P[VX_NDMAX + 1][8], N[VX_NDMAX + 1][8];
    for (int g = 0; g < VX_NG; g++) {
        const int wneg = g & 1;
        if ((wmod == LRP_WM_POS && wneg) || (wmod == LRP_WM_NEG && !wneg))
            continue;
        const long Ec = 1 + VX_CW * (g >> 1);
        for (int64_t t0 = start[g]; t0 < start[g + 1]; t0 += VX_CHUNK) {
            int64_t m = start[g + 1] - t0 < VX_CHUNK ? start[g + 1] - t0 : VX_CHUNK;
            vx_group_nd(P, N, v, base, gi + t0, gw + t0, gm ? gm + t0 : NULL, gk ? gk + t0 : NULL,
                        tab, lanes, m, selp, seln);
            for (int l = 0; l < nl; l++)
                for (int j = 0; j <= v->nd; j++) {
                    /* |.|: every product counts positive */
                    __int128 d = absval ? (__int128)P[j][l] + (__int128)N[j][l]
                                        : (__int128)P[j][l] - (__int128)N[j][l];
                    if (!d)
                        continue;
                    lrp_ref_fxacc_add_shifted(A[l], 52L * j + 16L * v->lev0 + Ec + 10,
                                              wneg && !absval ? -d : d);
                }
        }
    }
    if (!v->noob)
        return;
    /* the values below the grid, lane by lane, by the scalar kernel (the
     * modifiers select there as everywhere) */
    for (int64_t t = 0; t < start[VX_NG]; t++) {
        const int64_t b = base + gi[t];
        const __mmask8 lm = (__mmask8)(lanes & (gm ? gm[t] : tab ? tab[gk[t]] : 0xff));
        unsigned m = (unsigned)_mm_test_epi8_mask(_mm_maskz_loadu_epi8(lm, v->flag + b),
                                                  _mm_set1_epi8(2)) &
                     lm;
        while (m) {
            int l = __builtin_ctz(m);
            m &= m - 1;
            int64_t i1 = b + l;
            lrp_ref_fxacc_dot(A[l], f, 0, &i1, gwi + t, 1, wd, wmod, xsel, absval);
        }
    }
}
#endif

int lrp_ref_vx_scratch(ref_vx_scratch *s, int64_t cap)
{
    s->gi = malloc((size_t)(cap + 1) * sizeof *s->gi);
    s->gw = malloc((size_t)(cap + 1) * sizeof *s->gw);
    s->gwi = malloc((size_t)(cap + 1) * sizeof *s->gwi);
    s->gm = malloc((size_t)(cap + 1));
    return s->gi && s->gw && s->gwi && s->gm;
}

void lrp_ref_vx_scratch_free(ref_vx_scratch *s)
{
    free(s->gi);
    free(s->gw);
    free(s->gwi);
    free(s->gm);
    memset(s, 0, sizeof *s);
}

#ifdef VX_X86
VX_TGT
#endif
void lrp_ref_vx_dot(ref_fxacc *const *A, int nl, const ref_vx *v, const ref_fx *f, int64_t off,
                    const int64_t *ii, const int64_t *ww, const uint8_t *mk, int64_t cnt,
                    const uint64_t *vw,
                    const int64_t *wd, int wmod, int xsel, int absval, ref_vx_scratch *s)
{
#ifdef VX_X86
    LRP_ASSERT(nl >= 1 && nl <= 8);
    /* counting sort of the taps by group (weight class and sign); +-0
     * weights drop out */
    int64_t at[VX_NG + 1];
    memset(at, 0, sizeof at);
    for (int64_t q = 0; q < cnt; q++) {
        unsigned g = (unsigned)(vw[ww[q]] >> 56);
        at[g == 0xff ? VX_NG : g]++;
    }
    int64_t start[VX_NG + 1], pos = 0;
    for (int g = 0; g < VX_NG; g++) {
        start[g] = pos;
        pos += at[g];
        at[g] = start[g];
    }
    start[VX_NG] = pos;
    for (int64_t q = 0; q < cnt; q++) {
        uint64_t w = vw[ww[q]];
        unsigned g = (unsigned)(w >> 56);
        if (g == 0xff)
            continue;
        int64_t k = at[g]++;
        s->gi[k] = ii[q];
        s->gw[k] = w;
        s->gwi[k] = ww[q];
        s->gm[k] = mk[q];
    }
    vx_run(A, nl, v, f, off, s->gi, s->gw, s->gm, NULL, NULL, s->gwi, start, wd, wmod, xsel,
           absval);
#else
    (void)A, (void)nl, (void)v, (void)f, (void)off, (void)ii, (void)ww, (void)mk, (void)cnt;
    (void)vw;
    (void)wd, (void)wmod, (void)xsel, (void)absval, (void)s;
    LRP_ASSERT(0 && "lrp_ref_vx_dot without AVX-512 IFMA");
#endif
}

void lrp_ref_vx_plan_free(ref_vx_plan *p)
{
    free(p->rel);
    free(p->w);
    free(p->wi);
    free(p->k);
    free(p->start);
    memset(p, 0, sizeof *p);
}

int lrp_ref_vx_plan_new(ref_vx_plan *p, int64_t nrow, int64_t ntap)
{
    memset(p, 0, sizeof *p);
    p->nrow = nrow;
    p->ntap = ntap;
    size_t n = (size_t)(nrow * ntap + 1);
    p->rel = malloc(n * sizeof *p->rel);
    p->w = malloc(n * sizeof *p->w);
    p->wi = malloc(n * sizeof *p->wi);
    p->k = malloc(n * sizeof *p->k);
    p->start = malloc((size_t)nrow * (VX_NG + 1) * sizeof *p->start);
    if (!p->rel || !p->w || !p->wi || !p->k || !p->start) {
        lrp_ref_vx_plan_free(p);
        return 0;
    }
    return 1;
}

void lrp_ref_vx_plan_row(ref_vx_plan *p, int64_t r, const int64_t *rel, const int64_t *wi,
                         const uint16_t *k, const uint64_t *vw)
{
    int64_t at[VX_NG + 1], *start = p->start + r * (VX_NG + 1);
    memset(at, 0, sizeof at);
    for (int64_t q = 0; q < p->ntap; q++) {
        unsigned g = (unsigned)(vw[wi[q]] >> 56);
        at[g == 0xff ? VX_NG : g]++;
    }
    int64_t pos = 0;
    for (int g = 0; g < VX_NG; g++) {
        start[g] = pos;
        pos += at[g];
        at[g] = start[g];
    }
    start[VX_NG] = pos;
    int64_t *prel = p->rel + r * p->ntap, *pwi = p->wi + r * p->ntap;
    uint64_t *pw = p->w + r * p->ntap;
    uint16_t *pk = p->k + r * p->ntap;
    for (int64_t q = 0; q < p->ntap; q++) {
        uint64_t w = vw[wi[q]];
        unsigned g = (unsigned)(w >> 56);
        if (g == 0xff)
            continue;
        int64_t d = at[g]++;
        prel[d] = rel[q];
        pw[d] = w;
        pwi[d] = wi[q];
        pk[d] = k[q];
    }
}

#ifdef VX_X86
VX_TGT
#endif
void lrp_ref_vx_dot_plan(ref_fxacc *const *A, int nl, const ref_vx *v, const ref_fx *f,
                         int64_t base, const ref_vx_plan *p, int64_t r, const uint8_t *tab,
                         const int64_t *wd, int wmod, int xsel, int absval)
{
#ifdef VX_X86
    vx_run(A, nl, v, f, base, p->rel + r * p->ntap, p->w + r * p->ntap, NULL,
           tab ? p->k + r * p->ntap : NULL, tab, p->wi + r * p->ntap, p->start + r * (VX_NG + 1),
           wd, wmod, xsel, absval);
#else
    (void)A, (void)nl, (void)v, (void)f, (void)base, (void)p, (void)r, (void)tab, (void)wd;
    (void)wmod;
    (void)xsel, (void)absval;
    LRP_ASSERT(0 && "lrp_ref_vx_dot_plan without AVX-512 IFMA");
#endif
}
