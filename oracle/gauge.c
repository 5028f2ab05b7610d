/*
 * gauge.c -- the a-priori float32 error bound of every relevance cell
 * ("the gauge"), its condition measure, and the reference cell flags
 * (docs/ORACLE.md gives the formulas; this file is their implementation).
 *
 * Everything is binary64, computed from the reference's activations and
 * relevance rounded to binary32: a bound needs no more accuracy than that.
 * Bounds are in units of u = 2^-24 (first order).  The code is independent
 * of the float32 kernels on purpose (the linear layers' sums are a GEMM of
 * the gauge's own, oracle/gauge_lin.c): the gauge must not share code with
 * the thing it measures.
 */
#include "gauge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gauge_attn.h"
#include "gauge_lin.h"
#include "gauge_token.h"
#include "gauge_vit.h"
#include "pipeline.h"

#define U32 0x1p-24

/* The gauge's own treatment of each layer kind (its forward and backward
 * switches below), independent of the kinds' records in core/ on purpose.
 * Indexed by the one list of kinds: a kind of LRP_LAYER_LIST without its
 * GK_ line here does not compile, and the switches' defaults assert that
 * only the pass-through kinds reach them. */
enum { G_EXACT, G_LINEAR, G_BN, G_POOL, G_ADD, G_CONCAT, G_RELU, G_PASS, G_TOKEN, G_ATTN, G_POS, G_VIT };
#define GK_INPUT G_EXACT
#define GK_DENSE G_LINEAR
#define GK_CONV2D G_LINEAR
#define GK_MAXPOOL2D G_POOL
#define GK_AVGPOOL2D G_POOL
#define GK_GLOBALAVGPOOL G_POOL
#define GK_ADD G_ADD
#define GK_CONCAT G_CONCAT
#define GK_BATCHNORM G_BN
#define GK_RELU G_RELU
#define GK_FLATTEN G_PASS
#define GK_RESHAPE G_PASS
#define GK_DROPOUT G_PASS
/* the token layers: oracle/gauge_token.c */
#define GK_LAYERNORM G_TOKEN
#define GK_RMSNORM G_TOKEN
#define GK_GELU G_TOKEN
#define GK_SILU G_TOKEN
#define GK_TANH G_TOKEN
/* the attention kinds: oracle/gauge_attn.c; Position (an Add of a
 * constant) here */
#define GK_SOFTMAX G_ATTN
#define GK_MUL G_ATTN
#define GK_MHA G_ATTN
#define GK_EMBEDDING G_ATTN
#define GK_SELECTTOKEN G_ATTN
#define GK_ATTNSCORES G_ATTN
#define GK_ATTNSOFTMAX G_ATTN
#define GK_ATTNCONTEXT G_ATTN
#define GK_POSITION G_POS
/* the ViT patch embedding's copies: oracle/gauge_vit.c (the index map) */
#define GK_TOTOKENS G_VIT
#define GK_CLSTOKEN G_VIT
static const unsigned char gauge_kind[] = {
#define X(e, s, mn, mx) [LRP_LAYER_##e] = GK_##e,
    LRP_LAYER_LIST(X)
#undef X
};
_Static_assert(sizeof gauge_kind == LRP_LAYER_COUNT, "a gauge entry per layer kind");

/* ---- linear layers (Dense, Conv2D) ----
 * Every connection sum of a linear layer is computed by oracle/gauge_lin.c
 * (im2col / col2im around a blocked GEMM, split over threads by output
 * blocks; each sum in an order fixed by the layer's shape, so the bits do
 * not depend on the threads).  What stays here is one output cell's sum in
 * the order of the plain connection loop (inputs c, then ky, kx; padding
 * skipped), for the few cells whose sign or zero-ness the GEMM's order
 * could change (lin_cell_sum). */

static inline double imod(int mod, double a, const lrp_lin *L, int64_t i)
{
    switch (mod) {
    case LRP_IM_POS: return a > 0 ? a : 0;
    case LRP_IM_NEG: return a < 0 ? a : 0;
    case LRP_IM_ONES: return 1;
    case LRP_IM_LOW: return L->low ? L->low[i] : L->low_s;
    case LRP_IM_HIGH: return L->high ? L->high[i] : L->high_s;
    default: return a;
    }
}

static inline double wmod(int mod, double w)
{
    switch (mod) {
    case LRP_WM_POS: return w > 0 ? w : 0;
    case LRP_WM_NEG: return w < 0 ? w : 0;
    case LRP_WM_SQUARE: return w * w;
    case LRP_WM_ONES: return 1;
    default: return w;
    }
}

static double bmod(int mod, double b)
{
    switch (mod) {
    case LRP_BM_POS: return b > 0 ? b : 0;
    case LRP_BM_NEG: return b < 0 ? b : 0;
    case LRP_BM_SQUARE: return b * b;
    default: return b;
    }
}

static inline int inmod_uses_input(int mod)
{
    return mod == LRP_IM_ID || mod == LRP_IM_POS || mod == LRP_IM_NEG;
}

/* Effective stabilizer sign s(d) (docs/SPEC.md section 5, the sign table of
 * core/ruletab.c); 2 (LRP_S_SKIP) means skip. */
static double stab_sign(lrp_stab_id c, double d)
{
    return lrp_stab_sign(c, lrp_zclass_of(d));
}

void lrp_gauge_free(lrp_gauge *g)
{
    if (!g || !g->bound)
        return;
    for (int i = 0; i < g->n_layers; i++) {
        free(g->bound[i]);
        free(g->cond[i]);
        free(g->cflags[i]);
        free(g->fwd[i]);
        if (g->sharp)
            free(g->sharp[i]);
        if (g->scond)
            free(g->scond[i]);
        if (g->fwd_sharp)
            free(g->fwd_sharp[i]);
    }
    free(g->bound);
    free(g->cond);
    free(g->cflags);
    free(g->fwd);
    free(g->sharp);
    free(g->scond);
    free(g->fwd_sharp);
    free(g->ill_mass);
    free(g->total_sharp);
    memset(g, 0, sizeof *g);
}

typedef struct ctx {
    const lrp_net *net;
    float *const *act;
    float *const *rel;
    lrp_gauge *g;
    int64_t B;
    double **A;   /* forward bounds (units of u), per layer */
    double **Bd;  /* backward bounds accumulated, per layer */
    double **cd;  /* cond accumulated (max), per layer */
    uint8_t **cf; /* cell flags, per layer */
    int local;    /* bounds of each layer alone, on binary32-rounded inputs */
    int inputs;   /* lrp_gauge_inputs */
    int den_traced; /* EXACT and not o->recomputed_den: a denominator that is
                       the layer's output is the trace's activation */
    /* sharp tier (lam > 0): forward bounds, and per relevance cell a linear
     * part (errors handed on), a sum of squares (independent roundings of
     * the layers that wrote the cell), the magnitude of the contributions
     * (for the merge of several consumers), the cond, and Fs: the finished
     * sharp bound of a layer's output relevance once all its consumers
     * have contributed (what its own backward step propagates) */
    double lam;
    double **As, **Ls, **Qs, **Ss, **cs, **Fs;
    double *tq, *tl; /* per layer: the total's squared independent part and
                        linear part (units of u) */
    int *n_cons;  /* consumers per layer */
    int threads;  /* par_run */
    /* row lifetimes (rows are allocated when first needed and freed once
     * no later step reads them): the smallest and largest consumer of each
     * layer, and the last backward step (in backward order) that reads a
     * layer's backward rows (its own, or the conv it canonizes) */
    int *c_min, *c_max, *last_reader;
    int fwd_local; /* ROUNDED / EXACT: after the forward pass every forward
                      bound is f |act| (f = 1 / 0), rebuilt when needed */
    const lrp_gauge_opts *o;
    lrp_status emit_st; /* what the caller's emit returned (not LRP_OK: stop) */
    /* o->store (end to end): parked[x] when layer x's forward bounds were
     * handed to it; A[x] / As[x] are then copies fetched for one step */
    const lrp_gauge_store *st;
    uint8_t *parked;
} ctx;



static int64_t numel(const lrp_net *n, int li)
{
    return lrp_shape_numel(&n->layers[li].shape);
}

/* The BN consumer of layer li that canonizes it, or -1. */
int lrp_gauge_canon_bn(const lrp_net *net, int li)
{
    for (int j = li + 1; j < net->n_layers; j++) {
        const lrp_layer *l = &net->layers[j];
        if (l->kind == LRP_LAYER_BATCHNORM && l->in[0] == li &&
            (l->rule.flags & LRP_F_BN_CANONIZE))
            return j;
    }
    return -1;
}

static void bn_affine(const lrp_layer *l, int64_t c, double *w, double *shift)
{
    double wc = (double)l->bn_gamma[c] / sqrt((double)l->bn_var[c] + (double)l->bn_eps);
    *w = wc;
    *shift = (double)l->bn_beta[c] - wc * (double)l->bn_mean[c];
}

/* ---- rows: allocated when first needed, freed when no later step reads
 * them ---- */

static int64_t cells(const ctx *c, int li)
{
    return c->B * numel(c->net, li);
}

static size_t row_n(const ctx *c, int li)
{
    int64_t n = cells(c, li);
    return (size_t)(n ? n : 1);
}

static int row0(double **r, size_t nb)
{
    if (!*r)
        *r = calloc(nb, sizeof **r);
    return *r ? 0 : -1;
}

static void row_drop(double **r)
{
    free(*r);
    *r = NULL;
}

/* the rows a layer's consumers add into, and its own backward step reads */
static int ensure_bwd(ctx *c, int x)
{
    size_t nb = row_n(c, x);
    if (row0(&c->Bd[x], nb) || row0(&c->cd[x], nb))
        return -1;
    if (!c->cf[x] && !(c->cf[x] = calloc(nb, 1)))
        return -1;
    if (c->lam > 0 && (row0(&c->Ls[x], nb) || row0(&c->Qs[x], nb) || row0(&c->Ss[x], nb) ||
                       row0(&c->cs[x], nb) || row0(&c->Fs[x], nb)))
        return -1;
    return 0;
}

static void drop_bwd(ctx *c, int x)
{
    row_drop(&c->Bd[x]);
    row_drop(&c->cd[x]);
    if (c->lam > 0) {
        row_drop(&c->Ls[x]);
        row_drop(&c->Qs[x]);
        row_drop(&c->Ss[x]);
        row_drop(&c->cs[x]);
        row_drop(&c->Fs[x]);
    }
}

/* the forward bounds of layer x as the backward pass reads them: kept
 * from the forward pass, or (fwd_local) f |act| as the local modes
 * define them, rebuilt */
static int ensure_fwd(ctx *c, int x)
{
    if (c->A[x])
        return 0;
    if (c->st && c->parked[x])
        return c->st->fetch(c->st->ctx, x, &c->A[x], &c->As[x], (int64_t)row_n(c, x));
    LRP_ASSERT(c->fwd_local);
    size_t nb = row_n(c, x);
    if (row0(&c->A[x], nb) || row0(&c->As[x], nb))
        return -1;
    /* inputs are the reference rounded to binary32 (round to nearest:
     * at most u |a| away, u = 2^-24), or the subject's own activations
     * fed to both (no error) */
    double f = c->inputs == LRP_GI_ROUNDED ? 1.0 : 0.0;
    if (f != 0.0)
        for (int64_t k = 0; k < cells(c, x); k++) {
            c->A[x][k] = f * fabs((double)c->act[x][k]);
            c->As[x][k] = c->A[x][k];
        }
    return 0;
}

static void drop_fwd(ctx *c, int x)
{
    row_drop(&c->A[x]);
    row_drop(&c->As[x]);
}

/* the store: layer x's forward bounds handed over (the forward pass reads
 * them no more), or, after a backward step, the fetched copies released
 * (last: no later step reads them) */
static int park_fwd(ctx *c, int x)
{
    if (c->parked[x] || !c->A[x])
        return 0;
    double *A = c->A[x], *As = c->As[x];
    c->A[x] = c->As[x] = NULL;
    c->parked[x] = 1;
    return c->st->park(c->st->ctx, x, A, As, (int64_t)row_n(c, x));
}

static int release_fwd(ctx *c, int x, int last)
{
    drop_fwd(c, x);
    if (!last || !c->parked[x])
        return 0;
    c->parked[x] = 0;
    return c->st->drop(c->st->ctx, x);
}

static int store_step(ctx *c, int li, int bwd, int done)
{
    return c->st && c->st->step ? c->st->step(c->st->ctx, li, bwd, done) : 0;
}

/* Hands layer li's finished rows to the caller's emit (streaming), then
 * frees them; without emit they stay in the gauge. */
static int emit_rows(ctx *c, int li, int bwd)
{
    lrp_gauge *g = c->g;
    if (!c->o->emit)
        return 0;
    lrp_status st = c->o->emit(c->o->emit_ctx, g, li, bwd);
    if (bwd) {
        free(g->bound[li]);
        free(g->cond[li]);
        g->bound[li] = g->cond[li] = NULL;
        if (g->sharp) {
            free(g->sharp[li]);
            free(g->scond[li]);
            g->sharp[li] = g->scond[li] = NULL;
        }
    } else {
        free(g->fwd[li]);
        g->fwd[li] = NULL;
        if (g->fwd_sharp) {
            free(g->fwd_sharp[li]);
            g->fwd_sharp[li] = NULL;
        }
    }
    if (st != LRP_OK) {
        c->emit_st = st;
        return -1;
    }
    return 0;
}

/* ---- forward bounds ---- */

/* is every value of v[0 .. n-1] zero?  (a zero source is skipped) */
static int all_zero(const double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (v[i] != 0)
            return 0;
    return 1;
}

/* How many rows of a token Dense the gauge takes at once: all rows of a
 * sample, but at most ROW_BLOCK_VALUES input and output values (about 25
 * binary64 arrays of that size live at once in linear_backward: a
 * 4096-token sequence must not hold them for every row).  A block may
 * straddle two samples (every row is summed on its own).  Tests set
 * g_row_block to reach partial blocks (lrp_gauge_set_row_block). */
#define ROW_BLOCK_VALUES ((int64_t)1 << 19)
static int64_t g_row_block;

void lrp_gauge_set_row_block(int64_t rows) { g_row_block = rows > 0 ? rows : 0; }

static int64_t row_block(const lrp_lin *L)
{
    if (L->rows <= 1)
        return 1;
    int64_t per = L->n_in + L->n_out;
    int64_t cap = g_row_block > 0 ? g_row_block : ROW_BLOCK_VALUES / (per > 0 ? per : 1);
    if (cap < 1)
        cap = 1;
    return L->rows < cap ? L->rows : cap;
}

/* The linear sums of rb rows at once (a token Dense), or of one sample */
static int gl_fwd(const lrp_lin *L, int64_t rb, const lrp_gl_w *A, int ns,
                  const double *const *src, double *const *out, int threads)
{
    return rb > 1 ? lrp_gl_dense_rows(L, rb, A, ns, src, out, threads)
                  : lrp_gl_conv(L, A, ns, src, out, threads);
}

static int gl_bwd(const lrp_lin *L, int64_t rb, const lrp_gl_w *A, int ns,
                  const double *const *v, double *const *out, int threads)
{
    return rb > 1 ? lrp_gl_dense_rows_t(L, rb, A, ns, v, out, threads)
                  : lrp_gl_conv_t(L, A, ns, v, out, threads);
}

static int forward_bounds(ctx *c)
{
    const lrp_net *net = c->net;
    for (int li = 0; li < net->n_layers; li++) {
        const lrp_layer *l = &net->layers[li];
        int64_t n = numel(net, li), B = c->B;
        size_t nb = row_n(c, li);
        if (store_step(c, li, 0, 0))
            return -1;
        if (row0(&c->A[li], nb) || row0(&c->As[li], nb) ||
            !(c->g->fwd[li] = malloc(nb * sizeof **c->g->fwd)) ||
            (c->g->fwd_sharp && !(c->g->fwd_sharp[li] = malloc(nb * sizeof **c->g->fwd_sharp))))
            return -1;
        double *A = c->A[li];
        const int in0 = l->n_in ? l->in[0] : -1;
        const double *Ai = in0 >= 0 ? c->A[in0] : NULL;
        const float *xi = in0 >= 0 ? c->act[in0] : NULL;
        int64_t nin = in0 >= 0 ? numel(net, in0) : 0;
        switch (l->kind) {
        case LRP_LAYER_INPUT: break; /* inputs are exact */
        case LRP_LAYER_DENSE:
        case LRP_LAYER_CONV2D: {
            lrp_lin L;
            lrp_pipe_lin_geom(&L, net, li);
            /* a token Dense (T, F): every row is a "sample" of F -> units,
             * up to rbmax rows summed at once (row_block; lrp_gl_dense_rows:
             * the bits of one row at a time, the weights packed once) */
            const int64_t rbmax = row_block(&L);
            B *= L.rows;
            n = L.n_out;
            nin = L.n_in;
            /* per sample: G = |W| . |x|, the propagated part |W| . A and
             * the sharp one W^2 . As^2, as (GEMM) convolutions */
            const size_t rn = (size_t)(rbmax * n > 0 ? rbmax * n : 1);
            const size_t rnin = (size_t)(rbmax * nin > 0 ? rbmax * nin : 1);
            double *G = malloc(rn * sizeof *G), *W2 = malloc(rn * sizeof *W2);
            double *xa = malloc(rnin * sizeof *xa), *as2 = malloc(rnin * sizeof *as2);
            if (!G || !W2 || !xa || !as2) {
                free(G), free(W2), free(xa), free(as2);
                return -1;
            }
            const double *Asi = c->As[in0];
            double *As = c->As[li];
            lrp_gl_w wa = {.wf = l->w, .nt = 1, .wm = {LRP_WM_ID}, .tc = {1.0}, .op = LRP_GL_ABS};
            lrp_gl_w w2 = wa;
            w2.op = LRP_GL_SQUARE;
            int fail = 0;
            for (int64_t b = 0; b < B && !fail; b += rbmax) {
                const int64_t rb = B - b < rbmax ? B - b : rbmax;
                double *Ab = A + b * n, *Asb = As + b * n;
                const double *Aib = Ai + b * nin, *Asib = Asi + b * nin;
                for (int64_t i = 0; i < rb * nin; i++) {
                    xa[i] = fabs((double)xi[b * nin + i]);
                    as2[i] = Asib[i] * Asib[i];
                }
                /* a zero source (all rows) is skipped; a zero row among
                 * others sums to +0 as the skipped row did (|W|, W^2 >= 0) */
                const double *s1[2] = {all_zero(xa, rb * nin) ? NULL : xa,
                                       all_zero(Aib, rb * nin) ? NULL : Aib};
                double *o1[2] = {G, Ab};
                const double *s2[1] = {all_zero(as2, rb * nin) ? NULL : as2};
                double *o2[1] = {W2};
                if (gl_fwd(&L, rb, &wa, 2, s1, o1, c->threads) ||
                    gl_fwd(&L, rb, &w2, 1, s2, o2, c->threads)) {
                    fail = 1;
                    break;
                }
                for (int64_t j = 0; j < rb * n; j++) {
                    int64_t unit = L.conv ? j / (L.Ho * L.Wo) : j % n;
                    double bj = l->has_bias ? fabs((double)l->b[unit]) : 0;
                    Ab[j] += (double)(L.fanin + 1) * (G[j] + bj);
                    /* sharp: the inputs' errors and the roundings added as
                     * independent errors (root of the sum of squares) */
                    double r2 = c->lam * c->lam * (double)(L.fanin + 1) * (G[j] + bj) * (G[j] + bj);
                    Asb[j] = fmin(sqrt(W2[j] + r2), Ab[j]);
                }
            }
            free(W2), free(xa), free(as2);
            if (fail) {
                free(G);
                return -1;
            }
            free(G);
            break;
        }
        case LRP_LAYER_BATCHNORM: {
            int64_t C = l->shape.d[0], hw = n / C;
            for (int64_t b = 0; b < B; b++)
                for (int64_t ch = 0; ch < C; ch++) {
                    double w, sh;
                    bn_affine(l, ch, &w, &sh);
                    for (int64_t k = 0; k < hw; k++) {
                        int64_t i = b * n + ch * hw + k;
                        /* coefficient (sqrt, div: ~3u relative), product, sum;
                         * the shift beta - w mu is computed in float32 too and
                         * may cancel: its error is relative to its terms */
                        double shg = fabs((double)l->bn_beta[ch]) +
                                     fabs(w * (double)l->bn_mean[ch]);
                        A[i] = fabs(w) * Ai[i] + 4 * fabs(w * xi[i]) + 4 * shg;
                        c->As[li][i] = fmin(hypot(fabs(w) * c->As[in0][i],
                                                  4 * fabs(w * xi[i]) + 4 * shg), A[i]);
                    }
                }
            break;
        }
        case LRP_LAYER_MAXPOOL2D:
        case LRP_LAYER_AVGPOOL2D:
        case LRP_LAYER_GLOBALAVGPOOL: {
            lrp_pool P;
            lrp_pipe_pool_geom(&P, net, li);
            for (int64_t b = 0; b < B; b++)
                for (int64_t ch = 0; ch < P.C; ch++)
                    for (int64_t y = 0; y < P.Ho; y++)
                        for (int64_t x = 0; x < P.Wo; x++) {
                            double m = 0, s = 0, sa = 0, ms = 0, ss = 0;
                            int cnt = 0;
                            for (int ky = 0; ky < P.kh; ky++)
                                for (int kx = 0; kx < P.kw; kx++) {
                                    int64_t iy = y * P.sh - P.pt + ky, ix = x * P.sw - P.pl + kx;
                                    if (iy < 0 || iy >= P.H || ix < 0 || ix >= P.W)
                                        continue;
                                    int64_t i = b * nin + (ch * P.H + iy) * P.W + ix;
                                    m = fmax(m, Ai[i]);
                                    s += Ai[i];
                                    ms = fmax(ms, c->As[in0][i]);
                                    ss += c->As[in0][i] * c->As[in0][i];
                                    sa += fabs((double)xi[i]);
                                    cnt++;
                                }
                            int64_t j = b * n + (ch * P.Ho + y) * P.Wo + x;
                            int k = P.count_include_pad ? P.kh * P.kw : cnt;
                            if (l->kind == LRP_LAYER_MAXPOOL2D) {
                                A[j] = m;
                                c->As[li][j] = ms;
                            } else {
                                A[j] = (s + (double)(cnt + 1) * sa) / (k > 0 ? k : 1);
                                c->As[li][j] = fmin(sqrt(ss + c->lam * c->lam * (cnt + 1) * sa * sa) /
                                                        (k > 0 ? k : 1), A[j]);
                            }
                        }
            break;
        }
        case LRP_LAYER_ADD:
            for (int64_t i = 0; i < B * n; i++) {
                double s = 0, sa = 0, ss = 0;
                for (int q = 0; q < l->n_in; q++) {
                    s += c->A[l->in[q]][i];
                    ss += c->As[l->in[q]][i] * c->As[l->in[q]][i];
                    sa += fabs((double)c->act[l->in[q]][i]);
                }
                A[i] = s + (double)(l->n_in - 1) * sa;
                c->As[li][i] = fmin(sqrt(ss + c->lam * c->lam * (l->n_in - 1) * sa * sa), A[i]);
            }
            break;
        case LRP_LAYER_CONCAT: {
            int64_t off = 0;
            for (int q = 0; q < l->n_in; q++) {
                int64_t nq = numel(net, l->in[q]);
                for (int64_t b = 0; b < B; b++) {
                    memcpy(A + b * n + off, c->A[l->in[q]] + b * nq, (size_t)nq * sizeof *A);
                    memcpy(c->As[li] + b * n + off, c->As[l->in[q]] + b * nq,
                           (size_t)nq * sizeof *A);
                }
                off += nq;
            }
            break;
        }
        case LRP_LAYER_RELU:
            /* 1-Lipschitz; and where the input is certainly negative
             * (|z| beyond its error bound) float32 returns exactly 0 */
            for (int64_t i = 0; i < B * n; i++) {
                int dead = xi[i] < 0.0f && fabs((double)xi[i]) > U32 * Ai[i];
                A[i] = dead ? 0.0 : Ai[i];
                /* the sharp tier decides on its own bound (a unit certainly
                 * negative in the model is exactly 0 in float32) */
                int dead_s = xi[i] < 0.0f && fabs((double)xi[i]) > U32 * c->As[in0][i];
                c->As[li][i] = dead_s ? 0.0 : c->As[in0][i];
            }
            break;
        case LRP_LAYER_LAYERNORM:
        case LRP_LAYER_RMSNORM:
        case LRP_LAYER_GELU:
        case LRP_LAYER_SILU:
        case LRP_LAYER_TANH:
            if (lrp_gauge_token_fwd(net, li, B, xi, c->act[li], Ai, c->As[in0], A, c->As[li]))
                return -1;
            break;
        case LRP_LAYER_POSITION:
            /* y = x + p: one rounding, p exact */
            for (int64_t i = 0; i < B * n; i++) {
                double p = (double)l->w[i % n];
                double r1 = fabs((double)xi[i]) + fabs(p);
                A[i] = Ai[i] + r1;
                c->As[li][i] = fmin(hypot(c->As[in0][i], c->lam * r1), A[i]);
            }
            break;
        default:
            if (gauge_kind[l->kind] == G_VIT) {
                /* copies: the bounds move with the values; the CLS row is
                 * a binary32 constant (bound 0) */
                for (int64_t b = 0; b < B; b++)
                    for (int64_t i = 0; i < n; i++) {
                        int64_t s = lrp_gauge_vit_src(net, li, i);
                        A[b * n + i] = s < 0 ? 0.0 : Ai[b * nin + s];
                        c->As[li][b * n + i] = s < 0 ? 0.0 : c->As[in0][b * nin + s];
                    }
                break;
            }
            if (gauge_kind[l->kind] == G_ATTN) {
                lrp_ga ga = {net, li, B, c->act, c->rel, c->A, NULL, 0, 0, c->lam, c->As, NULL};
                int own = lrp_gauge_attn_fwd(&ga, A, c->lam > 0 ? c->As[li] : NULL);
                if (own < 0)
                    return -1;
                if (!own) /* the kind's rigorous bound is its sharp one */
                    memcpy(c->As[li], A, (size_t)(B * n) * sizeof *A);
                break;
            }
            /* Flatten, Reshape, Dropout: no arithmetic */
            LRP_ASSERT(gauge_kind[l->kind] == G_PASS);
            memcpy(A, Ai, (size_t)(B * n) * sizeof *A);
            memcpy(c->As[li], c->As[in0], (size_t)(B * n) * sizeof *A);
            break;
        }
        if (c->local && c->inputs == LRP_GI_EXACT) {
            /* the subject's own activations feed every layer: the bound of
             * this layer's output is its own rounding.  Its consumers see
             * the stored activation, which may be the binary32 rounding of
             * a value the subject held more precisely (a float64 or MPFR
             * implementation, or our own reference written as a trace): at
             * most u |x| from what the subject computed with.  Without this
             * term a correctly rounded sum of two unrounded addends was
             * SUSPECT against the sum of their roundings (docs/ORACLE.md,
             * "Trace-local judgement"). */
            double f = l->kind == LRP_LAYER_INPUT ? 0.0 : 1.0;
            for (int64_t i = 0; i < B * n; i++) {
                c->g->fwd[li][i] = (float)fmin(A[i], 3.0e38);
                if (c->g->fwd_sharp)
                    c->g->fwd_sharp[li][i] = (float)fmin(c->As[li][i], 3.0e38);
                A[i] = c->As[li][i] = f * fabs((double)c->act[li][i]);
            }
        } else {
            /* the forward bound as it stands after the forward pass (the
             * local mode on rounded inputs reports |act| there) */
            int rounded = c->inputs == LRP_GI_ROUNDED;
            for (int64_t i = 0; i < B * n; i++) {
                double a = rounded ? 1.0 * fabs((double)c->act[li][i]) : A[i];
                double as = rounded ? a : c->As[li][i];
                c->g->fwd[li][i] = (float)fmin(a, 3.0e38);
                if (c->g->fwd_sharp)
                    c->g->fwd_sharp[li][i] = (float)fmin(as, 3.0e38);
            }
        }
        if (emit_rows(c, li, 0))
            return -1;
        /* the local modes rebuild every forward bound after the forward
         * pass: a layer's propagated bound is needed only until its last
         * consumer's forward step */
        if (c->fwd_local)
            for (int k = 0; k < l->n_in; k++)
                if (c->c_max[l->in[k]] == li)
                    drop_fwd(c, l->in[k]);
        /* the store takes the bounds no later forward step reads: the
         * inputs this was the last consumer of, this layer if it has none */
        if (c->st && c->st->park && !c->fwd_local) {
            for (int k = 0; k < l->n_in; k++)
                if (c->c_max[l->in[k]] == li && park_fwd(c, l->in[k]))
                    return -1;
            if (c->c_max[li] < 0 && park_fwd(c, li))
                return -1;
        }
        if (store_step(c, li, 0, 1))
            return -1;
    }
    return 0;
}

/* ---- backward bounds ---- */

/* The relevance bound and condition flowing into input cell i of a layer
 * are added (several consumers sum their relevance: one more rounding each,
 * accounted by the |R| term added in merge()). */

/* One output cell's sum of a linear layer (one sample), from start, in the
 * order of the plain connection loop (inputs c, then ky, kx; padding
 * skipped; per connection the terms in turn): z (den == 0: sum x_i w_k) or
 * the part's denominator (sum_t am_t(i) tc_t wmod_t(w_k)).  The GEMM sums
 * the same products in another order; where the result is within its own
 * rounding of zero that order could decide its sign or whether it is zero
 * (the part selectors, the stabilizer's sign, zero denominators), so those
 * cells are summed again here: the decisions are the plain loop's. */
typedef struct lin_cell {
    const lrp_lin *L;
    const double *wd; /* folded weights, or NULL: */
    const float *wf;  /* the binary32 weights */
    const float *xb;
    const double *am; /* nt rows of nin */
    int64_t nin;
    const double *tc;
    const lrp_part_desc *pd;
    int nt;
} lin_cell;

#define WK(J, k) ((J)->wd ? (J)->wd[k] : (double)(J)->wf[k])

static double lin_cell_sum(const lin_cell *J, int64_t j, double start, int den)
{
    const lrp_lin *L = J->L;
    int64_t cg = L->C / L->groups, og = L->O / L->groups, howo = L->Ho * L->Wo;
    int64_t o = j / howo, p = j % howo, y = p / L->Wo, x = p % L->Wo, g = o / og;
    double s = start;
    for (int64_t ch = 0; ch < cg; ch++)
        for (int ky = 0; ky < L->kh; ky++) {
            int64_t iy = y * L->sh - L->pt + (int64_t)ky * L->dh;
            if (iy < 0 || iy >= L->H)
                continue;
            for (int kx = 0; kx < L->kw; kx++) {
                int64_t ix = x * L->sw - L->pl + (int64_t)kx * L->dw;
                if (ix < 0 || ix >= L->W)
                    continue;
                int64_t i = ((g * cg + ch) * L->H + iy) * L->W + ix;
                int64_t k = ((o * cg + ch) * L->kh + ky) * L->kw + kx;
                if (!den)
                    s += (double)J->xb[i] * WK(J, k);
                else
                    for (int t = 0; t < J->nt; t++)
                        s += J->am[(int64_t)t * J->nin + i] *
                             (J->tc[t] * wmod(J->pd->t[t].w, WK(J, k)));
            }
        }
    return s;
}

/* is a binary64 sum of nterms products, of magnitudes summing to gauge,
 * certainly of the sign (and non-zero) that any order of summation gives?
 * Two orders differ by at most 2 gamma_nterms gauge (2^-53 per rounding);
 * twice that margin */
static int sum_decided(double v, int64_t nterms, double gauge)
{
    return fabs(v) > 4.0 * (double)(nterms + 2) * 0x1p-53 * gauge;
}

static int all_finite(const double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

#define LB_MAX_NT LRP_PIPE_MAX_TERMS

static int linear_backward(ctx *c, int li)
{
    const lrp_net *net = c->net;
    const lrp_layer *l = &net->layers[li];
    int bn = lrp_gauge_canon_bn(net, li);
    const lrp_rule_spec *rs = &l->rule;
    /* with canonization the relevance arrives at the BN output and the
     * folded layer's rule is the conv's own */
    int top = bn >= 0 ? bn : li;
    const lrp_rule_desc *d = lrp_rule_describe(rs);
    if (!d)
        return 0;
    lrp_lin L;
    lrp_pipe_lin_geom(&L, net, li);
    int in0 = l->in[0];
    /* a token Dense (T, F): every row is a "sample" of F -> units, taken
     * up to rbmax rows at once (row_block; the loop below) */
    int64_t n = L.n_out, nin = L.n_in, B = c->B * L.rows, rbmax = row_block(&L);
    const int defer = L.rows > 1;
    int64_t units = L.conv ? L.O : L.n_out, hw = n / units;
    int64_t nw = units * L.fanin;
    int maxt = 0, need_sel = 0;
    for (int p = 0; p < d->n_parts; p++) {
        if (d->p[p].n_terms > maxt)
            maxt = d->p[p].n_terms;
        need_sel |= d->p[p].sel != LRP_SEL_ALL;
    }
    /* per output cell (n), per input cell (nin), the folded weights (nw) */
    enum { O_BIAS, O_BG, O_DEN, O_G, O_D, O_Z, O_V1, O_V2, O_KAP, O_QV, O_LIN, O_KS, O_DAS,
           O_DAV, O_CJV, O_CSV, O_T1, O_T2, O_T3, O_N };
    enum { I_S, I_XD, I_XA, I_AXS2, I_T1, I_T2, I_T3, I_T4, I_N };
    double *ov[O_N], *iv[I_N];
    memset(ov, 0, sizeof ov);
    memset(iv, 0, sizeof iv);
    int fail = 0;
    const size_t rn = (size_t)(rbmax * n > 0 ? rbmax * n : 1);
    const size_t rnin = (size_t)(rbmax * nin > 0 ? rbmax * nin : 1);
    for (int k = 0; k < O_N; k++)
        fail |= !(ov[k] = calloc(rn, sizeof(double)));
    for (int k = 0; k < I_N; k++)
        fail |= !(iv[k] = calloc(rnin, sizeof(double)));
    double *w = bn >= 0 ? malloc((size_t)(nw ? nw : 1) * sizeof *w) : NULL;
    /* per term t: the modified inputs imod(x_i) and their magnitudes */
    double *am = malloc(((size_t)maxt * rnin + 1) * sizeof *am);
    double *aa = malloc(((size_t)maxt * rnin + 1) * sizeof *aa);
    uint8_t *und = malloc(rn), *flv = malloc(rn);
    /* per row: its skips (see the loop); per term and row: a zero term */
    int *rz = malloc((size_t)rbmax * sizeof *rz), *rzs = malloc((size_t)rbmax * sizeof *rzs);
    int *rok = malloc((size_t)rbmax * sizeof *rok);
    int *rskip = malloc((size_t)rbmax * sizeof *rskip);
    int *amz = malloc((size_t)(maxt > 0 ? maxt : 1) * (size_t)rbmax * sizeof *amz);
    /* rows taken at once: per part, the units' shares of tq and ill_mass,
     * and per part and term the input cells' tl terms, replayed in the
     * row-at-a-time order */
    double *tqd[LRP_PIPE_MAX_PARTS] = {NULL}, *imd[LRP_PIPE_MAX_PARTS] = {NULL};
    double *tld[LRP_PIPE_MAX_PARTS * LB_MAX_NT] = {NULL};
    fail |= (bn >= 0 && !w) || !am || !aa || !und || !flv || !rz || !rzs || !rok || !rskip ||
            !amz || d->n_parts > LRP_PIPE_MAX_PARTS;
    if (defer && !fail && c->lam > 0)
        for (int p = 0; p < d->n_parts; p++) {
            fail |= !(tqd[p] = malloc(rn * sizeof(double)));
            fail |= !(imd[p] = malloc(rn * sizeof(double)));
            if (c->local)
                for (int t = 0; t < d->p[p].n_terms; t++)
                    fail |= !(tld[p * LB_MAX_NT + t] = malloc(rnin * sizeof(double)));
        }
    if (fail) {
        for (int k = 0; k < O_N; k++)
            free(ov[k]);
        for (int k = 0; k < I_N; k++)
            free(iv[k]);
        free(w), free(am), free(aa), free(und), free(flv);
        free(rz), free(rzs), free(rok), free(rskip), free(amz);
        for (int p = 0; p < LRP_PIPE_MAX_PARTS; p++)
            free(tqd[p]), free(imd[p]);
        for (int k = 0; k < LRP_PIPE_MAX_PARTS * LB_MAX_NT; k++)
            free(tld[k]);
        return -1;
    }
    double *bias = ov[O_BIAS], *bgauge = ov[O_BG], *den = ov[O_DEN], *G = ov[O_G];
    double *D = ov[O_D], *z = ov[O_Z], *v1 = ov[O_V1], *v2 = ov[O_V2], *kap = ov[O_KAP];
    double *qv = ov[O_QV], *lin = ov[O_LIN], *ks = ov[O_KS], *DAs = ov[O_DAS];
    double *DAv = ov[O_DAV], *cjv = ov[O_CJV], *csv = ov[O_CSV];
    /* the GEMMs' results per output cell */
    double *r1 = ov[O_T1], *r2 = ov[O_T2], *r3 = ov[O_T3];
    /* sharp tier, per unit: q (squared independent part per unit weight),
     * lin (linear part per unit weight), ks (sharp cond), DAs (the sharp
     * forward error part of the denominator); per input: S (magnitude of
     * this layer's contribution, for its backward-sum rounding) */
    double *S = iv[I_S], *xd = iv[I_XD], *xa = iv[I_XA], *axs2 = iv[I_AXS2];
    double *T1 = iv[I_T1], *T2 = iv[I_T2], *T3 = iv[I_T3], *T4 = iv[I_T4];
    /* Canonization folds in float32 too: each folded weight w*W carries
     * ~3u (sqrt, division, product) and the folded bias w (b - mu) + beta
     * ~4u of the sizes of its terms, which may cancel: bgauge holds those
     * sizes so that the error terms below do not underestimate them. */
    double fold_err = bn >= 0 ? 3.0 : 0.0;
    for (int64_t u = 0; u < units; u++) {
        double fw = 1, fb = 0;
        if (bn >= 0) {
            bn_affine(&net->layers[bn], u, &fw, &fb);
            for (int64_t k = 0; k < L.fanin; k++)
                w[u * L.fanin + k] = fw * (double)l->w[u * L.fanin + k];
        }
        double b0 = l->has_bias ? (double)l->b[u] : 0;
        bias[u] = bn >= 0 ? fw * b0 + fb : b0;
        if (bn >= 0) {
            const lrp_layer *bl = &net->layers[bn];
            bgauge[u] = 4 * (fabs(fw * b0) + fabs(fw * (double)bl->bn_mean[u]) +
                             fabs((double)bl->bn_beta[u]));
        }
    }
    int has_bias = l->has_bias || bn >= 0;
    int64_t fanout = L.conv ? (L.O / L.groups) * L.kh * L.kw : L.n_out;
    const float *x = c->act[in0];
    const float *R = c->rel[top];
    const double *Rb = c->Bd[top], *Ax = c->A[in0], *Rc = c->cd[top];
    double *Bi = c->Bd[in0], *ci = c->cd[in0];
    uint8_t *fi = c->cf[in0];
    const int sharp = c->lam > 0;
    const double *Rbs = sharp ? c->Fs[top] : NULL, *Axs = sharp ? c->As[in0] : NULL;
    const double *Rcs = sharp ? c->cs[top] : NULL;
    const int nth = c->threads;
    /* am holds each term's rb rows: the term stride is rb nin */
    lin_cell J = {&L, w, l->w, NULL, am, rbmax * nin, NULL, NULL, 0};
    /* the weights as the GEMM reads them (terms filled per part) */
    lrp_gl_w wg;
    memset(&wg, 0, sizeof wg);
    wg.wf = l->w;
    wg.wd = w;
    /* A token Dense's rows are taken rb at a time (row_block):
     * its GEMMs then pack the weights once for all rows, where a row at a
     * time packed them once a row (on BERT-base most of the gauge's time).
     * Every cell gets the bits of the row-at-a-time loop: the sums are
     * lrp_gl_dense_rows's (each row's bits alone), the per-cell updates
     * are the same, a row's skips are decided per row, and the scalars
     * summed over the cells (tq, ill_mass, tl) take their terms in the
     * row-at-a-time order (kept per part and replayed row by row). */
    for (int64_t b = 0; b < B && !fail; b += rbmax) {
        /* this block's rows (the last may be fewer) */
        const int64_t rb = B - b < rbmax ? B - b : rbmax;
        J.nin = rb * nin;
        const float *xb = x + b * nin;
        const double *Axb = Ax + b * nin, *Axsb = sharp ? Axs + b * nin : NULL;
        double *Bib = Bi + b * nin, *cib = ci + b * nin;
        uint8_t *fib = fi + b * nin;
        double *Qsb = sharp ? c->Qs[in0] + b * nin : NULL;
        double *Lsb = sharp ? c->Ls[in0] + b * nin : NULL;
        double *csib = sharp ? c->cs[in0] + b * nin : NULL;
        if (sharp)
            memset(S, 0, (size_t)(rb * nin) * sizeof *S);
        for (int64_t i = 0; i < rb * nin; i++) {
            xd[i] = (double)xb[i];
            xa[i] = fabs(xd[i]);
            if (sharp)
                axs2[i] = Axsb[i] * Axsb[i];
        }
        /* per row: are its propagated input errors all zero (the skips of
         * the row-at-a-time loop); a GEMM source is skipped when it is zero
         * in every row (a zero row among others sums to +0 under |.| and
         * squares, as the skipped one did) */
        int ax_all = 1, axs2_all = 1;
        for (int64_t r = 0; r < rb; r++) {
            rz[r] = all_zero(Axb + r * nin, nin);
            rzs[r] = !sharp || all_zero(Axsb + r * nin, nin);
            ax_all &= rz[r];
            axs2_all &= !sharp || all_zero(axs2 + r * nin, nin);
        }
        if (need_sel) {
            /* the layer's real output for the part selectors: with its bias
             * whatever the bias switch (core/pipeline.c back_linear); z and
             * the gauge of its sum */
            lrp_gl_w wz = {.wf = l->w, .wd = w, .nt = 1, .wm = {LRP_WM_ID}, .tc = {1.0},
                           .op = LRP_GL_ID};
            lrp_gl_w wza = wz;
            wza.op = LRP_GL_ABS;
            const double *sz[1] = {xd}, *sza[1] = {xa};
            double *oz[1] = {r1}, *oza[1] = {r2};
            if (gl_fwd(&L, rb, &wz, 1, sz, oz, nth) || gl_fwd(&L, rb, &wza, 1, sza, oza, nth)) {
                fail = 1;
                break;
            }
            for (int64_t j = 0; j < rb * n; j++) {
                double z0 = has_bias ? bias[(j % n) / hw] : 0;
                z[j] = z0 + r1[j];
                if (!sum_decided(z[j], L.fanin + 1, r2[j] + fabs(z0))) {
                    J.xb = xb + (j / n) * nin;
                    z[j] = lin_cell_sum(&J, j % n, z0, 0);
                }
            }
        }
        for (int p = 0; p < d->n_parts && !fail; p++) {
            const lrp_part_desc *pd = &d->p[p];
            double coef = lrp_coef_value((lrp_coefsrc)pd->coef, rs);
            if (coef == 0)
                continue;
            int nt = pd->n_terms;
            double tc[LRP_PIPE_MAX_TERMS];
            int uses[LRP_PIPE_MAX_TERMS], amz_all[LRP_PIPE_MAX_TERMS];
            for (int t = 0; t < nt; t++)
                tc[t] = lrp_coef_value((lrp_coefsrc)pd->t[t].coef, rs);
            J.pd = pd;
            J.tc = tc;
            J.nt = nt;
            wg.nt = nt;
            for (int t = 0; t < nt; t++) {
                wg.wm[t] = pd->t[t].w;
                wg.tc[t] = tc[t];
                uses[t] = inmod_uses_input(pd->t[t].in);
                double *amt = am + (int64_t)t * rb * nin, *aat = aa + (int64_t)t * rb * nin;
                amz_all[t] = 1;
                for (int64_t r = 0; r < rb; r++) {
                    for (int64_t i = 0; i < nin; i++) {
                        amt[r * nin + i] = imod(pd->t[t].in, xd[r * nin + i], &L, i);
                        aat[r * nin + i] = fabs(amt[r * nin + i]);
                    }
                    /* a term whose modified inputs are all zero adds
                     * nothing but its forward-error part (e.g. x- after a
                     * ReLU) */
                    amz[t * rb + r] = all_zero(amt + r * nin, nin);
                    amz_all[t] &= amz[t * rb + r];
                }
            }
            /* den, its gauge G and the error bound D of the float32 den:
             * den = sum_t W_t . am_t; G = sum_t |W_t| . |am_t|; the
             * forward-error parts sum_t |W_t| . A and sum_t W_t^2 . As^2
             * over the terms that use the input (W_t = tc_t wmod_t(W)) */
            {
                const double *sd[LB_MAX_NT], *sg[2 * LB_MAX_NT], *sv[LB_MAX_NT];
                for (int t = 0; t < nt; t++) {
                    sd[t] = amz_all[t] ? NULL : am + (int64_t)t * rb * nin;
                    sg[2 * t] = amz_all[t] ? NULL : aa + (int64_t)t * rb * nin;
                    sg[2 * t + 1] = uses[t] && !ax_all ? Axb : NULL;
                    sv[t] = uses[t] && !axs2_all ? axs2 : NULL;
                }
                double *od[1] = {r1}, *og[2] = {r2, r3}, *ovv[1] = {DAv};
                wg.op = LRP_GL_ID;
                if (gl_fwd(&L, rb, &wg, 1, sd, od, nth)) {
                    fail = 1;
                    break;
                }
                wg.op = LRP_GL_ABS;
                if (gl_fwd(&L, rb, &wg, 2, sg, og, nth)) {
                    fail = 1;
                    break;
                }
                wg.op = LRP_GL_SQUARE;
                if (sharp && gl_fwd(&L, rb, &wg, 1, sv, ovv, nth)) {
                    fail = 1;
                    break;
                }
                if (!sharp)
                    memset(DAv, 0, (size_t)(rb * n) * sizeof *DAv);
            }
            int64_t nterms = L.fanin * nt + pd->n_bias + 1;
            /* the part is the forward map itself (core/pipeline.c's
             * `plain`: one term x . w, the bias in as the forward has it,
             * nothing folded): the reference's local run divides by the
             * layer's output as the trace holds it, and so does the
             * subject unless told otherwise (c->den_traced) */
            int traced = c->den_traced && bn < 0 && nt == 1 && pd->t[0].in == LRP_IM_ID &&
                         pd->t[0].w == LRP_WM_ID && tc[0] == 1.0 &&
                         (has_bias && rs->bias
                              ? pd->n_bias == 1 && pd->b[0].mod == LRP_BM_ID &&
                                    lrp_coef_value((lrp_coefsrc)pd->b[0].coef, rs) == 1.0f
                              : !has_bias);
            const float *zt = traced ? c->act[li] + b * n : NULL;
            for (int64_t j = 0; j < rb * n; j++) {
                double bd = 0, bg = 0;
                if (has_bias && rs->bias)
                    for (int q = 0; q < pd->n_bias; q++) {
                        double v = lrp_coef_value((lrp_coefsrc)pd->b[q].coef, rs) *
                                   bmod(pd->b[q].mod, bias[(j % n) / hw]);
                        bd += v;
                        bg += fabs(v);
                    }
                double D0 = (has_bias && rs->bias) ? bgauge[(j % n) / hw] : 0;
                den[j] = bd + r1[j];
                G[j] = bg + r2[j];
                D[j] = D0 + fold_err * r2[j] + r3[j];
                DAs[j] = D0 + fold_err * r2[j];
                if (traced) {
                    /* z_f itself: its error is its storage rounding (a
                     * subject holding z more precisely rounded it once to
                     * store it), u |z_f|, added below; G stays the sum of
                     * the terms' magnitudes (the unit's share of the
                     * total) */
                    den[j] = (double)zt[j];
                    D[j] = DAs[j] = DAv[j] = 0;
                    continue;
                }
                if (!sum_decided(den[j], nterms, G[j])) {
                    J.xb = xb + (j / n) * nin;
                    J.am = am + (j / n) * nin;
                    den[j] = lin_cell_sum(&J, j % n, bd, 1);
                }
            }
            /* rows taken at once: the units' shares of tq and ill_mass
             * kept for the replay below; one row: summed here */
            double *tqv = defer ? tqd[p] : NULL, *imv = defer ? imd[p] : NULL;
            for (int64_t j = 0; j < rb * n; j++) {
                int sel = 1;
                switch (pd->sel) {
                case LRP_SEL_ZPOS: sel = z[j] > 0; break;
                case LRP_SEL_ZNONNEG: sel = z[j] >= 0; break;
                case LRP_SEL_ZNEG: sel = z[j] < 0; break;
                case LRP_SEL_ZNONZERO: sel = z[j] != 0; break;
                default: break;
                }
                if (tqv)
                    tqv[j] = imv[j] = 0;
                /* the float32 den's own error: n roundings of partial sums
                 * <= G (rigorous n G, independent sqrt(n) G), or a traced
                 * den's storage rounding |z_f| */
                const double dn = traced ? fabs(den[j]) : (double)nterms * G[j];
                const double dq = traced ? fabs(den[j]) : sqrt((double)nterms) * G[j];
                D[j] += dn;
                double sg = stab_sign(rs->stab, den[j]);
                double st = den[j];
                und[j] = 0;
                qv[j] = lin[j] = ks[j] = 0;
                if (sg == 2) { /* skip_zero at 0: s = R */
                    v1[j] = Rb[b * n + j] + fabs((double)R[b * n + j]);
                    v2[j] = fabs((double)R[b * n + j]);
                    kap[j] = 0;
                    if (sharp)
                        lin[j] = Rbs[b * n + j] + fabs((double)R[b * n + j]);
                    continue;
                }
                if (rs->eps != 0 && sg != 0)
                    st = den[j] + sg * (double)rs->eps;
                if (!sel || (pd->empty_lost && den[j] == 0)) {
                    v1[j] = v2[j] = kap[j] = 0;
                    continue;
                }
                if (st == 0) {
                    und[j] = 1;
                    v1[j] = v2[j] = 0;
                    kap[j] = INFINITY;
                    ks[j] = INFINITY;
                    continue;
                }
                double s = fabs((double)R[b * n + j] / st);
                /* a unit carrying exactly no relevance (R_j = 0 with no error)
                 * gives s_j = 0 in float32 too, however ill-determined its
                 * denominator: it spreads no ill-conditioning */
                /* cond (docs/SPEC.md section 7): the worst relative error of the float32
                 * den, n kappa u, kappa = G / |den|; the propagated input
                 * error (the A terms of D) enters the bound, not cond */
                kap[j] = (R[b * n + j] == 0.0f && Rb[b * n + j] == 0.0) ? 0.0 : dn / fabs(st);
                v1[j] = s * (1 + D[j] / fabs(st) + (double)(fanout + 2) + fold_err) +
                        Rb[b * n + j] / fabs(st);
                v2[j] = s;
                if (sharp) {
                    /* independent roundings: the den's (n of them, partial
                     * sums <= G), the stabilizer add and the division; the
                     * den's forward-error part and the relevance handed in
                     * are linear */
                    qv[j] = s * s *
                            ((traced ? dq * dq : (double)nterms * G[j] * G[j]) / (st * st) + 2);
                    lin[j] = s * ((DAs[j] + sqrt(DAv[j])) / fabs(st) + fold_err) +
                             Rbs[b * n + j] / fabs(st);
                    ks[j] = kap[j] == 0 ? 0
                            : (traced ? c->lam * dq : c->lam * sqrt((double)nterms) * G[j]) /
                                  fabs(st);
                    /* the total: unit j's share sum_i a w s_j moves with the
                     * relative error of s_j, independently of other units */
                    double ej = dq / fabs(st) + 2;
                    double tj = fabs(coef) * s * G[j] * ej;
                    double im = U32 * ks[j] > LRP_ILL_COND_SHARP
                                    ? fabs(coef) * fabs((double)R[b * n + j]) : 0;
                    if (defer) {
                        tqv[j] = tj * tj;
                        imv[j] = im;
                    } else {
                        c->tq[in0] += tj * tj;
                        if (U32 * ks[j] > LRP_ILL_COND_SHARP)
                            c->g->ill_mass[in0] += im;
                    }
                }
            }
            for (int64_t j = 0; j < rb * n; j++) {
                cjv[j] = fmax(U32 * kap[j], Rc[b * n + j]);
                flv[j] = und[j] ? LRP_CELL_UNDEFINED | LRP_CELL_ZERO_DEN
                                : (den[j] == 0 ? LRP_CELL_ZERO_DEN : 0);
                if (R[b * n + j] != 0.0f)
                    flv[j] |= den[j] == 0 ? LRP_CELL_ZDEN_LIVE : LRP_CELL_LIVE_TERM;
                if (sharp)
                    csv[j] = fmax(U32 * ks[j], Rcs[b * n + j]);
            }
            /* scatter to the inputs, per term t, as transposed convolutions
             * of |W_t| with v1, v2, lin and of W_t^2 with qv, then the
             * input cell's own factors:
             *   B_i  += |coef| (|am_t(i)| T1_i + A_i T2_i)
             *   Qs_i += coef^2 am_t(i)^2 T3_i
             *   Ls_i += |coef| (|am_t(i)| T4_i + As_i T2_i)   (A, As: terms
             *   S_i  += |coef| |am_t(i)| T2_i                  that use x)
             * and the total's linear part (local mode) adds the Ls terms,
             * input cell by input cell (kept in tlv, replayed below) */
            const int keep_tl = sharp && c->local;
            double *tlp = keep_tl && !defer ? &c->tl[in0] : NULL;
            double tl = tlp ? *tlp : 0;
            const double acoef = fabs(coef), c2 = coef * coef;
            /* a non-finite factor must reach the cells as the plain loop
             * carried it (0 * inf): no term is skipped then (per row) */
            for (int64_t r = 0; r < rb; r++) {
                const int64_t o = r * n;
                rok[r] = all_finite(v1 + o, n) && all_finite(v2 + o, n) &&
                         (!sharp || (all_finite(lin + o, n) && all_finite(qv + o, n)));
            }
            for (int t = 0; t < nt; t++) {
                /* the row-at-a-time skips: az (no modified input), ux
                 * (the term's input errors count); a row with az && !ux
                 * took no part, and a source is summed when a row needs it */
                int need_v1 = 0, need_v2 = 0, need_sh = 0, any = 0;
                for (int64_t r = 0; r < rb; r++) {
                    int az = amz[t * rb + r] && rok[r];
                    int ux = uses[t] && !(rz[r] && rzs[r] && rok[r]);
                    rskip[r] = az && !ux;
                    if (rskip[r])
                        continue;
                    any = 1;
                    need_v1 |= !az;
                    need_v2 |= uses[t] || (sharp && !az);
                    need_sh |= sharp && !az;
                }
                double *tlv = keep_tl && defer ? tld[p * LB_MAX_NT + t] : NULL;
                if (!any) {
                    if (tlv)
                        memset(tlv, 0, (size_t)(rb * nin) * sizeof *tlv);
                    continue;
                }
                lrp_gl_w w1 = wg;
                w1.nt = 1;
                w1.wm[0] = pd->t[t].w;
                w1.tc[0] = tc[t];
                w1.op = LRP_GL_ABS;
                const double *vs[3] = {need_v1 ? v1 : NULL, need_v2 ? v2 : NULL,
                                       need_sh ? lin : NULL};
                double *os[3] = {T1, T2, T4};
                if (gl_bwd(&L, rb, &w1, 3, vs, os, nth)) {
                    fail = 1;
                    break;
                }
                if (need_sh) {
                    w1.op = LRP_GL_SQUARE;
                    const double *vq[1] = {qv};
                    double *oq[1] = {T3};
                    if (gl_bwd(&L, rb, &w1, 1, vq, oq, nth)) {
                        fail = 1;
                        break;
                    }
                }
                const double *aat = aa + (int64_t)t * rb * nin;
                for (int64_t r = 0; r < rb; r++) {
                    const int64_t o = r * nin;
                    if (rskip[r]) {
                        if (tlv)
                            memset(tlv + o, 0, (size_t)nin * sizeof *tlv);
                        continue;
                    }
                    int az = amz[t * rb + r] && rok[r];
                    for (int64_t i = o; i < o + nin; i++) {
                        double ab = az ? 0 : aat[i];
                        double add = az ? 0 : ab * T1[i];
                        if (uses[t])
                            add += Axb[i] * T2[i];
                        Bib[i] += acoef * add;
                        if (sharp) {
                            double lv = az ? 0 : ab * T4[i];
                            if (uses[t])
                                lv += Axsb[i] * T2[i];
                            lv *= acoef;
                            if (!az) {
                                Qsb[i] += c2 * (ab * ab * T3[i]);
                                S[i] += acoef * (ab * T2[i]);
                            }
                            Lsb[i] += lv;
                            if (tlv)
                                tlv[i] = lv;
                            else if (tlp)
                                tl += lv;
                        }
                    }
                }
            }
            if (fail)
                break;
            if (tlp)
                *tlp = tl;
            /* ill-conditioning propagates toward the input: a cell is as
             * undetermined as the relevance it is made of (connectivity
             * alone, whatever the weights) */
            for (int64_t r = 0; r < rb && !fail; r++)
                if (lrp_gl_maxprop(&L, cjv + r * n, cib + r * nin, flv + r * n, fib + r * nin) ||
                    (sharp && lrp_gl_maxprop(&L, csv + r * n, csib + r * nin, NULL, NULL)))
                    fail = 1;
        }
        if (fail)
            break;
        /* the sums over cells, row by row as the row-at-a-time loop took
         * them: per part the units' shares of tq and ill_mass and the
         * input cells' tl terms, then the row's backward-sum roundings */
        for (int64_t r = 0; r < rb; r++) {
            for (int p = 0; p < d->n_parts && defer; p++) {
                const lrp_part_desc *pd = &d->p[p];
                if (lrp_coef_value((lrp_coefsrc)pd->coef, rs) == 0)
                    continue;
                if (sharp)
                    for (int64_t j = r * n; j < (r + 1) * n; j++) {
                        c->tq[in0] += tqd[p][j];
                        c->g->ill_mass[in0] += imd[p][j];
                    }
                if (sharp && c->local)
                    for (int t = 0; t < pd->n_terms; t++)
                        for (int64_t i = r * nin; i < (r + 1) * nin; i++)
                            c->tl[in0] += tld[p * LB_MAX_NT + t][i];
            }
            if (sharp)
                /* the backward sum of this layer (fanout terms) and the final
                 * product, each rounding of a partial sum bounded by S */
                for (int64_t i = r * nin; i < (r + 1) * nin; i++) {
                    c->Qs[in0][b * nin + i] += (double)(fanout + 2) * S[i] * S[i];
                    c->Ss[in0][b * nin + i] += S[i];
                    c->tq[in0] += (double)(fanout + 2) * S[i] * S[i];
                }
        }
    }
    for (int k = 0; k < O_N; k++)
        free(ov[k]);
    for (int k = 0; k < I_N; k++)
        free(iv[k]);
    free(w), free(am), free(aa), free(und), free(flv);
    free(rz), free(rzs), free(rok), free(rskip), free(amz);
    for (int p = 0; p < LRP_PIPE_MAX_PARTS; p++)
        free(tqd[p]), free(imd[p]);
    for (int k = 0; k < LRP_PIPE_MAX_PARTS * LB_MAX_NT; k++)
        free(tld[k]);
    return fail ? -1 : 0;
}

/* Max-pool with wta_split_ties, one window j: the t inputs equal to the
 * window's maximum (in the float32 activations) each get R_j / t.  The
 * propagated bound of R_j is split the same way; the division adds one
 * rounding per share (at most u |R_j| / t, counted as 2 |R_j| / t like
 * prop_cell's final rounding), independent between cells for the sharp
 * total.  A cell within the forward error bounds of the maximum without
 * being equal to it (or a tie of inexact values) means float32 and the
 * reference may count different ties: condition 1 on those cells. */
static void split_ties_cell(ctx *c, int li, int in0, const lrp_pool *P, int64_t b, int64_t ch,
                            int64_t y, int64_t x, int64_t j, double best, const float *R,
                            const double *Rb, const double *Rbs, const double *Rcs)
{
    int64_t nin = (int64_t)P->C * P->H * P->W;
    int t = 0, amb = 0;
    double abest = 0;
    for (int pass = 0; pass < 3; pass++)
        for (int ky = 0; ky < P->kh; ky++)
            for (int kx = 0; kx < P->kw; kx++) {
                int64_t iy = y * P->sh - P->pt + ky, ix = x * P->sw - P->pl + kx;
                if (iy < 0 || iy >= P->H || ix < 0 || ix >= P->W)
                    continue;
                int64_t i = b * nin + (ch * P->H + iy) * P->W + ix;
                double v = (double)c->act[in0][i];
                double slack = U32 * (abest + c->A[in0][i]);
                if (pass == 0) { /* the ties and the largest bound among them */
                    if (v == best) {
                        t++;
                        abest = fmax(abest, c->A[in0][i]);
                    }
                    continue;
                }
                if (pass == 1) { /* a cell that may or may not tie */
                    amb |= slack > 0 && best - v <= slack;
                    continue;
                }
                if (amb && best - v <= slack) {
                    c->cd[in0][i] = fmax(c->cd[in0][i], 1.0);
                    if (Rbs)
                        c->cs[in0][i] = fmax(c->cs[in0][i], 1.0);
                }
                if (v != best)
                    continue;
                double share = fabs((double)R[j]) / t;
                c->Bd[in0][i] += Rb[j] / t + 2 * share;
                c->cd[in0][i] = fmax(c->cd[in0][i], c->cd[li][j]);
                if (Rbs) {
                    c->tl[in0] += Rbs[j] / t;
                    c->Ls[in0][i] += Rbs[j] / t;
                    c->Ss[in0][i] += share;
                    c->tq[in0] += share * share;
                    c->cs[in0][i] = fmax(c->cs[in0][i], Rcs[j]);
                }
            }
}

/* Proportional-type split R_k = x_k / stab(y) R (Add, BN explicit on its
 * input part, AvgPool per window).  Adds into the input bounds. */
/* Dy: error bound of the float32 y (units of u); Gy: its cond part (n sum |terms|). */
/* The sharp tier takes, in sh: the sharp forward error of x_k and the
 * sharp forward-error part of y, the magnitude of y's sum and its number
 * of roundings ny, the sharp bound and cond of R (j = the output cell). */
typedef struct prop_sharp {
    double Axk, DyA, mag, ny, Rb, Rc;
} prop_sharp;

static void prop_cell(ctx *c, int in_layer, int64_t i, double xk, double Axk, double y, double Dy,
                      double Gy, double R, double Rb, double Rc, const lrp_rule_spec *rs,
                      double scale, const prop_sharp *sh)
{
    if (Rc > c->cd[in_layer][i])
        c->cd[in_layer][i] = Rc;
    const int sharp = c->lam > 0;
    if (sharp && sh->Rc > c->cs[in_layer][i])
        c->cs[in_layer][i] = sh->Rc;
    double sg = stab_sign(rs->stab, y);
    double st = y;
    if (sg == 2) {
        c->Bd[in_layer][i] += scale * (Rb + 2 * fabs(R));
        if (sharp) {
            c->Ls[in_layer][i] += scale * (sh->Rb + 2 * fabs(R));
            c->Ss[in_layer][i] += scale * fabs(R);
            c->tl[in_layer] += scale * (sh->Rb + 2 * fabs(R));
        }
        return;
    }
    if (rs->eps != 0 && sg != 0)
        st = y + sg * (double)rs->eps;
    if (st == 0) {
        c->cf[in_layer][i] |= LRP_CELL_UNDEFINED | LRP_CELL_ZERO_DEN;
        if (c->cd[in_layer][i] < 1)
            c->cd[in_layer][i] = 1;
        if (sharp && c->cs[in_layer][i] < 1)
            c->cs[in_layer][i] = 1;
        return;
    }
    double s = fabs(R / st), kap = (R == 0 && Rb == 0) ? 0.0 : Gy / fabs(st);
    c->Bd[in_layer][i] += scale * (fabs(xk) * (s * (Dy / fabs(st) + 3) + Rb / fabs(st)) + Axk * s);
    if (U32 * kap > c->cd[in_layer][i])
        c->cd[in_layer][i] = U32 * kap;
    if (y == 0)
        c->cf[in_layer][i] |= LRP_CELL_ZERO_DEN;
    if (sharp) {
        /* independent: y's roundings (partial sums <= mag), the stabilizer
         * add, the division, the product; linear: forward errors of y and
         * x_k, and the bound of R handed in */
        double xs = scale * fabs(xk);
        double q1 = xs * xs * s * s * (sh->ny * sh->mag * sh->mag / (st * st) + 3);
        double l1 = xs * (s * sh->DyA / fabs(st) + sh->Rb / fabs(st)) + scale * sh->Axk * s;
        c->Qs[in_layer][i] += q1;
        c->Ls[in_layer][i] += l1;
        c->tq[in_layer] += q1;
        c->tl[in_layer] += l1;
        c->Ss[in_layer][i] += xs * s;
        double ks = kap == 0 ? 0 : c->lam * sqrt(sh->ny) * sh->mag / fabs(st);
        if (U32 * ks > c->cs[in_layer][i])
            c->cs[in_layer][i] = U32 * ks;
        if (U32 * ks > LRP_ILL_COND_SHARP)
            c->g->ill_mass[in_layer] += fabs(R) * (sh->mag > 0 ? fabs(xk) * scale / sh->mag : 1);
    }
}

/* Alpha-beta on a split (Add; the explicit BatchNorm with its shift
 * summands): summand t of output cell i goes to the part of its sign,
 * R_t = coef_p v_t R / stab(den_p), den_p the sum of the summands of that
 * sign, coef alpha (p = +) or beta (p = -, the minus sign does not change
 * a bound).  A part's sum has no cancellation: Gy = ny |den_p|.  A summand
 * within its forward error bound of 0 (|v| <= u A) may fall in either part
 * in float32: it is bounded in both, its error enters both denominators,
 * and where it could make up half of a part or more (|v| + u A >=
 * |den_p| / 2, or den_p = 0: float32 may see a part of its own, whose whole
 * coef R goes to it where the reference has an empty part) the share is
 * not first-order: cond 1 (ILL-CONDITIONED), bound coef (|R| + B(R)).
 * Absorbed summands (in < 0) only enter the denominators.  Replaces the
 * proportional split's bound by y, which alpha-beta does not divide by
 * (measured: resnet with alpha 2, beta 1 on its Add and BatchNorm layers,
 * the clean fast path locally 31.8x beyond that bound at block2_add). */
typedef struct ab_term {
    double v, A, As; /* the summand, its forward error bound and sharp one (units of u) */
    int in;          /* the input layer whose cell receives the share, or -1 */
    int64_t i;       /* that cell */
} ab_term;

static void ab_split(ctx *c, const ab_term *t, int nt, double R, double Rb, double Rc,
                     double Rbs, double Rcs, const lrp_rule_spec *rs, double *share0)
{
    /* share0 (may be NULL): |share| summand 0 receives, over both parts */
    if (share0)
        *share0 = 0;
    const int sharp = c->lam > 0;
    const double coef[2] = {(double)rs->alpha, (double)rs->beta};
    for (int p = 0; p < 2; p++) {
        if (coef[p] == 0)
            continue;
        double den = 0, sA = 0, sAs2 = 0, amb_max = 0;
        int ny = 0;
        for (int k = 0; k < nt; k++) {
            int in_part = p == 0 ? t[k].v > 0 : t[k].v < 0;
            int amb = t[k].A > 0 && fabs(t[k].v) <= U32 * t[k].A;
            if (in_part)
                den += t[k].v;
            if (in_part || amb) {
                sA += t[k].A;
                sAs2 += t[k].As * t[k].As;
                ny++;
            }
            if (amb)
                amb_max = fmax(amb_max, fabs(t[k].v) + U32 * t[k].A);
        }
        double mag = fabs(den), Gy = (double)ny * mag, Dy = Gy + sA;
        int first_order = mag > 0 && amb_max < 0.5 * mag;
        for (int k = 0; k < nt; k++) {
            if (t[k].in < 0)
                continue;
            int in_part = p == 0 ? t[k].v > 0 : t[k].v < 0;
            int amb = t[k].A > 0 && fabs(t[k].v) <= U32 * t[k].A;
            if (!in_part && !amb)
                continue;
            int in = t[k].in;
            int64_t i = t[k].i;
            if (!first_order) {
                double e = coef[p] * (fabs(R) / U32 + Rb);
                c->Bd[in][i] += e;
                c->cd[in][i] = fmax(c->cd[in][i], 1.0);
                if (sharp) {
                    double es = coef[p] * (fabs(R) / U32 + Rbs);
                    c->Ls[in][i] += es;
                    c->tl[in] += es;
                    c->Ss[in][i] += coef[p] * fabs(R);
                    c->cs[in][i] = fmax(c->cs[in][i], 1.0);
                }
                continue;
            }
            prop_sharp ps = {t[k].As, sqrt(sAs2), mag, (double)ny, Rbs, Rcs};
            prop_cell(c, in, i, t[k].v, t[k].A, den, Dy, Gy, R, Rb, Rc, rs, coef[p], &ps);
            if (share0 && k == 0) {
                double sg = stab_sign(rs->stab, den), st = den;
                if (sg != 2 && rs->eps != 0 && sg != 0)
                    st = den + sg * (double)rs->eps;
                if (sg != 2 && st != 0)
                    *share0 += coef[p] * fabs(t[k].v * R / st);
            }
            if (amb_max > 0) {
                /* the ambiguous summands' errors against the part's size */
                c->cd[in][i] = fmax(c->cd[in][i], U32 * Dy / mag);
                if (sharp)
                    c->cs[in][i] = fmax(c->cs[in][i], U32 * Dy / mag);
            }
        }
    }
}

/* Winner-take-all: float32 may route R to any cell of the window whose
 * value can reach the winner's within the two forward error bounds, not
 * only to the runner-up by value: a window of exact zeros (dead units)
 * with one unit whose negative pre-activation lies within its rounding of
 * zero is a tie for the reference and a win for that unit in float32.
 * Measured: Zennit on a torchvision VGG-16 at 224, features.7 unit with
 * exact -1.2e-7 and float32 +1.9e-8 (sum |x w| 2.85), was FAIL when only
 * the runner-up (a certainly dead unit, bound 0) was looked at. Every such
 * cell and the winner get cond 1 (ILL-CONDITIONED); exact ties of exact
 * values stay unambiguous (every path keeps the first). */
static void wta_ambiguity(ctx *c, int in0, const lrp_pool *P, int64_t b, int64_t ch, int64_t y,
                          int64_t x, int64_t win, double best, int sharp)
{
    int64_t nin = (int64_t)P->C * P->H * P->W;
    for (int ky = 0; ky < P->kh; ky++)
        for (int kx = 0; kx < P->kw; kx++) {
            int64_t iy = y * P->sh - P->pt + ky, ix = x * P->sw - P->pl + kx;
            if (iy < 0 || iy >= P->H || ix < 0 || ix >= P->W)
                continue;
            int64_t i = b * nin + (ch * P->H + iy) * P->W + ix;
            if (i == win)
                continue;
            double gap = best - (double)c->act[in0][i];
            double slack = U32 * (c->A[in0][win] + c->A[in0][i]);
            if (gap <= slack && slack > 0) {
                c->cd[in0][win] = fmax(c->cd[in0][win], 1.0);
                c->cd[in0][i] = fmax(c->cd[in0][i], 1.0);
            }
            double slk = sharp ? U32 * (c->As[in0][win] + c->As[in0][i]) : 0;
            if (sharp && gap <= slk && slk > 0) {
                c->cs[in0][win] = fmax(c->cs[in0][win], 1.0);
                c->cs[in0][i] = fmax(c->cs[in0][i], 1.0);
            }
        }
}

/* Max-pool under lrp0 / epsilon (Captum's EpsilonRule on a max-pool), one
 * window j won by `win`: R_win += a s_j, s_j = R_j / stab(y_j), where y_j
 * is a = a_win copied exactly.  Numerator and denominator hold the same a,
 * so the forward error of a (u A) moves the share a R / (a + e) by only
 * |R| e / stab^2 per unit (e the stabilizer added; 0 when nothing is added:
 * then the share is R whatever a), four times that where a is within its
 * forward bound of 0 (float32 may add the stabilizer of the other sign:
 * |f(a') - f(a)| <= 2 (|a| + u A) |R| / e); the bound of R enters as
 * |a / stab| B(R_j); three roundings (stabilizer add, division, product) of
 * |a s_j|.  Where windows overlap (stride < kernel), float32 sums the
 * m <= mmax windows a cell wins: m - 1 roundings of partial sums bounded by
 * |a| sum_j |s_j|, counted per window as (mmax - 1) |a s_j| (rigorous) and
 * mmax (mmax - 1) (a s_j)^2 (sharp, by Cauchy-Schwarz).  cond: u A / |stab|
 * (beyond it the first-order analysis stops holding), and a runner-up within
 * the forward bounds gives cond 1 on both cells, as under wta (float32 may
 * route s_j to the other cell).  skip_zero at a zero maximum and an
 * undefined unit are prop_cell's (x = y = a). */
static void maxeps_cell(ctx *c, int li, int in0, const lrp_pool *P, int64_t j, int64_t win,
                        double best, const double *Rb, const double *Rbs, const double *Rcs)
{
    const int sharp = Rbs != NULL;
    const lrp_rule_spec *rs = &c->net->layers[li].rule;
    double a = (double)c->act[in0][win], yj = (double)c->act[li][j];
    double Aw = c->A[in0][win], Asw = sharp ? c->As[in0][win] : 0;
    double R = (double)c->rel[li][j];
    double sg = stab_sign(rs->stab, yj), st = yj;
    if (sg != 2 && rs->eps != 0 && sg != 0)
        st = yj + sg * (double)rs->eps;
    if (sg == 2 || st == 0) {
        prop_sharp ps = {Asw, Asw, fabs(a), 0, sharp ? Rbs[j] : 0, sharp ? Rcs[j] : 0};
        prop_cell(c, in0, win, a, Aw, yj, Aw, Aw, R, Rb[j], c->cd[li][j], rs, 1, &ps);
    } else {
        double e = fabs(st - yj), s = fabs(R / st), t = fabs(a) * s, q = fabs(a / st);
        double flip = (e > 0 && fabs(yj) <= U32 * Aw) ? 4 : 1;
        double sens = fabs(R) * e / (st * st);
        c->Bd[in0][win] += flip * Aw * sens + q * Rb[j] + 3 * t;
        c->cd[in0][win] = fmax(c->cd[in0][win], fmax(c->cd[li][j], U32 * Aw / fabs(st)));
        if (yj == 0)
            c->cf[in0][win] |= LRP_CELL_ZERO_DEN;
        if (sharp) {
            double fls = (e > 0 && fabs(yj) <= U32 * Asw) ? 4 : 1;
            double l1 = fls * Asw * sens + q * Rbs[j];
            c->Qs[in0][win] += 3 * t * t;
            c->tq[in0] += 3 * t * t;
            c->Ls[in0][win] += l1;
            c->tl[in0] += l1;
            c->Ss[in0][win] += t;
            c->cs[in0][win] = fmax(c->cs[in0][win], fmax(Rcs[j], U32 * Asw / fabs(st)));
            /* an ill-conditioned unit may move all of R_j (the layer total's
             * allowance, as prop_cell's) */
            if (U32 * Asw / fabs(st) > LRP_ILL_COND_SHARP)
                c->g->ill_mass[in0] += fabs(R);
        }
        double mmax =
            (double)((P->kh + P->sh - 1) / P->sh) * (double)((P->kw + P->sw - 1) / P->sw);
        if (mmax > 1) {
            c->Bd[in0][win] += (mmax - 1) * t;
            if (sharp) {
                c->Qs[in0][win] += mmax * (mmax - 1) * t * t;
                c->tq[in0] += mmax * (mmax - 1) * t * t;
            }
        }
    }
    /* which cell float32 takes as the maximum: as winner-take-all */
    int64_t n = (int64_t)P->C * P->Ho * P->Wo, jj = j % n;
    wta_ambiguity(c, in0, P, j / n, jj / (P->Ho * P->Wo), (jj / P->Wo) % P->Ho, jj % P->Wo, win,
                  best, sharp);
}

/* R crosses unchanged: its bounds, cond and flags copied to the input */
static void pass_back(ctx *c, int li, int64_t n, const double *Rb, const double *Rbs,
                      const double *Rcs, const float *R)
{
    int in0 = c->net->layers[li].in[0];
    for (int64_t i = 0; i < c->B * n; i++) {
        c->Bd[in0][i] += Rb[i];
        if (c->cd[li][i] > c->cd[in0][i])
            c->cd[in0][i] = c->cd[li][i];
        c->cf[in0][i] |= c->cf[li][i];
        if (Rbs) {
            c->tl[in0] += Rbs[i];
            c->Ls[in0][i] += Rbs[i];
            c->Ss[in0][i] += fabs((double)R[i]);
            c->cs[in0][i] = fmax(c->cs[in0][i], Rcs[i]);
        }
    }
}

/* The identity rule of the token layers (GELU, SiLU, Tanh, RMSNorm, a
 * LayerNorm under `identity`): R crosses unchanged, plus the rounding of a
 * valid float32 evaluation that re-forms it.  Gradient-times-input code
 * (LXT) computes R_x = x g_x with g_x = (f(x) / x) g_y where R_y = f(x) g_y:
 * the quotient, the two products and R_y's own product, with the
 * stabilizer add of the quotient, are at most five independent roundings
 * of R's size (found running LXT: 1 to 4 ulps per cell, SUSPECT against a
 * budget of 0).  A copy stays exact; a wrong rule (the gradient, a sign)
 * moves R by its own size and stays FAIL. */
#define IDENTITY_REFORM 5.0
static void identity_back(ctx *c, int li, int64_t n, const double *Rb, const double *Rbs,
                          const double *Rcs, const float *R)
{
    const lrp_layer *l = &c->net->layers[li];
    int in0 = l->in[0];
    if (l->rule.eps != 0.0f) {
        /* an activation's identity with eps (LXT's implicit identity):
         * R_x = x R / stab(x), the proportional split with the input as its
         * own denominator -- no sum, so no cond of its own; x's forward
         * error enters the bound */
        for (int64_t i = 0; i < c->B * n; i++) {
            double x = (double)c->act[in0][i];
            prop_sharp ps = {Rbs ? c->As[in0][i] : 0.0, Rbs ? c->As[in0][i] : 0.0, fabs(x), 0.0,
                             Rbs ? Rbs[i] : 0.0, Rbs ? Rcs[i] : 0.0};
            prop_cell(c, in0, i, x, c->A[in0][i], x, c->A[in0][i], 0.0, (double)R[i], Rb[i],
                      c->cd[li][i], &l->rule, 1, &ps);
            c->cf[in0][i] |= c->cf[li][i];
        }
    } else
        pass_back(c, li, n, Rb, Rbs, Rcs, R);
    for (int64_t i = 0; i < c->B * n; i++) {
        double r = fabs((double)R[i]);
        c->Bd[in0][i] += IDENTITY_REFORM * r;
        if (Rbs) {
            c->Qs[in0][i] += IDENTITY_REFORM * r * r;
            c->tq[in0] += IDENTITY_REFORM * r * r;
        }
    }
}

static int backward_bounds(ctx *c)
{
    const lrp_net *net = c->net;
    int64_t B = c->B;
    int last = net->n_layers - 1;
    lrp_gauge *g = c->g;
    if (store_step(c, last, 1, 0) || ensure_bwd(c, last) || ensure_fwd(c, last))
        return -1;
    /* start: the one-hot logit (or given R_out) carries the forward error of
     * the logit it copies */
    {
        int64_t n = numel(net, last);
        for (int64_t i = 0; i < B * n; i++)
            if (c->rel[last][i] != 0) {
                c->Bd[last][i] = net->r_out ? 0 : c->A[last][i];
                if (c->lam > 0)
                    c->Ls[last][i] = net->r_out ? 0 : c->As[last][i];
            }
    }
    for (int li = last; li >= 0; li--) {
        const lrp_layer *l = &net->layers[li];
        int64_t n = numel(net, li);
        /* (li == last: the step's arrays are there since the start) */
        if (li != last && store_step(c, li, 1, 0))
            return -1;
        const float *R = c->rel[li];
        double merge = c->n_cons[li] > 1 ? (double)(c->n_cons[li] - 1) : 0;
        size_t nb = row_n(c, li);
        /* a layer no consumer reached has zero rows */
        if (ensure_bwd(c, li))
            return -1;
        if (!(g->bound[li] = malloc(nb * sizeof **g->bound)) ||
            !(g->cond[li] = malloc(nb * sizeof **g->cond)))
            return -1;
        if (c->lam > 0 && (!(g->sharp[li] = malloc(nb * sizeof **g->sharp)) ||
                           !(g->scond[li] = malloc(nb * sizeof **g->scond))))
            return -1;
        if (c->lam > 0) {
            /* every consumer of li has contributed: finish the sharp bound
             * (consumers' contributions merged by nc - 1 additions) */
            for (int64_t i = 0; i < B * n; i++) {
                double Q = c->Qs[li][i] + merge * c->Ss[li][i] * c->Ss[li][i];
                c->Fs[li][i] = c->lam * sqrt(Q) + c->Ls[li][i];
            }
        }
        if (c->local) {
            /* every consumer of li has contributed: what arrived is the
             * local bound of li's relevance; then restart from the error of
             * the given relevance: its binary32 rounding (at most u |R|, round to nearest) when
             * it is the reference's, none when it is the subject's own */
            double rin = c->inputs == LRP_GI_ROUNDED ? 1.0 : 0.0;
            if (c->lam > 0) {
                /* the total of this tensor: the merge of its consumers adds
                 * nc - 1 roundings per cell */
                double tq = c->tq[li];
                for (int64_t i = 0; i < B * n; i++)
                    tq += merge * c->Ss[li][i] * c->Ss[li][i];
                c->g->total_sharp[li] = c->lam * sqrt(tq) + c->tl[li];
            }
            for (int64_t i = 0; i < B * n; i++) {
                /* the cell's own final rounding, and the nc - 1 additions
                 * merging its consumers' contributions (which may cancel) */
                double bnd = c->Bd[li][i] + 2 * fabs((double)R[i]) + merge * c->Ss[li][i];
                c->g->bound[li][i] = (float)fmin(bnd, 3.0e38);
                c->g->cond[li][i] = (float)fmin(c->cd[li][i], 3.0e38);
                c->Bd[li][i] = rin * fabs((double)R[i]);
                c->cd[li][i] = 0;
                if (c->lam > 0) {
                    c->g->sharp[li][i] = (float)fmin(fmin(c->Fs[li][i], bnd), 3.0e38);
                    c->g->scond[li][i] = (float)fmin(c->cs[li][i], 3.0e38);
                    c->Fs[li][i] = rin * fabs((double)R[i]);
                    c->cs[li][i] = 0;
                }
            }
        } else {
            /* end to end: every consumer of li has contributed, and no
             * later step (earlier layers) writes li's rows: its bounds are
             * final */
            for (int64_t k = 0; k < B * n; k++) {
                /* the cell's own final rounding (sum of consumers, product) */
                double bnd = c->Bd[li][k] + 2 * fabs((double)R[k]) + merge * c->Ss[li][k];
                g->bound[li][k] = (float)fmin(bnd, 3.0e38);
                g->cond[li][k] = (float)fmin(c->cd[li][k], 3.0e38);
                if (c->lam > 0) {
                    double Q = c->Qs[li][k] + merge * c->Ss[li][k] * c->Ss[li][k];
                    double sb = c->lam * sqrt(Q) + c->Ls[li][k] + fabs((double)R[k]);
                    g->sharp[li][k] = (float)fmin(fmin(sb, bnd), 3.0e38);
                    g->scond[li][k] = (float)fmin(c->cs[li][k], 3.0e38);
                }
            }
        }
        if (emit_rows(c, li, 1))
            return -1;
        /* what this layer's step reads and adds into */
        for (int k = 0; k < l->n_in; k++)
            if (ensure_bwd(c, l->in[k]) || ensure_fwd(c, l->in[k]))
                return -1;
        const double *Rb = c->Bd[li];
        const double *Rbs = c->lam > 0 ? c->Fs[li] : NULL;
        const double *Rcs = c->lam > 0 ? c->cs[li] : NULL;
#define SH(f) (Rbs ? (f) : 0.0)
        switch (l->kind) {
        case LRP_LAYER_DENSE:
        case LRP_LAYER_CONV2D:
            if (linear_backward(c, li))
                return -1;
            break;
        case LRP_LAYER_BATCHNORM: {
            int in0 = l->in[0];
            if ((l->rule.flags & LRP_F_BN_CANONIZE) || l->rule.rule == LRP_RULE_PASS) {
                /* rule pass: R crosses unchanged (bounds copied below);
                 * canonized: passes to the folded layer, which reads R at this output:
                 * handled in linear_backward via lrp_gauge_canon_bn(); the conv's own
                 * output relevance is this one */
                break;
            }
            int64_t C = l->shape.d[0], hw = n / C;
            if (l->rule.rule == LRP_RULE_ALPHABETA) {
                /* summands: w x (coefficient ~2.5u, product: 4 |w x| beside
                 * the propagated |w| A), and the shift t = beta - w mu
                 * (float32, may cancel: 4 (|beta| + |w mu|)), or under
                 * bn_fine -w mu (4 |w mu|) and beta (exact binary32).  The
                 * channel's float32 coefficient (relative error <= 2.5u) is
                 * shared by its cells: as in the proportional case below,
                 * its effect on the layer total adds linearly over the
                 * channel (2.5u of each input share), counted in the sharp
                 * total once per channel */
                int fine = (l->rule.flags & LRP_F_BN_FINE) != 0;
                for (int64_t b = 0; b < B; b++)
                    for (int64_t ch = 0; ch < C; ch++) {
                        double w, sh;
                        bn_affine(l, ch, &w, &sh);
                        double wmu = w * (double)l->bn_mean[ch], be = (double)l->bn_beta[ch];
                        double shg = fabs(be) + fabs(wmu), Lc = 0;
                        for (int64_t k = 0; k < hw; k++) {
                            int64_t i = b * n + ch * hw + k;
                            double xk = w * (double)c->act[in0][i];
                            ab_term t[3];
                            t[0] = (ab_term){xk, fabs(w) * c->A[in0][i] + 4 * fabs(xk),
                                             SH(hypot(fabs(w) * c->As[in0][i], 4 * fabs(xk))),
                                             in0, i};
                            if (fine) {
                                t[1] = (ab_term){-wmu, 4 * fabs(wmu), SH(4 * fabs(wmu)), -1, 0};
                                t[2] = (ab_term){be, 0, 0, -1, 0};
                            } else {
                                t[1] = (ab_term){sh, 4 * shg, SH(4 * shg), -1, 0};
                            }
                            double sh0 = 0;
                            ab_split(c, t, fine ? 3 : 2, R[i], Rb[i], c->cd[li][i], SH(Rbs[i]),
                                     SH(Rcs[i]), &l->rule, &sh0);
                            Lc += 2.5 * sh0;
                        }
                        if (c->lam > 0 && Rbs)
                            c->tq[in0] += Lc * Lc;
                    }
                break;
            }
            for (int64_t b = 0; b < B; b++)
                for (int64_t ch = 0; ch < C; ch++) {
                    double w, sh;
                    bn_affine(l, ch, &w, &sh);
                    /* the channel's float32 coefficient w = gamma / sqrt(var + eps)
                     * (relative error <= 2.5u) and shift beta - w mu are rounded
                     * once per channel: every cell of the channel shares them.
                     * Their effect on the layer total adds linearly over the
                     * channel's cells, not as independent roundings (measured:
                     * ResNet-50 at 64x64, l2_0_bn1, the clean fast path 1.2x
                     * beyond a total that counted them per cell). Per cell k,
                     * with t_k = |w x_k R_k / s_k|: the coefficient alone moves
                     * R_in by 2.5u t_k when y is given (trace-local activations);
                     * when y is recomputed from x it partly cancels, leaving
                     * t_k (2.5 |beta + sg eps| + |w mu| + |shift|) / |s_k|.
                     * The larger of the two is counted; channels are
                     * independent of one another. */
                    double Lc = 0;
                    for (int64_t k = 0; k < hw; k++) {
                        int64_t i = b * n + ch * hw + k;
                        double xk = w * (double)c->act[in0][i];
                        double y = (double)c->act[li][i];
                        double shg = fabs((double)l->bn_beta[ch]) +
                                     fabs(w * (double)l->bn_mean[ch]);
                        double Gy = 4 * (fabs(xk) + shg);
                        double Dy = Gy + fabs(w) * c->A[in0][i];
                        prop_sharp ps = {SH(fabs(w) * c->As[in0][i]), SH(fabs(w) * c->As[in0][i]),
                                         fabs(xk) + shg, 4, SH(Rbs[i]), SH(Rcs[i])};
                        prop_cell(c, in0, i, xk, fabs(w) * c->A[in0][i], y, Dy, Gy, R[i], Rb[i],
                                  c->cd[li][i], &l->rule, 1, &ps);
                        if (c->lam > 0 && Rbs) {
                            double sg = stab_sign(l->rule.stab, y), st = y;
                            if (sg == 2)
                                continue;
                            if (l->rule.eps != 0 && sg != 0)
                                st = y + sg * (double)l->rule.eps;
                            if (st == 0)
                                continue;
                            double be = fabs((double)l->bn_beta[ch] +
                                             (sg != 0 ? sg * (double)l->rule.eps : 0));
                            double t = fabs(xk * (double)R[i] / st);
                            double a = t * fmax(2.5, (2.5 * be + fabs(w * (double)l->bn_mean[ch]) +
                                                      fabs(sh)) / fabs(st));
                            c->Qs[in0][i] += a * a;
                            Lc += a;
                        }
                    }
                    if (c->lam > 0 && Rbs)
                        c->tq[in0] += Lc * Lc;
                }
            break;
        }
        case LRP_LAYER_ADD:
            if (l->rule.rule == LRP_RULE_ALPHABETA) {
                ab_term t[LRP_MAX_INPUTS];
                for (int64_t i = 0; i < B * n; i++) {
                    for (int q = 0; q < l->n_in; q++) {
                        int in = l->in[q];
                        t[q] = (ab_term){(double)c->act[in][i], c->A[in][i],
                                         SH(c->As[in][i]), in, i};
                    }
                    ab_split(c, t, l->n_in, R[i], Rb[i], c->cd[li][i], SH(Rbs[i]), SH(Rcs[i]),
                             &l->rule, NULL);
                }
                break;
            }
            for (int64_t i = 0; i < B * n; i++) {
                double y = (double)c->act[li][i], sa = 0, sA = 0, sAs = 0;
                for (int q = 0; q < l->n_in; q++) {
                    sa += fabs((double)c->act[l->in[q]][i]);
                    sA += c->A[l->in[q]][i];
                    sAs += SH(c->As[l->in[q]][i] * c->As[l->in[q]][i]);
                }
                sAs = sqrt(sAs);
                double Gy = (double)l->n_in * sa, Dy = Gy + sA;
                for (int q = 0; q < l->n_in; q++) {
                    prop_sharp ps = {SH(c->As[l->in[q]][i]), sAs, sa, (double)l->n_in,
                                     SH(Rbs[i]), SH(Rcs[i])};
                    prop_cell(c, l->in[q], i, (double)c->act[l->in[q]][i], c->A[l->in[q]][i], y,
                              Dy, Gy, R[i], Rb[i], c->cd[li][i], &l->rule, 1, &ps);
                }
            }
            break;
        case LRP_LAYER_CONCAT: {
            int64_t off = 0;
            for (int q = 0; q < l->n_in; q++) {
                int in = l->in[q];
                int64_t nq = numel(net, in);
                for (int64_t b = 0; b < B; b++)
                    for (int64_t i = 0; i < nq; i++) {
                        c->Bd[in][b * nq + i] += Rb[b * n + off + i];
                        if (c->cd[li][b * n + off + i] > c->cd[in][b * nq + i])
                            c->cd[in][b * nq + i] = c->cd[li][b * n + off + i];
                        c->cf[in][b * nq + i] |= c->cf[li][b * n + off + i];
                        if (Rbs) {
                            c->tl[in] += Rbs[b * n + off + i];
                            c->Ls[in][b * nq + i] += Rbs[b * n + off + i];
                            c->Ss[in][b * nq + i] += fabs((double)R[b * n + off + i]);
                            c->cs[in][b * nq + i] =
                                fmax(c->cs[in][b * nq + i], Rcs[b * n + off + i]);
                        }
                    }
                off += nq;
            }
            break;
        }
        case LRP_LAYER_MAXPOOL2D:
        case LRP_LAYER_AVGPOOL2D:
        case LRP_LAYER_GLOBALAVGPOOL: {
            int in0 = l->in[0];
            int64_t nin = numel(net, in0);
            lrp_pool P;
            lrp_pipe_pool_geom(&P, net, li);
            for (int64_t b = 0; b < B; b++)
                for (int64_t ch = 0; ch < P.C; ch++)
                    for (int64_t y = 0; y < P.Ho; y++)
                        for (int64_t x = 0; x < P.Wo; x++) {
                            int64_t j = b * n + (ch * P.Ho + y) * P.Wo + x;
                            double yj = (double)c->act[li][j], best = -INFINITY, second = -INFINITY;
                            int64_t win = -1, sec = -1;
                            int cnt = 0;
                            double sa = 0, sA = 0, sAs = 0;
                            for (int ky = 0; ky < P.kh; ky++)
                                for (int kx = 0; kx < P.kw; kx++) {
                                    int64_t iy = y * P.sh - P.pt + ky, ix = x * P.sw - P.pl + kx;
                                    if (iy < 0 || iy >= P.H || ix < 0 || ix >= P.W)
                                        continue;
                                    int64_t i = b * nin + (ch * P.H + iy) * P.W + ix;
                                    double v = (double)c->act[in0][i];
                                    if (win < 0 || v > best) {
                                        second = best;
                                        sec = win;
                                        best = v;
                                        win = i;
                                    } else if (sec < 0 || v > second) {
                                        second = v;
                                        sec = i;
                                    }
                                    sa += fabs(v);
                                    sA += c->A[in0][i];
                                    sAs += SH(c->As[in0][i] * c->As[in0][i]);
                                    cnt++;
                                }
                            if (win < 0)
                                continue;
                            sAs = sqrt(sAs);
                            if (l->kind == LRP_LAYER_MAXPOOL2D && l->rule.rule != LRP_RULE_WTA) {
                                maxeps_cell(c, li, in0, &P, j, win, best, Rb, Rbs, Rcs);
                                continue;
                            }
                            if (l->kind == LRP_LAYER_MAXPOOL2D &&
                                (l->rule.flags & LRP_F_WTA_SPLIT_TIES)) {
                                split_ties_cell(c, li, in0, &P, b, ch, y, x, j, best, R, Rb, Rbs,
                                                Rcs);
                                continue;
                            }
                            if (l->kind == LRP_LAYER_MAXPOOL2D) {
                                /* winner-take-all routes R and its bound; a
                                 * runner-up within the forward error bounds
                                 * means float32 may pick another winner */
                                c->Bd[in0][win] += Rb[j];
                                c->cd[in0][win] = fmax(c->cd[in0][win], c->cd[li][j]);
                                if (Rbs) {
                                    /* overlapping windows: a cell that won an
                                     * earlier window adds this R to what it
                                     * holds, one rounding of at most u |sum|
                                     * (measured: ResNet-50's 3x3 stride-2 pool,
                                     * clean fast path, total off by 1.9e-7
                                     * with no rounding counted) */
                                    double held = c->Ss[in0][win];
                                    if (held > 0) {
                                        double r = held + fabs((double)R[j]);
                                        c->Qs[in0][win] += r * r;
                                        c->tq[in0] += r * r;
                                    }
                                    c->tl[in0] += Rbs[j];
                                    c->Ls[in0][win] += Rbs[j];
                                    c->Ss[in0][win] += fabs((double)R[j]);
                                    c->cs[in0][win] = fmax(c->cs[in0][win], Rcs[j]);
                                }
                                wta_ambiguity(c, in0, &P, b, ch, y, x, win, best, Rbs != NULL);
                                continue;
                            }
                            int k = P.count_include_pad ? P.kh * P.kw : cnt;
                            double Gy = (double)(cnt + 1) * sa / (k ? k : 1);
                            double Dy = Gy + sA / (k ? k : 1);
                            for (int ky = 0; ky < P.kh; ky++)
                                for (int kx = 0; kx < P.kw; kx++) {
                                    int64_t iy = y * P.sh - P.pt + ky, ix = x * P.sw - P.pl + kx;
                                    if (iy < 0 || iy >= P.H || ix < 0 || ix >= P.W)
                                        continue;
                                    int64_t i = b * nin + (ch * P.H + iy) * P.W + ix;
                                    prop_sharp ps = {SH(c->As[in0][i] / k), SH(sAs / k),
                                                     sa / (k ? k : 1), (double)(cnt + 1),
                                                     SH(Rbs[j]), SH(Rcs[j])};
                                    prop_cell(c, in0, i, (double)c->act[in0][i] / k,
                                              c->A[in0][i] / k, yj, Dy, Gy, (double)c->rel[li][j],
                                              Rb[j], c->cd[li][j], &l->rule, 1, &ps);
                                }
                        }
            break;
        }
        case LRP_LAYER_INPUT: break;
        case LRP_LAYER_LAYERNORM:
            if (l->rule.rule == LRP_RULE_LN_LINEAR || l->rule.rule == LRP_RULE_LN_FINE) {
                int in0 = l->in[0];
                lrp_gtok_bwd io = {c->act[in0], c->act[li], R, c->A[in0], Rb, c->cd[li], Rbs,
                                   Rcs, c->Bd[in0], c->cd[in0], c->cf[in0],
                                   Rbs ? c->Ls[in0] : NULL, Rbs ? c->Ss[in0] : NULL,
                                   Rbs ? c->cs[in0] : NULL, &c->tl[in0], &c->g->ill_mass[in0],
                                   c->den_traced};
                if (lrp_gauge_token_bwd(net, li, B, &io))
                    return -1;
                break;
            }
            identity_back(c, li, n, Rb, Rbs, Rcs, R);
            break;
        case LRP_LAYER_POSITION: {
            int in0 = l->in[0];
            if (l->rule.rule == LRP_RULE_PASS) {
                pass_back(c, li, n, Rb, Rbs, Rcs, R);
                break;
            }
            for (int64_t i = 0; i < B * n; i++) {
                double x = (double)c->act[in0][i], p = (double)l->w[i % n];
                double sa = fabs(x) + fabs(p), Gy = 2 * sa, Dy = Gy + c->A[in0][i];
                prop_sharp ps = {SH(c->As[in0][i]), SH(c->As[in0][i]), sa, 2, SH(Rbs[i]),
                                 SH(Rcs[i])};
                prop_cell(c, in0, i, x, c->A[in0][i], (double)c->act[li][i], Dy, Gy, R[i], Rb[i],
                          c->cd[li][i], &l->rule, 1, &ps);
            }
            break;
        }
        default:
            if (gauge_kind[l->kind] == G_VIT) {
                /* copies through the index map (pass_back's bookkeeping per
                 * cell); the CLS row's relevance is absorbed: no bound
                 * reaches the input from it */
                int in0 = l->in[0];
                int64_t nin = numel(net, in0);
                for (int64_t b = 0; b < B; b++)
                    for (int64_t i = 0; i < n; i++) {
                        int64_t s = lrp_gauge_vit_src(net, li, i);
                        if (s < 0)
                            continue;
                        int64_t o = b * n + i, t = b * nin + s;
                        c->Bd[in0][t] += Rb[o];
                        c->cd[in0][t] = fmax(c->cd[in0][t], c->cd[li][o]);
                        c->cf[in0][t] |= c->cf[li][o];
                        if (Rbs) {
                            c->tl[in0] += Rbs[o];
                            c->Ls[in0][t] += Rbs[o];
                            c->Ss[in0][t] += fabs((double)R[o]);
                            c->cs[in0][t] = fmax(c->cs[in0][t], Rcs[o]);
                        }
                    }
                break;
            }
            if (gauge_kind[l->kind] == G_ATTN) {
                /* the cond of the layer's output, per sample, reaches
                 * every input cell of that sample (the kinds mix cells);
                 * the kind's own conds come per cell (gauge_attn.c) */
                lrp_ga ga = {net,
                             li,
                             B,
                             c->act,
                             c->rel,
                             c->A,
                             Rb,
                             c->local && c->inputs == LRP_GI_EXACT,
                             c->den_traced,
                             Rbs ? c->lam : 0,
                             c->As,
                             Rbs};
                for (int k = 0; k < l->n_in; k++) {
                    int in = l->in[k];
                    int64_t nin = numel(net, in);
                    double *bnd = calloc((size_t)(B * nin + 1), sizeof *bnd);
                    double *cnd = calloc((size_t)(B * nin + 1), sizeof *cnd);
                    double *mag = calloc((size_t)(B * nin + 1), sizeof *mag);
                    double *bns = Rbs ? calloc((size_t)(B * nin + 1), sizeof *bns) : NULL;
                    double *cns = Rbs ? calloc((size_t)(B * nin + 1), sizeof *cns) : NULL;
                    int own = -1;
                    if (!bnd || !cnd || !mag || (Rbs && (!bns || !cns)) ||
                        (own = lrp_gauge_attn_bwd(&ga, k, bnd, cnd, mag, bns, cns)) < 0) {
                        free(bnd), free(cnd), free(mag), free(bns), free(cns);
                        return -1;
                    }
                    /* a kind without a sharp tier of its own: its rigorous
                     * bound and cond serve as the sharp ones */
                    const double *sb = own ? bns : bnd, *sc = own ? cns : cnd;
                    for (int64_t b = 0; b < B; b++) {
                        double cm = 0, csm = 0;
                        for (int64_t i = 0; i < n; i++) {
                            cm = fmax(cm, c->cd[li][b * n + i]);
                            if (Rcs)
                                csm = fmax(csm, Rcs[b * n + i]);
                        }
                        for (int64_t i = b * nin; i < (b + 1) * nin; i++) {
                            c->Bd[in][i] += bnd[i];
                            c->cd[in][i] = fmax(c->cd[in][i], fmax(cm, cnd[i]));
                            if (Rbs) {
                                c->Ls[in][i] += sb[i];
                                c->tl[in] += sb[i];
                                c->Ss[in][i] += mag[i];
                                c->cs[in][i] = fmax(c->cs[in][i], fmax(csm, sc[i]));
                            }
                        }
                    }
                    free(bnd), free(cnd), free(mag), free(bns), free(cns);
                }
                break;
            }
            /* pass: ReLU, Flatten, Reshape, Dropout; the token layers'
             * identity rule */
            LRP_ASSERT(gauge_kind[l->kind] == G_PASS || gauge_kind[l->kind] == G_RELU ||
                       gauge_kind[l->kind] == G_TOKEN);
            if (gauge_kind[l->kind] == G_TOKEN)
                identity_back(c, li, n, Rb, Rbs, Rcs, R);
            else
                pass_back(c, li, n, Rb, Rbs, Rcs, R);
            break;
        }
#undef SH
        /* a canonized BN's input (the folded conv's output), and the input
         * of a BN under rule pass, carry the BN output's relevance
         * unchanged (no rounding): copy bounds down */
        if (l->kind == LRP_LAYER_BATCHNORM &&
            ((l->rule.flags & LRP_F_BN_CANONIZE) || l->rule.rule == LRP_RULE_PASS)) {
            int in0 = l->in[0];
            for (int64_t i = 0; i < B * n; i++) {
                c->Bd[in0][i] += c->Bd[li][i];
                c->cd[in0][i] = fmax(c->cd[in0][i], c->cd[li][i]);
                c->cf[in0][i] |= c->cf[li][i];
                if (Rbs) {
                    c->Ls[in0][i] += Rbs[i];
                    c->Ss[in0][i] += fabs((double)R[i]);
                    c->cs[in0][i] = fmax(c->cs[in0][i], Rcs[i]);
                }
            }
        }
        /* rows no later step reads: the forward bounds of inputs whose
         * last consumer (backward order) this was, the backward rows of
         * this layer (and of the BN it folds, read by this step) */
        for (int k = 0; k < l->n_in; k++)
            if (c->c_min[l->in[k]] == li)
                drop_fwd(c, l->in[k]);
        if (li == last || c->n_cons[li] == 0)
            drop_fwd(c, li);
        if (c->st && c->st->park && !c->fwd_local) {
            /* the copies fetched for this step; the parked rows too where
             * this was their last reader */
            for (int k = 0; k < l->n_in; k++)
                if (release_fwd(c, l->in[k], c->c_min[l->in[k]] == li))
                    return -1;
            if (release_fwd(c, li, li == last || c->n_cons[li] == 0))
                return -1;
        }
        if (store_step(c, li, 1, 1))
            return -1;
        if (c->last_reader[li] == li)
            drop_bwd(c, li);
        int bn = (l->kind == LRP_LAYER_DENSE || l->kind == LRP_LAYER_CONV2D)
                     ? lrp_gauge_canon_bn(net, li)
                     : -1;
        if (bn >= 0 && c->last_reader[bn] == li)
            drop_bwd(c, bn);
        if (c->o->emit) {
            free(c->cf[li]);
            c->cf[li] = NULL;
        }
    }
    return 0;
}

lrp_status lrp_gauge_compute(lrp_gauge *g, const lrp_net *net, float *const *act,
                             float *const *rel, lrp_err *err)
{
    return lrp_gauge_compute_ex(g, net, act, rel, 0, err);
}

lrp_status lrp_gauge_compute_ex(lrp_gauge *g, const lrp_net *net, float *const *act,
                                float *const *rel, int local, lrp_err *err)
{
    /* the sharp tier is always computed: the merge of several consumers'
     * contributions needs their magnitudes (Ss) in the rigorous tier too */
    lrp_gauge_opts o = {local, local ? LRP_GI_ROUNDED : LRP_GI_PROPAGATED, LRP_SHARP_LAMBDA, 0,
                        NULL, NULL, 0, NULL};
    return lrp_gauge_compute_opts(g, net, act, rel, &o, err);
}

static void free_rows(double **r, int nl)
{
    if (!r)
        return;
    for (int i = 0; i < nl; i++)
        free(r[i]);
    free(r);
}

lrp_status lrp_gauge_compute_opts(lrp_gauge *g, const lrp_net *net, float *const *act,
                                  float *const *rel, const lrp_gauge_opts *o, lrp_err *err)
{
    memset(g, 0, sizeof *g);
    int nl = net->n_layers;
    int local = o->local;
    double lam = o->lambda > 0 ? o->lambda : LRP_SHARP_LAMBDA;
    ctx c;
    memset(&c, 0, sizeof c);
    c.net = net;
    c.act = act;
    c.rel = rel;
    c.g = g;
    c.B = net->batch;
    c.local = local;
    c.inputs = local ? (int)o->inputs : LRP_GI_PROPAGATED;
    c.den_traced = c.inputs == LRP_GI_EXACT && !o->recomputed_den;
    c.lam = lam;
    c.o = o;
    c.threads = o->threads > 0 ? o->threads : LRP_GAUGE_THREADS;
    c.fwd_local = c.inputs == LRP_GI_ROUNDED || c.inputs == LRP_GI_EXACT;
    c.st = o->store;
    g->n_layers = nl;
    g->lambda = lam;
    g->bound = calloc((size_t)nl, sizeof *g->bound);
    g->cond = calloc((size_t)nl, sizeof *g->cond);
    g->cflags = calloc((size_t)nl, sizeof *g->cflags);
    g->fwd = calloc((size_t)nl, sizeof *g->fwd);
    g->ill_mass = calloc((size_t)nl, sizeof *g->ill_mass);
    g->total_sharp = calloc((size_t)nl, sizeof *g->total_sharp);
    c.tq = calloc((size_t)nl, sizeof *c.tq);
    c.tl = calloc((size_t)nl, sizeof *c.tl);
    c.A = calloc((size_t)nl, sizeof *c.A);
    c.Bd = calloc((size_t)nl, sizeof *c.Bd);
    c.cd = calloc((size_t)nl, sizeof *c.cd);
    c.As = calloc((size_t)nl, sizeof *c.As);
    c.n_cons = calloc((size_t)nl, sizeof *c.n_cons);
    c.c_min = calloc((size_t)nl, sizeof *c.c_min);
    c.c_max = calloc((size_t)nl, sizeof *c.c_max);
    c.last_reader = calloc((size_t)nl, sizeof *c.last_reader);
    c.parked = calloc((size_t)nl, 1);
    c.cf = g->cflags;
    lrp_status st = LRP_OK;
    if (!g->bound || !g->cond || !g->cflags || !g->fwd || !g->ill_mass || !g->total_sharp ||
        !c.tq || !c.tl || !c.A || !c.Bd || !c.cd || !c.As || !c.n_cons || !c.c_min || !c.c_max ||
        !c.last_reader || !c.parked)
        goto oom;
    if (lam > 0) {
        g->sharp = calloc((size_t)nl, sizeof *g->sharp);
        g->scond = calloc((size_t)nl, sizeof *g->scond);
        g->fwd_sharp = calloc((size_t)nl, sizeof *g->fwd_sharp);
        c.Ls = calloc((size_t)nl, sizeof *c.Ls);
        c.Qs = calloc((size_t)nl, sizeof *c.Qs);
        c.Ss = calloc((size_t)nl, sizeof *c.Ss);
        c.cs = calloc((size_t)nl, sizeof *c.cs);
        c.Fs = calloc((size_t)nl, sizeof *c.Fs);
        if (!g->sharp || !g->scond || !g->fwd_sharp || !c.Ls || !c.Qs || !c.Ss || !c.cs || !c.Fs)
            goto oom;
    }
    for (int i = 0; i < nl; i++) {
        c.c_min[i] = c.c_max[i] = -1;
        c.last_reader[i] = i;
    }
    for (int i = 0; i < nl; i++)
        for (int k = 0; k < net->layers[i].n_in; k++) {
            int x = net->layers[i].in[k];
            c.n_cons[x]++;
            if (c.c_min[x] < 0 || i < c.c_min[x])
                c.c_min[x] = i;
            if (i > c.c_max[x])
                c.c_max[x] = i;
        }
    for (int i = 0; i < nl; i++) {
        const lrp_layer *l = &net->layers[i];
        int bn = (l->kind == LRP_LAYER_DENSE || l->kind == LRP_LAYER_CONV2D)
                     ? lrp_gauge_canon_bn(net, i)
                     : -1;
        if (bn >= 0 && i < c.last_reader[bn])
            c.last_reader[bn] = i;
    }
    if (forward_bounds(&c))
        goto fail;
    if (c.fwd_local)
        /* every forward bound is rebuilt as f |act| where the backward
         * pass reads it (ensure_fwd) */
        for (int i = 0; i < nl; i++)
            drop_fwd(&c, i);
    if (backward_bounds(&c))
        goto fail;
    goto done;
fail:
    if (c.emit_st != LRP_OK) {
        st = c.emit_st; /* the caller's emit stopped the run (its err) */
        lrp_gauge_free(g);
        goto done;
    }
oom:
    st = lrp_err_set(err, LRP_E_NOMEM, "<network>: out of memory computing the gauge");
    lrp_gauge_free(g);
done:
    free_rows(c.A, c.A ? nl : 0);
    free_rows(c.As, c.As ? nl : 0);
    free_rows(c.Bd, c.Bd ? nl : 0);
    free_rows(c.cd, c.cd ? nl : 0);
    free_rows(c.Ls, c.Ls ? nl : 0);
    free_rows(c.Qs, c.Qs ? nl : 0);
    free_rows(c.Ss, c.Ss ? nl : 0);
    free_rows(c.cs, c.cs ? nl : 0);
    free_rows(c.Fs, c.Fs ? nl : 0);
    if (st == LRP_OK && o->emit && g->cflags) {
        /* streaming: every row was handed over and freed */
        for (int i = 0; i < nl; i++) {
            free(g->cflags[i]);
            g->cflags[i] = NULL;
        }
    }
    free(c.n_cons);
    free(c.c_min);
    free(c.c_max);
    free(c.last_reader);
    free(c.parked);
    free(c.tq);
    free(c.tl);
    return st;
}
