/*
 * kind_token.c -- the layer kinds of token sequences (core/kinds.h):
 * LayerNorm, RMSNorm and the elementwise activations GELU, SiLU, Tanh
 * (docs/TRANSFORMERS.md sections 2 and 3).  All act on the last axis of a
 * (T, F) sequence (or of a flat (F) vector: one token).  Files with these
 * kinds are format_version 2 (docs/FORMAT.md).
 *
 * LayerNorm (inference):  mu = mean x,  var = mean (x - mu)^2 (two passes,
 * biased),  sigma = sqrt(var + eps),  y_k = w_k (x_k - mu) / sigma + b_k;
 * w and b optional (has_weight, has_bias); eps binary32, >= 0.
 * RMSNorm:  sigma = sqrt(mean x^2 + eps),  y_k = w_k x_k / sigma.
 * eps = 0 is accepted: a constant row of a LayerNorm (or a zero row of an
 * RMSNorm) is then 0/0, NaN in the forward of every path; the layer's
 * flag undefined_forward names the first such row, and the oracle names
 * it as the first NaN's origin (docs/TRANSFORMERS.md 2.4).
 *
 * LRP (sigma frozen at its forward value, so the layer is linear in x):
 *   ln_linear (default)  s_k = R_k / stab(y_k) (the rule's eps and
 *        convention; y includes the bias, docs/SPEC.md section 5),
 *        R_i = (w_i / sigma) x_i s_i - (x_i / F) sum_k (w_k / sigma) s_k:
 *        the mean's share goes back to the inputs in proportion to x_i.
 *        Absorbed: bias = sum_k b_k s_k, stabilizer = sum_k (stab(y_k) -
 *        y_k) s_k, undefined = R_k where y_k = 0 without a stabilizer.
 *        Conservation per row: sum R_i + bias + stabilizer (+ undefined)
 *        = sum R_k, since sum_i R_i = sum_k (y_k - b_k) s_k.
 *   ln_fine  R_i = (w_i / sigma) x_i s_i; the mean's share is absorbed as
 *        ln_mean = sum_k -(w_k / sigma) mu s_k (like BatchNorm's bn_fine).
 *   identity  R crosses unchanged (LayerNorm; RMSNorm's only rule: its
 *        frozen-r linear rule without a stabilizer is this identity,
 *        R_k y_k / y_k).
 * Activations: identity (AttnLRP's rule for elementwise maps: R_x = R_y),
 * nothing absorbed.  With eps > 0 the identity is LXT's implicit one
 * (lxt/efficient/rules.py identity_rule_implicit: the output's gradient
 * times f(x) / (x + eps), so R_x = R_y x / (x + eps)): R_x = x R_y /
 * stab(x) with the rule's eps and convention (LXT: 1e-10, positive), the
 * stabilizer's share absorbed -- the epsilon rule's split with the input
 * as its own denominator.  Only the activations take an eps on identity.
 */
#include "kinds.h"
#include "pipeline_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* (rows, F) of a layer acting on the last axis of its input */
static void last_axis(const lrp_net *net, int li, int64_t B, int64_t *rows, int64_t *F)
{
    const lrp_shape *s = &net->layers[net->layers[li].in[0]].shape;
    *F = s->d[s->rank - 1];
    *rows = B * (lrp_shape_numel(s) / *F);
}

static lrp_status last_axis_infer(lrp_net *net, int li, const char *f, lrp_err *err,
                                  lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    if (in->rank != 1 && in->rank != 2)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': %s needs a token sequence (T, F) or a flat (F) input, got rank %d",
                           f, l->name, lrp_layer_kind_name(l->kind), in->rank);
    *o = *in;
    return LRP_OK;
}

static int64_t numel_macs(const lrp_net *net, int li)
{
    return lrp_shape_numel(&net->layers[li].shape);
}

/* ---- LayerNorm, RMSNorm ---- */

static const lrp_kind_attr ln_attrs[] = {
    LRP_KA("eps", LRP_A_F32, bn_eps),
    LRP_KA("has_weight", LRP_A_BOOL, has_weight),
    LRP_KA("has_bias", LRP_A_BOOL, has_bias),
};

static const lrp_kind_attr rms_attrs[] = {
    LRP_KA("eps", LRP_A_F32, bn_eps),
    LRP_KA("has_weight", LRP_A_BOOL, has_weight),
};

static int norm_param_shape(const lrp_net *net, int li, int which, lrp_shape *out)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    memset(out, 0, sizeof *out);
    if ((which == LRP_P_WEIGHT && l->has_weight) ||
        (which == LRP_P_BIAS && l->has_bias && l->kind == LRP_LAYER_LAYERNORM)) {
        out->rank = 1;
        out->d[0] = in->d[in->rank - 1];
        return 1;
    }
    return 0;
}

static lrp_status norm_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    /* eps = 0 is accepted (PyTorch allows it): a constant row is then 0/0,
     * which depends on the input and is reported, not refused */
    if (!isfinite(l->bn_eps) || l->bn_eps < 0.0f)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': %s eps %g must be finite and >= 0",
                           f, l->name, lrp_layer_kind_name(l->kind), (double)l->bn_eps);
    if (l->kind == LRP_LAYER_RMSNORM && l->has_bias)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': RMSNorm has no bias (has_bias 1)",
                           f, l->name);
    return last_axis_infer(net, li, f, err, o);
}

static void norm_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "eps=%g%s%s", (double)l->bn_eps, l->has_weight ? " +weight" : "",
             l->has_bias ? " +bias" : "");
}

static lrp_status norm_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    int64_t rows, F;
    last_axis(net, li, r->B, &rows, &F);
    /* (mu, sigma) per row, for the LRP step and the flags */
    P->n_bnp[0] = 2 * rows;
    if (!(P->bnp[0] = lrp_pipe_tnew(r, 2 * rows)))
        return lrp_pipe_oom(r, "norm statistics");
    be->norm_fwd(cx, P->act, P->bnp[0], I->act, l->has_weight ? l->w : NULL,
                 l->has_bias ? l->b : NULL, l->bn_eps, l->kind == LRP_LAYER_RMSNORM, rows, F);
    /* sigma = 0: the row's forward is 0/0 (eps 0); flagged at (sample,
     * first cell of the row) so that the oracle can name the origin (a NaN
     * sigma comes from a NaN input: not this layer's doing) */
    uint8_t *c = malloc((size_t)(2 * rows));
    if (!c)
        return lrp_pipe_oom(r, "norm statistics");
    be->classify(cx, c, P->bnp[0], 2 * rows);
    int64_t per = rows / r->B; /* rows per sample */
    for (int64_t q = 0; q < rows; q++)
        if (c[2 * q + 1] & LRP_V_ZERO)
            lrp_nflags_raise(&P->flags, LRP_NF_FWD_UNDEF, q / per, (q % per) * F);
    free(c);
    return LRP_OK;
}

static int norm_through(const lrp_layer *l)
{
    return l->rule.rule == LRP_RULE_IDENTITY || l->rule.rule == LRP_RULE_PASS;
}

/* ln_linear / ln_fine: s = R / stab(y) over every output cell (one part,
 * den = y), the bias's and the stabilizer's shares absorbed by the
 * backend's absorb (bden = b broadcast over the rows), the input's share by
 * norm_bwd. */
static lrp_status norm_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    if (norm_through(l))
        return LRP_OK;
    LRP_ASSERT(l->rule.rule == LRP_RULE_LN_LINEAR || l->rule.rule == LRP_RULE_LN_FINE);
    int fine = l->rule.rule == LRP_RULE_LN_FINE;
    int64_t rows, F, n = P->n * r->B;
    last_axis(net, li, r->B, &rows, &F);
    lrp_status st = LRP_OK;
    void *s = NULL, *bden = NULL;
    int kinds[3] = {LRP_ABS_BIAS, LRP_ABS_STAB, LRP_ABS_LN_MEAN};
    P->n_units = P->n;
    if (!r->relonly && (st = lrp_pipe_alloc_abs(r, P, P->n, kinds, fine ? 3 : 2)))
        return st;
    P->n_parts = 1;
    if ((st = lrp_pipe_part_setup(r, P, 0, 1.0f, P->n)))
        return st;
    P->den[0] = P->act;
    P->owns_den[0] = 0;
    if (!(s = lrp_pipe_traw(r, n)))
        return lrp_pipe_oom(r, "norm quotients");
    be->stab_div(cx, s, P->cls[0], R, P->act, NULL, l->rule.stab, l->rule.eps, 0, n);
    if (!r->relonly) {
        if ((st = lrp_pipe_ensure_lost(r, P, P->cls[0], n)))
            goto done;
        if (l->has_bias) {
            int borrowed = 0;
            void *bt = lrp_pipe_tparams(r, l->b, F, &borrowed);
            if (!bt || !(bden = lrp_pipe_traw(r, n))) {
                if (bt && !borrowed)
                    be->tensor_free(cx, bt, F);
                st = lrp_pipe_oom(r, "norm bias");
                goto done;
            }
            /* bden[q F + k] = b_k */
            be->row(cx, LRP_ROW_SET, bden, NULL, bt, n, 1, F);
            if (!borrowed)
                be->tensor_free(cx, bt, F);
        }
        be->absorb(cx, P->abs, R, s, bden, P->cls[0], 1.0f, l->rule.eps, n);
    }
    lrp_pipe_flags_from_cls(P, P->cls[0], n, P->n);
    be->norm_bwd(cx, P->rin[0], fine ? P->abs[LRP_ABS_LN_MEAN] : NULL, I->act, P->bnp[0],
                 l->has_weight ? l->w : NULL, s, !fine, rows, F);
done:
    if (bden)
        be->tensor_free(cx, bden, n);
    be->tensor_free(cx, s, n);
    return st;
}

const lrp_kind_desc lrp_kind_LAYERNORM = {
    .kind = LRP_LAYER_LAYERNORM,
    .family = "token",
    .role = LRP_ROLE_OWN,
    .default_rule = LRP_RULE_LN_LINEAR,
    .rules = LRP_RULE_BIT(LN_LINEAR) | LRP_RULE_BIT(LN_FINE) | LRP_RULE_BIT(IDENTITY),
    .attrs = ln_attrs,
    .n_attrs = sizeof ln_attrs / sizeof ln_attrs[0],
    .param_shape = norm_param_shape,
    .bias_optional = 1, /* and the weight (has_weight): h5io's reader */
    .param_in_dim = {0, 0, -1, -1, -1, -1},
    .infer = norm_infer,
    .macs = numel_macs,
    .geometry = norm_geometry,
    .forward = norm_forward,
    .lrp_step = norm_lrp,
    .through = norm_through,
    .format_version = 2,
};

const lrp_kind_desc lrp_kind_RMSNORM = {
    .kind = LRP_LAYER_RMSNORM,
    .family = "token",
    .role = LRP_ROLE_OWN,
    .default_rule = LRP_RULE_IDENTITY,
    .rules = LRP_RULE_BIT(IDENTITY),
    .attrs = rms_attrs,
    .n_attrs = sizeof rms_attrs / sizeof rms_attrs[0],
    .param_shape = norm_param_shape,
    .bias_optional = 1,
    .param_in_dim = {0, -1, -1, -1, -1, -1},
    .infer = norm_infer,
    .macs = numel_macs,
    .geometry = norm_geometry,
    .forward = norm_forward,
    .lrp_step = norm_lrp,
    .through = norm_through,
    .format_version = 2,
};

/* ---- GELU, SiLU, Tanh: elementwise, rule identity ---- */

static const lrp_kind_attr gelu_attrs[] = {
    {"approximate", LRP_A_ENUM, LRP_ENUM_GELU_APPROXIMATE, {offsetof(lrp_layer, approximate)}},
};

static lrp_status act_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    if (l->kind == LRP_LAYER_GELU && (l->approximate < 0 || l->approximate > 1))
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': GELU approximate %d is not 0 (none) or 1 (tanh)", f,
                           l->name, l->approximate);
    return last_axis_infer(net, li, f, err, o);
}

static void gelu_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "approximate=%s", l->approximate ? "tanh" : "none");
}

static lrp_status act_forward(lrp_pipe_state *r, int li)
{
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    int op = l->kind == LRP_LAYER_SILU ? LRP_ACT_SILU
             : l->kind == LRP_LAYER_TANH ? LRP_ACT_TANH
             : l->approximate ? LRP_ACT_GELU_TANH
                              : LRP_ACT_GELU;
    r->be->act_map(r->be->ctx, P->act, r->p->L[l->in[0]].act, op, P->n * r->B);
    return LRP_OK;
}

static int act_through(const lrp_layer *l)
{
    return l->rule.eps == 0.0f; /* identity: R_x = R_y */
}

/* identity with eps > 0 (LXT's implicit identity): R_x = x R_y / stab(x) */
static lrp_status act_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_layer *l = &r->p->net->layers[li];
    if (act_through(l))
        return LRP_OK; /* rin[0] is R itself */
    lrp_pipe_layer *P = &r->p->L[li];
    const void *x = r->p->L[l->in[0]].act;
    const void *v[1] = {x};
    int ak[2] = {LRP_ABS_STAB, LRP_ABS_STAB};
    return lrp_pipe_back_split(r, P, R, x, v, 1, 1, P->rin, ak, P->n * r->B, P->n);
}

#define ACT_KIND(E, ATTRS, NATTRS, GEOM)                                                     \
    const lrp_kind_desc lrp_kind_##E = {                                                     \
        .kind = LRP_LAYER_##E,                                                               \
        .family = "token",                                                                   \
        .role = LRP_ROLE_OWN,                                                                \
        .default_rule = LRP_RULE_IDENTITY,                                                   \
        .rules = LRP_RULE_BIT(IDENTITY),                                                     \
        .attrs = ATTRS,                                                                      \
        .n_attrs = NATTRS,                                                                   \
        .infer = act_infer,                                                                  \
        .macs = numel_macs,                                                                  \
        .geometry = GEOM,                                                                    \
        .forward = act_forward,                                                              \
        .lrp_step = act_lrp,                                                                 \
        .through = act_through,                                                              \
        .format_version = 2,                                                                 \
    }

ACT_KIND(GELU, gelu_attrs, 1, gelu_geometry);
ACT_KIND(SILU, NULL, 0, NULL);
ACT_KIND(TANH, NULL, 0, NULL);
