/*
 * kind_norm.c -- the layer kinds whose relevance is a proportional split
 * of a sum (Zennit's "Norm" layers): BatchNorm and Add (core/kinds.h):
 * file schema, parameters, shape inference, cost.
 *
 * BatchNorm (inference): y = gamma (x - mean) / sqrt(var + bn_eps) + beta
 * per channel (axis 0 of (C, H, W), or the features of a flat input);
 * explicit (lrp0 / epsilon / alpha-beta on its identity decomposition,
 * docs/SPEC.md 3.3), pass, or folded into the preceding linear layer
 * (flag bn_canonize).  Add: the sum of 2..16 inputs of one shape.
 */
#include "kinds.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- BatchNorm ---- */

static const lrp_kind_attr bn_attrs[] = {
    LRP_KA("bn_eps", LRP_A_F32, bn_eps),
};

static int bn_param_shape(const lrp_net *net, int li, int which, lrp_shape *out)
{
    const lrp_layer *l = &net->layers[li];
    memset(out, 0, sizeof *out);
    if (which >= LRP_P_GAMMA && which <= LRP_P_VAR) {
        out->rank = 1;
        out->d[0] = net->layers[l->in[0]].shape.d[0];
        return 1;
    }
    return 0;
}

static lrp_status bn_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    if (!isfinite(l->bn_eps) || l->bn_eps < 0.0f)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': BatchNorm epsilon %g must be finite and >= 0", f,
                           l->name, (double)l->bn_eps);
    *o = net->layers[l->in[0]].shape;
    return LRP_OK;
}

static int64_t same_numel_macs(const lrp_net *net, int li)
{
    return lrp_shape_numel(&net->layers[li].shape);
}

static void bn_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "eps=%g", (double)l->bn_eps);
}

const lrp_kind_desc lrp_kind_BATCHNORM = {
    .kind = LRP_LAYER_BATCHNORM,
    .family = "norm",
    .role = LRP_ROLE_NORM,
    .default_rule = LRP_RULE_ZERO,
    /* pass: relevance crosses unchanged (Zennit without a canonizer,
     * Captum's IdentityRule) */
    .rules = LRP_RULE_BIT(ZERO) | LRP_RULE_BIT(EPSILON) | LRP_RULE_BIT(ALPHABETA) |
             LRP_RULE_BIT(PASS),
    .attrs = bn_attrs,
    .n_attrs = sizeof bn_attrs / sizeof bn_attrs[0],
    .param_shape = bn_param_shape,
    .param_in_dim = {-1, -1, 0, 0, 0, 0},
    .infer = bn_infer,
    .macs = same_numel_macs,
    .geometry = bn_geometry,
};

/* ---- Add ---- */

static lrp_status add_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    char b1[64], b2[64];
    for (int k = 1; k < l->n_in; k++) {
        const lrp_shape *s = &net->layers[l->in[k]].shape;
        if (s->rank != in->rank || memcmp(s->d, in->d, sizeof(int64_t) * (size_t)in->rank)) {
            lrp_shape_str(b1, sizeof b1, in);
            lrp_shape_str(b2, sizeof b2, s);
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': Add inputs differ in shape: '%s' %s vs '%s' %s",
                               f, l->name, net->layers[l->in[0]].name, b1,
                               net->layers[l->in[k]].name, b2);
        }
    }
    *o = *in;
    return LRP_OK;
}

static int64_t add_macs(const lrp_net *net, int li)
{
    const lrp_layer *l = &net->layers[li];
    return lrp_shape_numel(&l->shape) * (l->n_in - 1);
}

const lrp_kind_desc lrp_kind_ADD = {
    .kind = LRP_LAYER_ADD,
    .family = "norm",
    .role = LRP_ROLE_NORM,
    .default_rule = LRP_RULE_ZERO,
    .rules = LRP_RULE_BIT(ZERO) | LRP_RULE_BIT(EPSILON) | LRP_RULE_BIT(ALPHABETA),
    .infer = add_infer,
    .macs = add_macs,
};
