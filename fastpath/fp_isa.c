/* fp_isa.c -- runtime ISA dispatch, the per-ISA microkernels, threads.
 *
 * Each microkernel computes, for every output it owns, one sequential chain
 * of fused multiply-adds over k = 0..K-1 starting from -0 (-0 + x == x for
 * every x, +0 included, so the chain's value is that of its first term and
 * an exact zero result is -0 only if every product was -0, the IEEE sign of
 * the sum; starting from +0 made such a sum +0): the SIMD paths use
 * the FMA intrinsic lane-wise (each lane is a different output, never a part
 * of one sum), the portable path calls fmaf().  Both round once per step, so
 * all paths give the same bits.  The project is built without -march, so the
 * SIMD functions carry target attributes and are only called after
 * __builtin_cpu_supports() said yes.
 */
#define _GNU_SOURCE 1 /* madvise, sched_getcpu, pthread_attr_setaffinity_np */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <sys/mman.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

#include "fp_kernels_int.h"

/* ---- portable ---------------------------------------------------------- */

#define P_MR 4
#define P_TW 16

static void conv_portable(float *tile, int tw, const float *src, const int32_t *koff,
                          int K, const float *wb, const int32_t *aoff, ptrdiff_t lda,
                          int cont)
{
    float acc[P_MR][P_TW];
    for (int m = 0; m < P_MR; m++) /* -0: see the top of the file */
        for (int j = 0; j < P_TW; j++)
            acc[m][j] = -0.0f;
    if (cont)
        for (int m = 0; m < P_MR; m++)
            memcpy(acc[m], tile + (size_t)m * tw, sizeof(float) * tw);
    for (int k = 0; k < K; k++) {
        const float *s = src + koff[k];
        const float *a = wb + aoff[k];
        for (int m = 0; m < P_MR; m++) {
            float am = a[m * lda];
            for (int j = 0; j < tw; j++)
                acc[m][j] = fmaf(s[j], am, acc[m][j]);
        }
    }
    for (int m = 0; m < P_MR; m++)
        memcpy(tile + (size_t)m * tw, acc[m], sizeof(float) * tw);
}

static void addrow_portable(float *d, const float *s, float b, int n)
{
    for (int i = 0; i < n; i++)
        d[i] = s[i] + b;
}

static void axpy_portable(float *acc, const float *w, float s, int len)
{
    for (int j = 0; j < len; j++)
        acc[j] = fmaf(w[j], s, acc[j]);
}

static void dot16_portable(float *acc, const float *buf, const float *x, int cnt)
{
    for (int i = 0; i < cnt; i++)
        for (int j = 0; j < 16; j++)
            acc[j] = fmaf(x[i], buf[(size_t)i * 16 + j], acc[j]);
}

/* buf[i*16 + jj] = W[jj*ld + i] (rows jj >= no: zero), i < cnt.  Pure data
 * movement: any implementation gives the same bits. */
static void pack16_portable(float *buf, const float *W, size_t ld, int no, int cnt)
{
    for (int jj = 0; jj < 16; jj++) {
        if (jj < no) {
            const float *wr = W + (size_t)jj * ld;
            for (int i = 0; i < cnt; i++)
                buf[i * 16 + jj] = wr[i];
        } else {
            for (int i = 0; i < cnt; i++)
                buf[i * 16 + jj] = 0.0f;
        }
    }
}

/* ---- AVX2 + FMA3: 4 channels x 24 pixels (12 ymm accumulators) --------- */

#define A2_MR 4
#define A2_TW 24

/* NV = 3, 2, 1 vectors of 8 pixels (tail tiles use the narrower ones) */
#define A2_KERNEL(NAME, NV)                                                  \
__attribute__((target("avx2,fma")))                                          \
static void NAME(float *tile, const float *src, const int32_t *koff, int K,  \
                 const float *wb, const int32_t *aoff, ptrdiff_t lda,        \
                 int cont)                                                   \
{                                                                            \
    __m256 c[A2_MR][NV];                                                     \
    for (int m = 0; m < A2_MR; m++)                                          \
        for (int v = 0; v < NV; v++)                                         \
            c[m][v] = cont ? _mm256_loadu_ps(tile + m * (8 * NV) + 8 * v)    \
                           : _mm256_set1_ps(-0.0f);                          \
    for (int k = 0; k < K; k++) {                                            \
        const float *s = src + koff[k];                                      \
        const float *a = wb + aoff[k];                                       \
        __m256 b[NV];                                                        \
        for (int v = 0; v < NV; v++)                                         \
            b[v] = _mm256_loadu_ps(s + 8 * v);                               \
        for (int m = 0; m < A2_MR; m++) {                                    \
            __m256 w = _mm256_broadcast_ss(a + m * lda);                     \
            for (int v = 0; v < NV; v++)                                     \
                c[m][v] = _mm256_fmadd_ps(b[v], w, c[m][v]);                 \
        }                                                                    \
    }                                                                        \
    for (int m = 0; m < A2_MR; m++)                                          \
        for (int v = 0; v < NV; v++)                                         \
            _mm256_storeu_ps(tile + m * (8 * NV) + 8 * v, c[m][v]);          \
}
A2_KERNEL(conv_avx2_3, 3)
A2_KERNEL(conv_avx2_2, 2)
A2_KERNEL(conv_avx2_1, 1)

static void conv_avx2(float *tile, int tw, const float *src, const int32_t *koff,
                      int K, const float *wb, const int32_t *aoff, ptrdiff_t lda,
                      int cont)
{
    if (tw > 16)
        conv_avx2_3(tile, src, koff, K, wb, aoff, lda, cont);
    else if (tw > 8)
        conv_avx2_2(tile, src, koff, K, wb, aoff, lda, cont);
    else
        conv_avx2_1(tile, src, koff, K, wb, aoff, lda, cont);
}

__attribute__((target("avx2,fma")))
static void addrow_avx2(float *d, const float *s, float b, int n)
{
    __m256 vb = _mm256_set1_ps(b);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_add_ps(_mm256_loadu_ps(s + i), vb));
    for (; i < n; i++)
        d[i] = s[i] + b;
}

__attribute__((target("avx2,fma")))
static void axpy_avx2(float *acc, const float *w, float s, int len)
{
    __m256 vs = _mm256_set1_ps(s);
    int j = 0;
    for (; j + 8 <= len; j += 8)
        _mm256_storeu_ps(acc + j, _mm256_fmadd_ps(_mm256_loadu_ps(w + j), vs,
                                                  _mm256_loadu_ps(acc + j)));
    for (; j < len; j++)
        acc[j] = fmaf(w[j], s, acc[j]);
}

__attribute__((target("avx2,fma")))
static void dot16_avx2(float *acc, const float *buf, const float *x, int cnt)
{
    __m256 a0 = _mm256_loadu_ps(acc), a1 = _mm256_loadu_ps(acc + 8);
    for (int i = 0; i < cnt; i++) {
        __m256 xi = _mm256_broadcast_ss(x + i);
        a0 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(buf + (size_t)i * 16), a0);
        a1 = _mm256_fmadd_ps(xi, _mm256_loadu_ps(buf + (size_t)i * 16 + 8), a1);
    }
    _mm256_storeu_ps(acc, a0);
    _mm256_storeu_ps(acc + 8, a1);
}

/* ---- AVX-512F: 8 channels x 48 pixels (24 zmm accumulators) ------------ */

#ifndef PF_DIST
#define PF_DIST 18 /* k steps ahead: the next channel's rows (measured ~5%) */
#endif
#define A5_MR 8
#define A5_TW 48


#define A5_ROW3(m)                                                    \
    w = _mm512_set1_ps(a[(m) * lda]);                                 \
    c##m##0 = _mm512_fmadd_ps(b0, w, c##m##0);                        \
    c##m##1 = _mm512_fmadd_ps(b1, w, c##m##1);                        \
    c##m##2 = _mm512_fmadd_ps(b2, w, c##m##2);
#define A5_STORE3(m)                                                  \
    _mm512_storeu_ps(tile + (m) * 48 + 0, c##m##0);                   \
    _mm512_storeu_ps(tile + (m) * 48 + 16, c##m##1);                  \
    _mm512_storeu_ps(tile + (m) * 48 + 32, c##m##2);
#define A5_ROW2(m)                                                    \
    w = _mm512_set1_ps(a[(m) * lda]);                                 \
    c##m##0 = _mm512_fmadd_ps(b0, w, c##m##0);                        \
    c##m##1 = _mm512_fmadd_ps(b1, w, c##m##1);
#define A5_STORE2(m)                                                  \
    _mm512_storeu_ps(tile + (m) * 32 + 0, c##m##0);                   \
    _mm512_storeu_ps(tile + (m) * 32 + 16, c##m##1);
#define A5_ROW1(m)                                                    \
    w = _mm512_set1_ps(a[(m) * lda]);                                 \
    c##m##0 = _mm512_fmadd_ps(b0, w, c##m##0);
#define A5_STORE1(m) _mm512_storeu_ps(tile + (m) * 16, c##m##0);

#define A5_PREFETCH(NL)                                               \
    if (PF_DIST > 0 && k + PF_DIST < K) {                             \
        const char *pf = (const char *)(src + koff[k + PF_DIST]);     \
        for (int l = 0; l < (NL); l++)                                \
            _mm_prefetch(pf + 64 * l, _MM_HINT_T0);                   \
        _mm_prefetch(pf + 64 * (NL) - 1, _MM_HINT_T0);                \
    }

/* 48 pixels: 24 accumulators */
__attribute__((target("avx512f")))
static void conv_avx512_3(float *tile, const float *src, const int32_t *koff,
                          int K, const float *wb, const int32_t *aoff, ptrdiff_t lda,
                          int cont)
{
    __m512 c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32, c40, c41, c42, c50, c51, c52, c60, c61, c62, c70, c71, c72;
    if (cont) {
        c00 = _mm512_loadu_ps(tile + 0);
        c01 = _mm512_loadu_ps(tile + 16);
        c02 = _mm512_loadu_ps(tile + 32);
        c10 = _mm512_loadu_ps(tile + 48);
        c11 = _mm512_loadu_ps(tile + 64);
        c12 = _mm512_loadu_ps(tile + 80);
        c20 = _mm512_loadu_ps(tile + 96);
        c21 = _mm512_loadu_ps(tile + 112);
        c22 = _mm512_loadu_ps(tile + 128);
        c30 = _mm512_loadu_ps(tile + 144);
        c31 = _mm512_loadu_ps(tile + 160);
        c32 = _mm512_loadu_ps(tile + 176);
        c40 = _mm512_loadu_ps(tile + 192);
        c41 = _mm512_loadu_ps(tile + 208);
        c42 = _mm512_loadu_ps(tile + 224);
        c50 = _mm512_loadu_ps(tile + 240);
        c51 = _mm512_loadu_ps(tile + 256);
        c52 = _mm512_loadu_ps(tile + 272);
        c60 = _mm512_loadu_ps(tile + 288);
        c61 = _mm512_loadu_ps(tile + 304);
        c62 = _mm512_loadu_ps(tile + 320);
        c70 = _mm512_loadu_ps(tile + 336);
        c71 = _mm512_loadu_ps(tile + 352);
        c72 = _mm512_loadu_ps(tile + 368);
    } else {
        c00 = _mm512_set1_ps(-0.0f);
        c01 = c00;
        c02 = c00;
        c10 = c00;
        c11 = c00;
        c12 = c00;
        c20 = c00;
        c21 = c00;
        c22 = c00;
        c30 = c00;
        c31 = c00;
        c32 = c00;
        c40 = c00;
        c41 = c00;
        c42 = c00;
        c50 = c00;
        c51 = c00;
        c52 = c00;
        c60 = c00;
        c61 = c00;
        c62 = c00;
        c70 = c00;
        c71 = c00;
        c72 = c00;
    }
    for (int k = 0; k < K; k++) {
        const float *s = src + koff[k];
        const float *a = wb + aoff[k];
        A5_PREFETCH(3)
        __m512 b0 = _mm512_loadu_ps(s), b1 = _mm512_loadu_ps(s + 16),
               b2 = _mm512_loadu_ps(s + 32);
        __m512 w;
        A5_ROW3(0) A5_ROW3(1) A5_ROW3(2) A5_ROW3(3)
        A5_ROW3(4) A5_ROW3(5) A5_ROW3(6) A5_ROW3(7)
    }
    A5_STORE3(0) A5_STORE3(1) A5_STORE3(2) A5_STORE3(3)
    A5_STORE3(4) A5_STORE3(5) A5_STORE3(6) A5_STORE3(7)
}

/* 32 pixels (tail tiles) */
__attribute__((target("avx512f")))
static void conv_avx512_2(float *tile, const float *src, const int32_t *koff,
                          int K, const float *wb, const int32_t *aoff, ptrdiff_t lda,
                          int cont)
{
    __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
    if (cont) {
        c00 = _mm512_loadu_ps(tile + 0);
        c01 = _mm512_loadu_ps(tile + 16);
        c10 = _mm512_loadu_ps(tile + 32);
        c11 = _mm512_loadu_ps(tile + 48);
        c20 = _mm512_loadu_ps(tile + 64);
        c21 = _mm512_loadu_ps(tile + 80);
        c30 = _mm512_loadu_ps(tile + 96);
        c31 = _mm512_loadu_ps(tile + 112);
        c40 = _mm512_loadu_ps(tile + 128);
        c41 = _mm512_loadu_ps(tile + 144);
        c50 = _mm512_loadu_ps(tile + 160);
        c51 = _mm512_loadu_ps(tile + 176);
        c60 = _mm512_loadu_ps(tile + 192);
        c61 = _mm512_loadu_ps(tile + 208);
        c70 = _mm512_loadu_ps(tile + 224);
        c71 = _mm512_loadu_ps(tile + 240);
    } else {
        c00 = _mm512_set1_ps(-0.0f);
        c01 = c00;
        c10 = c00;
        c11 = c00;
        c20 = c00;
        c21 = c00;
        c30 = c00;
        c31 = c00;
        c40 = c00;
        c41 = c00;
        c50 = c00;
        c51 = c00;
        c60 = c00;
        c61 = c00;
        c70 = c00;
        c71 = c00;
    }
    for (int k = 0; k < K; k++) {
        const float *s = src + koff[k];
        const float *a = wb + aoff[k];
        A5_PREFETCH(2)
        __m512 b0 = _mm512_loadu_ps(s), b1 = _mm512_loadu_ps(s + 16);
        __m512 w;
        A5_ROW2(0) A5_ROW2(1) A5_ROW2(2) A5_ROW2(3)
        A5_ROW2(4) A5_ROW2(5) A5_ROW2(6) A5_ROW2(7)
    }
    A5_STORE2(0) A5_STORE2(1) A5_STORE2(2) A5_STORE2(3)
    A5_STORE2(4) A5_STORE2(5) A5_STORE2(6) A5_STORE2(7)
}

/* 16 pixels (tail tiles) */
__attribute__((target("avx512f")))
static void conv_avx512_1(float *tile, const float *src, const int32_t *koff,
                          int K, const float *wb, const int32_t *aoff, ptrdiff_t lda,
                          int cont)
{
    __m512 c00, c10, c20, c30, c40, c50, c60, c70;
    if (cont) {
        c00 = _mm512_loadu_ps(tile + 0);
        c10 = _mm512_loadu_ps(tile + 16);
        c20 = _mm512_loadu_ps(tile + 32);
        c30 = _mm512_loadu_ps(tile + 48);
        c40 = _mm512_loadu_ps(tile + 64);
        c50 = _mm512_loadu_ps(tile + 80);
        c60 = _mm512_loadu_ps(tile + 96);
        c70 = _mm512_loadu_ps(tile + 112);
    } else {
        c00 = _mm512_set1_ps(-0.0f);
        c10 = c00;
        c20 = c00;
        c30 = c00;
        c40 = c00;
        c50 = c00;
        c60 = c00;
        c70 = c00;
    }
    for (int k = 0; k < K; k++) {
        const float *s = src + koff[k];
        const float *a = wb + aoff[k];
        A5_PREFETCH(1)
        __m512 b0 = _mm512_loadu_ps(s);
        __m512 w;
        A5_ROW1(0) A5_ROW1(1) A5_ROW1(2) A5_ROW1(3)
        A5_ROW1(4) A5_ROW1(5) A5_ROW1(6) A5_ROW1(7)
    }
    A5_STORE1(0) A5_STORE1(1) A5_STORE1(2) A5_STORE1(3)
    A5_STORE1(4) A5_STORE1(5) A5_STORE1(6) A5_STORE1(7)
}

/* Few output channels (the 3 RGB planes of a first layer's backward-data,
 * m <= 3 per group): 3 channels x up to 128 pixels (24 accumulators), where
 * the 8-channel tile would compute 5/8 padding lanes. */
#define A5S_MR 3
#define A5S_TW 128
#define A5S_KERNEL(NAME, NV)                                                 \
__attribute__((target("avx512f")))                                          \
static void NAME(float *tile, const float *src, const int32_t *koff, int K,  \
                 const float *wb, const int32_t *aoff, ptrdiff_t lda,        \
                 int cont)                                                   \
{                                                                            \
    __m512 c[A5S_MR][NV];                                                    \
    _Pragma("GCC unroll 8")                                                  \
    for (int v = 0; v < NV; v++) {                                           \
        c[0][v] = cont ? _mm512_loadu_ps(tile + 0 * 16 * NV + 16 * v)        \
                       : _mm512_set1_ps(-0.0f);                              \
        c[1][v] = cont ? _mm512_loadu_ps(tile + 1 * 16 * NV + 16 * v)        \
                       : _mm512_set1_ps(-0.0f);                              \
        c[2][v] = cont ? _mm512_loadu_ps(tile + 2 * 16 * NV + 16 * v)        \
                       : _mm512_set1_ps(-0.0f);                              \
    }                                                                        \
    for (int k = 0; k < K; k++) {                                            \
        const float *s = src + koff[k];                                      \
        const float *a = wb + aoff[k];                                       \
        __m512 w0 = _mm512_set1_ps(a[0]), w1 = _mm512_set1_ps(a[lda]),       \
               w2 = _mm512_set1_ps(a[2 * lda]);                              \
        _Pragma("GCC unroll 8")                                              \
        for (int v = 0; v < NV; v++) {                                       \
            __m512 b = _mm512_loadu_ps(s + 16 * v);                          \
            c[0][v] = _mm512_fmadd_ps(b, w0, c[0][v]);                       \
            c[1][v] = _mm512_fmadd_ps(b, w1, c[1][v]);                       \
            c[2][v] = _mm512_fmadd_ps(b, w2, c[2][v]);                       \
        }                                                                    \
    }                                                                        \
    _Pragma("GCC unroll 8")                                                  \
    for (int v = 0; v < NV; v++) {                                           \
        _mm512_storeu_ps(tile + 0 * 16 * NV + 16 * v, c[0][v]);              \
        _mm512_storeu_ps(tile + 1 * 16 * NV + 16 * v, c[1][v]);              \
        _mm512_storeu_ps(tile + 2 * 16 * NV + 16 * v, c[2][v]);              \
    }                                                                        \
}
A5S_KERNEL(conv3_avx512_1, 1)
A5S_KERNEL(conv3_avx512_2, 2)
A5S_KERNEL(conv3_avx512_3, 3)
A5S_KERNEL(conv3_avx512_4, 4)
A5S_KERNEL(conv3_avx512_5, 5)
A5S_KERNEL(conv3_avx512_6, 6)
A5S_KERNEL(conv3_avx512_7, 7)
A5S_KERNEL(conv3_avx512_8, 8)

static void conv3_avx512(float *tile, int tw, const float *src, const int32_t *koff,
                         int K, const float *wb, const int32_t *aoff, ptrdiff_t lda,
                         int cont)
{
    static void (*const f[8])(float *, const float *, const int32_t *, int,
                              const float *, const int32_t *, ptrdiff_t, int) = {
        conv3_avx512_1, conv3_avx512_2, conv3_avx512_3, conv3_avx512_4,
        conv3_avx512_5, conv3_avx512_6, conv3_avx512_7, conv3_avx512_8};
    f[(tw + 15) / 16 - 1](tile, src, koff, K, wb, aoff, lda, cont);
}

static void conv_avx512(float *tile, int tw, const float *src, const int32_t *koff,
                        int K, const float *wb, const int32_t *aoff, ptrdiff_t lda,
                        int cont)
{
    if (tw > 32)
        conv_avx512_3(tile, src, koff, K, wb, aoff, lda, cont);
    else if (tw > 16)
        conv_avx512_2(tile, src, koff, K, wb, aoff, lda, cont);
    else
        conv_avx512_1(tile, src, koff, K, wb, aoff, lda, cont);
}

/* d = s + b, one rounding per element as in C: same bits on every path */
__attribute__((target("avx512f")))
static void addrow_avx512(float *d, const float *s, float b, int n)
{
    __m512 vb = _mm512_set1_ps(b);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(d + i, _mm512_add_ps(_mm512_loadu_ps(s + i), vb));
    if (i < n) {
        __mmask16 msk = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(d + i, msk, _mm512_add_ps(_mm512_maskz_loadu_ps(msk, s + i), vb));
    }
}

__attribute__((target("avx512f")))
static void axpy_avx512(float *acc, const float *w, float s, int len)
{
    __m512 vs = _mm512_set1_ps(s);
    int j = 0;
    for (; j + 16 <= len; j += 16)
        _mm512_storeu_ps(acc + j, _mm512_fmadd_ps(_mm512_loadu_ps(w + j), vs,
                                                  _mm512_loadu_ps(acc + j)));
    if (j < len) {
        __mmask16 msk = (__mmask16)((1u << (len - j)) - 1u);
        __m512 r = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(msk, w + j), vs,
                                   _mm512_maskz_loadu_ps(msk, acc + j));
        _mm512_mask_storeu_ps(acc + j, msk, r);
    }
}

__attribute__((target("avx512f")))
static void dot16_avx512(float *acc, const float *buf, const float *x, int cnt)
{
    /* One chain per lane, sequential over i (two interleaved chains would
     * change the documented order). */
    __m512 a0 = _mm512_loadu_ps(acc);
    for (int i = 0; i < cnt; i++)
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[i]),
                             _mm512_loadu_ps(buf + (size_t)i * 16), a0);
    _mm512_storeu_ps(acc, a0);
}

/* 16x16 transposes in registers: four block-swap stages (b = 8, 4, 2, 1)
 * exchange element (i, j) with (i+b, j-b) for rows i without bit b and
 * columns j with it; after all four every (i, j) sits at (j, i). */
__attribute__((target("avx512f")))
static void pack16_avx512(float *buf, const float *W, size_t ld, int no, int cnt)
{
    __m512i ia[4], ib[4];
    for (int s = 0; s < 4; s++) {
        int b = 8 >> s;
        int32_t xa[16], xb[16];
        for (int j = 0; j < 16; j++) {
            xa[j] = (j & b) ? 16 + (j - b) : j;
            xb[j] = (j & b) ? 16 + j : j + b;
        }
        ia[s] = _mm512_loadu_si512(xa);
        ib[s] = _mm512_loadu_si512(xb);
    }
    int i0 = 0;
    for (; i0 + 16 <= cnt; i0 += 16) {
        __m512 r[16];
        for (int jj = 0; jj < 16; jj++)
            r[jj] = jj < no ? _mm512_loadu_ps(W + (size_t)jj * ld + i0) : _mm512_setzero_ps();
        for (int s = 0; s < 4; s++) {
            int b = 8 >> s;
            for (int i = 0; i < 16; i++) {
                if (i & b)
                    continue;
                __m512 lo = _mm512_permutex2var_ps(r[i], ia[s], r[i + b]);
                __m512 hi = _mm512_permutex2var_ps(r[i], ib[s], r[i + b]);
                r[i] = lo;
                r[i + b] = hi;
            }
        }
        for (int i = 0; i < 16; i++)
            _mm512_storeu_ps(buf + (size_t)(i0 + i) * 16, r[i]);
    }
    if (i0 < cnt)
        pack16_portable(buf + (size_t)i0 * 16, W + i0, ld, no, cnt - i0);
}

/* ---- dispatch ---------------------------------------------------------- */

/* isa, mr, tw, tu, mr_s, tw_s, conv_s, conv, addrow, axpy, dot16, pack16 */
static const fp_isa_ops ops_table[LRP_FP_ISA_COUNT] = {
    {LRP_FP_ISA_PORTABLE, P_MR, P_TW, 16, 0, 0, NULL, conv_portable, addrow_portable,
     axpy_portable, dot16_portable, pack16_portable},
    {LRP_FP_ISA_AVX2, A2_MR, A2_TW, 8, 0, 0, NULL, conv_avx2, addrow_avx2, axpy_avx2,
     dot16_avx2, pack16_portable},
    {LRP_FP_ISA_AVX512, A5_MR, A5_TW, 16, A5S_MR, A5S_TW, conv3_avx512, conv_avx512,
     addrow_avx512, axpy_avx512, dot16_avx512, pack16_avx512},
};

static _Atomic int active_isa = -1;

int lrp_fp_isa_supported(lrp_fp_isa isa)
{
    __builtin_cpu_init();
    switch (isa) {
    case LRP_FP_ISA_PORTABLE: return 1;
    case LRP_FP_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case LRP_FP_ISA_AVX512: return __builtin_cpu_supports("avx512f");
    default: return 0;
    }
}

const char *lrp_fp_isa_name(lrp_fp_isa isa)
{
    switch (isa) {
    case LRP_FP_ISA_PORTABLE: return "portable";
    case LRP_FP_ISA_AVX2: return "avx2";
    case LRP_FP_ISA_AVX512: return "avx512";
    default: return "?";
    }
}

int lrp_fp_set_isa(lrp_fp_isa isa)
{
    if ((int)isa < 0 || isa >= LRP_FP_ISA_COUNT || !lrp_fp_isa_supported(isa))
        return -1;
    atomic_store(&active_isa, (int)isa);
    return 0;
}

lrp_fp_isa lrp_fp_get_isa(void)
{
    int cur = atomic_load(&active_isa);
    if (cur >= 0)
        return (lrp_fp_isa)cur;
    int best = LRP_FP_ISA_PORTABLE;
    for (int i = LRP_FP_ISA_COUNT - 1; i > 0; i--)
        if (lrp_fp_isa_supported((lrp_fp_isa)i)) {
            best = i;
            break;
        }
    const char *env = getenv("LRP_FP_ISA");
    if (env && *env) {
        for (int i = 0; i < LRP_FP_ISA_COUNT; i++)
            if (strcmp(env, lrp_fp_isa_name((lrp_fp_isa)i)) == 0 &&
                lrp_fp_isa_supported((lrp_fp_isa)i))
                best = i;
    }
    int expect = -1;
    atomic_compare_exchange_strong(&active_isa, &expect, best);
    return (lrp_fp_isa)atomic_load(&active_isa);
}

const fp_isa_ops *fp_ops(void)
{
    return &ops_table[lrp_fp_get_isa()];
}

/* ---- threads ----------------------------------------------------------- */

int lrp_fp_default_threads(void)
{
    const char *env = getenv("LRP_THREADS");
    if (env && *env) {
        long v = strtol(env, NULL, 10);
        if (v >= 1)
            return v > 64 ? 64 : (int)v;
    }
    return 2;
}

int fp_threads(int nthreads)
{
    if (nthreads <= 0)
        nthreads = lrp_fp_default_threads();
    return nthreads > 64 ? 64 : nthreads;
}

typedef struct {
    fp_item_fn fn;
    void *ctx;
    int64_t n;
    _Atomic int64_t next;
} pf_state;

static void *pf_worker(void *arg)
{
    pf_state *st = arg;
    for (;;) {
        int64_t i = atomic_fetch_add(&st->next, 1);
        if (i >= st->n)
            break;
        st->fn(st->ctx, i);
    }
    return NULL;
}

/* Fallback when the pool is busy (a concurrent or nested call) or cannot
 * start: threads created for this call only. */
static void pf_spawn(int nthreads, int64_t n, fp_item_fn fn, void *ctx)
{
    pf_state st = {fn, ctx, n, 0};
    pthread_t tid[64];
    int started = 0;
    for (int t = 1; t < nthreads; t++) {
        if (pthread_create(&tid[started], NULL, pf_worker, &st) != 0)
            break; /* fewer threads: same results, only slower */
        started++;
    }
    pf_worker(&st);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
}

/* ---- persistent worker pool ----
 * Creating threads per call cost 25-300 us on this (virtualised) machine,
 * and waking a sleeping vCPU about as much, against 0.3-2 ms for a whole
 * ResNet conv layer, which makes two parallel phases per call (source copy,
 * compute) slower on 2 threads than on 1 (measured).  So the workers live
 * across calls and spin for a short while (POOL_SPIN_NS) after a job before
 * sleeping on a condition variable: back-to-back calls find them awake.
 * Work is still claimed item by item from a shared counter and every item
 * writes its own outputs, so the pool changes no bit.  A child after fork()
 * starts with an empty pool (pthread_atfork). */
#define POOL_MAX 63
#define POOL_SPIN_NS 400000L

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy;
    int quit;
    int nworkers;
    _Atomic uint64_t gen; /* job generation, bumped under mu */
    /* the current job (written under mu before gen is bumped) */
    pf_state *st;
    int want;             /* workers 0..want-1 take part */
    _Atomic int active;   /* participants not yet done */
    uint64_t gen0[POOL_MAX];
    pthread_t tid[POOL_MAX];
    int excl[POOL_MAX];   /* CPU the worker is kept off, -1 none */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL, 0, 0, {0}, {0}, {0}};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_atfork_child(void)
{
    /* only the forking thread exists in the child */
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.cv, NULL);
    pool.busy = 0;
    pool.quit = 0;
    pool.nworkers = 0;
    atomic_store(&pool.active, 0);
}

/* At exit the workers are told to quit and joined, so that nothing of them
 * is left behind (valgrind counted the live workers' thread-local blocks
 * as "possibly lost"). */
static void pool_shutdown(void)
{
    pthread_mutex_lock(&pool.mu);
    if (pool.busy || pool.nworkers == 0) {
        pthread_mutex_unlock(&pool.mu);
        return;
    }
    pool.quit = 1;
    atomic_fetch_add(&pool.gen, 1);
    pthread_cond_broadcast(&pool.cv);
    int nw = pool.nworkers;
    pool.nworkers = 0;
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < nw; i++)
        pthread_join(pool.tid[i], NULL);
    pthread_mutex_lock(&pool.mu);
    pool.quit = 0;
    pthread_mutex_unlock(&pool.mu);
}

static void pool_init_once(void)
{
    pthread_atfork(NULL, NULL, pool_atfork_child);
    atexit(pool_shutdown);
}

static long ns_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)(t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

/* Keep the workers off the CPU the caller runs on when there is another:
 * this guest's scheduler packs threads onto one vCPU (sched_vcpu_pack) and
 * a worker woken next to the caller just takes turns with it (measured:
 * no speed-up at all on 0.5-2 ms layers).  Checked at every job (the caller
 * may have moved); only a placement hint, results do not depend on it. */
static void pool_place(int want)
{
    int me = sched_getcpu();
    if (me < 0)
        return;
    for (int i = 0; i < want; i++) {
        if (pool.excl[i] == me)
            continue;
        cpu_set_t cs;
        if (sched_getaffinity(0, sizeof cs, &cs) != 0 || CPU_COUNT(&cs) < 2 ||
            !CPU_ISSET(me, &cs))
            return;
        CPU_CLR(me, &cs);
        pthread_setaffinity_np(pool.tid[i], sizeof cs, &cs);
        pool.excl[i] = me;
    }
}

static void *pool_worker(void *arg)
{
    int idx = (int)(intptr_t)arg;
    /* the generation current when this worker was created (under mu, before
     * the job that created it was published) */
    pthread_mutex_lock(&pool.mu);
    uint64_t seen = pool.gen0[idx];
    pthread_mutex_unlock(&pool.mu);
    for (;;) {
        /* spin a little, then sleep */
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; atomic_load_explicit(&pool.gen, memory_order_relaxed) == seen; i++) {
            /* yield, not a PAUSE spin: this guest's scheduler packs threads
             * onto one vCPU (sched_vcpu_pack), where a busy spin starves
             * the caller (measured: +400 us per job) */
            sched_yield();
            if ((i & 15) == 15 && ns_since(&t0) > POOL_SPIN_NS)
                break;
        }
        pthread_mutex_lock(&pool.mu);
        while (atomic_load(&pool.gen) == seen)
            pthread_cond_wait(&pool.cv, &pool.mu);
        seen = atomic_load(&pool.gen);
        if (pool.quit) {
            pthread_mutex_unlock(&pool.mu);
            return NULL;
        }
        pf_state *st = pool.st;
        int mine = idx < pool.want;
        pthread_mutex_unlock(&pool.mu);
        if (mine) {
            pf_worker(st);
            atomic_fetch_sub(&pool.active, 1);
        }
    }
    return NULL;
}

void fp_parallel_for(int nthreads, int64_t n, fp_item_fn fn, void *ctx)
{
    nthreads = fp_threads(nthreads);
    if (n <= 0)
        return;
    if (nthreads > n)
        nthreads = (int)n;
    if (nthreads <= 1) {
        for (int64_t i = 0; i < n; i++)
            fn(ctx, i);
        return;
    }
    pthread_once(&pool_once, pool_init_once);
    pthread_mutex_lock(&pool.mu);
    if (pool.busy) {
        pthread_mutex_unlock(&pool.mu);
        pf_spawn(nthreads, n, fn, ctx);
        return;
    }
    while (pool.nworkers < nthreads - 1 && pool.nworkers < POOL_MAX) {
        pthread_t t;
        pool.gen0[pool.nworkers] = atomic_load(&pool.gen);
        int rc = pthread_create(&t, NULL, pool_worker, (void *)(intptr_t)pool.nworkers);
        if (rc != 0)
            break; /* fewer threads: same results, only slower */
        pool.tid[pool.nworkers] = t;
        pool.excl[pool.nworkers] = -1;
        pool.nworkers++;
    }
    pf_state st = {fn, ctx, n, 0};
    int want = nthreads - 1 < pool.nworkers ? nthreads - 1 : pool.nworkers;
    pool_place(want);
    pool.busy = 1;
    pool.st = &st;
    pool.want = want;
    atomic_store(&pool.active, want);
    atomic_fetch_add(&pool.gen, 1);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    pf_worker(&st);
    while (atomic_load(&pool.active) > 0)
        sched_yield(); /* see pool_worker */
    pthread_mutex_lock(&pool.mu);
    pool.busy = 0;
    pool.st = NULL;
    pthread_mutex_unlock(&pool.mu);
}

void *fp_alloc(size_t bytes)
{
    if (bytes == 0)
        bytes = 64;
    if (bytes > SIZE_MAX - 64)
        return NULL;
    bytes = (bytes + 63) & ~(size_t)63;
#if defined(MADV_HUGEPAGE) && !defined(__SANITIZE_ADDRESS__)
    /* big buffers on transparent huge pages: 4 KB page faults cost more
     * than the arithmetic on a fresh workspace (measured) */
    if (bytes >= ((size_t)4 << 20)) {
        size_t hb = (bytes + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
        void *p = aligned_alloc((size_t)2 << 20, hb);
        if (p)
            madvise(p, hb, MADV_HUGEPAGE);
        return p;
    }
#endif
    return aligned_alloc(64, bytes);
}

void fp_free(void *p)
{
    free(p);
}

/* One cached workspace, reused across calls: large fresh allocations are
 * mmap'd and every call would page-fault them in again (measured: the
 * faults cost more than the arithmetic on the big VGG layers).  A caller
 * that finds it busy (concurrent calls) gets a private allocation. */
static pthread_mutex_t ws_lock = PTHREAD_MUTEX_INITIALIZER;
static void *ws_buf;
static size_t ws_size;
static int ws_busy;

void *fp_ws_acquire(size_t bytes, int *cached)
{
    *cached = 0;
    pthread_mutex_lock(&ws_lock);
    if (!ws_busy) {
        if (ws_size < bytes) {
            fp_free(ws_buf);
            ws_buf = fp_alloc(bytes);
            ws_size = ws_buf ? bytes : 0;
        }
        if (ws_buf) {
            ws_busy = 1;
            *cached = 1;
            void *p = ws_buf;
            pthread_mutex_unlock(&ws_lock);
            return p;
        }
    }
    pthread_mutex_unlock(&ws_lock);
    return fp_alloc(bytes);
}

void fp_ws_release(void *p, int cached)
{
    if (!cached) {
        fp_free(p);
        return;
    }
    pthread_mutex_lock(&ws_lock);
    ws_busy = 0;
    pthread_mutex_unlock(&ws_lock);
}

void lrp_fp_release_workspace(void)
{
    pthread_mutex_lock(&ws_lock);
    if (!ws_busy) {
        fp_free(ws_buf);
        ws_buf = NULL;
        ws_size = 0;
    }
    pthread_mutex_unlock(&ws_lock);
}
