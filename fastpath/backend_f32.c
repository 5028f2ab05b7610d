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
 *
 * Performance notes (bench/bench_lrp.c measures the whole pipeline):
 *   - fused weights are cached by CONTENT (hash of the raw bits, size and
 *     term signature), so the pipeline's per-run weight copies still hit;
 *   - an input modifier that is the identity on the data at hand (pos() of
 *     values that are all +0 or positive, |x| of such values) is not
 *     materialised: the kernel reads the input itself (same values, same
 *     bits);
 *   - the gauge (absval) of a term list whose every product and bias term
 *     is already sign-clear (z+: pos(a) pos(w) + pos(b); flat: 1 * 1) equals
 *     the denominator bit for bit; when the pipeline asks for it right after
 *     that denominator (same map, same input, unchanged: checked by hashes)
 *     it is copied instead of recomputed;
 *   - the Dense gauge applies |.| to weights and inputs inside the kernel
 *     (same chain order) instead of materialising |W|;
 *   - big tensors are mmap'ed with transparent huge pages (fewer page
 *     faults), and elementwise passes over big tensors are split over the
 *     threads by disjoint output ranges (no order changes);
 *   - the optional pipeline hooks are implemented: tensor_raw (no zero fill
 *     of tensors the pipeline overwrites), wrap_f32 (the net's weights used
 *     in place), scan_nonfinite (NaN/inf census without a class array),
 *     run_begin/run_end (fused weights found by address within a run,
 *     without hashing);
 *   - stab_div, the NaN/inf census, the elementwise ops and the a*g product
 *     have AVX-512 forms (fp_vec.c) with the scalar loops' exact operations,
 *     used when the kernels' dispatch is AVX-512; max pool 2x2/2 has a
 *     straight-line form of the generic window loops.
 */
#define _DEFAULT_SOURCE 1 /* MAP_ANONYMOUS, madvise */
#include "backend_f32.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <immintrin.h>

#include "fp_kernels.h"
#include "fp_kernels_int.h"
#include "fp_vec.h"

/* The AVX-512 forms of the elementwise passes (fp_vec.c) follow the
 * kernels' dispatch, so forcing LRP_FP_ISA=portable runs the scalar loops. */
static int vec512(void)
{
    return lrp_fp_get_isa() == LRP_FP_ISA_AVX512;
}

/* fp_dense.c: the Dense forward of |x| and |W| (the gauge), same chain. */
int lrp_fp_dense_fwd_abs(float *y, const float *x, const float *W, const float *bias,
                         int batch, int in, int out, int nthreads);

/* ---- memory: big tensors on transparent huge pages ---- */

#if defined(__SANITIZE_ADDRESS__)
#define FB_MMAP 0 /* keep ASan's view of every tensor */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FB_MMAP 0
#endif
#endif
#ifndef FB_MMAP
#define FB_MMAP 1
#endif

#define FB_HDR 64
#define FB_MAP ((size_t)1 << 16)  /* from here: own mapping, pooled */
#define FB_HUGE ((size_t)1 << 21) /* from here: on transparent huge pages */
#define POOL_MAX 8192
#define POOL_BYTES ((size_t)3 << 30)

typedef struct {
    void *base;
    size_t len; /* mapping length, 0 for calloc */
    size_t cap; /* usable bytes after the header */
} fb_hdr;

/* Freed mappings kept for reuse (page faults are expensive: a fresh
 * mapping costs one fault per page, every time). */
typedef struct fb_pool {
    void *blk[POOL_MAX];
    size_t cap[POOL_MAX]; /* the blocks' capacities (no header reads) */
    size_t bytes;
    int n;
} fb_pool;

static fb_hdr *fb_header(void *p)
{
    return (fb_hdr *)(void *)((char *)p - sizeof(fb_hdr));
}

static void fb_unmap(void *p)
{
    fb_hdr *h = fb_header(p);
    munmap(h->base, h->len);
}

static void *fb_map(size_t bytes)
{
    size_t huge = bytes >= FB_HUGE;
    /* huge: over-allocate so the data starts just after a 2 MB boundary */
    size_t len = (bytes + FB_HDR + (huge ? FB_HUGE : 0) + 4095) & ~(size_t)4095;
    char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    char *data = base + FB_HDR;
    if (huge) {
        char *al = (char *)(((uintptr_t)base + FB_HUGE - 1) & ~(uintptr_t)(FB_HUGE - 1));
#ifdef MADV_HUGEPAGE
        madvise(al, len - (size_t)(al - base), MADV_HUGEPAGE);
#endif
        data = al + FB_HDR;
    }
    fb_hdr *h = fb_header(data);
    h->base = base;
    h->len = len;
    h->cap = (size_t)(base + len - data);
    return data;
}

typedef struct {
    char *p;
    size_t n;
} zero_job;

static void zero_range(void *arg, int64_t lo, int64_t hi)
{
    const zero_job *z = arg; /* lo, hi: floats */
    size_t a = (size_t)lo * sizeof(float), b = (size_t)hi * sizeof(float);
    if (b > z->n)
        b = z->n;
    if (a < b)
        memset(z->p + a, 0, b - a);
}

static void par_range(int nthreads, int64_t n, void (*fn)(void *, int64_t, int64_t),
                      void *arg);

/* Zero-filled (zero = 1) or of unspecified content; NULL on failure.
 * pool may be NULL (no reuse). */
static void *fb_alloc(fb_pool *pool, int nthreads, size_t bytes, int zero)
{
    if (bytes == 0)
        bytes = sizeof(float);
    if (bytes > SIZE_MAX / 2)
        return NULL;
    if (FB_MMAP && bytes >= FB_MAP) {
        /* best fit among the pooled mappings, at most twice the size */
        int best = -1;
        size_t bc = 0;
        for (int i = 0; pool && i < pool->n; i++) {
            size_t c = pool->cap[i];
            if (c >= bytes && c / 2 <= bytes && (best < 0 || c < bc)) {
                best = i;
                bc = c;
                if (c == bytes)
                    break;
            }
        }
        if (best >= 0) {
            char *d = pool->blk[best];
            pool->bytes -= fb_header(d)->len;
            pool->n--;
            pool->blk[best] = pool->blk[pool->n];
            pool->cap[best] = pool->cap[pool->n];
            if (zero) {
                zero_job z = {d, bytes};
                par_range(nthreads, (int64_t)((bytes + sizeof(float) - 1) / sizeof(float)),
                          zero_range, &z);
            }
            return d;
        }
        return fb_map(bytes);
    }
    char *base = zero ? calloc(1, bytes + FB_HDR) : malloc(bytes + FB_HDR);
    if (!base)
        return NULL;
    char *data = base + FB_HDR;
    fb_hdr *h = fb_header(data);
    h->base = base;
    h->len = 0;
    h->cap = bytes;
    return data;
}

static void fb_free(fb_pool *pool, void *p)
{
    if (!p)
        return;
    fb_hdr *h = fb_header(p);
    if (!h->len) {
        free(h->base);
        return;
    }
    if (pool && pool->n < POOL_MAX && pool->bytes + h->len <= POOL_BYTES) {
        pool->cap[pool->n] = h->cap;
        pool->blk[pool->n++] = p;
        pool->bytes += h->len;
        return;
    }
    fb_unmap(p);
}

static void fb_pool_clear(fb_pool *pool)
{
    for (int i = 0; i < pool->n; i++)
        fb_unmap(pool->blk[i]);
    pool->n = 0;
    pool->bytes = 0;
}

/* ---- threads for elementwise passes ---- */

#define PAR_MIN (1 << 16) /* below this many values: one thread */
#define PAR_CHUNK (1 << 14)

typedef void (*range_fn)(void *arg, int64_t lo, int64_t hi);
typedef struct {
    range_fn fn;
    void *arg;
    int64_t n, chunk;
} range_job;

static void range_item(void *vctx, int64_t item)
{
    range_job *j = vctx;
    int64_t lo = item * j->chunk, hi = lo + j->chunk < j->n ? lo + j->chunk : j->n;
    j->fn(j->arg, lo, hi);
}

/* fn over [0, n) in disjoint chunks (each value is written by one chunk). */
static void par_range(int nthreads, int64_t n, range_fn fn, void *arg)
{
    if (n <= 0)
        return;
    if (nthreads <= 1 || n < PAR_MIN) {
        fn(arg, 0, n);
        return;
    }
    range_job j = {fn, arg, n, PAR_CHUNK};
    fp_parallel_for(nthreads, (n + PAR_CHUNK - 1) / PAR_CHUNK, range_item, &j);
}

/* ---- context: threads, a content-addressed cache of fused weights, the
 * memo of the last denominator ---- */

#define WCACHE 128
#define WCACHE_BYTES ((size_t)768 << 20)

typedef struct wentry {
    int64_t n;         /* weights */
    uint64_t hash;     /* of the raw bits */
    uint32_t sig;      /* which terms were fused (modifiers and coefs) */
    float csig[LRP_PIPE_MAX_TERMS];
    int absval;
    float *w;          /* fused weights */
    unsigned long stamp;
    /* per-run address memo: within run `run` (see t_run_begin), the entry
     * was made from the weights at wp (and scale at sp) */
    const void *wp, *sp;
    unsigned long run;
} wentry;

/* The last sign-clear denominator lin_fwd computed (for the gauge). */
typedef struct den_memo {
    int valid;
    lrp_lin L;
    const void *out, *x;
    int64_t batch;
    int nt, nb;
    lrp_term t[LRP_PIPE_MAX_TERMS];
    lrp_bterm bt[LRP_PIPE_MAX_BTERMS];
    uint64_t h_out, h_x, h_w, h_b;
} den_memo;

struct lrp_f32_ctx {
    int nthreads;
    fb_pool pool;
    wentry cache[WCACHE];
    size_t cache_bytes;
    unsigned long clock;
    den_memo memo;
    unsigned long run; /* nonzero between run_begin and run_end */
    unsigned long runs;
};

static float *fb_floats(lrp_f32_ctx *cx, int64_t n)
{
    return fb_alloc(&cx->pool, cx->nthreads, (size_t)(n > 0 ? n : 1) * sizeof(float), 1);
}

/* Uninitialised: for tensors overwritten before any read. */
static float *fb_floats_raw(lrp_f32_ctx *cx, int64_t n)
{
    return fb_alloc(&cx->pool, cx->nthreads, (size_t)(n > 0 ? n : 1) * sizeof(float), 0);
}

static void fb_release(lrp_f32_ctx *cx, void *p)
{
    fb_free(&cx->pool, p);
}

/* A fast hash of raw bits: 16 independent FNV-style lanes over 64-bit
 * words (so it runs at memory speed), folded with the length.  Used only to
 * recognise identical contents; a collision would also need equal size and
 * signature.  The AVX-512 and the scalar loop compute the same function. */
#define HL 16
static const uint64_t H_PRIME = 0x100000001b3u;

static uint64_t hash_fold(const uint64_t h[HL], const uint32_t *tail, int64_t ntail, int64_t n)
{
    uint64_t r = (uint64_t)n * 0x9e3779b97f4a7c15u;
    for (int64_t i = 0; i < ntail; i++)
        r = (r ^ tail[i]) * H_PRIME;
    for (int l = 0; l < HL; l++) {
        r ^= h[l] + 0x9e3779b97f4a7c15u + (r << 6) + (r >> 2);
        r *= 0xff51afd7ed558ccdu;
    }
    return r ^ (r >> 33);
}

static void hash_init(uint64_t h[HL])
{
    for (int l = 0; l < HL; l++)
        h[l] = 0xcbf29ce484222325u + (uint64_t)l * 0x9e3779b97f4a7c15u;
}

__attribute__((target("avx512f,avx512dq"))) static uint64_t hash_avx512(const void *p,
                                                                        int64_t n)
{
    const uint64_t *w = p;
    int64_t nw = n / 2, i = 0;
    uint64_t h[HL];
    hash_init(h);
    __m512i a0 = _mm512_loadu_si512(h), a1 = _mm512_loadu_si512(h + 8);
    __m512i pr = _mm512_set1_epi64((long long)H_PRIME);
    for (; i + HL <= nw; i += HL) {
        a0 = _mm512_mullo_epi64(_mm512_xor_si512(a0, _mm512_loadu_si512(w + i)), pr);
        a1 = _mm512_mullo_epi64(_mm512_xor_si512(a1, _mm512_loadu_si512(w + i + 8)), pr);
    }
    _mm512_storeu_si512(h, a0);
    _mm512_storeu_si512(h + 8, a1);
    const uint32_t *u = p;
    return hash_fold(h, u + 2 * i, n - 2 * i, n);
}

static uint64_t hash_bits(const void *p, int64_t n)
{
    /* (asked each call: no shared state between threads) */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
        return hash_avx512(p, n);
    const uint64_t *w = p;
    int64_t nw = n / 2, i = 0;
    uint64_t h[HL];
    hash_init(h);
    for (; i + HL <= nw; i += HL)
        for (int l = 0; l < HL; l++)
            h[l] = (h[l] ^ w[i + l]) * H_PRIME;
    const uint32_t *u = p;
    return hash_fold(h, u + 2 * i, n - 2 * i, n);
}

uint64_t lrp_f32_hash(const void *p, int64_t n) { return hash_bits(p, n); }

/* 1 if every value is +0, positive or +inf (sign bit clear, not NaN): then
 * pos(x) == |x| == x bit for bit. */
static int sign_clear(const float *x, int64_t n)
{
    const uint32_t *u = (const uint32_t *)(const void *)x;
    int64_t i = 0;
    while (i < n) {
        int64_t e = i + 4096 < n ? i + 4096 : n;
        unsigned bad = 0;
        for (; i < e; i++)
            bad |= u[i] > 0x7f800000u;
        if (bad)
            return 0;
    }
    return 1;
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

static int64_t n_weights(const lrp_lin *L)
{
    return (L->conv ? L->O : L->n_out) * L->fanin;
}

typedef struct {
    float *f;
    const float *w, *ws;
    int64_t fanin;
    const lrp_term *t;
    const int *idx;
    int m, absval;
} fuse_job;

/* Hash of the effective weights' inputs: w and, when set, wscale. */
static uint64_t weights_hash(const lrp_lin *L)
{
    uint64_t h = hash_bits(L->w, n_weights(L));
    if (L->wscale)
        h ^= hash_bits(L->wscale, L->conv ? L->O : L->n_out) * 0x9e3779b97f4a7c15u + 1u;
    return h;
}

static void fuse_range(void *arg, int64_t lo, int64_t hi)
{
    const fuse_job *j = arg;
    for (int64_t i = lo; i < hi; i++) {
        float acc = 0.0f;
        /* BN canonization: the effective weight wscale[o] * w, rounded once
         * to binary32 (as the folded copy W' = wc W always was) */
        float we = j->ws ? j->w[i] * j->ws[i / j->fanin] : j->w[i];
        for (int k = 0; k < j->m; k++) {
            const lrp_term *tt = &j->t[j->idx[k]];
            float v = wmod_value(tt->w, we);
            if (j->absval)
                v = fabsf(v) * fabsf(tt->c);
            else if (tt->c != 1.0f)
                v = tt->c * v;
            acc = k == 0 ? v : acc + v;
        }
        j->f[i] = acc;
    }
}

static void cache_evict(lrp_f32_ctx *cx, wentry *e)
{
    if (!e->w)
        return;
    cx->cache_bytes -= (size_t)e->n * sizeof(float);
    fb_release(cx, e->w);
    e->w = NULL;
}

/* The fused weight of a group of terms (all with the same input modifier):
 * W' = sum_t c_t wmod_t(w), accumulated in binary32 in term order; with
 * absval, sum_t |c_t| |wmod_t(w)| (the gauge of the float path). */
static const float *fused_weights(lrp_f32_ctx *cx, const lrp_lin *L, const lrp_term *t,
                                  const int *idx, int m, int absval)
{
    int64_t n = n_weights(L);
    const float *w = L->w;
    uint32_t sig = (uint32_t)m;
    float csig[LRP_PIPE_MAX_TERMS] = {0};
    for (int k = 0; k < m; k++) {
        sig = sig * 31u + (uint32_t)(t[idx[k]].w * 7 + t[idx[k]].in);
        csig[k] = t[idx[k]].c;
    }
    if (L->wscale)
        sig = sig * 31u + 17u;
    /* a single identity term with coefficient 1 needs no copy */
    if (m == 1 && t[idx[0]].w == LRP_WM_ID && t[idx[0]].c == 1.0f && !absval && !L->wscale)
        return w;
    /* inside a pipeline run the parameters do not change: an entry made
     * from the same addresses in this run needs no hashing */
    if (cx->run)
        for (int i = 0; i < WCACHE; i++) {
            wentry *e = &cx->cache[i];
            if (e->w && e->run == cx->run && e->wp == (const void *)w &&
                e->sp == L->wscale && e->n == n && e->sig == sig && e->absval == absval &&
                !memcmp(e->csig, csig, sizeof csig)) {
                e->stamp = ++cx->clock;
                return e->w;
            }
        }
    uint64_t h = weights_hash(L);
    for (int i = 0; i < WCACHE; i++) {
        wentry *e = &cx->cache[i];
        if (e->w && e->n == n && e->hash == h && e->sig == sig && e->absval == absval &&
            !memcmp(e->csig, csig, sizeof csig)) {
            e->stamp = ++cx->clock;
            e->wp = w;
            e->sp = L->wscale;
            e->run = cx->run;
            return e->w;
        }
    }
    float *f = fb_floats_raw(cx, n);
    if (!f)
        return NULL;
    fuse_job fj = {f, w, L->wscale, L->fanin, t, idx, m, absval};
    par_range(cx->nthreads, n, fuse_range, &fj);
    size_t bytes = (size_t)n * sizeof(float);
    /* make room: least recently used first */
    for (;;) {
        wentry *victim = NULL, *empty = NULL;
        for (int i = 0; i < WCACHE; i++) {
            wentry *e = &cx->cache[i];
            if (!e->w) {
                if (!empty)
                    empty = e;
            } else if (!victim || e->stamp < victim->stamp) {
                victim = e;
            }
        }
        /* an empty slot within the budget; or, larger than the whole
         * cache, the only entry */
        if ((empty && cx->cache_bytes + bytes <= WCACHE_BYTES) || !victim) {
            empty->n = n;
            empty->hash = h;
            empty->sig = sig;
            memcpy(empty->csig, csig, sizeof csig);
            empty->absval = absval;
            empty->w = f;
            empty->stamp = ++cx->clock;
            empty->wp = w;
            empty->sp = L->wscale;
            empty->run = cx->run;
            cx->cache_bytes += bytes;
            return f;
        }
        cache_evict(cx, victim);
    }
}

/* Modified input of a group for the whole batch.  *owned says whether the
 * result must be freed (it is x itself when the modifier changes nothing). */
static const float *mod_input(lrp_f32_ctx *cx, const lrp_lin *L, const float *x, int mod, int absval,
                              int64_t batch, int *owned)
{
    int64_t n = L->n_in;
    *owned = 0;
    if ((mod == LRP_IM_POS || (mod == LRP_IM_ID && absval)) && sign_clear(x, batch * n))
        return x;
    float *y = fb_floats_raw(cx, batch * n);
    if (!y)
        return NULL;
    *owned = 1;
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

static void memo_forget(lrp_f32_ctx *cx, const void *t, int64_t n);

static void *t_new(void *ctx, int64_t n)
{
    return fb_floats(ctx, n);
}

static void *t_raw(void *ctx, int64_t n)
{
    return fb_floats_raw(ctx, n);
}

/* binary32 is this backend's number type: a view is the data itself */
static void *t_wrap(void *ctx, const float *src, int64_t n)
{
    (void)ctx;
    (void)n;
    return (void *)(uintptr_t)src;
}

static void t_run_begin(void *ctx)
{
    lrp_f32_ctx *cx = ctx;
    cx->run = ++cx->runs;
    if (!cx->run) /* wrapped around: 0 means "not in a run" */
        cx->run = cx->runs = 1;
}

static void t_run_end(void *ctx)
{
    lrp_f32_ctx *cx = ctx;
    cx->run = 0;
}

/* NaN / inf census in blocks: a block is first tested with a branch-free
 * OR over the exponent field (vectorised by the compiler); only blocks
 * with a non-finite value are looked at one by one. */
#define SCAN_BLOCK 4096
_Static_assert(PAR_CHUNK % SCAN_BLOCK == 0, "scan blocks must not straddle chunks");

typedef struct {
    const uint32_t *u;
    int64_t n;
    uint8_t *hit; /* per block */
} scan_job;

/* lo, hi: values; par_range's chunks (PAR_CHUNK) are whole blocks */
static void scan_range(void *arg, int64_t lo, int64_t hi)
{
    const scan_job *j = arg;
    int v = vec512();
    for (int64_t b = lo / SCAN_BLOCK; b < (hi + SCAN_BLOCK - 1) / SCAN_BLOCK; b++) {
        int64_t s = b * SCAN_BLOCK, e = s + SCAN_BLOCK < j->n ? s + SCAN_BLOCK : j->n;
        if (v) {
            j->hit[b] = (uint8_t)fp_vec_any_nonfinite((const float *)(const void *)j->u + s,
                                                      e - s);
            continue;
        }
        unsigned bad = 0;
        for (int64_t i = s; i < e; i++)
            bad |= (j->u[i] & 0x7f800000u) == 0x7f800000u;
        j->hit[b] = (uint8_t)bad;
    }
}

static void t_scan_nonfinite(void *ctx, const void *t, int64_t n, int64_t cnt[2],
                             int64_t first[2])
{
    lrp_f32_ctx *cx = ctx;
    cnt[0] = cnt[1] = 0;
    first[0] = first[1] = -1;
    int64_t nb = (n + SCAN_BLOCK - 1) / SCAN_BLOCK;
    if (nb <= 0)
        return;
    uint8_t *hit = malloc((size_t)nb);
    scan_job j = {t, n, hit};
    if (hit)
        par_range(cx->nthreads, n, scan_range, &j);
    for (int64_t b = 0; b < nb; b++) {
        if (hit && !hit[b])
            continue;
        int64_t s = b * SCAN_BLOCK, e = s + SCAN_BLOCK < n ? s + SCAN_BLOCK : n;
        for (int64_t i = s; i < e; i++) {
            uint32_t m = j.u[i] & 0x7fffffffu;
            int k = m > 0x7f800000u ? 0 : (m == 0x7f800000u ? 1 : -1);
            if (k < 0)
                continue;
            if (cnt[k]++ == 0)
                first[k] = i;
        }
    }
    free(hit);
}

static void t_free(void *ctx, void *t, int64_t n)
{
    if (t)
        memo_forget(ctx, t, n);
    fb_release(ctx, t);
}

static void *t_at(void *ctx, const void *t, int64_t i)
{
    (void)ctx;
    return (float *)(uintptr_t)t + i;
}

typedef struct {
    float *d;
    const float *s;
} copy_job;

static void copy_range(void *arg, int64_t lo, int64_t hi)
{
    const copy_job *j = arg;
    memcpy(j->d + lo, j->s + lo, (size_t)(hi - lo) * sizeof(float));
}

static void t_set_f32(void *ctx, void *dst, const float *src, int64_t n)
{
    lrp_f32_ctx *cx = ctx;
    copy_job j = {dst, src};
    int disjoint = (const float *)dst + n <= src || src + n <= (const float *)dst;
    par_range(disjoint ? cx->nthreads : 1, n, copy_range, &j);
}

typedef struct {
    uint8_t *out;
    const float *x;
} cls_job;

/* Branch-free (vectorisable) form of: NaN -> NAN; else INF if +-inf, NEG if
 * < 0, ZERO if +-0; and SIGNBIT whenever the sign bit is set. */
static void classify_range(void *arg, int64_t lo, int64_t hi)
{
    const cls_job *j = arg;
    const uint32_t *u = (const uint32_t *)(const void *)j->x;
    for (int64_t i = lo; i < hi; i++) {
        uint32_t m = u[i] & 0x7fffffffu, sg = u[i] >> 31;
        unsigned nan = m > 0x7f800000u;
        unsigned c = (m == 0x7f800000u ? LRP_V_INF : 0u) | (sg && m != 0 ? LRP_V_NEG : 0u) |
                     (m == 0 ? LRP_V_ZERO : 0u);
        c = nan ? LRP_V_NAN : c;
        j->out[i] = (uint8_t)(c | (sg ? LRP_V_SIGNBIT : 0u));
    }
}

static void t_classify(void *ctx, uint8_t *out, const void *t, int64_t n)
{
    lrp_f32_ctx *cx = ctx;
    cls_job j = {out, t};
    par_range(cx->nthreads, n, classify_range, &j);
}

typedef struct {
    lrp_ew_op op;
    float *y;
    const float *p, *q;
    float c1, c2;
    int vec; /* no partial overlap: the AVX-512 form may run */
} ew_job;

static void ew_range(void *arg, int64_t lo, int64_t hi)
{
    const ew_job *j = arg;
    lrp_ew_op op = j->op;
    float *y = j->y + lo;
    const float *p = j->p ? j->p + lo : NULL, *q = j->q ? j->q + lo : NULL;
    float c1 = j->c1, c2 = j->c2;
    int64_t n = hi - lo;
    /* in place (y == p) is lane-wise safe; a partial overlap keeps the
     * scalar order */
    if (j->vec && vec512() && fp_vec_ew((int)op, y, p, q, c1, n))
        return;
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

/* Elementwise ops split over threads only when every output depends on
 * the same index of the inputs alone: out equal to an input or disjoint
 * from it (a partial overlap keeps the sequential order). */
static int ew_splittable(const float *y, const float *p, int64_t n)
{
    if (!p || p == y)
        return 1;
    return p + n <= y || y + n <= p;
}

static void t_ew(void *ctx, lrp_ew_op op, void *out, const void *a, const void *b, float c1,
                 float c2, int64_t n)
{
    lrp_f32_ctx *cx = ctx;
    ew_job j = {op, out, a, b, c1, c2, 0};
    j.vec = ew_splittable(j.y, j.p, n) && ew_splittable(j.y, j.q, n);
    int nt = j.vec ? cx->nthreads : 1;
    par_range(nt, n, ew_range, &j);
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

typedef struct {
    lrp_row_op op;
    float *y;
    const float *p, *w;
    int64_t cols, vmod;
} row_job;

/* lo, hi: rows */
static void row_range(void *arg, int64_t lo, int64_t hi)
{
    const row_job *j = arg;
    lrp_row_op op = j->op;
    float *y = j->y;
    const float *p = j->p, *w = j->w;
    int64_t cols = j->cols, vmod = j->vmod;
    for (int64_t r = lo; r < hi; r++) {
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

/* Rows are independent (each value one rounded op): split by rows when
 * the output is disjoint from the input or the same array. */
static void t_row(void *ctx, lrp_row_op op, void *out, const void *a, const void *v,
                  int64_t rows, int64_t cols, int64_t vmod)
{
    lrp_f32_ctx *cx = ctx;
    row_job j = {op, out, a, v, cols, vmod};
    int nt = ew_splittable(j.y, j.p, rows * cols) ? cx->nthreads : 1;
    if (rows * cols < PAR_MIN || cols <= 0)
        nt = 1;
    int64_t per = (PAR_CHUNK + cols - 1) / (cols > 0 ? cols : 1); /* rows per chunk */
    if (nt <= 1) {
        row_range(&j, 0, rows);
        return;
    }
    range_job rj = {row_range, &j, rows, per};
    fp_parallel_for(nt, (rows + per - 1) / per, range_item, &rj);
}

typedef struct {
    float *y;
    const void *const *ins;
    int k;
} sum_job;

static void sum_range(void *arg, int64_t lo, int64_t hi)
{
    const sum_job *j = arg;
    for (int64_t i = lo; i < hi; i++) {
        float s = ((const float *)j->ins[0])[i];
        for (int q = 1; q < j->k; q++)
            s += ((const float *)j->ins[q])[i];
        j->y[i] = s;
    }
}

static void t_sum_n(void *ctx, void *out, const void *const *ins, int k, int64_t n)
{
    lrp_f32_ctx *cx = ctx;
    sum_job j = {out, ins, k};
    int nt = cx->nthreads;
    for (int q = 0; q < k; q++)
        if (!ew_splittable(j.y, ins[q], n))
            nt = 1;
    par_range(nt, n, sum_range, &j);
}

/* The gauge of these terms equals their denominator bit for bit: a single
 * term whose input and weight modifiers only produce sign-clear values
 * (pos() maps -0 and NaN to +0; ones) with a positive coefficient, and bias
 * terms pos(b) with positive coefficients: |c v| = c v = v c for every
 * product and bias value, the kernel sums the same values in the same
 * order. */
static int abs_invariant(const lrp_term *t, int nt, const lrp_bterm *bt, int nb)
{
    if (nt != 1 || !(t[0].c > 0.0f))
        return 0;
    if (t[0].in != LRP_IM_POS && t[0].in != LRP_IM_ONES)
        return 0;
    if (t[0].w != LRP_WM_POS && t[0].w != LRP_WM_ONES)
        return 0;
    for (int u = 0; u < nb; u++)
        if (bt[u].mod != LRP_BM_POS || !(bt[u].c > 0.0f))
            return 0;
    return 1;
}

static void memo_hashes(const lrp_lin *L, const void *out, const void *x, int64_t batch,
                        uint64_t h[4])
{
    int64_t units = L->conv ? L->O : L->n_out;
    h[0] = hash_bits(out, batch * L->n_out);
    h[1] = hash_bits(x, batch * L->n_in);
    h[2] = weights_hash(L);
    h[3] = L->b ? hash_bits(L->b, units) : 0;
}

static int memo_same_call(const den_memo *m, const lrp_lin *L, const void *x,
                          const lrp_term *t, int nt, const lrp_bterm *bt, int nb,
                          int64_t batch)
{
    return m->valid && m->x == x && m->batch == batch && m->nt == nt && m->nb == nb &&
           !memcmp(&m->L, L, sizeof *L) && !memcmp(m->t, t, sizeof *t * (size_t)nt) &&
           !memcmp(m->bt, bt, sizeof *bt * (size_t)nb);
}

/* A freed tensor can no longer be the memo's source. */
static void memo_forget(lrp_f32_ctx *cx, const void *t, int64_t n)
{
    den_memo *m = &cx->memo;
    if (!m->valid)
        return;
    const char *lo = t, *hi = lo + (size_t)(n > 0 ? n : 1) * sizeof(float);
    const char *o = m->out, *xx = m->x;
    if ((o >= lo && o < hi) || (xx >= lo && xx < hi))
        m->valid = 0;
}

typedef struct {
    float *y;
    const float *bias;
    int64_t units, hw, nout;
} fill_job;

static void fill_range(void *arg, int64_t lo, int64_t hi)
{
    const fill_job *j = arg;
    for (int64_t r = lo; r < hi; r++) { /* r = (sample, unit) */
        float v = j->bias ? j->bias[r % j->units] : 0.0f;
        float *d = j->y + r * j->hw;
        for (int64_t k = 0; k < j->hw; k++)
            d[k] = v;
    }
}

typedef struct {
    float *y;
    const float *a;
} add_job;

static void add_range(void *arg, int64_t lo, int64_t hi)
{
    const add_job *j = arg;
    for (int64_t i = lo; i < hi; i++)
        j->y[i] += j->a[i];
}

static void t_lin_fwd(void *ctx, void *out, const lrp_lin *L, const void *x, const lrp_term *t,
                      int nt, const lrp_bterm *bt, int nb, int absval, int64_t batch)
{
    lrp_f32_ctx *cx = ctx;
    float *y = out;
    int64_t nout = L->n_out, units = L->conv ? L->O : L->n_out;
    int nbias = L->b ? nb : 0;
    /* the gauge of sign-clear terms is the denominator just computed */
    int inv = nt > 0 && abs_invariant(t, nt, bt, nbias);
    if (absval && inv && memo_same_call(&cx->memo, L, x, t, nt, bt, nb, batch)) {
        uint64_t h[4];
        memo_hashes(L, cx->memo.out, x, batch, h);
        if (h[0] == cx->memo.h_out && h[1] == cx->memo.h_x && h[2] == cx->memo.h_w &&
            h[3] == cx->memo.h_b) {
            if (y != cx->memo.out)
                memmove(y, cx->memo.out, (size_t)(batch * nout) * sizeof *y);
            return;
        }
    }
    if (!absval)
        cx->memo.valid = 0;
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
        fill_job fj = {y, bias, units, nout / units, nout};
        par_range(cx->nthreads, batch * units, fill_range, &fj);
        free(bias);
        return;
    }
    int groups[LRP_PIPE_MAX_TERMS][LRP_PIPE_MAX_TERMS], gsize[LRP_PIPE_MAX_TERMS];
    int ng = group_terms(groups, gsize, t, nt, absval);
    float *tmp = ng > 1 ? fb_floats_raw(cx, batch * nout) : NULL;
    if (ng > 1 && !tmp)
        goto oom;
    for (int g = 0; g < ng; g++) {
        const lrp_term *t0 = &t[groups[g][0]];
        int mod = t0->in;
        /* the bias enters with the last group, like a single fused layer */
        const float *bb = g == ng - 1 ? bias : NULL;
        float *dst = g == 0 ? y : tmp;
        int rc;
        if (!L->conv && absval && !L->wscale && gsize[g] == 1 && mod == LRP_IM_ID &&
            t0->w == LRP_WM_ID && fabsf(t0->c) == 1.0f) {
            /* Dense gauge: |x| |w| taken inside the kernel */
            rc = lrp_fp_dense_fwd_abs(dst, x, L->w, bb, (int)batch, (int)L->n_in,
                                      (int)L->n_out, cx->nthreads);
        } else {
            const float *W = fused_weights(cx, L, t, groups[g], gsize[g], absval);
            int owned = 0;
            const float *xi = x;
            if (mod != LRP_IM_ID || absval)
                xi = mod_input(cx, L, x, mod, absval, batch, &owned);
            if (!W || !xi) {
                if (owned)
                    fb_release(cx, (void *)(uintptr_t)xi);
                fb_release(cx, tmp);
                goto oom;
            }
            rc = linear_fwd(cx, dst, L, xi, W, bb, batch);
            if (owned)
                fb_release(cx, (void *)(uintptr_t)xi);
        }
        if (rc) {
            fb_release(cx, tmp);
            goto oom;
        }
        if (g > 0) {
            add_job aj = {y, tmp};
            par_range(cx->nthreads, batch * nout, add_range, &aj);
        }
    }
    fb_release(cx, tmp);
    free(bias);
    if (!absval && inv) {
        den_memo *m = &cx->memo;
        m->L = *L;
        m->out = y;
        m->x = x;
        m->batch = batch;
        m->nt = nt;
        m->nb = nb;
        memcpy(m->t, t, sizeof *t * (size_t)nt);
        memcpy(m->bt, bt, sizeof *bt * (size_t)nb);
        uint64_t h[4];
        memo_hashes(L, y, x, batch, h);
        m->h_out = h[0];
        m->h_x = h[1];
        m->h_w = h[2];
        m->h_b = h[3];
        m->valid = 1;
    }
    return;
oom:
    free(bias);
    /* out of memory inside a numeric op: poison the output so the failure
     * is visible as NaN rather than silently wrong numbers */
    for (int64_t i = 0; i < batch * nout; i++)
        y[i] = NAN;
}

/* r (+)= coef * (a_i * g_i), a_i = inmod(x)_i; first: r = +0 + v.  g may
 * alias r.
 *
 * This sum deliberately starts from +0, unlike the kernels' chains (which
 * start from -0 so that an exact zero has the IEEE sign of the sum).  The
 * contract's R_i is ONE sum of the products coef_k c_t a_i w_ij s_kj, -0
 * iff every product is -0; here a_i is factored out of the sum over j.  In
 * the common case a_i = +0 (a ReLU zero) with g_i != 0, the products
 * +0 * w_ij s_kj have the signs of the w_ij s_kj, mixed in practice, so the
 * exact sum is +0 -- but a_i * g_i is -0 whenever g_i < 0.  The +0 start
 * maps that -0 to +0 and agrees with the reference there; a -0 start was
 * tried and moved 34,542 zero cells of the golden relevance traces AWAY
 * from the reference's signs (937 disagreements before, 34,542 after).
 * What +0 gets wrong: R_i whose every product is -0 (rare: a_i and all
 * w_ij s_kj of uniform signs). */
typedef struct {
    float *r;
    const float *x, *g;
    const lrp_lin *L;
    int64_t nin;
    int mod, first;
    float coef;
} rin_job;

static void rin_range(void *arg, int64_t lo, int64_t hi)
{
    const rin_job *j = arg;
    float *r = j->r;
    const float *x = j->x, *g = j->g;
    float c = j->coef;
    int first = j->first;
    if (vec512() && (j->mod == LRP_IM_ID || j->mod == LRP_IM_POS || j->mod == LRP_IM_NEG)) {
        fp_vec_rin(r + lo, x + lo, g + lo,
                   j->mod == LRP_IM_ID ? 0 : j->mod == LRP_IM_POS ? 1 : 2, c, first, hi - lo);
        return;
    }
#define RIN_LOOP(AEXPR)                                       \
    for (int64_t i = lo; i < hi; i++) {                       \
        float a = (AEXPR);                                    \
        float v = a * g[i];                                   \
        if (c != 1.0f)                                        \
            v = c * v;                                        \
        r[i] = first ? 0.0f + v : r[i] + v;                   \
    }
    switch (j->mod) {
    case LRP_IM_ID: RIN_LOOP(x[i]) break;
    case LRP_IM_POS: RIN_LOOP(x[i] > 0.0f ? x[i] : 0.0f) break;
    case LRP_IM_NEG: RIN_LOOP(x[i] < 0.0f ? x[i] : 0.0f) break;
    case LRP_IM_ONES: RIN_LOOP(1.0f) break;
    case LRP_IM_LOW: RIN_LOOP(j->L->low ? j->L->low[i % j->nin] : j->L->low_s) break;
    case LRP_IM_HIGH: RIN_LOOP(j->L->high ? j->L->high[i % j->nin] : j->L->high_s) break;
    default: RIN_LOOP(imod_value(j->mod, x[i])) break;
    }
#undef RIN_LOOP
}

static void t_lin_bwd(void *ctx, void *out, const lrp_lin *L, const void *x,
                      const lrp_bwd_part *parts, int np, int64_t batch)
{
    lrp_f32_ctx *cx = ctx;
    float *r = out;
    int64_t nin = L->n_in;
    float *gin = NULL;
    int first = 1;
    for (int k = 0; k < np; k++) {
        const lrp_bwd_part *p = &parts[k];
        int groups[LRP_PIPE_MAX_TERMS][LRP_PIPE_MAX_TERMS], gsize[LRP_PIPE_MAX_TERMS];
        int ng = group_terms(groups, gsize, p->t, p->nt, 0);
        for (int g = 0; g < ng; g++) {
            int mod = p->t[groups[g][0]].in;
            const float *W = fused_weights(cx, L, p->t, groups[g], gsize[g], 0);
            /* the first contribution is computed in place in r */
            float *dst = r;
            if (!first && !gin && !(gin = fb_floats_raw(cx, batch * nin)))
                goto oom;
            if (!first)
                dst = gin;
            if (!W || linear_bwd(cx, dst, L, p->s, W, batch))
                goto oom;
            rin_job rj = {r, x, dst, L, nin, mod, first, p->coef};
            par_range(cx->nthreads, batch * nin, rin_range, &rj);
            first = 0;
        }
    }
    if (first)
        memset(r, 0, (size_t)(batch * nin) * sizeof *r);
    fb_release(cx, gin);
    return;
oom:
    fb_release(cx, gin);
    for (int64_t i = 0; i < batch * nin; i++)
        r[i] = NAN;
}

typedef struct {
    float *s;
    uint8_t *cls;
    const float *R, *den;
    const uint8_t *mask;
    lrp_stab_id stab;
    float eps;
    int empty_lost;
} div_job;

static void stab_div_range(void *arg, int64_t lo, int64_t hi)
{
    const div_job *q = arg;
    float *s = q->s;
    uint8_t *cls = q->cls;
    const float *R = q->R, *den = q->den;
    const uint8_t *mask = q->mask;
    lrp_stab_id stab = q->stab;
    float eps = q->eps;
    int empty_lost = q->empty_lost;
    if (!mask && vec512()) {
        fp_vec_stab_div(s + lo, cls + lo, R + lo, den + lo, (int)stab, eps, empty_lost, hi - lo);
        return;
    }
    for (int64_t j = lo; j < hi; j++) {
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
        /* s(d) of the convention: core/ruletab.c's sign table */
        int sgi = lrp_stab_sign(stab, lrp_zclass_of(d));
        if (sgi == LRP_S_SKIP) {
            s[j] = r;
            cls[j] = c | LRP_K_SKIP;
            continue;
        }
        float sg = (float)sgi;
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

static void t_stab_div(void *ctx, void *s_, uint8_t *cls, const void *R_, const void *den_,
                       const uint8_t *mask, lrp_stab_id stab, float eps, int empty_lost,
                       int64_t n)
{
    lrp_f32_ctx *cx = ctx;
    div_job q = {s_, cls, R_, den_, mask, stab, eps, empty_lost};
    par_range(cx->nthreads, n, stab_div_range, &q);
}

typedef struct {
    void *const *absd;
    const float *R, *s, *bden;
    const uint8_t *cls;
    float coef, eps;
} absorb_job;

static void absorb_range(void *arg, int64_t lo, int64_t hi)
{
    const absorb_job *q = arg;
    void *const *absd = q->absd;
    const float *R = q->R, *s = q->s, *bden = q->bden;
    const uint8_t *cls = q->cls;
    float coef = q->coef, eps = q->eps;
    for (int64_t j = lo; j < hi; j++) {
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

static void t_absorb(void *ctx, void *const *absd, const void *R_, const void *s_,
                     const void *bden_, const uint8_t *cls, float coef, float eps, int64_t n)
{
    lrp_f32_ctx *cx = ctx;
    absorb_job q = {absd, R_, s_, bden_, cls, coef, eps};
    par_range(cx->nthreads, n, absorb_range, &q);
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

typedef struct {
    float *out;
    const float *x;
    const lrp_pool *P;
    int64_t batch;
    int bad;
} maxf_job;

/* 2 x 2 windows with stride 2 and no padding, all inside the image (the
 * VGG / ResNet pools): windows do not overlap, so the generic loops reduce
 * to these -- the same comparisons in the same order (ky, then kx; the
 * first maximum wins, the first NaN wins over numbers), and the backward
 * writes R_j (the one-term sum -0 + R_j of the generic loop) or +0. */
static int pool_is_2x2(const lrp_pool *P)
{
    return P->kh == 2 && P->kw == 2 && P->sh == 2 && P->sw == 2 && P->pt == 0 &&
           P->pl == 0 && 2 * P->Ho <= P->H && 2 * P->Wo <= P->W;
}

static inline int mp_take(float v, float best)
{
    return v > best || (v != v && best == best);
}

/* index (0..3: a b / c d) of the winning cell */
static inline int mp_win4(float a, float b, float c, float d, float *best)
{
    float m = a;
    int k = 0;
    if (mp_take(b, m)) { m = b; k = 1; }
    if (mp_take(c, m)) { m = c; k = 2; }
    if (mp_take(d, m)) { m = d; k = 3; }
    *best = m;
    return k;
}

static void max2_fwd_plane(float *o, const float *x, const lrp_pool *P)
{
    int64_t W = P->W, Wo = P->Wo;
    for (int64_t oy = 0; oy < P->Ho; oy++) {
        const float *r0 = x + 2 * oy * W, *r1 = r0 + W;
        float *op = o + oy * Wo;
        for (int64_t ox = 0; ox < Wo; ox++) {
            float m;
            mp_win4(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1], &m);
            op[ox] = m;
        }
    }
}

static void max2_bwd_plane(float *r, const float *x, const float *R, const lrp_pool *P)
{
    int64_t H = P->H, W = P->W, Wo = P->Wo;
    if (2 * P->Ho < H || 2 * P->Wo < W) /* cells no window covers stay 0 */
        memset(r, 0, (size_t)(H * W) * sizeof *r);
    for (int64_t oy = 0; oy < P->Ho; oy++) {
        const float *x0 = x + 2 * oy * W, *x1 = x0 + W;
        float *q0 = r + 2 * oy * W, *q1 = q0 + W;
        const float *Rr = R + oy * Wo;
        for (int64_t ox = 0; ox < Wo; ox++) {
            float m;
            int k = mp_win4(x0[2 * ox], x0[2 * ox + 1], x1[2 * ox], x1[2 * ox + 1], &m);
            float v = Rr[ox]; /* -0 + R_j: the winner's one-term sum */
            q0[2 * ox] = k == 0 ? v : 0.0f;
            q0[2 * ox + 1] = k == 1 ? v : 0.0f;
            q1[2 * ox] = k == 2 ? v : 0.0f;
            q1[2 * ox + 1] = k == 3 ? v : 0.0f;
        }
    }
}

static void maxf_item(void *arg, int64_t pl)
{
    maxf_job *q = arg;
    if (pool_is_2x2(q->P)) {
        max2_fwd_plane(q->out + pl * q->P->Ho * q->P->Wo, q->x + pl * q->P->H * q->P->W, q->P);
        return;
    }
    lrp_fp_pool_geom g = pool_geom(q->P, 1);
    g.c = 1; /* one plane */
    if (lrp_fp_maxpool_fwd(q->out + pl * q->P->Ho * q->P->Wo, NULL,
                           q->x + pl * q->P->H * q->P->W, &g))
        q->bad = 1;
}

static void t_max_fwd(void *ctx, void *out, const void *x, const lrp_pool *P, int64_t batch)
{
    lrp_f32_ctx *cx = ctx;
    maxf_job q = {out, x, P, batch, 0};
    int64_t planes = batch * P->C;
    int nt = planes * P->H * P->W >= PAR_MIN ? cx->nthreads : 1;
    fp_parallel_for(nt, planes, maxf_item, &q);
    if (q.bad)
        for (int64_t i = 0; i < batch * P->C * P->Ho * P->Wo; i++)
            ((float *)out)[i] = NAN;
}

typedef struct {
    float *r;
    const float *x, *R;
    const lrp_pool *P;
} maxb_job;

static void max_bwd_range(void *vq, int64_t lo, int64_t hi)
{
    const maxb_job *q = vq;
    float *r = q->r;
    const float *x = q->x, *R = q->R;
    const lrp_pool *P = q->P;
    int64_t hw = P->H * P->W, ohw = P->Ho * P->Wo;
    memset(r + lo * hw, 0, (size_t)((hi - lo) * hw) * sizeof *r);
    /* R_i is a sum over the windows i wins: from -0 (its first term, so an
     * exact zero keeps the IEEE sign), +0 when i wins none (empty sum).
     * hit[i]: i has received a term. */
    unsigned char *hit = malloc((size_t)hw + 1);
    if (!hit) {
        for (int64_t i = lo * hw; i < hi * hw; i++)
            r[i] = NAN;
        return;
    }
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *xp = x + pl * hw;
        float *rp = r + pl * hw;
        memset(hit, 0, (size_t)hw);
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
                    rp[arg] = hit[arg] ? rp[arg] + rj : rj;
                    hit[arg] = 1;
                    continue;
                }
                float share = rj / (float)ties;
                for (int ky = 0; ky < P->kh; ky++)
                    for (int kx = 0; kx < P->kw; kx++) {
                        int64_t iy = oy * P->sh - P->pt + ky, ix = ox * P->sw - P->pl + kx;
                        if (iy < 0 || iy >= P->H || ix < 0 || ix >= P->W)
                            continue;
                        int64_t i = iy * P->W + ix;
                        if (xp[i] == best) {
                            rp[i] = hit[i] ? rp[i] + share : share;
                            hit[i] = 1;
                        }
                    }
            }
    }
    free(hit);
}

static void maxb_item(void *arg, int64_t pl)
{
    const maxb_job *q = arg;
    if (pool_is_2x2(q->P) && !q->P->split_ties) {
        int64_t hw = q->P->H * q->P->W;
        max2_bwd_plane(q->r + pl * hw, q->x + pl * hw, q->R + pl * q->P->Ho * q->P->Wo, q->P);
        return;
    }
    max_bwd_range(arg, pl, pl + 1);
}

/* planes are independent: whole planes per thread */
static void t_max_bwd(void *ctx, void *out, const void *x_, const void *R_, const lrp_pool *P,
                      int64_t batch)
{
    lrp_f32_ctx *cx = ctx;
    maxb_job q = {out, x_, R_, P};
    int64_t planes = batch * P->C;
    int nt = planes * P->H * P->W >= PAR_MIN ? cx->nthreads : 1;
    fp_parallel_for(nt, planes, maxb_item, &q);
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

typedef struct {
    float *y;
    const float *x, *wc, *sh;
    int64_t C, hw;
} bnf_job;

/* lo, hi: values; y = wc x + shift, two roundings, per value */
static void bnf_range(void *arg, int64_t lo, int64_t hi)
{
    const bnf_job *j = arg;
    int64_t i = lo;
    while (i < hi) {
        int64_t c = (i / j->hw) % j->C, e = (i / j->hw + 1) * j->hw;
        if (e > hi)
            e = hi;
        float w = j->wc[c], b = j->sh[c];
        for (; i < e; i++)
            j->y[i] = w * j->x[i] + b;
    }
}

static void t_bn_fwd(void *ctx, void *y_, const void *x_, const void *wc_, const void *shift_,
                     int64_t batch, int64_t C, int64_t hw)
{
    lrp_f32_ctx *cx = ctx;
    bnf_job j = {y_, x_, wc_, shift_, C, hw > 0 ? hw : 1};
    int64_t n = batch * C * hw;
    par_range(ew_splittable(j.y, j.x, n) ? cx->nthreads : 1, n, bnf_range, &j);
}

/* Neumaier-compensated binary64 sum: the float path's own conservation
 * residual is reported, not judged (the oracle recomputes it exactly). */
typedef struct {
    double s, c, scale;
} ksum;

static void kadd(ksum *k, double v)
{
    double t = k->s + v;
    /* both candidates, one chosen: the same value as the branch, without
     * its mispredictions */
    double ca = (k->s - t) + v, cb = (v - t) + k->s;
    k->c += fabs(k->s) >= fabs(v) ? ca : cb;
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
        fb_free(NULL, c->cache[i].w);
    fb_pool_clear(&c->pool);
    free(c);
}

/* ---- the attention kinds (fp_attn.c) ---- */

static void t_softmax_fwd(void *ctx, void *out, const void *x, const uint8_t *mask, int64_t mrows,
                          int64_t rows, int64_t cols)
{
    lrp_fp_softmax_fwd(((lrp_f32_ctx *)ctx)->nthreads, out, x, mask, mrows, rows, cols);
}

static void t_softmax_taylor(void *ctx, void *rin, void *absb, void *absm, const void *x,
                             const void *xr, const void *s, const void *R, const uint8_t *mask,
                             int64_t mrows, int64_t rows, int64_t cols)
{
    lrp_fp_softmax_taylor(((lrp_f32_ctx *)ctx)->nthreads, rin, absb, absm, x, xr, s, R, mask,
                          mrows, rows, cols);
}

static void t_rowsum(void *ctx, void *out, const void *a, int64_t rows, int64_t cols)
{
    (void)ctx;
    lrp_fp_rowsum(out, a, rows, cols);
}

static void t_bmm(void *ctx, void *out, const void *a, const void *b, const lrp_bmm *G)
{
    lrp_fp_bmm(((lrp_f32_ctx *)ctx)->nthreads, out, a, b, G);
}

void lrp_f32_backend(lrp_backend *be, lrp_f32_ctx *ctx)
{
    memset(be, 0, sizeof *be);
    be->name = "fastpath";
    be->ctx = ctx;
    be->tensor_new = t_new;
    be->tensor_raw = t_raw;
    be->wrap_f32 = t_wrap;
    be->scan_nonfinite = t_scan_nonfinite;
    be->run_begin = t_run_begin;
    be->run_end = t_run_end;
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
    be->norm_fwd = lrp_fp_norm_fwd;
    be->norm_bwd = lrp_fp_norm_bwd;
    be->act_map = lrp_fp_act_map;
    be->softmax_fwd = t_softmax_fwd;
    be->softmax_taylor = t_softmax_taylor;
    be->rowsum = t_rowsum;
    be->bmm = t_bmm;
}
