/*
 * kind_attn.c -- the transformer layer kinds of format version 2
 * (core/kinds.h; docs/TRANSFORMERS.md sections 4, 5, 7; docs/FORMAT.md):
 * Softmax, Mul, MultiHeadAttention, Embedding, Position, SelectToken.
 *
 * Token sequences are per-sample (T, F), features fastest.
 *
 * Softmax (last axis, any rank), rule taylor (AttnLRP Prop. 3.1):
 *     R_i = x_i (R_i^out - s_i sum_j R_j^out)
 *   no stabilizer, no zero denominator; absorbed per row (`softmax_bias`)
 *     sum_j R_j^out (1 - x_j + xbar),  xbar = sum_i s_i x_i,
 *   computed from that closed form (not as the difference), so that the
 *   conservation audit sum R_in + softmax_bias = sum R_out is a real check.
 *   Not shift-invariant: the rule sees the logits as given.
 * Mul (2 inputs, elementwise product), rule uniform: R_a = R_b = R / 2
 *   (a product by 0.5: exact in every backend); nothing absorbed.
 * MultiHeadAttention (self-attention, PyTorch's packing), rules attnlrp and
 *   cplrp, written out at mha_lrp below.
 * Embedding (a lookup of token ids, /data/tokens): the output is the
 *   explained tensor; the relevance of token t is the feature sum of the
 *   output's relevance, sum_f R(e_tf), which is what this kind hands to the
 *   token Input: the Input's relevance (the trace's entry of layer 0) is the
 *   relevance per token.  Exactly conserved (one rounding per token).
 * Position: y = x + table[:T] (a constant); the proportional split (lrp0 /
 *   epsilon, stabilized as Add), the table's share absorbed (`position`).
 * SelectToken: y = x[index] (CLS pooling, (T, F) -> (F)); the row gets R,
 *   every other row +0; conserving.
 */
#include "kinds.h"
#include "pipeline_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t out_numel_macs(const lrp_net *net, int li)
{
    return lrp_shape_numel(&net->layers[li].shape);
}

/* rows and columns of a last-axis op on layer li's output */
static int64_t last_dim(const lrp_layer *l)
{
    return l->shape.d[l->shape.rank - 1];
}

/* ---- Softmax ---- */

static lrp_status softmax_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    *o = net->layers[net->layers[li].in[0]].shape;
    return LRP_OK;
}

static lrp_status softmax_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    int64_t cols = last_dim(l), rows = P->n / cols * r->B;
    be->softmax_fwd(be->ctx, P->act, I->act, NULL, 1, rows, cols);
    P->nonneg = 1;
    return LRP_OK;
}

static lrp_status softmax_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    int64_t cols = last_dim(l), U = P->n / cols, rows = U * r->B;
    void *absb = NULL, *tmp = NULL;
    P->n_units = U;
    if (!r->relonly) {
        int k[] = {LRP_ABS_SOFTMAX_BIAS};
        lrp_status st = lrp_pipe_alloc_abs(r, P, U, k, 1);
        if (st)
            return st;
        absb = P->abs[LRP_ABS_SOFTMAX_BIAS];
    } else if (!(absb = tmp = lrp_pipe_traw(r, rows))) {
        return lrp_pipe_oom(r, "softmax");
    }
    be->softmax_taylor(be->ctx, P->rin[0], absb, NULL, I->act, I->act, P->act, R, NULL, 1, rows,
                       cols);
    if (tmp)
        be->tensor_free(be->ctx, tmp, rows);
    return LRP_OK;
}

static lrp_status elem_same_infer(lrp_net *net, int li, const char *f, lrp_err *err,
                                  lrp_shape *o)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *a = &net->layers[l->in[0]].shape;
    for (int k = 1; k < l->n_in; k++) {
        const lrp_shape *s = &net->layers[l->in[k]].shape;
        if (s->rank != a->rank || memcmp(s->d, a->d, sizeof(int64_t) * (size_t)a->rank)) {
            char b1[64], b2[64];
            lrp_shape_str(b1, sizeof b1, a);
            lrp_shape_str(b2, sizeof b2, s);
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': %s inputs differ in shape: '%s' %s vs '%s' %s", f,
                               l->name, lrp_layer_kind_name(l->kind), net->layers[l->in[0]].name,
                               b1, net->layers[l->in[k]].name, b2);
        }
    }
    *o = *a;
    return LRP_OK;
}

const lrp_kind_desc lrp_kind_SOFTMAX = {
    .kind = LRP_LAYER_SOFTMAX,
    .family = "attention",
    .role = LRP_ROLE_OWN,
    .default_rule = LRP_RULE_TAYLOR,
    .rules = LRP_RULE_BIT(TAYLOR),
    .infer = softmax_infer,
    .macs = out_numel_macs,
    .forward = softmax_forward,
    .lrp_step = softmax_lrp,
    .format_version = 2,
};

/* ---- Mul ---- */

static lrp_status mul_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *A = &r->p->L[l->in[0]], *Bq = &r->p->L[l->in[1]];
    be->ew(be->ctx, LRP_EW_MUL, P->act, A->act, Bq->act, 0, 0, P->n * r->B);
    P->nonneg = A->nonneg && Bq->nonneg;
    return LRP_OK;
}

static lrp_status mul_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    lrp_pipe_layer *P = &r->p->L[li];
    for (int k = 0; k < 2; k++)
        be->ew(be->ctx, LRP_EW_SCALE, P->rin[k], R, NULL, 0.5f, 0.0f, P->n * r->B);
    return LRP_OK;
}

const lrp_kind_desc lrp_kind_MUL = {
    .kind = LRP_LAYER_MUL,
    .family = "attention",
    .role = LRP_ROLE_OWN,
    .default_rule = LRP_RULE_UNIFORM,
    .rules = LRP_RULE_BIT(UNIFORM),
    .infer = elem_same_infer,
    .macs = out_numel_macs,
    .forward = mul_forward,
    .lrp_step = mul_lrp,
    .format_version = 2,
};

/* ---- SelectToken ---- */

static const lrp_kind_attr select_attrs[] = {
    LRP_KA("index", LRP_A_I64, index),
};

static lrp_status select_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    if (in->rank != 2)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': SelectToken needs a token sequence (T, F), got rank %d",
                           f, l->name, in->rank);
    if (l->index < 0 || l->index >= in->d[0])
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': SelectToken index %lld outside [0, %lld)", f, l->name,
                           (long long)l->index, (long long)in->d[0]);
    o->rank = 1;
    o->d[0] = in->d[1];
    return LRP_OK;
}

static void select_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "token %" PRId64, l->index);
}

static lrp_status select_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    for (int64_t b = 0; b < r->B; b++)
        be->ew(cx, LRP_EW_COPY, be->at(cx, P->act, b * P->n),
               be->at(cx, I->act, b * I->n + l->index * P->n), NULL, 0, 0, P->n);
    P->nonneg = I->nonneg;
    return LRP_OK;
}

static lrp_status select_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t nin = P->n_rin_per[0];
    be->ew(cx, LRP_EW_ZERO, P->rin[0], NULL, NULL, 0, 0, nin * r->B);
    for (int64_t b = 0; b < r->B; b++)
        be->ew(cx, LRP_EW_COPY, be->at(cx, P->rin[0], b * nin + l->index * P->n),
               be->at(cx, R, b * P->n), NULL, 0, 0, P->n);
    return LRP_OK;
}

const lrp_kind_desc lrp_kind_SELECTTOKEN = {
    .kind = LRP_LAYER_SELECTTOKEN,
    .family = "attention",
    .role = LRP_ROLE_PASS,
    .default_rule = LRP_RULE_PASS,
    .rules = LRP_RULE_BIT(PASS),
    .attrs = select_attrs,
    .n_attrs = sizeof select_attrs / sizeof select_attrs[0],
    .infer = select_infer,
    .geometry = select_geometry,
    .forward = select_forward,
    .lrp_step = select_lrp,
    .format_version = 2,
};

/* ---- Position ---- */

static const lrp_kind_attr pos_attrs[] = {
    LRP_KA("max_len", LRP_A_I64, max_len),
};

static int pos_param_shape(const lrp_net *net, int li, int which, lrp_shape *out)
{
    const lrp_layer *l = &net->layers[li];
    if (which != LRP_P_TABLE)
        return 0;
    out->rank = 2;
    out->d[0] = l->max_len;
    out->d[1] = net->layers[l->in[0]].shape.d[1];
    return 1;
}

static lrp_status pos_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    if (in->rank != 2)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': Position needs a token sequence (T, F), got rank %d", f,
                           l->name, in->rank);
    if (l->max_len < in->d[0] || l->max_len > LRP_MAX_DIM ||
        l->max_len * in->d[1] > LRP_MAX_ELEMS)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': Position max_len %lld must be in [T = %lld, 2^24] and "
                           "the table within limits",
                           f, l->name, (long long)l->max_len, (long long)in->d[0]);
    *o = *in;
    return LRP_OK;
}

static void pos_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "max_len=%" PRId64, l->max_len);
}

/* the table's first T rows for every sample (batch * n) */
static void *pos_full(lrp_pipe_state *r, const lrp_layer *l, int64_t n)
{
    const lrp_backend *be = r->be;
    void *t = lrp_pipe_traw(r, n * r->B);
    if (!t)
        return NULL;
    for (int64_t b = 0; b < r->B; b++)
        be->set_f32(be->ctx, be->at(be->ctx, t, b * n), l->w, n);
    return t;
}

static lrp_status pos_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    void *t = pos_full(r, l, P->n);
    if (!t)
        return lrp_pipe_oom(r, "position");
    be->ew(be->ctx, LRP_EW_ADD, P->act, I->act, t, 0, 0, P->n * r->B);
    be->tensor_free(be->ctx, t, P->n * r->B);
    return LRP_OK;
}

static lrp_status pos_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    if (l->rule.rule == LRP_RULE_PASS) {
        r->be->ew(r->be->ctx, LRP_EW_COPY, P->rin[0], R, NULL, 0, 0, P->n * r->B);
        return LRP_OK;
    }
    void *t = pos_full(r, l, P->n);
    if (!t)
        return lrp_pipe_oom(r, "position");
    const void *v[2] = {r->p->L[l->in[0]].act, t};
    int ak[2] = {LRP_ABS_POSITION, LRP_ABS_POSITION};
    lrp_status st = lrp_pipe_back_split(r, P, R, P->act, v, 2, 1, P->rin, ak, P->n * r->B, P->n);
    r->be->tensor_free(r->be->ctx, t, P->n * r->B);
    return st;
}

const lrp_kind_desc lrp_kind_POSITION = {
    .kind = LRP_LAYER_POSITION,
    .family = "attention",
    .role = LRP_ROLE_OWN,
    .default_rule = LRP_RULE_ZERO,
    .rules = LRP_RULE_BIT(ZERO) | LRP_RULE_BIT(EPSILON) | LRP_RULE_BIT(PASS),
    .attrs = pos_attrs,
    .n_attrs = sizeof pos_attrs / sizeof pos_attrs[0],
    .param_shape = pos_param_shape,
    .param_in_dim = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1},
    .infer = pos_infer,
    .macs = out_numel_macs,
    .geometry = pos_geometry,
    .forward = pos_forward,
    .lrp_step = pos_lrp,
    .format_version = 2,
};

/* ---- Embedding ---- */

static const lrp_kind_attr emb_attrs[] = {
    LRP_KA("vocab", LRP_A_I64, vocab),
    LRP_KA("features", LRP_A_I64, units),
};

static int emb_param_shape(const lrp_net *net, int li, int which, lrp_shape *out)
{
    const lrp_layer *l = &net->layers[li];
    if (which != LRP_P_WEIGHT)
        return 0;
    out->rank = 2;
    out->d[0] = l->vocab;
    out->d[1] = l->units;
    return 1;
}

static lrp_status emb_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_layer *in = &net->layers[l->in[0]];
    if (in->kind != LRP_LAYER_INPUT || !in->tokens || in->shape.rank != 1)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': Embedding needs a token Input (dtype 'token', shape "
                           "(T)); '%s' is not one",
                           f, l->name, in->name);
    if (l->vocab < 1 || l->vocab > LRP_MAX_DIM || l->units < 1 || l->units > LRP_MAX_DIM ||
        l->vocab * l->units > LRP_MAX_ELEMS || in->shape.d[0] * l->units > LRP_MAX_ELEMS)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': Embedding vocab %lld x features %lld out of range", f,
                           l->name, (long long)l->vocab, (long long)l->units);
    o->rank = 2;
    o->d[0] = in->shape.d[0];
    o->d[1] = l->units;
    return LRP_OK;
}

static void emb_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "vocab=%" PRId64 " features=%" PRId64, l->vocab, l->units);
}

static lrp_status emb_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t T = l->shape.d[0], F = l->shape.d[1];
    for (int64_t b = 0; b < r->B; b++)
        for (int64_t t = 0; t < T; t++) {
            /* token ids are exact binary32 integers, range-checked by
             * lrp_net_check_values (and the reader) */
            int64_t id = (int64_t)net->input[b * T + t];
            LRP_ASSERT(id >= 0 && id < l->vocab);
            be->set_f32(be->ctx, be->at(be->ctx, P->act, (b * T + t) * F), l->w + id * F, F);
        }
    P->nonneg = lrp_pipe_nonneg_f32(l->w, l->vocab * F);
    return LRP_OK;
}

/* relevance per token: the feature sum of the output's relevance */
static lrp_status emb_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_layer *l = &r->p->net->layers[li];
    int64_t T = l->shape.d[0], F = l->shape.d[1];
    r->be->rowsum(r->be->ctx, r->p->L[li].rin[0], R, T * r->B, F);
    return LRP_OK;
}

const lrp_kind_desc lrp_kind_EMBEDDING = {
    .kind = LRP_LAYER_EMBEDDING,
    .family = "attention",
    .role = LRP_ROLE_OWN,
    .default_rule = LRP_RULE_ZERO,
    /* a lookup has no denominator: every admissible rule is the same
     * feature sum (epsilon accepted for uniform assignments) */
    .rules = LRP_RULE_BIT(ZERO) | LRP_RULE_BIT(EPSILON) | LRP_RULE_BIT(PASS),
    .attrs = emb_attrs,
    .n_attrs = sizeof emb_attrs / sizeof emb_attrs[0],
    .param_shape = emb_param_shape,
    .param_in_dim = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    .infer = emb_infer,
    .geometry = emb_geometry,
    .forward = emb_forward,
    .lrp_step = emb_lrp,
    .format_version = 2,
};

/* ---- MultiHeadAttention ----
 *
 * Self-attention on x (T, F), h heads of d = F / h features (feature
 * f = head * d + j), PyTorch's packing (masks: causal, key > query; and
 * with use_padding_mask the keys /data/key_padding_mask marks; a query
 * whose every key is masked with -inf has A = 0, O = 0, relevance 0):
 *     [q k v] = x Win^T + bin            (Win (3F, F), bin (3F))
 *     S = c q_h k_h^T                    (h, T, T), c = `scale`
 *     X = S + M                          M: the mask (causal: key > query),
 *                                        -inf (entries excluded: A = +0)
 *                                        or a finite binary32 added
 *     A = softmax(X)                     over keys
 *     O_h = A v_h                        merged back to (T, F)
 *     y = O Wout^T + bout
 * Rule attnlrp (TRANSFORMERS 5.2), stabilizer and eps of the layer's rule
 * on every denominator (projections and both products):
 *     out projection: s1 = R / stab(y), R_O = O . Wout^T s1, bias absorbed
 *     O = A v, uniform: s2 = R_O / stab(O), R_A = 1/2 A . (s2 v^T),
 *                       R_v = 1/2 v . (A^T s2)
 *     softmax Taylor at X, read at S: R_S = S . d, mask share (X - S) . d
 *                       absorbed (`mask`), the bias term (`softmax_bias`)
 *     S = c q k^T, uniform: s3 = R_S / stab(S), R_q = 1/2 q . (c s3 k),
 *                       R_k = 1/2 k . (c s3^T q)
 *     in projection: s4 = R_qkv / stab(qkv), R_x = x . Win^T s4, bias absorbed
 * Rule cplrp (TRANSFORMERS 4.2): A is a constant: R_v = v . (A^T s2) (all
 * of it), q and k get nothing (their s4 is 0).
 * Conservation per sample: sum R_x + bias + stabilizer + softmax_bias +
 * mask (+ undefined) = sum R.  The absorbed amounts are kept per sample
 * (n_units 1): the stages' units differ (T F, h T T, 3 T F).
 * The internal tensors are recomputed in the LRP step from the input (the
 * same operations: the same values); they are not traced (@q, @k, ... of
 * TRANSFORMERS section 10 are not implemented): the layer is judged whole.
 * Under the layer split each rank holds a block of query rows (mha_t):
 * every token's q, k, v gathered, g_k and g_v summed over the ranks' queries
 * as exact partial sums (mha_keys_exact), the totals and flags formed whole
 * on every rank (mha_total, mha_divide): one process's bits.
 */

int64_t lrp_padding_T(const lrp_net *net)
{
    int64_t T = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const lrp_layer *l = &net->layers[i];
        if ((l->kind != LRP_LAYER_MHA && l->kind != LRP_LAYER_ATTNSOFTMAX) ||
            !l->use_padding_mask)
            continue;
        /* MultiHeadAttention (T, F); AttnSoftmax (heads, T, T) */
        int64_t t = l->shape.d[l->kind == LRP_LAYER_MHA ? 0 : 1];
        if (T && t != T)
            return -1;
        T = t;
    }
    return T;
}

static const lrp_kind_attr mha_attrs[] = {
    LRP_KA("heads", LRP_A_I32, heads),
    LRP_KA("scale", LRP_A_F32, scale),
    LRP_KA("causal", LRP_A_BOOL, causal),
    LRP_KA("use_padding_mask", LRP_A_BOOL, use_padding_mask),
    LRP_KA("mask_value", LRP_A_F32, mask_value),
    LRP_KA("has_bias", LRP_A_BOOL, has_bias),
};

static int mha_param_shape(const lrp_net *net, int li, int which, lrp_shape *out)
{
    const lrp_layer *l = &net->layers[li];
    int64_t F = net->layers[l->in[0]].shape.d[1];
    switch (which) {
    case LRP_P_IN_PROJ_WEIGHT: out->rank = 2, out->d[0] = 3 * F, out->d[1] = F; return 1;
    case LRP_P_OUT_PROJ_WEIGHT: out->rank = 2, out->d[0] = F, out->d[1] = F; return 1;
    case LRP_P_IN_PROJ_BIAS:
        if (!l->has_bias)
            return 0;
        out->rank = 1, out->d[0] = 3 * F;
        return 1;
    case LRP_P_OUT_PROJ_BIAS:
        if (!l->has_bias)
            return 0;
        out->rank = 1, out->d[0] = F;
        return 1;
    default: return 0;
    }
}

static lrp_status mha_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    if (in->rank != 2)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': MultiHeadAttention needs a token sequence (T, F), got "
                           "rank %d",
                           f, l->name, in->rank);
    int64_t T = in->d[0], F = in->d[1];
    if (l->heads < 1 || F % l->heads)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': heads %d must be >= 1 and divide the features %lld", f,
                           l->name, l->heads, (long long)F);
    if (!isfinite(l->scale) || l->scale == 0.0f)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': scale %g must be finite, nonzero",
                           f, l->name, (double)l->scale);
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
    if (3 * F * F > LRP_MAX_ELEMS || (int64_t)l->heads * T * T > LRP_MAX_ELEMS)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': attention too large", f, l->name);
    *o = *in;
    return LRP_OK;
}

static int64_t mha_macs(const lrp_net *net, int li)
{
    const lrp_layer *l = &net->layers[li];
    int64_t T = l->shape.d[0], F = l->shape.d[1];
    return 4 * T * F * F + 2 * T * T * F;
}

static void mha_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "heads=%d scale=%a%s%s mask=%g%s", l->heads, (double)l->scale,
             l->causal ? " causal" : "", l->use_padding_mask ? " padding" : "",
             (double)l->mask_value, l->has_bias ? " +bias" : "");
}

/* everything the forward computes, for the LRP step.  Under the layer
 * split (r->split set: core/pipe_split.c attn_rows) the rank holds the
 * queries [q0, q0 + Tq) of the T tokens: its rows of the input, of the
 * output and of every per-query tensor (S, X, A, O; qkvL), and every
 * token's q, k, v (qkv, gathered); one process: q0 = 0, Tq = T. */
typedef struct mha_t {
    int64_t B, T, F, H, d, Tq, q0;
    int split;
    lrp_lin Lin, Lout;
    void *qkvL;                 /* this rank's rows of [q k v] (B, Tq, 3F) */
    void *qkv, *S, *X, *A, *O; /* X: NULL unless a finite mask is added;
                                   qkv (B, T, 3F): qkvL itself in one process */
    uint8_t *mask;              /* excluded entries (-inf mask): mrows rows of T,
                                   row r of the scores uses row r % mrows; or NULL */
    int64_t mrows;
    void *bin, *bout;           /* bias tensors (or NULL) */
    int bin_own, bout_own;
} mha_t;

static void mha_free(lrp_pipe_state *r, mha_t *m)
{
    const lrp_backend *be = r->be;
    int64_t BQ = m->B * m->Tq, HQT = m->B * m->H * m->Tq * m->T;
    if (m->qkv && m->qkv != m->qkvL)
        be->tensor_free(be->ctx, m->qkv, m->B * m->T * 3 * m->F);
    if (m->qkvL)
        be->tensor_free(be->ctx, m->qkvL, BQ * 3 * m->F);
    if (m->S)
        be->tensor_free(be->ctx, m->S, HQT);
    if (m->X)
        be->tensor_free(be->ctx, m->X, HQT);
    if (m->A)
        be->tensor_free(be->ctx, m->A, HQT);
    if (m->O)
        be->tensor_free(be->ctx, m->O, BQ * m->F);
    if (m->bin && !m->bin_own) {
        /* a view of binary32 (wrap_f32): never freed */
    } else if (m->bin) {
        be->tensor_free(be->ctx, m->bin, 3 * m->F);
    }
    if (m->bout && m->bout_own)
        be->tensor_free(be->ctx, m->bout, m->F);
    free(m->mask);
}

static void lin_dense(lrp_lin *L, int64_t nin, int64_t nout, const float *w32, const float *b32)
{
    memset(L, 0, sizeof *L);
    L->n_in = L->C = L->fanin = nin;
    L->n_out = L->O = nout;
    L->H = L->W = L->Ho = L->Wo = 1;
    L->kh = L->kw = L->sh = L->sw = L->dh = L->dw = L->groups = 1;
    L->w32 = w32;
    L->b32 = b32;
}

static lrp_status mha_compute(lrp_pipe_state *r, int li, mha_t *m)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    memset(m, 0, sizeof *m);
    m->B = r->B;
    m->Tq = l->shape.d[0];
    m->T = m->Tq;
    m->split = r->split != NULL;
    if (m->split) {
        int64_t hi, inner;
        lrp_pipe_split_range(r, li, &m->q0, &hi, &inner);
        m->T = lrp_pipe_split_full(r)->layers[li].shape.d[0];
    }
    m->F = l->shape.d[1];
    m->H = l->heads;
    m->d = m->F / m->H;
    int64_t B = m->B, T = m->T, Tq = m->Tq, F = m->F, H = m->H, BQ = B * Tq;
    int64_t HQT = B * H * Tq * T;
    lin_dense(&m->Lin, F, 3 * F, l->w, l->has_bias ? l->b : NULL);
    lin_dense(&m->Lout, F, F, l->w2, l->has_bias ? l->b2 : NULL);
    int borrowed = 0;
    void *win = NULL, *wout = NULL;
    if (l->has_bias) {
        m->bin = lrp_pipe_tparams(r, l->b, 3 * F, &borrowed);
        m->bin_own = !borrowed;
        m->bout = lrp_pipe_tparams(r, l->b2, F, &borrowed);
        m->bout_own = !borrowed;
        if (!m->bin || !m->bout)
            return lrp_pipe_oom(r, "attention");
    }
    if (!be->weights_in_place) {
        /* kept by the layer (bnp) for lrp_pipe_free */
        lrp_pipe_layer *P = &r->p->L[li];
        if (!P->bnp[0]) {
            P->bnp[0] = lrp_pipe_tparams(r, l->w, 3 * F * F, &borrowed);
            P->bnp[1] = lrp_pipe_tparams(r, l->w2, F * F, &borrowed);
            P->params_borrowed = borrowed;
            P->n_bnp[0] = 3 * F * F;
            P->n_bnp[1] = F * F;
            if (!P->bnp[0] || !P->bnp[1])
                return lrp_pipe_oom(r, "attention");
        }
        win = P->bnp[0];
        wout = P->bnp[1];
    }
    m->Lin.w = win;
    m->Lin.b = m->bin;
    m->Lout.w = wout;
    m->Lout.b = m->bout;
    if (!(m->qkvL = lrp_pipe_traw(r, BQ * 3 * F)))
        return lrp_pipe_oom(r, "attention");
    lrp_term t = {LRP_IM_ID, LRP_WM_ID, 1.0f};
    lrp_bterm bt = {LRP_BM_ID, 1.0f};
    be->lin_fwd(cx, m->qkvL, &m->Lin, I->act, &t, 1, &bt, l->has_bias, 0, BQ);
    /* every token's keys and values: each rank's rows, gathered */
    m->qkv = m->split ? lrp_pipe_split_gather_rows(r, li, m->qkvL, 3 * F) : m->qkvL;
    if (!m->qkv)
        return r->err->code;
    if (!(m->S = lrp_pipe_traw(r, HQT)) || !(m->A = lrp_pipe_traw(r, HQT)) ||
        !(m->O = lrp_pipe_traw(r, BQ * F)))
        return lrp_pipe_oom(r, "attention");
    /* S (B, h, Tq, T) = c q k^T: our queries, every key */
    lrp_bmm G = {B, H, Tq, T, m->d,
                 Tq * 3 * F, m->d, 3 * F, 1,
                 T * 3 * F, m->d, 1, 3 * F,
                 H * Tq * T, Tq * T, T, 1, l->scale};
    be->bmm(cx, m->S, m->qkvL, be->at(cx, m->qkv, F), &G);
    /* masked (query i, key j) of sample b: causal (j > i) or a padded key;
     * excluded (-inf) or a finite value added to the scores */
    lrp_status st = lrp_pipe_attn_logits_rows(r, l, H, Tq, m->q0, T, m->S, &m->X, &m->mask,
                                              &m->mrows);
    if (st)
        return st;
    be->softmax_fwd(cx, m->A, m->X ? m->X : m->S, m->mask, m->mrows, B * H * Tq, T);
    /* O (B, Tq, F), head h at features h d .. : A (Tq, T) times v (T, d) */
    lrp_bmm G2 = {B, H, Tq, m->d, T,
                  H * Tq * T, Tq * T, T, 1,
                  T * 3 * F, m->d, 3 * F, 1,
                  Tq * F, m->d, F, 1, 1.0f};
    be->bmm(cx, m->O, m->A, be->at(cx, m->qkv, 2 * F), &G2);
    return LRP_OK;
}

static lrp_status mha_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    mha_t m;
    lrp_status st = mha_compute(r, li, &m);
    if (!st) {
        lrp_term t = {LRP_IM_ID, LRP_WM_ID, 1.0f};
        lrp_bterm bt = {LRP_BM_ID, 1.0f};
        be->lin_fwd(be->ctx, P->act, &m.Lout, m.O, &t, 1, &bt, l->has_bias, 0, m.B * m.Tq);
    }
    mha_free(r, &m);
    return st;
}

/* Under the layer split, the per-sample totals of the step wait for one
 * exchange at its end: each stage's rowsum is kept as the exact partial
 * sums of this rank (lrp_backend.rowsum_exact), in the order one process
 * adds them, then every rank adds the same roundings of the same sums. */
typedef struct mha_abs {
    lrp_bytes part;
    int kind[16], n;
} mha_abs;

/* this stage's per-sample sums of sc (B rows of per) into kind k's total */
static lrp_status mha_total(lrp_pipe_state *r, lrp_pipe_layer *P, mha_abs *ma, int k,
                            const void *sc, void *row, int64_t per)
{
    const lrp_backend *be = r->be;
    if (ma) {
        LRP_ASSERT(ma->n < 16);
        ma->kind[ma->n++] = k;
        if (be->rowsum_exact(be->ctx, &ma->part, sc, r->B, per))
            return lrp_pipe_oom(r, "attention (layer split)");
        return LRP_OK;
    }
    if (!P->abs[k] && !(P->abs[k] = lrp_pipe_tnew(r, r->B)))
        return lrp_pipe_oom(r, "attention");
    be->rowsum(be->ctx, row, sc, r->B, per);
    be->ew(be->ctx, LRP_EW_ADD, P->abs[k], P->abs[k], row, 0, 0, r->B);
    return LRP_OK;
}

/* the totals kept in ma, added in their order (every rank the same) */
static lrp_status mha_totals_end(lrp_pipe_state *r, lrp_pipe_layer *P, mha_abs *ma)
{
    const lrp_backend *be = r->be;
    int R = lrp_pipe_split_ranks(r);
    void *all = NULL, *row = NULL;
    const unsigned char **in = malloc((size_t)R * sizeof *in);
    const unsigned char **end = malloc((size_t)R * sizeof *end);
    lrp_status st = LRP_OK;
    if (!in || !end || !(row = lrp_pipe_traw(r, r->B))) {
        st = lrp_pipe_oom(r, "attention");
        lrp_pipe_split_fail(r);
        goto done;
    }
    if (lrp_pipe_split_swap(r, &ma->part, 1, &all, in, end)) {
        st = r->err->code;
        goto done;
    }
    /* B cells, one a sample */
    lrp_bmm G = {r->B, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1.0f};
    for (int i = 0; i < ma->n && !st; i++) {
        int k = ma->kind[i];
        if (!P->abs[k] && !(P->abs[k] = lrp_pipe_tnew(r, r->B))) {
            st = lrp_pipe_oom(r, "attention");
            break;
        }
        if (be->sum_exact(be->ctx, row, &G, in, (const unsigned char *const *)end, R)) {
            st = lrp_err_set(r->err, LRP_E_NOMEM,
                             "<network>: attention: out of memory, or absorbed sums not as sent "
                             "(layer split)");
            break;
        }
        be->ew(be->ctx, LRP_EW_ADD, P->abs[k], P->abs[k], row, 0, 0, r->B);
    }
    /* every rank sent the same stages: nothing left unread */
    for (int q = 0; q < R && !st; q++)
        if (in[q] != end[q])
            st = lrp_err_set(r->err, LRP_E_NOMEM,
                             "<network>: attention: absorbed sums not as sent (layer split)");
done:
    if (row)
        be->tensor_free(be->ctx, row, r->B);
    free(all);
    free(in);
    free(end);
    return st;
}

/* One stabilized division of a stage: s = R / stab(den), its bias (bden,
 * may be NULL) and stabilizer shares and undefined units absorbed into the
 * per-sample totals (B values each, added; under the split kept in ma),
 * flags raised.  The stage's units are (outer, Tq, inner), per = a
 * sample's count of them; under the split the classes of every rank's
 * rows are gathered and the flags raised from the whole layer's, the same
 * on every rank and at one process's places. */
static lrp_status mha_divide(lrp_pipe_state *r, int li, mha_abs *ma, void *s, const void *R,
                             const void *den, const void *bden, int64_t per, int64_t outer,
                             int64_t inner)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t NU = per * r->B;
    lrp_status st = LRP_OK;
    uint8_t *cls = malloc((size_t)(NU ? NU : 1));
    void *sc[LRP_ABS_COUNT] = {NULL};
    void *row = NULL;
    if (!cls) {
        st = lrp_pipe_oom(r, "attention");
        goto done;
    }
    be->stab_div(cx, s, cls, R, den, NULL, P->rule.stab, P->rule.eps, 0, NU);
    if (r->split) {
        int64_t T = lrp_pipe_split_full(r)->layers[li].shape.d[0];
        uint8_t *all = lrp_pipe_split_gather_bytes(r, li, cls, outer, inner);
        if (!all) {
            free(cls);
            return r->err->code;
        }
        lrp_pipe_flags_from_cls(P, all, outer * T * inner, outer * T * inner / r->B);
        free(all);
    } else {
        lrp_pipe_flags_from_cls(P, cls, NU, per);
    }
    if (!r->relonly) {
        const int kinds[3] = {LRP_ABS_BIAS, LRP_ABS_STAB, LRP_ABS_UNDEF};
        if (!(row = lrp_pipe_traw(r, r->B))) {
            st = lrp_pipe_oom(r, "attention");
            goto done;
        }
        for (int q = 0; q < 3; q++)
            if (!(sc[kinds[q]] = lrp_pipe_tnew(r, NU))) {
                st = lrp_pipe_oom(r, "attention");
                goto done;
            }
        be->absorb(cx, sc, R, s, bden, cls, 1.0f, P->rule.eps, NU);
        for (int q = 0; q < 3 && !st; q++) {
            int k = kinds[q];
            if (k == LRP_ABS_BIAS && !bden)
                continue;
            st = mha_total(r, P, ma, k, sc[k], row, per);
        }
    }
done:
    for (int q = 0; q < LRP_ABS_COUNT; q++)
        if (sc[q])
            be->tensor_free(cx, sc[q], NU);
    if (row)
        be->tensor_free(cx, row, r->B);
    free(cls);
    return st;
}

/* the bias term of every unit of a (batch, per) projection output */
static void *mha_bden(lrp_pipe_state *r, const lrp_lin *L, const void *x, int64_t rows)
{
    void *t = lrp_pipe_traw(r, rows * L->n_out);
    if (t) {
        lrp_bterm bt = {LRP_BM_ID, 1.0f};
        r->be->lin_fwd(r->be->ctx, t, L, x, NULL, 0, &bt, 1, 0, rows);
    }
    return t;
}

/* Under the layer split: g_v = A^T s2 and g_k = c s3^T q, sums over every
 * query, for this rank's keys (its rows) into gqkv.  Each rank sends, for
 * each rank's keys, the exact partial sums over its own queries (Gv and
 * Gk with M the keys of that rank), and the sum of all ranks' is rounded
 * once (lrp_backend.sum_exact), as one process's bmm rounds it. */
static lrp_status mha_keys_exact(lrp_pipe_state *r, int li, const mha_t *m, void *gqkv,
                                 lrp_bmm Gv, const void *A, const void *s2, lrp_bmm Gk,
                                 const void *s3, int with_k)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    int R = lrp_pipe_split_ranks(r);
    int64_t F = m->F;
    lrp_bytes *seg = calloc((size_t)R, sizeof *seg);
    const unsigned char **in = malloc((size_t)R * sizeof *in);
    const unsigned char **end = malloc((size_t)R * sizeof *end);
    void *all = NULL;
    lrp_status st = LRP_OK;
    int bad = !seg || !in || !end;
    for (int q = 0; q < R && !bad; q++) {
        int64_t lo, hi;
        lrp_pipe_split_block_of(r, li, q, &lo, &hi);
        lrp_bmm v = Gv, k = Gk;
        v.M = k.M = hi - lo; /* rank q's keys: a's key column from lo */
        bad = be->bmm_exact(cx, &seg[q], be->at(cx, A, lo), s2, &v) ||
              (with_k && be->bmm_exact(cx, &seg[q], be->at(cx, s3, lo), m->qkvL, &k));
    }
    if (bad) {
        st = lrp_pipe_oom(r, "attention (layer split)");
        lrp_pipe_split_fail(r);
        goto done;
    }
    if (lrp_pipe_split_swap(r, seg, R, &all, in, end)) {
        st = r->err->code;
        goto done;
    }
    /* our keys' cells, (b, h, key, j) in the order the sums were sent */
    lrp_bmm O = {m->B, m->H, m->Tq, m->d, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                 m->Tq * 3 * F, m->d, 3 * F, 1, Gv.c};
    bad = be->sum_exact(cx, be->at(cx, gqkv, 2 * F), &O, in, (const unsigned char *const *)end, R);
    O.c = Gk.c;
    if (!bad && with_k)
        bad = be->sum_exact(cx, be->at(cx, gqkv, F), &O, in, (const unsigned char *const *)end, R);
    for (int q = 0; q < R && !bad; q++)
        bad = in[q] != end[q];
    if (bad)
        st = lrp_err_set(r->err, LRP_E_NOMEM,
                         "<network>: attention: out of memory, or partial sums not as sent "
                         "(layer split)");
done:
    for (int q = 0; seg && q < R; q++)
        lrp_bytes_free(&seg[q]);
    free(seg);
    free(in);
    free(end);
    free(all);
    return st;
}

static lrp_status mha_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    int cp = l->rule.rule == LRP_RULE_CPLRP;
    mha_t m;
    lrp_status st;
    mha_abs mabs = {{0}, {0}, 0};
    mha_abs *ma = NULL;
    void *s1 = NULL, *rO = NULL, *gA = NULL, *RA = NULL, *RS = NULL, *gqkv = NULL, *bd = NULL;
    void *ab = NULL, *am = NULL, *row = NULL;
    P->n_units = 1;
    P->n_parts = 0;
    if ((st = mha_compute(r, li, &m)))
        goto done;
    /* the totals wait for the end of the step under the split */
    if (m.split && !r->relonly)
        ma = &mabs;
    int64_t B = m.B, T = m.T, Tq = m.Tq, F = m.F, H = m.H, BQ = B * Tq, HQT = B * H * Tq * T;
    if (!r->relonly) {
        int k[] = {LRP_ABS_BIAS, LRP_ABS_STAB, LRP_ABS_SOFTMAX_BIAS, LRP_ABS_MASK};
        if ((st = lrp_pipe_alloc_abs(r, P, 1, k, 4)))
            goto done;
        P->n_units = 1;
    }
    if (!(s1 = lrp_pipe_traw(r, BQ * F)) || !(rO = lrp_pipe_traw(r, BQ * F)) ||
        !(gqkv = lrp_pipe_tnew(r, BQ * 3 * F))) {
        st = lrp_pipe_oom(r, "attention");
        goto done;
    }
    /* out projection */
    if (l->has_bias && !r->relonly && !(bd = mha_bden(r, &m.Lout, m.O, BQ))) {
        st = lrp_pipe_oom(r, "attention");
        goto done;
    }
    if ((st = mha_divide(r, li, ma, s1, R, P->act, bd, Tq * F, B, F)))
        goto done;
    if (bd)
        be->tensor_free(cx, bd, BQ * F);
    bd = NULL;
    lrp_term t = {LRP_IM_ID, LRP_WM_ID, 1.0f};
    lrp_bwd_part bp = {1.0f, s1, &t, 1};
    be->lin_bwd(cx, rO, &m.Lout, m.O, &bp, 1, BQ);
    /* O = A v: s2 (reusing s1) */
    if ((st = mha_divide(r, li, ma, s1, rO, m.O, NULL, Tq * F, B, F)))
        goto done;
    /* g_v (into gqkv's v block) = A^T s2: for each key a sum over the
     * queries (the rank's Tq: under the split, exact partial sums below) */
    lrp_bmm Gv = {B, H, T, m.d, Tq,
                  H * Tq * T, Tq * T, 1, T,
                  Tq * F, m.d, F, 1,
                  T * 3 * F, m.d, 3 * F, 1, 1.0f};
    if (!m.split)
        be->bmm(cx, be->at(cx, gqkv, 2 * F), m.A, s1, &Gv);
    /* g_k = c s3^T q, the same way */
    lrp_bmm Gk = {B, H, T, m.d, Tq,
                  H * Tq * T, Tq * T, 1, T,
                  Tq * 3 * F, m.d, 3 * F, 1,
                  T * 3 * F, m.d, 3 * F, 1, l->scale};
    if (!cp) {
        /* g_A = s2 v^T, R_A = 1/2 A g_A */
        if (!(gA = lrp_pipe_traw(r, HQT)) || !(RA = lrp_pipe_traw(r, HQT)) ||
            !(RS = lrp_pipe_traw(r, HQT)) || !(ab = lrp_pipe_traw(r, B * H * Tq)) ||
            !(am = lrp_pipe_traw(r, B * H * Tq)) || !(row = lrp_pipe_traw(r, B))) {
            st = lrp_pipe_oom(r, "attention");
            goto done;
        }
        lrp_bmm GA = {B, H, Tq, T, m.d,
                      Tq * F, m.d, F, 1,
                      T * 3 * F, m.d, 1, 3 * F,
                      H * Tq * T, Tq * T, T, 1, 1.0f};
        be->bmm(cx, gA, s1, be->at(cx, m.qkv, 2 * F), &GA);
        be->ew(cx, LRP_EW_MUL, RA, m.A, gA, 0, 0, HQT);
        be->ew(cx, LRP_EW_SCALE, RA, RA, NULL, 0.5f, 0, HQT);
        /* softmax Taylor at X, read at S */
        be->softmax_taylor(cx, RS, ab, am, m.X ? m.X : m.S, m.S, m.A, RA, m.mask,
                           m.mrows ? m.mrows : 1, B * H * Tq, T);
        if (!r->relonly) {
            if ((st = mha_total(r, P, ma, LRP_ABS_SOFTMAX_BIAS, ab, row, H * Tq)) ||
                (st = mha_total(r, P, ma, LRP_ABS_MASK, am, row, H * Tq)))
                goto done;
        }
        /* S = c q k^T: s3 (into gA) */
        if ((st = mha_divide(r, li, ma, gA, RS, m.S, NULL, H * Tq * T, B * H, T)))
            goto done;
        /* g_q: our queries, every key */
        lrp_bmm Gq = {B, H, Tq, m.d, T,
                      H * Tq * T, Tq * T, T, 1,
                      T * 3 * F, m.d, 3 * F, 1,
                      Tq * 3 * F, m.d, 3 * F, 1, l->scale};
        be->bmm(cx, gqkv, gA, be->at(cx, m.qkv, F), &Gq);
        if (!m.split)
            be->bmm(cx, be->at(cx, gqkv, F), gA, m.qkvL, &Gk);
    }
    if (m.split && (st = mha_keys_exact(r, li, &m, gqkv, Gv, m.A, s1, Gk, gA, !cp)))
        goto done;
    /* R_qkv = qkv g (halved under the uniform rule), in gqkv */
    be->ew(cx, LRP_EW_MUL, gqkv, m.qkvL, gqkv, 0, 0, BQ * 3 * F);
    if (!cp)
        be->ew(cx, LRP_EW_SCALE, gqkv, gqkv, NULL, 0.5f, 0, BQ * 3 * F);
    /* in projection: s4 into a fresh tensor, then R_x */
    {
        void *s4 = lrp_pipe_traw(r, BQ * 3 * F);
        if (!s4) {
            st = lrp_pipe_oom(r, "attention");
            goto done;
        }
        if (l->has_bias && !r->relonly && !(bd = mha_bden(r, &m.Lin, I->act, BQ))) {
            be->tensor_free(cx, s4, BQ * 3 * F);
            st = lrp_pipe_oom(r, "attention");
            goto done;
        }
        st = mha_divide(r, li, ma, s4, gqkv, m.qkvL, bd, Tq * 3 * F, B, 3 * F);
        if (!st) {
            lrp_bwd_part bq = {1.0f, s4, &t, 1};
            be->lin_bwd(cx, P->rin[0], &m.Lin, I->act, &bq, 1, BQ);
        }
        be->tensor_free(cx, s4, BQ * 3 * F);
        if (bd)
            be->tensor_free(cx, bd, BQ * 3 * F);
        bd = NULL;
    }
    if (!st && ma)
        st = mha_totals_end(r, P, ma);
done:
    lrp_bytes_free(&mabs.part);
    if (s1)
        be->tensor_free(cx, s1, m.B * m.Tq * m.F);
    if (rO)
        be->tensor_free(cx, rO, m.B * m.Tq * m.F);
    if (gqkv)
        be->tensor_free(cx, gqkv, m.B * m.Tq * 3 * m.F);
    int64_t hn = m.B * m.H * m.Tq * m.T;
    if (gA)
        be->tensor_free(cx, gA, hn);
    if (RA)
        be->tensor_free(cx, RA, hn);
    if (RS)
        be->tensor_free(cx, RS, hn);
    if (ab)
        be->tensor_free(cx, ab, m.B * m.H * m.Tq);
    if (am)
        be->tensor_free(cx, am, m.B * m.H * m.Tq);
    if (row)
        be->tensor_free(cx, row, m.B);
    mha_free(r, &m);
    return st;
}

const lrp_kind_desc lrp_kind_MHA = {
    .kind = LRP_LAYER_MHA,
    .family = "attention",
    .role = LRP_ROLE_OWN,
    .default_rule = LRP_RULE_ATTNLRP,
    .rules = LRP_RULE_BIT(ATTNLRP) | LRP_RULE_BIT(CPLRP),
    .attrs = mha_attrs,
    .n_attrs = sizeof mha_attrs / sizeof mha_attrs[0],
    .param_shape = mha_param_shape,
    .bias_optional = 1,
    .param_in_dim = {-1, -1, -1, -1, -1, -1, 1, -1, 1, -1, -1},
    .infer = mha_infer,
    .macs = mha_macs,
    .geometry = mha_geometry,
    .forward = mha_forward,
    .lrp_step = mha_lrp,
    .format_version = 2,
};
