/*
 * ref_backend.c -- the MPFR backend of the LRP pipeline (core/pipeline.h).
 *
 * Numbers: every stored value has p bits (ref_ctx.prec).  Binary32 inputs
 * and parameters enter exactly (mpfr_set_flt; p >= 24).  Rounding: RNDN.
 *
 * Accuracy of each op (u = 2^-p):
 *   lin_fwd, lin_bwd  one rounding of the exact sum (correctly rounded):
 *                     exact products (c * inmod(x) * wmod(w) [* s], held at
 *                     enough bits to be exact) summed by mpfr_sum, or the
 *                     exact fixed-point accumulator of ref_accum.c (fast
 *                     path, binary32 weights) -- both give the same bits.
 *   sum_n, residual   mpfr_sum: correctly rounded.
 *   stab_div          stab = den +- eps rounded, then R / stab rounded (2u).
 *   absorb            acc += coef * (exact product): one fma rounding.
 *   avg pools         window sum at p+64 then / k (about 1u);
 *                     backward sum_j s_j/k_j at p+64, times a_i (about 1u).
 *   max_bwd           sum of the won R_j (split ties: R_j / t rounded) (2u).
 *   bn_coef           wc = gamma / sqrt(var + eps): sqrt at p+64, then / (1u);
 *                     shift = fma(wc, -mu, beta); bn_fwd = fma(wc, x, shift).
 * None of these ever creates a NaN: zero denominators are classified.
 */
#include "ref_int.h"

#include <stdatomic.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CX(c) ((ref_ctx *)(c))
#define T(t) ((mpfr_ptr)(t))
#define TC(t) ((mpfr_srcptr)(t))

/* ---- tensors ---- */

mpfr_ptr lrp_ref_tensor_new(mpfr_prec_t p, int64_t n)
{
    size_t limb = mpfr_custom_get_size(p);
    size_t sz = (size_t)n * (sizeof(__mpfr_struct) + limb);
    char *blk = malloc(sz ? sz : 1);
    if (!blk)
        return NULL;
    mpfr_ptr v = (mpfr_ptr)blk;
    char *limbs = blk + (size_t)n * sizeof(__mpfr_struct);
    for (int64_t i = 0; i < n; i++)
        mpfr_custom_init_set(&v[i], MPFR_ZERO_KIND, 0, p, limbs + (size_t)i * limb);
    return v;
}

void lrp_ref_tensor_free(mpfr_ptr t) { free(t); }

static void *b_new(void *c, int64_t n) { return lrp_ref_tensor_new(CX(c)->prec, n); }
static void b_free(void *c, void *t, int64_t n) { lrp_ref_tensor_free(T(t)); }
static void *b_at(void *c, const void *t, int64_t i) { return (void *)(TC(t) + i); }

static void b_set_f32(void *c, void *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        mpfr_set_flt(T(dst) + i, src[i], MPFR_RNDN);
}

static void b_classify(void *c, uint8_t *out, const void *t, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        mpfr_srcptr x = TC(t) + i;
        uint8_t v = 0;
        if (mpfr_nan_p(x))
            v = LRP_V_NAN;
        else {
            if (mpfr_inf_p(x))
                v |= LRP_V_INF;
            if (mpfr_zero_p(x))
                v |= LRP_V_ZERO;
            else if (mpfr_sgn(x) < 0)
                v |= LRP_V_NEG;
            if (mpfr_signbit(x))
                v |= LRP_V_SIGNBIT;
        }
        out[i] = v;
    }
}

static int64_t b_argmax(void *c, const void *t, int64_t n)
{
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++) {
        mpfr_srcptr x = TC(t) + i;
        if (mpfr_nan_p(x))
            continue;
        if (best < 0 || mpfr_greater_p(x, TC(t) + best))
            best = i;
    }
    return best < 0 ? 0 : best;
}

/* pos / neg / abs with the +0 convention (core/pipeline.h) */
static void set_pos(mpfr_ptr o, mpfr_srcptr a)
{
    if (mpfr_sgn(a) > 0)
        mpfr_set(o, a, MPFR_RNDN);
    else
        mpfr_set_zero(o, 1);
}
static void set_neg(mpfr_ptr o, mpfr_srcptr a)
{
    if (mpfr_sgn(a) < 0)
        mpfr_set(o, a, MPFR_RNDN);
    else
        mpfr_set_zero(o, 1);
}

/* The element-wise and row-wise ops below each compute an element (or a
 * row) from its own inputs alone, so they run in chunks on the threads
 * (lrp_ref_par_values) with the bits of one thread: a BERT-base reference
 * spent half its wall time in them on one core (docs/SCALING.md). */
typedef struct ew_job {
    lrp_ew_op op;
    mpfr_ptr out;
    mpfr_srcptr a, b;
    float c1, c2;
} ew_job;

static void ew_range(void *arg, int64_t lo, int64_t hi)
{
    const ew_job *J = arg;
    mpfr_t f1, f2;
    mpfr_init2(f1, 24);
    mpfr_init2(f2, 24);
    mpfr_set_flt(f1, J->c1, MPFR_RNDN);
    mpfr_set_flt(f2, J->c2, MPFR_RNDN);
    for (int64_t i = lo; i < hi; i++) {
        mpfr_ptr o = J->out + i;
        mpfr_srcptr x = J->a ? J->a + i : NULL, y = J->b ? J->b + i : NULL;
        switch (J->op) {
        case LRP_EW_ZERO: mpfr_set_zero(o, 1); break;
        case LRP_EW_COPY: mpfr_set(o, x, MPFR_RNDN); break;
        case LRP_EW_ADD: mpfr_add(o, x, y, MPFR_RNDN); break;
        case LRP_EW_MUL: mpfr_mul(o, x, y, MPFR_RNDN); break;
        case LRP_EW_POS: set_pos(o, x); break;
        case LRP_EW_NEG: set_neg(o, x); break;
        case LRP_EW_ABS: mpfr_abs(o, x, MPFR_RNDN); break;
        case LRP_EW_FMMA: mpfr_fmma(o, x, f1, y, f2, MPFR_RNDN); break;
        case LRP_EW_SCALE: mpfr_mul(o, x, f1, MPFR_RNDN); break;
        }
    }
    mpfr_clear(f1);
    mpfr_clear(f2);
}

static void b_ew(void *c, lrp_ew_op op, void *out, const void *a, const void *b, float c1,
                 float c2, int64_t n)
{
    ew_job J = {op, T(out), a ? TC(a) : NULL, b ? TC(b) : NULL, c1, c2};
    lrp_ref_par_values(CX(c), n, 1, ew_range, &J);
}

typedef struct row_job {
    lrp_row_op op;
    mpfr_ptr out;
    mpfr_srcptr a, v;
    int64_t cols, vmod;
} row_job;

static void row_range(void *arg, int64_t lo, int64_t hi)
{
    const row_job *J = arg;
    for (int64_t r = lo; r < hi; r++) {
        mpfr_srcptr s = J->v + r % J->vmod;
        for (int64_t k = 0; k < J->cols; k++) {
            int64_t i = r * J->cols + k;
            switch (J->op) {
            case LRP_ROW_MUL: mpfr_mul(J->out + i, J->a + i, s, MPFR_RNDN); break;
            case LRP_ROW_ADD: mpfr_add(J->out + i, J->a + i, s, MPFR_RNDN); break;
            case LRP_ROW_SET: mpfr_set(J->out + i, s, MPFR_RNDN); break;
            }
        }
    }
}

static void b_row(void *c, lrp_row_op op, void *out, const void *a, const void *v, int64_t rows,
                  int64_t cols, int64_t vmod)
{
    row_job J = {op, T(out), a ? TC(a) : NULL, TC(v), cols, vmod};
    lrp_ref_par_values(CX(c), rows, cols, row_range, &J);
}

typedef struct sum_job {
    mpfr_ptr out;
    const void *const *ins;
    int k;
} sum_job;

static void sum_range(void *arg, int64_t lo, int64_t hi)
{
    const sum_job *J = arg;
    mpfr_ptr p[LRP_MAX_INPUTS + 2];
    for (int64_t i = lo; i < hi; i++) {
        for (int q = 0; q < J->k; q++)
            p[q] = T(J->ins[q]) + i;
        mpfr_sum(J->out + i, p, (unsigned long)J->k, MPFR_RNDN);
    }
}

static void b_sum_n(void *c, void *out, const void *const *ins, int k, int64_t n)
{
    sum_job J = {T(out), ins, k};
    lrp_ref_par_values(CX(c), n, k, sum_range, &J);
}

/* ---- stabilizer (docs/SPEC.md section 5) ---- */

typedef struct sd_job {
    mpfr_prec_t prec;
    mpfr_ptr s;
    uint8_t *cls;
    mpfr_srcptr R, den;
    const uint8_t *mask;
    lrp_stab_id stab;
    float eps;
    int empty_lost;
} sd_job;

static void sd_range(void *arg, int64_t lo, int64_t hi)
{
    const sd_job *J = arg;
    uint8_t *cls = J->cls;
    const uint8_t *mask = J->mask;
    const lrp_stab_id stab = J->stab;
    const float eps = J->eps;
    const int empty_lost = J->empty_lost;
    mpfr_t st, fe;
    mpfr_init2(st, J->prec);
    mpfr_init2(fe, 24);
    mpfr_set_flt(fe, eps, MPFR_RNDN);
    for (int64_t j = lo; j < hi; j++) {
        mpfr_ptr sj = J->s + j;
        mpfr_srcptr d = J->den + j, r = J->R + j;
        uint8_t k = 0;
        if (mask && !mask[j]) {
            mpfr_set_zero(sj, 1);
            cls[j] = LRP_K_UNSEL;
            continue;
        }
        if (mpfr_nan_p(d) || mpfr_nan_p(r)) {
            mpfr_set_zero(sj, 1);
            cls[j] = LRP_K_NAN;
            continue;
        }
        int zero = mpfr_zero_p(d);
        if (zero) {
            k |= LRP_CLS_ZERO;
            if (mpfr_signbit(d))
                k |= LRP_CLS_ZNEG;
        }
        if (empty_lost && zero) {
            mpfr_set_zero(sj, 1);
            cls[j] = k | LRP_K_EMPTY;
            continue;
        }
        /* s(d) of the convention: core/ruletab.c's sign table (NaN was
         * handled above) */
        LRP_ASSERT((unsigned)stab < LRP_STAB_COUNT);
        lrp_zclass zc = zero ? (mpfr_signbit(d) ? LRP_ZC_NEGZERO : LRP_ZC_POSZERO)
                             : (mpfr_sgn(d) > 0 ? LRP_ZC_POS : LRP_ZC_NEG);
        int sg = lrp_stab_sign(stab, zc), skip = sg == LRP_S_SKIP;
        if (skip) {
            mpfr_set(sj, r, MPFR_RNDN);
            cls[j] = k | LRP_K_SKIP;
            continue;
        }
        if (eps == 0.0f || sg == 0) {
            if (zero) {
                mpfr_set_zero(sj, 1);
                cls[j] = k | LRP_K_UNDEF;
            } else {
                mpfr_div(sj, r, d, MPFR_RNDN);
                cls[j] = k;
            }
            continue;
        }
        if (sg > 0)
            mpfr_add(st, d, fe, MPFR_RNDN);
        else
            mpfr_sub(st, d, fe, MPFR_RNDN);
        k |= sg > 0 ? LRP_CLS_ADD_POS : LRP_CLS_ADD_NEG;
        if (mpfr_zero_p(st)) {
            mpfr_set_zero(sj, 1);
            cls[j] = k | LRP_K_UNDEF;
            continue;
        }
        mpfr_div(sj, r, st, MPFR_RNDN);
        cls[j] = k;
    }
    mpfr_clear(st);
    mpfr_clear(fe);
}

static void b_stab_div(void *c, void *s, uint8_t *cls, const void *R, const void *den,
                       const uint8_t *mask, lrp_stab_id stab, float eps, int empty_lost,
                       int64_t n)
{
    sd_job J = {CX(c)->prec, T(s), cls, TC(R), TC(den), mask, stab, eps, empty_lost};
    lrp_ref_par_values(CX(c), n, 1, sd_range, &J);
}

typedef struct ab_job {
    mpfr_prec_t prec;
    void *const *abs;
    mpfr_srcptr R, s, bden;
    const uint8_t *cls;
    float coef, eps;
} ab_job;

static void ab_range(void *arg, int64_t lo, int64_t hi)
{
    const ab_job *J = arg;
    void *const *abs = J->abs;
    const void *bden = J->bden;
    const uint8_t *cls = J->cls;
    mpfr_prec_t p = J->prec;
    mpfr_t t, fc, fe;
    mpfr_init2(t, 2 * p + 64);
    mpfr_init2(fc, 24);
    mpfr_init2(fe, 24);
    mpfr_set_flt(fc, J->coef, MPFR_RNDN);
    mpfr_set_flt(fe, J->eps, MPFR_RNDN);
    for (int64_t j = lo; j < hi; j++) {
        unsigned kind = cls[j] & LRP_CLS_KIND;
        mpfr_srcptr sj = J->s + j, rj = J->R + j;
        mpfr_ptr a;
        switch (kind) {
        case LRP_K_NORMAL:
        case LRP_K_SKIP:
            if (bden && abs[LRP_ABS_BIAS]) {
                mpfr_mul(t, sj, TC(bden) + j, MPFR_RNDN); /* exact at 2p+64 */
                a = T(abs[LRP_ABS_BIAS]) + j;
                mpfr_fma(a, fc, t, a, MPFR_RNDN);
            }
            if (!abs[LRP_ABS_STAB])
                break;
            a = T(abs[LRP_ABS_STAB]) + j;
            if (kind == LRP_K_SKIP) {
                mpfr_fma(a, fc, rj, a, MPFR_RNDN);
            } else if (cls[j] & (LRP_CLS_ADD_POS | LRP_CLS_ADD_NEG)) {
                mpfr_mul(t, sj, fe, MPFR_RNDN);
                if (cls[j] & LRP_CLS_ADD_NEG)
                    mpfr_neg(t, t, MPFR_RNDN);
                mpfr_fma(a, fc, t, a, MPFR_RNDN);
            }
            break;
        case LRP_K_UNDEF:
        case LRP_K_EMPTY:
        case LRP_K_DROPPED: {
            int k = kind == LRP_K_UNDEF ? LRP_ABS_UNDEF
                    : kind == LRP_K_EMPTY ? LRP_ABS_EMPTY : LRP_ABS_DROPPED;
            if (abs[k]) {
                a = T(abs[k]) + j;
                mpfr_fma(a, fc, rj, a, MPFR_RNDN);
            }
            break;
        }
        default: break;
        }
    }
    mpfr_clear(t);
    mpfr_clear(fc);
    mpfr_clear(fe);
}

static void b_absorb(void *c, void *const *abs, const void *R, const void *s, const void *bden,
                     const uint8_t *cls, float coef, float eps, int64_t n)
{
    ab_job J = {CX(c)->prec, abs, TC(R), TC(s), bden ? TC(bden) : NULL, cls, coef, eps};
    lrp_ref_par_values(CX(c), n, 1, ab_range, &J);
}

/* ---- threads ---- */

/* Work is handed out in chunks from a shared counter (about 16 a thread),
 * not in one fixed share per thread: the cost of an element varies (ReLU
 * zeros skipped, the weights a modifier keeps, clipped windows), and with
 * fixed halves one thread waited for the other (a VGG-16 112x112
 * reference kept 1.70 to 1.88 of 2 cores busy; 1.88 to 1.90 in chunks).
 * Every element is computed by one call on its own, so which thread takes
 * which chunk changes no bit.  A worker (lrp_ref_par_work) keeps its
 * scratch over its chunks: the linear kernels' scratch (accumulator bins,
 * lane sums, MPFR and GMP temporaries) set up once a chunk cost ASan's
 * allocator a quarter of test_reference's time. */
struct lrp_ref_chunks {
    int64_t n, chunk;
    _Atomic int64_t next;
};

int lrp_ref_chunk_next(lrp_ref_chunks *c, int64_t *lo, int64_t *hi)
{
    int64_t l = atomic_fetch_add(&c->next, c->chunk);
    if (l >= c->n)
        return 0;
    *lo = l;
    *hi = c->n - l < c->chunk ? c->n : l + c->chunk;
    return 1;
}

typedef struct par_arg {
    void (*worker)(void *, lrp_ref_chunks *);
    void *arg;
    lrp_ref_chunks *c;
} par_arg;

/* a worker thread: its share, then MPFR's caches of this thread (the
 * constants and the exp / log caches that mpfr_erfc, mpfr_exp or
 * mpfr_const_pi fill per thread), which would otherwise leak when the
 * thread exits (LeakSanitizer counted them once GELU ran on the threads) */
static void *par_thread(void *a)
{
    par_arg *p = a;
    p->worker(p->arg, p->c);
    mpfr_free_cache2(MPFR_FREE_LOCAL_CACHE);
    return NULL;
}

void lrp_ref_par_work(int threads, int64_t n, void (*worker)(void *, lrp_ref_chunks *),
                      void *arg)
{
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    lrp_ref_chunks c;
    c.n = n;
    c.chunk = n;
    atomic_init(&c.next, 0);
    if (threads == 1 || n < 2) {
        worker(arg, &c);
        return;
    }
    c.chunk = n / ((int64_t)threads * 16);
    if (c.chunk < 1)
        c.chunk = 1;
    par_arg pa = {worker, arg, &c};
    pthread_t th[64];
    int started[64] = {0};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&th[t], NULL, par_thread, &pa) == 0;
    worker(arg, &c); /* threads that could not start leave their share here */
    for (int t = 1; t < threads; t++)
        if (started[t])
            pthread_join(th[t], NULL);
}

typedef struct for_arg {
    void (*fn)(void *, int64_t, int64_t);
    void *arg;
} for_arg;

static void for_worker(void *a, lrp_ref_chunks *c)
{
    const for_arg *f = a;
    int64_t lo, hi;
    while (lrp_ref_chunk_next(c, &lo, &hi))
        f->fn(f->arg, lo, hi);
}

void lrp_ref_par_for(int threads, int64_t n, void (*fn)(void *, int64_t, int64_t), void *arg)
{
    if (threads <= 1 || n < 2) {
        fn(arg, 0, n);
        return;
    }
    for_arg f = {fn, arg};
    lrp_ref_par_work(threads, n, for_worker, &f);
}

void lrp_ref_par_values(ref_ctx *cx, int64_t n, int64_t per,
                        void (*fn)(void *, int64_t, int64_t), void *arg)
{
    int64_t min = cx->par_min > 0 ? cx->par_min : LRP_REF_PAR_MIN;
    if (cx->threads > 1 && n > 1 && n * (per > 0 ? per : 1) >= min) {
        cx->par_calls++;
        lrp_ref_par_for(cx->threads, n, fn, arg);
    } else
        fn(arg, 0, n);
}

/* ---- pools ---- */

typedef struct pool_job {
    mpfr_ptr out;
    mpfr_srcptr x, y, R; /* y: max values (act); R or s */
    const lrp_pool *P;
    mpfr_prec_t prec;
    int mode; /* 0 max_fwd, 1 max_bwd, 2 avg_fwd, 3 avg_bwd */
} pool_job;

static int64_t avg_k(const lrp_pool *P, int64_t oy, int64_t ox)
{
    if (P->count_include_pad)
        return (int64_t)P->kh * P->kw;
    int64_t k = 0;
    for (int ky = 0; ky < P->kh; ky++) {
        int64_t iy = oy * P->sh - P->pt + ky;
        if (iy < 0 || iy >= P->H)
            continue;
        for (int kx = 0; kx < P->kw; kx++) {
            int64_t ix = ox * P->sw - P->pl + kx;
            if (ix >= 0 && ix < P->W)
                k++;
        }
    }
    return k;
}

/* first winner of window (c, oy, ox), and number of ties; x per sample */
static int64_t max_win(mpfr_srcptr x, const lrp_pool *P, int64_t c, int64_t oy, int64_t ox,
                       int64_t *ties)
{
    int64_t best = -1;
    *ties = 0;
    for (int ky = 0; ky < P->kh; ky++) {
        int64_t iy = oy * P->sh - P->pt + ky;
        if (iy < 0 || iy >= P->H)
            continue;
        for (int kx = 0; kx < P->kw; kx++) {
            int64_t ix = ox * P->sw - P->pl + kx;
            if (ix < 0 || ix >= P->W)
                continue;
            int64_t i = (c * P->H + iy) * P->W + ix;
            if (best < 0) {
                best = i;
                *ties = 1;
                continue;
            }
            int cmp = mpfr_cmp(x + i, x + best);
            if (cmp > 0) {
                best = i;
                *ties = 1;
            } else if (cmp == 0) {
                (*ties)++;
            }
        }
    }
    return best;
}

static void pool_range(void *arg, int64_t lo, int64_t hi)
{
    pool_job *J = arg;
    const lrp_pool *P = J->P;
    int64_t nin = P->C * P->H * P->W, nout = P->C * P->Ho * P->Wo;
    int64_t cap = (int64_t)P->kh * P->kw + 1;
    /* windows containing one input: at most ceil(kh/sh) * ceil(kw/sw) */
    int64_t capb = (int64_t)(P->kh / P->sh + 1) * (P->kw / P->sw + 1) + 1;
    if (capb > cap)
        cap = capb;
    mpfr_t *tv = malloc((size_t)cap * sizeof *tv);
    mpfr_ptr *pp = malloc((size_t)cap * sizeof *pp);
    mpfr_t acc;
    LRP_ASSERT(tv && pp);
    for (int64_t q = 0; q < cap; q++)
        mpfr_init2(tv[q], J->prec + 64);
    mpfr_init2(acc, J->prec + 64);
    for (int64_t e = lo; e < hi; e++) {
        if (J->mode == 0 || J->mode == 2) {
            int64_t b = e / nout, j = e % nout;
            int64_t c = j / (P->Ho * P->Wo), oy = (j / P->Wo) % P->Ho, ox = j % P->Wo;
            mpfr_srcptr x = J->x + b * nin;
            if (J->mode == 0) {
                int64_t t;
                int64_t w = max_win(x, P, c, oy, ox, &t);
                mpfr_set(J->out + e, x + w, MPFR_RNDN);
                continue;
            }
            int64_t m = 0;
            for (int ky = 0; ky < P->kh; ky++) {
                int64_t iy = oy * P->sh - P->pt + ky;
                if (iy < 0 || iy >= P->H)
                    continue;
                for (int kx = 0; kx < P->kw; kx++) {
                    int64_t ix = ox * P->sw - P->pl + kx;
                    if (ix >= 0 && ix < P->W)
                        pp[m++] = (mpfr_ptr)(x + (c * P->H + iy) * P->W + ix);
                }
            }
            mpfr_sum(acc, pp, (unsigned long)m, MPFR_RNDN);
            mpfr_div_si(J->out + e, acc, (long)avg_k(P, oy, ox), MPFR_RNDN);
            continue;
        }
        /* backward, per input i: gather the windows that contain it */
        int64_t b = e / nin, i = e % nin;
        int64_t c = i / (P->H * P->W), y = (i / P->W) % P->H, xx = i % P->W;
        mpfr_srcptr x = J->x + b * nin;
        int64_t m = 0;
        for (int ky = 0; ky < P->kh; ky++) {
            int64_t t = y + P->pt - ky;
            if (t < 0 || t % P->sh)
                continue;
            int64_t oy = t / P->sh;
            if (oy >= P->Ho)
                continue;
            for (int kx = 0; kx < P->kw; kx++) {
                int64_t u = xx + P->pl - kx;
                if (u < 0 || u % P->sw)
                    continue;
                int64_t ox = u / P->sw;
                if (ox >= P->Wo)
                    continue;
                int64_t j = (c * P->Ho + oy) * P->Wo + ox;
                mpfr_srcptr rj = J->R + b * nout + j;
                LRP_ASSERT(m < cap);
                if (J->mode == 1) {
                    int64_t ties;
                    int64_t w = max_win(x, P, c, oy, ox, &ties);
                    if (P->split_ties) {
                        if (mpfr_cmp(x + i, x + w) != 0)
                            continue;
                        mpfr_div_si(tv[m], rj, (long)ties, MPFR_RNDN);
                    } else {
                        if (w != i)
                            continue;
                        mpfr_set(tv[m], rj, MPFR_RNDN);
                    }
                } else {
                    mpfr_div_si(tv[m], rj, (long)avg_k(P, oy, ox), MPFR_RNDN);
                }
                pp[m] = tv[m];
                m++;
            }
        }
        if (J->mode == 1) {
            mpfr_sum(J->out + e, pp, (unsigned long)m, MPFR_RNDN);
        } else {
            mpfr_sum(acc, pp, (unsigned long)m, MPFR_RNDN);
            mpfr_mul(J->out + e, acc, x + i, MPFR_RNDN);
        }
    }
    for (int64_t q = 0; q < cap; q++)
        mpfr_clear(tv[q]);
    mpfr_clear(acc);
    free(tv);
    free(pp);
}

static void pool_run(void *c, int mode, void *out, const void *x, const void *R,
                     const lrp_pool *P, int64_t batch)
{
    pool_job J = {T(out), TC(x), NULL, R ? TC(R) : NULL, P, CX(c)->prec, mode};
    int64_t n = (mode == 0 || mode == 2) ? P->C * P->Ho * P->Wo : P->C * P->H * P->W;
    lrp_ref_par_for(CX(c)->threads, n * batch, pool_range, &J);
}

static void b_max_fwd(void *c, void *out, const void *x, const lrp_pool *P, int64_t batch)
{
    pool_run(c, 0, out, x, NULL, P, batch);
}
static void b_max_bwd(void *c, void *out, const void *x, const void *R, const lrp_pool *P,
                      int64_t batch)
{
    pool_run(c, 1, out, x, R, P, batch);
}
static void b_avg_fwd(void *c, void *out, const void *x, const lrp_pool *P, int64_t batch)
{
    pool_run(c, 2, out, x, NULL, P, batch);
}
static void b_avg_bwd(void *c, void *out, const void *x, const void *s, const lrp_pool *P,
                      int64_t batch)
{
    pool_run(c, 3, out, x, s, P, batch);
}

/* ---- BatchNorm ---- */

static void b_bn_coef(void *c, void *wc, void *negwmu, void *beta, void *shift,
                      const lrp_layer *l, int64_t C)
{
    mpfr_prec_t p = CX(c)->prec;
    mpfr_t v, e, g, mu;
    mpfr_init2(v, 400); /* var + eps exact: binary32 exponents span < 300 bits */
    mpfr_init2(e, 24);
    mpfr_init2(g, 24);
    mpfr_init2(mu, 24);
    mpfr_set_flt(e, l->bn_eps, MPFR_RNDN);
    for (int64_t k = 0; k < C; k++) {
        mpfr_set_flt(v, l->bn_var[k], MPFR_RNDN);
        mpfr_add(v, v, e, MPFR_RNDN);
        mpfr_prec_round(v, p + 64, MPFR_RNDN);
        mpfr_sqrt(v, v, MPFR_RNDN);
        mpfr_set_flt(g, l->bn_gamma[k], MPFR_RNDN);
        mpfr_div(T(wc) + k, g, v, MPFR_RNDN);
        mpfr_set_flt(mu, l->bn_mean[k], MPFR_RNDN);
        mpfr_neg(mu, mu, MPFR_RNDN);
        mpfr_mul(T(negwmu) + k, T(wc) + k, mu, MPFR_RNDN);
        mpfr_set_flt(T(beta) + k, l->bn_beta[k], MPFR_RNDN);
        mpfr_fma(T(shift) + k, T(wc) + k, mu, T(beta) + k, MPFR_RNDN);
        mpfr_set_prec(v, 400);
    }
    mpfr_clear(v);
    mpfr_clear(e);
    mpfr_clear(g);
    mpfr_clear(mu);
}

static void b_bn_fwd(void *c, void *y, const void *x, const void *wc, const void *shift,
                     int64_t batch, int64_t C, int64_t hw)
{
    for (int64_t r = 0; r < batch * C; r++)
        for (int64_t k = 0; k < hw; k++) {
            int64_t i = r * hw + k;
            mpfr_fma(T(y) + i, TC(x) + i, TC(wc) + r % C, TC(shift) + r % C, MPFR_RNDN);
        }
}

/* ---- conservation residual ---- */

/* A shallow view of x with another sign (shares the limbs; read only). */
static __mpfr_struct signed_view(mpfr_srcptr x, int sign)
{
    __mpfr_struct v = *x;
    v._mpfr_sign = sign;
    return v;
}

static void b_residual(void *c, double *r, double *scale, const void *const *in,
                       const int64_t *n_in, int k_in, const void *const *absd, int k_abs,
                       int64_t n_abs, const void *out, int64_t n_out)
{
    int64_t n = n_out + (int64_t)k_abs * n_abs;
    for (int k = 0; k < k_in; k++)
        n += n_in[k];
    __mpfr_struct *sv = malloc((size_t)(n ? n : 1) * sizeof *sv);
    __mpfr_struct *av = malloc((size_t)(n ? n : 1) * sizeof *av);
    mpfr_ptr *pp = malloc((size_t)(n ? n : 1) * sizeof *pp);
    LRP_ASSERT(sv && av && pp);
    int64_t m = 0;
    for (int k = 0; k < k_in; k++)
        for (int64_t i = 0; i < n_in[k]; i++, m++) {
            sv[m] = *(TC(in[k]) + i);
            av[m] = signed_view(TC(in[k]) + i, 1);
        }
    for (int k = 0; k < k_abs; k++)
        for (int64_t i = 0; i < n_abs; i++, m++) {
            sv[m] = *(TC(absd[k]) + i);
            av[m] = signed_view(TC(absd[k]) + i, 1);
        }
    for (int64_t i = 0; i < n_out; i++, m++) {
        mpfr_srcptr o = TC(out) + i;
        sv[m] = signed_view(o, -o->_mpfr_sign);
        av[m] = signed_view(o, 1);
    }
    mpfr_t s;
    mpfr_init2(s, CX(c)->prec);
    for (int64_t i = 0; i < m; i++)
        pp[i] = &sv[i];
    mpfr_sum(s, pp, (unsigned long)m, MPFR_RNDN);
    *r = mpfr_get_d(s, MPFR_RNDN);
    for (int64_t i = 0; i < m; i++)
        pp[i] = &av[i];
    mpfr_sum(s, pp, (unsigned long)m, MPFR_RNDN);
    *scale = mpfr_get_d(s, MPFR_RNDN);
    mpfr_clear(s);
    free(sv);
    free(av);
    free(pp);
}


void lrp_ref_ctx_init(lrp_ref_ctx *cx, int prec, int threads)
{
    memset(cx, 0, sizeof *cx);
    cx->prec = prec;
    cx->threads = threads;
}

/* Packed activations (core/pipeline.h pack): one variable-length record a
 * value, in order, without the 32-byte mpfr struct.  A record is a tag
 * byte -- the kind with its sign (bits 0-2: kind + 3), a wide exponent
 * (bit 3) and the number z of least significant limbs that are zero and
 * not stored (bits 4-7) -- then, for a regular value alone, its exponent
 * (int16, or int64 when wide) and its limbs z.. as they are.  A zero (half
 * of a ReLU's outputs) takes 1 byte, a full p = 128 value 19 (25 with a
 * fixed layout, 48 unpacked); 1 + 2 + 24 at p + 64.  Lossless: unpack
 * gives the same kind, sign, exponent and significand; the limbs of a
 * value that is not regular, which MPFR never reads, come back zero. */
typedef struct packed {
    mpfr_prec_t prec;
    unsigned char *rec;
} packed;

enum { PK_WIDE = 8, PK_ZSHIFT = 4, PK_ZMAX = 15 };

static void b_pack_free(void *c, void *pk)
{
    (void)c;
    packed *q = pk;
    if (!q)
        return;
    free(q->rec);
    free(q);
}

/* value v's tag (limbs nl of size mp_limb_t) */
static unsigned pk_tag(mpfr_srcptr v, size_t nl)
{
    int k = mpfr_custom_get_kind(v);
    unsigned t = (unsigned)(k + 3);
    if (k != MPFR_REGULAR_KIND && k != -MPFR_REGULAR_KIND)
        return t;
    mpfr_exp_t e = mpfr_custom_get_exp(v);
    if (e < INT16_MIN || e > INT16_MAX)
        t |= PK_WIDE;
    const mp_limb_t *m = mpfr_custom_get_significand(v);
    size_t z = 0;
    while (z + 1 < nl && z < PK_ZMAX && m[z] == 0)
        z++;
    return t | (unsigned)z << PK_ZSHIFT;
}

static size_t pk_size(unsigned t, size_t nl)
{
    int k = (int)(t & 7) - 3;
    if (k != MPFR_REGULAR_KIND && k != -MPFR_REGULAR_KIND)
        return 1;
    size_t z = t >> PK_ZSHIFT;
    return 1 + ((t & PK_WIDE) ? sizeof(int64_t) : sizeof(int16_t)) + (nl - z) * sizeof(mp_limb_t);
}

static void *b_pack(void *c, void *t, int64_t n)
{
    (void)c;
    mpfr_ptr v = T(t);
    if (n <= 0)
        return NULL;
    mpfr_prec_t p = mpfr_get_prec(v);
    size_t limb = mpfr_custom_get_size(p), nl = limb / sizeof(mp_limb_t);
    const char *base = (const char *)(v + n);
    /* only the layout lrp_ref_tensor_new made, every value at p */
    for (int64_t i = 0; i < n; i++)
        if (mpfr_get_prec(v + i) != p ||
            (const char *)mpfr_custom_get_significand(v + i) != base + (size_t)i * limb)
            return NULL;
    size_t bytes = 0;
    for (int64_t i = 0; i < n; i++)
        bytes += pk_size(pk_tag(v + i, nl), nl);
    packed *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->prec = p;
    if (!(q->rec = malloc(bytes))) {
        b_pack_free(c, q);
        return NULL;
    }
    unsigned char *w = q->rec;
    for (int64_t i = 0; i < n; i++) {
        unsigned tg = pk_tag(v + i, nl);
        *w++ = (unsigned char)tg;
        if (pk_size(tg, nl) == 1)
            continue;
        int64_t e = (int64_t)mpfr_custom_get_exp(v + i);
        if (tg & PK_WIDE) {
            memcpy(w, &e, sizeof e);
            w += sizeof e;
        } else {
            int16_t e16 = (int16_t)e;
            memcpy(w, &e16, sizeof e16);
            w += sizeof e16;
        }
        size_t z = tg >> PK_ZSHIFT;
        const mp_limb_t *m = mpfr_custom_get_significand(v + i);
        memcpy(w, m + z, (nl - z) * sizeof *m);
        w += (nl - z) * sizeof *m;
    }
    LRP_ASSERT((size_t)(w - q->rec) == bytes);
    lrp_ref_tensor_free(v);
    return q;
}

static void *b_unpack(void *c, const void *pk, int64_t n)
{
    (void)c;
    const packed *q = pk;
    mpfr_ptr v = lrp_ref_tensor_new(q->prec, n);
    if (!v)
        return NULL;
    size_t limb = mpfr_custom_get_size(q->prec), nl = limb / sizeof(mp_limb_t);
    char *base = (char *)(v + n);
    const unsigned char *r = q->rec;
    for (int64_t i = 0; i < n; i++) {
        unsigned tg = *r++;
        int k = (int)(tg & 7) - 3;
        mp_limb_t *m = (mp_limb_t *)(void *)(base + (size_t)i * limb);
        int64_t e = 0;
        size_t z = nl;
        if (pk_size(tg, nl) > 1) {
            if (tg & PK_WIDE) {
                memcpy(&e, r, sizeof e);
                r += sizeof e;
            } else {
                int16_t e16;
                memcpy(&e16, r, sizeof e16);
                r += sizeof e16;
                e = e16;
            }
            z = tg >> PK_ZSHIFT;
            memcpy(m + z, r, (nl - z) * sizeof *m);
            r += (nl - z) * sizeof *m;
        }
        memset(m, 0, z * sizeof *m);
        mpfr_custom_init_set(v + i, k, (mpfr_exp_t)e, q->prec, m);
    }
    return v;
}

/* Values on the wire (core/pipeline.h to_wire; the layer split's
 * exchanges between ranks): per value its kind (with the sign), its
 * exponent and its limbs as they are, the packed form above laid out in
 * one buffer of plain bytes.  Lossless: the receiver has the same bits. */
static size_t wire_rec(const ref_ctx *cx)
{
    return 1 + sizeof(int64_t) + mpfr_custom_get_size(cx->prec);
}

static size_t b_wire_size(void *c, int64_t n) { return (size_t)n * wire_rec(CX(c)); }

static void b_to_wire(void *c, void *buf, const void *t, int64_t n)
{
    size_t rec = wire_rec(CX(c)), limb = rec - 1 - sizeof(int64_t);
    unsigned char *q = buf;
    for (int64_t i = 0; i < n; i++, q += rec) {
        mpfr_srcptr v = TC(t) + i;
        LRP_ASSERT(mpfr_get_prec(v) == CX(c)->prec);
        int k = mpfr_custom_get_kind(v);
        int64_t e = (k == MPFR_REGULAR_KIND || k == -MPFR_REGULAR_KIND)
                        ? (int64_t)mpfr_custom_get_exp(v) : 0;
        q[0] = (unsigned char)(signed char)k;
        memcpy(q + 1, &e, sizeof e);
        if (k == MPFR_REGULAR_KIND || k == -MPFR_REGULAR_KIND)
            memcpy(q + 1 + sizeof e, mpfr_custom_get_significand(v), limb);
        else /* no limbs to speak of: fixed bytes, so the buffer is deterministic */
            memset(q + 1 + sizeof e, 0, limb);
    }
}

/* into t[0..n), a tensor of this context's precision (tensor_new's) */
static void b_from_wire(void *c, void *t, const void *buf, int64_t n)
{
    size_t rec = wire_rec(CX(c)), limb = rec - 1 - sizeof(int64_t);
    const unsigned char *q = buf;
    for (int64_t i = 0; i < n; i++, q += rec) {
        mpfr_ptr v = T(t) + i;
        LRP_ASSERT(mpfr_get_prec(v) == CX(c)->prec);
        int64_t e;
        memcpy(&e, q + 1, sizeof e);
        void *sig = mpfr_custom_get_significand(v);
        memcpy(sig, q + 1 + sizeof e, limb);
        mpfr_custom_init_set(v, (signed char)q[0], (mpfr_exp_t)e, CX(c)->prec, sig);
    }
}

void lrp_ref_backend(lrp_backend *be, lrp_ref_ctx *cx)
{
    memset(be, 0, sizeof *be);
    be->name = "mpfr";
    be->ctx = cx;
    be->tensor_new = b_new;
    be->tensor_free = b_free;
    be->at = b_at;
    be->set_f32 = b_set_f32;
    be->classify = b_classify;
    be->argmax = b_argmax;
    be->ew = b_ew;
    be->row = b_row;
    be->sum_n = b_sum_n;
    be->lin_fwd = lrp_ref_lin_fwd;
    be->lin_bwd = lrp_ref_lin_bwd;
    be->stab_div = b_stab_div;
    be->absorb = b_absorb;
    be->max_fwd = b_max_fwd;
    be->max_bwd = b_max_bwd;
    be->avg_fwd = b_avg_fwd;
    be->avg_bwd = b_avg_bwd;
    be->bn_coef = b_bn_coef;
    be->bn_fwd = b_bn_fwd;
    be->residual = b_residual;
    be->norm_fwd = lrp_ref_norm_fwd;
    be->norm_bwd = lrp_ref_norm_bwd;
    be->act_map = lrp_ref_act_map;
    be->softmax_fwd = lrp_ref_softmax_fwd;
    be->softmax_taylor = lrp_ref_softmax_taylor;
    be->rowsum = lrp_ref_rowsum;
    be->bmm = lrp_ref_bmm;
    be->weights_in_place = 1; /* ref_linear.c reads lrp_lin.w32 */
    be->pack = b_pack;
    be->unpack = b_unpack;
    be->pack_free = b_pack_free;
    be->wire_size = b_wire_size;
    be->to_wire = b_to_wire;
    be->from_wire = b_from_wire;
    be->bmm_exact = lrp_ref_bmm_exact;
    be->rowsum_exact = lrp_ref_rowsum_exact;
    be->sum_exact = lrp_ref_sum_exact;
}
