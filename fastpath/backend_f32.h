/*
 * backend_f32.h -- the float32 backend of core/pipeline.h.
 */
#ifndef LRP_BACKEND_F32_H
#define LRP_BACKEND_F32_H

#include "pipeline.h"

typedef struct lrp_f32_ctx lrp_f32_ctx;

/* nthreads <= 0: LRP_THREADS env, default 2. */
lrp_f32_ctx *lrp_f32_ctx_new(int nthreads);
void lrp_f32_ctx_free(lrp_f32_ctx *c);
/* Fills the vtable; the context must outlive every use of it. */
void lrp_f32_backend(lrp_backend *be, lrp_f32_ctx *ctx);

/* A fast hash of the bits of n 32-bit values (memory speed; not
 * cryptographic): recognises identical contents, as the engine's caches
 * and the oracle's check that ranks ran alike do. */
uint64_t lrp_f32_hash(const void *p, int64_t n);

/* The token layers' ops (fp_token.c; core/pipeline.h norm_fwd, norm_bwd,
 * act_map); the context is unused. */
void lrp_fp_norm_fwd(void *c, void *y, void *stat, const void *x, const float *w,
                     const float *b, float eps, int rms, int64_t rows, int64_t F);
void lrp_fp_norm_bwd(void *c, void *rin, void *absmean, const void *x, const void *stat,
                     const float *w, const void *s, int centre, int64_t rows, int64_t F);
void lrp_fp_act_map(void *c, void *y, const void *x, int op, int64_t n);

#endif
