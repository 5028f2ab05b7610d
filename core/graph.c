/*
 * graph.c -- the network model: construction, shape inference, validation,
 * parameter shapes, cost, rule validation, composites and traces.
 *
 * Validation is total: every structural fact a backend relies on (input
 * indices point backwards, arity, geometry, shapes, rule parameters) is
 * checked here once, so backends never re-check and never crash on a file.
 */
#include "lrp.h"
#include "graph_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W(where) ((where) ? (where) : "<network>")

lrp_net *lrp_net_new(void)
{
    lrp_net *n = calloc(1, sizeof *n);
    if (n)
        n->batch = 1;
    return n;
}

void lrp_trace_clear(lrp_trace *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_layers; i++) {
        if (t->relevance)
            free(t->relevance[i]);
        if (t->relevance_lo)
            free(t->relevance_lo[i]);
        if (t->activation)
            free(t->activation[i]);
    }
    free(t->relevance);
    free(t->relevance_lo);
    free(t->activation);
    free(t->rules);
    memset(t, 0, sizeof *t);
}

void lrp_net_free(lrp_net *net)
{
    if (!net)
        return;
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        free(l->w);
        free(l->b);
        free(l->bn_gamma);
        free(l->bn_beta);
        free(l->bn_mean);
        free(l->bn_var);
    }
    free(net->layers);
    for (int i = 0; i < net->n_traces; i++)
        lrp_trace_clear(&net->traces[i]);
    free(net->traces);
    free(net->input);
    free(net->r_out);
    free(net->target);
    free(net->zbox_low);
    free(net->zbox_high);
    free(net);
}

int lrp_net_find(const lrp_net *net, const char *name)
{
    for (int i = 0; i < net->n_layers; i++)
        if (strcmp(net->layers[i].name, name) == 0)
            return i;
    return -1;
}

int lrp_net_add(lrp_net *net, lrp_layer_kind kind, const char *name, lrp_err *err)
{
    if ((unsigned)kind >= LRP_LAYER_COUNT) {
        lrp_err_set(err, LRP_E_UNSUPPORTED, "<network>: layer '%s': unknown kind %d",
                    name, (int)kind);
        return -1;
    }
    if (!name || !*name || strlen(name) >= LRP_NAME_MAX) {
        lrp_err_set(err, LRP_E_INVALID, "<network>: layer name empty or longer than %d bytes",
                    LRP_NAME_MAX - 1);
        return -1;
    }
    if (lrp_net_find(net, name) >= 0) {
        lrp_err_set(err, LRP_E_INVALID, "<network>: layer '%s': duplicate name", name);
        return -1;
    }
    if (net->n_layers >= LRP_MAX_LAYERS) {
        lrp_err_set(err, LRP_E_INVALID, "<network>: more than %d layers", LRP_MAX_LAYERS);
        return -1;
    }
    if (net->n_layers == net->cap_layers) {
        int cap = net->cap_layers ? 2 * net->cap_layers : 16;
        lrp_layer *nl = realloc(net->layers, (size_t)cap * sizeof *nl);
        if (!nl) {
            lrp_err_set(err, LRP_E_NOMEM, "<network>: out of memory adding layer '%s'", name);
            return -1;
        }
        net->layers = nl;
        net->cap_layers = cap;
    }
    lrp_layer *l = &net->layers[net->n_layers];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->kind = kind;
    l->kh = l->kw = 1;
    l->sh = l->sw = 1;
    l->dh = l->dw = 1;
    l->groups = 1;
    l->rule = lrp_rule_default_for(kind);
    return net->n_layers++;
}

int64_t lrp_shape_numel(const lrp_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        n *= s->d[i];
    return n;
}

void lrp_shape_str(char *buf, size_t n, const lrp_shape *s)
{
    switch (s->rank) {
    case 1: snprintf(buf, n, "(%lld)", (long long)s->d[0]); break;
    case 2: snprintf(buf, n, "(%lld, %lld)", (long long)s->d[0], (long long)s->d[1]); break;
    case 3:
        snprintf(buf, n, "(%lld, %lld, %lld)", (long long)s->d[0], (long long)s->d[1],
                 (long long)s->d[2]);
        break;
    default: snprintf(buf, n, "(rank %d)", s->rank); break;
    }
}

/* Checks rank and dims within limits; product within LRP_MAX_ELEMS. */
static int shape_ok(const lrp_shape *s)
{
    if (s->rank < 1 || s->rank > LRP_MAX_RANK)
        return 0;
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        if (s->d[i] < 1 || s->d[i] > LRP_MAX_DIM)
            return 0;
        n *= s->d[i];
        if (n > LRP_MAX_ELEMS)
            return 0;
    }
    return 1;
}

lrp_rule_spec lrp_rule_default_for(lrp_layer_kind k)
{
    switch (k) {
    case LRP_LAYER_DENSE:
    case LRP_LAYER_CONV2D:
    case LRP_LAYER_AVGPOOL2D:
    case LRP_LAYER_GLOBALAVGPOOL:
    case LRP_LAYER_ADD:
    case LRP_LAYER_BATCHNORM: return lrp_rule_default(LRP_RULE_ZERO);
    case LRP_LAYER_MAXPOOL2D: return lrp_rule_default(LRP_RULE_WTA);
    default: return lrp_rule_default(LRP_RULE_PASS);
    }
}

static int rule_allowed(lrp_rule_id r, lrp_layer_kind k)
{
    switch (k) {
    case LRP_LAYER_DENSE:
    case LRP_LAYER_CONV2D:
        return r != LRP_RULE_PASS && r != LRP_RULE_WTA;
    case LRP_LAYER_AVGPOOL2D:
    case LRP_LAYER_GLOBALAVGPOOL:
        return r == LRP_RULE_ZERO || r == LRP_RULE_EPSILON;
    case LRP_LAYER_ADD:
        return r == LRP_RULE_ZERO || r == LRP_RULE_EPSILON || r == LRP_RULE_ALPHABETA;
    case LRP_LAYER_BATCHNORM:
        /* pass: relevance crosses unchanged (Zennit without a canonizer,
         * Captum's IdentityRule) */
        return r == LRP_RULE_ZERO || r == LRP_RULE_EPSILON || r == LRP_RULE_ALPHABETA ||
               r == LRP_RULE_PASS;
    case LRP_LAYER_MAXPOOL2D:
        /* lrp0 / epsilon: the z-rule on the max as the linear map of its
         * winner, R_i = a_i sum_j R_j / stab(y_j) (Captum's EpsilonRule on
         * nn.MaxPool2d; docs/SPEC.md 3.1) */
        return r == LRP_RULE_WTA || r == LRP_RULE_ZERO || r == LRP_RULE_EPSILON;
    default:
        return r == LRP_RULE_PASS;
    }
}

lrp_status lrp_rule_validate(const lrp_rule_spec *r, lrp_layer_kind k, const char *where,
                             const char *lname, lrp_err *err)
{
    const char *f = W(where);
    if ((unsigned)r->rule >= LRP_RULE_COUNT)
        return lrp_err_set(err, LRP_E_UNSUPPORTED, "%s: rule of layer '%s': unknown rule id %d",
                           f, lname, (int)r->rule);
    if ((unsigned)r->stab >= LRP_STAB_COUNT)
        return lrp_err_set(err, LRP_E_UNSUPPORTED,
                           "%s: rule of layer '%s': unknown stabilizer convention id %d", f,
                           lname, (int)r->stab);
    if (!(r->flags & LRP_F_BN_CANONIZE) && !rule_allowed(r->rule, k))
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: rule of layer '%s': rule '%s' does not apply to a %s layer", f,
                           lname, lrp_rule_name(r->rule), lrp_layer_kind_name(k));
    if (r->flags & ~LRP_F_ALL_MASK)
        return lrp_err_set(err, LRP_E_UNSUPPORTED, "%s: rule of layer '%s': unknown flag bits 0x%x",
                           f, lname, r->flags & ~LRP_F_ALL_MASK);
    if ((r->flags & LRP_F_BN_CANONIZE) && k != LRP_LAYER_BATCHNORM)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: rule of layer '%s': flag bn_canonize on a %s layer", f, lname,
                           lrp_layer_kind_name(k));
    if (!isfinite(r->eps) || r->eps < 0.0f)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: rule of layer '%s': epsilon %g must be finite and >= 0", f, lname,
                           (double)r->eps);
    if (r->rule == LRP_RULE_GAMMA && (!isfinite(r->gamma) || r->gamma < 0.0f))
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: rule of layer '%s': gamma %g must be finite and >= 0", f, lname,
                           (double)r->gamma);
    if (r->rule == LRP_RULE_ALPHABETA) {
        if (!isfinite(r->alpha) || !isfinite(r->beta) || r->alpha < 0.0f || r->beta < 0.0f)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: rule of layer '%s': alpha %g and beta %g must be finite and >= 0",
                               f, lname, (double)r->alpha, (double)r->beta);
        /* binary32 - binary32 is exact in binary64 here (|alpha| < 2^100). */
        if ((double)r->alpha - (double)r->beta != 1.0)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: rule of layer '%s': alpha - beta must be 1 (alpha %g, beta %g)",
                               f, lname, (double)r->alpha, (double)r->beta);
    }
    if (r->rule == LRP_RULE_ZBOX &&
        (!isfinite(r->low) || !isfinite(r->high) || r->low > r->high))
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: rule of layer '%s': box bounds [%g, %g] must be finite, low <= high",
                           f, lname, (double)r->low, (double)r->high);
    /* ties are split by winner-take-all only: the epsilon max-pool routes
     * through the gradient of the max (first maximum), as Captum does */
    if ((r->flags & LRP_F_WTA_SPLIT_TIES) && k == LRP_LAYER_MAXPOOL2D && r->rule != LRP_RULE_WTA)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: rule of layer '%s': flag wta_split_ties with rule '%s' (it "
                           "belongs to rule wta; the %s max-pool routes to the first maximum)",
                           f, lname, lrp_rule_name(r->rule), lrp_rule_name(r->rule));
    if (r->bias != 0 && r->bias != 1)
        return lrp_err_set(err, LRP_E_INVALID, "%s: rule of layer '%s': bias flag %d not 0 or 1",
                           f, lname, r->bias);
    /* the bias switch is the linear rules' (docs/SPEC.md 2.3): an explicit
     * BatchNorm always keeps its shift, a canonized one follows the switch
     * of the layer it is folded into; bias = 0 here would be recorded but
     * not computed */
    if (r->bias == 0 && k == LRP_LAYER_BATCHNORM)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: rule of layer '%s': bias switch 0 on a BatchNorm (its shift is "
                           "always kept; the bias switch acts on Dense/Conv2D)",
                           f, lname);
    return LRP_OK;
}

static const char *value_problem(float v)
{
    return isnan(v) ? "is NaN" : isinf(v) ? "is infinite" : NULL;
}

/* First non-finite element of a[0..n), or -1. */
static int64_t first_nonfinite(const float *a, int64_t n)
{
    for (int64_t i = 0; a && i < n; i++)
        if (!isfinite(a[i]))
            return i;
    return -1;
}

lrp_status lrp_net_check_values(const lrp_net *net, const char *where, lrp_err *err)
{
    const char *f = W(where);
    static const char *const pname[6] = {"weight", "bias", "gamma", "beta", "mean", "var"};
    for (int li = 0; li < net->n_layers; li++) {
        const lrp_layer *l = &net->layers[li];
        const float *arr[6] = {l->w, l->b, l->bn_gamma, l->bn_beta, l->bn_mean, l->bn_var};
        for (int k = 0; k < 6; k++) {
            lrp_shape s;
            if (!arr[k] || !lrp_layer_param_shape(net, li, k, &s))
                continue;
            int64_t n = lrp_shape_numel(&s);
            int64_t i = first_nonfinite(arr[k], n);
            if (i >= 0)
                return lrp_err_set(err, LRP_E_INVALID,
                                   "%s: layer '%s': parameter %s[%lld] %s (parameters must be "
                                   "finite: no relevance could be judged through this layer)",
                                   f, l->name, pname[k], (long long)i, value_problem(arr[k][i]));
            if (k != 5)
                continue;
            for (i = 0; i < n; i++) {
                float v = arr[k][i];
                if (v < 0.0f)
                    return lrp_err_set(err, LRP_E_INVALID,
                                       "%s: layer '%s': BatchNorm var[%lld] = %g is negative "
                                       "(sqrt(var + eps) is undefined or meaningless)",
                                       f, l->name, (long long)i, (double)v);
                /* both are >= 0 here: the sum is 0 only when both are */
                if (v == 0.0f && l->bn_eps == 0.0f)
                    return lrp_err_set(err, LRP_E_INVALID,
                                       "%s: layer '%s': BatchNorm var[%lld] + eps = 0 (both 0): "
                                       "the BatchNorm divides by zero",
                                       f, l->name, (long long)i);
            }
        }
    }
    int64_t nout = net->n_layers > 0 ? lrp_shape_numel(&net->layers[net->n_layers - 1].shape) : 0;
    int64_t nin = net->n_layers > 0 ? lrp_shape_numel(&net->layers[0].shape) : 0;
    int64_t i;
    if ((i = first_nonfinite(net->r_out, nout * net->batch)) >= 0)
        return lrp_err_set(err, LRP_E_INVALID, "%s: data/relevance_out[%lld] %s (must be finite)",
                           f, (long long)i, value_problem(net->r_out[i]));
    if ((i = first_nonfinite(net->zbox_low, nin)) >= 0)
        return lrp_err_set(err, LRP_E_INVALID, "%s: data/zbox_low[%lld] %s (must be finite)", f,
                           (long long)i, value_problem(net->zbox_low[i]));
    if ((i = first_nonfinite(net->zbox_high, nin)) >= 0)
        return lrp_err_set(err, LRP_E_INVALID, "%s: data/zbox_high[%lld] %s (must be finite)", f,
                           (long long)i, value_problem(net->zbox_high[i]));
    return LRP_OK;
}

/* Output extent of a window op along one axis, or -1 if empty/invalid. */
static int64_t window_out(int64_t in, int pad0, int pad1, int k, int dil, int stride)
{
    int64_t span = (int64_t)dil * (k - 1) + 1;
    int64_t padded = in + pad0 + pad1;
    if (padded < span)
        return -1;
    return (padded - span) / stride + 1;
}

static lrp_status check_window(const lrp_layer *l, const char *f, lrp_err *err, int dilated)
{
    if (l->kh < 1 || l->kw < 1 || l->kh > 4096 || l->kw > 4096)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': kernel %dx%d out of range [1, 4096]",
                           f, l->name, l->kh, l->kw);
    if (l->sh < 1 || l->sw < 1 || l->sh > 4096 || l->sw > 4096)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': stride %dx%d out of range [1, 4096]",
                           f, l->name, l->sh, l->sw);
    if (dilated && (l->dh < 1 || l->dw < 1 || l->dh > 4096 || l->dw > 4096))
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': dilation %dx%d out of range [1, 4096]", f, l->name,
                           l->dh, l->dw);
    if (l->pt < 0 || l->pb < 0 || l->pl < 0 || l->pr < 0 || l->pt > 4096 || l->pb > 4096 ||
        l->pl > 4096 || l->pr > 4096)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': padding (%d, %d, %d, %d) out of range [0, 4096]", f,
                           l->name, l->pt, l->pb, l->pl, l->pr);
    return LRP_OK;
}

static lrp_status infer_one(lrp_net *net, int li, const char *f, lrp_err *err);

lrp_status lrp_layer_infer(lrp_net *net, int li, const char *where, lrp_err *err)
{
    return infer_one(net, li, W(where), err);
}

static lrp_status infer_one(lrp_net *net, int li, const char *f, lrp_err *err)
{
    lrp_layer *l = &net->layers[li];
    const lrp_shape *in = l->n_in > 0 ? &net->layers[l->in[0]].shape : NULL;
    lrp_shape o;
    char b1[64], b2[64];
    lrp_status st;
    memset(&o, 0, sizeof o);

    switch (l->kind) {
    case LRP_LAYER_INPUT:
        o = l->shape;
        if (!shape_ok(&o))
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': input shape has rank %d or a dimension out of range",
                               f, l->name, o.rank);
        break;
    case LRP_LAYER_DENSE:
        if (in->rank != 1)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': Dense needs a flat input, got rank %d (add a Flatten)",
                               f, l->name, in->rank);
        if (l->units < 1 || l->units > LRP_MAX_DIM)
            return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': units %lld out of range", f,
                               l->name, (long long)l->units);
        if (in->d[0] * l->units > LRP_MAX_ELEMS)
            return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': weight too large (%lld x %lld)",
                               f, l->name, (long long)l->units, (long long)in->d[0]);
        o.rank = 1;
        o.d[0] = l->units;
        break;
    case LRP_LAYER_CONV2D: {
        if (in->rank != 3)
            return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': Conv2D needs (C, H, W), got rank %d",
                               f, l->name, in->rank);
        if ((st = check_window(l, f, err, 1)))
            return st;
        if (l->units < 1 || l->units > LRP_MAX_DIM)
            return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': out channels %lld out of range",
                               f, l->name, (long long)l->units);
        if (l->groups < 1 || in->d[0] % l->groups || l->units % l->groups)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': groups %d must divide in channels %lld and out channels %lld",
                               f, l->name, l->groups, (long long)in->d[0], (long long)l->units);
        int64_t ho = window_out(in->d[1], l->pt, l->pb, l->kh, l->dh, l->sh);
        int64_t wo = window_out(in->d[2], l->pl, l->pr, l->kw, l->dw, l->sw);
        if (ho < 1 || wo < 1)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': kernel %dx%d (dilation %dx%d) larger than padded input %lldx%lld",
                               f, l->name, l->kh, l->kw, l->dh, l->dw,
                               (long long)(in->d[1] + l->pt + l->pb), (long long)(in->d[2] + l->pl + l->pr));
        int64_t wn = l->units * (in->d[0] / l->groups) * l->kh * l->kw;
        if (wn > LRP_MAX_ELEMS)
            return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': weight too large", f, l->name);
        o.rank = 3;
        o.d[0] = l->units;
        o.d[1] = ho;
        o.d[2] = wo;
        break;
    }
    case LRP_LAYER_MAXPOOL2D:
    case LRP_LAYER_AVGPOOL2D: {
        if (in->rank != 3)
            return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': %s needs (C, H, W), got rank %d",
                               f, l->name, lrp_layer_kind_name(l->kind), in->rank);
        if ((st = check_window(l, f, err, 0)))
            return st;
        /* PyTorch's rule: padding at most half the kernel, so every window
         * holds at least one real cell (max-pool never sees only -inf). */
        if (2 * l->pt > l->kh || 2 * l->pb > l->kh || 2 * l->pl > l->kw || 2 * l->pr > l->kw)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': pool padding must be at most half the kernel", f,
                               l->name);
        int64_t ho = window_out(in->d[1], l->pt, l->pb, l->kh, 1, l->sh);
        int64_t wo = window_out(in->d[2], l->pl, l->pr, l->kw, 1, l->sw);
        if (ho < 1 || wo < 1)
            return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': pool window larger than input",
                               f, l->name);
        o.rank = 3;
        o.d[0] = in->d[0];
        o.d[1] = ho;
        o.d[2] = wo;
        break;
    }
    case LRP_LAYER_GLOBALAVGPOOL:
        if (in->rank != 3)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': GlobalAvgPool needs (C, H, W), got rank %d", f,
                               l->name, in->rank);
        o.rank = 1;
        o.d[0] = in->d[0];
        break;
    case LRP_LAYER_ADD:
        for (int k = 1; k < l->n_in; k++) {
            const lrp_shape *s = &net->layers[l->in[k]].shape;
            if (s->rank != in->rank || memcmp(s->d, in->d, sizeof(int64_t) * (size_t)in->rank)) {
                lrp_shape_str(b1, sizeof b1, in);
                lrp_shape_str(b2, sizeof b2, s);
                return lrp_err_set(err, LRP_E_INVALID,
                                   "%s: layer '%s': Add inputs differ in shape: '%s' %s vs '%s' %s",
                                   f, l->name, net->layers[l->in[0]].name, b1,
                                   net->layers[l->in[k]].name, b2);
            }
        }
        o = *in;
        break;
    case LRP_LAYER_CONCAT: {
        o = *in;
        for (int k = 1; k < l->n_in; k++) {
            const lrp_shape *s = &net->layers[l->in[k]].shape;
            int same = s->rank == in->rank;
            for (int d = 1; same && d < in->rank; d++)
                same = s->d[d] == in->d[d];
            if (!same) {
                lrp_shape_str(b1, sizeof b1, in);
                lrp_shape_str(b2, sizeof b2, s);
                return lrp_err_set(err, LRP_E_INVALID,
                                   "%s: layer '%s': Concatenate inputs differ beyond channels: '%s' %s vs '%s' %s",
                                   f, l->name, net->layers[l->in[0]].name, b1,
                                   net->layers[l->in[k]].name, b2);
            }
            o.d[0] += s->d[0];
        }
        if (!shape_ok(&o))
            return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': concatenated shape too large", f,
                               l->name);
        break;
    }
    case LRP_LAYER_BATCHNORM:
        if (!isfinite(l->bn_eps) || l->bn_eps < 0.0f)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': BatchNorm epsilon %g must be finite and >= 0", f,
                               l->name, (double)l->bn_eps);
        o = *in;
        break;
    case LRP_LAYER_RELU:
    case LRP_LAYER_DROPOUT:
        o = *in;
        break;
    case LRP_LAYER_FLATTEN:
        o.rank = 1;
        o.d[0] = lrp_shape_numel(in);
        break;
    case LRP_LAYER_RESHAPE:
        if (!shape_ok(&l->target))
            return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': Reshape target shape invalid", f,
                               l->name);
        if (lrp_shape_numel(&l->target) != lrp_shape_numel(in)) {
            lrp_shape_str(b1, sizeof b1, in);
            lrp_shape_str(b2, sizeof b2, &l->target);
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': Reshape changes the element count: %s to %s", f,
                               l->name, b1, b2);
        }
        o = l->target;
        break;
    case LRP_LAYER_COUNT:
        LRP_ASSERT(0);
    }
    l->shape = o;
    return LRP_OK;
}

lrp_status lrp_net_infer(lrp_net *net, const char *where, lrp_err *err)
{
    const char *f = W(where);
    lrp_status st;
    if (net->n_layers < 2)
        return lrp_err_set(err, LRP_E_INVALID, "%s: network: needs an Input and at least one layer", f);
    if (net->batch < 1 || net->batch > LRP_MAX_BATCH)
        return lrp_err_set(err, LRP_E_INVALID, "%s: network: batch %d out of range [1, %d]", f,
                           net->batch, LRP_MAX_BATCH);
    if (net->layers[0].kind != LRP_LAYER_INPUT)
        return lrp_err_set(err, LRP_E_INVALID, "%s: network: first layer '%s' is not an Input", f,
                           net->layers[0].name);
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        if (i > 0 && l->kind == LRP_LAYER_INPUT)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': only one Input layer is supported", f, l->name);
        int mn = lrp_layer_kind_min_inputs(l->kind), mx = lrp_layer_kind_max_inputs(l->kind);
        if (l->n_in < mn || l->n_in > mx)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': %s takes %d to %d inputs, has %d", f, l->name,
                               lrp_layer_kind_name(l->kind), mn, mx, l->n_in);
        for (int k = 0; k < l->n_in; k++) {
            if (l->in[k] < 0 || l->in[k] >= net->n_layers)
                return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': input %d refers to no layer",
                                   f, l->name, k);
            if (l->in[k] == i)
                return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': cycle: layer feeds itself",
                                   f, l->name);
            if (l->in[k] > i)
                return lrp_err_set(err, LRP_E_INVALID,
                                   "%s: layer '%s': input '%s' comes later in execution order",
                                   f, l->name, net->layers[l->in[k]].name);
        }
        if ((st = infer_one(net, i, f, err)))
            return st;
        if ((st = lrp_rule_validate(&l->rule, l->kind, where, l->name, err)))
            return st;
    }
    /* Single sink: every layer but the last feeds some later layer. */
    for (int i = 0; i + 1 < net->n_layers; i++) {
        int used = 0;
        for (int j = i + 1; j < net->n_layers && !used; j++)
            for (int k = 0; k < net->layers[j].n_in; k++)
                if (net->layers[j].in[k] == i)
                    used = 1;
        if (!used)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': output unused (the network must have one output, the last layer)",
                               f, net->layers[i].name);
    }
    /* BN canonization folds into the sole consumer-free preceding linear layer. */
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        if (!(l->rule.flags & LRP_F_BN_CANONIZE))
            continue;
        const lrp_layer *p = &net->layers[l->in[0]];
        int consumers = 0;
        for (int j = 0; j < net->n_layers; j++)
            for (int k = 0; k < net->layers[j].n_in; k++)
                consumers += net->layers[j].in[k] == l->in[0];
        if ((p->kind != LRP_LAYER_DENSE && p->kind != LRP_LAYER_CONV2D) || consumers != 1)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': bn_canonize needs a Dense/Conv2D input used only by this BatchNorm",
                               f, l->name);
    }
    return LRP_OK;
}

int lrp_layer_param_shape(const lrp_net *net, int li, int which, lrp_shape *out)
{
    const lrp_layer *l = &net->layers[li];
    memset(out, 0, sizeof *out);
    const lrp_shape *in = l->n_in > 0 ? &net->layers[l->in[0]].shape : NULL;
    switch (l->kind) {
    case LRP_LAYER_DENSE:
        if (which == 0) {
            out->rank = 2;
            out->d[0] = l->units;
            out->d[1] = in->d[0];
            return 1;
        }
        if (which == 1 && l->has_bias) {
            out->rank = 1;
            out->d[0] = l->units;
            return 1;
        }
        return 0;
    case LRP_LAYER_CONV2D:
        if (which == 0) {
            /* Rank-4 weight flattened to (units, C/g * kh * kw) by callers
             * that need rank <= 3; loaders check the 4 dims themselves. */
            out->rank = 3;
            out->d[0] = l->units;
            out->d[1] = in->d[0] / l->groups;
            out->d[2] = (int64_t)l->kh * l->kw;
            return 1;
        }
        if (which == 1 && l->has_bias) {
            out->rank = 1;
            out->d[0] = l->units;
            return 1;
        }
        return 0;
    case LRP_LAYER_BATCHNORM:
        if (which >= 2 && which <= 5) {
            out->rank = 1;
            out->d[0] = in->d[0];
            return 1;
        }
        return 0;
    default:
        return 0;
    }
}

int64_t lrp_layer_param_count(const lrp_net *net, int li)
{
    int64_t n = 0;
    lrp_shape s;
    for (int w = 0; w < 6; w++)
        if (lrp_layer_param_shape(net, li, w, &s))
            n += lrp_shape_numel(&s);
    return n;
}

int64_t lrp_layer_macs(const lrp_net *net, int li)
{
    const lrp_layer *l = &net->layers[li];
    const lrp_shape *in = l->n_in > 0 ? &net->layers[l->in[0]].shape : NULL;
    switch (l->kind) {
    case LRP_LAYER_DENSE: return l->units * in->d[0];
    case LRP_LAYER_CONV2D:
        return lrp_shape_numel(&l->shape) * (in->d[0] / l->groups) * l->kh * l->kw;
    case LRP_LAYER_AVGPOOL2D: return lrp_shape_numel(&l->shape) * l->kh * l->kw;
    case LRP_LAYER_GLOBALAVGPOOL: return lrp_shape_numel(in);
    case LRP_LAYER_BATCHNORM: return lrp_shape_numel(&l->shape);
    case LRP_LAYER_ADD: return lrp_shape_numel(&l->shape) * (l->n_in - 1);
    default: return 0;
    }
}

/* ---- composites ---- */

lrp_composite_params lrp_composite_params_default(void)
{
    lrp_composite_params p;
    p.eps = 0x1.0c6f7ap-20f; /* 1e-6 as binary32 */
    p.gamma = 0.25f;
    p.low = 0.0f;
    p.high = 1.0f;
    p.stab = LRP_STAB_SIGN0_POS;
    p.bias = 1;
    p.flags = 0;
    return p;
}

static int is_linear(const lrp_layer *l)
{
    return l->kind == LRP_LAYER_DENSE || l->kind == LRP_LAYER_CONV2D;
}

/* The rule of the "norm" layers (Add, pools, explicit BN) under a composite
 * or a uniform rule: the stabilized proportional split, like Zennit's Norm. */
static void set_norm_layers(lrp_net *net, const lrp_rule_spec *base, float eps)
{
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        unsigned keep = l->rule.flags & (LRP_F_BN_CANONIZE | LRP_F_BN_FINE);
        switch (l->kind) {
        case LRP_LAYER_ADD:
        case LRP_LAYER_AVGPOOL2D:
        case LRP_LAYER_GLOBALAVGPOOL:
        case LRP_LAYER_BATCHNORM:
            l->rule = lrp_rule_default(eps > 0.0f ? LRP_RULE_EPSILON : LRP_RULE_ZERO);
            l->rule.eps = eps;
            l->rule.stab = base->stab;
            l->rule.flags = keep;
            break;
        case LRP_LAYER_MAXPOOL2D:
            l->rule = lrp_rule_default(LRP_RULE_WTA);
            l->rule.flags = base->flags & LRP_F_WTA_SPLIT_TIES;
            break;
        case LRP_LAYER_DENSE:
        case LRP_LAYER_CONV2D: break;
        default: l->rule = lrp_rule_default(LRP_RULE_PASS); break;
        }
    }
}

void lrp_rule_apply_all(lrp_net *net, const lrp_rule_spec *r)
{
    float eps = r->rule == LRP_RULE_EPSILON ? r->eps : 0.0f;
    set_norm_layers(net, r, eps);
    for (int i = 0; i < net->n_layers; i++)
        if (is_linear(&net->layers[i]))
            net->layers[i].rule = *r;
    net->composite[0] = '\0';
}

void lrp_composite_apply(lrp_net *net, lrp_composite_id c, const lrp_composite_params *p)
{
    lrp_rule_spec base = lrp_rule_default(LRP_RULE_EPSILON);
    base.eps = p->eps;
    base.stab = p->stab;
    base.bias = p->bias;
    base.flags = p->flags & ~(LRP_F_BN_CANONIZE | LRP_F_BN_FINE);
    set_norm_layers(net, &base, p->eps);

    int first = -1, first_conv = -1;
    for (int i = 0; i < net->n_layers && first < 0; i++)
        if (is_linear(&net->layers[i]))
            first = i;
    for (int i = 0; i < net->n_layers && first_conv < 0; i++)
        if (net->layers[i].kind == LRP_LAYER_CONV2D)
            first_conv = i;

    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        if (!is_linear(l))
            continue;
        lrp_rule_spec r = base; /* dense: epsilon */
        int conv = l->kind == LRP_LAYER_CONV2D;
        switch (c) {
        case LRP_COMPOSITE_EPSILON_PLUS:
        case LRP_COMPOSITE_EPSILON_PLUS_FLAT:
            if (conv)
                r.rule = LRP_RULE_ZPLUS;
            if (c == LRP_COMPOSITE_EPSILON_PLUS_FLAT && i == first)
                r.rule = LRP_RULE_FLAT;
            break;
        case LRP_COMPOSITE_EPSILON_ALPHA2_BETA1:
        case LRP_COMPOSITE_EPSILON_ALPHA2_BETA1_FLAT:
        case LRP_COMPOSITE_SEQUENTIAL_PRESET_B:
            if (conv) {
                r.rule = LRP_RULE_ALPHABETA;
                r.alpha = 2.0f;
                r.beta = 1.0f;
            }
            if (c == LRP_COMPOSITE_EPSILON_ALPHA2_BETA1_FLAT && i == first)
                r.rule = LRP_RULE_FLAT;
            break;
        case LRP_COMPOSITE_SEQUENTIAL_PRESET_A:
            if (conv) {
                r.rule = LRP_RULE_ALPHABETA;
                r.alpha = 1.0f;
                r.beta = 0.0f;
            }
            break;
        case LRP_COMPOSITE_EPSILON_GAMMA_BOX:
            /* Zennit's composite of this name: ZBox on the first
             * *convolution* only (a Dense before it keeps epsilon), and
             * Zennit's Gamma (>= 0.5: the generalized a+/a- rule, which
             * selects by the layer's output and loses R_j where that
             * output is exactly 0) on the other convolutions. */
            if (i == first_conv) {
                r.rule = LRP_RULE_ZBOX;
                r.low = p->low;
                r.high = p->high;
            } else if (conv) {
                r.rule = LRP_RULE_GAMMA;
                r.gamma = p->gamma;
                r.flags |= LRP_F_GAMMA_GENERALIZED | LRP_F_ZENNIT_GAMMA_DROP0;
            }
            break;
        case LRP_COMPOSITE_COUNT: LRP_ASSERT(0);
        }
        l->rule = r;
    }
    snprintf(net->composite, sizeof net->composite, "%s", lrp_composite_name(c));
}

/* ---- traces ---- */

int lrp_net_trace_find(const lrp_net *net, const char *source)
{
    for (int i = 0; i < net->n_traces; i++)
        if (strcmp(net->traces[i].source, source) == 0)
            return i;
    return -1;
}

lrp_trace *lrp_net_trace_add(lrp_net *net, const char *source, lrp_err *err)
{
    if (!source || !*source || strlen(source) >= LRP_NAME_MAX) {
        lrp_err_set(err, LRP_E_USAGE, "<network>: trace source name empty or too long");
        return NULL;
    }
    int i = lrp_net_trace_find(net, source);
    lrp_trace *t;
    if (i >= 0) {
        t = &net->traces[i];
        lrp_trace_clear(t);
    } else {
        lrp_trace *nt = realloc(net->traces, (size_t)(net->n_traces + 1) * sizeof *nt);
        if (!nt) {
            lrp_err_set(err, LRP_E_NOMEM, "<network>: out of memory adding trace '%s'", source);
            return NULL;
        }
        net->traces = nt;
        t = &net->traces[net->n_traces++];
        memset(t, 0, sizeof *t);
    }
    memcpy(t->source, source, strlen(source) + 1); /* length checked above */
    t->n_layers = net->n_layers;
    t->relevance = calloc((size_t)net->n_layers, sizeof *t->relevance);
    t->relevance_lo = calloc((size_t)net->n_layers, sizeof *t->relevance_lo);
    t->activation = calloc((size_t)net->n_layers, sizeof *t->activation);
    t->rules = calloc((size_t)net->n_layers, sizeof *t->rules);
    if (!t->relevance || !t->relevance_lo || !t->activation || !t->rules) {
        lrp_trace_clear(t);
        lrp_err_set(err, LRP_E_NOMEM, "<network>: out of memory adding trace '%s'", source);
        return NULL;
    }
    for (int k = 0; k < net->n_layers; k++)
        t->rules[k] = net->layers[k].rule;
    return t;
}
