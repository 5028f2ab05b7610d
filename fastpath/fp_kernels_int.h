/* fp_kernels_int.h -- internals shared by the fastpath/ files. */
#ifndef LRP_FP_KERNELS_INT_H
#define LRP_FP_KERNELS_INT_H

#include <stddef.h>
#include <stdint.h>
#include "fp_kernels.h"

/* Convolution microkernel: for m < mr, j < tw
 *   tile[m*tw + j] = chain over k = 0..K-1 of
 *                    fma(src[koff[k] + j], wb[aoff[k] + m*lda], .)
 * from +0, or (cont != 0) continuing from the float already in tile[m*tw+j]:
 * a chain split into K-blocks with the accumulator stored and reloaded
 * between them is the same chain, bit for bit.  Every path computes exactly this chain.  tw is a multiple of
 * the path's unit tu, at most its maximum width; the weights are read in
 * place (no packed panels): forward lda = K, aoff[k] = k (row m of the
 * weight matrix); backward lda = kh*kw, aoff = co*(ci stride) + tap. */
typedef void (*fp_conv_kern_fn)(float *tile, int tw, const float *src,
                                const int32_t *koff, int K, const float *wb,
                                const int32_t *aoff, ptrdiff_t lda, int cont);
/* d[i] = s[i] + b for i < n (the bias add: one rounding, any path). */
typedef void (*fp_addrow_fn)(float *d, const float *s, float b, int n);
/* acc[j] = fma(w[j], s, acc[j]) for j < len. */
typedef void (*fp_axpy_fn)(float *acc, const float *w, float s, int len);
/* acc[j] (j < 16) = chain over i < cnt of fma(x[i], buf[i*16 + j], .),
 * continuing from the incoming acc. */
typedef void (*fp_dot16_fn)(float *acc, const float *buf, const float *x, int cnt);

/* buf[i*16 + jj] = W[jj*ld + i] for i < cnt, jj < 16 (rows jj >= no: 0). */
typedef void (*fp_pack16_fn)(float *buf, const float *W, size_t ld, int no, int cnt);

typedef struct fp_isa_ops {
    lrp_fp_isa isa;
    int mr, tw; /* microkernel tile: mr output channels x tw flat pixels */
    int tu;     /* tail tiles may be any multiple of tu up to tw wide */
    /* optional kernel for m <= mr_s output channels per group: mr_s x tw_s
     * tiles (same unit tu; mr_s*tw_s <= 1024); conv_s NULL if none */
    int mr_s, tw_s;
    fp_conv_kern_fn conv_s;
    fp_conv_kern_fn conv;
    fp_addrow_fn addrow;
    fp_axpy_fn axpy;
    fp_dot16_fn dot16;
    fp_pack16_fn pack16;
} fp_isa_ops;

const fp_isa_ops *fp_ops(void);

/* Run fn(ctx, i) for i in [0, n) on up to nthreads threads (the calling
 * thread included).  Items are claimed dynamically; each item must write
 * outputs no other item writes, so the schedule cannot change any bit. */
typedef void (*fp_item_fn)(void *ctx, int64_t item);
void fp_parallel_for(int nthreads, int64_t n, fp_item_fn fn, void *ctx);
int fp_threads(int nthreads);

void *fp_alloc(size_t bytes); /* 64-byte aligned, NULL on failure/overflow */
void fp_free(void *p);
/* The cached scratch buffer (64-byte aligned); *cached tells release. */
void *fp_ws_acquire(size_t bytes, int *cached);
void fp_ws_release(void *p, int cached);

/* The attention kinds' ops (fp_attn.c): lrp_backend.softmax_fwd,
 * softmax_taylor, rowsum, bmm on float arrays. */
struct lrp_bmm;
void lrp_fp_softmax_fwd(int nthreads, float *out, const float *x, const uint8_t *mask,
                        int64_t mrows, int64_t rows, int64_t cols);
void lrp_fp_softmax_taylor(int nthreads, float *rin, float *absb, float *absm, const float *x,
                           const float *xr, const float *s, const float *R, const uint8_t *mask,
                           int64_t mrows, int64_t rows, int64_t cols);
void lrp_fp_rowsum(float *out, const float *a, int64_t rows, int64_t cols);
void lrp_fp_bmm(int nthreads, float *out, const float *a, const float *b, const struct lrp_bmm *G);

#endif
