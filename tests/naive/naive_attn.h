/*
 * naive_attn.h -- the attention rules of docs/TRANSFORMERS.md (4.1, 5.1,
 * 5.2, 4.2) evaluated per contribution, the way the papers write them, in
 * MPFR at 256 bits, independent of core/ and reference/ (plain float
 * arrays in, doubles out).  The stabilizer is sign0_pos: stab(z) = z +
 * (z < 0 ? -eps : +eps).
 */
#ifndef LRP_NAIVE_ATTN_H
#define LRP_NAIVE_ATTN_H

/* Self-attention on x (T, F), h heads, PyTorch's packing (Win (3F, F),
 * bin (3F), Wout (F, F), bout (F)), causal mask (key > query) with value
 * mask (-inf: excluded), also on the keys where pad (T, may be NULL) is
 * nonzero; R (T, F) at the output.  out (T, F): the
 * relevance of x under attnlrp (cp 0) or cplrp (cp 1); absb, absm: the
 * softmax bias and mask shares summed over heads and queries (attnlrp). */
void naive_mha(double *out, double *absb, double *absm, int T, int F, int h, float scale,
               int causal, float mask, const float *Win, const float *bin, const float *Wout,
               const float *bout, const float *x, const float *R, int cp, float eps,
               const float *pad);

/* y = x * softmax(x) per row of F (T rows), R (T, F) at y (doubles,
 * exact): out (T, F) the relevance of x (uniform rule on the product, the
 * Taylor rule on the softmax), absb[T] the softmax bias per row. */
void naive_softmax_gate(double *out, double *absb, int T, int F, const float *x, const double *R);

#endif
