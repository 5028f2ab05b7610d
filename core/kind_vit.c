/*
 * kind_vit.c -- the patch embedding of a ViT as two shape kinds of format
 * version 2 (core/kinds.h; docs/TRANSFORMERS.md section 7; docs/SPEC.md
 * section 3.9): a Conv2D with kernel = stride = patch and no padding (any
 * linear rule: it is an ordinary Conv2D) makes (F, H/p, W/p); then
 *
 * ToTokens: (C, H, W) -> (H W, C), y[t, c] = x[c, t] with t = h W + w (the
 *   row-major patch order of torch's `x.flatten(2).transpose(1, 2)`).  A
 *   permutation: the relevance goes back through the inverse permutation,
 *   R_in[c, t] = R[t, c], bit for bit (no arithmetic, -0 kept).  Nothing
 *   absorbed; exactly conserving.  Rule pass only.
 * ClsToken: (T, F) -> (T + 1, F), row 0 = the stored vector cls_token (F),
 *   rows 1..T = the input (torch's `cat([cls.expand(B, 1, F), x], 1)`).
 *   Rows 1..T's relevance goes to the input unchanged; row 0's relevance is
 *   absorbed (`cls`, per sample F units: the CLS vector is a constant, a
 *   parameter, and its share never reaches the pixels; Zennit issue #210's
 *   comment observed the same).  Conservation per sample:
 *   sum R_in + cls = sum R, exactly (copies only).  Rule pass only.
 *
 * Both are copies: the reference and the fast path run the same code over
 * their vtables (per-element copies for the permutation, a few hundred to
 * a few hundred thousand per sample: negligible beside the attention).
 */
#include "kinds.h"
#include "pipeline_int.h"

#include <inttypes.h>
#include <stdio.h>

/* ---- ToTokens ---- */

static lrp_status tt_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    if (in->rank != 3)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': ToTokens needs a (C, H, W) tensor, got rank %d", f,
                           l->name, in->rank);
    o->rank = 2;
    o->d[0] = in->d[1] * in->d[2];
    o->d[1] = in->d[0];
    if (!lrp_shape_ok(o))
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': ToTokens output (%lld, %lld) out of range", f, l->name,
                           (long long)o->d[0], (long long)o->d[1]);
    return LRP_OK;
}

static void tt_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "tokens=%" PRId64, l->shape.d[0]);
}

/* out[t, c] = in[c, t] per sample (dir 0), or in[c, t] = out[t, c] (dir 1) */
static void tt_permute(lrp_pipe_state *r, void *dst, const void *src, int64_t T, int64_t C,
                       int back)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    int64_t n = T * C;
    for (int64_t b = 0; b < r->B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t t = 0; t < T; t++) {
                int64_t i_tok = b * n + t * C + c, i_img = b * n + c * T + t;
                if (back)
                    be->ew(cx, LRP_EW_COPY, be->at(cx, dst, i_img), be->at(cx, src, i_tok), NULL,
                           0, 0, 1);
                else
                    be->ew(cx, LRP_EW_COPY, be->at(cx, dst, i_tok), be->at(cx, src, i_img), NULL,
                           0, 0, 1);
            }
}

static lrp_status tt_forward(lrp_pipe_state *r, int li)
{
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    tt_permute(r, P->act, I->act, l->shape.d[0], l->shape.d[1], 0);
    P->nonneg = I->nonneg;
    return LRP_OK;
}

static lrp_status tt_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_layer *l = &r->p->net->layers[li];
    tt_permute(r, r->p->L[li].rin[0], R, l->shape.d[0], l->shape.d[1], 1);
    return LRP_OK;
}

const lrp_kind_desc lrp_kind_TOTOKENS = {
    .kind = LRP_LAYER_TOTOKENS,
    .family = "vit",
    .role = LRP_ROLE_PASS,
    .default_rule = LRP_RULE_PASS,
    .rules = LRP_RULE_BIT(PASS),
    .infer = tt_infer,
    .geometry = tt_geometry,
    .forward = tt_forward,
    .lrp_step = tt_lrp,
    .format_version = 2,
};

/* ---- ClsToken ---- */

static int cls_param_shape(const lrp_net *net, int li, int which, lrp_shape *out)
{
    const lrp_layer *l = &net->layers[li];
    if (which != LRP_P_CLS_TOKEN)
        return 0;
    out->rank = 1;
    out->d[0] = net->layers[l->in[0]].shape.d[1];
    return 1;
}

static lrp_status cls_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    if (in->rank != 2)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': ClsToken needs a token sequence (T, F), got rank %d",
                           f, l->name, in->rank);
    *o = *in;
    o->d[0] = in->d[0] + 1;
    if (!lrp_shape_ok(o))
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': ClsToken output (%lld, %lld) out of range", f, l->name,
                           (long long)o->d[0], (long long)o->d[1]);
    return LRP_OK;
}

static void cls_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "features=%" PRId64, l->shape.d[1]);
}

static lrp_status cls_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    int64_t F = l->shape.d[1], nin = P->n - F;
    for (int64_t b = 0; b < r->B; b++) {
        be->set_f32(cx, be->at(cx, P->act, b * P->n), l->w, F);
        be->ew(cx, LRP_EW_COPY, be->at(cx, P->act, b * P->n + F), be->at(cx, I->act, b * nin),
               NULL, 0, 0, nin);
    }
    P->nonneg = I->nonneg && lrp_pipe_nonneg_f32(l->w, F);
    return LRP_OK;
}

static lrp_status cls_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t F = l->shape.d[1], nin = P->n - F;
    if (!r->relonly) {
        int k = LRP_ABS_CLS;
        lrp_status st = lrp_pipe_alloc_abs(r, P, F, &k, 1);
        if (st)
            return st;
    }
    for (int64_t b = 0; b < r->B; b++) {
        be->ew(cx, LRP_EW_COPY, be->at(cx, P->rin[0], b * nin), be->at(cx, R, b * P->n + F), NULL,
               0, 0, nin);
        if (!r->relonly)
            be->ew(cx, LRP_EW_COPY, be->at(cx, P->abs[LRP_ABS_CLS], b * F),
                   be->at(cx, R, b * P->n), NULL, 0, 0, F);
    }
    return LRP_OK;
}

const lrp_kind_desc lrp_kind_CLSTOKEN = {
    .kind = LRP_LAYER_CLSTOKEN,
    .family = "vit",
    .role = LRP_ROLE_PASS,
    .default_rule = LRP_RULE_PASS,
    .rules = LRP_RULE_BIT(PASS),
    .param_shape = cls_param_shape,
    .param_in_dim = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1},
    .infer = cls_infer,
    .geometry = cls_geometry,
    .forward = cls_forward,
    .lrp_step = cls_lrp,
    .format_version = 2,
};
