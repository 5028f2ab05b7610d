/*
 * cli_rules.c -- the rule-selection options every judging command shares:
 *   --composite NAME | --rule NAME, then overrides --convention, --eps,
 *   --gamma, --alpha/--beta, --box L,H, --no-bias, --flag NAME, --bn MODE.
 * Without --rule/--composite the fixture's own assignment is used.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_rules_init(cli_rules *o)
{
    memset(o, 0, sizeof *o);
    o->prec = 128;
    o->threads = 2;
}

int cli_rules_option(cli_rules *o, const char *opt, const char *arg, const char *cmd)
{
    float v;
#define FLOATOPT(field, flagfield)                                                          \
    do {                                                                                    \
        if (cli_parse_float(arg, &v))                                                       \
            return cli_usage_error(cmd, "bad number '%s'", arg);                            \
        o->field = v;                                                                       \
        o->flagfield = 1;                                                                   \
        return 0;                                                                           \
    } while (0)
    if (!strcmp(opt, "composite")) {
        if (lrp_composite_parse(arg, &o->composite))
            return cli_usage_error(cmd, "unknown composite '%s' (EpsilonPlus, EpsilonPlusFlat, "
                                        "EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat, "
                                        "EpsilonGammaBox, SequentialPresetA, SequentialPresetB)",
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
            return cli_usage_error(cmd, "--box wants two numbers, got '%s'", arg);
        o->has_box = 1;
        return 0;
    }
    if (!strcmp(opt, "no-bias")) {
        o->no_bias = 1;
        return 0;
    }
    if (!strcmp(opt, "flag")) {
        unsigned f;
        if (lrp_flag_parse(arg, &f))
            return cli_usage_error(cmd, "unknown flag '%s'", arg);
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
        else
            return cli_usage_error(cmd, "--bn wants explicit, fine or canonize, got '%s'", arg);
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
    for (int i = 0; i < net->n_layers; i++) {
        lrp_rule_spec *r = &net->layers[i].rule;
        if (r->rule == LRP_RULE_PASS || r->rule == LRP_RULE_WTA)
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
        if (o->has_box && r->rule == LRP_RULE_ZBOX) {
            r->low = o->low;
            r->high = o->high;
        }
        if (o->no_bias)
            r->bias = 0;
        r->flags |= o->flags & ~(LRP_F_BN_CANONIZE | LRP_F_BN_FINE);
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
    override_all(net, o);
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
