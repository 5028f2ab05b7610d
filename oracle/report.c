/*
 * report.c -- rendering oracle runs as text, JSON and JUnit XML.
 * Machine-readable outputs are written to a temporary file in the target's
 * directory and renamed over it, so a reader never sees half a report and a
 * failed write leaves the previous file intact.
 */
#include "report.h"
#include "safeout.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void lrp_run_report_free(lrp_run_report *r)
{
    if (!r)
        return;
    for (int i = 0; r->layers && i < r->n_layers; i++) {
        free(r->layers[i].cell_ref);
        free(r->layers[i].cell_got);
        free(r->layers[i].cell_units);
        free(r->layers[i].cell_mark);
        free(r->layers[i].bn_in);
        free(r->layers[i].bn_abs);
        free(r->layers[i].bn_out);
    }
    free(r->layers);
    r->layers = NULL;
    r->n_layers = 0;
}

int lrp_run_ok(const lrp_run_report *r)
{
    if (r->has_expect)
        return r->expected_ok;
    return r->verdict == LRP_V_PASS || r->verdict == LRP_V_ILL_CONDITIONED;
}

/* ---- text ---- */

static const char *vcolor(lrp_verdict v)
{
    switch (v) {
    case LRP_V_PASS: return "\033[32m";
    case LRP_V_ILL_CONDITIONED:
    case LRP_V_UNRESOLVED: return "\033[36m";
    case LRP_V_SUSPECT: return "\033[33m";
    default: return "\033[31m";
    }
}

static void fmt_ratio(char *b, size_t n, double x)
{
    if (isnan(x))
        snprintf(b, n, "-");
    else if (isinf(x))
        snprintf(b, n, "inf");
    else if (x == 0.0)
        snprintf(b, n, "0");
    else
        snprintf(b, n, "%.3g", x);
}

/* Strings of a report come from files (layer names, descriptions) and may
 * carry terminal escape sequences: printed through lrp_str_esc.  Rotating
 * buffers, enough for one fprintf's arguments. */
static const char *E(const char *s)
{
    static char buf[8][4096];
    static int k;
    k = (k + 1) % 8;
    return lrp_str_esc(buf[k], sizeof buf[k], s);
}

/* The layer(s) that computed a relevance, compact: "conv2+add", "(output)". */
static void by_short(char *d, size_t n, const lrp_layer_report *l)
{
    const char *src = l->by;
    char tmp[160];
    if (!src[0] && !strncmp(l->rule, "from '", 6)) {
        /* the trace-local judgement did not run: the first consumer */
        snprintf(tmp, sizeof tmp, "%s", l->rule + 5);
        char *c = strchr(tmp + 1, '\'');
        if (c)
            c[1] = '\0';
        src = tmp;
    }
    if (!strncmp(src, "the start", 9)) {
        snprintf(d, n, "(output)");
        return;
    }
    size_t k = 0;
    for (const char *p = src; *p && k + 1 < n; p++) {
        if (*p == '\'')
            continue;
        if (!strncmp(p, " + ", 3)) {
            d[k++] = '+';
            p += 2;
            continue;
        }
        d[k++] = *p;
    }
    d[k] = '\0';
}

/* A cell of at most w columns: longer text ends in '~'. */
static const char *fit(char *d, size_t n, const char *s, int w)
{
    if ((int)strlen(s) <= w || w < 2) {
        snprintf(d, n, "%s", s);
        return d;
    }
    snprintf(d, n, "%.*s~", w - 1, s);
    return d;
}

/* Prose under a row, indented, wrapped at `width` columns (0: no wrap).
 * The first `keep` bytes are never broken (scripts read a name there). */
static void prose_keep(FILE *f, int indent, int width, const char *text, size_t keep);
static void prose(FILE *f, int indent, int width, const char *text)
{
    prose_keep(f, indent, width, text, 0);
}

static void prose_keep(FILE *f, int indent, int width, const char *text, size_t keep)
{
    int col = 0;
    const char *p = text;
    fprintf(f, "%*s", indent, "");
    col = indent;
    while (*p) {
        const char *e = strchr(p, ' ');
        while (e && (size_t)(e - text) < keep)
            e = strchr(e + 1, ' ');
        int wl = e ? (int)(e - p) : (int)strlen(p);
        if (width > 0 && col > indent && col + 1 + wl > width) {
            fprintf(f, "\n%*s", indent + 2, "");
            col = indent + 2;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, (size_t)wl, f);
        col += wl;
        p += wl;
        while (*p == ' ')
            p++;
    }
    fputc('\n', f);
}

static void prosef(FILE *f, int indent, int width, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void prosef(FILE *f, int indent, int width, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* names and texts come from files: escaped for a terminal */
    prose(f, indent, width, E(buf));
}

void lrp_report_legend(FILE *f)
{
    static const char *const items[][2] = {
        {"computed by", "the layer(s) whose backward step computed the row's relevance (the "
                        "relevance at the output of 'tensor'); a discrepancy is attributed to "
                        "it. (output): the output relevance the run starts from."},
        {"end-to-end", "verdict of the trace against the MPFR reference of the whole network."},
        {"bitwise", "cells equal to the reference rounded to binary32 / cells."},
        {"ratio", "largest |got - reference| over the sharp (probabilistic) float32 error bound "
                  "of the cell; below 1 is the normal float32 case, the rigorous worst-case "
                  "bound is an upper tier (the 'gauge')."},
        {"local", "verdict of the trace-local judgement: the reference's own step of the "
                  "computing layer, fed the trace's relevance at that layer's output and the "
                  "trace's activations, against the trace (one step's rounding: a bound that "
                  "does not grow with depth)."},
        {"ill%", "share of the cells excused as ill-conditioned (float32 cannot determine "
                 "their denominator)."},
        {"cons", "conservation residual |sum R_in + absorbed - sum R_out| / sum |R| of a "
                 "layer's own rule; absorbed = bias, stabilizer, BatchNorm shift."},
        {"verdicts", "PASS; ILL-CONDITIONED (excused); UNRESOLVED (reference at p and p+64 "
                     "disagree); SUSPECT (beyond the sharp bound, within the rigorous one); "
                     "FAIL (beyond both, gross errors, or a layer total beyond its budget); "
                     "NONFINITE (NaN/inf where the reference is finite)."},
        {"growth", "largest max|R| of a layer over max|R| of the output (reference)."},
        {"first NaN/inf", "the first non-finite cell in backward order, the layer and unit that "
                          "produced it, and why."},
    };
    fprintf(f, "legend (docs/ORACLE.md):\n");
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        char b[1024];
        snprintf(b, sizeof b, "%-13s %s", items[i][0], items[i][1]);
        prose(f, 2, 100, b);
    }
}

void lrp_report_text(FILE *f, const lrp_run_report *r, int color, int verbose)
{
    lrp_text_opts o = {color, verbose, 0};
    lrp_report_text_ex(f, r, &o);
}

void lrp_report_text_ex(FILE *f, const lrp_run_report *r, const lrp_text_opts *o)
{
    const int color = o->color, verbose = o->verbose, wide = o->wide;
    const int W = wide ? 0 : 100; /* wrap width of the prose lines */
    const char *reset = color ? "\033[0m" : "";
    fprintf(f, "%s  [%s, %s, source %s, reference p=%d]\n", E(r->fixture), E(r->ruleset),
            E(r->convention), E(r->source), r->precision);
    /* rows: the relevance at each tensor, named first by the layer whose
     * backward step computed it; end to end: against the reference of the
     * whole network; local: against the reference's step of that layer on
     * the trace's own inputs; ratios are to the sharp bound (--explain) */
    int nw = 14; /* name columns: 99 columns in all by default */
    if (wide) {
        nw = 10;
        for (int i = 0; i < r->n_layers; i++) {
            char b[160];
            by_short(b, sizeof b, &r->layers[i]);
            if ((int)strlen(b) > nw)
                nw = (int)strlen(b);
            if ((int)strlen(r->layers[i].name) > nw)
                nw = (int)strlen(r->layers[i].name);
        }
        fprintf(f, "  %-*s %-*s %-13s %-15s %11s %8s %-15s %8s %5s\n", nw, "computed by", nw,
                "tensor", "kind", "end-to-end", "bitwise", "ratio", "local", "ratio", "ill%");
    } else {
        fprintf(f, "  %-*s %-*s %-15s %11s %8s %-15s %8s %5s\n", nw, "computed by", nw, "tensor",
                "end-to-end", "bitwise", "ratio", "local", "ratio", "ill%");
    }
    const int ind = 4;
    for (int i = 0; i < r->n_layers; i++) {
        const lrp_layer_report *l = &r->layers[i];
        if (!l->compared && !l->has_tlocal && !verbose)
            continue;
        char pmax[32], lmax[32], ill[32], byb[160], c1[160], c2[160];
        fmt_ratio(pmax, sizeof pmax, l->compared ? l->e2e.ratio_pctl[3] : NAN);
        fmt_ratio(lmax, sizeof lmax, l->has_tlocal ? l->tlocal.ratio_pctl[3] : NAN);
        if (l->has_tlocal && l->tlocal.n > 0)
            snprintf(ill, sizeof ill, "%.1f", 100.0 * (double)l->tlocal.ill / (double)l->tlocal.n);
        else
            snprintf(ill, sizeof ill, "-");
        char bw[40];
        if (wide || l->e2e.n < 100000)
            snprintf(bw, sizeof bw, "%lld/%lld", (long long)l->e2e.bitwise_equal,
                     (long long)l->e2e.n);
        else
            snprintf(bw, sizeof bw, "%.1f%%",
                     100.0 * (double)l->e2e.bitwise_equal / (double)l->e2e.n);
        by_short(byb, sizeof byb, l);
        fprintf(f, "  %-*s %-*s ", nw, E(fit(c1, sizeof c1, byb, nw)), nw,
                E(fit(c2, sizeof c2, l->name, nw)));
        if (wide)
            fprintf(f, "%-13s ", lrp_layer_kind_name(l->kind));
        fprintf(f, "%s%-15s%s %11s %8s %s%-15s%s %8s %5s\n", color ? vcolor(l->verdict) : "",
                l->compared ? lrp_verdict_name(l->verdict) : "(not traced)", reset, bw, pmax,
                color && l->has_tlocal ? vcolor(l->tlocal_verdict) : "",
                l->has_tlocal ? lrp_verdict_name(l->tlocal_verdict) : "-",
                color && l->has_tlocal ? reset : "", lmax, ill);
        if (l->compared && l->verdict != LRP_V_PASS && l->e2e.worst >= 0)
            prosef(f, ind, W, "end to end, worst cell %lld: got %.9g, reference %.9g (%s)",
                   (long long)l->e2e.worst, (double)l->e2e.worst_got, (double)l->e2e.worst_ref,
                   l->rule);
        if (l->why[0])
            prosef(f, ind, W, "layer-level (local: by %s): %s", l->by, l->why);
        if (l->has_tlocal && l->tlocal.defined > 0 &&
            l->tlocal.resolved * 10 < l->tlocal.defined * 9)
            prosef(f, ind, W,
                   "local: %lld of %lld cells resolved by their bounds (not ill-conditioned, "
                   "|reference| above the bound); a wrong sign or a factor of 2 on the others "
                   "fails only by its ratio or, at an attention's input, by the rule for cells "
                   "no bound decides",
                   (long long)l->tlocal.resolved, (long long)l->tlocal.defined);
        if (l->has_tlocal && l->tlocal_verdict != LRP_V_PASS) {
            if (l->tlocal.worst >= 0)
                prosef(f, ind, W, "local (by %s), worst cell %lld: got %.9g, reference %.9g",
                       l->by, (long long)l->tlocal.worst, (double)l->tlocal.worst_got,
                       (double)l->tlocal.worst_ref);
        }
        if (l->has_fwd && (verbose || l->fwd_verdict != LRP_V_PASS))
            prosef(f, ind, W, "forward activations: %s (worst cell %lld: got %.9g, reference %.9g)",
                   lrp_verdict_name(l->fwd_verdict), (long long)l->fwd.worst,
                   (double)l->fwd.worst_got, (double)l->fwd.worst_ref);
        if (l->has_local && (verbose || l->local_verdict != LRP_V_PASS))
            prosef(f, ind, W, "our float32 layer fed the reference's inputs: %s",
                   lrp_verdict_name(l->local_verdict));
        /* a trace's residual is not known where an input of the layer
         * feeds another layer too (the trace holds relevance per tensor,
         * not per consumer): said so, not printed as "nan" */
        if (l->has_conservation && (verbose || l->verdict != LRP_V_PASS) && isnan(l->cons_f32))
            prosef(f, ind, W, "layer '%s', its own step: conservation residual: float32 not "
                   "known (an input also feeds another layer), reference %.2e", l->name,
                   l->cons_ref);
        else if (l->has_conservation && (verbose || l->verdict != LRP_V_PASS))
            prosef(f, ind, W, "layer '%s', its own step: conservation residual: float32 %.2e, "
                   "reference %.2e", l->name, l->cons_f32, l->cons_ref);
        if (l->n_branch > 1 && (verbose || wide))
            for (int k = 0; k < l->n_branch; k++) {
                int in = l->branch_in[k];
                prosef(f, ind, W, "layer '%s' passes to branch '%s': sum R reference %.9g, "
                       "float32 %.9g", l->name, in >= 0 && in < r->n_layers ? r->layers[in].name : "?", l->branch_ref[k],
                       l->branch_f32[k]);
            }
        if (l->ref_flags[0] && (verbose || l->verdict != LRP_V_PASS))
            prosef(f, ind, W, "reference flags: %s", l->ref_flags);
        if (l->note[0])
            prosef(f, ind, W, "layer '%s', its own step: %s", l->name, l->note);
    }
    /* the origin lines: wrapped, but never before "(tensor 'X')", which
     * scripts read off the first line (bench/mutants.py) */
    if (r->nf_layer >= 0)
        prosef(f, 2, W, "first NaN/inf: relevance at the output of '%s', cell %lld, %s",
               r->layers[r->nf_layer].name, (long long)r->nf_index, r->nf_cause);
    if (r->fwd_origin >= 0)
        fprintf(f, "  forward pass: the trace's activations first go wrong at layer '%s'\n",
                E(r->layers[r->fwd_origin].name));
    if (r->origin_layer >= 0) {
        char line[1024];
        snprintf(line, sizeof line, "discrepancy introduced at %s", E(r->origin));
        const char *t = strstr(line, "(tensor '");
        const char *q = t ? strstr(t + 9, "')") : NULL;
        prose_keep(f, 2, W, line, q ? (size_t)(q + 2 - line) : 0);
    }
    if (r->introduced_at >= 0)
        fprintf(f, "  our float32 layers fed the reference's inputs: first out of tolerance at '%s'\n",
                E(r->layers[r->introduced_at].name));
    if (r->n_unjudged > 0)
        prosef(f, 2, W, "not judged locally (%d): %s", r->n_unjudged, r->unjudged);
    if (r->ident_ran && (r->ident_flagged || verbose))
        prosef(f, 2, W, "%s%s", r->ident_flagged ? "SUSPECT: " : "", r->ident);
    char mr[32], ms[32], ml[32];
    fmt_ratio(mr, sizeof mr, r->max_ratio);
    fmt_ratio(ms, sizeof ms, r->max_sharp_ratio);
    fmt_ratio(ml, sizeof ml, r->max_tlocal_ratio);
    char acts[LRP_NAME_MAX + 64];
    if (r->tlocal_exact_act)
        snprintf(acts, sizeof acts, "of the trace");
    else if (r->tlocal_act_missing >= 0 && r->tlocal_act_missing < r->n_layers)
        snprintf(acts, sizeof acts, "of the reference: the trace has none for '%s'",
                 r->layers[r->tlocal_act_missing].name);
    else
        snprintf(acts, sizeof acts, "of the reference");
    prosef(f, 2, W,
           "end to end: %s (max ratio %s to the sharp bound, %s to the rigorous one); "
           "local: %s (%d tensors, max ratio %s, activations %s, %.1f %% of cells resolved by "
           "their bounds)",
           lrp_verdict_name(r->e2e_verdict), ms, mr,
           r->n_judged ? lrp_verdict_name(r->tlocal_verdict) : "not run", r->n_judged, ml, acts,
           r->tl_defined > 0 ? 100.0 * (double)r->tl_resolved / (double)r->tl_defined : 0.0);
    fprintf(f, "  verdict: %s%s%s (max conservation residual f32 %.2e, ref %.2e)",
            color ? vcolor(r->verdict) : "", lrp_verdict_name(r->verdict), reset,
            r->max_cons_f32, r->max_cons_ref);
    if (r->has_expect)
        fprintf(f, "; expected %s: %s", lrp_verdict_name(r->expect),
                r->expected_ok ? "as documented" : "NOT AS DOCUMENTED");
    fprintf(f, "\n");
}

/* ---- atomic file output ---- */

typedef struct {
    lrp_out o; /* core/safeout.c: stdout, FIFOs, symlinks, modes, links */
    const char *path;
    FILE *f;
} atomic_out;

static lrp_status atomic_open(atomic_out *a, const char *path, lrp_err *err)
{
    a->path = path;
    a->f = NULL;
    lrp_status st = lrp_out_open(&a->o, path, err);
    if (st)
        return st;
    int fd = dup(a->o.fd);
    if (fd < 0 || !(a->f = fdopen(fd, "w"))) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        lrp_out_abort(&a->o);
        return lrp_err_set(err, LRP_E_IO, "%s: %s", path, strerror(e));
    }
    return LRP_OK;
}

static lrp_status atomic_close(atomic_out *a, int ok, lrp_err *err)
{
    int bad = ferror(a->f);
    int e = 0;
    if (fclose(a->f) != 0) {
        bad = 1;
        e = errno;
    }
    if (!ok || bad) {
        lrp_out_abort(&a->o);
        return ok ? lrp_err_set(err, LRP_E_IO, "%s: write failed%s%s", a->path, e ? ": " : "",
                                e ? strerror(e) : "")
                  : LRP_E_IO;
    }
    return lrp_out_commit(&a->o, err);
}

/* ---- JSON ---- */

/* JSON has no inf/NaN: they are written as strings "inf", "-inf", "nan". */
static json_t *jnum(double x)
{
    if (isnan(x))
        return json_string("nan");
    if (isinf(x))
        return json_string(x > 0 ? "inf" : "-inf");
    return json_real(x);
}

static json_t *cmp_json(const lrp_layer_cmp *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "cells", json_integer(c->n));
    json_t *counts = json_object();
    for (int v = 0; v < LRP_V_COUNT; v++)
        json_object_set_new(counts, lrp_verdict_name((lrp_verdict)v), json_integer(c->count[v]));
    json_object_set_new(o, "counts", counts);
    json_object_set_new(o, "bitwise_equal", json_integer(c->bitwise_equal));
    json_object_set_new(o, "zero_sign_differs", json_integer(c->zero_sign_differs));
    json_object_set_new(o, "nan", json_integer(c->got_nan));
    json_object_set_new(o, "inf", json_integer(c->got_inf));
    json_object_set_new(o, "max_ulp", jnum(c->max_ulp));
    json_object_set_new(o, "max_rel", jnum(c->max_rel));
    json_t *p = json_object();
    json_object_set_new(p, "p50", jnum(c->ratio_pctl[0]));
    json_object_set_new(p, "p90", jnum(c->ratio_pctl[1]));
    json_object_set_new(p, "p99", jnum(c->ratio_pctl[2]));
    json_object_set_new(p, "max", jnum(c->ratio_pctl[3]));
    json_object_set_new(o, "gauge_ratio", p);
    json_object_set_new(o, "worst_cell", json_integer(c->worst));
    json_object_set_new(o, "worst_got", jnum(c->worst_got));
    json_object_set_new(o, "worst_ref", jnum(c->worst_ref));
    json_object_set_new(o, "first_nonfinite", json_integer(c->first_nonfinite));
    json_object_set_new(o, "ratio_to", json_string(c->sharp ? "sharp" : "rigorous"));
    json_object_set_new(o, "defined", json_integer(c->defined));
    json_object_set_new(o, "gross", json_integer(c->gross));
    json_object_set_new(o, "ill_conditioned", json_integer(c->ill));
    json_object_set_new(o, "resolved", json_integer(c->resolved));
    /* of those, grossly off the reference (sign, zero, factor 2): how near
     * a tensor is to the ill-but-gross rule (gross_frac of "defined") */
    json_object_set_new(o, "ill_gross", json_integer(c->ill_gross));
    /* the same, of the cells whose bound is at least |ref| */
    json_object_set_new(o, "undecided_gross", json_integer(c->undecided_gross));
    return o;
}

static json_t *run_json(const lrp_run_report *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "fixture", json_string(r->fixture));
    json_object_set_new(o, "source", json_string(r->source));
    json_object_set_new(o, "ruleset", json_string(r->ruleset));
    json_object_set_new(o, "convention", json_string(r->convention));
    json_object_set_new(o, "precision", json_integer(r->precision));
    json_object_set_new(o, "seconds", jnum(r->seconds));
    json_object_set_new(o, "verdict", json_string(lrp_verdict_name(r->verdict)));
    json_object_set_new(o, "ok", json_boolean(lrp_run_ok(r)));
    json_object_set_new(o, "max_gauge_ratio", jnum(r->max_ratio));
    json_object_set_new(o, "max_conservation_f32", jnum(r->max_cons_f32));
    json_object_set_new(o, "max_conservation_ref", jnum(r->max_cons_ref));
    if (r->has_expect) {
        json_object_set_new(o, "expected", json_string(lrp_verdict_name(r->expect)));
        json_object_set_new(o, "as_documented", json_boolean(r->expected_ok));
    }
    if (r->nf_layer >= 0) {
        json_t *nf = json_object();
        json_object_set_new(nf, "layer", json_string(r->layers[r->nf_layer].name));
        json_object_set_new(nf, "cell", json_integer(r->nf_index));
        json_object_set_new(nf, "cause", json_string(r->nf_cause));
        json_object_set_new(o, "first_nonfinite", nf);
    }
    if (r->introduced_at >= 0)
        json_object_set_new(o, "introduced_at", json_string(r->layers[r->introduced_at].name));
    if (r->ident_ran) {
        json_t *id = json_object();
        json_object_set_new(id, "flagged", json_boolean(r->ident_flagged));
        json_object_set_new(id, "closest_other", json_string(r->ident_best));
        json_object_set_new(id, "votes_other", json_integer(r->ident_votes_best));
        json_object_set_new(id, "votes_stated", json_integer(r->ident_votes_stated));
        json_object_set_new(id, "text", json_string(r->ident));
        json_object_set_new(o, "convention_identification", id);
    }
    json_object_set_new(o, "end_to_end_verdict", json_string(lrp_verdict_name(r->e2e_verdict)));
    json_object_set_new(o, "max_sharp_ratio", jnum(r->max_sharp_ratio));
    {
        json_t *tl = json_object();
        json_object_set_new(tl, "verdict", json_string(lrp_verdict_name(r->tlocal_verdict)));
        json_object_set_new(tl, "judged", json_integer(r->n_judged));
        json_object_set_new(tl, "not_judged", json_integer(r->n_unjudged));
        if (r->n_unjudged)
            json_object_set_new(tl, "not_judged_names", json_string(r->unjudged));
        json_object_set_new(tl, "max_ratio", jnum(r->max_tlocal_ratio));
        json_object_set_new(tl, "defined", json_integer(r->tl_defined));
        json_object_set_new(tl, "resolved", json_integer(r->tl_resolved));
        json_object_set_new(tl, "activations", json_string(r->tlocal_exact_act ? "trace" : "reference"));
        if (!r->tlocal_exact_act && r->tlocal_act_missing >= 0 && r->tlocal_act_missing < r->n_layers)
            json_object_set_new(tl, "activations_missing",
                                json_string(r->layers[r->tlocal_act_missing].name));
        if (r->origin_layer >= 0) {
            json_object_set_new(tl, "origin_tensor", json_string(r->layers[r->origin_layer].name));
            json_object_set_new(tl, "origin_by", json_string(r->layers[r->origin_layer].by));
            json_object_set_new(tl, "origin", json_string(r->origin));
        }
        if (r->fwd_origin >= 0)
            json_object_set_new(tl, "forward_origin", json_string(r->layers[r->fwd_origin].name));
        json_object_set_new(o, "trace_local", tl);
    }
    json_t *layers = json_array();
    for (int i = 0; i < r->n_layers; i++) {
        const lrp_layer_report *l = &r->layers[i];
        json_t *lo = json_object();
        json_object_set_new(lo, "name", json_string(l->name));
        json_object_set_new(lo, "kind", json_string(lrp_layer_kind_name(l->kind)));
        /* the relevance at this tensor was computed by the backward step of
         * its consumer(s): the layer a discrepancy is attributed to */
        json_object_set_new(lo, "computed_by", json_string(l->by));
        json_object_set_new(lo, "rule", json_string(l->rule));
        json_object_set_new(lo, "compared", json_boolean(l->compared));
        if (l->compared) {
            json_object_set_new(lo, "verdict", json_string(lrp_verdict_name(l->verdict)));
            json_object_set_new(lo, "end_to_end", cmp_json(&l->e2e));
        }
        if (l->has_local) {
            json_object_set_new(lo, "local_verdict", json_string(lrp_verdict_name(l->local_verdict)));
            json_object_set_new(lo, "local", cmp_json(&l->local));
        }
        if (l->has_tlocal) {
            json_t *t = cmp_json(&l->tlocal);
            json_object_set_new(t, "verdict", json_string(lrp_verdict_name(l->tlocal_verdict)));
            json_object_set_new(t, "by", json_string(l->by));
            json_object_set_new(t, "total_got", jnum(l->total_got));
            json_object_set_new(t, "total_ref", jnum(l->total_ref));
            json_object_set_new(t, "total_budget", jnum(l->total_budget));
            json_object_set_new(lo, "trace_local", t);
        }
        if (l->has_fwd) {
            json_t *t = cmp_json(&l->fwd);
            json_object_set_new(t, "verdict", json_string(lrp_verdict_name(l->fwd_verdict)));
            json_object_set_new(lo, "forward", t);
        }
        if (l->why[0])
            json_object_set_new(lo, "layer_level", json_string(l->why));
        if (l->has_conservation) {
            json_t *c = json_object();
            json_object_set_new(c, "residual_f32", jnum(l->cons_f32));
            json_object_set_new(c, "residual_ref", jnum(l->cons_ref));
            json_object_set_new(c, "sum_in_ref", jnum(l->sum_in_ref));
            json_object_set_new(c, "sum_out_ref", jnum(l->sum_out_ref));
            json_t *ab = json_object();
            for (int k = 0; k < LRP_ABS_COUNT; k++)
                json_object_set_new(ab, lrp_abs_name((lrp_abs_kind)k), jnum(l->absorbed[k]));
            json_object_set_new(c, "absorbed", ab);
            /* what the layer passes to each of its inputs (the branches of
             * an Add or Concatenate) */
            json_t *br = json_array();
            for (int k = 0; k < l->n_branch; k++) {
                json_t *b = json_object();
                int in = l->branch_in[k];
                json_object_set_new(b, "input", json_string(in >= 0 && in < r->n_layers
                                                                ? r->layers[in].name : "?"));
                json_object_set_new(b, "sum_ref", jnum(l->branch_ref[k]));
                json_object_set_new(b, "sum_f32", jnum(l->branch_f32[k]));
                json_array_append_new(br, b);
            }
            json_object_set_new(c, "branches", br);
            if (l->bn_in) {
                json_t *ch = json_array();
                for (int64_t k = 0; k < l->bn_C; k++) {
                    json_t *b = json_object();
                    json_object_set_new(b, "channel", json_integer(k));
                    json_object_set_new(b, "sum_in_ref", jnum(l->bn_in[k]));
                    json_object_set_new(b, "absorbed_ref", jnum(l->bn_abs[k]));
                    json_object_set_new(b, "sum_out_ref", jnum(l->bn_out[k]));
                    json_object_set_new(b, "residual_ref",
                                        jnum(l->bn_in[k] + l->bn_abs[k] - l->bn_out[k]));
                    json_array_append_new(ch, b);
                }
                json_object_set_new(c, "bn_channels", ch);
            }
            json_object_set_new(lo, "conservation", c);
        }
        json_t *mm = json_object();
        json_object_set_new(mm, "ref_min", jnum(l->ref_min));
        json_object_set_new(mm, "ref_max", jnum(l->ref_max));
        json_object_set_new(mm, "f32_min", jnum(l->f32_min));
        json_object_set_new(mm, "f32_max", jnum(l->f32_max));
        json_object_set_new(mm, "f32_nan", json_integer(l->f32_nan));
        json_object_set_new(mm, "f32_inf", json_integer(l->f32_inf));
        json_object_set_new(lo, "minmax", mm);
        if (l->ref_flags[0])
            json_object_set_new(lo, "reference_flags", json_string(l->ref_flags));
        if (l->note[0])
            json_object_set_new(lo, "note", json_string(l->note));
        json_array_append_new(layers, lo);
    }
    json_object_set_new(o, "layers", layers);
    return o;
}

lrp_status lrp_report_json(const char *path, const lrp_run_report *runs, int n, lrp_err *err)
{
    return lrp_report_json_ex(path, runs, n, NULL, 0, err);
}

lrp_status lrp_report_json_ex(const char *path, const lrp_run_report *runs, int n,
                              const lrp_file_error *errs, int n_errs, lrp_err *err)
{
    json_t *root = json_object();
    json_object_set_new(root, "tool", json_string("lrp-oracle " LRP_VERSION_STRING));
    json_t *arr = json_array();
    int ok = 1;
    for (int i = 0; i < n; i++) {
        json_array_append_new(arr, run_json(&runs[i]));
        ok &= lrp_run_ok(&runs[i]);
    }
    json_object_set_new(root, "runs", arr);
    json_t *ea = json_array();
    for (int i = 0; i < n_errs; i++) {
        json_t *eo = json_object();
        json_object_set_new(eo, "file", json_string(errs[i].file));
        json_object_set_new(eo, "message", json_string(errs[i].message));
        json_array_append_new(ea, eo);
    }
    json_object_set_new(root, "errors", ea);
    json_object_set_new(root, "ok", json_boolean(ok && n_errs == 0));
    atomic_out a;
    lrp_status st = atomic_open(&a, path, err);
    if (st == LRP_OK) {
        int w = json_dumpf(root, a.f, JSON_INDENT(1) | JSON_PRESERVE_ORDER) == 0;
        fputc('\n', a.f);
        st = atomic_close(&a, w, err);
        if (!w && st)
            lrp_err_set(err, LRP_E_IO, "%s: cannot write JSON", path);
    }
    json_decref(root);
    return st;
}

/* ---- JUnit XML ---- */

static void xml_esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
                fputc('?', f);
            else
                fputc(*s, f);
        }
    }
}

/* A layer check is acceptable when within tolerance, or when the run
 * documents its outcome and the run as a whole is as documented. */
static int layer_ok(const lrp_run_report *r, const lrp_layer_report *l)
{
    if (r->has_expect)
        return r->expected_ok;
    return l->verdict == LRP_V_PASS || l->verdict == LRP_V_ILL_CONDITIONED;
}

/* A JUnit classname without dots: Jenkins reads dots as package
 * separators, so "cnn.h5" would become package "cnn", class "h5". */
static void xml_class(FILE *f, const char *s, const char *rules)
{
    char buf[512];
    size_t k = 0;
    const char *b = strrchr(s, '/');
    b = b ? b + 1 : s;
    size_t l = strlen(b);
    if (l > 3 && !strcmp(b + l - 3, ".h5"))
        l -= 3;
    for (size_t i = 0; i < l && k + 1 < sizeof buf; i++)
        buf[k++] = b[i] == '.' ? '_' : b[i];
    /* the rule set too: "--gamma 0.25" must not start a package */
    if (rules && *rules && k + 2 < sizeof buf) {
        buf[k++] = ' ';
        for (const char *p = rules; *p && k + 1 < sizeof buf; p++)
            buf[k++] = *p == '.' ? '_' : *p;
    }
    if (k == 0)
        buf[k++] = '_'; /* the schema wants a non-empty classname */
    buf[k] = '\0';
    xml_esc(f, buf);
}

/* The testcase name: the layer whose backward step computed the relevance,
 * then the tensor ("by 'conv1': input"). */
static void xml_case_name(FILE *f, const lrp_layer_report *l)
{
    fputs("by ", f);
    xml_esc(f, l->by[0] ? l->by : "?");
    fputs(": ", f);
    xml_esc(f, l->name);
}

lrp_status lrp_report_junit(const char *path, const lrp_run_report *runs, int n, lrp_err *err)
{
    return lrp_report_junit_ex(path, runs, n, NULL, 0, err);
}

/* Valid against the Jenkins JUnit schema (tests/junit-jenkins.xsd, checked
 * with xmllint in tests/test_report.c): testsuites > testsuite (name,
 * tests, failures, errors, skipped, time) > testcase (name, classname,
 * time) > failure | error (message, type).  Times are seconds; a run's
 * layers are judged together, so each layer check gets an equal share of
 * the run's time. */
lrp_status lrp_report_junit_ex(const char *path, const lrp_run_report *runs, int n,
                               const lrp_file_error *errs, int n_errs, lrp_err *err)
{
    atomic_out a;
    lrp_status st = atomic_open(&a, path, err);
    if (st)
        return st;
    FILE *f = a.f;
    int tests = 0, failures = 0;
    double total = 0;
    for (int i = 0; i < n; i++) {
        total += runs[i].seconds;
        for (int k = 0; k < runs[i].n_layers; k++)
            if (runs[i].layers[k].compared) {
                tests++;
                failures += !layer_ok(&runs[i], &runs[i].layers[k]);
            }
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<testsuites name=\"lrp-oracle\" tests=\"%d\" failures=\"%d\" errors=\"%d\" "
               "time=\"%.3f\">\n",
            tests + n_errs, failures, n_errs, total);
    for (int i = 0; i < n; i++) {
        const lrp_run_report *r = &runs[i];
        int t = 0, fl = 0;
        for (int k = 0; k < r->n_layers; k++)
            if (r->layers[k].compared) {
                t++;
                fl += !layer_ok(r, &r->layers[k]);
            }
        double share = t > 0 ? r->seconds / t : 0;
        fprintf(f, "  <testsuite name=\"");
        xml_esc(f, r->fixture);
        fprintf(f, " [");
        xml_esc(f, r->ruleset);
        fprintf(f, ", ");
        xml_esc(f, r->convention);
        fprintf(f, "]\" tests=\"%d\" failures=\"%d\" errors=\"0\" skipped=\"0\" time=\"%.3f\">\n",
                t, fl, r->seconds);
        for (int k = 0; k < r->n_layers; k++) {
            const lrp_layer_report *l = &r->layers[k];
            if (!l->compared)
                continue;
            fprintf(f, "    <testcase classname=\"");
            xml_class(f, r->fixture, r->ruleset);
            fprintf(f, "\" name=\"");
            xml_case_name(f, l);
            fprintf(f, "\" time=\"%.3f\">", share);
            if (!layer_ok(r, l)) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s: worst cell %lld got %.9g reference %.9g, gauge ratio %g",
                         lrp_verdict_name(l->verdict), (long long)l->e2e.worst,
                         (double)l->e2e.worst_got, (double)l->e2e.worst_ref, l->e2e.worst_ratio);
                fprintf(f, "<failure type=\"%s\" message=\"", lrp_verdict_name(l->verdict));
                xml_esc(f, msg);
                fprintf(f, "\"/>");
            } else if (r->has_expect && l->verdict != LRP_V_PASS) {
                fprintf(f, "<system-out>expected outcome: ");
                xml_esc(f, lrp_verdict_name(l->verdict));
                fprintf(f, "</system-out>");
            }
            fprintf(f, "</testcase>\n");
        }
        fprintf(f, "  </testsuite>\n");
    }
    for (int i = 0; i < n_errs; i++) {
        fprintf(f, "  <testsuite name=\"");
        xml_esc(f, errs[i].file);
        fprintf(f, "\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0\">\n"
                   "    <testcase classname=\"");
        xml_class(f, errs[i].file, NULL);
        fprintf(f, "\" name=\"read\" time=\"0\"><error type=\"bad input\" message=\"");
        xml_esc(f, errs[i].message);
        fprintf(f, "\"/></testcase>\n  </testsuite>\n");
    }
    fprintf(f, "</testsuites>\n");
    return atomic_close(&a, 1, err);
}
