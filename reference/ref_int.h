/*
 * ref_int.h -- internals of the MPFR reference backend: for reference/ and
 * the tests of its kernels only (everyone else: reference.h).
 */
#ifndef LRP_REF_INT_H
#define LRP_REF_INT_H

#include <mpfr.h>
#include <stdint.h>
#include <string.h>

#include "pipeline.h"
#include "reference.h"

/* The backend context (public in reference.h: lrp_ref_ctx_init and
 * lrp_ref_backend); the short name inside reference/. */
typedef lrp_ref_ctx ref_ctx;

/* The linear-map ops (ref_linear.c), see lrp_backend.lin_fwd / lin_bwd. */
void lrp_ref_lin_fwd(void *c, void *out, const lrp_lin *L, const void *x, const lrp_term *t,
                     int nt, const lrp_bterm *bt, int nb, int absval, int64_t batch);
void lrp_ref_lin_bwd(void *c, void *out, const lrp_lin *L, const void *x,
                     const lrp_bwd_part *parts, int np, int64_t batch);

/* The attention kinds' ops (ref_attn.c), see lrp_backend.softmax_fwd,
 * softmax_taylor, rowsum, bmm. */
void lrp_ref_softmax_fwd(void *c, void *out, const void *x, const uint8_t *mask, int64_t mrows,
                         int64_t rows, int64_t cols);
void lrp_ref_softmax_taylor(void *c, void *rin, void *absb, void *absm, const void *x,
                            const void *xr, const void *s, const void *R, const uint8_t *mask,
                            int64_t mrows, int64_t rows, int64_t cols);
void lrp_ref_rowsum(void *c, void *out, const void *a, int64_t rows, int64_t cols);
void lrp_ref_bmm(void *c, void *out, const void *a, const void *b, const lrp_bmm *G);
/* 1 when c is a positive power of two, 2^*e2: bmm scales the rounded sum
 * by it instead of each product (the same bits) */
int lrp_ref_bmm_pow2(float c, long *e2);
/* The exact partial sums (ref_exact.c; lrp_backend.bmm_exact, ...). */
int lrp_ref_bmm_exact(void *c, lrp_bytes *buf, const void *a, const void *b, const lrp_bmm *G);
int lrp_ref_rowsum_exact(void *c, lrp_bytes *buf, const void *a, int64_t rows, int64_t cols);
int lrp_ref_sum_exact(void *c, void *out, const lrp_bmm *G, const unsigned char **src,
                      const unsigned char *const *end, int n);

/* fn(arg, lo, hi) over [0, n): on the context's threads (lrp_ref_par_for)
 * when the n items touch at least cx->par_min values in all (per values an
 * item), else on the caller.  Each item must be computed on its own. */
void lrp_ref_par_values(ref_ctx *cx, int64_t n, int64_t per,
                        void (*fn)(void *, int64_t, int64_t), void *arg);

/* Tensor allocation used by the backend (one block, MPFR custom
 * interface: no per-value malloc). */
mpfr_ptr lrp_ref_tensor_new(mpfr_prec_t p, int64_t n);
void lrp_ref_tensor_free(mpfr_ptr t);

/* Runs fn(arg, lo, hi) over [0, n) in chunks taken from a shared counter
 * by `threads` threads (the caller is one of them).  Each chunk's results
 * depend only on its indices, so the output never depends on threads. */
void lrp_ref_par_for(int threads, int64_t n, void (*fn)(void *arg, int64_t lo, int64_t hi),
                     void *arg);

/* The same chunks for a worker that sets up its scratch once a thread
 * rather than once a chunk: worker(arg, c) runs once on each thread and
 * takes chunks while lrp_ref_chunk_next returns 1.  With one thread (or
 * n < 2) it runs once, on the caller, and gets [0, n) as one chunk. */
typedef struct lrp_ref_chunks lrp_ref_chunks;
int lrp_ref_chunk_next(lrp_ref_chunks *c, int64_t *lo, int64_t *hi);
void lrp_ref_par_work(int threads, int64_t n, void (*worker)(void *arg, lrp_ref_chunks *c),
                      void *arg);

/* ---- exact accumulation (ref_accum.c) ----
 * An exact fixed-point accumulator of products x * w where x is a p-bit
 * MPFR value (pre-split into <= 29-bit binary64 pieces) and w a binary32
 * value, so every piece product is exact in binary64.  See ref_accum.c. */
#define LRP_REF_NCELL 70 /* 2047/32 + 3 cells + carry room */
/* Two levels: adds go into 128-bit bins indexed by the exponent of the
 * double (one add/adc each: the signed 53-bit significand, no shifting), in
 * 4 banks so that consecutive adds of similar magnitude do not wait on each
 * other; after at most 2^28 adds, and at the end, the touched bins are
 * folded into 32-bit cells of a fixed-point number with unit 2^-1075 (see
 * ref_accum.c). */
#define LRP_REF_BANKS 4
#define LRP_REF_FOLD_AT (1 << 28)
typedef struct ref_acc {
    int64_t c[LRP_REF_NCELL];
    __int128 bin[LRP_REF_BANKS][2048]; /* by biased exponent E */
    int lo, hi;        /* touched E range, lo > hi when none */
    int n;             /* adds since the last fold */
} ref_acc;
ref_acc *lrp_ref_acc_new(void);
void lrp_ref_acc_free(ref_acc *a);
void lrp_ref_acc_clear(ref_acc *a);
void lrp_ref_acc_fold(ref_acc *a);
/* adds the exact binary64 value d (finite) */
static inline void lrp_ref_acc_add(ref_acc *a, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    if (!(u << 1))
        return; /* +-0 */
    int E = (int)(u >> 52) & 0x7ff;
    int64_t m = (int64_t)((u & ((UINT64_C(1) << 52) - 1)) | ((uint64_t)(E != 0) << 52));
    int64_t sg = -(int64_t)(u >> 63);
    a->bin[0][E] += (m ^ sg) - sg;
    a->lo = E < a->lo ? E : a->lo;
    a->hi = E > a->hi ? E : a->hi;
    if (++a->n >= LRP_REF_FOLD_AT)
        lrp_ref_acc_fold(a);
}
/* rop = the exact sum times 2^scale, rounded once (RNDN); sign of an exact
 * zero from zero_neg (1: -0). */
void lrp_ref_acc_get(mpfr_ptr rop, ref_acc *a, long scale, int zero_neg);
/* exact value into z * 2^(*e) (z may be 0) */
void lrp_ref_acc_get_z(mpz_ptr z, long *e, ref_acc *a);

/* ---- the fast exact kernel (ref_fixed.c) ---- */
typedef struct ref_fx {
    int64_t n;
    int nd;         /* digit slots per value */
    long base;      /* v = sign sum_d dig[d] 2^(16 (lev + 3 d)) 2^base */
    int nlev;       /* keys used: max lev + 6 nd (the kernel's fixed-count
                     * digit loop may run cm digits from a value's first) */
    int cm;         /* most digits any value uses (0: all zero) */
    int64_t nzero;  /* values that are +-0 */
    uint32_t *meta; /* lev << 8 | neg << 7 | digits used (0: the value is +-0) */
    uint64_t *dig;  /* n * nd, each < 2^48 */
} ref_fx;
/* 0 when the tensor cannot be represented (NaN/inf, huge spread). */
int lrp_ref_fx_build(ref_fx *f, mpfr_srcptr v, int64_t n);
void lrp_ref_fx_free(ref_fx *f);

typedef struct ref_fxacc {
    int nk, lo, hi;
    int64_t adds;   /* since the last fold */
    __int128 *bin;  /* banks * nk */
    int64_t *cell;
} ref_fxacc;
/* adds between two folds of the bins (tests lower it to exercise the fold) */
extern int lrp_ref_fx_fold_at;
extern int lrp_ref_fx_fold_bits; /* which bins a fold carries from */
ref_fxacc *lrp_ref_fxacc_new(int nkeys);
void lrp_ref_fxacc_free(ref_fxacc *a);
void lrp_ref_fxacc_clear(ref_fxacc *a);
/* A += sum_q v[off + ii[q]] * wmod(w32[ww[q]]); xsel 1 / -1: only v > 0 /
 * v < 0 (pos / neg input modifier); absval: |products|.  (A BN-folded
 * backward passes weights whose rows carry the scale's sign: ref_linear.c
 * lrp_ref_lin_bwd.) */
void lrp_ref_fxacc_dot(ref_fxacc *A, const ref_fx *f, int64_t off, const int64_t *ii,
                       const int64_t *ww, int64_t cnt, const int64_t *wd, int wmod, int xsel,
                       int absval);
/* binary32 weights as W (signed, |W| < 2^39) * 2^(16 bw - 160), packed as
 * one int64 W * 32 + bw (bw <= 16; 0 for +-0) */
void lrp_ref_fx_weights(int64_t *wd, const float *w32, int64_t n);
/* the exact sum as z * 2^e; leaves A cleared (its bins are consumed) */
void lrp_ref_fxacc_get_z(mpz_ptr z, long *e, ref_fxacc *A, const ref_fx *f);

/* A finite binary32 w as m * 2^(E - 150) (m < 2^24; E the biased
 * exponent, 1 for subnormals); returns the sign bit */
static inline unsigned lrp_ref_f32_parts(float w, uint64_t *m, unsigned *E)
{
    uint32_t u;
    memcpy(&u, &w, sizeof u);
    *E = (u >> 23) & 0xffu;
    *m = u & 0x7fffffu;
    if (*E)
        *m |= 1u << 23;
    else
        *E = 1;
    return u >> 31;
}

/* ---- the digit kernel eight outputs at a time (ref_vec.c, AVX-512 IFMA) ---- */
typedef struct ref_vx {
    int64_t n;
    int nd;          /* 52-bit digits a value (1..6) */
    int lev0;        /* v = sign sum_k D_k 2^(52 k) 2^(16 lev0 + base), base the ref_fx's */
    int64_t stride;  /* n + 2 LRP_REF_VX_PAD: each digit's array, padded */
    uint64_t *dig;   /* value i's digit k at dig[k stride + i], i from -PAD to n + PAD */
    uint8_t *flag;   /* the same range: 1 negative; 2 below the grid (digits 0 here) */
    int64_t noob;    /* values below the grid */
} ref_vx;
typedef struct ref_vx_scratch {
    int64_t *gi, *gwi;
    uint64_t *gw;
    uint8_t *gm;
} ref_vx_scratch;
/* A layer's taps for its tiles, each row (an output map forward, an input
 * channel backward) sorted once by weight class and sign: offsets from the
 * window's corner, the weights as lrp_ref_vx_weights gives them, their
 * indices, their kernel position ky kw + kx (a tile at an edge masks its
 * lanes by it); start: each row's groups */
typedef struct ref_vx_plan {
    int64_t nrow, ntap;
    int64_t *rel, *wi, *start;
    uint64_t *w;
    uint16_t *k;
} ref_vx_plan;
#define LRP_REF_VX_PAD 64 /* zero values either side of a tensor's digits */
/* 1 when this CPU runs the kernel (AVX-512 F, BW, VL, IFMA) */
int lrp_ref_vx_available(void);
/* 0: not built (no such CPU, every value zero, or the values spread over
 * more than the grid holds with at most 1 in 1024 below it) */
int lrp_ref_vx_build(ref_vx *v, const ref_fx *f);
extern int lrp_ref_vx_oob_share; /* 1024: at most 1 in this many below the grid */
void lrp_ref_vx_free(ref_vx *v);
/* binary32 weights as W < 2^51 with their class and sign in the top byte */
void lrp_ref_vx_weights(uint64_t *vw, const float *w32, int64_t n);
int lrp_ref_vx_scratch(ref_vx_scratch *s, int64_t cap);
void lrp_ref_vx_scratch_free(ref_vx_scratch *s);
/* for each lane l < nl (<= 8) in mk[q]: A[l] += sum_q v[off + ii[q] + l] *
 * wmod(w32[ww[q]]) exactly (xsel, absval as lrp_ref_fxacc_dot);
 * off + ii[q] + l within [-LRP_REF_VX_PAD, n + LRP_REF_VX_PAD - 8) for
 * every lane, in mk or not.  A[l] must have
 * at least f->nlev + LRP_REF_VX_KEYS keys. */
void lrp_ref_vx_dot(ref_fxacc *const *A, int nl, const ref_vx *v, const ref_fx *f, int64_t off,
                    const int64_t *ii, const int64_t *ww, const uint8_t *mk, int64_t cnt,
                    const uint64_t *vw,
                    const int64_t *wd, int wmod, int xsel, int absval, ref_vx_scratch *s);
#define LRP_REF_VX_KEYS 64
int lrp_ref_vx_plan_new(ref_vx_plan *p, int64_t nrow, int64_t ntap);
void lrp_ref_vx_plan_free(ref_vx_plan *p);
/* row r's ntap taps: offsets rel[q], weight indices wi[q], kernel
 * positions k[q] */
void lrp_ref_vx_plan_row(ref_vx_plan *p, int64_t r, const int64_t *rel, const int64_t *wi,
                         const uint16_t *k, const uint64_t *vw);
/* lrp_ref_vx_dot over row r of the plan: lane l reads value base + rel +
 * l, for the taps at kernel position k in the lanes tab[k] (tab NULL:
 * every lane every tap) */
void lrp_ref_vx_dot_plan(ref_fxacc *const *A, int nl, const ref_vx *v, const ref_fx *f,
                         int64_t base, const ref_vx_plan *p, int64_t r, const uint8_t *tab,
                         const int64_t *wd, int wmod, int xsel, int absval);
/* A += v * 2^bit on the bins' grid (bit from bin 0's position; |v| < 2^65) */
void lrp_ref_fxacc_add_shifted(ref_fxacc *A, long bit, __int128 v);

/* Splits x (finite, nonzero) into pieces d[0..k) of <= 29 significant bits
 * each with x * 2^-scale = sum d[q] exactly; returns k (0 when the pieces
 * would leave the binary64 range: caller falls back). */
int lrp_ref_split29(double *d, mpfr_srcptr x, long scale);

/* The token layers' ops (ref_token.c; core/pipeline.h norm_fwd, norm_bwd,
 * act_map). */
void lrp_ref_norm_fwd(void *c, void *y, void *stat, const void *x, const float *w,
                      const float *b, float eps, int rms, int64_t rows, int64_t F);
void lrp_ref_norm_bwd(void *c, void *rin, void *absmean, const void *x, const void *stat,
                      const float *w, const void *s, int centre, int64_t rows, int64_t F);
void lrp_ref_act_map(void *c, void *y, const void *x, int op, int64_t n);

#endif
