/*
 * cli_rules.c -- the rule-selection options every judging command shares:
 *   --composite NAME | --rule NAME, then overrides --convention, --eps,
 *   --gamma, --alpha/--beta, --box L,H, --no-bias, --flag NAME, --bn MODE.
 * Without --rule/--composite the fixture's own assignment is used.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "cli_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_rules_init(cli_rules *o)
{
    memset(o, 0, sizeof *o);
    o->prec = 128;
    /* two cores shared by the MPI ranks of a node (tools/cli_mpi.h) */
    o->threads = cli_mpi_local_size() > 1 ? 1 : 2;
}

static int bad_number(const char *cmd, const char *opt, const char *arg)
{
    char fmt[160];
    snprintf(fmt, sizeof fmt, "--%s: bad number '%%s' (wants a finite binary32 value)", opt);
    return cli_usage_error(cmd, fmt, arg);
}

int cli_rules_option(cli_rules *o, const char *opt, const char *arg, const char *cmd)
{
    float v;
#define FLOATOPT(field, flagfield)                                                          \
    do {                                                                                    \
        if (cli_parse_float(arg, &v))                                                       \
            return bad_number(cmd, opt, arg);                                               \
        o->field = v;                                                                       \
        o->flagfield = 1;                                                                   \
        return 0;                                                                           \
    } while (0)
    if (!strcmp(opt, "composite")) {
        if (lrp_composite_parse(arg, &o->composite))
            return cli_usage_error(cmd, "unknown composite '%s' (EpsilonPlus, EpsilonPlusFlat, "
                                        "EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat, "
                                        "EpsilonGammaBox, SequentialPresetA, SequentialPresetB, "
                                        "AttnLRP, CPLRP)",
                                   arg);
        o->has_composite = 1;
        o->has_rule = 0;
        return 0;
    }
    if (!strcmp(opt, "rule")) {
        /* alpha1beta0 / alpha2beta1 are accepted as names for alphabeta */
        if (!strcmp(arg, "alpha1beta0") || !strcmp(arg, "alpha2beta1")) {
            o->rule = LRP_RULE_ALPHABETA;
            o->alpha = arg[5] == '1' ? 1.0f : 2.0f;
            o->beta = arg[5] == '1' ? 0.0f : 1.0f;
            o->has_alpha = o->has_beta = 1;
        } else if (lrp_rule_parse(arg, &o->rule)) {
            return cli_usage_error(cmd, "unknown rule '%s' (lrp0, epsilon, gamma, alphabeta, "
                                        "alpha1beta0, alpha2beta1, zplus, wsquare, flat, zbox)",
                                   arg);
        }
        o->has_rule = 1;
        o->has_composite = 0;
        return 0;
    }
    if (!strcmp(opt, "convention")) {
        if (lrp_stab_parse(arg, &o->stab))
            return cli_usage_error(cmd, "unknown convention '%s' (sign0_pos, signbit, sign0_zero, "
                                        "zero_only, skip_zero, positive)",
                                   arg);
        o->has_stab = 1;
        return 0;
    }
    if (!strcmp(opt, "eps"))
        FLOATOPT(eps, has_eps);
    if (!strcmp(opt, "gamma"))
        FLOATOPT(gamma, has_gamma);
    if (!strcmp(opt, "alpha"))
        FLOATOPT(alpha, has_alpha);
    if (!strcmp(opt, "beta"))
        FLOATOPT(beta, has_beta);
    if (!strcmp(opt, "box")) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", arg);
        char *comma = strchr(buf, ',');
        if (!comma)
            return cli_usage_error(cmd, "--box wants LOW,HIGH, got '%s'", arg);
        *comma = '\0';
        if (cli_parse_float(buf, &o->low) || cli_parse_float(comma + 1, &o->high))
            return cli_usage_error(cmd, "--box wants two finite numbers, got '%s'", arg);
        if (o->low > o->high)
            return cli_usage_error(cmd, "--box wants LOW <= HIGH, got '%s'", arg);
        o->has_box = 1;
        return 0;
    }
    if (!strcmp(opt, "no-bias")) {
        o->no_bias = 1;
        return 0;
    }
    if (!strcmp(opt, "flag")) {
        unsigned f;
        /* not a stored flag: it gives the max-pools rule epsilon, which is
         * what a file or trace records (docs/SPEC.md 2.4, 3.1) */
        if (!strcmp(arg, "captum_maxpool_eps")) {
            o->maxpool_eps = 1;
            return 0;
        }
        if (lrp_flag_parse(arg, &f))
            return cli_usage_error(cmd, "unknown flag '%s'", arg);
        if (f & (LRP_F_BN_CANONIZE | LRP_F_BN_FINE))
            return cli_usage_error(cmd, "--flag %s: BatchNorm treatment is set with --bn "
                                        "(explicit, fine, canonize, pass)", arg);
        o->flags |= f;
        return 0;
    }
    if (!strcmp(opt, "bn")) {
        if (!strcmp(arg, "explicit"))
            o->bn_mode = 1;
        else if (!strcmp(arg, "fine"))
            o->bn_mode = 2;
        else if (!strcmp(arg, "canonize"))
            o->bn_mode = 3;
        else if (!strcmp(arg, "pass"))
            o->bn_mode = 4; /* Zennit without a canonizer, Captum's IdentityRule */
        else
            return cli_usage_error(cmd, "--bn wants explicit, fine, canonize or pass, got '%s'",
                                   arg);
        return 0;
    }
    if (!strcmp(opt, "ln")) {
        if (!strcmp(arg, "linear"))
            o->ln_mode = 1;
        else if (!strcmp(arg, "fine"))
            o->ln_mode = 2;
        else if (!strcmp(arg, "identity"))
            o->ln_mode = 3;
        else
            return cli_usage_error(cmd, "--ln wants linear, fine or identity, got '%s'", arg);
        return 0;
    }
    if (!strcmp(opt, "prec")) {
        char *end;
        long p = strtol(arg, &end, 10);
        if (*end || p < 16 || p > 100000)
            return cli_usage_error(cmd, "--prec wants bits in [16, 100000], got '%s'", arg);
        o->prec = (int)p;
        return 0;
    }
    if (!strcmp(opt, "threads")) {
        char *end;
        long t = strtol(arg, &end, 10);
        if (*end || t < 1 || t > 256)
            return cli_usage_error(cmd, "--threads wants 1..256, got '%s'", arg);
        o->threads = (int)t;
        return 0;
    }
#undef FLOATOPT
    return cli_usage_error(cmd, "unknown option '--%s'", opt);
}

/* Every layer whose rule divides gets the override. */
static void override_all(lrp_net *net, const cli_rules *o)
{
    /* --ln first: the LayerNorm rule then takes --eps / --convention */
    for (int i = 0; i < net->n_layers && o->ln_mode; i++) {
        lrp_layer *l = &net->layers[i];
        if (l->kind != LRP_LAYER_LAYERNORM)
            continue;
        static const lrp_rule_id ln_rule[4] = {LRP_RULE_COUNT, LRP_RULE_LN_LINEAR,
                                               LRP_RULE_LN_FINE, LRP_RULE_IDENTITY};
        lrp_rule_spec was = l->rule;
        l->rule = lrp_rule_default(ln_rule[o->ln_mode]);
        if (was.rule == LRP_RULE_LN_LINEAR || was.rule == LRP_RULE_LN_FINE) {
            if (o->ln_mode != 3) { /* keep the eps and convention it had */
                l->rule.eps = was.eps;
                l->rule.stab = was.stab;
            }
        }
    }
    for (int i = 0; i < net->n_layers; i++) {
        lrp_rule_spec *r = &net->layers[i].rule;
        lrp_layer_kind kind = net->layers[i].kind;
        int linear = kind == LRP_LAYER_DENSE || kind == LRP_LAYER_CONV2D;
        /* --flag captum_maxpool_eps: Captum's EpsilonRule on the max-pools,
         * then stabilized like every dividing layer (--eps, --convention) */
        if (o->maxpool_eps && kind == LRP_LAYER_MAXPOOL2D && r->rule == LRP_RULE_WTA)
            *r = lrp_rule_default(LRP_RULE_EPSILON);
        if (r->rule == LRP_RULE_WTA) /* max-pool: only the tie flag means anything */
            r->flags |= o->flags & LRP_F_WTA_SPLIT_TIES;
        /* rules that do not divide (the token layers' identity too) */
        if (r->rule == LRP_RULE_PASS || r->rule == LRP_RULE_WTA || r->rule == LRP_RULE_IDENTITY)
            continue;
        if (o->has_stab)
            r->stab = o->stab;
        if (o->has_eps && (r->rule != LRP_RULE_ZERO || o->eps > 0.0f)) {
            r->eps = o->eps;
            if (r->rule == LRP_RULE_ZERO && o->eps > 0.0f)
                r->rule = LRP_RULE_EPSILON;
        }
        if (o->has_gamma && r->rule == LRP_RULE_GAMMA)
            r->gamma = o->gamma;
        if (!o->has_rule && r->rule == LRP_RULE_ALPHABETA && (o->has_alpha || o->has_beta)) {
            /* the file's own alpha-beta layers (a composite is refused) */
            if (o->has_alpha)
                r->alpha = o->alpha;
            if (o->has_beta)
                r->beta = o->beta;
            else
                r->beta = o->alpha - 1.0f;
        }
        if (o->has_box && r->rule == LRP_RULE_ZBOX) {
            r->low = o->low;
            r->high = o->high;
        }
        /* the bias switch and the rule-variant flags belong to the linear
         * rules (docs/SPEC.md 2.3): an explicit BatchNorm keeps its shift,
         * so its recorded rule keeps bias = 1 */
        if (o->no_bias && linear)
            r->bias = 0;
        if (linear)
            r->flags |= o->flags & ~(LRP_F_BN_CANONIZE | LRP_F_BN_FINE | LRP_F_WTA_SPLIT_TIES);
    }
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        if (l->kind != LRP_LAYER_BATCHNORM || !o->bn_mode)
            continue;
        l->rule.flags &= ~(LRP_F_BN_CANONIZE | LRP_F_BN_FINE);
        if (o->bn_mode == 2)
            l->rule.flags |= LRP_F_BN_FINE;
        if (o->bn_mode == 3)
            l->rule.flags |= LRP_F_BN_CANONIZE;
        if (o->bn_mode == 4) {
            l->rule = lrp_rule_default(LRP_RULE_PASS);
        } else if (l->rule.rule == LRP_RULE_PASS) {
            /* leaving pass: the rule the composites give BatchNorm */
            float eps = l->rule.eps;
            l->rule = lrp_rule_default(eps > 0.0f ? LRP_RULE_EPSILON : LRP_RULE_ZERO);
            l->rule.eps = eps;
            if (o->bn_mode == 2)
                l->rule.flags |= LRP_F_BN_FINE;
            if (o->bn_mode == 3)
                l->rule.flags |= LRP_F_BN_CANONIZE;
        }
    }
}

lrp_status cli_rules_apply(lrp_net *net, const cli_rules *o, const char *where, lrp_err *err)
{
    if (o->has_composite) {
        lrp_composite_params p = lrp_composite_params_default();
        if (o->has_eps)
            p.eps = o->eps;
        if (o->has_gamma)
            p.gamma = o->gamma;
        if (o->has_box) {
            p.low = o->low;
            p.high = o->high;
        }
        if (o->has_stab)
            p.stab = o->stab;
        lrp_composite_apply(net, o->composite, &p);
    } else if (o->has_rule) {
        lrp_rule_spec r = lrp_rule_default(o->rule);
        if (o->has_alpha)
            r.alpha = o->alpha;
        if (o->has_beta)
            r.beta = o->beta;
        if (o->rule == LRP_RULE_ALPHABETA && o->has_alpha && !o->has_beta)
            r.beta = o->alpha - 1.0f;
        lrp_rule_apply_all(net, &r);
    }
    const char *ab = o->has_alpha ? "--alpha" : "--beta";
    if ((o->has_alpha || o->has_beta) && !o->has_rule &&
        (o->has_composite || net->composite[0]))
        return lrp_err_set(err, LRP_E_USAGE,
                           "%s: %s: composite %s fixes alpha and beta (use --rule alphabeta "
                           "--alpha A --beta B)",
                           where, ab,
                           o->has_composite ? lrp_composite_name(o->composite) : net->composite);
    if ((o->has_alpha || o->has_beta) && o->has_rule && o->rule != LRP_RULE_ALPHABETA)
        return lrp_err_set(err, LRP_E_USAGE, "%s: %s: rule %s has no alpha or beta", where, ab,
                           lrp_rule_name(o->rule));
    if (o->maxpool_eps && (o->flags & LRP_F_WTA_SPLIT_TIES))
        return lrp_err_set(err, LRP_E_USAGE,
                           "%s: --flag captum_maxpool_eps and --flag wta_split_ties: the epsilon "
                           "max-pool routes to the first maximum (ties are split by wta only)",
                           where);
    override_all(net, o);
    /* every option given must reach some layer: an option no layer uses is
     * refused, never silently ignored */
    int n_div = 0, n_gamma = 0, n_ab = 0, n_box = 0, n_bn = 0, n_wta = 0, n_lin = 0, n_max = 0,
        n_ln = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const lrp_layer *l = &net->layers[i];
        lrp_rule_id r = l->rule.rule;
        n_div += r != LRP_RULE_PASS && r != LRP_RULE_WTA && r != LRP_RULE_IDENTITY;
        n_gamma += r == LRP_RULE_GAMMA;
        n_ab += r == LRP_RULE_ALPHABETA;
        /* per-pixel bounds in /data take precedence on a layer fed by the input */
        n_box += r == LRP_RULE_ZBOX &&
                 !(l->n_in > 0 && l->in[0] == 0 && net->zbox_low && net->zbox_high);
        n_bn += l->kind == LRP_LAYER_BATCHNORM;
        n_ln += l->kind == LRP_LAYER_LAYERNORM;
        n_wta += r == LRP_RULE_WTA;
        n_max += l->kind == LRP_LAYER_MAXPOOL2D;
        n_lin += (l->kind == LRP_LAYER_DENSE || l->kind == LRP_LAYER_CONV2D) &&
                 r != LRP_RULE_PASS && r != LRP_RULE_WTA;
    }
    const char *unused = NULL, *why = NULL;
    if (o->has_gamma && !n_gamma)
        unused = "--gamma", why = "no layer has the gamma rule";
    else if ((o->has_alpha || o->has_beta) && !n_ab)
        unused = ab, why = "no layer has the alpha-beta rule";
    else if (o->has_box && !n_box)
        unused = "--box",
        why = "no layer has the z^B rule with scalar bounds (per-pixel /data/zbox_low, "
              "zbox_high take precedence)";
    else if ((o->flags & (LRP_F_GAMMA_GENERALIZED | LRP_F_ZENNIT_GAMMA_DROP0)) && !n_gamma)
        unused = "--flag", why = "a gamma flag but no layer has the gamma rule";
    else if ((o->flags & (LRP_F_INNV_AB_FULLBIAS | LRP_F_CAPTUM_A1B0)) && !n_ab)
        unused = "--flag", why = "an alpha-beta flag but no layer has the alpha-beta rule";
    else if ((o->flags & LRP_F_WTA_SPLIT_TIES) && !n_wta)
        unused = "--flag", why = "wta_split_ties but no layer is a max-pool with the wta rule";
    else if (o->maxpool_eps && !n_max)
        unused = "--flag", why = "captum_maxpool_eps but the network has no max-pool";
    else if (o->no_bias && !n_lin)
        unused = "--no-bias", why = "no Dense or Conv2D layer (an explicit BatchNorm keeps its "
                                    "shift)";
    else if (o->bn_mode && !n_bn)
        unused = "--bn", why = "the network has no BatchNorm layer";
    else if (o->ln_mode && !n_ln)
        unused = "--ln", why = "the network has no LayerNorm layer";
    else if (!n_div && (o->has_eps || o->has_stab ||
                        (o->flags & ~(unsigned)LRP_F_WTA_SPLIT_TIES)))
        unused = o->has_eps ? "--eps" : o->has_stab ? "--convention" : "--flag",
        why = "no layer has a rule it applies to";
    if (unused)
        return lrp_err_set(err, LRP_E_USAGE, "%s: %s: %s with these rules; not applied", where,
                           unused, why);
    /* re-validate: an override can make a rule invalid (eps < 0, ...) */
    return lrp_net_infer(net, where, err);
}

void cli_rules_describe(char *buf, size_t n, const lrp_net *net, const cli_rules *o)
{
    if (o->has_composite)
        snprintf(buf, n, "%s", lrp_composite_name(o->composite));
    else if (o->has_rule) {
        lrp_rule_spec r = lrp_rule_default(o->rule);
        r.alpha = o->has_alpha ? o->alpha : r.alpha;
        r.beta = o->has_beta ? o->beta : r.beta;
        snprintf(buf, n, "%s", lrp_rule_name(o->rule));
        if (o->rule == LRP_RULE_ALPHABETA)
            snprintf(buf, n, "alpha%gbeta%g", (double)r.alpha, (double)r.beta);
    } else
        snprintf(buf, n, "%s", net->composite[0] ? net->composite : "file's assignment");
}
