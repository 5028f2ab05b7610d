/*
 * kind_pool.c -- the pooling layer kinds, MaxPool2D, AvgPool2D and
 * GlobalAvgPool (core/kinds.h): file schema, shape inference, cost.
 *
 * Windows follow PyTorch: kernel, stride, zero padding per side of at most
 * half the kernel (so every window holds a real cell); AvgPool2D's divisor
 * is the window's area with count_include_pad, else its real cells.
 * Relevance: winner-take-all or the z-rule on the max (docs/SPEC.md 3.1),
 * the proportional split on the averages (lrp0 / epsilon).
 */
#include "kinds.h"
#include "pipeline_int.h"

#include <stdio.h>
#include <string.h>

#define WINDOW_ATTRS                                                                    \
    {"kernel", LRP_A_I32V, 2, {offsetof(lrp_layer, kh), offsetof(lrp_layer, kw)}},      \
        {"stride", LRP_A_I32V, 2, {offsetof(lrp_layer, sh), offsetof(lrp_layer, sw)}},  \
        {"padding",                                                                     \
         LRP_A_I32V,                                                                    \
         4,                                                                             \
         {offsetof(lrp_layer, pt), offsetof(lrp_layer, pb), offsetof(lrp_layer, pl),    \
          offsetof(lrp_layer, pr)}}

static lrp_status window_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    lrp_status st;
    if (in->rank != 3)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': %s needs (C, H, W), got rank %d",
                           f, l->name, lrp_layer_kind_name(l->kind), in->rank);
    if ((st = lrp_check_window(l, f, err, 0)))
        return st;
    /* PyTorch's rule: padding at most half the kernel, so every window
     * holds at least one real cell (max-pool never sees only -inf). */
    if (2 * l->pt > l->kh || 2 * l->pb > l->kh || 2 * l->pl > l->kw || 2 * l->pr > l->kw)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': pool padding must be at most half the kernel", f,
                           l->name);
    int64_t ho = lrp_window_out(in->d[1], l->pt, l->pb, l->kh, 1, l->sh);
    int64_t wo = lrp_window_out(in->d[2], l->pl, l->pr, l->kw, 1, l->sw);
    if (ho < 1 || wo < 1)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': pool window larger than input",
                           f, l->name);
    o->rank = 3;
    o->d[0] = in->d[0];
    o->d[1] = ho;
    o->d[2] = wo;
    return LRP_OK;
}

static void window_geometry(char *buf, size_t n, const lrp_layer *l)
{
    snprintf(buf, n, "%dx%d s%dx%d p%d,%d,%d,%d%s", l->kh, l->kw, l->sh, l->sw, l->pt, l->pb,
             l->pl, l->pr,
             l->kind == LRP_LAYER_AVGPOOL2D && l->count_include_pad ? " incl-pad" : "");
}

static lrp_status pool_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    lrp_pool G;
    lrp_pipe_pool_geom(&G, net, li);
    if (l->kind == LRP_LAYER_MAXPOOL2D)
        be->max_fwd(cx, P->act, I->act, &G, r->B);
    else
        be->avg_fwd(cx, P->act, I->act, &G, r->B);
    P->nonneg = I->nonneg;
    return LRP_OK;
}

static lrp_status pool_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t B = r->B, n = P->n * B;
    lrp_status st;
    if (l->kind == LRP_LAYER_MAXPOOL2D && P->rule.rule == LRP_RULE_WTA) {
        lrp_pool G;
        lrp_pipe_pool_geom(&G, net, li);
        be->max_bwd(cx, P->rin[0], r->p->L[l->in[0]].act, R, &G, B);
        return LRP_OK;
    }
    /* lrp0 / epsilon on a max-pool (Captum's EpsilonRule): the z-rule
     * on the max as the linear map of its winner, in Captum's order --
     * s_j = R_j / stab(y_j), routed to the first maximum by the
     * gradient of the max (summed where windows overlap), times the
     * input: R_i = a_i sum_{j won by i} s_j; a cell that wins nothing
     * gets a_i * (+0), a signed zero.  Bookkeeping as the avg-pools. */
    lrp_pool G;
    lrp_pipe_pool_geom(&G, net, li);
    G.split_ties = 0; /* only wta splits ties (lrp_rule_validate) */
    int kinds[] = {LRP_ABS_STAB};
    P->n_units = P->n;
    if (!r->relonly && (st = lrp_pipe_alloc_abs(r, P, P->n, kinds, 1)))
        return st;
    P->n_parts = 1;
    if ((st = lrp_pipe_part_setup(r, P, 0, 1.0f, P->n)))
        return st;
    P->den[0] = P->act;
    void *s = lrp_pipe_traw(r, n);
    if (!s)
        return lrp_pipe_oom(r, "pool");
    be->stab_div(cx, s, P->cls[0], R, P->act, NULL, P->rule.stab, P->rule.eps, 0, n);
    if (!r->relonly) {
        if ((st = lrp_pipe_ensure_lost(r, P, P->cls[0], n))) {
            be->tensor_free(cx, s, n);
            return st;
        }
        be->absorb(cx, P->abs, R, s, NULL, P->cls[0], 1.0f, P->rule.eps, n);
    }
    lrp_pipe_flags_from_cls(P, P->cls[0], n, P->n);
    if (l->kind == LRP_LAYER_MAXPOOL2D) {
        const void *x = r->p->L[l->in[0]].act;
        be->max_bwd(cx, P->rin[0], x, s, &G, B);
        be->ew(cx, LRP_EW_MUL, P->rin[0], P->rin[0], x, 0, 0, P->n_rin_per[0] * B);
    } else {
        be->avg_bwd(cx, P->rin[0], r->p->L[l->in[0]].act, s, &G, B);
    }
    be->tensor_free(cx, s, n);
    return LRP_OK;
}

/* ---- MaxPool2D ---- */

static const lrp_kind_attr maxpool_attrs[] = {WINDOW_ATTRS};

const lrp_kind_desc lrp_kind_MAXPOOL2D = {
    .kind = LRP_LAYER_MAXPOOL2D,
    .family = "pool",
    .role = LRP_ROLE_MAX,
    .default_rule = LRP_RULE_WTA,
    /* lrp0 / epsilon: the z-rule on the max as the linear map of its
     * winner, R_i = a_i sum_j R_j / stab(y_j) (Captum's EpsilonRule on
     * nn.MaxPool2d; docs/SPEC.md 3.1) */
    .rules = LRP_RULE_BIT(WTA) | LRP_RULE_BIT(ZERO) | LRP_RULE_BIT(EPSILON),
    .attrs = maxpool_attrs,
    .n_attrs = sizeof maxpool_attrs / sizeof maxpool_attrs[0],
    .infer = window_infer,
    .geometry = window_geometry,
    .forward = pool_forward,
    .lrp_step = pool_lrp,
};

/* ---- AvgPool2D ---- */

static const lrp_kind_attr avgpool_attrs[] = {
    WINDOW_ATTRS,
    LRP_KA("count_include_pad", LRP_A_BOOL, count_include_pad),
};

static int64_t avgpool_macs(const lrp_net *net, int li)
{
    const lrp_layer *l = &net->layers[li];
    return lrp_shape_numel(&l->shape) * l->kh * l->kw;
}

const lrp_kind_desc lrp_kind_AVGPOOL2D = {
    .kind = LRP_LAYER_AVGPOOL2D,
    .family = "pool",
    .role = LRP_ROLE_NORM,
    .default_rule = LRP_RULE_ZERO,
    .rules = LRP_RULE_BIT(ZERO) | LRP_RULE_BIT(EPSILON),
    .attrs = avgpool_attrs,
    .n_attrs = sizeof avgpool_attrs / sizeof avgpool_attrs[0],
    .infer = window_infer,
    .macs = avgpool_macs,
    .geometry = window_geometry,
    .forward = pool_forward,
    .lrp_step = pool_lrp,
};

/* ---- GlobalAvgPool: (C, H, W) -> (C) ---- */

static lrp_status gap_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    if (in->rank != 3)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': GlobalAvgPool needs (C, H, W), got rank %d", f,
                           l->name, in->rank);
    o->rank = 1;
    o->d[0] = in->d[0];
    return LRP_OK;
}

static int64_t gap_macs(const lrp_net *net, int li)
{
    const lrp_layer *l = &net->layers[li];
    return lrp_shape_numel(&net->layers[l->in[0]].shape);
}

const lrp_kind_desc lrp_kind_GLOBALAVGPOOL = {
    .kind = LRP_LAYER_GLOBALAVGPOOL,
    .family = "pool",
    .role = LRP_ROLE_NORM,
    .default_rule = LRP_RULE_ZERO,
    .rules = LRP_RULE_BIT(ZERO) | LRP_RULE_BIT(EPSILON),
    .infer = gap_infer,
    .macs = gap_macs,
    .forward = pool_forward,
    .lrp_step = pool_lrp,
};
