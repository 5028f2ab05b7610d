/*
 * kind_linear.c -- the linear layer kinds, Dense and Conv2D (core/kinds.h):
 * file schema, parameters, shape inference, cost.  Their LRP rules are the
 * rows of core/ruletab.c, applied by core/pipeline.c.
 *
 * Dense: y = W x + b, W (units, in), x flat; on a token sequence (T, F)
 * the same map on every row (output (T, units); lrp_lin.rows = T).
 * Conv2D: weight (out, in/groups, kh, kw) as PyTorch stores it, zero
 * padding per side, stride, dilation, groups (depthwise: groups = C).
 */
#include "kinds.h"
#include "pipeline_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* every linear rule; pass and wta are not linear rules */
#define LINEAR_RULES                                                                      \
    (LRP_RULE_BIT(ZERO) | LRP_RULE_BIT(EPSILON) | LRP_RULE_BIT(GAMMA) |                    \
     LRP_RULE_BIT(ALPHABETA) | LRP_RULE_BIT(ZPLUS) | LRP_RULE_BIT(WSQUARE) |               \
     LRP_RULE_BIT(FLAT) | LRP_RULE_BIT(ZBOX))

static int linear_param_shape(const lrp_net *net, int li, int which, lrp_shape *out)
{
    const lrp_layer *l = &net->layers[li];
    memset(out, 0, sizeof *out);
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    if (which == LRP_P_WEIGHT) {
        if (l->kind == LRP_LAYER_DENSE) {
            /* (units, F): a token sequence (T, F) is mapped row by row */
            out->rank = 2;
            out->d[0] = l->units;
            out->d[1] = in->d[in->rank - 1];
            return 1;
        }
        /* Rank-4 weight flattened to (units, C/g * kh * kw) by callers
         * that need rank <= 3; loaders check the 4 dims themselves. */
        out->rank = 3;
        out->d[0] = l->units;
        out->d[1] = in->d[0] / l->groups;
        out->d[2] = (int64_t)l->kh * l->kw;
        return 1;
    }
    if (which == LRP_P_BIAS && l->has_bias) {
        out->rank = 1;
        out->d[0] = l->units;
        return 1;
    }
    return 0;
}

/* y = W x + b over the backend (lrp_backend.lin_fwd); the parameters as
 * backend tensors for the LRP step (a view when the backend shows binary32
 * in place). */
static lrp_status linear_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    lrp_lin L;
    lrp_pipe_lin_geom_run(r, &L, li); /* under the layer split: our output block */
    int64_t nw = L.O * L.fanin;
    int borrowed = 0;
    if (!be->weights_in_place) {
        P->bnp[0] = lrp_pipe_tparams(r, l->w, nw, &borrowed);
        P->params_borrowed = borrowed;
        if (!P->bnp[0])
            return lrp_pipe_oom(r, "weights");
    }
    if (l->has_bias) {
        P->bnp[1] = lrp_pipe_tparams(r, l->b, L.O, &borrowed);
        if (!P->bnp[1])
            return lrp_pipe_oom(r, "bias");
    }
    P->bn_C = L.O; /* element counts of bnp[0], bnp[1] below */
    P->n_bnp[0] = nw;
    P->n_bnp[1] = L.O;
    L.w = P->bnp[0];
    L.b = P->bnp[1];
    lrp_term t = {LRP_IM_ID, LRP_WM_ID, 1.0f};
    lrp_bterm bt = {LRP_BM_ID, 1.0f};
    if (!r->split || lrp_pipe_split_local(r, li)) {
        be->lin_fwd(cx, P->act, &L, I->act, &t, 1, &bt, l->has_bias, 0, r->B * L.rows);
        return LRP_OK;
    }
    /* the layer split: every rank's block of the input, for the moment of
     * this step (the weights' rows of our output block need all of it) */
    void *x = lrp_pipe_split_gather(r, l->in[0], I->act);
    if (!x)
        return r->err->code;
    be->lin_fwd(cx, P->act, &L, x, &t, 1, &bt, l->has_bias, 0, r->B * L.rows);
    be->tensor_free(cx, x, L.n_in * L.rows * r->B);
    return LRP_OK;
}

/* the rule's descriptor row (core/ruletab.c) applied by the pipeline */
static lrp_status linear_lrp(lrp_pipe_state *r, int li, const void *R)
{
    return lrp_pipe_back_linear(r, li, R, r->p->L[li].rin[0]);
}

/* ---- Dense ---- */

static const lrp_kind_attr dense_attrs[] = {
    LRP_KA("units", LRP_A_I64, units),
    LRP_KA("has_bias", LRP_A_BOOL, has_bias),
};

static lrp_status dense_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    /* flat (F), or a token sequence (T, F) mapped on its last axis
     * (docs/TRANSFORMERS.md section 1) */
    if (in->rank != 1 && in->rank != 2)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': Dense needs a flat input (F) or a token sequence (T, F), got rank %d (add a Flatten)",
                           f, l->name, in->rank);
    int64_t F = in->d[in->rank - 1], T = in->rank == 2 ? in->d[0] : 1;
    if (l->units < 1 || l->units > LRP_MAX_DIM)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': units %lld out of range", f,
                           l->name, (long long)l->units);
    if (F * l->units > LRP_MAX_ELEMS)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': weight too large (%lld x %lld)",
                           f, l->name, (long long)l->units, (long long)F);
    if (T * l->units > LRP_MAX_ELEMS)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': output too large (%lld x %lld)",
                           f, l->name, (long long)T, (long long)l->units);
    o->rank = in->rank;
    if (in->rank == 2)
        o->d[0] = T;
    o->d[in->rank - 1] = l->units;
    return LRP_OK;
}

static int64_t dense_macs(const lrp_net *net, int li)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    return l->units * lrp_shape_numel(in);
}

static void dense_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "%" PRId64 " units%s", l->units, l->has_bias ? " +bias" : "");
}

const lrp_kind_desc lrp_kind_DENSE = {
    .kind = LRP_LAYER_DENSE,
    .family = "linear",
    .role = LRP_ROLE_LINEAR,
    .default_rule = LRP_RULE_ZERO,
    .rules = LINEAR_RULES,
    .attrs = dense_attrs,
    .n_attrs = sizeof dense_attrs / sizeof dense_attrs[0],
    .param_shape = linear_param_shape,
    .bias_optional = 1,
    .param_in_dim = {1, -1, -1, -1, -1, -1},
    .infer = dense_infer,
    .macs = dense_macs,
    .geometry = dense_geometry,
    .forward = linear_forward,
    .lrp_step = linear_lrp,
};

/* ---- Conv2D ---- */

static const lrp_kind_attr conv_attrs[] = {
    LRP_KA("units", LRP_A_I64, units),
    LRP_KA("has_bias", LRP_A_BOOL, has_bias),
    {"kernel", LRP_A_I32V, 2, {offsetof(lrp_layer, kh), offsetof(lrp_layer, kw)}},
    {"stride", LRP_A_I32V, 2, {offsetof(lrp_layer, sh), offsetof(lrp_layer, sw)}},
    {"padding", LRP_A_I32V, 4,
     {offsetof(lrp_layer, pt), offsetof(lrp_layer, pb), offsetof(lrp_layer, pl),
      offsetof(lrp_layer, pr)}},
    {"dilation", LRP_A_I32V, 2, {offsetof(lrp_layer, dh), offsetof(lrp_layer, dw)}},
    LRP_KA("groups", LRP_A_I32, groups),
};

static lrp_status conv_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    lrp_status st;
    if (in->rank != 3)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': Conv2D needs (C, H, W), got rank %d",
                           f, l->name, in->rank);
    if ((st = lrp_check_window(l, f, err, 1)))
        return st;
    if (l->units < 1 || l->units > LRP_MAX_DIM)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': out channels %lld out of range",
                           f, l->name, (long long)l->units);
    if (l->groups < 1 || in->d[0] % l->groups || l->units % l->groups)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': groups %d must divide in channels %lld and out channels %lld",
                           f, l->name, l->groups, (long long)in->d[0], (long long)l->units);
    int64_t ho = lrp_window_out(in->d[1], l->pt, l->pb, l->kh, l->dh, l->sh);
    int64_t wo = lrp_window_out(in->d[2], l->pl, l->pr, l->kw, l->dw, l->sw);
    if (ho < 1 || wo < 1)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': kernel %dx%d (dilation %dx%d) larger than padded input %lldx%lld",
                           f, l->name, l->kh, l->kw, l->dh, l->dw,
                           (long long)(in->d[1] + l->pt + l->pb), (long long)(in->d[2] + l->pl + l->pr));
    int64_t wn = l->units * (in->d[0] / l->groups) * l->kh * l->kw;
    if (wn > LRP_MAX_ELEMS)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': weight too large", f, l->name);
    o->rank = 3;
    o->d[0] = l->units;
    o->d[1] = ho;
    o->d[2] = wo;
    return LRP_OK;
}

static int64_t conv_macs(const lrp_net *net, int li)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    return lrp_shape_numel(&l->shape) * (in->d[0] / l->groups) * l->kh * l->kw;
}

static void conv_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "%" PRId64 "ch %dx%d s%dx%d p%d,%d,%d,%d d%dx%d g%d%s", l->units, l->kh,
             l->kw, l->sh, l->sw, l->pt, l->pb, l->pl, l->pr, l->dh, l->dw, l->groups,
             l->has_bias ? " +bias" : "");
}

const lrp_kind_desc lrp_kind_CONV2D = {
    .kind = LRP_LAYER_CONV2D,
    .family = "linear",
    .role = LRP_ROLE_LINEAR,
    .default_rule = LRP_RULE_ZERO,
    .rules = LINEAR_RULES,
    .attrs = conv_attrs,
    .n_attrs = sizeof conv_attrs / sizeof conv_attrs[0],
    .param_shape = linear_param_shape,
    .weight_rank4 = 1,
    .bias_optional = 1,
    .param_in_dim = {1, -1, -1, -1, -1, -1},
    .infer = conv_infer,
    .macs = conv_macs,
    .geometry = conv_geometry,
    .forward = linear_forward,
    .lrp_step = linear_lrp,
};
