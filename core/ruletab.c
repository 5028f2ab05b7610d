/*
 * ruletab.c -- the linear LRP rules as data (docs/SPEC.md section 2).
 *
 * Every row is R_i = sum_k coef_k sum_j num_kij / stab(den_kj) R_j with
 * num_kij = sum_t c_t inmod_t(a)_i wmod_t(w)_ij and
 * den_kj  = sum_i num_kij + sum_u c_u bmod_u(b_j).
 * Conservation per unit: sum_i R_i + absorbed = R_j with absorbed = bias
 * terms (coef s bden), stabilizer (coef s (stab - den)), and the kinds
 * empty / undefined / dropped (core/pipeline.h).
 *
 *  lrp0, epsilon  one part: a w, bias b.  (eps from the spec; lrp0's
 *                 default eps is 0 so a zero den is reported as undefined)
 *  gamma          a (w + g w+), bias b + g b+: terms (a, w, 1), (a, w+, g)
 *  gamma, generalized (Zennit >= 0.5): z_j >= 0 (or > 0 with
 *                 ZENNIT_GAMMA_DROP0): a+ (w + g w+) + a- (w + g w-),
 *                 bias b + g b+;  z_j < 0: a+ (w + g w-) + a- (w + g w+),
 *                 bias b + g b-.   Plain gamma with ZENNIT_GAMMA_DROP0: the
 *                 unit is dropped (R_j absorbed as "dropped") when z_j == 0.
 *                 CAPTUM_GAMMA_FULLBIAS (takes precedence over the two
 *                 above): a (w + g w+), bias b unmodified (Captum's
 *                 GammaRule changes the weights only).
 *  alphabeta      alpha (a+w+ + a-w-) / (z+ + b+)  -  beta (a+w- + a-w+) / (z- + b-);
 *                 den == 0 of a part = empty part (numerators all 0).
 *                 INNV_AB_FULLBIAS: b in both denominators (no longer empty);
 *                 CAPTUM_A1B0: alpha a w+ / (sum a w+ + b), -beta a w- / (sum a w- + b).
 *  zplus          alphabeta with alpha 1, beta 0 (same flags).
 *  wsquare        w^2 / (sum w^2 + b^2).   flat: 1 / (count of real inputs).
 *  zbox           (a w - l w+ - h w-) / sum of those (the bias cancels).
 */
#include "pipeline.h"

#include <stddef.h>

#define T(i, w, c) {LRP_IM_##i, LRP_WM_##w, LRP_C_##c}
#define B(m, c) {LRP_BM_##m, LRP_C_##c}

enum {
    D_EPS,
    D_GAMMA,
    D_GAMMA_DROP0,
    D_GAMMA_GEN,
    D_GAMMA_GEN_DROP0,
    D_GAMMA_CAPTUM,
    D_AB,
    D_AB_FULLBIAS,
    D_AB_CAPTUM,
    D_WSQUARE,
    D_FLAT,
    D_ZBOX,
    D_COUNT
};

static const lrp_rule_desc tab[D_COUNT] = {
    [D_EPS] = {"z", 1, {{LRP_C_ONE, LRP_SEL_ALL, 0, 1, 1, {T(ID, ID, ONE)}, {B(ID, ONE)}}}},
    [D_GAMMA] = {"gamma", 1,
                 {{LRP_C_ONE, LRP_SEL_ALL, 0, 2, 2, {T(ID, ID, ONE), T(ID, POS, GAMMA)},
                   {B(ID, ONE), B(POS, GAMMA)}}}},
    [D_GAMMA_DROP0] = {"gamma/zennit_drop0", 1,
                       {{LRP_C_ONE, LRP_SEL_ZNONZERO, 0, 2, 2,
                         {T(ID, ID, ONE), T(ID, POS, GAMMA)}, {B(ID, ONE), B(POS, GAMMA)}}}},
    /* Captum's GammaRule modifies the weights only: the bias stays b in
     * the denominator (not b + g b+), inputs are not split */
    [D_GAMMA_CAPTUM] = {"gamma/captum_fullbias", 1,
                        {{LRP_C_ONE, LRP_SEL_ALL, 0, 2, 1, {T(ID, ID, ONE), T(ID, POS, GAMMA)},
                          {B(ID, ONE)}}}},
    [D_GAMMA_GEN] = {"gamma/generalized", 2,
                     {{LRP_C_ONE, LRP_SEL_ZNONNEG, 0, 4, 2,
                       {T(POS, ID, ONE), T(POS, POS, GAMMA), T(NEG, ID, ONE), T(NEG, NEG, GAMMA)},
                       {B(ID, ONE), B(POS, GAMMA)}},
                      {LRP_C_ONE, LRP_SEL_ZNEG, 0, 4, 2,
                       {T(POS, ID, ONE), T(POS, NEG, GAMMA), T(NEG, ID, ONE), T(NEG, POS, GAMMA)},
                       {B(ID, ONE), B(NEG, GAMMA)}}}},
    [D_GAMMA_GEN_DROP0] = {"gamma/generalized_drop0", 2,
                           {{LRP_C_ONE, LRP_SEL_ZPOS, 0, 4, 2,
                             {T(POS, ID, ONE), T(POS, POS, GAMMA), T(NEG, ID, ONE),
                              T(NEG, NEG, GAMMA)},
                             {B(ID, ONE), B(POS, GAMMA)}},
                            {LRP_C_ONE, LRP_SEL_ZNEG, 0, 4, 2,
                             {T(POS, ID, ONE), T(POS, NEG, GAMMA), T(NEG, ID, ONE),
                              T(NEG, POS, GAMMA)},
                             {B(ID, ONE), B(NEG, GAMMA)}}}},
    [D_AB] = {"alphabeta", 2,
              {{LRP_C_ALPHA, LRP_SEL_ALL, 1, 2, 1, {T(POS, POS, ONE), T(NEG, NEG, ONE)},
                {B(POS, ONE)}},
               {LRP_C_MINUS_BETA, LRP_SEL_ALL, 1, 2, 1, {T(POS, NEG, ONE), T(NEG, POS, ONE)},
                {B(NEG, ONE)}}}},
    [D_AB_FULLBIAS] = {"alphabeta/innvestigate_fullbias", 2,
                       {{LRP_C_ALPHA, LRP_SEL_ALL, 0, 2, 1, {T(POS, POS, ONE), T(NEG, NEG, ONE)},
                         {B(ID, ONE)}},
                        {LRP_C_MINUS_BETA, LRP_SEL_ALL, 0, 2, 1,
                         {T(POS, NEG, ONE), T(NEG, POS, ONE)}, {B(ID, ONE)}}}},
    [D_AB_CAPTUM] = {"alphabeta/captum_a1b0", 2,
                     {{LRP_C_ALPHA, LRP_SEL_ALL, 0, 1, 1, {T(ID, POS, ONE)}, {B(ID, ONE)}},
                      {LRP_C_MINUS_BETA, LRP_SEL_ALL, 0, 1, 1, {T(ID, NEG, ONE)}, {B(ID, ONE)}}}},
    [D_WSQUARE] = {"wsquare", 1,
                   {{LRP_C_ONE, LRP_SEL_ALL, 0, 1, 1, {T(ONES, SQUARE, ONE)}, {B(SQUARE, ONE)}}}},
    [D_FLAT] = {"flat", 1, {{LRP_C_ONE, LRP_SEL_ALL, 0, 1, 0, {T(ONES, ONES, ONE)}, {{0, 0}}}}},
    [D_ZBOX] = {"zbox", 1,
                {{LRP_C_ONE, LRP_SEL_ALL, 0, 3, 0,
                  {T(ID, ID, ONE), T(LOW, POS, MINUS_ONE), T(HIGH, NEG, MINUS_ONE)},
                  {{0, 0}}}}},
};

/* s(z) of each stabilizer convention (docs/SPEC.md section 5), by the class
 * of z: z < 0, -0, +0, z > 0, NaN with the sign bit, NaN without (the float
 * code meets NaN denominators; the NaN columns repeat what the float32 code
 * has always done: s(NaN) changes only the "eps added" bits of a unit whose
 * quotient is NaN anyway).  The table is generated from LRP_STAB_LIST: a
 * convention without its SR_ row below does not compile. */
#define SK LRP_S_SKIP
#define SR_SIGN0_POS {-1, +1, +1, +1, +1, +1}  /* z < 0 ? -1 : +1 */
#define SR_SIGNBIT {-1, -1, +1, +1, -1, +1}    /* the sign bit, also of 0 */
#define SR_SIGN0_ZERO {-1, 0, 0, +1, 0, 0}     /* sign(z), sign(0) = 0 */
#define SR_ZERO_ONLY {0, +1, +1, 0, 0, 0}      /* eps only where z = 0 */
#define SR_SKIP_ZERO {-1, SK, SK, +1, 0, 0}    /* z = 0: s_j = R_j */
#define SR_POSITIVE {+1, +1, +1, +1, +1, +1}   /* always + eps */
const signed char lrp_stab_sign_tab[LRP_STAB_COUNT][LRP_ZC_COUNT] = {
#define X(e, s) [LRP_STAB_##e] = SR_##e,
    LRP_STAB_LIST(X)
#undef X
};
#undef SK

const lrp_rule_desc *lrp_rule_describe(const lrp_rule_spec *r)
{
    switch (r->rule) {
    case LRP_RULE_ZERO:
    case LRP_RULE_EPSILON: return &tab[D_EPS];
    case LRP_RULE_GAMMA: {
        int drop0 = (r->flags & LRP_F_ZENNIT_GAMMA_DROP0) != 0;
        if (r->flags & LRP_F_CAPTUM_GAMMA_FULLBIAS)
            return &tab[D_GAMMA_CAPTUM];
        if (r->flags & LRP_F_GAMMA_GENERALIZED)
            return &tab[drop0 ? D_GAMMA_GEN_DROP0 : D_GAMMA_GEN];
        return &tab[drop0 ? D_GAMMA_DROP0 : D_GAMMA];
    }
    case LRP_RULE_ALPHABETA:
    case LRP_RULE_ZPLUS:
        if (r->flags & LRP_F_CAPTUM_A1B0)
            return &tab[D_AB_CAPTUM];
        if (r->flags & LRP_F_INNV_AB_FULLBIAS)
            return &tab[D_AB_FULLBIAS];
        return &tab[D_AB];
    case LRP_RULE_WSQUARE: return &tab[D_WSQUARE];
    case LRP_RULE_FLAT: return &tab[D_FLAT];
    case LRP_RULE_ZBOX: return &tab[D_ZBOX];
    default: return NULL;
    }
}

/* The composites (Zennit's names), one row each, generated from
 * LRP_COMPOSITE_LIST: a composite without its CR_ row does not compile.
 * Dense layers keep the base rule (epsilon) unless first. */
#define NONE LRP_RULE_COUNT
#define CR_EPSILON_PLUS {LRP_RULE_ZPLUS, 1.0f, 0.0f, NONE, NONE, NONE, NONE}
#define CR_EPSILON_PLUS_FLAT {LRP_RULE_ZPLUS, 1.0f, 0.0f, LRP_RULE_FLAT, NONE, NONE, NONE}
#define CR_EPSILON_ALPHA2_BETA1 {LRP_RULE_ALPHABETA, 2.0f, 1.0f, NONE, NONE, NONE, NONE}
#define CR_EPSILON_ALPHA2_BETA1_FLAT {LRP_RULE_ALPHABETA, 2.0f, 1.0f, LRP_RULE_FLAT, NONE, NONE, NONE}
/* Zennit's composite of this name: ZBox on the first *convolution* only
 * (a Dense before it keeps epsilon), and Zennit's Gamma (>= 0.5: the
 * generalized a+/a- rule, which selects by the layer's output and loses
 * R_j where that output is exactly 0) on the other convolutions. */
#define CR_EPSILON_GAMMA_BOX {LRP_RULE_GAMMA, 1.0f, 0.0f, NONE, LRP_RULE_ZBOX, NONE, NONE}
#define CR_SEQUENTIAL_PRESET_A {LRP_RULE_ALPHABETA, 1.0f, 0.0f, NONE, NONE, NONE, NONE}
#define CR_SEQUENTIAL_PRESET_B {LRP_RULE_ALPHABETA, 2.0f, 1.0f, NONE, NONE, NONE, NONE}
/* AttnLRP (Achtibat et al. 2024, LXT's default for LLMs and BERT): every
 * linear layer and residual LRP-0, attention attnlrp (uniform + Taylor);
 * CP-LRP (Ali et al. 2022): the same with the attention weights constant
 * (docs/TRANSFORMERS.md section 10) */
#define CR_ATTN_LRP {NONE, 1.0f, 0.0f, NONE, NONE, LRP_RULE_ZERO, LRP_RULE_ATTNLRP}
#define CR_CP_LRP {NONE, 1.0f, 0.0f, NONE, NONE, LRP_RULE_ZERO, LRP_RULE_CPLRP}
static const lrp_composite_desc composite_rows[LRP_COMPOSITE_COUNT] = {
#define X(e, s) [LRP_COMPOSITE_##e] = CR_##e,
    LRP_COMPOSITE_LIST(X)
#undef X
};
#undef NONE

const lrp_composite_desc *lrp_composite_describe(lrp_composite_id c)
{
    LRP_ASSERT((unsigned)c < LRP_COMPOSITE_COUNT);
    return &composite_rows[c];
}

/* The norm layers (Add, explicit BatchNorm) split a sum y = sum_t v_t: the
 * same rows read with every weight 1, so there is one encoding of each
 * rule.  lrp0 / epsilon: the D_EPS row, den = y.  Alpha-beta: the D_AB row;
 * with w = 1, pos(w) = 1 and neg(w) = 0, so its alpha part keeps the
 * positive summands and its beta part the negative ones, each part's
 * denominator their sum (the shift summands included, as the bias b+ / b-
 * of the linear row), an empty part absorbed.  The peers' alpha-beta
 * variants (flags) are linear-layer quirks and do not apply here. */
const lrp_rule_desc *lrp_rule_split_describe(const lrp_rule_spec *r)
{
    switch (r->rule) {
    case LRP_RULE_ZERO:
    case LRP_RULE_EPSILON:
    case LRP_RULE_IDENTITY: /* with eps > 0 (LXT's implicit identity on an
                               activation): the epsilon split, den = x */
        return &tab[D_EPS];
    case LRP_RULE_ALPHABETA: return &tab[D_AB];
    default: return NULL;
    }
}

int lrp_part_split_inmod(const lrp_part_desc *pd)
{
    int im = -1;
    for (int t = 0; t < pd->n_terms; t++) {
        int w = pd->t[t].w;
        if (w == LRP_WM_NEG)
            continue; /* neg(1) = 0: the term vanishes */
        LRP_ASSERT(im < 0 && (w == LRP_WM_ID || w == LRP_WM_POS) && pd->t[t].coef == LRP_C_ONE);
        im = pd->t[t].in;
    }
    LRP_ASSERT(im == LRP_IM_ID || im == LRP_IM_POS || im == LRP_IM_NEG);
    return im;
}

float lrp_coef_value(lrp_coefsrc c, const lrp_rule_spec *r)
{
    int zplus = r->rule == LRP_RULE_ZPLUS;
    switch (c) {
    case LRP_C_ONE: return 1.0f;
    case LRP_C_MINUS_ONE: return -1.0f;
    case LRP_C_GAMMA: return r->gamma;
    case LRP_C_ALPHA: return zplus ? 1.0f : r->alpha;
    case LRP_C_MINUS_BETA: return zplus ? -0.0f : -r->beta;
    }
    return 0.0f;
}

static const char *const abs_names[] = {
#define X(e, s) s,
    LRP_ABS_LIST(X)
#undef X
};
_Static_assert(sizeof abs_names / sizeof abs_names[0] == LRP_ABS_COUNT, "abs kinds");

static const char *const nf_names[] = {
#define X(e, s) s,
    LRP_NF_LIST(X)
#undef X
};
_Static_assert(sizeof nf_names / sizeof nf_names[0] == LRP_NF_COUNT, "flag names");

const char *lrp_abs_name(lrp_abs_kind k)
{
    return (unsigned)k < LRP_ABS_COUNT ? abs_names[k] : "?";
}

const char *lrp_nflag_name(lrp_nflag f)
{
    return (unsigned)f < LRP_NF_COUNT ? nf_names[f] : "?";
}

void lrp_nflags_raise(lrp_nflags *f, lrp_nflag k, int64_t sample, int64_t unit)
{
    if (!(f->bits & (1u << k))) {
        f->bits |= 1u << k;
        f->sample[k] = sample;
        f->unit[k] = unit;
    }
    f->count[k]++;
}

void lrp_nflags_raise_n(lrp_nflags *f, lrp_nflag k, int64_t sample, int64_t unit,
                        int64_t count)
{
    if (count <= 0)
        return;
    lrp_nflags_raise(f, k, sample, unit);
    f->count[k] += count - 1;
}
