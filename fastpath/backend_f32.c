/*
 * backend_f32.c -- the float32 backend of the shared LRP pipeline
 * (core/pipeline.h): the same rule logic as the reference, with binary32
 * arithmetic on the fast kernels of fp_kernels.h.
 *
 * This is a real float32 LRP engine, written the way the PyTorch libraries
 * compute (Zennit's "modified weights + gradient" form), so that its errors
 * are the errors the oracle is meant to measure:
 *   - terms of a rule that share an input modifier are fused into ONE
 *     modified weight tensor in binary32 (gamma: w + gamma*w+ rounded once
 *     per weight), then one convolution per input modifier;
 *   - the denominator's bias terms are combined in binary32 and added after
 *     the dot product (the kernel's "acc + bias");
 *   - stab(z) = z + s(z)*eps in binary32 under the named convention, and
 *     R/stab(z) is an IEEE division: under sign0_zero (or eps = 0) a zero
 *     denominator gives the NaN (0/0) or inf (x/0) that float32 gives --
 *     reproducing what other libraries do wrong is part of the job;
 *   - R_i = a_i * (sum_j w_ij s_j): backward-data kernel, then a product.
 * Summation orders are the kernels' (fp_kernels.h), so results are
 * bit-identical across runs, thread counts and ISA paths.
 */
#include "backend_f32.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_kernels.h"

/* ---- context: threads and a cache of fused weights ---- */

#define WCACHE 8

typedef struct wentry {
    const void *key;   /* the layer's weight tensor */
    int64_t n;         /* weights */
    uint64_t hash;     /* of the raw bits, so a reused address never hits */
    uint32_t sig;      /* which terms were fused (modifiers and coefs) */
    float csig[LRP_PIPE_MAX_TERMS];
    int absval;
    float *w;          /* fused weights */
    unsigned long stamp;
} wentry;

struct lrp_f32_ctx {
    int nthreads;
    wentry cache[WCACHE];
    unsigned long clock;
};

static uint64_t hash_floats(const float *w, int64_t n)
{
    /* FNV-1a over 64-bit words of the raw bits; collisions would need the
     * same address, size and contents anyway. */
    uint64_t h = 0xcbf29ce484222325u;
    const uint32_t *u = (const uint32_t *)(const void *)w;
    for (int64_t i = 0; i < n; i++) {
        h ^= u[i];
        h *= 0x100000001b3u;
    }
    return h;
}

static float imod_value(int mod, float x)
{
    switch (mod) {
    case LRP_IM_POS: return x > 0.0f ? x : 0.0f;
    case LRP_IM_NEG: return x < 0.0f ? x : 0.0f;
    default: return x;
    }
}

static float wmod_value(int mod, float w)
{
    switch (mod) {
    case LRP_WM_POS: return w > 0.0f ? w : 0.0f;
    case LRP_WM_NEG: return w < 0.0f ? w : 0.0f;
    case LRP_WM_SQUARE: return w * w;
    case LRP_WM_ONES: return 1.0f;
    default: return w;
    }
}

/* The fused weight of a group of terms (all with the same input modifier):
 * W' = sum_t c_t wmod_t(w), accumulated in binary32 in term order; with
 * absval, sum_t |c_t| |wmod_t(w)| (the gauge of the float path). */
static const float *fused_weights(lrp_f32_ctx *cx, const lrp_lin *L, const lrp_term *t,
                                  const int *idx, int m, int absval)
{
    int64_t n = (L->conv ? L->O : L->n_out) * L->fanin;
    const float *w = L->w;
    uint32_t sig = (uint32_t)m;
    float csig[LRP_PIPE_MAX_TERMS] = {0};
    for (int k = 0; k < m; k++) {
        sig = sig * 31u + (uint32_t)(t[idx[k]].w * 7 + t[idx[k]].in);
        csig[k] = t[idx[k]].c;
    }
    /* a single identity term with coefficient 1 needs no copy */
    if (m == 1 && t[idx[0]].w == LRP_WM_ID && t[idx[0]].c == 1.0f && !absval)
        return w;
    uint64_t h = hash_floats(w, n);
    wentry *victim = &cx->cache[0];
    for (int i = 0; i < WCACHE; i++) {
        wentry *e = &cx->cache[i];
        if (e->w && e->key == L->w && e->n == n && e->hash == h && e->sig == sig &&
            e->absval == absval && !memcmp(e->csig, csig, sizeof csig)) {
            e->stamp = ++cx->clock;
            return e->w;
        }
        if (!e->w || e->stamp < victim->stamp)
            victim = e;
    }
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    if (!f)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int k = 0; k < m; k++) {
            const lrp_term *tt = &t[idx[k]];
            float v = wmod_value(tt->w, w[i]);
            if (absval)
                v = fabsf(v) * fabsf(tt->c);
            else if (tt->c != 1.0f)
                v = tt->c * v;
            acc = k == 0 ? v : acc + v;
        }
        f[i] = acc;
    }
    free(victim->w);
    victim->key = L->w;
    victim->n = n;
    victim->hash = h;
    victim->sig = sig;
    memcpy(victim->csig, csig, sizeof csig);
    victim->absval = absval;
    victim->w = f;
    victim->stamp = ++cx->clock;
    return f;
}

/* Modified input of a group for the whole batch (NULL if none needed). */
static float *mod_input(const lrp_lin *L, const float *x, int mod, int absval, int64_t batch)
{
    int64_t n = L->n_in;
    float *y = malloc((size_t)(batch * n > 0 ? batch * n : 1) * sizeof *y);
    if (!y)
        return NULL;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < n; i++) {
            float v;
            switch (mod) {
            case LRP_IM_ONES: v = 1.0f; break;
            case LRP_IM_LOW: v = L->low ? L->low[i] : L->low_s; break;
            case LRP_IM_HIGH: v = L->high ? L->high[i] : L->high_s; break;
            default: v = imod_value(mod, x[b * n + i]); break;
            }
            y[b * n + i] = absval ? fabsf(v) : v;
        }
    return y;
}

static lrp_fp_conv_geom conv_geom(const lrp_lin *L, int64_t batch)
{
    lrp_fp_conv_geom g;
    g.n = (int)batch;
    g.c = (int)L->C;
    g.h = (int)L->H;
    g.w = (int)L->W;
    g.co = (int)L->O;
    g.kh = L->kh;
    g.kw = L->kw;
    g.sh = L->sh;
    g.sw = L->sw;
    g.dh = L->dh;
    g.dw = L->dw;
    g.pt = L->pt;
    g.pl = L->pl;
    /* the far-side padding that yields exactly Ho x Wo outputs */
    g.pb = (int)((L->Ho - 1) * L->sh + (int64_t)L->dh * (L->kh - 1) + 1 - L->H - L->pt);
    g.pr = (int)((L->Wo - 1) * L->sw + (int64_t)L->dw * (L->kw - 1) + 1 - L->W - L->pl);
    if (g.pb < 0)
        g.pb = 0;
    if (g.pr < 0)
        g.pr = 0;
    g.groups = L->groups;
    return g;
}

static int linear_fwd(lrp_f32_ctx *cx, float *out, const lrp_lin *L, const float *x,
                      const float *w, const float *bias, int64_t batch)
{
    if (L->conv) {
        lrp_fp_conv_geom g = conv_geom(L, batch);
        return lrp_fp_conv2d_fwd(out, x, w, bias, &g, cx->nthreads);
    }
    return lrp_fp_dense_fwd(out, x, w, bias, (int)batch, (int)L->n_in, (int)L->n_out,
                            cx->nthreads);
}

static int linear_bwd(lrp_f32_ctx *cx, float *gin, const lrp_lin *L, const float *s,
                      const float *w, int64_t batch)
{
    if (L->conv) {
        lrp_fp_conv_geom g = conv_geom(L, batch);
        return lrp_fp_conv2d_bwd_data(gin, s, w, &g, cx->nthreads);
    }
    return lrp_fp_dense_bwd_data(gin, s, w, (int)batch, (int)L->n_in, (int)L->n_out,
                                 cx->nthreads);
}

/* Groups term indices by input modifier (first-appearance order). */
static int group_terms(int groups[][LRP_PIPE_MAX_TERMS], int *gsize, const lrp_term *t, int nt,
                       int absval)
{
    int ng = 0;
    int gmod[LRP_PIPE_MAX_TERMS];
    for (int k = 0; k < nt; k++) {
        int g = -1;
        if (!absval) /* the gauge keeps terms apart: |sum| <= sum |.| */
            for (int q = 0; q < ng; q++)
                if (gmod[q] == t[k].in)
                    g = q;
        if (g < 0) {
            g = ng++;
            gmod[g] = t[k].in;
            gsize[g] = 0;
        }
        groups[g][gsize[g]++] = k;
    }
    return ng;
}

/* ---- vtable ---- */

static void *t_new(void *ctx, int64_t n)
{
    (void)ctx;
    return calloc((size_t)(n > 0 ? n : 1), sizeof(float));
}

static void t_free(void *ctx, void *t, int64_t n)
{
    (void)ctx;
    (void)n;
    free(t);
}

static void *t_at(void *ctx, const void *t, int64_t i)
{
    (void)ctx;
    return (float *)(uintptr_t)t + i;
}

static void t_set_f32(void *ctx, void *dst, const float *src, int64_t n)
{
    (void)ctx;
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void t_classify(void *ctx, uint8_t *out, const void *t, int64_t n)
{
    (void)ctx;
    const float *x = t;
    for (int64_t i = 0; i < n; i++) {
        uint8_t c = 0;
        float v = x[i];
        if (isnan(v))
            c |= LRP_V_NAN;
        else {
            if (isinf(v))
                c |= LRP_V_INF;
            if (v < 0.0f)
                c |= LRP_V_NEG;
            if (v == 0.0f)
                c |= LRP_V_ZERO;
        }
        if (signbit(v))
            c |= LRP_V_SIGNBIT;
        out[i] = c;
    }
}

static void t_ew(void *ctx, lrp_ew_op op, void *out, const void *a, const void *b, float c1,
                 float c2, int64_t n)
{
    (void)ctx;
    float *y = out;
    const float *p = a, *q = b;
    switch (op) {
    case LRP_EW_ZERO: memset(y, 0, (size_t)n * sizeof *y); break;
    case LRP_EW_COPY: memmove(y, p, (size_t)n * sizeof *y); break;
    case LRP_EW_ADD:
        for (int64_t i = 0; i < n; i++)
            y[i] = p[i] + q[i];
        break;
    case LRP_EW_MUL:
        for (int64_t i = 0; i < n; i++)
            y[i] = p[i] * q[i];
        break;
    case LRP_EW_POS:
        for (int64_t i = 0; i < n; i++)
            y[i] = p[i] > 0.0f ? p[i] : (isnan(p[i]) ? p[i] : 0.0f);
        break;
    case LRP_EW_NEG:
        for (int64_t i = 0; i < n; i++)
            y[i] = p[i] < 0.0f ? p[i] : (isnan(p[i]) ? p[i] : 0.0f);
        break;
    case LRP_EW_ABS:
        for (int64_t i = 0; i < n; i++)
            y[i] = fabsf(p[i]);
        break;
    case LRP_EW_SCALE:
        for (int64_t i = 0; i < n; i++)
            y[i] = c1 * p[i];
        break;
    case LRP_EW_FMMA:
        /* one rounding: both products are exact in binary64 and their sum
         * is rounded to binary64 first; the double rounding to binary32 is
         * what any float implementation of c1 a + c2 b risks as well */
        for (int64_t i = 0; i < n; i++)
            y[i] = (float)((double)c1 * p[i] + (double)c2 * q[i]);
        break;
    default:
        /* an op this backend does not know: a programmer error, never a
         * silently untouched output */
        LRP_ASSERT(!"unknown elementwise op");
    }
}

static int64_t t_argmax(void *ctx, const void *t, int64_t n)
{
    (void)ctx;
    const float *x = t;
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best]))
            best = i;
    return best < 0 ? 0 : best;
}

static void t_row(void *ctx, lrp_row_op op, void *out, const void *a, const void *v,
                  int64_t rows, int64_t cols, int64_t vmod)
{
    (void)ctx;
    float *y = out;
    const float *p = a, *w = v;
    for (int64_t r = 0; r < rows; r++) {
        float c = w[r % vmod];
        float *yr = y + r * cols;
        const float *pr = p ? p + r * cols : NULL;
        switch (op) {
        case LRP_ROW_MUL:
            for (int64_t k = 0; k < cols; k++)
                yr[k] = pr[k] * c;
            break;
        case LRP_ROW_ADD:
            for (int64_t k = 0; k < cols; k++)
                yr[k] = pr[k] + c;
            break;
        case LRP_ROW_SET:
            for (int64_t k = 0; k < cols; k++)
                yr[k] = c;
            break;
        }
    }
}

static void t_sum_n(void *ctx, void *out, const void *const *ins, int k, int64_t n)
{
    (void)ctx;
    float *y = out;
    for (int64_t i = 0; i < n; i++) {
        float s = ((const float *)ins[0])[i];
        for (int q = 1; q < k; q++)
            s += ((const float *)ins[q])[i];
        y[i] = s;
    }
}

static void t_lin_fwd(void *ctx, void *out, const lrp_lin *L, const void *x, const lrp_term *t,
                      int nt, const lrp_bterm *bt, int nb, int absval, int64_t batch)
{
    lrp_f32_ctx *cx = ctx;
    float *y = out;
    int64_t nout = L->n_out, units = L->conv ? L->O : L->n_out;
    /* combined bias sum_u c_u bmod_u(b_j), binary32, in term order */
    float *bias = NULL;
    if (L->b && nb > 0) {
        const float *b = L->b;
        bias = malloc((size_t)units * sizeof *bias);
        if (!bias)
            goto oom;
        for (int64_t j = 0; j < units; j++) {
            float acc = 0.0f;
            for (int u = 0; u < nb; u++) {
                float v = b[j];
                switch (bt[u].mod) {
                case LRP_BM_POS: v = v > 0.0f ? v : 0.0f; break;
                case LRP_BM_NEG: v = v < 0.0f ? v : 0.0f; break;
                case LRP_BM_SQUARE: v = v * v; break;
                default: break;
                }
                v = absval ? fabsf(v) * fabsf(bt[u].c) : (bt[u].c == 1.0f ? v : bt[u].c * v);
                acc = u == 0 ? v : acc + v;
            }
            bias[j] = acc;
        }
    }
    if (nt == 0) {
        int64_t hw = nout / units;
        for (int64_t b = 0; b < batch; b++)
            for (int64_t j = 0; j < nout; j++)
                y[b * nout + j] = bias ? bias[j / hw] : 0.0f;
        free(bias);
        return;
    }
    int groups[LRP_PIPE_MAX_TERMS][LRP_PIPE_MAX_TERMS], gsize[LRP_PIPE_MAX_TERMS];
    int ng = group_terms(groups, gsize, t, nt, absval);
    float *tmp = ng > 1 ? malloc((size_t)(batch * nout) * sizeof *tmp) : NULL;
    if (ng > 1 && !tmp)
        goto oom;
    for (int g = 0; g < ng; g++) {
        int mod = t[groups[g][0]].in;
        const float *W = fused_weights(cx, L, t, groups[g], gsize[g], absval);
        float *xin = NULL;
        const float *xi = x;
        if (mod != LRP_IM_ID || absval) {
            xin = mod_input(L, x, mod, absval, batch);
            xi = xin;
        }
        if (!W || !xi) {
            free(xin);
            free(tmp);
            goto oom;
        }
        /* the bias enters with the last group, like a single fused layer */
        const float *bb = g == ng - 1 ? bias : NULL;
        int rc = linear_fwd(cx, g == 0 ? y : tmp, L, xi, W, bb, batch);
        free(xin);
        if (rc) {
            free(tmp);
            goto oom;
        }
        if (g > 0)
            for (int64_t i = 0; i < batch * nout; i++)
                y[i] += tmp[i];
    }
    free(tmp);
    free(bias);
    return;
oom:
    free(bias);
    /* out of memory inside a numeric op: poison the output so the failure
     * is visible as NaN rather than silently wrong numbers */
    for (int64_t i = 0; i < batch * nout; i++)
        y[i] = NAN;
}

static void t_lin_bwd(void *ctx, void *out, const lrp_lin *L, const void *x,
                      const lrp_bwd_part *parts, int np, int64_t batch)
{
    lrp_f32_ctx *cx = ctx;
    float *r = out;
    int64_t nin = L->n_in;
    memset(r, 0, (size_t)(batch * nin) * sizeof *r);
    float *gin = malloc((size_t)(batch * nin > 0 ? batch * nin : 1) * sizeof *gin);
    if (!gin)
        goto oom;
    for (int k = 0; k < np; k++) {
        const lrp_bwd_part *p = &parts[k];
        int groups[LRP_PIPE_MAX_TERMS][LRP_PIPE_MAX_TERMS], gsize[LRP_PIPE_MAX_TERMS];
        int ng = group_terms(groups, gsize, p->t, p->nt, 0);
        for (int g = 0; g < ng; g++) {
            int mod = p->t[groups[g][0]].in;
            const float *W = fused_weights(cx, L, p->t, groups[g], gsize[g], 0);
            if (!W || linear_bwd(cx, gin, L, p->s, W, batch))
                goto oom;
            const float *xs = x;
            for (int64_t b = 0; b < batch; b++)
                for (int64_t i = 0; i < nin; i++) {
                    float a;
                    switch (mod) {
                    case LRP_IM_ONES: a = 1.0f; break;
                    case LRP_IM_LOW: a = L->low ? L->low[i] : L->low_s; break;
                    case LRP_IM_HIGH: a = L->high ? L->high[i] : L->high_s; break;
                    default: a = imod_value(mod, xs[b * nin + i]); break;
                    }
                    float v = a * gin[b * nin + i];
                    if (p->coef != 1.0f)
                        v = p->coef * v;
                    r[b * nin + i] += v;
                }
        }
    }
    free(gin);
    return;
oom:
    free(gin);
    for (int64_t i = 0; i < batch * nin; i++)
        r[i] = NAN;
}

/* s(z) of the convention: +1, -1 or 0 (LRP-SPEC section 5). */
static float stab_sign(lrp_stab_id c, float d)
{
    switch (c) {
    case LRP_STAB_SIGN0_POS: return d < 0.0f ? -1.0f : 1.0f;
    case LRP_STAB_SIGNBIT: return signbit(d) ? -1.0f : 1.0f;
    case LRP_STAB_SIGN0_ZERO: return d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f);
    case LRP_STAB_ZERO_ONLY: return d == 0.0f ? 1.0f : 0.0f;
    case LRP_STAB_SKIP_ZERO: return d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f);
    case LRP_STAB_POSITIVE: return 1.0f;
    default: return 0.0f;
    }
}

static void t_stab_div(void *ctx, void *s_, uint8_t *cls, const void *R_, const void *den_,
                       const uint8_t *mask, lrp_stab_id stab, float eps, int empty_lost,
                       int64_t n)
{
    (void)ctx;
    float *s = s_;
    const float *R = R_, *den = den_;
    for (int64_t j = 0; j < n; j++) {
        if (mask && !mask[j]) {
            s[j] = 0.0f;
            cls[j] = LRP_K_UNSEL;
            continue;
        }
        float d = den[j], r = R[j];
        uint8_t c = 0;
        if (d == 0.0f) {
            c |= LRP_CLS_ZERO;
            if (signbit(d))
                c |= LRP_CLS_ZNEG;
        }
        if (stab == LRP_STAB_SKIP_ZERO && d == 0.0f) {
            s[j] = r;
            cls[j] = c | LRP_K_SKIP;
            continue;
        }
        float sg = stab_sign(stab, d);
        float st = d;
        if (eps != 0.0f && sg != 0.0f) {
            st = d + sg * eps;
            c |= sg > 0.0f ? LRP_CLS_ADD_POS : LRP_CLS_ADD_NEG;
        }
        /* IEEE, deliberately: 0/0 = NaN and x/0 = inf are what float32
         * code produces; the class says why. */
        s[j] = r / st;
        if (isnan(d) || isnan(r))
            c |= LRP_K_NAN;
        else if (empty_lost && d == 0.0f)
            c |= LRP_K_EMPTY;
        else if (st == 0.0f)
            c |= LRP_K_UNDEF;
        cls[j] = c;
    }
}

static void t_absorb(void *ctx, void *const *absd, const void *R_, const void *s_,
                     const void *bden_, const uint8_t *cls, float coef, float eps, int64_t n)
{
    (void)ctx;
    const float *R = R_, *s = s_, *bden = bden_;
    for (int64_t j = 0; j < n; j++) {
        unsigned kind = cls[j] & LRP_CLS_KIND;
        float *a;
        switch (kind) {
        case LRP_K_NORMAL:
            if (absd[LRP_ABS_BIAS] && bden)
                ((float *)absd[LRP_ABS_BIAS])[j] += coef * (s[j] * bden[j]);
            if (absd[LRP_ABS_STAB] && (cls[j] & (LRP_CLS_ADD_POS | LRP_CLS_ADD_NEG)))
                ((float *)absd[LRP_ABS_STAB])[j] +=
                    coef * (s[j] * ((cls[j] & LRP_CLS_ADD_POS) ? eps : -eps));
            break;
        case LRP_K_SKIP:
            if (absd[LRP_ABS_STAB])
                ((float *)absd[LRP_ABS_STAB])[j] += coef * R[j];
            if (absd[LRP_ABS_BIAS] && bden)
                ((float *)absd[LRP_ABS_BIAS])[j] += coef * (R[j] * bden[j]);
            break;
        case LRP_K_UNDEF:
        case LRP_K_NAN:
            if ((a = absd[LRP_ABS_UNDEF]))
                a[j] += coef * R[j];
            break;
        case LRP_K_EMPTY:
            if ((a = absd[LRP_ABS_EMPTY]))
                a[j] += coef * R[j];
            break;
        case LRP_K_DROPPED:
            if ((a = absd[LRP_ABS_DROPPED]))
                a[j] += coef * R[j];
            break;
        default: break;
        }
    }
}

static lrp_fp_pool_geom pool_geom(const lrp_pool *P, int64_t batch)
{
    lrp_fp_pool_geom g;
    g.n = (int)batch;
    g.c = (int)P->C;
    g.h = (int)P->H;
    g.w = (int)P->W;
    g.kh = P->kh;
    g.kw = P->kw;
    g.sh = P->sh;
    g.sw = P->sw;
    g.pt = P->pt;
    g.pl = P->pl;
    g.pb = (int)((P->Ho - 1) * P->sh + P->kh - P->H - P->pt);
    g.pr = (int)((P->Wo - 1) * P->sw + P->kw - P->W - P->pl);
    if (g.pb < 0)
        g.pb = 0;
    if (g.pr < 0)
        g.pr = 0;
    g.count_include_pad = P->count_include_pad;
    return g;
}

static void t_max_fwd(void *ctx, void *out, const void *x, const lrp_pool *P, int64_t batch)
{
    (void)ctx;
    lrp_fp_pool_geom g = pool_geom(P, batch);
    if (lrp_fp_maxpool_fwd(out, NULL, x, &g))
        for (int64_t i = 0; i < batch * P->C * P->Ho * P->Wo; i++)
            ((float *)out)[i] = NAN;
}

static void t_max_bwd(void *ctx, void *out, const void *x_, const void *R_, const lrp_pool *P,
                      int64_t batch)
{
    (void)ctx;
    float *r = out;
    const float *x = x_, *R = R_;
    int64_t planes = batch * P->C, hw = P->H * P->W, ohw = P->Ho * P->Wo;
    memset(r, 0, (size_t)(planes * hw) * sizeof *r);
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * hw;
        float *rp = r + pl * hw;
        for (int64_t oy = 0; oy < P->Ho; oy++)
            for (int64_t ox = 0; ox < P->Wo; ox++) {
                float best = -INFINITY;
                int64_t arg = -1, ties = 0;
                for (int ky = 0; ky < P->kh; ky++)
                    for (int kx = 0; kx < P->kw; kx++) {
                        int64_t iy = oy * P->sh - P->pt + ky, ix = ox * P->sw - P->pl + kx;
                        if (iy < 0 || iy >= P->H || ix < 0 || ix >= P->W)
                            continue;
                        float v = xp[iy * P->W + ix];
                        if (arg < 0 || v > best || (isnan(v) && !isnan(best))) {
                            best = v;
                            arg = iy * P->W + ix;
                            ties = 1;
                        } else if (v == best) {
                            ties++;
                        }
                    }
                if (arg < 0)
                    continue;
                float rj = R[pl * ohw + oy * P->Wo + ox];
                if (!P->split_ties || ties == 1) {
                    rp[arg] += rj;
                    continue;
                }
                float share = rj / (float)ties;
                for (int ky = 0; ky < P->kh; ky++)
                    for (int kx = 0; kx < P->kw; kx++) {
                        int64_t iy = oy * P->sh - P->pt + ky, ix = ox * P->sw - P->pl + kx;
                        if (iy < 0 || iy >= P->H || ix < 0 || ix >= P->W)
                            continue;
                        if (xp[iy * P->W + ix] == best)
                            rp[iy * P->W + ix] += share;
                    }
            }
    }
}

static void t_avg_fwd(void *ctx, void *out, const void *x, const lrp_pool *P, int64_t batch)
{
    (void)ctx;
    lrp_fp_pool_geom g = pool_geom(P, batch);
    if (lrp_fp_avgpool_fwd(out, x, &g))
        for (int64_t i = 0; i < batch * P->C * P->Ho * P->Wo; i++)
            ((float *)out)[i] = NAN;
}

static void t_avg_bwd(void *ctx, void *out, const void *x_, const void *s, const lrp_pool *P,
                      int64_t batch)
{
    (void)ctx;
    float *r = out;
    const float *x = x_;
    lrp_fp_pool_geom g = pool_geom(P, batch);
    int64_t n = batch * P->C * P->H * P->W;
    if (lrp_fp_avgpool_bwd(r, s, &g)) {
        for (int64_t i = 0; i < n; i++)
            r[i] = NAN;
        return;
    }
    for (int64_t i = 0; i < n; i++)
        r[i] = x[i] * r[i];
}

static void t_bn_coef(void *ctx, void *wc_, void *negwmu_, void *beta_, void *shift_,
                      const lrp_layer *l, int64_t C)
{
    (void)ctx;
    float *wc = wc_, *nm = negwmu_, *be = beta_, *sh = shift_;
    for (int64_t c = 0; c < C; c++) {
        float w = l->bn_gamma[c] / sqrtf(l->bn_var[c] + l->bn_eps);
        float m = w * l->bn_mean[c];
        if (wc)
            wc[c] = w;
        if (nm)
            nm[c] = -m;
        if (be)
            be[c] = l->bn_beta[c];
        if (sh)
            sh[c] = l->bn_beta[c] - m;
    }
}

static void t_bn_fwd(void *ctx, void *y_, const void *x_, const void *wc_, const void *shift_,
                     int64_t batch, int64_t C, int64_t hw)
{
    (void)ctx;
    float *y = y_;
    const float *x = x_, *wc = wc_, *sh = shift_;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < hw; k++) {
                int64_t i = (b * C + c) * hw + k;
                y[i] = wc[c] * x[i] + sh[c];
            }
}

/* Neumaier-compensated binary64 sum: the float path's own conservation
 * residual is reported, not judged (the oracle recomputes it exactly). */
typedef struct {
    double s, c, scale;
} ksum;

static void kadd(ksum *k, double v)
{
    double t = k->s + v;
    if (fabs(k->s) >= fabs(v))
        k->c += (k->s - t) + v;
    else
        k->c += (v - t) + k->s;
    k->s = t;
    k->scale += fabs(v);
}

static void t_residual(void *ctx, double *r, double *scale, const void *const *in,
                       const int64_t *n_in, int k_in, const void *const *absd, int k_abs,
                       int64_t n_abs, const void *out, int64_t n_out)
{
    (void)ctx;
    ksum k = {0, 0, 0};
    for (int q = 0; q < k_in; q++)
        for (int64_t i = 0; i < n_in[q]; i++)
            kadd(&k, ((const float *)in[q])[i]);
    for (int q = 0; q < k_abs; q++)
        if (absd[q])
            for (int64_t i = 0; i < n_abs; i++)
                kadd(&k, ((const float *)absd[q])[i]);
    for (int64_t i = 0; i < n_out; i++)
        kadd(&k, -(double)((const float *)out)[i]);
    *r = k.s + k.c;
    *scale = k.scale;
}

lrp_f32_ctx *lrp_f32_ctx_new(int nthreads)
{
    lrp_f32_ctx *c = calloc(1, sizeof *c);
    if (c)
        c->nthreads = nthreads > 0 ? nthreads : lrp_fp_default_threads();
    return c;
}

void lrp_f32_ctx_free(lrp_f32_ctx *c)
{
    if (!c)
        return;
    for (int i = 0; i < WCACHE; i++)
        free(c->cache[i].w);
    free(c);
}

void lrp_f32_backend(lrp_backend *be, lrp_f32_ctx *ctx)
{
    memset(be, 0, sizeof *be);
    be->name = "fastpath";
    be->ctx = ctx;
    be->tensor_new = t_new;
    be->tensor_free = t_free;
    be->at = t_at;
    be->set_f32 = t_set_f32;
    be->classify = t_classify;
    be->argmax = t_argmax;
    be->ew = t_ew;
    be->row = t_row;
    be->sum_n = t_sum_n;
    be->lin_fwd = t_lin_fwd;
    be->lin_bwd = t_lin_bwd;
    be->stab_div = t_stab_div;
    be->absorb = t_absorb;
    be->max_fwd = t_max_fwd;
    be->max_bwd = t_max_bwd;
    be->avg_fwd = t_avg_fwd;
    be->avg_bwd = t_avg_bwd;
    be->bn_coef = t_bn_coef;
    be->bn_fwd = t_bn_fwd;
    be->residual = t_residual;
}
