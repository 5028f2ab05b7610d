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
 * the whole net (lrp_pipe_lin_geom_run / _bwd below).  A layer the split
 * does not divide runs whole on every rank, its inputs gathered, and keeps
 * its block of the output (lrp_pipe_split_whole_fwd / _bwd below).
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

/* A layer that maps each token of a (T, F) sequence on its own: a Dense on
 * a sequence, a LayerNorm / RMSNorm over each token's features (not over a
 * flat vector: that is one token, whose features the split divides), the
 * elementwise GELU, SiLU, Tanh, an Embedding (a row of its table a token
 * id) and a Position (row t of its table added to token t: the share's
 * table starts at the block's first token, lrp_split_net_new).  Its block
 * is its input's block of tokens (rows), and it runs on that block alone,
 * without exchanges: the same parameters, fewer rows (docs/SCALING.md,
 * "Tokens divided"). */
static int token_rows(const lrp_net *net, const lrp_layer *l)
{
    int in_rank = l->kind == LRP_LAYER_INPUT ? 0 : net->layers[l->in[0]].shape.rank;
    switch (l->kind) {
    case LRP_LAYER_DENSE:
    case LRP_LAYER_LAYERNORM:
    case LRP_LAYER_RMSNORM:
        return in_rank == 2;
    case LRP_LAYER_GELU:
    case LRP_LAYER_SILU:
    case LRP_LAYER_TANH:
    case LRP_LAYER_EMBEDDING:
    case LRP_LAYER_POSITION:
        return 1;
    default:
        return 0;
    }
}

/* A MultiHeadAttention divided by rows of queries: its block is its
 * input's block of tokens, like token_rows, but its step exchanges values
 * (core/kind_attn.c): every rank gathers every token's keys and values,
 * and the relevance of a key or value, a sum over all queries, is one
 * rounding of the exact partial sums of the ranks (lrp_backend.bmm_exact).
 * Its per-sample totals and flags are the whole layer's on every rank, as
 * for a layer run whole (lrp_pipe_split_is_whole). */
static int attn_rows(const lrp_layer *l) { return l->kind == LRP_LAYER_MHA; }

void lrp_pipe_split_block(const lrp_net *net, int li, int q, int size, int64_t *lo, int64_t *hi)
{
    const lrp_layer *l = &net->layers[li];
    /* depthwise, token rows, attention rows: the input's block */
    switch (depthwise(net, l) || token_rows(net, l) || attn_rows(l) ? LRP_LAYER_RELU : l->kind) {
    case LRP_LAYER_RELU:
    case LRP_LAYER_MAXPOOL2D:
    case LRP_LAYER_AVGPOOL2D:
    case LRP_LAYER_GLOBALAVGPOOL:
    case LRP_LAYER_DROPOUT:
    case LRP_LAYER_BATCHNORM:
    case LRP_LAYER_ADD: /* its first input's block (whole or not: split_whole) */
    case LRP_LAYER_MUL:
        /* channel-local: the input's block */
        lrp_pipe_split_block(net, l->in[0], q, size, lo, hi);
        return;
    case LRP_LAYER_FLATTEN: {
        /* the input's block of channels, as cells */
        const lrp_shape *in = &net->layers[l->in[0]].shape;
        int64_t inner = lrp_shape_numel(in) / in->d[0];
        lrp_pipe_split_block(net, l->in[0], q, size, lo, hi);
        *lo *= inner;
        *hi *= inner;
        return;
    }
    default: {
        /* Input, Conv2D, Dense and the layers run whole (split_whole):
         * its own split, as cli_mpi_block, the first E % size one longer */
        int64_t E = l->shape.d[0], b = E / size, m = E % size;
        *lo = q * b + (q < m ? q : m);
        *hi = *lo + b + (q < m);
        return;
    }
    }
}

/* 1 when layer li runs whole under the layer split over size ranks (the
 * whole-layer fallback): every rank gathers its inputs whole, runs the
 * kind's step of one process and keeps its block of the output.  The
 * kinds that run on a block (the channel-local ones, Flatten) or divide
 * their output (Conv2D with groups 1, Dense on a flat vector) do not;
 * an Add does when its inputs are split differently.  A BatchNorm
 * canonized into its Conv2D / Dense is channel-local like any BatchNorm:
 * its block is the layer's output block, so its forward folds the block's
 * bias into the layer on the same rank, and the layer's backward, which
 * reads every output channel's quotient, computes every channel's
 * BatchNorm factor from the whole net (core/pipeline.c). */
static int split_whole(const lrp_net *net, int li, int size)
{
    const lrp_layer *l = &net->layers[li];
    if (token_rows(net, l) || attn_rows(l)) /* its input's block of tokens */
        return 0;
    switch (l->kind) {
    case LRP_LAYER_INPUT:
    case LRP_LAYER_RELU:
    case LRP_LAYER_MAXPOOL2D:
    case LRP_LAYER_AVGPOOL2D:
    case LRP_LAYER_GLOBALAVGPOOL:
    case LRP_LAYER_DROPOUT:
    case LRP_LAYER_FLATTEN:
    case LRP_LAYER_BATCHNORM:
        return 0;
    case LRP_LAYER_CONV2D:
        return l->groups != 1 && !depthwise(net, l);
    case LRP_LAYER_DENSE: /* flat: its features (a sequence: token_rows) */
        return 0;
    case LRP_LAYER_ADD:
    case LRP_LAYER_MUL: /* elementwise: whole when its inputs are split differently */
        for (int k = 1; k < l->n_in; k++)
            for (int q = 0; q < size; q++) {
                int64_t a0, a1, b0, b1;
                lrp_pipe_split_block(net, l->in[0], q, size, &a0, &a1);
                lrp_pipe_split_block(net, l->in[k], q, size, &b0, &b1);
                if (a0 != b0 || a1 != b1)
                    return 1;
            }
        return 0;
    default: /* Concatenate, Reshape, Softmax (its units are rows, not
              * cells), the attention kinds, SelectToken, ToTokens, ClsToken,
              * a LayerNorm / RMSNorm of a flat vector (one token) */
        return 1;
    }
}

int lrp_pipe_split_is_whole(const lrp_net *net, int li, int size)
{
    return split_whole(net, li, size) || attn_rows(&net->layers[li]);
}

struct lrp_split_net {
    lrp_net net;         /* this rank's share: what the pipeline runs on */
    const lrp_net *full; /* the whole net */
    const lrp_pipe_split *sp;
    int failed;          /* an exchange reported a failure: no more exchanges */
    int64_t *lo, *hi;    /* [li * size + q]: rank q's block of layer li */
    uint8_t *whole;      /* [li]: layer li runs whole (split_whole) */
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
    free(s->whole);
    free(s);
}

float *lrp_pipe_split_slice(const float *src, int64_t B, int64_t n, int64_t lo, int64_t hi)
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
    s->whole = malloc((size_t)nl);
    s->net.layers = malloc((size_t)nl * sizeof *s->net.layers);
    if (!s->lo || !s->hi || !s->whole || !s->net.layers)
        goto fail;
    memcpy(s->net.layers, full->layers, (size_t)nl * sizeof *s->net.layers);
    s->net.cap_layers = nl;
    for (int li = 0; li < nl; li++)
        for (int r = 0; r < R; r++)
            lrp_pipe_split_block(full, li, r, R, &s->lo[li * R + r], &s->hi[li * R + r]);
    for (int li = 0; li < nl; li++)
        s->whole[li] = (uint8_t)split_whole(full, li, R);
    for (int li = 0; li < nl; li++) {
        const lrp_layer *f = &full->layers[li];
        lrp_layer *l = &s->net.layers[li];
        int64_t lo = s->lo[li * R + q], hi = s->hi[li * R + q];
        l->shape.d[0] = hi - lo;
        if (f->kind == LRP_LAYER_POSITION) /* divided: token_rows */
            l->w = f->w + lo * inner_of(&f->shape); /* the block's first token's row */
        if (f->kind == LRP_LAYER_BATCHNORM) {
            l->bn_gamma = f->bn_gamma + lo;
            l->bn_beta = f->bn_beta + lo;
            l->bn_mean = f->bn_mean + lo;
            l->bn_var = f->bn_var + lo;
        }
        /* a layer run whole reads the whole net's (lrp_pipe_split_whole_fwd) */
        if ((f->kind == LRP_LAYER_CONV2D || f->kind == LRP_LAYER_DENSE) && !s->whole[li] &&
            !token_rows(full, f)) {
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
    if (!(s->net.input =
              lrp_pipe_split_slice(full->input, B, ni, s->lo[q] * ii, s->hi[q] * ii)))
        goto fail;
    if (full->r_out) {
        const lrp_shape *os = &full->layers[nl - 1].shape;
        int64_t no = lrp_shape_numel(os), oi = inner_of(os);
        if (!(s->net.r_out = lrp_pipe_split_slice(full->r_out, B, no, s->lo[(nl - 1) * R + q] * oi,
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

unsigned char *lrp_bytes_grow(lrp_bytes *b, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p)
            return NULL;
        b->p = p;
        b->cap = cap;
    }
    b->n += n;
    return b->p + b->n - n;
}

int lrp_bytes_put(lrp_bytes *b, const void *src, size_t n)
{
    unsigned char *d = lrp_bytes_grow(b, n);
    if (!d)
        return -1;
    if (n)
        memcpy(d, src, n);
    return 0;
}

void lrp_bytes_free(lrp_bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

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

/* the exchange's answer: -1 when some rank failed (no more exchanges) */
static int exchanged(lrp_pipe_state *r, int rc)
{
    if (rc) {
        r->split->failed = 1;
        lrp_err_set(r->err, LRP_E_USAGE, "<network>: layer split: another rank failed");
    }
    return rc;
}

void *lrp_pipe_split_gather(lrp_pipe_state *r, int li, const void *t)
{
    return lrp_pipe_split_gather_rows(r, li, t, inner_of(&r->split->full->layers[li].shape));
}

void *lrp_pipe_split_gather_rows(lrp_pipe_state *r, int li, const void *t, int64_t inner)
{
    lrp_split_net *s = r->split;
    const lrp_backend *be = r->be;
    int R = s->sp->size, q = s->sp->rank;
    int64_t B = r->B, n = s->full->layers[li].shape.d[0] * inner;
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
    if (exchanged(r, rc)) {
        be->tensor_free(be->ctx, full, B * n);
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

uint8_t *lrp_pipe_split_gather_bytes(lrp_pipe_state *r, int li, const uint8_t *t,
                                     int64_t outer, int64_t inner)
{
    lrp_split_net *s = r->split;
    int R = s->sp->size, q = s->sp->rank;
    int64_t T = s->full->layers[li].shape.d[0];
    int64_t m = outer * (s->hi[li * R + q] - s->lo[li * R + q]) * inner;
    uint8_t *full = malloc((size_t)(outer * T * inner + 1));
    if (!full) {
        lrp_pipe_oom(r, "layer split");
        lrp_pipe_split_fail(r);
        return NULL;
    }
    void *all = NULL;
    size_t total = 0;
    if (exchanged(r, s->sp->exchange(s->sp->ctx, t, (size_t)m, NULL, &all, &total))) {
        free(full);
        return NULL;
    }
    const unsigned char *p = all;
    for (int k = 0; k < R; k++) {
        int64_t lo = s->lo[li * R + k], w = (s->hi[li * R + k] - lo) * inner;
        for (int64_t o = 0; o < outer; o++, p += w)
            memcpy(full + (o * T + lo) * inner, p, (size_t)w);
    }
    LRP_ASSERT((size_t)(p - (const unsigned char *)all) == total);
    free(all);
    return full;
}

int lrp_pipe_split_swap(lrp_pipe_state *r, const lrp_bytes *seg, int nseg, void **all,
                        const unsigned char **in, const unsigned char **end)
{
    lrp_split_net *s = r->split;
    int R = s->sp->size, q = s->sp->rank;
    LRP_ASSERT(nseg == 1 || nseg == R);
    /* [nseg][the length of each][the segments], as uint64 */
    lrp_bytes b = {0};
    uint64_t h = (uint64_t)nseg;
    int bad = lrp_bytes_put(&b, &h, sizeof h);
    for (int k = 0; k < nseg && !bad; k++) {
        h = seg[k].n;
        bad = lrp_bytes_put(&b, &h, sizeof h);
    }
    for (int k = 0; k < nseg && !bad; k++)
        bad = lrp_bytes_put(&b, seg[k].p, seg[k].n);
    if (bad) {
        lrp_bytes_free(&b);
        lrp_pipe_oom(r, "layer split");
        lrp_pipe_split_fail(r);
        return -1;
    }
    size_t total = 0;
    int rc = s->sp->exchange(s->sp->ctx, b.p, b.n, NULL, all, &total);
    lrp_bytes_free(&b);
    if (exchanged(r, rc))
        return -1;
    /* rank by rank: its header, then the segment meant for this rank */
    const unsigned char *p = *all, *e = p + total;
    for (int k = 0; k < R; k++) {
        uint64_t ns, len, off = 0, sum = 0, mlen = 0;
        LRP_ASSERT((size_t)(e - p) >= sizeof ns);
        memcpy(&ns, p, sizeof ns);
        LRP_ASSERT((ns == 1 || ns == (uint64_t)R) && (size_t)(e - p) >= (1 + ns) * sizeof ns);
        uint64_t mine = ns == 1 ? 0 : (uint64_t)q;
        for (uint64_t j = 0; j < ns; j++) {
            memcpy(&len, p + (1 + j) * sizeof ns, sizeof len);
            if (j < mine)
                off += len;
            if (j == mine)
                mlen = len;
            sum += len;
        }
        p += (1 + ns) * sizeof ns;
        LRP_ASSERT((size_t)(e - p) >= sum);
        in[k] = p + off;
        end[k] = p + off + mlen;
        p += sum;
    }
    LRP_ASSERT(p == e);
    return 0;
}

int lrp_pipe_split_ranks(const lrp_pipe_state *r) { return r->split->sp->size; }

void lrp_pipe_split_block_of(const lrp_pipe_state *r, int li, int q, int64_t *lo, int64_t *hi)
{
    const lrp_split_net *s = r->split;
    *lo = s->lo[li * s->sp->size + q];
    *hi = s->hi[li * s->sp->size + q];
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

/* ---- the whole-layer fallback ---- */

int lrp_pipe_split_whole(const lrp_pipe_state *r, int li)
{
    return r->split && r->split->whole[li];
}

/* this rank's block of layer li, sample by sample, from its whole tensor
 * full (batch * numel) into block (batch * the block) */
static void take_block(lrp_pipe_state *r, int li, void *block, const void *full)
{
    const lrp_split_net *s = r->split;
    const lrp_backend *be = r->be;
    int R = s->sp->size, q = s->sp->rank;
    const lrp_shape *sh = &s->full->layers[li].shape;
    int64_t n = lrp_shape_numel(sh), inner = inner_of(sh);
    int64_t lo = s->lo[li * R + q] * inner, w = s->hi[li * R + q] * inner - lo;
    for (int64_t b = 0; b < r->B && w > 0; b++)
        be->ew(be->ctx, LRP_EW_COPY, be->at(be->ctx, block, b * w),
               be->at(be->ctx, full, b * n + lo), NULL, 0, 0, w);
}

/* The layers whose whole activations a step run whole reads, gathered in
 * place of their blocks (p->L[lj].act and .n), until view_end puts the
 * blocks back and frees the whole tensors: held for the one step. */
typedef struct whole_view {
    int n;
    int li[LRP_MAX_INPUTS + 1];
    void *block[LRP_MAX_INPUTS + 1];
    int64_t bn[LRP_MAX_INPUTS + 1];
} whole_view;

/* layer lj's activations whole in v (gathered; once per layer: an input
 * may be named twice) */
static lrp_status view_gathered(lrp_pipe_state *r, whole_view *v, int lj)
{
    for (int k = 0; k < v->n; k++)
        if (v->li[k] == lj)
            return LRP_OK;
    lrp_pipe_layer *J = &r->p->L[lj];
    void *full = lrp_pipe_split_gather(r, lj, J->act);
    if (!full)
        return r->err->code;
    v->li[v->n] = lj;
    v->block[v->n] = J->act;
    v->bn[v->n] = J->n;
    v->n++;
    J->act = full;
    J->n = lrp_pipe_split_numel(r, lj);
    return LRP_OK;
}

static void view_end(lrp_pipe_state *r, whole_view *v)
{
    for (int k = v->n - 1; k >= 0; k--) {
        lrp_pipe_layer *J = &r->p->L[v->li[k]];
        r->be->tensor_free(r->be->ctx, J->act, J->n * r->B);
        J->act = v->block[k];
        J->n = v->bn[k];
    }
    v->n = 0;
}

/* The kind's step; the flags it raises are also kept apart
 * (whole_flags[bwd]).  whole: the step of one process, on the whole net
 * without the split; else the kind's own divided step (an attention). */
static lrp_status step_kept(lrp_pipe_state *r, int li, const void *R, int bwd, int whole)
{
    lrp_split_net *s = r->split;
    const lrp_kind_desc *kd = lrp_kind(s->full->layers[li].kind);
    lrp_pipe_layer *P = &r->p->L[li];
    lrp_nflags before = P->flags;
    memset(&P->flags, 0, sizeof P->flags);
    if (whole) {
        r->p->net = s->full;
        r->split = NULL;
    }
    lrp_status st = bwd ? kd->lrp_step(r, li, R) : kd->forward(r, li);
    r->split = s;
    r->p->net = &s->net;
    /* flags = the flags before, then the step's, as raised in that order */
    P->whole_flags[bwd] = P->flags;
    P->flags = before;
    for (int k = 0; k < LRP_NF_COUNT; k++)
        if (P->whole_flags[bwd].bits & (1u << k))
            lrp_nflags_raise_n(&P->flags, (lrp_nflag)k, P->whole_flags[bwd].sample[k],
                               P->whole_flags[bwd].unit[k], P->whole_flags[bwd].count[k]);
    return st;
}

static lrp_status step_whole(lrp_pipe_state *r, int li, const void *R, int bwd)
{
    return step_kept(r, li, R, bwd, 1);
}

int lrp_pipe_split_attn(const lrp_pipe_state *r, int li)
{
    return r->split && attn_rows(&r->split->full->layers[li]);
}

lrp_status lrp_pipe_split_attn_step(lrp_pipe_state *r, int li, const void *R, int bwd)
{
    return step_kept(r, li, R, bwd, 0);
}

lrp_status lrp_pipe_split_whole_fwd(lrp_pipe_state *r, int li)
{
    const lrp_layer *l = &r->split->full->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t n = lrp_shape_numel(&l->shape);
    whole_view v = {0};
    lrp_status st = LRP_OK;
    for (int k = 0; k < l->n_in && !st; k++)
        st = view_gathered(r, &v, l->in[k]);
    void *block = P->act, *full = NULL;
    if (!st && !(full = lrp_pipe_traw(r, n * r->B)))
        st = lrp_pipe_oom(r, "layer split");
    if (!st) {
        int64_t bn = P->n;
        P->act = full;
        P->n = n;
        st = step_whole(r, li, NULL, 0);
        P->act = block;
        P->n = bn;
        if (!st)
            take_block(r, li, block, full);
        r->be->tensor_free(r->be->ctx, full, n * r->B);
    }
    view_end(r, &v);
    return st;
}

lrp_status lrp_pipe_split_whole_bwd(lrp_pipe_state *r, int li, const void *R)
{
    const lrp_backend *be = r->be;
    const lrp_layer *l = &r->split->full->layers[li];
    const lrp_kind_desc *kd = lrp_kind(l->kind);
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t B = r->B, n = lrp_shape_numel(&l->shape);
    void *Rf = lrp_pipe_split_gather(r, li, R);
    if (!Rf)
        return r->err->code;
    lrp_status st = LRP_OK;
    if (!kd->lrp_step || (kd->through && kd->through(l))) {
        /* relevance crosses unchanged (Reshape): the input's block of it */
        take_block(r, l->in[0], P->rin[0], Rf);
        be->tensor_free(be->ctx, Rf, n * B);
        return LRP_OK;
    }
    /* the activations the step reads (its inputs' and its own), gathered
     * again rather than kept since the forward step: between the two
     * steps a rank holds its blocks only */
    whole_view v = {0};
    if (l->kind != LRP_LAYER_CONCAT) /* Concatenate reads R alone */
        for (int k = 0; k <= l->n_in && !st; k++)
            st = view_gathered(r, &v, k < l->n_in ? l->in[k] : li);
    void *block[LRP_MAX_INPUTS] = {NULL}, *full[LRP_MAX_INPUTS] = {NULL};
    int64_t bper[LRP_MAX_INPUTS], nf[LRP_MAX_INPUTS];
    for (int k = 0; k < l->n_in; k++) {
        nf[k] = lrp_pipe_split_numel(r, l->in[k]);
        if (!st && !(full[k] = lrp_pipe_traw(r, nf[k] * B)))
            st = lrp_pipe_oom(r, "layer split");
    }
    if (!st) {
        int64_t bn = P->n;
        for (int k = 0; k < l->n_in; k++) {
            block[k] = P->rin[k];
            bper[k] = P->n_rin_per[k];
            P->rin[k] = full[k];
            P->n_rin_per[k] = nf[k];
        }
        P->n = n;
        st = step_whole(r, li, Rf, 1);
        P->n = bn;
        for (int k = 0; k < l->n_in; k++) {
            P->rin[k] = block[k];
            P->n_rin_per[k] = bper[k];
            if (!st)
                take_block(r, l->in[k], block[k], full[k]);
        }
        /* a denominator that is the forward's z was the whole output
         * (freed below); the audit data is not kept under the split */
        for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++)
            if (P->den[k] && !P->owns_den[k])
                P->den[k] = NULL;
    }
    for (int k = 0; k < l->n_in; k++)
        if (full[k])
            be->tensor_free(be->ctx, full[k], nf[k] * B);
    view_end(r, &v);
    be->tensor_free(be->ctx, Rf, n * B);
    return st;
}

/* ---- the linear layers' geometry ---- */

int lrp_pipe_split_local(const lrp_pipe_state *r, int li)
{
    const lrp_net *f = r->split ? r->split->full : NULL;
    return f && (depthwise(f, &f->layers[li]) || token_rows(f, &f->layers[li]));
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
    if (token_rows(s->full, f)) {
        /* our block of tokens: the share's rows, every weight (per-input
         * z^B bounds on a token input are refused when a file is read) */
        lrp_pipe_lin_geom(L, &s->net, li);
        return;
    }
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
