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
#include "kinds.h"
#include "pipeline.h"

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
        free(l->w2);
        free(l->b2);
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
    free(net->key_padding_mask);
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

lrp_rule_spec lrp_rule_default_for(lrp_layer_kind k)
{
    if ((unsigned)k >= LRP_LAYER_COUNT)
        return lrp_rule_default(LRP_RULE_PASS);
    return lrp_rule_default(lrp_kind(k)->default_rule);
}

static int rule_allowed(lrp_rule_id r, lrp_layer_kind k)
{
    if ((unsigned)k >= LRP_LAYER_COUNT)
        return r == LRP_RULE_PASS;
    return (lrp_kind(k)->rules >> r) & 1u;
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
    /* an eps on identity is LXT's implicit identity of an activation
     * (core/kind_token.c); elsewhere identity has nothing to stabilize */
    if (r->rule == LRP_RULE_IDENTITY && r->eps != 0.0f && k != LRP_LAYER_GELU &&
        k != LRP_LAYER_SILU && k != LRP_LAYER_TANH)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: rule of layer '%s': identity with epsilon %g on a %s layer (only "
                           "GELU, SiLU and Tanh take one: R_x = x R / stab(x))",
                           f, lname, (double)r->eps, lrp_layer_kind_name(k));
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
    const char *const *pname = lrp_param_names;
    for (int li = 0; li < net->n_layers; li++) {
        const lrp_layer *l = &net->layers[li];
        if (l->kind == LRP_LAYER_EMBEDDING && net->input) {
            /* token ids: exact integers in [0, vocab) (docs/FORMAT.md) */
            int64_t n = lrp_shape_numel(&net->layers[l->in[0]].shape) * net->batch;
            for (int64_t i = 0; i < n; i++) {
                float v = net->input[i];
                if (!(v >= 0.0f && v < (float)l->vocab && v == (float)(int64_t)v))
                    return lrp_err_set(err, LRP_E_INVALID,
                                       "%s: data/tokens[%lld] = %g outside the vocabulary [0, "
                                       "%lld) of Embedding '%s'",
                                       f, (long long)i, (double)v, (long long)l->vocab, l->name);
            }
        }
        for (int k = 0; k < LRP_P_COUNT; k++) {
            lrp_shape s;
            const float *p = lrp_layer_param(l, k);
            const float *arr[LRP_P_COUNT];
            arr[k] = p;
            if (!arr[k] || !lrp_layer_param_shape(net, li, k, &s))
                continue;
            int64_t n = lrp_shape_numel(&s);
            int64_t i = first_nonfinite(arr[k], n);
            if (i >= 0)
                return lrp_err_set(err, LRP_E_INVALID,
                                   "%s: layer '%s': parameter %s[%lld] %s (parameters must be "
                                   "finite: no relevance could be judged through this layer)",
                                   f, l->name, pname[k], (long long)i, value_problem(arr[k][i]));
            if (k != LRP_P_VAR)
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
    int64_t pT = lrp_padding_T(net);
    if (pT < 0)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: attention layers with use_padding_mask differ in T (one "
                           "key_padding_mask serves them all)",
                           f);
    if (pT > 0 && !net->key_padding_mask)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: data/key_padding_mask missing (a MultiHeadAttention layer has "
                           "use_padding_mask 1)",
                           f);
    for (int64_t i = 0; pT > 0 && i < pT * net->batch; i++)
        if (net->key_padding_mask[i] != 0.0f && net->key_padding_mask[i] != 1.0f)
            return lrp_err_set(err, LRP_E_INVALID, "%s: data/key_padding_mask[%lld] = %g not 0 or 1",
                               f, (long long)i, (double)net->key_padding_mask[i]);
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
    /* a Dense on a token sequence runs its rows as one batch (lrp_lin.rows):
     * per-input bounds would be read per row, not per token; not supported */
    if ((net->zbox_low || net->zbox_high) && net->n_layers > 0 && net->layers[0].shape.rank == 2)
        return lrp_err_set(err, LRP_E_UNSUPPORTED,
                           "%s: data/zbox_low: per-input z^B bounds on a token input (T, F) are "
                           "not supported (use the rule's scalar low/high)",
                           f);
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
    lrp_shape o;
    lrp_status st;
    memset(&o, 0, sizeof o);
    if ((st = lrp_kind(l->kind)->infer(net, li, f, err, &o)))
        return st;
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
        /* a token Dense's output (T, units) has T BatchNorm channels, not
         * units: nothing to fold per unit */
        if (lrp_kind(p->kind)->role != LRP_ROLE_LINEAR || consumers != 1 ||
            p->shape.rank == 2)
            return lrp_err_set(err, LRP_E_INVALID,
                               "%s: layer '%s': bn_canonize needs a Dense/Conv2D input used only by this BatchNorm",
                               f, l->name);
    }
    return LRP_OK;
}

int lrp_layer_param_shape(const lrp_net *net, int li, int which, lrp_shape *out)
{
    const lrp_kind_desc *kd = lrp_kind(net->layers[li].kind);
    memset(out, 0, sizeof *out);
    if (!kd->param_shape || which < 0 || which >= LRP_P_COUNT)
        return 0;
    return kd->param_shape(net, li, which, out);
}

int64_t lrp_layer_param_count(const lrp_net *net, int li)
{
    int64_t n = 0;
    lrp_shape s;
    for (int w = 0; w < LRP_P_COUNT; w++)
        if (lrp_layer_param_shape(net, li, w, &s))
            n += lrp_shape_numel(&s);
    return n;
}

int64_t lrp_layer_macs(const lrp_net *net, int li)
{
    const lrp_kind_desc *kd = lrp_kind(net->layers[li].kind);
    return kd->macs ? kd->macs(net, li) : 0;
}

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
    return lrp_kind(l->kind)->role == LRP_ROLE_LINEAR;
}

/* The rule of the "norm" layers (Add, pools, explicit BN) under a composite
 * or a uniform rule: the stabilized proportional split, like Zennit's Norm. */
static void set_norm_layers(lrp_net *net, const lrp_rule_spec *base, float eps)
{
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        unsigned keep = l->rule.flags & (LRP_F_BN_CANONIZE | LRP_F_BN_FINE);
        switch (lrp_kind(l->kind)->role) {
        case LRP_ROLE_NORM:
            l->rule = lrp_rule_default(eps > 0.0f ? LRP_RULE_EPSILON : LRP_RULE_ZERO);
            l->rule.eps = eps;
            l->rule.stab = base->stab;
            l->rule.flags = keep;
            break;
        case LRP_ROLE_MAX:
            l->rule = lrp_rule_default(LRP_RULE_WTA);
            l->rule.flags = base->flags & LRP_F_WTA_SPLIT_TIES;
            break;
        case LRP_ROLE_LINEAR: break;
        case LRP_ROLE_PASS: l->rule = lrp_rule_default(LRP_RULE_PASS); break;
        case LRP_ROLE_OWN: {
            int staged = l->kind == LRP_LAYER_ATTNSCORES || l->kind == LRP_LAYER_ATTNCONTEXT;
            if (l->kind == LRP_LAYER_SOFTMAX || l->kind == LRP_LAYER_MUL ||
                l->kind == LRP_LAYER_MHA || l->kind == LRP_LAYER_EMBEDDING ||
                l->kind == LRP_LAYER_POSITION || l->kind == LRP_LAYER_SELECTTOKEN || staged ||
                l->kind == LRP_LAYER_ATTNSOFTMAX) {
                /* the attention kinds: their kind's default (Softmax and
                 * AttnSoftmax taylor, Mul, AttnScores and AttnContext
                 * uniform, MultiHeadAttention attnlrp, the ones that
                 * divide with the composite's eps and stabilizer on their
                 * denominators; Embedding / Position lrp0) */
                l->rule = lrp_rule_default_for(l->kind);
                if (l->kind == LRP_LAYER_MHA || staged) {
                    l->rule.eps = eps > 0.0f ? eps : base->eps;
                    l->rule.stab = base->stab;
                }
                break;
            }
            /* the token layers: the kind's own rule (a file's ln_fine or
             * identity is kept); the rules that divide take the
             * composite's eps and stabilizer, as the norm layers do */
            lrp_rule_id id = l->rule.rule;
            if (!((lrp_kind(l->kind)->rules >> id) & 1u))
                id = lrp_kind(l->kind)->default_rule;
            l->rule = lrp_rule_default(id);
            if (id == LRP_RULE_LN_LINEAR || id == LRP_RULE_LN_FINE) {
                l->rule.eps = eps;
                l->rule.stab = base->stab;
            }
            break;
        }
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

    /* the composite's row (core/ruletab.c) */
    const lrp_composite_desc *cd = lrp_composite_describe(c);
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        if (!is_linear(l))
            continue;
        lrp_rule_spec r = base; /* dense: epsilon */
        int conv = l->kind == LRP_LAYER_CONV2D;
        if (cd->first_conv != LRP_RULE_COUNT && i == first_conv) {
            r.rule = cd->first_conv; /* z^B */
            r.low = p->low;
            r.high = p->high;
        } else if (conv && cd->conv != LRP_RULE_COUNT) {
            r.rule = cd->conv;
            if (cd->conv == LRP_RULE_ALPHABETA) {
                r.alpha = cd->alpha;
                r.beta = cd->beta;
            } else if (cd->conv == LRP_RULE_GAMMA) {
                r.gamma = p->gamma;
                r.flags |= LRP_F_GAMMA_GENERALIZED | LRP_F_ZENNIT_GAMMA_DROP0;
            }
        }
        if (cd->first != LRP_RULE_COUNT && i == first)
            r.rule = cd->first;
        if (cd->dense != LRP_RULE_COUNT) {
            /* AttnLRP / CPLRP: every linear layer LRP-0 (eps 0) */
            r = lrp_rule_default(cd->dense);
            r.stab = p->stab;
        }
        l->rule = r;
    }
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        if (cd->dense != LRP_RULE_COUNT && lrp_kind(l->kind)->role == LRP_ROLE_NORM &&
            !(l->rule.flags & LRP_F_BN_CANONIZE)) {
            l->rule = lrp_rule_default(LRP_RULE_ZERO); /* Add, BN: the plain split */
            l->rule.stab = p->stab;
        }
        if (cd->mha != LRP_RULE_COUNT && l->kind == LRP_LAYER_MHA)
            l->rule.rule = cd->mha;
        /* the attention as stages: CP-LRP holds the weights constant at
         * the context product (nothing reaches the scores) */
        if (cd->mha != LRP_RULE_COUNT && l->kind == LRP_LAYER_ATTNCONTEXT)
            l->rule.rule = cd->mha == LRP_RULE_CPLRP ? LRP_RULE_CPLRP : LRP_RULE_UNIFORM;
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
