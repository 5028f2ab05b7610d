/*
 * kind_shape.c -- the layer kinds relevance crosses unchanged (rule pass):
 * Input, Concatenate, ReLU, Flatten, Reshape, Dropout (core/kinds.h): file
 * schema and shape inference.  Concatenate joins along the channels (axis
 * 0); Flatten and Reshape keep the NCHW element order; Dropout is the
 * identity at inference.
 */
#include "kinds.h"
#include "pipeline_int.h"

#include <string.h>

/* a kind that passes relevance through, unchanged */
#define PASS_KIND(e, inf, fwd)             \
    const lrp_kind_desc lrp_kind_##e = {   \
        .kind = LRP_LAYER_##e,             \
        .family = "shape",                 \
        .role = LRP_ROLE_PASS,             \
        .default_rule = LRP_RULE_PASS,     \
        .rules = LRP_RULE_BIT(PASS),       \
        .infer = inf,                      \
        .forward = fwd,                    \
        .through = always,                 \
    }

static int always(const lrp_layer *l)
{
    return 1;
}

/* y = x (Flatten, Reshape: NCHW order kept; Dropout at inference) */
static lrp_status copy_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[r->p->net->layers[li].in[0]];
    be->ew(be->ctx, LRP_EW_COPY, P->act, I->act, NULL, 0, 0, P->n * r->B);
    P->nonneg = I->nonneg;
    return LRP_OK;
}

/* ---- Input: the given shape ---- */

static const lrp_kind_attr input_attrs[] = {
    LRP_KA("shape", LRP_A_SHAPE, shape),
};

static lrp_status input_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    *o = l->shape;
    if (!lrp_shape_ok(o))
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': input shape has rank %d or a dimension out of range",
                           f, l->name, o->rank);
    return LRP_OK;
}

static lrp_status input_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t n = P->n * r->B;
    be->set_f32(be->ctx, P->act, r->p->net->input, n);
    P->nonneg = lrp_pipe_nonneg_f32(r->p->net->input, n);
    return LRP_OK;
}

const lrp_kind_desc lrp_kind_INPUT = {
    .kind = LRP_LAYER_INPUT,
    .family = "shape",
    .role = LRP_ROLE_PASS,
    .default_rule = LRP_RULE_PASS,
    .rules = LRP_RULE_BIT(PASS),
    .attrs = input_attrs,
    .n_attrs = sizeof input_attrs / sizeof input_attrs[0],
    .infer = input_infer,
    .forward = input_forward, /* the input's relevance is the result */
};

/* ---- Concatenate ---- */

static lrp_status concat_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    char b1[64], b2[64];
    *o = *in;
    for (int k = 1; k < l->n_in; k++) {
        const lrp_shape *s = &net->layers[l->in[k]].shape;
        int same = s->rank == in->rank;
        for (int d = 1; same && d < in->rank; d++)
            same = s->d[d] == in->d[d];
        if (!same) {
            lrp_shape_str(b1, sizeof b1, in);
            lrp_shape_str(b2, sizeof b2, s);
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': Concatenate inputs differ beyond channels: '%s' %s vs '%s' %s",
                               f, l->name, net->layers[l->in[0]].name, b1,
                               net->layers[l->in[k]].name, b2);
        }
        o->d[0] += s->d[0];
    }
    if (!lrp_shape_ok(o))
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': concatenated shape too large", f,
                           l->name);
    return LRP_OK;
}

/* channel blocks of the inputs, in input order, sample by sample */
static lrp_status concat_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t off = 0;
    P->nonneg = 1;
    for (int k = 0; k < l->n_in; k++) {
        const lrp_pipe_layer *K = &r->p->L[l->in[k]];
        P->nonneg &= K->nonneg;
        for (int64_t b = 0; b < r->B; b++)
            be->ew(cx, LRP_EW_COPY, be->at(cx, P->act, b * P->n + off),
                   be->at(cx, K->act, b * K->n), NULL, 0, 0, K->n);
        off += K->n;
    }
    return LRP_OK;
}

/* each input gets its channel block of R */
static lrp_status concat_lrp(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t off = 0;
    for (int k = 0; k < l->n_in; k++) {
        int64_t nk = P->n_rin_per[k];
        for (int64_t b = 0; b < r->B; b++)
            be->ew(cx, LRP_EW_COPY, be->at(cx, P->rin[k], b * nk),
                   be->at(cx, R, b * P->n + off), NULL, 0, 0, nk);
        off += nk;
    }
    return LRP_OK;
}

const lrp_kind_desc lrp_kind_CONCAT = {
    .kind = LRP_LAYER_CONCAT,
    .family = "shape",
    .role = LRP_ROLE_PASS,
    .default_rule = LRP_RULE_PASS,
    .rules = LRP_RULE_BIT(PASS),
    .infer = concat_infer,
    .forward = concat_forward,
    .lrp_step = concat_lrp,
};

/* ---- ReLU, Dropout: the input's shape ---- */

static lrp_status same_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    *o = net->layers[net->layers[li].in[0]].shape;
    return LRP_OK;
}

static lrp_status relu_forward(lrp_pipe_state *r, int li)
{
    const lrp_backend *be = r->be;
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[r->p->net->layers[li].in[0]];
    be->ew(be->ctx, LRP_EW_POS, P->act, I->act, NULL, 0, 0, P->n * r->B);
    P->nonneg = 1;
    return LRP_OK;
}

PASS_KIND(RELU, same_infer, relu_forward);
PASS_KIND(DROPOUT, same_infer, copy_forward);

/* ---- Flatten ---- */

static lrp_status flatten_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    o->rank = 1;
    o->d[0] = lrp_shape_numel(&net->layers[net->layers[li].in[0]].shape);
    return LRP_OK;
}

PASS_KIND(FLATTEN, flatten_infer, copy_forward);

/* ---- Reshape ---- */

static const lrp_kind_attr reshape_attrs[] = {
    LRP_KA("target_shape", LRP_A_SHAPE, target),
};

static lrp_status reshape_infer(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *o)
{
    lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    char b1[64], b2[64];
    if (!lrp_shape_ok(&l->target))
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': Reshape target shape invalid", f,
                           l->name);
    if (lrp_shape_numel(&l->target) != lrp_shape_numel(in)) {
        lrp_shape_str(b1, sizeof b1, in);
        lrp_shape_str(b2, sizeof b2, &l->target);
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': Reshape changes the element count: %s to %s", f,
                           l->name, b1, b2);
    }
    *o = l->target;
    return LRP_OK;
}

const lrp_kind_desc lrp_kind_RESHAPE = {
    .kind = LRP_LAYER_RESHAPE,
    .family = "shape",
    .role = LRP_ROLE_PASS,
    .default_rule = LRP_RULE_PASS,
    .rules = LRP_RULE_BIT(PASS),
    .attrs = reshape_attrs,
    .n_attrs = sizeof reshape_attrs / sizeof reshape_attrs[0],
    .infer = reshape_infer,
    .forward = copy_forward,
    .through = always,
};
