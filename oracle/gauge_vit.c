/*
 * gauge_vit.c -- the gauge of the ViT patch-embedding kinds: both are
 * copies (docs/TRANSFORMERS.md section 7), so every float32 error bound
 * moves with its value and nothing is added.  The gauge states the copy's
 * index map itself, from the shapes (not from core/kind_vit.c), so that a
 * wrong permutation in the shared code shows as a disagreement between the
 * gauge's bounds and the reference:
 *   ToTokens  (C, H, W) -> (T = H W, C): output (t, c) copies input c T + t;
 *   ClsToken  (T, F) -> (T + 1, F): row 0 is the stored vector (exact, no
 *             input), output cell i >= F copies input cell i - F.
 */
#include "gauge_vit.h"

int lrp_gauge_vit_kind(lrp_layer_kind k)
{
    return k == LRP_LAYER_TOTOKENS || k == LRP_LAYER_CLSTOKEN;
}

int64_t lrp_gauge_vit_src(const lrp_net *net, int li, int64_t i)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    switch (l->kind) {
    case LRP_LAYER_TOTOKENS: {
        int64_t C = in->d[0], T = in->d[1] * in->d[2];
        int64_t t = i / C, c = i % C;
        return c * T + t;
    }
    case LRP_LAYER_CLSTOKEN: {
        int64_t F = in->d[1];
        return i < F ? -1 : i - F;
    }
    default: LRP_ASSERT(0);
    }
    return -1;
}
