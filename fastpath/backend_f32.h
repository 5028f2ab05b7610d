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

#endif
