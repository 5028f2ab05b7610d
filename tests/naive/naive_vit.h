/*
 * naive_vit.h -- the ViT patch embedding's LRP written the way
 * docs/TRANSFORMERS.md section 7 describes it, independent of core/ and
 * reference/: a Dense on each flattened patch (not a convolution), tokens
 * in row-major patch order, a constant CLS row prepended whose relevance is
 * absorbed.  MPFR at 256 bits, per contribution.
 */
#ifndef LRP_NAIVE_VIT_H
#define LRP_NAIVE_VIT_H

/* One sample: image x (C, H, W), patch p (H, W multiples of p), weights
 * w (F, C, p, p), bias b (F) or NULL, the relevance R_out at the output of
 * the CLS prepend, (1 + T, F) with T = (H/p)(W/p).  The epsilon rule with
 * eps (sign0_pos: stab(z) = z + eps for z >= 0, z - eps otherwise; eps 0
 * is LRP-0), the bias in the denominator.  Writes R_in (C, H, W) (rounded
 * to double), *cls = sum of R_out's row 0 (the absorbed CLS share) and
 * *bias_abs = sum of the bias shares and stabilizer shares (what the patch
 * Dense absorbs). */
void naive_vit_embed(double *R_in, double *cls, double *absorbed, const float *x, int C, int H,
                     int W, int p, int F, const float *w, const float *b, const float *R_out,
                     float eps);

#endif
