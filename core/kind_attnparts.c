/*
 * kind_attnparts.c -- multi-head self-attention written as its stages, one
 * layer each (format version 2; docs/TRANSFORMERS.md section 12.7):
 *
 *     q, k, v = Dense(x)            three token Dense layers (F -> F)
 *     S = AttnScores(q, k)          (h, T, T)  S_hij = c sum_p q_i,hd+p k_j,hd+p
 *     A = AttnSoftmax(S)            (h, T, T)  masks, softmax over keys
 *     O = AttnContext(A, v)         (T, F)     O_t,hd+p = sum_j A_htj v_j,hd+p
 *     y = Dense(O)                  the output projection
 *
 * The same mathematics as MultiHeadAttention (core/kind_attn.c, mha_lrp),
 * stage by stage, so that a trace of every stage's relevance and
 * activation lets the oracle judge each stage on the subject's own inputs
 * (one sum per stage) instead of the whole attention (five sums chained,
 * whose worst-case bound exceeds most cells at BERT's width):
 *
 *   AttnScores, rule uniform (eps and stabilizer of the layer's rule):
 *       s3 = R / stab(S),  R_q = 1/2 q . (c s3 k),  R_k = 1/2 k . (c s3^T q)
 *     stabilizer and undefined units absorbed per unit (h T T).
 *   AttnSoftmax, rule taylor, masks as MultiHeadAttention's (causal, the
 *     key padding mask of /data/key_padding_mask; -inf: entries excluded,
 *     A = +0, R = +0; finite: added to the scores, X = S + M):
 *       R_S = S . (R - A sum R)   (Taylor at X, read at S)
 *     softmax_bias and mask absorbed per row (h T).
 *   AttnContext, rule uniform or cplrp (eps and stabilizer of the rule):
 *       s2 = R / stab(O),  R_A = 1/2 A . (s2 v^T),  R_v = 1/2 v . (A^T s2)
 *     cplrp: A is a constant, R_A = +0 and R_v = v . (A^T s2);
 *     stabilizer and undefined units absorbed per unit (T F).
 *
 * With the projections LRP-0 (AttnLRP's) and eps 0 everywhere the stages
 * compose to MultiHeadAttention's attnlrp exactly (tests/test_attn.c
 * compares the references).  MultiHeadAttention itself puts its rule's eps
 * on the projections' denominators too; here the projections are Dense
 * layers with the Dense rule of the composite.
 */
#include "kinds.h"
#include "pipeline_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared ---- */

static int64_t parts_macs(const lrp_net *net, int li)
{
    /* one product per term of every output cell's sum */
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *a = &net->layers[l->in[0]].shape;
    if (l->kind == LRP_LAYER_ATTNSCORES) /* h T T cells of d terms */
        return l->shape.d[0] * l->shape.d[1] * l->shape.d[2] * (a->d[1] / l->shape.d[0]);
    if (l->kind == LRP_LAYER_ATTNCONTEXT) /* T F cells of T terms */
        return l->shape.d[0] * l->shape.d[1] * a->d[1];
    return lrp_shape_numel(&l->shape);
}

/* s = R / stab(den) over NU = B * U units, the stabilizer's share and the
 * undefined units absorbed per unit, flags raised */
static lrp_status parts_divide(lrp_pipe_state *r, lrp_pipe_layer *P, void *s, const void *R,
                               const void *den, int64_t U)
{
    const lrp_backend *be = r->be;
    int64_t NU = U * r->B;
    lrp_status st = LRP_OK;
    uint8_t *cls = malloc((size_t)(NU ? NU : 1));
    if (!cls)
        return lrp_pipe_oom(r, "attention stage");
    be->stab_div(be->ctx, s, cls, R, den, NULL, P->rule.stab, P->rule.eps, 0, NU);
    lrp_pipe_flags_from_cls(P, cls, NU, U);
    if (!r->relonly) {
        const int kinds[] = {LRP_ABS_STAB};
        if (!(st = lrp_pipe_alloc_abs(r, P, U, kinds, 1)) &&
            !(st = lrp_pipe_ensure_lost(r, P, cls, NU)))
            be->absorb(be->ctx, P->abs, R, s, NULL, cls, 1.0f, P->rule.eps, NU);
    }
    free(cls);
    return st;
}

/* ---- AttnScores ---- */

static const lrp_kind_attr scores_attrs[] = {
    LRP_KA("heads", LRP_A_I32, heads),
    LRP_KA("scale", LRP_A_F32, scale),
};

static lrp_status scores_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *q = &net->layers[l->in[0]].shape, *k = &net->layers[l->in[1]].shape;
    if (q->rank != 2 || k->rank != 2 || q->d[0] != k->d[0] || q->d[1] != k->d[1])
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': AttnScores needs two token sequences (T, F) of one "
                           "shape (q '%s', k '%s')",
                           f, l->name, net->layers[l->in[0]].name, net->layers[l->in[1]].name);
    int64_t T = q->d[0], F = q->d[1];
    if (l->heads < 1 || F % l->heads)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': heads %d must be >= 1 and divide the features %lld", f,
                           l->name, l->heads, (long long)F);
    if (!isfinite(l->scale) || l->scale == 0.0f)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': scale %g must be finite, nonzero",
                           f, l->name, (double)l->scale);
    if ((int64_t)l->heads * T * T > LRP_MAX_ELEMS)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': %d x %lld x %lld scores too many",
                           f, l->name, l->heads, (long long)T, (long long)T);
    o->rank = 3;
    o->d[0] = l->heads, o->d[1] = T, o->d[2] = T;
    return LRP_OK;
}

static void scores_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "heads=%d scale=%a", l->heads, (double)l->scale);
}

/* S (B, h, T, T) = c q_h k_h^T */
static lrp_status scores_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    const lrp_layer *l = &r->p->net->layers[li];
    const lrp_pipe_layer *Q = &r->p->L[l->in[0]], *K = &r->p->L[l->in[1]];
    int64_t H = l->shape.d[0], T = l->shape.d[1], F = r->p->net->layers[l->in[0]].shape.d[1];
    int64_t d = F / H;
    lrp_bmm G = {r->B, H, T, T, d,
                 T * F, d, F, 1,
                 T * F, d, 1, F,
                 H * T * T, T * T, T, 1, l->scale};
    be->bmm(be->ctx, r->p->L[li].act, Q->act, K->act, &G);
    return LRP_OK;
}

static lrp_status scores_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *Q = &r->p->L[l->in[0]], *K = &r->p->L[l->in[1]];
    int64_t B = r->B, H = l->shape.d[0], T = l->shape.d[1];
    int64_t F = r->p->net->layers[l->in[0]].shape.d[1], d = F / H, HTT = B * H * T * T;
    P->n_parts = 0;
    P->n_units = H * T * T;
    void *s3 = lrp_pipe_traw(r, HTT);
    if (!s3)
        return lrp_pipe_oom(r, "attention scores");
    lrp_status st = parts_divide(r, P, s3, R, P->act, H * T * T);
    if (!st) {
        /* g_q(i, p) = c sum_j s3(i, j) k(j, p); g_k(j, p) = c sum_i s3(i, j) q(i, p) */
        lrp_bmm Gq = {B, H, T, d, T,
                      H * T * T, T * T, T, 1,
                      T * F, d, F, 1,
                      T * F, d, F, 1, l->scale};
        lrp_bmm Gk = {B, H, T, d, T,
                      H * T * T, T * T, 1, T,
                      T * F, d, F, 1,
                      T * F, d, F, 1, l->scale};
        be->bmm(cx, P->rin[0], s3, K->act, &Gq);
        be->bmm(cx, P->rin[1], s3, Q->act, &Gk);
        be->ew(cx, LRP_EW_MUL, P->rin[0], Q->act, P->rin[0], 0, 0, B * T * F);
        be->ew(cx, LRP_EW_SCALE, P->rin[0], P->rin[0], NULL, 0.5f, 0, B * T * F);
        be->ew(cx, LRP_EW_MUL, P->rin[1], K->act, P->rin[1], 0, 0, B * T * F);
        be->ew(cx, LRP_EW_SCALE, P->rin[1], P->rin[1], NULL, 0.5f, 0, B * T * F);
    }
    be->tensor_free(cx, s3, HTT);
    return st;
}

const lrp_kind_desc lrp_kind_ATTNSCORES = {
    .kind = LRP_LAYER_ATTNSCORES,
    .family = "attention",
    .role = LRP_ROLE_OWN,
    .default_rule = LRP_RULE_UNIFORM,
    .rules = LRP_RULE_BIT(UNIFORM),
    .attrs = scores_attrs,
    .n_attrs = sizeof scores_attrs / sizeof scores_attrs[0],
    .infer = scores_infer,
    .macs = parts_macs,
    .geometry = scores_geometry,
    .forward = scores_forward,
    .lrp_step = scores_lrp,
    .format_version = 2,
};

/* ---- AttnSoftmax ---- */

static const lrp_kind_attr asm_attrs[] = {
    LRP_KA("causal", LRP_A_BOOL, causal),
    LRP_KA("use_padding_mask", LRP_A_BOOL, use_padding_mask),
    LRP_KA("mask_value", LRP_A_F32, mask_value),
};

static lrp_status asm_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    if (in->rank != 3 || in->d[1] != in->d[2])
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': AttnSoftmax needs scores (heads, T, T), input '%s' "
                           "is not",
                           f, l->name, net->layers[l->in[0]].name);
    if (isnan(l->mask_value) || l->mask_value == INFINITY)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': mask_value %g must be -inf or finite", f, l->name,
                           (double)l->mask_value);
    if (l->causal != 0 && l->causal != 1)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': causal %d not 0 or 1", f,
                           l->name, l->causal);
    if (l->use_padding_mask != 0 && l->use_padding_mask != 1)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': use_padding_mask %d not 0 or 1",
                           f, l->name, l->use_padding_mask);
    *o = *in;
    return LRP_OK;
}

static void asm_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "mask=%g%s%s", (double)l->mask_value, l->causal ? " causal" : "",
             l->use_padding_mask ? " padding" : "");
}

lrp_status lrp_pipe_attn_logits(lrp_pipe_state *r, const lrp_layer *l, int64_t H, int64_t T,
                                const void *S, void **X, uint8_t **mask, int64_t *mrows)
{
    return lrp_pipe_attn_logits_rows(r, l, H, T, 0, T, S, X, mask, mrows);
}

lrp_status lrp_pipe_attn_logits_rows(lrp_pipe_state *r, const lrp_layer *l, int64_t H,
                                     int64_t Tq, int64_t q0, int64_t T, const void *S, void **X,
                                     uint8_t **mask, int64_t *mrows)
{
    const lrp_backend *be = r->be;
    const lrp_net *net = r->p->net;
    int64_t B = r->B, HQT = B * H * Tq * T;
    const float *kpm = l->use_padding_mask ? net->key_padding_mask : NULL;
    *X = NULL, *mask = NULL, *mrows = 1;
    if (!l->causal && !kpm)
        return LRP_OK;
    if (isinf(l->mask_value)) {
        *mrows = kpm ? B * H * Tq : Tq;
        if (!(*mask = calloc((size_t)(*mrows * T + 1), 1)))
            return lrp_pipe_oom(r, "attention softmax");
        for (int64_t q = 0; q < *mrows; q++) {
            int64_t i = q0 + q % Tq, b = q / (H * Tq);
            for (int64_t j = 0; j < T; j++)
                (*mask)[q * T + j] = (l->causal && j > i) || (kpm && kpm[b * T + j] != 0.0f);
        }
        return LRP_OK;
    }
    float *mv = calloc((size_t)(H * Tq * T + 1), sizeof *mv);
    if (!mv || !(*X = lrp_pipe_traw(r, HQT))) {
        free(mv);
        return lrp_pipe_oom(r, "attention softmax");
    }
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Tq; i++)
                for (int64_t j = 0; j < T; j++)
                    mv[(h * Tq + i) * T + j] = (l->causal && j > q0 + i) ||
                                                       (kpm && kpm[b * T + j] != 0.0f)
                                                   ? l->mask_value
                                                   : 0.0f;
        be->set_f32(be->ctx, be->at(be->ctx, *X, b * H * Tq * T), mv, H * Tq * T);
    }
    free(mv);
    be->ew(be->ctx, LRP_EW_ADD, *X, S, *X, 0, 0, HQT);
    return LRP_OK;
}

static lrp_status asm_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const void *S = r->p->L[l->in[0]].act;
    int64_t T = l->shape.d[1], rows = r->B * l->shape.d[0] * T;
    void *X;
    uint8_t *mask;
    int64_t mrows;
    lrp_status st = lrp_pipe_attn_logits(r, l, l->shape.d[0], T, S, &X, &mask, &mrows);
    if (st)
        return st;
    be->softmax_fwd(be->ctx, P->act, X ? X : S, mask, mrows, rows, T);
    P->nonneg = 1;
    if (X)
        be->tensor_free(be->ctx, X, rows * T);
    free(mask);
    return LRP_OK;
}

static lrp_status asm_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const void *S = r->p->L[l->in[0]].act;
    int64_t T = l->shape.d[1], U = l->shape.d[0] * T, rows = r->B * U;
    void *X = NULL, *tb = NULL, *tm = NULL;
    uint8_t *mask = NULL;
    int64_t mrows;
    P->n_parts = 0;
    P->n_units = U;
    lrp_status st = lrp_pipe_attn_logits(r, l, l->shape.d[0], T, S, &X, &mask, &mrows);
    if (st)
        return st;
    void *absb, *absm;
    if (!r->relonly) {
        const int k[] = {LRP_ABS_SOFTMAX_BIAS, LRP_ABS_MASK};
        if ((st = lrp_pipe_alloc_abs(r, P, U, k, X ? 2 : 1)))
            goto done;
        absb = P->abs[LRP_ABS_SOFTMAX_BIAS];
        absm = X ? P->abs[LRP_ABS_MASK] : NULL;
    } else {
        if (!(absb = tb = lrp_pipe_traw(r, rows)) || (X && !(absm = tm = lrp_pipe_traw(r, rows)))) {
            st = lrp_pipe_oom(r, "attention softmax");
            goto done;
        }
        if (!X)
            absm = NULL;
    }
    be->softmax_taylor(cx, P->rin[0], absb, absm, X ? X : S, S, P->act, R, mask, mrows, rows, T);
done:
    if (X)
        be->tensor_free(cx, X, rows * T);
    if (tb)
        be->tensor_free(cx, tb, rows);
    if (tm)
        be->tensor_free(cx, tm, rows);
    free(mask);
    return st;
}

const lrp_kind_desc lrp_kind_ATTNSOFTMAX = {
    .kind = LRP_LAYER_ATTNSOFTMAX,
    .family = "attention",
    .role = LRP_ROLE_OWN,
    .default_rule = LRP_RULE_TAYLOR,
    .rules = LRP_RULE_BIT(TAYLOR),
    .attrs = asm_attrs,
    .n_attrs = sizeof asm_attrs / sizeof asm_attrs[0],
    .infer = asm_infer,
    .macs = parts_macs,
    .geometry = asm_geometry,
    .forward = asm_forward,
    .lrp_step = asm_lrp,
    .format_version = 2,
};

/* ---- AttnContext ---- */

static lrp_status ctx_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *a = &net->layers[l->in[0]].shape, *v = &net->layers[l->in[1]].shape;
    if (a->rank != 3 || a->d[1] != a->d[2] || v->rank != 2 || v->d[0] != a->d[1] ||
        v->d[1] % a->d[0])
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': AttnContext needs weights (heads, T, T) and values "
                           "(T, F) with F a multiple of heads (weights '%s', values '%s')",
                           f, l->name, net->layers[l->in[0]].name, net->layers[l->in[1]].name);
    *o = *v;
    return LRP_OK;
}

/* O (B, T, F), head h at features h d .. : A_h (T, T) times v_h (T, d) */
static lrp_status ctx_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    const lrp_pipe_layer *A = &r->p->L[l->in[0]], *V = &r->p->L[l->in[1]];
    int64_t H = net->layers[l->in[0]].shape.d[0], T = l->shape.d[0], F = l->shape.d[1];
    int64_t d = F / H;
    lrp_bmm G = {r->B, H, T, d, T,
                 H * T * T, T * T, T, 1,
                 T * F, d, F, 1,
                 T * F, d, F, 1, 1.0f};
    be->bmm(be->ctx, r->p->L[li].act, A->act, V->act, &G);
    return LRP_OK;
}

static lrp_status ctx_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *A = &r->p->L[l->in[0]], *V = &r->p->L[l->in[1]];
    int64_t B = r->B, H = net->layers[l->in[0]].shape.d[0], T = l->shape.d[0];
    int64_t F = l->shape.d[1], d = F / H, BTF = B * T * F;
    int cp = l->rule.rule == LRP_RULE_CPLRP;
    P->n_parts = 0;
    P->n_units = T * F;
    void *s2 = lrp_pipe_traw(r, BTF);
    if (!s2)
        return lrp_pipe_oom(r, "attention context");
    lrp_status st = parts_divide(r, P, s2, R, P->act, T * F);
    if (!st) {
        /* g_v(j, p) = sum_t A(t, j) s2(t, p); g_A(t, j) = sum_p s2(t, p) v(j, p) */
        lrp_bmm Gv = {B, H, T, d, T,
                      H * T * T, T * T, 1, T,
                      T * F, d, F, 1,
                      T * F, d, F, 1, 1.0f};
        be->bmm(cx, P->rin[1], A->act, s2, &Gv);
        be->ew(cx, LRP_EW_MUL, P->rin[1], V->act, P->rin[1], 0, 0, BTF);
        if (cp) {
            be->ew(cx, LRP_EW_ZERO, P->rin[0], NULL, NULL, 0, 0, B * H * T * T);
        } else {
            be->ew(cx, LRP_EW_SCALE, P->rin[1], P->rin[1], NULL, 0.5f, 0, BTF);
            lrp_bmm GA = {B, H, T, T, d,
                          T * F, d, F, 1,
                          T * F, d, 1, F,
                          H * T * T, T * T, T, 1, 1.0f};
            be->bmm(cx, P->rin[0], s2, V->act, &GA);
            be->ew(cx, LRP_EW_MUL, P->rin[0], A->act, P->rin[0], 0, 0, B * H * T * T);
            be->ew(cx, LRP_EW_SCALE, P->rin[0], P->rin[0], NULL, 0.5f, 0, B * H * T * T);
        }
    }
    be->tensor_free(cx, s2, BTF);
    return st;
}

const lrp_kind_desc lrp_kind_ATTNCONTEXT = {
    .kind = LRP_LAYER_ATTNCONTEXT,
    .family = "attention",
    .role = LRP_ROLE_OWN,
    .default_rule = LRP_RULE_UNIFORM,
    .rules = LRP_RULE_BIT(UNIFORM) | LRP_RULE_BIT(CPLRP),
    .infer = ctx_infer,
    .macs = parts_macs,
    .forward = ctx_forward,
    .lrp_step = ctx_lrp,
    .format_version = 2,
};
