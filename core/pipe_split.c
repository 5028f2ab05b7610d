/*
 * pipe_split.c -- the layer split of a pipeline run (core/pipeline.h,
 * "The layer split"; docs/SCALING.md): which block of every tensor a rank
 * holds, the rank's share of the net the pipeline runs on, and the
 * exchanges of values between the ranks.  The pipeline knows no MPI: the
 * exchange is a function it is given (tools/cli_mpi.c under MPI).
 *
 * The share of the net is an lrp_net whose layers' shapes are this rank's
 * blocks (first axis hi - lo) and whose per-channel parameters (BatchNorm)
 * and data (input, r_out) are the block's, so the kinds that work on a
 * block alone run unchanged; Conv2D and Dense take their geometry from
 * the whole net (lrp_pipe_lin_geom_run / _bwd below).
 */
#include "pipeline.h"
#include "pipeline_int.h"

#include "kinds.h"

#include <stdlib.h>
#include <string.h>

/* A depthwise Conv2D with one filter a channel (groups = in channels =
 * out channels): output channel c reads input channel c alone, so it runs
 * on its input's block like the channel-local kinds, without exchanges. */
static int depthwise(const lrp_net *net, const lrp_layer *l)
{
    if (l->kind != LRP_LAYER_CONV2D || l->groups == 1)
        return 0;
    int64_t C = net->layers[l->in[0]].shape.d[0];
    return l->groups == C && l->units == C;
}

void lrp_pipe_split_block(const lrp_net *net, int li, int q, int size, int64_t *lo, int64_t *hi)
{
    const lrp_layer *l = &net->layers[li];
    switch (depthwise(net, l) ? LRP_LAYER_RELU : l->kind) { /* depthwise: channel-local */
    case LRP_LAYER_INPUT:
    case LRP_LAYER_CONV2D:
    case LRP_LAYER_DENSE: {
        /* its own split: as cli_mpi_block, the first E % size one longer */
        int64_t E = l->shape.d[0], b = E / size, m = E % size;
        *lo = q * b + (q < m ? q : m);
        *hi = *lo + b + (q < m);
        return;
    }
    case LRP_LAYER_FLATTEN: {
        /* the input's block of channels, as cells */
        const lrp_shape *in = &net->layers[l->in[0]].shape;
        int64_t inner = lrp_shape_numel(in) / in->d[0];
        lrp_pipe_split_block(net, l->in[0], q, size, lo, hi);
        *lo *= inner;
        *hi *= inner;
        return;
    }
    default: /* channel-local: the input's block */
        lrp_pipe_split_block(net, l->in[0], q, size, lo, hi);
        return;
    }
}

/* why layer li cannot run split, or NULL */
static const char *refusal(const lrp_net *net, int li, int size)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = l->n_in > 0 ? &net->layers[l->in[0]].shape : NULL;
    switch (l->kind) {
    case LRP_LAYER_INPUT:
        if (l->shape.rank != 1 && l->shape.rank != 3)
            return "an input that is not (C, H, W) or flat is not split";
        break;
    case LRP_LAYER_CONV2D:
        if (l->groups != 1 && !depthwise(net, l))
            return "Conv2D with groups (other than depthwise with one filter a channel) is not split";
        break;
    case LRP_LAYER_DENSE:
        if (in->rank != 1)
            return "Dense on a token sequence is not split";
        break;
    case LRP_LAYER_BATCHNORM:
        if (l->rule.flags & LRP_F_BN_CANONIZE)
            return "BatchNorm canonized into the layer before it (--bn canonize) is not split";
        break;
    case LRP_LAYER_RELU:
    case LRP_LAYER_MAXPOOL2D:
    case LRP_LAYER_AVGPOOL2D:
    case LRP_LAYER_GLOBALAVGPOOL:
    case LRP_LAYER_DROPOUT:
    case LRP_LAYER_FLATTEN:
        break;
    case LRP_LAYER_ADD:
        for (int k = 1; k < l->n_in; k++)
            for (int q = 0; q < size; q++) {
                int64_t a0, a1, b0, b1;
                lrp_pipe_split_block(net, l->in[0], q, size, &a0, &a1);
                lrp_pipe_split_block(net, l->in[k], q, size, &b0, &b1);
                if (a0 != b0 || a1 != b1)
                    return "Add of inputs split differently is not split";
            }
        break;
    default:
        return NULL; /* the caller names the kind */
    }
    return "";
}

lrp_status lrp_pipe_split_check(const lrp_net *net, int size, lrp_err *err)
{
    for (int li = 0; li < net->n_layers; li++) {
        const lrp_layer *l = &net->layers[li];
        const char *why = refusal(net, li, size);
        if (!why)
            return lrp_err_set(err, LRP_E_UNSUPPORTED,
                               "<network>: layer '%s': %s is not split by the layer split "
                               "(split: Input, Conv2D, Dense, ReLU, BatchNorm, pools, Dropout, "
                               "Flatten, Add)",
                               l->name, lrp_layer_kind_name(l->kind));
        if (why[0])
            return lrp_err_set(err, LRP_E_UNSUPPORTED, "<network>: layer '%s': %s by the layer split",
                               l->name, why);
    }
    return LRP_OK;
}

struct lrp_split_net {
    lrp_net net;         /* this rank's share: what the pipeline runs on */
    const lrp_net *full; /* the whole net */
    const lrp_pipe_split *sp;
    int failed;          /* an exchange reported a failure: no more exchanges */
    int64_t *lo, *hi;    /* [li * size + q]: rank q's block of layer li */
};

static int64_t inner_of(const lrp_shape *s) { return lrp_shape_numel(s) / s->d[0]; }

void lrp_split_net_free(lrp_split_net *s)
{
    if (!s)
        return;
    free(s->net.layers);
    free(s->net.input);
    free(s->net.r_out);
    free(s->lo);
    free(s->hi);
    free(s);
}

/* sample by sample, rank q's block of each of B rows of n values */
static float *slice_rows(const float *src, int64_t B, int64_t n, int64_t lo, int64_t hi)
{
    float *d = malloc((size_t)(B * (hi - lo) + 1) * sizeof *d);
    if (!d)
        return NULL;
    for (int64_t b = 0; b < B; b++)
        memcpy(d + b * (hi - lo), src + b * n + lo, (size_t)(hi - lo) * sizeof *d);
    return d;
}

lrp_split_net *lrp_split_net_new(const lrp_net *full, const lrp_pipe_split *sp)
{
    int R = sp->size, q = sp->rank, nl = full->n_layers;
    lrp_split_net *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->full = full;
    s->sp = sp;
    s->net = *full;
    s->net.layers = NULL;
    s->net.input = NULL;
    s->net.r_out = NULL;
    s->net.n_traces = 0;
    s->net.traces = NULL;
    s->lo = malloc((size_t)nl * (size_t)R * sizeof *s->lo);
    s->hi = malloc((size_t)nl * (size_t)R * sizeof *s->hi);
    s->net.layers = malloc((size_t)nl * sizeof *s->net.layers);
    if (!s->lo || !s->hi || !s->net.layers)
        goto fail;
    memcpy(s->net.layers, full->layers, (size_t)nl * sizeof *s->net.layers);
    s->net.cap_layers = nl;
    for (int li = 0; li < nl; li++)
        for (int r = 0; r < R; r++)
            lrp_pipe_split_block(full, li, r, R, &s->lo[li * R + r], &s->hi[li * R + r]);
    for (int li = 0; li < nl; li++) {
        const lrp_layer *f = &full->layers[li];
        lrp_layer *l = &s->net.layers[li];
        int64_t lo = s->lo[li * R + q], hi = s->hi[li * R + q];
        l->shape.d[0] = hi - lo;
        if (f->kind == LRP_LAYER_BATCHNORM) {
            l->bn_gamma = f->bn_gamma + lo;
            l->bn_beta = f->bn_beta + lo;
            l->bn_mean = f->bn_mean + lo;
            l->bn_var = f->bn_var + lo;
        }
        if (f->kind == LRP_LAYER_CONV2D || f->kind == LRP_LAYER_DENSE) {
            lrp_lin L;
            lrp_pipe_lin_geom(&L, full, li);
            l->units = hi - lo;
            l->w = f->w + lo * L.fanin;
            l->b = f->has_bias ? f->b + lo : NULL;
        }
    }
    int64_t B = full->batch;
    const lrp_shape *is = &full->layers[0].shape;
    int64_t ni = lrp_shape_numel(is), ii = inner_of(is);
    if (!(s->net.input = slice_rows(full->input, B, ni, s->lo[q] * ii, s->hi[q] * ii)))
        goto fail;
    if (full->r_out) {
        const lrp_shape *os = &full->layers[nl - 1].shape;
        int64_t no = lrp_shape_numel(os), oi = inner_of(os);
        if (!(s->net.r_out = slice_rows(full->r_out, B, no, s->lo[(nl - 1) * R + q] * oi,
                                        s->hi[(nl - 1) * R + q] * oi)))
            goto fail;
    }
    return s;
fail:
    lrp_split_net_free(s);
    return NULL;
}

const lrp_net *lrp_split_net_share(const lrp_split_net *s) { return &s->net; }

/* ---- exchanges ---- */

void lrp_pipe_split_fail(lrp_pipe_state *r)
{
    lrp_split_net *s = r->split;
    if (!s || s->failed)
        return;
    s->failed = 1;
    void *all = NULL;
    size_t total = 0;
    s->sp->exchange(s->sp->ctx, NULL, 0, r->err->msg[0] ? r->err->msg : "layer split failed",
                    &all, &total);
    free(all);
}

void *lrp_pipe_split_gather(lrp_pipe_state *r, int li, const void *t)
{
    lrp_split_net *s = r->split;
    const lrp_backend *be = r->be;
    int R = s->sp->size, q = s->sp->rank;
    int64_t B = r->B, inner = inner_of(&s->full->layers[li].shape);
    int64_t n = lrp_shape_numel(&s->full->layers[li].shape);
    int64_t m = B * (s->hi[li * R + q] - s->lo[li * R + q]) * inner;
    size_t bytes = be->wire_size(be->ctx, m);
    void *buf = malloc(bytes ? bytes : 1);
    void *full = buf ? lrp_pipe_traw(r, B * n) : NULL;
    if (!full) {
        free(buf);
        lrp_pipe_oom(r, "layer split");
        lrp_pipe_split_fail(r);
        return NULL;
    }
    be->to_wire(be->ctx, buf, t, m);
    void *all = NULL;
    size_t total = 0;
    int rc = s->sp->exchange(s->sp->ctx, buf, bytes, NULL, &all, &total);
    free(buf);
    if (rc) {
        s->failed = 1;
        be->tensor_free(be->ctx, full, B * n);
        lrp_err_set(r->err, LRP_E_USAGE, "<network>: layer split: another rank failed");
        return NULL;
    }
    /* rank by rank, sample by sample: the blocks into their places */
    const unsigned char *p = all;
    for (int k = 0; k < R; k++) {
        int64_t lo = s->lo[li * R + k], w = (s->hi[li * R + k] - lo) * inner;
        for (int64_t b = 0; b < B; b++) {
            be->from_wire(be->ctx, be->at(be->ctx, full, b * n + lo * inner), p, w);
            p += be->wire_size(be->ctx, w);
        }
    }
    LRP_ASSERT((size_t)(p - (const unsigned char *)all) == total);
    free(all);
    return full;
}

int64_t lrp_pipe_split_numel(const lrp_pipe_state *r, int li)
{
    return lrp_shape_numel(&r->split->full->layers[li].shape);
}

void lrp_pipe_split_range(const lrp_pipe_state *r, int li, int64_t *lo, int64_t *hi,
                          int64_t *inner)
{
    const lrp_split_net *s = r->split;
    int R = s->sp->size, q = s->sp->rank;
    *lo = s->lo[li * R + q];
    *hi = s->hi[li * R + q];
    *inner = inner_of(&s->full->layers[li].shape);
}

const lrp_net *lrp_pipe_split_full(const lrp_pipe_state *r) { return r->split->full; }

/* ---- the linear layers' geometry ---- */

int lrp_pipe_split_local(const lrp_pipe_state *r, int li)
{
    return r->split && depthwise(r->split->full, &r->split->full->layers[li]);
}

void lrp_pipe_lin_geom_run(lrp_pipe_state *r, lrp_lin *L, int li)
{
    if (!r->split) {
        lrp_pipe_lin_geom(L, r->p->net, li);
        return;
    }
    const lrp_split_net *s = r->split;
    int R = s->sp->size, q = s->sp->rank;
    const lrp_layer *f = &s->full->layers[li];
    int64_t lo = s->lo[li * R + q], hi = s->hi[li * R + q];
    lrp_pipe_lin_geom(L, s->full, li);
    if (depthwise(s->full, f)) {
        /* our block of channels in and out, one group each (an empty
         * block: no channel, one group, so that no count divides by 0) */
        L->C = L->O = hi - lo;
        L->groups = hi > lo ? (int)(hi - lo) : 1;
        L->n_in = L->C * L->H * L->W;
        L->n_out = L->O * L->Ho * L->Wo;
        L->w32 = f->w + lo * L->fanin; /* fanin = kh kw */
        L->b32 = f->has_bias ? f->b + lo : NULL;
        if (L->low)
            L->low += lo * L->H * L->W;
        if (L->high)
            L->high += lo * L->H * L->W;
        return;
    }
    /* the whole input, this rank's block of output units */
    L->O = hi - lo;
    L->n_out = L->conv ? L->O * L->Ho * L->Wo : L->O;
    L->w32 = f->w + lo * L->fanin;
    L->b32 = f->has_bias ? f->b + lo : NULL;
}

float *lrp_pipe_lin_geom_bwd(lrp_pipe_state *r, lrp_lin *L, int li)
{
    /* the whole output (its quotients gathered), this rank's block of
     * input cells: the weights' columns of those channels, (O, ci, kh, kw)
     * with ci the input's block, copied for this step alone (a copy kept
     * for the run would hold the weights once more, 1/R of them a rank) */
    const lrp_split_net *s = r->split;
    int R = s->sp->size, q = s->sp->rank;
    const lrp_layer *f = &s->full->layers[li];
    int in = f->in[0];
    int64_t lo = s->lo[in * R + q], hi = s->hi[in * R + q];
    int64_t inner = inner_of(&s->full->layers[in].shape);
    lrp_pipe_lin_geom(L, s->full, li);
    int64_t k = L->conv ? (int64_t)f->kh * f->kw : 1, cols = (hi - lo) * k;
    float *w = malloc((size_t)(L->O * cols + 1) * sizeof *w);
    if (!w)
        return NULL;
    for (int64_t o = 0; o < L->O; o++)
        memcpy(w + o * cols, f->w + o * L->fanin + lo * k, (size_t)cols * sizeof *w);
    L->w32 = w;
    L->b32 = NULL; /* the backward reads no bias */
    L->C = hi - lo;
    if (L->conv) {
        L->n_in = L->C * L->H * L->W;
        L->fanin = L->C * L->kh * L->kw;
    } else {
        L->n_in = L->C;
        L->fanin = L->C;
    }
    if (L->low)
        L->low += lo * inner;
    if (L->high)
        L->high += lo * inner;
    return w;
}
