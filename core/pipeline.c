/*
 * pipeline.c -- forward pass and per-layer LRP backward over the graph,
 * written once for every backend (core/pipeline.h has the vtable).
 *
 * Per layer the pipeline keeps: forward activations, the denominators of
 * each rule part, the per-unit classes (zero den, stabilizer, undefined,
 * empty, dropped), absorbed relevance by kind per unit, the relevance
 * arriving at the layer output and the layer's contribution to each input,
 * the conservation residual per sample, and sticky numerical flags with the
 * first location.
 *
 * Output relevance: net->r_out if given, else one-hot at net->target[b]
 * holding the output value (the logit), else one-hot at the first argmax.
 * Relevance arriving from several consumers is summed in consumer order
 * (the first contribution is copied, so a single consumer passes its values
 * bit for bit, including -0).
 */
#include "pipeline.h"
#include "pipeline_int.h"

#include "kinds.h"

#include <stdlib.h>
#include <string.h>

typedef lrp_pipe_state run;

static lrp_pipe_progress_fn progress_fn;
static void *progress_ctx;

void lrp_pipe_set_progress(lrp_pipe_progress_fn fn, void *ctx)
{
    progress_fn = fn;
    progress_ctx = ctx;
}

static void progress(const lrp_net *net, int li, int bwd)
{
    if (progress_fn)
        progress_fn(progress_ctx, net, li, bwd);
}

void *lrp_pipe_tnew(run *r, int64_t n)
{
    void *t = r->be->tensor_new(r->be->ctx, n);
    return t;
}

/* A tensor the caller overwrites entirely before anything reads it. */
void *lrp_pipe_traw(run *r, int64_t n)
{
    if (r->be->tensor_raw)
        return r->be->tensor_raw(r->be->ctx, n);
    return r->be->tensor_new(r->be->ctx, n);
}

/* The backend tensor of binary32 parameters: a view when the backend can
 * show binary32 in place, else an exact copy.  *borrowed tells which. */
void *lrp_pipe_tparams(run *r, const float *src, int64_t n, int *borrowed)
{
    const lrp_backend *be = r->be;
    if (be->wrap_f32) {
        *borrowed = 1;
        return be->wrap_f32(be->ctx, src, n);
    }
    *borrowed = 0;
    void *t = be->tensor_new(be->ctx, n);
    if (t)
        be->set_f32(be->ctx, t, src, n);
    return t;
}

void lrp_pipe_lin_geom(lrp_lin *L, const lrp_net *net, int li)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    memset(L, 0, sizeof *L);
    L->n_in = lrp_shape_numel(in);
    L->n_out = lrp_shape_numel(&l->shape);
    L->rows = 1;
    if (l->kind == LRP_LAYER_DENSE && in->rank == 2) {
        /* token sequence (T, F) -> (T, units): per row */
        L->rows = in->d[0];
        L->n_in = in->d[1];
        L->n_out = l->units;
    }
    L->w32 = l->w;
    L->b32 = l->has_bias ? l->b : NULL;
    if (l->kind == LRP_LAYER_CONV2D) {
        L->conv = 1;
        L->C = in->d[0];
        L->H = in->d[1];
        L->W = in->d[2];
        L->O = l->shape.d[0];
        L->Ho = l->shape.d[1];
        L->Wo = l->shape.d[2];
        L->kh = l->kh;
        L->kw = l->kw;
        L->sh = l->sh;
        L->sw = l->sw;
        L->dh = l->dh;
        L->dw = l->dw;
        L->pt = l->pt;
        L->pl = l->pl;
        L->groups = l->groups;
        L->fanin = L->C / l->groups * l->kh * l->kw;
    } else {
        L->fanin = L->n_in;
        L->O = L->n_out;
        L->Ho = L->Wo = 1;
        L->C = L->n_in;
        L->H = L->W = 1;
        L->kh = L->kw = L->sh = L->sw = L->dh = L->dw = L->groups = 1;
    }
    L->low_s = l->rule.low;
    L->high_s = l->rule.high;
    if (l->in[0] == 0 && net->zbox_low && net->zbox_high) {
        L->low = net->zbox_low;
        L->high = net->zbox_high;
    }
}

void lrp_pipe_pool_geom(lrp_pool *P, const lrp_net *net, int li)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = &net->layers[l->in[0]].shape;
    memset(P, 0, sizeof *P);
    P->C = in->d[0];
    P->H = in->d[1];
    P->W = in->d[2];
    if (l->kind == LRP_LAYER_GLOBALAVGPOOL) {
        P->Ho = P->Wo = 1;
        P->kh = (int)P->H;
        P->kw = (int)P->W;
        P->sh = P->sw = 1;
        P->count_include_pad = 1;
        return;
    }
    P->Ho = l->shape.d[1];
    P->Wo = l->shape.d[2];
    P->kh = l->kh;
    P->kw = l->kw;
    P->sh = l->sh;
    P->sw = l->sw;
    P->pt = l->pt;
    P->pl = l->pl;
    P->count_include_pad = l->count_include_pad;
    P->split_ties = (l->rule.flags & LRP_F_WTA_SPLIT_TIES) != 0;
}

/* ---- forward ---- */

int lrp_pipe_nonneg_f32(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!(x[i] >= 0.0f))
            return 0;
    return 1;
}

lrp_status lrp_pipe_oom(run *r, const char *what)
{
    return lrp_err_set(r->err, LRP_E_NOMEM, "<network>: out of memory (%s)", what);
}

/* local mode: the caller's take (lrp_pipe_local) could not give layer
 * li's inputs (its own error is the caller's to report) */
static lrp_status local_untaken(run *r, int li)
{
    return lrp_err_set(r->err, LRP_E_NOMEM, "<network>: layer '%s': the given inputs could not be had",
                       r->p->net->layers[li].name);
}

/* Linear geometry of layer li with the parameters the backward uses
 * (folded when a BN consumer canonizes it). */
static void lin_params(run *r, lrp_lin *L, int li)
{
    lrp_pipe_layer *P = &r->p->L[li];
    lrp_pipe_lin_geom_run(r, L, li);
    L->w = P->bnp[0];
    L->b = P->bnp[1];
    if (P->folded_into >= 0) {
        L->wscale = r->p->L[P->folded_into].bnp[0];
        L->b = P->fold_b;
        L->b32 = NULL;
    }
}

static void flags_nan_inf(run *r, lrp_pipe_layer *P, const void *t, int64_t n, int64_t per);

/* Packing (streamed runs of a backend with pack/unpack: the MPFR
 * reference).  Once every forward consumer of a tensor has run, only
 * backward steps read its activation: its own layer's and its consumers'.
 * It is kept packed (MPFR at p = 128: 24 bytes a value instead of 48) and
 * unpacked for each of those steps alone (unpack_for / repack_after). */
static void pack_act(run *r, int li)
{
    lrp_pipe_layer *P = &r->p->L[li];
    if (!P->act || P->act_packed)
        return;
    void *pk = r->be->pack(r->cx, P->act, P->n * r->B);
    if (pk) {
        P->act_packed = pk;
        P->act = NULL;
    }
}

static lrp_status unpack_act(run *r, int li)
{
    lrp_pipe_layer *P = &r->p->L[li];
    if (P->act || !P->act_packed)
        return LRP_OK;
    if (!(P->act = r->be->unpack(r->cx, P->act_packed, P->n * r->B)))
        return lrp_pipe_oom(r, "activations");
    return LRP_OK;
}

/* before layer li's backward step: its own and its inputs' activations */
static lrp_status unpack_for(run *r, int li)
{
    if (!r->fwd_left)
        return LRP_OK;
    const lrp_layer *l = &r->p->net->layers[li];
    lrp_status st = unpack_act(r, li);
    for (int k = 0; k < l->n_in && !st; k++)
        st = unpack_act(r, l->in[k]);
    return st;
}

/* after it: the inputs' unpacked copies go (their packs stay for the
 * steps to come); its own pack goes (no later step reads it) */
static void repack_after(run *r, int li)
{
    if (!r->fwd_left)
        return;
    const lrp_backend *be = r->be;
    const lrp_layer *l = &r->p->net->layers[li];
    for (int k = 0; k < l->n_in; k++) {
        lrp_pipe_layer *I = &r->p->L[l->in[k]];
        if (I->act_packed && I->act) {
            be->tensor_free(r->cx, I->act, I->n * r->B);
            I->act = NULL;
        }
    }
    lrp_pipe_layer *P = &r->p->L[li];
    if (P->act_packed && !P->act) {
        be->pack_free(r->cx, P->act_packed);
        P->act_packed = NULL;
    }
}

static lrp_status forward(run *r)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    int64_t B = r->B;
    for (int li = 0; li < net->n_layers; li++) {
        const lrp_layer *l = &net->layers[li];
        lrp_pipe_layer *P = &r->p->L[li];
        progress(net, li, 0);
        P->n = lrp_shape_numel(&l->shape);
        P->rule = l->rule;
        P->folded_into = -1;
        int64_t n = P->n * B;
        P->act = lrp_pipe_traw(r, n); /* every layer kind writes all of it */
        /* rel is made when the first relevance arrives (back_layer) */
        if (!P->act)
            return lrp_pipe_oom(r, "activations");
        /* the kind's forward step (core/kind_*.c); under the layer split a
         * layer it does not divide runs whole (core/pipe_split.c) */
        lrp_status st = lrp_pipe_split_whole(r, li)  ? lrp_pipe_split_whole_fwd(r, li)
                        : lrp_pipe_split_attn(r, li) ? lrp_pipe_split_attn_step(r, li, NULL, 0)
                                                     : lrp_kind(l->kind)->forward(r, li);
        if (st)
            return st;
        if (r->split && l->kind == LRP_LAYER_INPUT) {
            /* "known >= 0" decides which terms the linear steps pass (a
             * neg() pass of a non-negative input is dropped): every rank
             * decides it on the whole input, as one process does */
            const lrp_net *full = lrp_pipe_split_full(r);
            P->nonneg = lrp_pipe_nonneg_f32(full->input, lrp_pipe_split_numel(r, li) * B);
        }
        /* local mode: every layer downstream sees the given activations
         * (the reference's, rounded to binary32) instead of this path's */
        if (r->loc && r->loc->take && r->loc->take(r->loc->take_ctx, li, 0, 0))
            return local_untaken(r, li);
        if (r->loc && r->loc->act && r->loc->act[li]) {
            if (r->loc->keep_fwd && li > 0) {
                if (!(P->act_fwd = lrp_pipe_tnew(r, n)))
                    return lrp_pipe_oom(r, "activations");
                be->ew(cx, LRP_EW_COPY, P->act_fwd, P->act, NULL, 0, 0, n);
            }
            be->set_f32(cx, P->act, r->loc->act[li], n);
        }
        if (r->loc && r->loc->take && r->loc->take(r->loc->take_ctx, li, 0, 1))
            return local_untaken(r, li);
        /* NaN / inf in the forward pass: non-finite inputs, or float32
         * overflow; a rule may filter them out later (pos(NaN) = +0, flat,
         * w-square), so they are flagged where they appear */
        flags_nan_inf(r, P, P->act, n, P->n);
        if (r->hook)
            r->hook(r->hook_ctx, r->p, li, 0);
        if (r->stream && P->act_fwd) { /* the hook took what it needed */
            be->tensor_free(cx, P->act_fwd, n);
            P->act_fwd = NULL;
        }
        if (r->fwd_left)
            for (int k = 0; k < l->n_in; k++)
                if (--r->fwd_left[l->in[k]] == 0)
                    pack_act(r, l->in[k]);
    }
    return LRP_OK;
}

/* ---- backward helpers ---- */

/* 1 if no byte of cls[lo..hi) has a bit of mask (word-wise: fast on the
 * common all-normal classes). */
static int bytes_clear(const uint8_t *cls, int64_t lo, int64_t hi, uint8_t mask)
{
    uint64_t m8 = 0x0101010101010101u * mask;
    int64_t j = lo;
    for (; j + 8 <= hi; j += 8) {
        uint64_t w;
        memcpy(&w, cls + j, 8);
        if (w & m8)
            return 0;
    }
    for (; j < hi; j++)
        if (cls[j] & mask)
            return 0;
    return 1;
}

#define CLS_BLOCK 4096

void lrp_pipe_flags_from_cls(lrp_pipe_layer *P, const uint8_t *cls, int64_t n, int64_t units)
{
    for (int64_t j = 0; j < n; j++) {
        if ((j & (CLS_BLOCK - 1)) == 0) {
            int64_t e = j + CLS_BLOCK < n ? j + CLS_BLOCK : n;
            /* a block of NORMAL units without zero denominators raises
             * nothing: skip it */
            if (bytes_clear(cls, j, e, LRP_CLS_ZERO | LRP_CLS_KIND)) {
                j = e - 1;
                continue;
            }
        }
        uint8_t c = cls[j];
        unsigned kind = c & LRP_CLS_KIND;
        int64_t b = j / units, u = j % units;
        if (kind == LRP_K_UNSEL)
            continue;
        if (c & LRP_CLS_ZERO) {
            lrp_nflags_raise(&P->flags, LRP_NF_ZERO_DEN, b, u);
            if (c & LRP_CLS_ZNEG)
                lrp_nflags_raise(&P->flags, LRP_NF_ZERO_DEN_NEG, b, u);
            if (c & (LRP_CLS_ADD_POS | LRP_CLS_ADD_NEG))
                lrp_nflags_raise(&P->flags, LRP_NF_STAB_AT_ZERO, b, u);
        }
        switch (kind) {
        case LRP_K_UNDEF: lrp_nflags_raise(&P->flags, LRP_NF_UNDEFINED, b, u); break;
        case LRP_K_SKIP: lrp_nflags_raise(&P->flags, LRP_NF_SKIP_ZERO, b, u); break;
        case LRP_K_EMPTY: lrp_nflags_raise(&P->flags, LRP_NF_EMPTY_PART, b, u); break;
        case LRP_K_DROPPED: lrp_nflags_raise(&P->flags, LRP_NF_DROPPED, b, u); break;
        case LRP_K_NAN: lrp_nflags_raise(&P->flags, LRP_NF_NAN, b, u); break;
        default: break;
        }
    }
}

static void flags_nan_inf(run *r, lrp_pipe_layer *P, const void *t, int64_t n, int64_t per)
{
    if (r->be->scan_nonfinite) {
        int64_t cnt[2], first[2];
        r->be->scan_nonfinite(r->be->ctx, t, n, cnt, first);
        if (cnt[0] > 0)
            lrp_nflags_raise_n(&P->flags, LRP_NF_NAN, first[0] / per, first[0] % per, cnt[0]);
        if (cnt[1] > 0)
            lrp_nflags_raise_n(&P->flags, LRP_NF_INF, first[1] / per, first[1] % per, cnt[1]);
        return;
    }
    uint8_t *c = malloc((size_t)(n ? n : 1));
    if (!c)
        return; /* flags are best effort under memory pressure */
    r->be->classify(r->be->ctx, c, t, n);
    for (int64_t i = 0; i < n; i++) {
        if (c[i] & LRP_V_NAN)
            lrp_nflags_raise(&P->flags, LRP_NF_NAN, i / per, i % per);
        if (c[i] & LRP_V_INF)
            lrp_nflags_raise(&P->flags, LRP_NF_INF, i / per, i % per);
    }
    free(c);
}

lrp_status lrp_pipe_alloc_abs(run *r, lrp_pipe_layer *P, int64_t units, const int *kinds, int nk)
{
    P->n_units = units;
    for (int k = 0; k < nk; k++)
        if (!(P->abs[kinds[k]] = lrp_pipe_tnew(r, units * r->B)))
            return lrp_pipe_oom(r, "absorbed");
    return LRP_OK;
}

/* The "lost relevance" kinds are allocated only when a unit of that kind
 * occurs (most layers have none): memory stays proportional to what is
 * reported. */
lrp_status lrp_pipe_ensure_lost(run *r, lrp_pipe_layer *P, const uint8_t *cls, int64_t n)
{
    int need[3] = {0, 0, 0};
    /* UNDEF, EMPTY and DROPPED are the kinds 1, 3, 5: all have bit 4
     * (LRP_K_UNDEF), which no other kind has */
    if (bytes_clear(cls, 0, n, LRP_K_UNDEF))
        return LRP_OK;
    for (int64_t j = 0; j < n; j++) {
        unsigned k = cls[j] & LRP_CLS_KIND;
        need[0] |= k == LRP_K_UNDEF;
        need[1] |= k == LRP_K_EMPTY;
        need[2] |= k == LRP_K_DROPPED;
    }
    const int kind[3] = {LRP_ABS_UNDEF, LRP_ABS_EMPTY, LRP_ABS_DROPPED};
    for (int q = 0; q < 3; q++)
        if (need[q] && !P->abs[kind[q]] && !(P->abs[kind[q]] = lrp_pipe_tnew(r, n)))
            return lrp_pipe_oom(r, "absorbed");
    return LRP_OK;
}

lrp_status lrp_pipe_part_setup(run *r, lrp_pipe_layer *P, int k, float coef, int64_t units)
{
    P->coef[k] = coef;
    P->cls[k] = calloc((size_t)(units * r->B), 1);
    if (!P->cls[k])
        return lrp_pipe_oom(r, "classes");
    return LRP_OK;
}

/* Selection masks of the parts of a selector rule, from the plain z. */
static int sel_ok(int sel, uint8_t v)
{
    if (v & LRP_V_NAN)
        return 0;
    switch (sel) {
    case LRP_SEL_ALL: return 1;
    case LRP_SEL_ZPOS: return !(v & (LRP_V_NEG | LRP_V_ZERO));
    case LRP_SEL_ZNONNEG: return !(v & LRP_V_NEG);
    case LRP_SEL_ZNEG: return (v & LRP_V_NEG) != 0;
    case LRP_SEL_ZNONZERO: return !(v & LRP_V_ZERO);
    }
    return 0;
}

lrp_status lrp_pipe_back_linear(run *r, int li, const void *R, void *rin)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    const lrp_pipe_layer *I = &r->p->L[l->in[0]];
    lrp_rule_spec rs = l->rule;
    lrp_status st = LRP_OK;
    lrp_lin L;
    lin_params(r, &L, li);
    const lrp_rule_desc *d = lrp_rule_describe(&rs);
    LRP_ASSERT(d);
    P->desc = d;
    /* units per sample (a token Dense: rows * units); the backend's
     * linear ops run over LB rows of n_in -> n_out */
    int64_t U = L.n_out * L.rows, NU = U * r->B, LB = r->B * L.rows;
    int has_b = L.b != NULL;
    int use_b = has_b && rs.bias;
    int folded = P->folded_into >= 0;
    uint8_t *zcls = NULL, *dropcls = NULL;
    void *tmp = NULL;
    /* the input the denominators read: under the layer split every rank's
     * block gathered (only when a part is not the forward's z) */
    const void *X = I->act;
    void *xfull = NULL;
    int split = r->split && !lrp_pipe_split_local(r, li); /* exchanges */
    int kinds[] = {LRP_ABS_BIAS, LRP_ABS_STAB};
    P->n_units = U;
    if (!r->relonly && (st = lrp_pipe_alloc_abs(r, P, U, kinds, 2)))
        return st;

    int need_sel = 0;
    for (int k = 0; k < d->n_parts; k++)
        need_sel |= d->p[k].sel != LRP_SEL_ALL;
    if (need_sel) {
        /* the layer's real output z_j (with its bias, whatever the rule's
         * bias switch: Zennit's Gamma selects on the module's output also
         * under zero_params=['bias']); a BatchNorm folded into this layer
         * makes the real output the folded map W' a + b' */
        zcls = malloc((size_t)NU);
        if (!zcls)
            return lrp_pipe_oom(r, "selector");
        const void *z = P->act;
        if (folded) {
            tmp = lrp_pipe_traw(r, NU);
            if (!tmp) {
                free(zcls);
                return lrp_pipe_oom(r, "selector");
            }
            if (split && !(X = xfull = lrp_pipe_split_gather(r, l->in[0], I->act))) {
                /* (the layer split: the whole input for our output block) */
                be->tensor_free(cx, tmp, NU);
                free(zcls);
                return r->err->code;
            }
            lrp_term t = {LRP_IM_ID, LRP_WM_ID, 1.0f};
            lrp_bterm bt = {LRP_BM_ID, 1.0f};
            be->lin_fwd(cx, tmp, &L, X, &t, 1, &bt, has_b, 0, LB);
            z = tmp;
        }
        be->classify(cx, zcls, z, NU);
        if (tmp)
            be->tensor_free(cx, tmp, NU);
        tmp = NULL;
    }

    lrp_bwd_part bp[LRP_PIPE_MAX_PARTS];
    lrp_term terms[LRP_PIPE_MAX_PARTS][LRP_PIPE_MAX_TERMS];
    void *svec[LRP_PIPE_MAX_PARTS] = {NULL, NULL};
    int np = 0;
    P->n_parts = d->n_parts;
    for (int k = 0; k < d->n_parts; k++) {
        const lrp_part_desc *pd = &d->p[k];
        float coef = lrp_coef_value((lrp_coefsrc)pd->coef, &rs);
        if ((st = lrp_pipe_part_setup(r, P, k, coef, U)))
            goto done;
        if (coef == 0.0f) {
            memset(P->cls[k], LRP_K_UNSEL, (size_t)NU);
            continue; /* beta = 0: no negative part */
        }
        int nt = 0, nb = 0;
        lrp_bterm bt[LRP_PIPE_MAX_BTERMS];
        for (int t = 0; t < pd->n_terms; t++) {
            float c = lrp_coef_value((lrp_coefsrc)pd->t[t].coef, &rs);
            if (c == 0.0f)
                continue;
            if (pd->t[t].in == LRP_IM_NEG && I->nonneg)
                continue; /* neg(a) == +0 everywhere: no x- pass */
            terms[k][nt].in = pd->t[t].in;
            terms[k][nt].w = pd->t[t].w;
            terms[k][nt].c = c;
            nt++;
        }
        if (use_b)
            for (int u = 0; u < pd->n_bias; u++) {
                float c = lrp_coef_value((lrp_coefsrc)pd->b[u].coef, &rs);
                if (c == 0.0f)
                    continue;
                bt[nb].mod = pd->b[u].mod;
                bt[nb].c = c;
                nb++;
            }
        /* den: reuse the forward z when the part is exactly the plain map */
        int plain = !folded && nt == 1 && terms[k][0].in == LRP_IM_ID &&
                    terms[k][0].w == LRP_WM_ID && terms[k][0].c == 1.0f &&
                    nb == (has_b ? 1 : 0) && (nb == 0 || (bt[0].mod == LRP_BM_ID && bt[0].c == 1.0f));
        if (plain) {
            P->den[k] = P->act;
            P->owns_den[k] = 0;
        } else {
            if (!(P->den[k] = lrp_pipe_traw(r, NU))) {
                st = lrp_pipe_oom(r, "denominator");
                goto done;
            }
            P->owns_den[k] = 1;
            if (split && !xfull) {
                if (!(xfull = lrp_pipe_split_gather(r, l->in[0], I->act))) {
                    st = r->err->code;
                    goto done;
                }
                X = xfull;
            }
            be->lin_fwd(cx, P->den[k], &L, X, terms[k], nt, bt, nb, 0, LB);
        }
        if (r->gauges) {
            if (!(P->gauge[k] = lrp_pipe_traw(r, NU))) {
                st = lrp_pipe_oom(r, "gauge");
                goto done;
            }
            be->lin_fwd(cx, P->gauge[k], &L, I->act, terms[k], nt, bt, nb, 1, LB);
        }
        void *bden = NULL;
        if (nb > 0 && !r->relonly) { /* only the absorbed bias needs it */
            if (!(bden = lrp_pipe_traw(r, NU))) {
                st = lrp_pipe_oom(r, "bias");
                goto done;
            }
            /* no term reads the input, but a backend may scan it: under
             * the layer split the rank's block stands in for it */
            lrp_lin Lx = L;
            if (split)
                Lx.n_in = lrp_shape_numel(&net->layers[l->in[0]].shape);
            be->lin_fwd(cx, bden, &Lx, I->act, NULL, 0, bt, nb, 0, LB);
        }
        uint8_t *mask = NULL;
        if (pd->sel != LRP_SEL_ALL) {
            mask = malloc((size_t)NU);
            if (!mask) {
                st = lrp_pipe_oom(r, "mask");
                goto done;
            }
            for (int64_t j = 0; j < NU; j++)
                mask[j] = (uint8_t)sel_ok(pd->sel, zcls[j]);
        }
        if (!(svec[k] = lrp_pipe_traw(r, NU))) {
            free(mask);
            if (bden)
                be->tensor_free(cx, bden, NU);
            st = lrp_pipe_oom(r, "quotients");
            goto done;
        }
        be->stab_div(cx, svec[k], P->cls[k], R, P->den[k], mask, rs.stab, rs.eps,
                     pd->empty_lost, NU);
        if (!r->relonly) {
            if ((st = lrp_pipe_ensure_lost(r, P, P->cls[k], NU))) {
                free(mask);
                if (bden)
                    be->tensor_free(cx, bden, NU);
                goto done;
            }
            be->absorb(cx, P->abs, R, svec[k], bden, P->cls[k], coef, rs.eps, NU);
        }
        lrp_pipe_flags_from_cls(P, P->cls[k], NU, U);
        free(mask);
        if (bden)
            be->tensor_free(cx, bden, NU);
        bp[np].coef = coef;
        bp[np].s = svec[k];
        bp[np].t = terms[k];
        bp[np].nt = nt;
        np++;
    }
    if (need_sel) {
        /* units no part selected (Zennit's gamma at z_j == 0): dropped */
        dropcls = malloc((size_t)NU);
        if (!dropcls) {
            st = lrp_pipe_oom(r, "selector");
            goto done;
        }
        int any = 0;
        for (int64_t j = 0; j < NU; j++) {
            int sel = 0;
            for (int k = 0; k < d->n_parts; k++)
                sel |= P->coef[k] != 0.0f && sel_ok(d->p[k].sel, zcls[j]);
            dropcls[j] = sel ? LRP_K_UNSEL : LRP_K_DROPPED;
            any |= !sel;
        }
        if (any) {
            if (!r->relonly) {
                if ((st = lrp_pipe_ensure_lost(r, P, dropcls, NU)))
                    goto done;
                be->absorb(cx, P->abs, R, R, NULL, dropcls, 1.0f, 0.0f, NU);
            }
            lrp_pipe_flags_from_cls(P, dropcls, NU, U);
        }
    }
    if (!split) {
        be->lin_bwd(cx, rin, &L, I->act, bp, np, LB);
    } else {
        /* the layer split: each part's quotients of every rank's output
         * block, then R_i of our block of input cells from all of them --
         * each R_i the one rounding of the same exact sum as in one
         * process */
        if (xfull) {
            be->tensor_free(cx, xfull, L.n_in * LB);
            xfull = NULL;
        }
        int64_t nfull = lrp_pipe_split_numel(r, li) * r->B;
        void *sfull[LRP_PIPE_MAX_PARTS] = {NULL, NULL};
        for (int k = 0; k < np && !st; k++)
            if (!(sfull[k] = lrp_pipe_split_gather(r, li, bp[k].s)))
                st = r->err->code;
            else
                bp[k].s = sfull[k];
        /* a BatchNorm folded into this layer: every output channel's
         * factor (the rank's BatchNorm holds its block's), computed from
         * the whole net's BatchNorm as the block's were, channel by
         * channel */
        void *coef[4] = {NULL, NULL, NULL, NULL};
        int64_t Cf = 0;
        if (!st && folded) {
            const lrp_layer *fb = &lrp_pipe_split_full(r)->layers[P->folded_into];
            Cf = lrp_pipe_split_full(r)->layers[li].shape.d[0]; /* O: the BatchNorm's C */
            for (int k = 0; k < 4 && !st; k++)
                if (!(coef[k] = be->tensor_new(cx, Cf)))
                    st = lrp_pipe_oom(r, "layer split");
            if (!st)
                be->bn_coef(cx, coef[0], coef[1], coef[2], coef[3], fb, Cf);
        }
        if (!st) {
            lrp_lin Lb;
            float *wcols = lrp_pipe_lin_geom_bwd(r, &Lb, li);
            if (!wcols) {
                st = lrp_pipe_oom(r, "layer split");
            } else {
                Lb.w = NULL;
                Lb.b = NULL;
                Lb.wscale = folded ? coef[0] : NULL;
                be->lin_bwd(cx, rin, &Lb, I->act, bp, np, LB);
                free(wcols);
            }
        }
        for (int k = 0; k < 4; k++)
            if (coef[k])
                be->tensor_free(cx, coef[k], Cf);
        for (int k = 0; k < np; k++)
            if (sfull[k])
                be->tensor_free(cx, sfull[k], nfull);
    }
done:
    if (xfull)
        be->tensor_free(cx, xfull, L.n_in * LB);
    for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++)
        if (svec[k])
            be->tensor_free(cx, svec[k], NU);
    free(zcls);
    free(dropcls);
    return st;
}

/* Proportional split of y = sum_k v_k (Add; BN explicit with v = (w x, shift
 * terms)).  The first n_in summands are inputs (their shares go to rin[k]),
 * the rest are absorbed into abs kinds akind[k].  rule: lrp0 / epsilon on
 * den = y (given), or alpha-beta on the positive / negative summands. */
lrp_status lrp_pipe_back_split(run *r, lrp_pipe_layer *P, const void *R, const void *y,
                             const void *const *v, int nv, int n_in, void *const *rin,
                             const int *akind, int64_t NU, int64_t U)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    lrp_rule_spec rs = P->rule;
    lrp_status st = LRP_OK;
    /* the rule's row, read as a split (core/ruletab.c) */
    const lrp_rule_desc *d = lrp_rule_split_describe(&rs);
    LRP_ASSERT(d && d->n_parts <= 2);
    int im[2] = {LRP_IM_ID, LRP_IM_ID};
    void *s[2] = {NULL, NULL}, *mod[2][LRP_MAX_INPUTS + 2];
    void *tmp = NULL;
    memset(mod, 0, sizeof mod);
    int kinds[] = {LRP_ABS_STAB, akind[0], akind[1]};
    P->n_units = U;
    if (!r->relonly && (st = lrp_pipe_alloc_abs(r, P, U, kinds, 1 + (nv - n_in))))
        return st;
    int nparts = d->n_parts;
    P->n_parts = nparts;
    if (!(tmp = lrp_pipe_traw(r, NU)))
        return lrp_pipe_oom(r, "split");
    for (int k = 0; k < nparts; k++) {
        const lrp_part_desc *pd = &d->p[k];
        float coef = lrp_coef_value((lrp_coefsrc)pd->coef, &rs);
        im[k] = lrp_part_split_inmod(pd);
        if ((st = lrp_pipe_part_setup(r, P, k, coef, U)))
            goto done;
        if (coef == 0.0f) {
            memset(P->cls[k], LRP_K_UNSEL, (size_t)NU);
            continue;
        }
        if (!(s[k] = lrp_pipe_traw(r, NU))) {
            st = lrp_pipe_oom(r, "split");
            goto done;
        }
        if (im[k] == LRP_IM_ID) { /* every summand: den = y */
            P->den[k] = (void *)y;
            P->owns_den[k] = 0;
            mod[k][0] = NULL;
        } else {
            for (int t = 0; t < nv; t++) {
                if (!(mod[k][t] = lrp_pipe_traw(r, NU))) {
                    st = lrp_pipe_oom(r, "split");
                    goto done;
                }
                be->ew(cx, im[k] == LRP_IM_POS ? LRP_EW_POS : LRP_EW_NEG, mod[k][t], v[t], NULL, 0,
                       0, NU);
            }
            if (!(P->den[k] = lrp_pipe_traw(r, NU))) {
                st = lrp_pipe_oom(r, "split");
                goto done;
            }
            P->owns_den[k] = 1;
            be->sum_n(cx, P->den[k], (const void *const *)mod[k], nv, NU);
        }
        be->stab_div(cx, s[k], P->cls[k], R, P->den[k], NULL, rs.stab, rs.eps, pd->empty_lost, NU);
        if (!r->relonly) {
            if ((st = lrp_pipe_ensure_lost(r, P, P->cls[k], NU)))
                goto done;
            be->absorb(cx, P->abs, R, s[k], NULL, P->cls[k], coef, rs.eps, NU);
        }
        lrp_pipe_flags_from_cls(P, P->cls[k], NU, U);
    }
    /* shares: out = sum_k coef_k mod_k(v_t) s_k (the absorbed ones only
     * when audit data is kept) */
    for (int t = 0; t < nv; t++) {
        void *out = t < n_in ? rin[t] : P->abs[akind[t - n_in]];
        int first = t < n_in;
        if (!out)
            continue;
        if (first && !s[0] && !s[1]) /* every part has coefficient 0 */
            be->ew(cx, LRP_EW_ZERO, out, NULL, NULL, 0, 0, NU);
        for (int k = 0; k < nparts; k++) {
            if (!s[k])
                continue;
            if (first && P->coef[k] == 1.0f) {
                /* 1 * (v s) is v s bit for bit: no second pass */
                be->ew(cx, LRP_EW_MUL, out, im[k] != LRP_IM_ID ? mod[k][t] : v[t], s[k], 0, 0, NU);
                first = 0;
                continue;
            }
            be->ew(cx, LRP_EW_MUL, tmp, im[k] != LRP_IM_ID ? mod[k][t] : v[t], s[k], 0, 0, NU);
            if (first) {
                be->ew(cx, LRP_EW_SCALE, out, tmp, NULL, P->coef[k], 0.0f, NU);
                first = 0;
            } else {
                be->ew(cx, LRP_EW_FMMA, out, out, tmp, 1.0f, P->coef[k], NU);
            }
        }
    }
done:
    for (int k = 0; k < 2; k++) {
        if (s[k])
            be->tensor_free(cx, s[k], NU);
        for (int t = 0; t < nv; t++)
            if (mod[k][t])
                be->tensor_free(cx, mod[k][t], NU);
    }
    be->tensor_free(cx, tmp, NU);
    return st;
}

/* STREAM: after the hook saw layer li's finished values, its activations,
 * relevance (where it still owns it), absorbed relevance and denominators
 * are freed: no later step reads them (a step reads its own layer and its
 * inputs, which come earlier).  The classes stay (one byte a unit). */
static void stream_release(run *r, int li)
{
    if (!r->stream)
        return;
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t n = P->n * r->B, nu = P->n_units * r->B;
    for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++) {
        if (P->den[k] && P->owns_den[k])
            be->tensor_free(cx, P->den[k], nu);
        P->den[k] = NULL;
        P->owns_den[k] = 0;
        if (P->gauge[k])
            be->tensor_free(cx, P->gauge[k], nu);
        P->gauge[k] = NULL;
    }
    for (int k = 0; k < LRP_ABS_COUNT; k++) {
        if (P->abs[k])
            be->tensor_free(cx, P->abs[k], nu);
        P->abs[k] = NULL;
    }
    if (P->act)
        be->tensor_free(cx, P->act, n);
    P->act = NULL;
    if (P->act_fwd)
        be->tensor_free(cx, P->act_fwd, n);
    P->act_fwd = NULL;
    int kept = 0; /* KEEP_RIN: a pass-through layer's rin[0] is its R */
    for (int k = 0; k < P->n_rin; k++)
        kept |= P->rin_alias[k] && P->rin[k];
    if (kept)
        return;
    if (P->rel && P->rel_owned)
        be->tensor_free(cx, P->rel, n);
    P->rel = NULL;
    P->rel_owned = 0;
}

static lrp_status back_layer(run *r, int li)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    const lrp_layer *l = &net->layers[li];
    lrp_pipe_layer *P = &r->p->L[li];
    int64_t B = r->B, n = P->n * B;
    lrp_status st = LRP_OK;
    if (!P->rel) { /* no consumer sent relevance: zeros */
        if (!(P->rel = lrp_pipe_tnew(r, n)))
            return lrp_pipe_oom(r, "relevance");
        P->rel_owned = 1;
    }
    const void *R = P->rel;
    if (l->kind == LRP_LAYER_INPUT) {
        if (r->hook)
            r->hook(r->hook_ctx, r->p, li, 1);
        stream_release(r, li);
        return LRP_OK;
    }
    /* pass-through layers hand R on unchanged: rin[0] is R itself (not
     * when run whole under the layer split: the blocks of its output and
     * of its input differ) */
    const lrp_kind_desc *kd = lrp_kind(l->kind);
    int whole = lrp_pipe_split_whole(r, li);
    int through = !whole && kd->through && kd->through(l);
    P->n_rin = l->n_in;
    for (int k = 0; k < l->n_in; k++) {
        P->n_rin_per[k] = r->p->L[l->in[k]].n;
        if (through) {
            P->rin[k] = P->rel;
            P->rin_alias[k] = 1;
        } else if (!(P->rin[k] = lrp_pipe_traw(r, P->n_rin_per[k] * B))) {
            return lrp_pipe_oom(r, "relevance");
        }
    }
    /* the kind's LRP step (core/kind_*.c); none: pass-through */
    if (whole)
        st = lrp_pipe_split_whole_bwd(r, li, R);
    else if (lrp_pipe_split_attn(r, li))
        st = lrp_pipe_split_attn_step(r, li, R, 1);
    else if (kd->lrp_step)
        st = kd->lrp_step(r, li, R);
    else
        LRP_ASSERT(through);
    if (st)
        return st;
    /* NaN / inf in what this layer sends back */
    for (int k = 0; k < l->n_in; k++)
        flags_nan_inf(r, P, P->rin[k], P->n_rin_per[k] * B, P->n_rin_per[k]);
    /* conservation per sample (not under the layer split: a rank's block
     * of the input and of the output are not each other's; the caller
     * sums the blocks' terms itself) */
    P->cons_resid = 0.0;
    P->cons_sample = 0;
    for (int64_t b = 0; b < B && !r->relonly && !r->split; b++) {
        const void *in[LRP_MAX_INPUTS], *ab[LRP_ABS_COUNT];
        int ka = 0;
        for (int k = 0; k < l->n_in; k++)
            in[k] = be->at(cx, P->rin[k], b * P->n_rin_per[k]);
        for (int k = 0; k < LRP_ABS_COUNT; k++)
            if (P->abs[k])
                ab[ka++] = be->at(cx, P->abs[k], b * P->n_units);
        double res = 0, scale = 0;
        be->residual(cx, &res, &scale, in, P->n_rin_per, l->n_in, ab, ka, P->n_units,
                     be->at(cx, R, b * P->n), P->n);
        double rel = scale > 0 ? (res < 0 ? -res : res) / scale : (res != 0 ? 1.0 : 0.0);
        if (rel > P->cons_resid) {
            P->cons_resid = rel;
            P->cons_sample = b;
        }
    }
    if (r->hook)
        r->hook(r->hook_ctx, r->p, li, 1);
    /* pass relevance to the inputs.  The first contribution becomes the
     * input's rel without a copy: moved when this layer does not keep it
     * (lean modes), else shown as a view.  A second one is added into an
     * owned tensor (a view is never written). */
    for (int k = 0; k < l->n_in; k++) {
        int in = l->in[k];
        lrp_pipe_layer *Q = &r->p->L[in];
        int64_t m = Q->n * B;
        int drop = r->lean && !P->rin_alias[k]; /* rin[k] is ours to give */
        if (r->n_contrib[in]++ == 0) {
            Q->rel = P->rin[k];
            Q->rel_owned = drop;
            if (r->stream && r->lean && P->rin_alias[k] && P->rel_owned) {
                /* R itself goes on: its owner is now the input, since this
                 * layer's tensors are released below */
                Q->rel_owned = 1;
                P->rel_owned = 0;
            }
        } else if (Q->rel_owned) {
            be->ew(cx, LRP_EW_ADD, Q->rel, Q->rel, P->rin[k], 0, 0, m);
            if (drop)
                be->tensor_free(cx, P->rin[k], m);
        } else {
            void *sum = lrp_pipe_traw(r, m);
            if (!sum)
                return lrp_pipe_oom(r, "relevance");
            be->ew(cx, LRP_EW_ADD, sum, Q->rel, P->rin[k], 0, 0, m);
            Q->rel = sum;
            Q->rel_owned = 1;
            if (drop)
                be->tensor_free(cx, P->rin[k], m);
        }
        if (r->lean) {
            P->rin[k] = NULL;
            P->rin_alias[k] = 0;
        }
    }
    if (r->relonly) { /* the audit data of this layer is not kept */
        int64_t nu = P->n_units * B;
        for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++) {
            if (P->den[k] && P->owns_den[k])
                be->tensor_free(cx, P->den[k], nu);
            P->den[k] = NULL;
            P->owns_den[k] = 0;
            free(P->cls[k]);
            P->cls[k] = NULL;
        }
    }
    stream_release(r, li);
    return LRP_OK;
}

static lrp_status start_relevance(run *r)
{
    const lrp_backend *be = r->be;
    void *cx = be->ctx;
    const lrp_net *net = r->p->net;
    lrp_pipe_layer *P = &r->p->L[net->n_layers - 1];
    int64_t n = P->n;
    if (!P->rel) {
        if (!(P->rel = lrp_pipe_tnew(r, n * r->B)))
            return lrp_pipe_oom(r, "relevance");
        P->rel_owned = 1;
    }
    if (net->r_out) { /* under the layer split: this rank's block of it */
        be->set_f32(cx, P->rel, net->r_out, n * r->B);
        return LRP_OK;
    }
    if (r->split) {
        /* the target or the first maximum of the whole output; its value
         * goes where it is held */
        int li = net->n_layers - 1;
        int64_t nf = lrp_pipe_split_numel(r, li), lo, hi, inner;
        lrp_pipe_split_range(r, li, &lo, &hi, &inner);
        void *full = lrp_pipe_split_gather(r, li, P->act);
        if (!full)
            return r->err->code;
        for (int64_t b = 0; b < r->B; b++) {
            int64_t t = -1;
            if (net->target && net->target[b] >= 0 && net->target[b] < nf)
                t = net->target[b];
            if (t < 0)
                t = be->argmax(cx, be->at(cx, full, b * nf), nf);
            if (t >= lo * inner && t < hi * inner)
                be->ew(cx, LRP_EW_COPY, be->at(cx, P->rel, b * n + t - lo * inner),
                       be->at(cx, P->act, b * n + t - lo * inner), NULL, 0, 0, 1);
        }
        be->tensor_free(cx, full, nf * r->B);
        return LRP_OK;
    }
    for (int64_t b = 0; b < r->B; b++) {
        int64_t t = -1;
        if (net->target && net->target[b] >= 0 && net->target[b] < n)
            t = net->target[b];
        if (t < 0)
            t = be->argmax(cx, be->at(cx, P->act, b * n), n);
        be->ew(cx, LRP_EW_COPY, be->at(cx, P->rel, b * n + t), be->at(cx, P->act, b * n + t),
               NULL, 0, 0, 1);
    }
    return LRP_OK;
}

lrp_status lrp_pipe_run(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                        lrp_err *err)
{
    return lrp_pipe_run_ex(out, be, net, 0, err);
}

lrp_status lrp_pipe_run_ex(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                           unsigned flags, lrp_err *err)
{
    return lrp_pipe_run_local(out, be, net, flags, NULL, err);
}

lrp_status lrp_pipe_run_local(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                              unsigned flags, const lrp_pipe_local *loc, lrp_err *err)
{
    return lrp_pipe_run_hooked(out, be, net, flags, loc, NULL, NULL, err);
}

static lrp_status run_all(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                          unsigned flags, const lrp_pipe_local *loc, lrp_pipe_hook hook,
                          void *hook_ctx, lrp_split_net *split, lrp_err *err);

lrp_status lrp_pipe_run_hooked(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                               unsigned flags, const lrp_pipe_local *loc, lrp_pipe_hook hook,
                               void *hook_ctx, lrp_err *err)
{
    return run_all(out, be, net, flags, loc, hook, hook_ctx, NULL, err);
}

lrp_status lrp_pipe_run_split(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                              unsigned flags, const lrp_pipe_split *sp, lrp_err *err)
{
    return lrp_pipe_run_split_hooked(out, be, net, flags, NULL, NULL, NULL, sp, err);
}

lrp_status lrp_pipe_run_split_hooked(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                                     unsigned flags, const lrp_pipe_local *loc,
                                     lrp_pipe_hook hook, void *hook_ctx,
                                     const lrp_pipe_split *sp, lrp_err *err)
{
    *out = NULL;
    /* the gauge tensors (sum |z_ij|) read the whole input: not split */
    LRP_ASSERT((flags & (LRP_PIPE_RELEVANCE | LRP_PIPE_NO_GAUGE | LRP_PIPE_LEAN)) && be->to_wire &&
               be->bmm_exact && be->rowsum_exact && be->sum_exact);
    lrp_split_net *s = lrp_split_net_new(net, sp);
    if (!s) {
        /* the others are told at their first exchange */
        lrp_err_set(err, LRP_E_NOMEM, "<network>: out of memory (layer split)");
        void *all = NULL;
        size_t total = 0;
        sp->exchange(sp->ctx, NULL, 0, err->msg, &all, &total);
        free(all);
        return LRP_E_NOMEM;
    }
    /* the run owns s from here (lrp_pipe_free) */
    return run_all(out, be, lrp_split_net_share(s), flags, loc, hook, hook_ctx, s, err);
}

static lrp_status run_all(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                          unsigned flags, const lrp_pipe_local *loc, lrp_pipe_hook hook,
                          void *hook_ctx, lrp_split_net *split, lrp_err *err)
{
    *out = NULL;
    run r;
    memset(&r, 0, sizeof r);
    r.split = split;
    r.hook = hook;
    r.hook_ctx = hook_ctx;
    r.stream = hook && (flags & LRP_PIPE_STREAM);
    r.flags = flags;
    r.relonly = (flags & LRP_PIPE_RELEVANCE) != 0;
    r.lean = ((r.relonly || r.stream) && !(flags & LRP_PIPE_KEEP_RIN)) || (flags & LRP_PIPE_LEAN);
    r.gauges = !r.lean && !r.relonly && !(flags & LRP_PIPE_NO_GAUGE);
    r.loc = loc;
    r.be = be;
    r.cx = be->ctx;
    r.err = err;
    r.B = net->batch;
    lrp_pipe *p = calloc(1, sizeof *p);
    if (!p) {
        lrp_err_set(err, LRP_E_NOMEM, "<network>: out of memory");
        lrp_pipe_split_fail(&r);
        lrp_split_net_free(split);
        return LRP_E_NOMEM;
    }
    p->split = split;
    p->be = be;
    p->net = net;
    p->n_layers = net->n_layers;
    p->batch = net->batch;
    p->L = calloc((size_t)net->n_layers, sizeof *p->L);
    r.n_contrib = calloc((size_t)net->n_layers, sizeof *r.n_contrib);
    r.p = p;
    lrp_status st;
    if (!p->L || !r.n_contrib) {
        st = lrp_err_set(err, LRP_E_NOMEM, "<network>: out of memory");
        goto fail;
    }
    if (be->run_begin)
        be->run_begin(be->ctx);
    if (r.stream && be->pack && be->unpack && be->pack_free) {
        if (!(r.fwd_left = calloc((size_t)net->n_layers, sizeof *r.fwd_left))) {
            st = lrp_err_set(err, LRP_E_NOMEM, "<network>: out of memory");
            goto fail;
        }
        for (int li = 0; li < net->n_layers; li++)
            for (int k = 0; k < net->layers[li].n_in; k++)
                r.fwd_left[net->layers[li].in[k]]++;
    }
    if ((st = forward(&r)))
        goto fail;
    if ((st = start_relevance(&r)))
        goto fail;
    r.n_contrib[net->n_layers - 1] = 1;
    for (int li = net->n_layers - 1; li >= 0; li--) {
        progress(net, li, 1);
        if (loc && loc->take && loc->take(loc->take_ctx, li, 1, 0)) {
            st = local_untaken(&r, li);
            goto fail;
        }
        if (loc && loc->rel && loc->rel[li]) { /* local mode: given R at the output */
            lrp_pipe_layer *P = &p->L[li];
            int64_t n = P->n * net->batch;
            if (!P->rel_owned) { /* never write into a view */
                if (!(P->rel = lrp_pipe_traw(&r, n))) {
                    st = lrp_pipe_oom(&r, "relevance");
                    goto fail;
                }
                P->rel_owned = 1;
            }
            be->set_f32(be->ctx, P->rel, loc->rel[li], n);
        }
        if (loc && loc->take && loc->take(loc->take_ctx, li, 1, 1)) {
            st = local_untaken(&r, li);
            goto fail;
        }
        if ((st = unpack_for(&r, li)) || (st = back_layer(&r, li)))
            goto fail;
        repack_after(&r, li);
    }
    free(r.n_contrib);
    free(r.fwd_left);
    if (be->run_end)
        be->run_end(be->ctx);
    *out = p;
    return LRP_OK;
fail:
    lrp_pipe_split_fail(&r); /* no-op without the split, or when told */
    if (be->run_end)
        be->run_end(be->ctx);
    free(r.n_contrib);
    free(r.fwd_left);
    lrp_pipe_free(p);
    return st;
}

void lrp_pipe_free(lrp_pipe *p)
{
    if (!p)
        return;
    const lrp_backend *be = p->be;
    void *cx = be->ctx;
    int64_t B = p->batch;
    if (p->L) {
        for (int i = 0; i < p->n_layers; i++) {
            lrp_pipe_layer *P = &p->L[i];
            int64_t n = P->n * B, nu = P->n_units * B;
            for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++) {
                if (P->den[k] && P->owns_den[k])
                    be->tensor_free(cx, P->den[k], nu);
                if (P->gauge[k])
                    be->tensor_free(cx, P->gauge[k], nu);
                free(P->cls[k]);
            }
            for (int k = 0; k < LRP_ABS_COUNT; k++)
                if (P->abs[k])
                    be->tensor_free(cx, P->abs[k], nu);
            for (int k = 0; k < P->n_rin; k++)
                if (P->rin[k] && !P->rin_alias[k])
                    be->tensor_free(cx, P->rin[k], P->n_rin_per[k] * B);
            if (P->fold_b)
                be->tensor_free(cx, P->fold_b, P->n_fold_b);
            /* the kind's parameter tensors, as its forward step made them */
            for (int k = 0; k < 4 && !P->params_borrowed; k++)
                if (P->bnp[k])
                    be->tensor_free(cx, P->bnp[k], P->n_bnp[k]);
            if (P->act)
                be->tensor_free(cx, P->act, n);
            if (P->act_packed)
                be->pack_free(cx, P->act_packed);
            if (P->act_fwd)
                be->tensor_free(cx, P->act_fwd, n);
            if (P->rel && P->rel_owned)
                be->tensor_free(cx, P->rel, n);
        }
    }
    free(p->L);
    lrp_split_net_free(p->split);
    free(p);
}
