/*
 * api.c -- the public entry points that run LRP and judge a trace
 * (include/lrp.h, "Running LRP and judging a trace").  Thin wrappers over
 * the pipeline (core/pipeline.h), the two backends and lrp_check, so a
 * program needs nothing but lrp.h: the same code paths as `lrp-oracle
 * reference`, `fast`, `check` and `compare`.
 */
#include "lrp.h"

#include <math.h>
#include <mpfr.h>
#include <stdlib.h>
#include <string.h>

#include "backend_f32.h"
#include "check.h"
#include "reference.h"

struct lrp_judgement {
    lrp_run_report rep;
};

/* Frees the per-layer arrays of a partly filled trace and removes it. */
static void drop_trace(lrp_net *net, const char *source)
{
    int t = lrp_net_trace_find(net, source);
    if (t < 0)
        return;
    lrp_trace_clear(&net->traces[t]);
    memmove(&net->traces[t], &net->traces[t + 1],
            (size_t)(net->n_traces - t - 1) * sizeof *net->traces);
    net->n_traces--;
}

lrp_status lrp_run(lrp_trace **out, lrp_net *net, lrp_engine engine, const lrp_run_opts *opts,
                   lrp_err *err)
{
    if (out)
        *out = NULL;
    if (!net || (engine != LRP_ENGINE_REFERENCE && engine != LRP_ENGINE_FAST))
        return lrp_err_set(err, LRP_E_USAGE, "lrp_run: no network or unknown engine %d",
                           (int)engine);
    int prec = opts && opts->prec > 0 ? opts->prec : 128;
    int threads = opts && opts->threads > 0 ? opts->threads : 2;
    if (prec < MPFR_PREC_MIN || prec > 1 << 20)
        return lrp_err_set(err, LRP_E_USAGE, "lrp_run: precision %d out of range", prec);
    int ref = engine == LRP_ENGINE_REFERENCE;
    const char *name = ref ? "reference" : "fastpath";
    lrp_status st = lrp_net_infer(net, NULL, err);
    if (st)
        return st;
    lrp_ref_ctx rcx;
    lrp_backend be;
    lrp_f32_ctx *fcx = NULL;
    lrp_pipe *p = NULL;
    if (ref) {
        lrp_ref_ctx_init(&rcx, prec, threads);
        lrp_ref_backend(&be, &rcx);
    } else {
        if (!(fcx = lrp_f32_ctx_new(threads)))
            return lrp_err_set(err, LRP_E_NOMEM, "lrp_run: out of memory");
        lrp_f32_backend(&be, fcx);
    }
    if ((st = lrp_pipe_run_ex(&p, &be, net, LRP_PIPE_RELEVANCE, err)))
        goto done;
    lrp_trace *t = lrp_net_trace_add(net, name, err);
    if (!t) {
        st = err ? err->code : LRP_E_NOMEM;
        goto done;
    }
    snprintf(t->producer, sizeof t->producer, "liblrp %s (%s)", LRP_VERSION_STRING,
             ref ? "MPFR reference" : "float32 fast path");
    t->precision = ref ? prec : 24;
    snprintf(t->composite, sizeof t->composite, "%s", net->composite);
    for (int i = 0; i < net->n_layers; i++) {
        int64_t n = p->L[i].n * net->batch;
        size_t m = (size_t)(n ? n : 1) * sizeof(float);
        t->relevance[i] = malloc(m);
        t->activation[i] = malloc(m);
        if (ref)
            t->relevance_lo[i] = malloc(m);
        if (!t->relevance[i] || !t->activation[i] || (ref && !t->relevance_lo[i])) {
            drop_trace(net, name);
            st = lrp_err_set(err, LRP_E_NOMEM, "lrp_run: out of memory storing the trace");
            goto done;
        }
        if (ref) {
            mpfr_t d;
            mpfr_init2(d, prec + 300); /* x - RN32(x) exactly */
            for (int64_t k = 0; k < n; k++) {
                mpfr_srcptr x = be.at(be.ctx, p->L[i].rel, k);
                float h = mpfr_get_flt(x, MPFR_RNDN);
                t->relevance[i][k] = h;
                t->relevance_lo[i][k] = 0.0f;
                if (isfinite(h)) {
                    mpfr_sub_d(d, x, (double)h, MPFR_RNDN);
                    t->relevance_lo[i][k] = mpfr_get_flt(d, MPFR_RNDN);
                }
                t->activation[i][k] = mpfr_get_flt(be.at(be.ctx, p->L[i].act, k), MPFR_RNDN);
            }
            mpfr_clear(d);
        } else {
            memcpy(t->relevance[i], p->L[i].rel, (size_t)n * sizeof(float));
            memcpy(t->activation[i], p->L[i].act, (size_t)n * sizeof(float));
        }
    }
    if (out)
        *out = t;
done:
    lrp_pipe_free(p);
    lrp_f32_ctx_free(fcx);
    return st;
}

lrp_status lrp_judge(lrp_judgement **out, const lrp_net *net, const char *source,
                     const lrp_judge_opts *opts, lrp_err *err)
{
    if (!out || !net)
        return lrp_err_set(err, LRP_E_USAGE, "lrp_judge: no output or no network");
    *out = NULL;
    int t = -1;
    if (source && (t = lrp_net_trace_find(net, source)) < 0)
        return lrp_err_set(err, LRP_E_USAGE, "lrp_judge: /traces/%s: no such trace", source);
    lrp_check_opts co;
    lrp_check_opts_default(&co);
    if (opts) {
        if (opts->prec > 0)
            co.prec = opts->prec;
        if (opts->threads > 0)
            co.threads = opts->threads;
        if (opts->no_proof)
            co.proof_extra = 0;
        co.strict = opts->strict;
        if (opts->max_ill > 0)
            co.max_ill = opts->max_ill;
        if (opts->identify)
            co.identify = opts->identify > 0 ? 1 : 0;
        co.recomputed_den = opts->recomputed_den;
    }
    if (co.prec < MPFR_PREC_MIN || co.prec > 1 << 20)
        return lrp_err_set(err, LRP_E_USAGE, "lrp_judge: precision %d out of range", co.prec);
    co.source = source;
    co.label = net->description[0] ? net->description : "<network>";
    co.ruleset = source ? "rules of the trace" : "rules of the network";
    /* the caller's net stays as it is: the reference runs on a copy of the
     * rule assignment (the trace's own, as `compare` does) */
    lrp_rule_spec *saved = malloc((size_t)net->n_layers * sizeof *saved);
    lrp_judgement *j = calloc(1, sizeof *j);
    if (!saved || !j) {
        free(saved);
        free(j);
        return lrp_err_set(err, LRP_E_NOMEM, "lrp_judge: out of memory");
    }
    lrp_net *mnet = (lrp_net *)net; /* rules restored below */
    for (int i = 0; i < net->n_layers; i++) {
        saved[i] = net->layers[i].rule;
        if (t >= 0 && net->traces[t].rules)
            mnet->layers[i].rule = net->traces[t].rules[i];
    }
    lrp_status st = lrp_net_infer(mnet, NULL, err);
    if (!st)
        st = lrp_check(&j->rep, mnet, &co, err);
    for (int i = 0; i < net->n_layers; i++)
        mnet->layers[i].rule = saved[i];
    free(saved);
    if (st) {
        lrp_run_report_free(&j->rep);
        free(j);
        return st;
    }
    *out = j;
    return LRP_OK;
}

int lrp_judgement_identified(const lrp_judgement *j, const char **closest, const char **text)
{
    if (closest)
        *closest = j ? j->rep.ident_best : "";
    if (text)
        *text = j ? j->rep.ident : "";
    if (!j || !j->rep.ident_ran)
        return -1;
    return j->rep.ident_flagged ? 1 : 0;
}

void lrp_judgement_free(lrp_judgement *j)
{
    if (!j)
        return;
    lrp_run_report_free(&j->rep);
    free(j);
}

lrp_verdict lrp_judgement_verdict(const lrp_judgement *j) { return j->rep.verdict; }
int lrp_judgement_ok(const lrp_judgement *j) { return lrp_run_ok(&j->rep); }

double lrp_judgement_max_ratio(const lrp_judgement *j)
{
    return fmax(j->rep.max_sharp_ratio, j->rep.max_tlocal_ratio);
}

int lrp_judgement_n_layers(const lrp_judgement *j) { return j->rep.n_layers; }

static const lrp_layer_report *jl(const lrp_judgement *j, int i)
{
    LRP_ASSERT(i >= 0 && i < j->rep.n_layers);
    return &j->rep.layers[i];
}

const char *lrp_judgement_layer_name(const lrp_judgement *j, int i) { return jl(j, i)->name; }
int lrp_judgement_layer_judged(const lrp_judgement *j, int i) { return jl(j, i)->compared; }

lrp_verdict lrp_judgement_layer_verdict(const lrp_judgement *j, int i)
{
    const lrp_layer_report *l = jl(j, i);
    lrp_verdict v = l->compared ? l->verdict : LRP_V_PASS;
    if (l->has_tlocal && l->tlocal_verdict > v)
        v = l->tlocal_verdict;
    return v;
}

double lrp_judgement_layer_ratio(const lrp_judgement *j, int i)
{
    const lrp_layer_report *l = jl(j, i);
    return l->compared ? l->e2e.ratio_pctl[LRP_PCTL_N - 1] : NAN;
}

const char *lrp_judgement_layer_by(const lrp_judgement *j, int i) { return jl(j, i)->by; }
const char *lrp_judgement_origin(const lrp_judgement *j) { return j->rep.origin; }

int lrp_judgement_first_nonfinite(const lrp_judgement *j, int *layer, int64_t *cell,
                                  const char **cause)
{
    if (j->rep.nf_layer < 0)
        return 0;
    if (layer)
        *layer = j->rep.nf_layer;
    if (cell)
        *cell = j->rep.nf_index;
    if (cause)
        *cause = j->rep.nf_cause;
    return 1;
}

lrp_status lrp_judgement_write_json(const lrp_judgement *j, const char *path, lrp_err *err)
{
    return lrp_report_json(path, &j->rep, 1, err);
}
