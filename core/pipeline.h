/*
 * pipeline.h -- the per-layer LRP algorithm, written once over a backend
 * vtable (docs/DESIGN.md: "the algorithm is written once, the arithmetic twice").
 *
 * Two halves:
 *
 *  1. Rule descriptors (core/ruletab.c): every linear rule of docs/SPEC.md
 *     section 2 is a row of data.  A rule is 1 or 2 *parts*; part k has a
 *     coefficient (1, alpha, -beta), a unit selector (generalized gamma picks
 *     a part by the sign of z_j), a list of *terms* and a list of *bias
 *     terms*.  For input activations a, weights w, bias b:
 *
 *        den_kj = sum_t c_t sum_i inmod_t(a)_i wmod_t(w)_ij
 *                 + sum_u c_u bmod_u(b_j)                       (one sum)
 *        s_kj   = R_j / stab(den_kj)                 (section 5 conventions)
 *        R_i    = sum_k coef_k sum_t c_t inmod_t(a)_i sum_j wmod_t(w)_ij s_kj
 *
 *     so numerators and denominators share the terms (the template of
 *     Montavon et al. 2019).  Term coefficients c_t are binary32 values
 *     (+-1 or gamma): gamma's w + gamma w+ is the two terms (w, 1) and
 *     (w+, gamma), so each product stays a product of two binary32 values.
 *
 *  2. The backend vtable (struct lrp_backend): per tensor / per layer ops,
 *     never per scalar.  Tensors are opaque (void *) arrays of `n` values of
 *     the backend's number type (mpfr_t for reference/, float for
 *     fastpath/).  The pipeline (core/pipeline.c) runs forward and backward
 *     over the graph, keeps every intermediate a checker needs, and does the
 *     bookkeeping (absorbed relevance by kind, sticky numerical flags).
 *
 * Conventions every backend must follow (the oracle compares bitwise):
 *   - pos(x) = x if x > 0 else +0;  neg(x) = x if x < 0 else +0 (so a
 *     modified zero is always +0); ReLU(x) = pos(x).  abs(x) = |x|.
 *   - A sum whose exact value is 0 is -0 iff every summand is -0 (IEEE
 *     round-to-nearest rule), else +0.  Products of zeros carry the xor
 *     of the signs.  Terms whose input modifier is identically +0 (neg()
 *     on an input known non-negative) are *not* passed to the backend
 *     (lrp_pipe_layer.nonneg): dropping +0 summands never changes a sum
 *     except for that sign-of-zero rule, which the pipeline accepts.
 *   - Tensors are batch-major; a per-sample tensor of a layer with output
 *     shape (C, H, W) is C*H*W values in NCHW order.
 */
#ifndef LRP_PIPELINE_H
#define LRP_PIPELINE_H

#include <math.h>
#include <stdint.h>

#include "lrp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Rule descriptors                                                    */
/* ------------------------------------------------------------------ */

typedef enum lrp_inmod {
    LRP_IM_ID,   /* a_i                                   */
    LRP_IM_POS,  /* a_i+                                  */
    LRP_IM_NEG,  /* a_i-                                  */
    LRP_IM_ONES, /* 1 (flat, w-square: input-independent) */
    LRP_IM_LOW,  /* z^B lower bound l_i                   */
    LRP_IM_HIGH  /* z^B upper bound h_i                   */
} lrp_inmod;

typedef enum lrp_wmod {
    LRP_WM_ID,
    LRP_WM_POS,
    LRP_WM_NEG,
    LRP_WM_SQUARE, /* w^2 (exact: 48 bits) */
    LRP_WM_ONES    /* 1 (flat)             */
} lrp_wmod;

typedef enum lrp_bmod { LRP_BM_ID, LRP_BM_POS, LRP_BM_NEG, LRP_BM_SQUARE } lrp_bmod;

/* Where a coefficient's value comes from (resolved from the rule spec). */
typedef enum lrp_coefsrc {
    LRP_C_ONE,
    LRP_C_MINUS_ONE,
    LRP_C_GAMMA,
    LRP_C_ALPHA,
    LRP_C_MINUS_BETA
} lrp_coefsrc;

/* Unit selector of a part, on the plain z_j = sum_i a_i w_ij (+ b_j when the
 * rule keeps the bias).  -0 counts as zero everywhere. */
typedef enum lrp_sel {
    LRP_SEL_ALL,
    LRP_SEL_ZPOS,    /* z_j > 0                    */
    LRP_SEL_ZNONNEG, /* z_j >= 0 (includes +-0)    */
    LRP_SEL_ZNEG,    /* z_j < 0                    */
    LRP_SEL_ZNONZERO /* z_j != 0                   */
} lrp_sel;

#define LRP_PIPE_MAX_TERMS 4
#define LRP_PIPE_MAX_BTERMS 2
#define LRP_PIPE_MAX_PARTS 2

typedef struct lrp_term_desc {
    uint8_t in, w, coef; /* lrp_inmod, lrp_wmod, lrp_coefsrc */
} lrp_term_desc;
typedef struct lrp_bterm_desc {
    uint8_t mod, coef; /* lrp_bmod, lrp_coefsrc */
} lrp_bterm_desc;

typedef struct lrp_part_desc {
    uint8_t coef;       /* lrp_coefsrc: 1, alpha or -beta                   */
    uint8_t sel;        /* lrp_sel                                          */
    uint8_t empty_lost; /* den == 0 means every numerator is 0: the part's
                           share of R_j is absorbed as "empty part"         */
    uint8_t n_terms, n_bias;
    lrp_term_desc t[LRP_PIPE_MAX_TERMS];
    lrp_bterm_desc b[LRP_PIPE_MAX_BTERMS];
} lrp_part_desc;

typedef struct lrp_rule_desc {
    const char *name; /* e.g. "alphabeta/innvestigate_fullbias" */
    int n_parts;
    lrp_part_desc p[LRP_PIPE_MAX_PARTS];
} lrp_rule_desc;

/* The descriptor row for a rule spec on a Dense/Conv2D layer (flags pick the
 * peer variants).  Never NULL for a linear rule; NULL for pass/wta. */
const lrp_rule_desc *lrp_rule_describe(const lrp_rule_spec *r);
/* A composite as data (core/ruletab.c): the rule of each linear layer by
 * its place; the norm layers get the composite's epsilon, the max-pools
 * winner-take-all (lrp_composite_apply).  LRP_RULE_COUNT: no change from
 * the base rule (epsilon with the composite's parameters). */
typedef struct lrp_composite_desc {
    lrp_rule_id conv;       /* every Conv2D (alpha, beta below for alpha-beta;
                               gamma: the parameters' gamma, Zennit's
                               generalized rule that drops z = 0) */
    float alpha, beta;
    lrp_rule_id first;      /* then the first linear layer: its rule only */
    lrp_rule_id first_conv; /* the first Conv2D instead of the conv rule
                               (z^B: the parameters' box) */
    lrp_rule_id dense;      /* every linear layer (and lrp0 on the norm
                               layers) instead of the above, or none */
    lrp_rule_id mha;        /* MultiHeadAttention's rule, or none (attnlrp) */
} lrp_composite_desc;
const lrp_composite_desc *lrp_composite_describe(lrp_composite_id c);

/* The row a norm layer's proportional split reads (lrp0 / epsilon /
 * alpha-beta on y = sum_t v_t, core/ruletab.c), NULL for other rules; and
 * the summand modifier of one of its parts with every weight 1 (LRP_IM_ID:
 * all summands, den = y; LRP_IM_POS / NEG: the positive / negative ones). */
const lrp_rule_desc *lrp_rule_split_describe(const lrp_rule_spec *r);
int lrp_part_split_inmod(const lrp_part_desc *pd);
/* The value of a coefficient under a rule spec (binary32, exact). */
float lrp_coef_value(lrp_coefsrc c, const lrp_rule_spec *r);

/* Resolved (numeric) term lists as the backend sees them. */
typedef struct lrp_term {
    int in, w; /* lrp_inmod, lrp_wmod */
    float c;   /* binary32 coefficient, used exactly */
} lrp_term;
typedef struct lrp_bterm {
    int mod; /* lrp_bmod */
    float c;
} lrp_bterm;

/* ------------------------------------------------------------------ */
/* Linear map geometry (Dense, Conv2D)                                 */
/* ------------------------------------------------------------------ */

typedef struct lrp_lin {
    int conv;                  /* 0 Dense, 1 Conv2D */
    int64_t n_in, n_out;       /* per sample */
    /* Conv2D: input (C, H, W), output (O, Ho, Wo), weight (O, C/g, kh, kw) */
    int64_t C, H, W, O, Ho, Wo;
    int kh, kw, sh, sw, dh, dw, pt, pl, groups;
    int64_t fanin;             /* weights per output unit: n_in or C/g*kh*kw */
    const void *w;             /* backend tensor, n_out_units * fanin (Dense:
                                  units*n_in; Conv: O * C/g*kh*kw)            */
    const void *b;             /* backend tensor (units) or NULL              */
    const float *w32, *b32;    /* the binary32 originals (b32 NULL when the
                                  bias was computed by BN folding)           */
    /* BN canonization (LRP_F_BN_CANONIZE on the consumer): when non-NULL,
     * the effective weight of output unit (channel) o is the exact product
     * wscale[o] * w_oi (wscale: backend tensor of O values, the BN factor
     * gamma / sqrt(var + eps)); b is the folded bias wscale (b - mu) + beta.
     * Weight modifiers apply to the effective weight: pos(wscale w) =
     * wscale neg(w) when wscale < 0. */
    const void *wscale;
    /* z^B bounds: per-input arrays (n_in, same for every sample) or NULL,
     * then the scalars are used. */
    const float *low, *high;
    float low_s, high_s;
    /* Dense on a token sequence (T, F) (docs/TRANSFORMERS.md section 1):
     * the map acts on the last axis, row by row: n_in = F, n_out = units
     * per row, and the backend ops run over batch * rows rows (a Dense over
     * T rows is one matrix product).  1 for flat inputs and Conv2D. */
    int64_t rows;
} lrp_lin;

/* ------------------------------------------------------------------ */
/* Per-unit classification (stab_div output, plain uint8 arrays)       */
/* ------------------------------------------------------------------ */

enum {
    LRP_CLS_ADD_POS = 1u << 0, /* +eps was added                       */
    LRP_CLS_ADD_NEG = 1u << 1, /* -eps was added                       */
    LRP_CLS_ZERO = 1u << 2,    /* den was +-0                          */
    LRP_CLS_ZNEG = 1u << 3,    /* den was -0                           */
    LRP_CLS_KIND = 7u << 4     /* mask of the kind below               */
};
enum {
    LRP_K_NORMAL = 0u << 4,    /* s = R / stab(den)                    */
    LRP_K_UNDEF = 1u << 4,     /* den (or stab) is 0, no stabilizer: s = 0 */
    LRP_K_SKIP = 2u << 4,      /* skip_zero at den = 0: s = R          */
    LRP_K_EMPTY = 3u << 4,     /* empty alpha-beta part: s = 0         */
    LRP_K_UNSEL = 4u << 4,     /* not selected by this part: s = 0     */
    LRP_K_DROPPED = 5u << 4,   /* selected by no part (Zennit gamma at z = 0) */
    LRP_K_NAN = 6u << 4        /* den or R NaN (float backends only)   */
};

/* ------------------------------------------------------------------ */
/* Stabilizer conventions as data (docs/SPEC.md section 5)             */
/* ------------------------------------------------------------------ */

/* stab(z) = z + s(z) eps.  The one table of s(z) (core/ruletab.c): every
 * backend (MPFR, float32 scalar and AVX-512), the gauge and the oracle's
 * sign-of-zero check read it, by the class of z below; only tests/naive
 * keeps its own formulas, as the independent witness.  A NaN z has the
 * class of its sign bit (the reference never asks: it classifies NaN
 * first).  LRP_S_SKIP: skip_zero's "pass R_j through" (s_j = R_j). */
typedef enum lrp_zclass {
    LRP_ZC_NEG,     /* z < 0   */
    LRP_ZC_NEGZERO, /* -0      */
    LRP_ZC_POSZERO, /* +0      */
    LRP_ZC_POS,     /* z > 0   */
    LRP_ZC_NEGNAN,  /* NaN, sign bit set */
    LRP_ZC_POSNAN,  /* NaN, sign bit clear */
    LRP_ZC_COUNT
} lrp_zclass;
#define LRP_S_SKIP 2
/* s(z) in {-1, 0, +1, LRP_S_SKIP} for convention c and class k */
extern const signed char lrp_stab_sign_tab[LRP_STAB_COUNT][LRP_ZC_COUNT];

static inline lrp_zclass lrp_zclass_of(double z)
{
    int neg = signbit(z) != 0;
    if (isnan(z))
        return neg ? LRP_ZC_NEGNAN : LRP_ZC_POSNAN;
    if (z == 0)
        return neg ? LRP_ZC_NEGZERO : LRP_ZC_POSZERO;
    return z < 0 ? LRP_ZC_NEG : LRP_ZC_POS;
}
static inline int lrp_stab_sign(lrp_stab_id c, lrp_zclass k)
{
    return lrp_stab_sign_tab[c][k];
}
/* 1 when the convention treats -0 and +0 differently (signbit) */
static inline int lrp_stab_zero_signed(lrp_stab_id c)
{
    return lrp_stab_sign_tab[c][LRP_ZC_NEGZERO] != lrp_stab_sign_tab[c][LRP_ZC_POSZERO];
}

/* classify(): per value */
enum {
    LRP_V_NEG = 1u << 0,     /* < 0                 */
    LRP_V_ZERO = 1u << 1,    /* +-0                 */
    LRP_V_SIGNBIT = 1u << 2, /* sign bit set        */
    LRP_V_NAN = 1u << 3,
    LRP_V_INF = 1u << 4
};

/* Absorbed relevance kinds (docs/SPEC.md section 4). */
#define LRP_ABS_LIST(X)              \
    X(BIAS, "bias")                  \
    X(STAB, "stabilizer")            \
    X(BN_SHIFT, "bn_shift")          \
    X(BN_MU, "bn_mean")              \
    X(BN_BETA, "bn_beta")            \
    X(EMPTY, "empty_part")           \
    X(UNDEF, "undefined")            \
    X(DROPPED, "dropped_zero")       \
    X(LN_MEAN, "ln_mean")            \
    X(SOFTMAX_BIAS, "softmax_bias")  \
    X(MASK, "mask")                  \
    X(POSITION, "position")          \
    X(CLS, "cls")

typedef enum lrp_abs_kind {
#define X(e, s) LRP_ABS_##e,
    LRP_ABS_LIST(X)
#undef X
    LRP_ABS_COUNT
} lrp_abs_kind;
const char *lrp_abs_name(lrp_abs_kind k);

/* Sticky numerical flags per layer. */
#define LRP_NF_LIST(X)                                                        \
    X(ZERO_DEN, "zero_denominator")                                           \
    X(ZERO_DEN_NEG, "zero_denominator_negzero")                               \
    X(STAB_AT_ZERO, "stabilizer_at_zero")                                     \
    X(SKIP_ZERO, "skip_zero_passed")                                          \
    X(UNDEFINED, "undefined_zero_denominator")                                \
    X(EMPTY_PART, "empty_part")                                               \
    X(DROPPED, "dropped_at_zero")                                             \
    X(NAN, "nan")                                                             \
    X(INF, "inf")                                                             \
    X(UNDERFLOW32, "underflow_binary32")                                      \
    X(OVERFLOW32, "overflow_binary32")                                        \
    X(UNRESOLVED, "unresolved_at_p")                                          \
    X(FWD_UNDEF, "undefined_forward") /* a norm's 0/0: sigma = 0 (eps 0) */

typedef enum lrp_nflag {
#define X(e, s) LRP_NF_##e,
    LRP_NF_LIST(X)
#undef X
    LRP_NF_COUNT
} lrp_nflag;
const char *lrp_nflag_name(lrp_nflag f);

typedef struct lrp_nflags {
    unsigned bits;                  /* 1u << lrp_nflag */
    int64_t count[LRP_NF_COUNT];    /* occurrences */
    int64_t sample[LRP_NF_COUNT];   /* first occurrence: sample ... */
    int64_t unit[LRP_NF_COUNT];     /* ... and unit within the sample */
} lrp_nflags;
void lrp_nflags_raise(lrp_nflags *f, lrp_nflag k, int64_t sample, int64_t unit);
/* The flags the classes of n units (units a sample) raise into P->flags,
 * as the pipeline raises them (the oracle's layer split re-derives a
 * block's flags check by check with it, oracle/check.c). */
struct lrp_pipe_layer;
void lrp_pipe_flags_from_cls(struct lrp_pipe_layer *P, const uint8_t *cls, int64_t n,
                             int64_t units);
/* count occurrences at once, the first of them at (sample, unit). */
void lrp_nflags_raise_n(lrp_nflags *f, lrp_nflag k, int64_t sample, int64_t unit,
                        int64_t count);

/* ------------------------------------------------------------------ */
/* The backend vtable                                                  */
/* ------------------------------------------------------------------ */

typedef enum lrp_ew_op {
    LRP_EW_ZERO,  /* out = +0                         */
    LRP_EW_COPY,  /* out = a                          */
    LRP_EW_ADD,   /* out = a + b          (rounded)   */
    LRP_EW_MUL,   /* out = a * b          (rounded)   */
    LRP_EW_POS,   /* out = pos(a)                     */
    LRP_EW_NEG,   /* out = neg(a)                     */
    LRP_EW_ABS,   /* out = |a|                        */
    LRP_EW_FMMA,  /* out = c1*a + c2*b, one rounding (c1, c2 binary32) */
    LRP_EW_SCALE  /* out = c1*a                                      */
} lrp_ew_op;

typedef enum lrp_row_op {
    LRP_ROW_MUL, /* out[r*cols+c] = a[r*cols+c] * v[r % vmod]  */
    LRP_ROW_ADD, /* out[r*cols+c] = a[r*cols+c] + v[r % vmod]  */
    LRP_ROW_SET  /* out[r*cols+c] = v[r % vmod]   (a unused)   */
} lrp_row_op;

typedef struct lrp_pool {
    int64_t C, H, W, Ho, Wo;
    int kh, kw, sh, sw, pt, pl;
    int count_include_pad; /* avg: divisor kh*kw, else the real cells */
    int split_ties;        /* max: R_j / (number of maxima) to each   */
} lrp_pool;

/* One part handed to lin_bwd. */
typedef struct lrp_bwd_part {
    float coef;            /* 1, alpha or -beta                        */
    const void *s;         /* batch * n_out: R_j / stab(den_j) (or 0)  */
    const lrp_term *t;
    int nt;
} lrp_bwd_part;

struct lrp_bmm;
struct lrp_bytes;

typedef struct lrp_backend {
    const char *name;
    void *ctx;

    /* Memory.  new: n values, all +0.  at: the tensor at element offset i
     * (a view, not owned).  Sizes are element counts. */
    void *(*tensor_new)(void *ctx, int64_t n);
    /* Optional (NULL: tensor_new is used).  n values of unspecified
     * content, for tensors the pipeline overwrites entirely before reading;
     * freed with tensor_free. */
    void *(*tensor_raw)(void *ctx, int64_t n);
    /* Optional (NULL: tensor_new + set_f32).  A read-only tensor showing n
     * binary32 values in place (no copy), for backends whose number type is
     * binary32; the pipeline never writes into it and never frees it. */
    void *(*wrap_f32)(void *ctx, const float *src, int64_t n);
    /* Nonzero: the backend's lin_fwd / lin_bwd read Dense / Conv2D weights
     * from lrp_lin.w32 (the net's binary32 array, in place) and lrp_lin.w is
     * NULL -- no per-run copy of the weights in the backend's type (for
     * MPFR at 128 bits a copy is 48 bytes per weight: 6.6 GB for VGG-16). */
    int weights_in_place;
    /* Optional (NULL: classify is used).  cnt[0] / first[0]: number of NaN
     * values and the index of the first (-1 if none); cnt[1] / first[1]:
     * the same for +-inf. */
    void (*scan_nonfinite)(void *ctx, const void *t, int64_t n, int64_t cnt[2],
                           int64_t first[2]);
    /* Optional: called at the start and at the end of every run.  Between
     * the two, the tensors the pipeline passes as parameters (lrp_lin.w, b,
     * wscale) neither change nor move, so a backend may memoise work on
     * them by address; such memos must not outlive run_end. */
    void (*run_begin)(void *ctx);
    void (*run_end)(void *ctx);
    void (*tensor_free)(void *ctx, void *t, int64_t n);
    void *(*at)(void *ctx, const void *t, int64_t i);
    /* Exact conversion in (binary32 into the backend type). */
    void (*set_f32)(void *ctx, void *dst, const float *src, int64_t n);
    /* classify each value: LRP_V_* bits into out[n]. */
    void (*classify)(void *ctx, uint8_t *out, const void *t, int64_t n);
    /* Index of the first maximum of t[0..n) (NaN never wins). */
    int64_t (*argmax)(void *ctx, const void *t, int64_t n);

    /* Elementwise: see lrp_ew_op; b may be NULL when unused; out may alias
     * a or b. */
    void (*ew)(void *ctx, lrp_ew_op op, void *out, const void *a, const void *b, float c1,
               float c2, int64_t n);
    /* Row broadcast: see lrp_row_op. rows*cols values; v has vmod values. */
    void (*row)(void *ctx, lrp_row_op op, void *out, const void *a, const void *v,
                int64_t rows, int64_t cols, int64_t vmod);
    /* out = sum_k ins[k] elementwise, one rounding per element (Add). */
    void (*sum_n)(void *ctx, void *out, const void *const *ins, int k, int64_t n);

    /* Linear map, forward / denominator (the op that must be accurate):
     *   out_j = sum_t c_t sum_i inmod_t(x)_i wmod_t(w)_ij + sum_u c_u bmod_u(b_j)
     * for every sample; with absval, every product and bias term is replaced
     * by its absolute value (the gauge sum_i |z_ij| + |b_j|).  nt may be 0
     * (bias terms only); b terms are ignored when L->b is NULL.  The MPFR
     * backend rounds each out_j once from the exact sum; a float backend
     * may use any summation order (its error is what the oracle measures). */
    void (*lin_fwd)(void *ctx, void *out, const lrp_lin *L, const void *x, const lrp_term *t,
                    int nt, const lrp_bterm *bt, int nb, int absval, int64_t batch);
    /* Linear map, backward (relevance to the input):
     *   out_i = sum_k coef_k sum_t c_t inmod_t(x)_i sum_j wmod_t(w)_ij s_kj
     * (the bias does not enter).  MPFR: one rounding per out_i. */
    void (*lin_bwd)(void *ctx, void *out, const lrp_lin *L, const void *x,
                    const lrp_bwd_part *parts, int np, int64_t batch);
    /* Stabilize and divide: s_j = R_j / stab(den_j) with convention `stab`
     * and eps (binary32), writing cls[j] (LRP_CLS_* | LRP_K_*).
     *   - mask (may be NULL): mask[j] == 0 -> s_j = 0, kind UNSEL.
     *   - empty_lost && den_j == 0 -> s_j = 0, kind EMPTY.
     *   - den_j == 0 and no effective stabilizer (eps == 0, or s(den) == 0)
     *     -> s_j = 0, kind UNDEF (never NaN); skip_zero at 0 -> s_j = R_j.
     *   - stab(den_j) == 0 (positive convention with den = -eps) -> UNDEF. */
    void (*stab_div)(void *ctx, void *s, uint8_t *cls, const void *R, const void *den,
                     const uint8_t *mask, lrp_stab_id stab, float eps, int empty_lost,
                     int64_t n);
    /* Bookkeeping of one part (coef) per unit, adding into abs[kind] (each
     * may be NULL = not tracked):
     *   NORMAL: abs[BIAS] += coef s_j bden_j (bden may be NULL),
     *           abs[STAB] += coef s_j (+-eps) when eps was added;
     *   SKIP:   abs[STAB] += coef R_j, abs[BIAS] += coef R_j bden_j;
     *   UNDEF / EMPTY / DROPPED: abs[kind] += coef R_j;  UNSEL: nothing. */
    void (*absorb)(void *ctx, void *const *abs, const void *R, const void *s,
                   const void *bden, const uint8_t *cls, float coef, float eps, int64_t n);

    /* Pools (per sample; batch samples).  maxpool: padded cells are -inf
     * (never win).  max_bwd: R_i = sum of R_j over windows j that i wins
     * (ties: first index in row-major window order, or split evenly).
     * avg_fwd: y_j = sum_i a_i / k_j.  avg_bwd: out_i = a_i sum_j s_j / k_j. */
    void (*max_fwd)(void *ctx, void *out, const void *x, const lrp_pool *P, int64_t batch);
    void (*max_bwd)(void *ctx, void *out, const void *x, const void *R, const lrp_pool *P,
                    int64_t batch);
    void (*avg_fwd)(void *ctx, void *out, const void *x, const lrp_pool *P, int64_t batch);
    void (*avg_bwd)(void *ctx, void *out, const void *x, const void *s, const lrp_pool *P,
                    int64_t batch);

    /* BatchNorm per channel (C values each): wc = gamma / sqrt(var + eps),
     * negwmu = -wc mu, beta = beta, shift = beta - wc mu.  bn_fwd: y = wc x +
     * shift for x of shape (batch, C, hw) (one rounding per value). */
    void (*bn_coef)(void *ctx, void *wc, void *negwmu, void *beta, void *shift,
                    const lrp_layer *l, int64_t C);
    void (*bn_fwd)(void *ctx, void *y, const void *x, const void *wc, const void *shift,
                   int64_t batch, int64_t C, int64_t hw);

    /* Conservation residual of one layer and sample: one correctly rounded
     *   r = sum(in[k]) + sum(abs[k]) - sum(out)
     * and the scale  sum |all of them|,  as doubles. */
    void (*residual)(void *ctx, double *r, double *scale, const void *const *in,
                     const int64_t *n_in, int k_in, const void *const *absd, int k_abs,
                     int64_t n_abs, const void *out, int64_t n_out);

    /* ---- token layers (docs/TRANSFORMERS.md sections 2, 3; core/kind_token.c) ----
     * norm_fwd: LayerNorm (rms 0) or RMSNorm (rms 1) of each of `rows` rows
     * of F values (the last axis):
     *   LayerNorm  mu = sum_i x_i / F,  var = sum_i (x_i - mu)^2 / F (two
     *              passes),  sigma = sqrt(var + eps),  y = w (x - mu) / sigma + b
     *   RMSNorm    mu = 0,  sigma = sqrt(sum_i x_i^2 / F + eps),  y = w x / sigma
     * w, b: binary32 arrays of F, or NULL (weight 1, bias 0).  stat gets
     * (mu, sigma) per row (2 * rows values).  sigma = 0 (eps 0 and a
     * constant or zero row) is 0/0: y is NaN there, in every backend. */
    void (*norm_fwd)(void *ctx, void *y, void *stat, const void *x, const float *w,
                     const float *b, float eps, int rms, int64_t rows, int64_t F);
    /* The frozen-sigma LayerNorm's input relevance, with s = R / stab(y):
     *   c_i = w_i / sigma,  rin_i = x_i c_i s_i - (centre ? (x_i / F) sum_k c_k s_k : 0)
     * (centre 1: ln_linear, the mean's share back to the inputs; 0: ln_fine)
     * and absmean_k = -c_k mu s_k when absmean is not NULL (ln_fine's
     * absorbed mean share).  A row with sigma = 0 gives NaN. */
    void (*norm_bwd)(void *ctx, void *rin, void *absmean, const void *x, const void *stat,
                     const float *w, const void *s, int centre, int64_t rows, int64_t F);
    /* y = f(x) elementwise, f: lrp_act_op. */
    void (*act_map)(void *ctx, void *y, const void *x, int op, int64_t n);
    /* ---- the attention kinds (core/kind_attn.c; reference/ref_attn.c,
     * fastpath/fp_attn.c; docs/TRANSFORMERS.md sections 4 and 5) ---- */
    /* Row softmax: rows of `cols` values, out_i = exp(x_i - m) / sum_k
     * exp(x_k - m), m the row's maximum (MPFR: exact exp and sum, one
     * rounding each; float32: max-subtracted, sum in index order).  mask
     * (may be NULL): entry c of row r is masked when mask[(r % mrows) *
     * cols + c] != 0: its x is ignored (a -inf logit) and out is +0
     * exactly; a row with every entry masked is all +0 (never NaN). */
    void (*softmax_fwd)(void *ctx, void *out, const void *x, const uint8_t *mask, int64_t mrows,
                        int64_t rows, int64_t cols);
    /* AttnLRP's Taylor rule (TRANSFORMERS 4.1) per row, with sR = sum_j R_j:
     *   d_i = R_i - s_i sR,  rin_i = xr_i d_i   (masked entries: +0)
     *   absb[r] = sum_j R_j (1 - x_j + xbar), xbar = sum_i s_i x_i
     *   absm[r] = sum_i (x_i - xr_i) d_i        (absm may be NULL)
     * over the unmasked entries; x: the logits the softmax saw, xr: where
     * the relevance is read (x itself, or the pre-mask scores). */
    void (*softmax_taylor)(void *ctx, void *rin, void *absb, void *absm, const void *x,
                           const void *xr, const void *s, const void *R, const uint8_t *mask,
                           int64_t mrows, int64_t rows, int64_t cols);
    /* out[r] = sum_c a[r * cols + c], one rounding (MPFR: exact sum). */
    void (*rowsum)(void *ctx, void *out, const void *a, int64_t rows, int64_t cols);
    /* Strided batched product (lrp_bmm): out = c * sum_k a b, one rounding
     * of the exact value in MPFR; float32: the sum in k order, then c. */
    void (*bmm)(void *ctx, void *out, const void *a, const void *b, const struct lrp_bmm *G);

    /* Optional (NULL: activations stay as they are).  A streamed run keeps
     * an activation that only backward steps still read in a compact,
     * lossless form: pack consumes t (n values) and returns the packed form,
     * or NULL when it cannot (t is then left as it was); unpack returns a
     * new tensor with the same values (the packed form stays); pack_free
     * frees a packed form. */
    void *(*pack)(void *ctx, void *t, int64_t n);
    void *(*unpack)(void *ctx, const void *pk, int64_t n);
    void (*pack_free)(void *ctx, void *pk);
    /* Optional (NULL: the backend cannot run under the layer split,
     * lrp_pipe_run_split).  Values as plain bytes for an exchange between
     * processes, lossless: wire_size bytes hold n values; to_wire writes
     * t[0..n) into buf; from_wire sets t[0..n) (a tensor_new tensor) from
     * such bytes. */
    size_t (*wire_size)(void *ctx, int64_t n);
    void (*to_wire)(void *ctx, void *buf, const void *t, int64_t n);
    void (*from_wire)(void *ctx, void *t, const void *buf, int64_t n);
    /* Required with to_wire: the exact partial sums of the layer split of
     * an attention (core/kind_attn.c), for a sum whose terms lie on several
     * ranks.  Each rank sends the EXACT value of the sum of its terms; the
     * receiver adds the ranks' exact values and rounds once, which is the
     * one rounding of the same exact sum one process makes (MPFR: mpfr_sum
     * rounds the exact value), so the bits are one process's.
     *   bmm_exact: appends to buf, cell by cell of G in the order (i1, i2,
     *     m, n), the exact value of sum_k a b as bmm sums it (c in each
     *     product unless c is a power of two, which sum_exact applies);
     *   rowsum_exact: appends the exact sum of each of rows rows of cols;
     *   sum_exact: for each cell of G (i1, i2, m, n; its o strides and c),
     *     out = one rounding of the sum of the next exact value of each of
     *     the n buffers src[k] (advanced past it, never beyond end[k]),
     *     then times c when c is a power of two (as bmm does).
     * A sum of no terms is -0: it adds nothing, the sign of a zero sum
     * included; a sum too wide to hold exactly (its terms over 2^22 bits
     * apart) is sent as its terms, which the receiver sums with the rest.
     * They return 0, or -1: out of memory, or bytes that end early. */
    int (*bmm_exact)(void *ctx, struct lrp_bytes *buf, const void *a, const void *b,
                     const struct lrp_bmm *G);
    int (*rowsum_exact)(void *ctx, struct lrp_bytes *buf, const void *a, int64_t rows,
                        int64_t cols);
    int (*sum_exact)(void *ctx, void *out, const struct lrp_bmm *G, const unsigned char **src,
                     const unsigned char *const *end, int n);
} lrp_backend;

/* A growing buffer of bytes (the exact partial sums above). */
typedef struct lrp_bytes {
    unsigned char *p;
    size_t n, cap;
} lrp_bytes;
/* appends n bytes; 0, or -1 out of memory (b unchanged) */
int lrp_bytes_put(lrp_bytes *b, const void *src, size_t n);
/* n more bytes at the end, not set; NULL out of memory (b unchanged) */
unsigned char *lrp_bytes_grow(lrp_bytes *b, size_t n);
void lrp_bytes_free(lrp_bytes *b);

/* The elementwise activations of act_map. */
typedef enum lrp_act_op {
    LRP_ACT_GELU,      /* x Phi(x) = x (1 + erf(x / sqrt 2)) / 2                    */
    LRP_ACT_GELU_TANH, /* x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2 (PyTorch
                          approximate='tanh')                                       */
    LRP_ACT_SILU,      /* x / (1 + exp(-x))                                         */
    LRP_ACT_TANH       /* tanh(x)                                                   */
} lrp_act_op;

/* One batched product for lrp_backend.bmm: for i1 < n1, i2 < n2, m < M,
 * n < N: out[i1 o1 + i2 o2 + m om + n on] =
 *   c * sum_{k < K} a[i1 a1 + i2 a2 + m am + k ak] b[i1 b1 + i2 b2 + k bk + n bn]
 * (element offsets from the tensors given). */
typedef struct lrp_bmm {
    int64_t n1, n2, M, N, K;
    int64_t a1, a2, am, ak;
    int64_t b1, b2, bk, bn;
    int64_t o1, o2, om, on;
    float c;
} lrp_bmm;

/* ------------------------------------------------------------------ */
/* The driver                                                          */
/* ------------------------------------------------------------------ */

typedef struct lrp_pipe_layer {
    int64_t n;              /* values per sample of the output */
    void *act;              /* forward output, batch * n (NULL while packed) */
    void *act_packed;       /* backend pack of act (streamed runs), or NULL */
    void *rel;              /* relevance at the output, batch * n */
    int nonneg;             /* output known >= 0 (ReLU, max of such, ...) */
    lrp_rule_spec rule;     /* the rule used (BN canonization moves rules) */
    const lrp_rule_desc *desc; /* linear layers */
    /* Linear (or Add / BN / AvgPool) parts: denominators and classes. */
    int n_parts;
    float coef[LRP_PIPE_MAX_PARTS];
    int64_t n_units;        /* units per sample of den / abs */
    void *den[LRP_PIPE_MAX_PARTS];   /* batch * n_units (NULL if part skipped) */
    void *gauge[LRP_PIPE_MAX_PARTS]; /* sum |z_ij| + |bias terms|, or NULL */
    uint8_t *cls[LRP_PIPE_MAX_PARTS];
    void *abs[LRP_ABS_COUNT];        /* batch * n_units, or NULL: bias and
                                        stabilizer always for dividing layers;
                                        undefined / empty / dropped only when
                                        such a unit occurred */
    /* This layer's relevance contribution to each input, kept for the
     * conservation audit: rin[k] has batch * numel(input k). */
    int n_rin;
    void *rin[LRP_MAX_INPUTS];
    int64_t n_rin_per[LRP_MAX_INPUTS];
    int owns_den[LRP_PIPE_MAX_PARTS]; /* 0: den aliases act */
    /* Ownership (lrp_pipe_free frees only what is owned): rel may be a view
     * of the relevance a single pass-through consumer received (same
     * values); rin[k] may be a view of rel (pass-through layers); bnp[0..1]
     * of a Dense/Conv2D may be views of the net's binary32 weights. */
    int rel_owned;
    int rin_alias[LRP_MAX_INPUTS];
    int params_borrowed;
    /* Folded bias of a Dense/Conv2D canonized with its BN consumer (the
     * folded weights are wscale * w, see lrp_lin.wscale). */
    void *fold_b;
    int64_t n_fold_b;
    /* BatchNorm per-channel values: wc, negwmu, beta, shift (C each);
     * Dense/Conv2D: weights and bias as backend tensors.  n_bnp: their
     * element counts (set by the kind's forward step, for lrp_pipe_free). */
    void *bnp[4];
    int64_t n_bnp[4];
    int64_t bn_C;
    int folded_into;        /* index of the BN consumer or -1 */
    void *act_fwd;          /* local mode with keep_fwd: the output this
                               layer computed before act[li] replaced it
                               (batch * n), else NULL */
    double cons_resid;      /* max over samples |residual| / scale, or 0 */
    int64_t cons_sample;    /* argmax */
    lrp_nflags flags;
    /* Under the layer split, a layer run whole (lrp_pipe_split_is_whole):
     * the flags its kind's forward [0] and LRP [1] steps raised over the
     * whole layer (the same on every rank), apart from the scans of this
     * rank's blocks; flags holds both.  The oracle's merge takes them
     * from one rank (oracle/check.c sp_flag_checks). */
    lrp_nflags whole_flags[2];
} lrp_pipe_layer;

typedef struct lrp_pipe {
    const lrp_backend *be;
    const lrp_net *net;     /* under the layer split: this rank's share of
                               the net (lrp_pipe_run_split), else the net */
    int n_layers;
    int64_t batch;
    lrp_pipe_layer *L;
    struct lrp_split_net *split; /* the layer split's own data, or NULL */
} lrp_pipe;

/* Runs forward and LRP backward over an inferred net with the rules in
 * net->layers[i].rule.  On success *out holds everything (free with
 * lrp_pipe_free).  Recoverable errors (out of memory, unsupported) return a
 * status with err set. */
lrp_status lrp_pipe_run(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                        lrp_err *err);
void lrp_pipe_free(lrp_pipe *p);
/* LRP_PIPE_LEAN: keep less for big nets -- no gauges (kappa), and each
 * layer's rin[k] is freed once passed on (rel of the input keeps the sum).
 * LRP_PIPE_RELEVANCE (implies LEAN): the engine mode (`lrp-oracle fast`,
 * a heat-map run): every layer's act and rel and the numerical flags
 * (zero denominators, stabilizer at zero, NaN / inf with first location)
 * are computed as always, bit for bit; the audit data is not -- no absorbed
 * relevance (abs), no conservation residual (cons_resid = 0), and the
 * denominators and classes are freed once the layer is done (den, cls NULL
 * afterwards). */
#define LRP_PIPE_LEAN 1u
#define LRP_PIPE_RELEVANCE 2u
/* LRP_PIPE_NO_GAUGE: no gauge[k] tensors (sum |z_ij|, an extra linear pass
 * per part) -- the oracle computes its own gauge (oracle/gauge.c) and never
 * reads them.  LRP_PIPE_KEEP_RIN (with RELEVANCE): every layer's rin[k] is
 * kept as in the full mode (the oracle's local runs read them), the rest
 * of the audit data is not.  Neither changes any value that is kept. */
#define LRP_PIPE_NO_GAUGE 4u
#define LRP_PIPE_KEEP_RIN 8u
lrp_status lrp_pipe_run_ex(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                           unsigned flags, lrp_err *err);

/* Local mode (the oracle's "this layer alone"): act[li] replaces layer li's
 * forward output as soon as it is computed, and rel[li] replaces the
 * relevance arriving at its output just before its backward step, so that
 * every layer's rin[k] is its own result on the given inputs (binary32
 * arrays, batch-major; NULL entries leave the path's own values). */
typedef struct lrp_pipe_local {
    float *const *act;
    float *const *rel;
    /* keep_fwd: before act[li] replaces layer li's output, keep what the
     * layer computed from the given inputs in lrp_pipe_layer.act_fwd (the
     * oracle's local judgement of a trace's forward activations) */
    int keep_fwd;
    /* Optional (NULL: the arrays are all there): called before act[li]
     * (bwd 0) or rel[li] (bwd 1) is read, with done 0, and once it was
     * copied, with done 1, so that the caller may hold one array at a time
     * (the oracle's layer split fetches it from the ranks).  Nonzero stops
     * the run (LRP_E_NOMEM, "the given inputs could not be had"). */
    int (*take)(void *ctx, int li, int bwd, int done);
    void *take_ctx;
} lrp_pipe_local;
lrp_status lrp_pipe_run_local(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                              unsigned flags, const lrp_pipe_local *loc, lrp_err *err);

/* Progress (the CLI's per-layer display): when set, fn is called before
 * each layer's forward step (bwd 0) and backward step (bwd 1) of every run
 * in this process.  NULL (the default) turns it off.  Not thread-safe: set
 * it before runs start. */
typedef void (*lrp_pipe_progress_fn)(void *ctx, const lrp_net *net, int li, int bwd);
void lrp_pipe_set_progress(lrp_pipe_progress_fn fn, void *ctx);

/* A hook called after each layer's forward step (bwd 0: its output and,
 * in local mode with keep_fwd, act_fwd are final; STREAM frees act_fwd
 * after it) and after each layer's backward step (bwd 1: backward order, the
 * input layer last), when the layer's relevance R at its output, its
 * activations, its contributions rin[k], absorbed relevance, denominators,
 * classes, flags and residual are final and before rin[k] is passed on.
 * With LRP_PIPE_STREAM (implies LEAN: rin[k] is not kept) the layer's
 * activations, relevance, absorbed relevance and denominators are freed
 * after the hook returns (with KEEP_RIN too, rin[k] is kept and so is R
 * where a pass-through layer's rin[0] is R), so a run holds the forward activations and the
 * relevance in flight, not every intermediate: what the caller needs it
 * takes in the hook.  Values are the same bit for bit as without it. */
#define LRP_PIPE_STREAM 16u /* with a hook; implies LEAN unless KEEP_RIN */
typedef void (*lrp_pipe_hook)(void *ctx, const lrp_pipe *p, int li, int bwd);
lrp_status lrp_pipe_run_hooked(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                               unsigned flags, const lrp_pipe_local *loc, lrp_pipe_hook hook,
                               void *hook_ctx, lrp_err *err);

/* ---- The layer split (docs/SCALING.md "The layer split") ----
 *
 * One run of the pipeline spread over `size` processes (MPI ranks) that
 * each hold a contiguous block of every tensor's first axis (the channels
 * of (C, H, W), the features of a flat vector, the tokens of (T, F)):
 * rank q's block of an extent E is [q E/size + min(q, E % size), ...)
 * with the first E % size ranks one longer (lrp_pipe_split_block).  The blocks of a tensor are
 * the same wherever it appears, so the block of a layer's output a rank
 * keeps is the block of the next layer's input it reads:
 *
 *   - Input, Conv2D (groups 1) and Dense (flat input) split their own
 *     output, and so do the layers run whole (below); ReLU, BatchNorm
 *     (explicit or pass), the pools, Dropout, Add (inputs split alike)
 *     and a depthwise Conv2D (one filter a channel) keep their input's
 *     block and run on it alone; Flatten keeps its input's block of
 *     cells.
 *   - Conv2D / Dense forward: the whole input is gathered (a transient
 *     tensor, freed after the step), the block of output channels is
 *     computed from the weights' block of rows.
 *   - Conv2D / Dense backward: each rule part's quotients s_j = R_j /
 *     stab(z_j) of the rank's output block are gathered in full, and the
 *     rank computes R_i of its block of INPUT cells from them (the weights'
 *     block of columns, the input's block).  Every R_i is then one
 *     rounding of the same exact sum as in one process (core/pipeline.h:
 *     the MPFR lin_bwd), so the values are bit for bit those of one
 *     process (never partial sums over output blocks added afterwards:
 *     that would round twice).
 *   - On a token sequence (T, F), the token-wise kinds (Dense, LayerNorm,
 *     RMSNorm, GELU, SiLU, Tanh, Embedding, Position, Mul) keep their
 *     input's block of tokens and run on it alone, with every weight.
 *   - MultiHeadAttention keeps its input's block of tokens as its rows of
 *     queries (core/kind_attn.c): every rank gathers every token's q, k,
 *     v; the relevance of a key or value is a sum over all queries, so
 *     each rank sends, for every rank's keys, the EXACT sum of its own
 *     queries' terms (lrp_backend.bmm_exact) and the owner rounds the
 *     sum of those once (sum_exact): one process's rounding of the same
 *     exact value.  Its per-sample absorbed totals are summed the same
 *     way and its flags raised from every rank's classes, so those are
 *     the whole layer's on every rank (lrp_pipe_split_is_whole is 1 for
 *     it: the oracle takes them from rank 0, as for a layer run whole).
 *   - The output relevance: the last layer's activations are gathered to
 *     find each sample's maximum (when no target or r_out says).
 *
 * A layer the split does not divide runs whole on every rank (the
 * whole-layer fallback, lrp_pipe_split_is_whole): Concatenate, Reshape,
 * Conv2D with groups other than depthwise, Softmax, the attention's
 * stages (AttnScores, AttnSoftmax, AttnContext), SelectToken, ToTokens,
 * ClsToken, a LayerNorm of a flat vector, an Add of inputs split
 * differently.
 *   - forward: the inputs are gathered whole, the kind's forward step of
 *     one process runs on the whole net, and the rank keeps its block of
 *     the output: its own split of the first axis (an Add: its first
 *     input's block, so that no block depends on which layers fall back).
 *   - backward: R at the output and the activations the step reads (the
 *     inputs' and its own; none for Concatenate) are gathered whole again,
 *     not kept since the forward step; the kind's LRP step of one process
 *     runs, and the rank keeps each input's block of rin[k].  A
 *     pass-through kind (Reshape) hands on the input's block of R.
 *   The same step on the same values: the blocks are one process's bit
 *   for bit.  The whole tensors of the one layer are held transiently,
 *   freed after its step; the parameters as backend tensors (a grouped
 *   Conv2D's weights) are the whole layer's, kept for the run.
 * A BatchNorm canonized into its Conv2D / Dense (--bn canonize) is
 * channel-local like any BatchNorm: its block is that layer's output
 * block, so its forward folds the block's bias into the layer on the same
 * rank; the layer's backward, which reads every output channel's
 * quotient, computes every channel's BatchNorm factor from the whole net.
 * Nothing is refused, here or by the oracle's split runs.  A
 * layer with fewer channels than ranks leaves some ranks an empty block
 * (they still make every exchange).  lrp_pipe_run_split runs
 * LRP_PIPE_RELEVANCE (the `reference` trace: activations and relevance);
 * lrp_pipe_run_split_hooked below the oracle's runs.  The numerical flags
 * each rank keeps are its block's (counts of its cells, first locations
 * within its block): the trace does not hold them.
 *
 * exchange (collective, every rank in the same order): rank q's n bytes,
 * concatenated in rank order, on every rank (*all malloc'ed, *total
 * bytes); fail non-NULL: this rank failed (fail: its one-line message) and
 * sends nothing.  Returns 0, or -1 when some rank failed (then no rank
 * makes another exchange in this run). */
typedef struct lrp_pipe_split {
    int rank, size;
    int (*exchange)(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                    size_t *total);
    void *ctx;
} lrp_pipe_split;

/* The block [*lo, *hi) of layer li's first axis held by rank q of size
 * under the layer split. */
void lrp_pipe_split_block(const lrp_net *net, int li, int q, int size, int64_t *lo, int64_t *hi);
/* Sample by sample, the cells [lo, hi) of each of B rows of n values of
 * src: a rank's block of a batch-major tensor (malloc'ed; NULL when out of
 * memory). */
float *lrp_pipe_split_slice(const float *src, int64_t B, int64_t n, int64_t lo, int64_t hi);
/* 1 when layer li's per-unit data (unit count, classes, absorbed
 * relevance) and the flags of its steps are the whole layer's on every
 * rank under the layer split over size ranks: it runs whole (the
 * whole-layer fallback above), or it is a MultiHeadAttention divided by
 * queries, whose totals and flags every rank forms whole. */
int lrp_pipe_split_is_whole(const lrp_net *net, int li, int size);
/* The run of this rank (flags must include LRP_PIPE_RELEVANCE).  *out's
 * net is this rank's share (its layers' shapes are the blocks; free with
 * lrp_pipe_free); p->L[li].act and rel hold batch * (block of layer li)
 * values, batch-major.  On an error every rank returns one (a failing
 * rank tells the others through the exchange). */
lrp_status lrp_pipe_run_split(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                              unsigned flags, const lrp_pipe_split *sp, lrp_err *err);
/* The same with a hook and local mode (lrp_pipe_run_hooked), for the
 * oracle's runs (oracle/check.c): flags other than RELEVANCE keep the
 * audit data of this rank's block (absorbed relevance, denominators,
 * classes, contributions: each of its own block of units and cells) but
 * need LRP_PIPE_NO_GAUGE (the gauge tensors are not split), and leave
 * cons_resid 0 (a rank's blocks of a layer's input and output do not
 * conserve: the caller sums the blocks' terms); the numerical flags are
 * the block's (first locations within it).  loc's arrays are this rank's
 * blocks, batch-major (B x the block of each layer).  The hook sees this
 * rank's share (p->net, p->L[li].n the block's). */
lrp_status lrp_pipe_run_split_hooked(lrp_pipe **out, const lrp_backend *be, const lrp_net *net,
                                     unsigned flags, const lrp_pipe_local *loc,
                                     lrp_pipe_hook hook, void *hook_ctx,
                                     const lrp_pipe_split *sp, lrp_err *err);

/* Geometry helpers shared by both backends. */
void lrp_pipe_lin_geom(lrp_lin *L, const lrp_net *net, int li);
void lrp_pipe_pool_geom(lrp_pool *P, const lrp_net *net, int li);

#ifdef __cplusplus
}
#endif
#endif /* LRP_PIPELINE_H */
