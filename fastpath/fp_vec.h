/* fp_vec.h -- AVX-512 forms of backend_f32.c's elementwise passes (same
 * bits as the scalar loops; call only when lrp_fp_get_isa() is AVX-512). */
#ifndef LRP_FP_VEC_H
#define LRP_FP_VEC_H

#include <stdint.h>

/* stab_div without a selection mask: s = R / stab(den), cls as in
 * core/pipeline.h (stab: an lrp_stab_id). */
void fp_vec_stab_div(float *s, uint8_t *cls, const float *R, const float *den, int stab,
                     float eps, int empty_lost, int64_t n);
/* 1 if x[0..n) holds a NaN or an infinity. */
int fp_vec_any_nonfinite(const float *x, int64_t n);

/* backend_f32.c ew_range for POS, NEG, ABS, ADD, MUL, SCALE (op: an
 * lrp_ew_op); returns 0 and does nothing for other ops. */
int fp_vec_ew(int op, float *y, const float *p, const float *q, float c1, int64_t n);
/* backend_f32.c rin_range for the input modifiers ID (0), POS (1), NEG (2). */
void fp_vec_rin(float *r, const float *x, const float *g, int mod, float c, int first,
                int64_t n);

#endif
