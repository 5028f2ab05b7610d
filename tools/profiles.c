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
 */
#include "cli.h"

#include <string.h>

/* 1e-6, 1e-7, 1e-9 as binary32 (what the libraries' literals round to). */
#define EPS6 0x1.0c6f7ap-20f
#define EPS7 0x1.ad7f2ap-24f
#define EPS9 0x1.12e0bep-30f

typedef struct profile {
    const char *name;
    lrp_stab_id stab_eps;   /* convention of the epsilon rule (and Add/pools) */
    lrp_stab_id stab_other; /* convention of the other dividing rules */
    float eps;              /* the library's epsilon */
    unsigned set_flags;     /* variant flags added to every dividing layer */
    int bn;                 /* 0 keep, 1 explicit, 3 canonize */
    int maxpool_eps;        /* 1: wta max-pools get the epsilon rule */
} profile;

static const profile profiles[] = {
    {"zennit", LRP_STAB_SIGN0_POS, LRP_STAB_SIGN0_POS, EPS6,
     LRP_F_GAMMA_GENERALIZED | LRP_F_ZENNIT_GAMMA_DROP0, 3, 0},
    {"captum", LRP_STAB_SIGN0_POS, LRP_STAB_SIGN0_POS, EPS9,
     LRP_F_CAPTUM_A1B0 | LRP_F_CAPTUM_GAMMA_FULLBIAS, 1, 1},
    {"innvestigate", LRP_STAB_SIGN0_POS, LRP_STAB_ZERO_ONLY, EPS7, LRP_F_INNV_AB_FULLBIAS, 1, 0},
    {"innvestigate-2018", LRP_STAB_SIGN0_ZERO, LRP_STAB_ZERO_ONLY, EPS7, LRP_F_INNV_AB_FULLBIAS,
     1, 0},
    {"rpjl", LRP_STAB_SIGN0_POS, LRP_STAB_SIGN0_POS, EPS6, 0, 3, 0},
    {"lrp-toolbox", LRP_STAB_SIGN0_POS, LRP_STAB_SIGN0_POS, EPS6, 0, 1, 0},
    {"lrp-toolbox-caffe", LRP_STAB_SKIP_ZERO, LRP_STAB_SKIP_ZERO, EPS6, 0, 1, 0},
};

const char *cli_profile_names(void)
{
    return "zennit, captum, innvestigate, innvestigate-2018, rpjl, lrp-toolbox, lrp-toolbox-caffe";
}

int cli_profile_apply(lrp_net *net, const char *name, int stated)
{
    const profile *p = NULL;
    for (size_t i = 0; i < sizeof profiles / sizeof profiles[0]; i++)
        if (!strcmp(profiles[i].name, name))
            p = &profiles[i];
    if (!p)
        return -1;
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
