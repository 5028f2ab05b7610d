/*
 * profiles.c -- convention profiles: how each peer library computes LRP
 * (docs/SPEC.md section 5 and the libraries' documentation), so that a
 * trace from that library is judged against the reference computed ITS
 * way.  A profile rewrites the stabilizer convention, default epsilon and
 * variant flags of an existing rule assignment; it does not choose rules.
 * A trace's own /rules state what the peer did (its eps, convention and
 * BatchNorm treatment): on those the profile only adds its quirk flags.
 *
 *   zennit        stabilize(): z + eps * (z >= 0 ? 1 : -1)      -> sign0_pos,
 *                 eps 1e-6 everywhere; Gamma is the generalized a+/a- rule
 *                 (Zennit >= 0.5) and drops R_j at z_j == 0; AlphaBeta splits
 *                 the bias into b+ / b-; BatchNorm is canonized (merged into
 *                 the linear layer before it); max-pool routes by gradient
 *                 (first maximum).
 *   captum        sign0_pos, eps 1e-9; its alpha1beta0 clips weights only
 *                 (captum_a1b0, full bias), its GammaRule too
 *                 (captum_gamma_fullbias: bias b in the denominator);
 *                 BatchNorm explicit (EpsilonRule, Captum 0.8's default);
 *                 max-pools: EpsilonRule too (R_i = a_i R_j / stab(a_i) at
 *                 the first maximum), so wta max-pools become epsilon.
 *   innvestigate  epsilon: sign0_pos with eps 1e-7 (the fixed K.sign rule);
 *                 every other rule divides with safe_divide, which only
 *                 stabilizes an exact zero -> zero_only, eps 1e-7; alpha-beta
 *                 with bias puts the full bias in both denominators.
 *   innvestigate-2018  as innvestigate, but the original epsilon rule with
 *                 K.sign(0) = 0 -> sign0_zero (the VGG16 NaN report).
 *   rpjl          RelevancePropagation.jl: sign0_pos, eps 1e-6; BatchNorm
 *                 canonized.
 *   lrp-toolbox   the LRP Toolbox's Python implementation: sign0_pos.
 *   lrp-toolbox-caffe  its Caffe epsilon: no division at z = 0 -> skip_zero.
 *
 * Two profiles also choose the rules, because the library they describe
 * has one fixed rule per layer type and no composites to choose from
 * (LRP-eXplains-Transformers, docs/TRANSFORMERS.md 8.1, read at commit
 * f043441); where the rules are stated (a trace's /rules under compare)
 * they change nothing:
 *   lxt           LXT 2.x efficient mode (gradient x input with modified
 *                 backward passes): Dense/Conv2D lrp0 with eps 0 and the
 *                 bias in the denominator (the bias absorbs); LayerNorm
 *                 ln_linear eps 0 (sigma detached, plain gradient
 *                 otherwise: 2.2); RMSNorm identity; GELU/SiLU/Tanh
 *                 identity with eps 1e-10 `positive` (identity_rule_implicit:
 *                 R_x = R_y x / (x + 1e-10));
 *                 Softmax taylor; Mul uniform; MultiHeadAttention attnlrp
 *                 eps 0; Add, Position, pools, BatchNorm lrp0 (proportional);
 *                 max-pools wta (the gradient of max).
 *   lxt-explicit  LXT's explicit mode (lxt.explicit): Dense/Conv2D epsilon
 *                 1e-6 `positive`; LayerNorm ln_linear 1e-6 `positive`;
 *                 Add and Position epsilon 1e-8 `positive`;
 *                 MultiHeadAttention attnlrp 1e-6 `positive`; the rest as
 *                 lxt (the activations' f(x) / (x + 1e-10) too).  What our
 *                 rules cannot express (the products' own 2 O + 1e-8) is
 *                 listed in docs/SPEC.md section 6, not approximated.
 */
#include "cli.h"

#include <string.h>

/* 1e-6, 1e-7, 1e-9 as binary32 (what the libraries' literals round to). */
#define EPS6 0x1.0c6f7ap-20f
#define EPS7 0x1.ad7f2ap-24f
#define EPS9 0x1.12e0bep-30f
#define EPS8 0x1.5798eep-27f
#define EPS10 0x1.b7cdfep-34f

typedef struct profile {
    const char *name;
    lrp_stab_id stab_eps;   /* convention of the epsilon rule (and Add/pools) */
    lrp_stab_id stab_other; /* convention of the other dividing rules */
    float eps;              /* the library's epsilon */
    unsigned set_flags;     /* variant flags added to every dividing layer */
    int bn;                 /* 0 keep, 1 explicit, 3 canonize */
    int maxpool_eps;        /* 1: wta max-pools get the epsilon rule */
    int lxt;                /* 1: LXT efficient, 2: LXT explicit (rules too) */
} profile;

static const profile profiles[] = {
    {"zennit", LRP_STAB_SIGN0_POS, LRP_STAB_SIGN0_POS, EPS6,
     LRP_F_GAMMA_GENERALIZED | LRP_F_ZENNIT_GAMMA_DROP0, 3, 0, 0},
    {"captum", LRP_STAB_SIGN0_POS, LRP_STAB_SIGN0_POS, EPS9,
     LRP_F_CAPTUM_A1B0 | LRP_F_CAPTUM_GAMMA_FULLBIAS, 1, 1, 0},
    {"innvestigate", LRP_STAB_SIGN0_POS, LRP_STAB_ZERO_ONLY, EPS7, LRP_F_INNV_AB_FULLBIAS, 1, 0, 0},
    {"innvestigate-2018", LRP_STAB_SIGN0_ZERO, LRP_STAB_ZERO_ONLY, EPS7, LRP_F_INNV_AB_FULLBIAS,
     1, 0, 0},
    {"rpjl", LRP_STAB_SIGN0_POS, LRP_STAB_SIGN0_POS, EPS6, 0, 3, 0, 0},
    {"lrp-toolbox", LRP_STAB_SIGN0_POS, LRP_STAB_SIGN0_POS, EPS6, 0, 1, 0, 0},
    {"lrp-toolbox-caffe", LRP_STAB_SKIP_ZERO, LRP_STAB_SKIP_ZERO, EPS6, 0, 1, 0, 0},
    {"lxt", LRP_STAB_SIGN0_POS, LRP_STAB_SIGN0_POS, 0.0f, 0, 1, 0, 1},
    {"lxt-explicit", LRP_STAB_POSITIVE, LRP_STAB_POSITIVE, EPS6, 0, 1, 0, 2},
};

/* a dividing rule with its eps and convention */
static lrp_rule_spec spec(lrp_rule_id id, float eps, lrp_stab_id stab)
{
    lrp_rule_spec r = lrp_rule_default(id);
    r.eps = eps;
    r.stab = stab;
    r.bias = 1;
    r.flags = 0;
    return r;
}

/* LXT's rule per layer kind (docs/TRANSFORMERS.md 8.1; SPEC section 6) */
static void lxt_apply(lrp_net *net, int explicit_mode)
{
    const lrp_stab_id st = explicit_mode ? LRP_STAB_POSITIVE : LRP_STAB_SIGN0_POS;
    const float e_lin = explicit_mode ? EPS6 : 0.0f; /* linear_epsilon, LayerNorm */
    const float e_add = explicit_mode ? EPS8 : 0.0f; /* add2 */
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        switch (l->kind) {
        case LRP_LAYER_DENSE:
        case LRP_LAYER_CONV2D:
            l->rule = spec(e_lin > 0.0f ? LRP_RULE_EPSILON : LRP_RULE_ZERO, e_lin, st);
            break;
        case LRP_LAYER_LAYERNORM: l->rule = spec(LRP_RULE_LN_LINEAR, e_lin, st); break;
        case LRP_LAYER_MHA: l->rule = spec(LRP_RULE_ATTNLRP, e_lin, st); break;
        case LRP_LAYER_ATTNSCORES:
        case LRP_LAYER_ATTNCONTEXT: l->rule = spec(LRP_RULE_UNIFORM, e_lin, st); break;
        case LRP_LAYER_ADD:
        case LRP_LAYER_POSITION:
            l->rule = spec(e_add > 0.0f ? LRP_RULE_EPSILON : LRP_RULE_ZERO, e_add, st);
            break;
        case LRP_LAYER_GELU:
        case LRP_LAYER_SILU:
        case LRP_LAYER_TANH:
            /* identity_rule_implicit: the gradient times f(x) / (x + 1e-10),
             * in both modes */
            l->rule = spec(LRP_RULE_IDENTITY, EPS10, LRP_STAB_POSITIVE);
            break;
        case LRP_LAYER_BATCHNORM:
        case LRP_LAYER_AVGPOOL2D:
        case LRP_LAYER_GLOBALAVGPOOL:
            /* the plain gradient of a linear map: the proportional split
             * (a BatchNorm explicit: LXT does not fold it) */
            l->rule = spec(LRP_RULE_ZERO, 0.0f, st);
            break;
        default:
            /* RMSNorm and the activations identity, Softmax taylor, Mul
             * uniform, Embedding lrp0, max-pools wta, the shape kinds pass:
             * the kinds' defaults */
            l->rule = lrp_rule_default_for(l->kind);
            break;
        }
    }
}

const char *cli_profile_names(void)
{
    return "zennit, captum, innvestigate, innvestigate-2018, rpjl, lrp-toolbox, lrp-toolbox-caffe, "
           "lxt, lxt-explicit";
}

int cli_profile_apply(lrp_net *net, const char *name, int stated)
{
    const profile *p = NULL;
    for (size_t i = 0; i < sizeof profiles / sizeof profiles[0]; i++)
        if (!strcmp(profiles[i].name, name))
            p = &profiles[i];
    if (!p)
        return -1;
    if (p->lxt) {
        if (!stated)
            lxt_apply(net, p->lxt == 2);
        return 0;
    }
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        lrp_rule_spec *r = &l->rule;
        /* Captum's max-pools have one rule, its EpsilonRule; a rule
         * assignment that does not state them gets it (a trace's stated
         * wta is what the peer said it did, and stays) */
        if (p->maxpool_eps && !stated && l->kind == LRP_LAYER_MAXPOOL2D &&
            r->rule == LRP_RULE_WTA)
            *r = lrp_rule_default(LRP_RULE_EPSILON);
        if (r->rule == LRP_RULE_PASS || r->rule == LRP_RULE_WTA || r->rule == LRP_RULE_IDENTITY)
            continue;
        int eps_like = r->rule == LRP_RULE_EPSILON;
        if (!stated) {
            r->stab = eps_like ? p->stab_eps : p->stab_other;
            if (r->eps != 0.0f || eps_like)
                r->eps = p->eps;
        }
        unsigned f = p->set_flags;
        /* the alpha-beta quirks apply to alpha-beta / z+ rules only */
        if (r->rule != LRP_RULE_ALPHABETA && r->rule != LRP_RULE_ZPLUS)
            f &= ~(LRP_F_CAPTUM_A1B0 | LRP_F_INNV_AB_FULLBIAS);
        if (r->rule != LRP_RULE_GAMMA)
            f &= ~(LRP_F_GAMMA_GENERALIZED | LRP_F_ZENNIT_GAMMA_DROP0 |
                   LRP_F_CAPTUM_GAMMA_FULLBIAS);
        /* Captum's quirk is its alpha1beta0 only */
        if (r->rule == LRP_RULE_ALPHABETA && !(r->alpha == 1.0f && r->beta == 0.0f))
            f &= ~LRP_F_CAPTUM_A1B0;
        if (l->kind != LRP_LAYER_DENSE && l->kind != LRP_LAYER_CONV2D)
            f = 0;
        r->flags |= f;
        if (l->kind == LRP_LAYER_BATCHNORM && p->bn && !stated) {
            r->flags &= ~(LRP_F_BN_CANONIZE | LRP_F_BN_FINE);
            if (p->bn == 3) {
                /* canonize only where the graph allows it */
                const lrp_layer *prev = &net->layers[l->in[0]];
                int consumers = 0;
                for (int j = 0; j < net->n_layers; j++)
                    for (int k = 0; k < net->layers[j].n_in; k++)
                        consumers += net->layers[j].in[k] == l->in[0];
                if ((prev->kind == LRP_LAYER_DENSE || prev->kind == LRP_LAYER_CONV2D) &&
                    consumers == 1)
                    r->flags |= LRP_F_BN_CANONIZE;
            }
        }
    }
    return 0;
}
