/*
 * pipeline_int.h -- the state of one pipeline run and the helpers the
 * layer kinds' forward and LRP steps (core/kind_*.c, core/kinds.h) share
 * with core/pipeline.c.  Inside core/ only.
 */
#ifndef LRP_PIPELINE_INT_H
#define LRP_PIPELINE_INT_H

#include <stdint.h>

#include "pipeline.h"

typedef struct lrp_pipe_state {
    lrp_pipe *p;
    const lrp_backend *be;
    void *cx;
    lrp_err *err;
    int64_t B;
    unsigned flags; /* LRP_PIPE_* */
    int lean;       /* LEAN or RELEVANCE: rin[k] not kept, no gauges */
    int relonly;    /* RELEVANCE: no audit data (abs, residuals)   */
    int gauges;     /* gauge[k] tensors are computed               */
    int *n_contrib; /* per layer: relevance contributions received */
    const lrp_pipe_local *loc; /* or NULL */
    int stream;     /* STREAM: a layer's tensors are freed once the hook saw them */
    lrp_pipe_hook hook;
    void *hook_ctx;
    int *fwd_left;  /* STREAM with be->pack: forward consumers still to run */
    struct lrp_split_net *split; /* the layer split (core/pipe_split.c), or NULL */
} lrp_pipe_state;

/* A tensor of n values of the backend's type (zeros). */
void *lrp_pipe_tnew(lrp_pipe_state *r, int64_t n);
/* A tensor the caller overwrites entirely before anything reads it. */
void *lrp_pipe_traw(lrp_pipe_state *r, int64_t n);
/* The backend tensor of binary32 parameters: a view when the backend can
 * show binary32 in place, else an exact copy.  *borrowed tells which. */
void *lrp_pipe_tparams(lrp_pipe_state *r, const float *src, int64_t n, int *borrowed);
/* Sets the error: out of memory (what). */
lrp_status lrp_pipe_oom(lrp_pipe_state *r, const char *what);
/* 1 when every value is >= 0 (no NaN) */
int lrp_pipe_nonneg_f32(const float *x, int64_t n);

/* ---- the backward's bookkeeping (core/pipeline.c) ---- */
/* sticky flags of a layer from the classes of its units */
void lrp_pipe_flags_from_cls(lrp_pipe_layer *P, const uint8_t *cls, int64_t n, int64_t units);
lrp_status lrp_pipe_alloc_abs(lrp_pipe_state *r, lrp_pipe_layer *P, int64_t units, const int *kinds,
                              int nk);
lrp_status lrp_pipe_ensure_lost(lrp_pipe_state *r, lrp_pipe_layer *P, const uint8_t *cls, int64_t n);
lrp_status lrp_pipe_part_setup(lrp_pipe_state *r, lrp_pipe_layer *P, int k, float coef,
                               int64_t units);
/* The LRP step of a linear layer under its rule's descriptor row. */
lrp_status lrp_pipe_back_linear(lrp_pipe_state *r, int li, const void *R, void *rin);
/* Proportional split of y = sum_k v_k (Add; BN explicit with v = (w x,
 * shift terms)): the first n_in summands are inputs (their shares go to
 * rin[k]), the rest are absorbed into abs kinds akind[k]. */
lrp_status lrp_pipe_back_split(lrp_pipe_state *r, lrp_pipe_layer *P, const void *R, const void *y,
                               const void *const *v, int nv, int n_in, void *const *rin,
                               const int *akind, int64_t NU, int64_t U);

/* ---- the attention's masks (core/kind_attnparts.c; MultiHeadAttention and
 * AttnSoftmax) ----
 * The logits the softmax sees of the scores S (B, H, T, T) of layer l
 * (causal: key > query masked; use_padding_mask: the keys of
 * /data/key_padding_mask): *X = NULL and *mask = NULL, *mrows = 1 without a
 * mask; with mask_value -inf, *mask the excluded entries (row r of the
 * scores uses row r % *mrows, *mrows rows of T) and *X = NULL; with a finite
 * mask_value, *X a new tensor S + M (one rounding per entry; the caller
 * frees it, B H T T values) and *mask = NULL. */
lrp_status lrp_pipe_attn_logits(lrp_pipe_state *r, const lrp_layer *l, int64_t H, int64_t T,
                                const void *S, void **X, uint8_t **mask, int64_t *mrows);
/* The same for the rows of queries [q0, q0 + Tq) of T: S (B, H, Tq, T),
 * *mrows rows of T (Tq, or B H Tq with the padding mask), *X B H Tq T. */
lrp_status lrp_pipe_attn_logits_rows(lrp_pipe_state *r, const lrp_layer *l, int64_t H,
                                     int64_t Tq, int64_t q0, int64_t T, const void *S, void **X,
                                     uint8_t **mask, int64_t *mrows);

/* ---- the layer split (core/pipe_split.c; core/pipeline.h) ---- */
typedef struct lrp_split_net lrp_split_net;
/* this rank's share of the net, or NULL (out of memory) */
lrp_split_net *lrp_split_net_new(const lrp_net *full, const lrp_pipe_split *sp);
void lrp_split_net_free(lrp_split_net *s);
const lrp_net *lrp_split_net_share(const lrp_split_net *s);
/* The linear geometry of layer li for its forward and denominators: the
 * whole input and, under the split, this rank's block of output units
 * (else lrp_pipe_lin_geom of the run's net). */
void lrp_pipe_lin_geom_run(lrp_pipe_state *r, lrp_lin *L, int li);
/* 1 when layer li runs on this rank's block alone under the split (a
 * depthwise Conv2D, a Dense on a token sequence: lrp_pipe_lin_geom_run is
 * then its whole geometry, for the backward too, and nothing is
 * exchanged) */
int lrp_pipe_split_local(const lrp_pipe_state *r, int li);
/* Under the split, for lin_bwd: the whole output, this rank's block of
 * input cells.  Returns the weights' block of columns L->w32 points to
 * (the caller frees it after the step), or NULL: out of memory. */
float *lrp_pipe_lin_geom_bwd(lrp_pipe_state *r, lrp_lin *L, int li);
/* Under the split: layer li's tensor t (this rank's block, batch-major)
 * gathered whole from every rank's block (a new tensor of batch * numel
 * values), or NULL with the error set (the other ranks told). */
void *lrp_pipe_split_gather(lrp_pipe_state *r, int li, const void *t);
/* The same for a tensor t of this rank's rows of layer li's first axis,
 * each row of `inner` values (B x rows x inner): the whole (B x T x inner). */
void *lrp_pipe_split_gather_rows(lrp_pipe_state *r, int li, const void *t, int64_t inner);
/* Bytes t (outer x this rank's rows of layer li x inner) gathered whole
 * (outer x T x inner, malloc'ed); NULL with the error set. */
uint8_t *lrp_pipe_split_gather_bytes(lrp_pipe_state *r, int li, const uint8_t *t,
                                     int64_t outer, int64_t inner);
/* One exchange of bytes: seg[0] for every rank (nseg 1) or seg[q] for rank q
 * (nseg = the ranks).  What rank k sent this rank is [in[k], end[k]),
 * inside *all (malloc'ed, the caller frees it).  0, or -1 with the error set. */
int lrp_pipe_split_swap(lrp_pipe_state *r, const lrp_bytes *seg, int nseg, void **all,
                        const unsigned char **in, const unsigned char **end);
/* the ranks, and rank q's block of layer li */
int lrp_pipe_split_ranks(const lrp_pipe_state *r);
void lrp_pipe_split_block_of(const lrp_pipe_state *r, int li, int q, int64_t *lo, int64_t *hi);
/* 1 when layer li is an attention divided by rows of queries under the
 * split (core/kind_attn.c): the pipeline runs its steps through
 * lrp_pipe_split_attn_step, which keeps their flags apart (whole_flags)
 * as for a layer run whole: they are the whole layer's on every rank. */
int lrp_pipe_split_attn(const lrp_pipe_state *r, int li);
lrp_status lrp_pipe_split_attn_step(lrp_pipe_state *r, int li, const void *R, int bwd);
/* Tells the other ranks this one failed (its error set), once. */
void lrp_pipe_split_fail(lrp_pipe_state *r);
/* values per sample of layer li in the whole net; this rank's block
 * [lo, hi) of its first axis and the values per index of that axis */
int64_t lrp_pipe_split_numel(const lrp_pipe_state *r, int li);
void lrp_pipe_split_range(const lrp_pipe_state *r, int li, int64_t *lo, int64_t *hi,
                          int64_t *inner);
const lrp_net *lrp_pipe_split_full(const lrp_pipe_state *r);
/* The whole-layer fallback: 1 when layer li runs whole under the split
 * (core/pipeline.h, "The layer split").  Its forward step: the inputs
 * gathered whole, the kind's forward of one process on the whole net,
 * this rank's block of its output into p->L[li].act.  Its LRP step: R (this
 * rank's block of the output's relevance) and the activations the kind
 * reads gathered whole, the kind's step of one process, each input's block
 * of rin[k] into p->L[li].rin[k] (allocated for the blocks).  The whole
 * tensors are freed before they return; on an error, with it set. */
int lrp_pipe_split_whole(const lrp_pipe_state *r, int li);
lrp_status lrp_pipe_split_whole_fwd(lrp_pipe_state *r, int li);
lrp_status lrp_pipe_split_whole_bwd(lrp_pipe_state *r, int li, const void *R);

#endif
