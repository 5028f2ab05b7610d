/* fp_vec.c -- AVX-512 forms of the float32 backend's elementwise passes.
 *
 * Each function computes, lane by lane, exactly the operations of the
 * scalar loop it replaces in backend_f32.c (the same IEEE operations in the
 * same order per element: one division, one addition, comparisons), so
 * the results are the same bits; test_fastpath runs the backend on every
 * dispatch path and compares.  Called only when the active ISA
 * (lrp_fp_get_isa) is AVX-512.
 */
#include "fp_vec.h"

#include <immintrin.h>

#include "pipeline.h"

#define TGT __attribute__((target("avx512f")))

TGT static __mmask16 tail_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

TGT void fp_vec_stab_div(float *s, uint8_t *cls, const float *R, const float *den, int stab,
                         float eps, int empty_lost, int64_t n)
{
    const __m512 z = _mm512_setzero_ps(), ve = _mm512_set1_ps(eps);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512i b_zero = _mm512_set1_epi32(LRP_CLS_ZERO), b_zneg = _mm512_set1_epi32(LRP_CLS_ZNEG);
    const __m512i b_apos = _mm512_set1_epi32(LRP_CLS_ADD_POS),
                  b_aneg = _mm512_set1_epi32(LRP_CLS_ADD_NEG);
    const __m512i k_nan = _mm512_set1_epi32(LRP_K_NAN), k_empty = _mm512_set1_epi32(LRP_K_EMPTY),
                  k_undef = _mm512_set1_epi32(LRP_K_UNDEF), k_skip = _mm512_set1_epi32(LRP_K_SKIP);
    const signed char *row = lrp_stab_sign_tab[stab];
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 m = tail_mask(n - j);
        __m512 d = _mm512_maskz_loadu_ps(m, den + j), r = _mm512_maskz_loadu_ps(m, R + j);
        __mmask16 zero = _mm512_cmp_ps_mask(d, z, _CMP_EQ_OQ);
        __mmask16 sgn = _mm512_test_epi32_mask(_mm512_castps_si512(d), sign);
        __mmask16 lt = _mm512_cmp_ps_mask(d, z, _CMP_LT_OQ);
        __mmask16 gt = _mm512_cmp_ps_mask(d, z, _CMP_GT_OQ);
        __mmask16 nan = _mm512_cmp_ps_mask(d, r, _CMP_UNORD_Q);
        __mmask16 dnan = _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q);
        /* s(d) = +1 on pos, -1 on neg, 0 elsewhere, R passed on skip: the
         * lanes of each class of d (lrp_zclass order) gathered by the sign
         * table's row of the convention (core/ruletab.c) */
        const __mmask16 cm[LRP_ZC_COUNT] = {lt, zero & sgn, zero & (__mmask16)~sgn, gt,
                                            dnan & sgn, dnan & (__mmask16)~sgn};
        __mmask16 pos = 0, neg = 0, skip = 0;
        for (int k = 0; k < LRP_ZC_COUNT; k++) {
            int sv = row[k];
            pos |= sv == 1 ? cm[k] : 0;
            neg |= sv == -1 ? cm[k] : 0;
            skip |= sv == LRP_S_SKIP ? cm[k] : 0;
        }
        if (eps == 0.0f)
            neg = pos = 0;
        /* st = d + s(d) eps: d + eps or d + (-eps) = d - eps */
        __m512 st = _mm512_mask_add_ps(d, pos, d, ve);
        st = _mm512_mask_sub_ps(st, neg, d, ve);
        __m512 q = _mm512_div_ps(r, st);
        __m512i c = _mm512_maskz_mov_epi32(zero, b_zero);
        c = _mm512_mask_or_epi32(c, zero & sgn, c, b_zneg);
        __m512i zc = c; /* the zero bits alone (skip_zero) */
        c = _mm512_mask_or_epi32(c, pos, c, b_apos);
        c = _mm512_mask_or_epi32(c, neg, c, b_aneg);
        __mmask16 stz = _mm512_cmp_ps_mask(st, z, _CMP_EQ_OQ);
        __mmask16 emp = empty_lost ? zero : 0;
        /* precedence: NaN, then empty, then undefined */
        c = _mm512_mask_or_epi32(c, stz & ~emp & ~nan, c, k_undef);
        c = _mm512_mask_or_epi32(c, emp & ~nan, c, k_empty);
        c = _mm512_mask_or_epi32(c, nan, c, k_nan);
        if (skip) {
            q = _mm512_mask_mov_ps(q, skip, r);
            c = _mm512_mask_or_epi32(c, skip, zc, k_skip);
        }
        _mm512_mask_storeu_ps(s + j, m, q);
        _mm512_mask_cvtepi32_storeu_epi8(cls + j, m, c);
    }
}

TGT int fp_vec_any_nonfinite(const float *x, int64_t n)
{
    const __m512i ex = _mm512_set1_epi32(0x7f800000);
    __mmask16 bad = 0;
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 m = tail_mask(n - j);
        __m512i v = _mm512_maskz_loadu_epi32(m, x + j);
        bad |= _mm512_mask_cmpeq_epi32_mask(m, _mm512_and_si512(v, ex), ex);
    }
    return bad != 0;
}

/* Elementwise ops of backend_f32.c's ew_range (op: lrp_ew_op): POS, NEG,
 * ABS, ADD, MUL, SCALE.  Returns 0 (nothing done) for other ops. */
TGT int fp_vec_ew(int op, float *y, const float *p, const float *q, float c1, int64_t n)
{
    const __m512 z = _mm512_setzero_ps(), vc = _mm512_set1_ps(c1);
    const __m512i absm = _mm512_set1_epi32(0x7fffffff);
    switch (op) {
    case LRP_EW_POS: case LRP_EW_NEG: case LRP_EW_ABS: case LRP_EW_ADD: case LRP_EW_MUL:
    case LRP_EW_SCALE: break;
    default: return 0;
    }
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 m = tail_mask(n - j);
        __m512 a = _mm512_maskz_loadu_ps(m, p + j), v;
        switch (op) {
        case LRP_EW_POS: /* x > 0 or NaN: x; else +0 */
            v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, z, _CMP_GT_OQ) |
                                        _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
            break;
        case LRP_EW_NEG:
            v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, z, _CMP_LT_OQ) |
                                        _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
            break;
        case LRP_EW_ABS:
            v = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), absm));
            break;
        case LRP_EW_ADD: v = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m, q + j)); break;
        case LRP_EW_MUL: v = _mm512_mul_ps(a, _mm512_maskz_loadu_ps(m, q + j)); break;
        default: v = _mm512_mul_ps(vc, a); break; /* SCALE: c1 * a */
        }
        _mm512_mask_storeu_ps(y + j, m, v);
    }
    return 1;
}

/* r (+)= c * (a * g), a = mod(x) with mod 0: x, 1: x > 0 ? x : +0 (NaN ->
 * +0), 2: x < 0 ? x : +0; first: r = +0 + v (backend_f32.c rin_range says why
 * this sum starts from +0). */
TGT void fp_vec_rin(float *r, const float *x, const float *g, int mod, float c, int first,
                    int64_t n)
{
    const __m512 z = _mm512_setzero_ps(), vc = _mm512_set1_ps(c);
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 m = tail_mask(n - j);
        __m512 a = _mm512_maskz_loadu_ps(m, x + j);
        if (mod == 1)
            a = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, z, _CMP_GT_OQ), a);
        else if (mod == 2)
            a = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, z, _CMP_LT_OQ), a);
        __m512 v = _mm512_mul_ps(a, _mm512_maskz_loadu_ps(m, g + j));
        if (c != 1.0f)
            v = _mm512_mul_ps(vc, v);
        __m512 base = first ? z : _mm512_maskz_loadu_ps(m, r + j);
        _mm512_mask_storeu_ps(r + j, m, _mm512_add_ps(base, v));
    }
}
