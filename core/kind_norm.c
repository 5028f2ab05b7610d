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
#include "pipeline_int.h"

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

static lrp_status bn_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    int64_t B = r->B;
    int64_t C = I->n; /* rank-1 input: C = F, hw = 1 */
    int64_t hw = 1;
    const lrp_shape *s = &net->layers[l->in[0]].shape;
    if (s->rank >= 2) {
        C = s->d[0];
        hw = C ? I->n / C : 0; /* C = 0: an empty block of the layer split */
    }
    P->bn_C = C;
    for (int k = 0; k < 4; k++) {
        P->n_bnp[k] = C;
        if (!(P->bnp[k] = be->tensor_new(cx, C)))
            return lrp_pipe_oom(r, "batchnorm");
    }
    be->bn_coef(cx, P->bnp[0], P->bnp[1], P->bnp[2], P->bnp[3], l, C);
    be->bn_fwd(cx, P->act, I->act, P->bnp[0], P->bnp[3], B, C, hw);
    if (l->rule.flags & LRP_F_BN_CANONIZE) {
        /* Fold into the preceding linear layer: W' = wc W (kept as
         * the exact product: lrp_lin.wscale = wc), b' = wc b + shift
         * = wc (b - mu) + beta (rounded twice). */
        int pi = l->in[0];
        lrp_pipe_layer *Q = &r->p->L[pi];
        lrp_lin L;
        lrp_pipe_lin_geom(&L, net, pi);
        Q->n_fold_b = L.O;
        Q->fold_b = be->tensor_new(cx, L.O);
        if (!Q->fold_b)
            return lrp_pipe_oom(r, "folding");
        if (Q->bnp[1]) {
            be->ew(cx, LRP_EW_MUL, Q->fold_b, Q->bnp[1], P->bnp[0], 0, 0, L.O);
            be->ew(cx, LRP_EW_ADD, Q->fold_b, Q->fold_b, P->bnp[3], 0, 0, L.O);
        } else {
            be->ew(cx, LRP_EW_COPY, Q->fold_b, P->bnp[3], NULL, 0, 0, L.O);
        }
        Q->folded_into = li;
    }
    return LRP_OK;
}

/* canonized (folded into the linear layer before it) or rule pass */
static int bn_through(const lrp_layer *l)
{
    return (l->rule.flags & LRP_F_BN_CANONIZE) || l->rule.rule == LRP_RULE_PASS;
}

/* The explicit BatchNorm: y = (w x) + shift split in proportion (lrp0 /
 * epsilon on den = y, or alpha-beta on the signed summands), the shift's
 * share absorbed (bn_fine: the mean's and beta's apart). */
static lrp_status bn_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t B = r->B, n = P->n * B;
    lrp_status st = LRP_OK;
    if (bn_through(l))
        return LRP_OK; /* pass-through: rin[0] is R */
    int64_t C = P->bn_C, hw = C ? P->n / C : 0; /* C = 0: see bn_forward */
    int fine = (l->rule.flags & LRP_F_BN_FINE) != 0;
    void *v[3] = {NULL, NULL, NULL};
    int nv = fine ? 3 : 2;
    /* the shift / mean / beta summands only enter the absorbed shares
     * and the alpha-beta denominators */
    int nmat = r->relonly && l->rule.rule != LRP_RULE_ALPHABETA ? 1 : nv;
    for (int t = 0; t < nmat; t++)
        if (!(v[t] = lrp_pipe_traw(r, n))) {
            st = lrp_pipe_oom(r, "batchnorm");
            goto bn_done;
        }
    be->row(cx, LRP_ROW_MUL, v[0], r->p->L[l->in[0]].act, P->bnp[0], B * C, hw, C);
    if (nmat == 1) {
        /* v[1..] stay NULL: lrp_pipe_back_split skips the absorbed shares */
    } else if (fine) {
        be->row(cx, LRP_ROW_SET, v[1], NULL, P->bnp[1], B * C, hw, C);
        be->row(cx, LRP_ROW_SET, v[2], NULL, P->bnp[2], B * C, hw, C);
    } else {
        be->row(cx, LRP_ROW_SET, v[1], NULL, P->bnp[3], B * C, hw, C);
    }
    int ak[2] = {fine ? LRP_ABS_BN_MU : LRP_ABS_BN_SHIFT, LRP_ABS_BN_BETA};
    st = lrp_pipe_back_split(r, P, R, P->act, (const void *const *)v, nv, 1, P->rin, ak, n, P->n);
bn_done:
    for (int t = 0; t < 3; t++)
        if (v[t])
            be->tensor_free(cx, v[t], n);
    return st;
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
    .forward = bn_forward,
    .lrp_step = bn_lrp,
    .through = bn_through,
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

static lrp_status add_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const void *ins[LRP_MAX_INPUTS];
    P->nonneg = 1;
    for (int k = 0; k < l->n_in; k++) {
        ins[k] = r->p->L[l->in[k]].act;
        P->nonneg &= r->p->L[l->in[k]].nonneg;
    }
    be->sum_n(cx, P->act, ins, l->n_in, P->n * r->B);
    return LRP_OK;
}

static lrp_status add_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const void *v[LRP_MAX_INPUTS];
    for (int k = 0; k < l->n_in; k++)
        v[k] = r->p->L[l->in[k]].act;
    int ak[2] = {LRP_ABS_BIAS, LRP_ABS_BIAS};
    return lrp_pipe_back_split(r, P, R, P->act, v, l->n_in, l->n_in, P->rin, ak, P->n * r->B,
                               P->n);
}

const lrp_kind_desc lrp_kind_ADD = {
    .kind = LRP_LAYER_ADD,
    .family = "norm",
    .role = LRP_ROLE_NORM,
    .default_rule = LRP_RULE_ZERO,
    .rules = LRP_RULE_BIT(ZERO) | LRP_RULE_BIT(EPSILON) | LRP_RULE_BIT(ALPHABETA),
    .infer = add_infer,
    .macs = add_macs,
    .forward = add_forward,
    .lrp_step = add_lrp,
};
