/*
 * html.c -- `--html DIR`: one self-contained HTML page (DIR/index.html) for
 * CI artifacts.  No network, no scripts: styles inline, heatmaps embedded
 * as base64 PNG data URIs, per-layer error plots as inline SVG.  Contents:
 * the verdict table, the legend of every number, and per run the per-layer
 * table (named by the layer that computed each relevance), the error plot,
 * conservation per layer (Add/Concatenate branches, BatchNorm identities
 * per channel), the first NaN/inf origin and the heatmaps of the input.
 */
#define _GNU_SOURCE
#include "html.h"


#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "heatmap.h"

struct cli_html {
    char *buf;
    size_t n, cap;
    int oom;
    int n_runs, n_ok;
    char *toc; /* verdict table rows */
    size_t toc_n, toc_cap;
};

static void vput(char **b, size_t *n, size_t *cap, int *oom, const char *fmt, va_list ap)
{
    if (*oom)
        return;
    va_list aq;
    va_copy(aq, ap);
    int k = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    if (k < 0) {
        *oom = 1;
        return;
    }
    if (*n + (size_t)k + 1 > *cap) {
        size_t c = *cap ? *cap : 65536;
        while (c < *n + (size_t)k + 1)
            c *= 2;
        char *q = realloc(*b, c);
        if (!q) {
            *oom = 1;
            return;
        }
        *b = q;
        *cap = c;
    }
    vsnprintf(*b + *n, *cap - *n, fmt, ap);
    *n += (size_t)k;
}

static void out(cli_html *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(cli_html *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vput(&h->buf, &h->n, &h->cap, &h->oom, fmt, ap);
    va_end(ap);
}

static void toc(cli_html *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void toc(cli_html *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vput(&h->toc, &h->toc_n, &h->toc_cap, &h->oom, fmt, ap);
    va_end(ap);
}

/* HTML-escaped copy in a rotating static buffer (a few per call). */
static const char *esc(const char *s)
{
    static char ring[8][2048];
    static int at;
    char *d = ring[at++ & 7];
    size_t k = 0;
    for (; s && *s && k + 7 < sizeof ring[0]; s++) {
        const char *r = NULL;
        switch (*s) {
        case '<': r = "&lt;"; break;
        case '>': r = "&gt;"; break;
        case '&': r = "&amp;"; break;
        case '"': r = "&quot;"; break;
        case '\'': r = "&#39;"; break;
        default: d[k++] = *s; continue;
        }
        size_t l = strlen(r);
        memcpy(d + k, r, l);
        k += l;
    }
    d[k] = '\0';
    return d;
}

static const char *vclass(lrp_verdict v)
{
    switch (v) {
    case LRP_V_PASS: return "pass";
    case LRP_V_ILL_CONDITIONED:
    case LRP_V_UNRESOLVED: return "ill";
    case LRP_V_SUSPECT: return "suspect";
    default: return "fail";
    }
}

static const char *num(double x)
{
    static char ring[8][32];
    static int at;
    char *d = ring[at++ & 7];
    if (isnan(x))
        snprintf(d, 32, "-");
    else
        snprintf(d, 32, "%.3g", x);
    return d;
}

cli_html *cli_html_new(void) { return calloc(1, sizeof(cli_html)); }

void cli_html_free(cli_html *h)
{
    if (!h)
        return;
    free(h->buf);
    free(h->toc);
    free(h);
}

static void base64(cli_html *h, const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char chunk[4 * 1024 + 8];
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        chunk[k++] = tab[(v >> 18) & 63];
        chunk[k++] = tab[(v >> 12) & 63];
        chunk[k++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        chunk[k++] = i + 2 < n ? tab[v & 63] : '=';
        if (k >= 4 * 1024) {
            chunk[k] = '\0';
            out(h, "%s", chunk);
            k = 0;
        }
    }
    chunk[k] = '\0';
    out(h, "%s", chunk);
}

/* Per-layer error plot: ratio to the sharp bound, end to end and
 * trace-local, log scale, one point per judged tensor (backward order,
 * output on the left, as the relevance flows). */
static void plot(cli_html *h, const lrp_run_report *r)
{
    const int W = 760, H = 220, L = 60, R = 20, T = 20, Bm = 60;
    const double lo = -6, hi = 4; /* log10 ratio range shown */
    int n = r->n_layers;
    out(h, "<svg class=\"plot\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
           "xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"per-layer error\">\n",
        W, H, W, H);
    out(h, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#999\"/>\n",
        L, T, W - L - R, H - T - Bm);
    for (int e = (int)lo; e <= (int)hi; e += 2) {
        double y = T + (hi - e) / (hi - lo) * (H - T - Bm);
        out(h, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>"
               "<text x=\"%d\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">1e%d</text>\n",
            L, W - R, y, y, e == 0 ? "#c00" : "#ddd", L - 4, y + 3, e);
    }
    double step = n > 1 ? (double)(W - L - R - 20) / (n - 1) : 0;
    for (int pass = 0; pass < 2; pass++) {
        out(h, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
            pass ? "#d62728" : "#1f77b4");
        for (int k = 0; k < n; k++) {
            const lrp_layer_report *l = &r->layers[n - 1 - k];
            int have = pass ? l->has_tlocal : l->compared;
            double v = pass ? l->tlocal.ratio_pctl[3] : l->e2e.ratio_pctl[3];
            if (!have || !isfinite(v))
                continue;
            double lv = v > 0 ? log10(v) : lo;
            lv = lv < lo ? lo : lv > hi ? hi : lv;
            out(h, "%.1f,%.1f ", L + 10 + k * step, T + (hi - lv) / (hi - lo) * (H - T - Bm));
        }
        out(h, "\"/>\n");
    }
    for (int k = 0; k < n; k++) {
        double x = L + 10 + k * step;
        out(h, "<text x=\"%.1f\" y=\"%d\" font-size=\"9\" transform=\"rotate(45 %.1f %d)\">%s</text>\n",
            x, H - Bm + 12, x, H - Bm + 12, esc(r->layers[n - 1 - k].name));
    }
    out(h, "<text x=\"%d\" y=\"12\" font-size=\"11\" fill=\"#1f77b4\">end to end</text>"
           "<text x=\"%d\" y=\"12\" font-size=\"11\" fill=\"#d62728\">trace-local</text>"
           "<text x=\"%d\" y=\"12\" font-size=\"11\">max error / sharp bound (red line: one bound)</text>\n",
        L, L + 80, L + 170);
    out(h, "</svg>\n");
}

static const char *legend =
    "<dl class=\"legend\">\n"
    "<dt>verdict</dt><dd>PASS: every cell within the tolerance table; ILL-CONDITIONED: "
    "cells beyond the bound where float32 cannot determine a denominator (excused); "
    "UNRESOLVED: the reference at p and p+64 disagree; SUSPECT: beyond the sharp bound, "
    "within the rigorous one; FAIL: beyond both, or gross (sign, zero, factor 2), or a layer "
    "total beyond its budget; NONFINITE: NaN or inf where the reference is finite.</dd>\n"
    "<dt>tensor / computed by</dt><dd>each row is the relevance at the output of a tensor; it "
    "is computed by the backward step of the layer(s) that consume it, named in 'computed "
    "by': that layer is blamed for a discrepancy.</dd>\n"
    "<dt>end to end</dt><dd>the trace against the MPFR reference of the whole network.</dd>\n"
    "<dt>local (trace-local)</dt><dd>the reference's own step of the computing layer, fed the "
    "trace's relevance at that layer's output (and the trace's activations), against the "
    "trace: the error of that one step, a bound that does not grow with depth.</dd>\n"
    "<dt>ratio</dt><dd>largest |got - reference| divided by the sharp (probabilistic, "
    "Higham-Mary style) float32 error bound of the cell; below 1 is the normal float32 "
    "case.</dd>\n"
    "<dt>rigorous ratio</dt><dd>the same against the worst-case first-order bound.</dd>\n"
    "<dt>bitwise</dt><dd>cells whose float32 value equals the reference rounded to "
    "binary32.</dd>\n"
    "<dt>ill%</dt><dd>share of the tensor's cells excused as ill-conditioned.</dd>\n"
    "<dt>cons (conservation)</dt><dd>|sum R_in + absorbed - sum R_out| / sum |R| of the "
    "layer's own rule: absorbed is what bias, stabilizer and BatchNorm shift keep.</dd>\n"
    "<dt>branches</dt><dd>an Add / Concatenate passes a share of its relevance to each input; "
    "their sums, reference and float32.</dd>\n"
    "<dt>BN identity</dt><dd>per channel of a BatchNorm: R_x + absorbed = R (reference, summed "
    "over batch and positions).</dd>\n"
    "<dt>first NaN/inf</dt><dd>the first non-finite cell of the trace in backward order, the "
    "layer and unit that produced it, and why.</dd>\n"
    "<dt>heatmap</dt><dd>reference, trace, and (got - ref) / bound per cell (summed over "
    "channels); black NaN/inf, green undefined reference, orange ill-conditioned, magenta "
    "unresolved.</dd>\n"
    "</dl>\n";

void cli_html_run(cli_html *h, const lrp_run_report *r, const char *label)
{
    int id = h->n_runs++;
    int ok = lrp_run_ok(r);
    h->n_ok += ok;
    toc(h,
        "<tr class=\"run\"><td><a href=\"#run%d\">%s</a></td><td>%s</td><td>%s</td>"
        "<td class=\"%s verdict\">%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
        id, esc(label ? label : r->fixture), esc(r->source), esc(r->ruleset),
        vclass(r->verdict), lrp_verdict_name(r->verdict),
        r->has_expect ? (r->expected_ok ? "as documented" : "NOT AS DOCUMENTED") : "-",
        num(r->max_sharp_ratio), num(r->max_tlocal_ratio), num(r->max_cons_f32),
        r->nf_layer >= 0 ? esc(r->layers[r->nf_layer].by) : "-");
    out(h, "<section id=\"run%d\" class=\"runsec\"><h2>%s <span class=\"%s\">%s</span></h2>\n", id,
        esc(label ? label : r->fixture), vclass(r->verdict), lrp_verdict_name(r->verdict));
    out(h, "<p>source <b>%s</b>, rules %s, convention %s, reference p=%d</p>\n", esc(r->source),
        esc(r->ruleset), esc(r->convention), r->precision);
    if (r->nf_layer >= 0)
        out(h, "<p class=\"nan\">first NaN/inf: relevance at the output of '%s' (computed by %s), "
               "cell %lld: %s</p>\n",
            esc(r->layers[r->nf_layer].name), esc(r->layers[r->nf_layer].by),
            (long long)r->nf_index, esc(r->nf_cause));
    if (r->origin_layer >= 0)
        out(h, "<p class=\"origin\">discrepancy introduced at %s</p>\n", esc(r->origin));
    /* heatmaps of the input, the first samples */
    int ns = r->batch < 4 ? r->batch : 4;
    if (r->n_layers > 0 && r->layers[0].cell_ref) {
        out(h, "<div class=\"heatmaps\">\n");
        for (int b = 0; b < ns; b++) {
            unsigned char *png = NULL;
            size_t len = 0;
            lrp_err e = {0};
            if (lrp_heatmap_png(&png, &len, r, 0, b, &e)) {
                out(h, "<p>heatmap: %s</p>", esc(e.msg));
                continue;
            }
            out(h, "<img class=\"heatmap\" alt=\"heatmap of the input relevance, sample %d\" "
                   "src=\"data:image/png;base64,", b);
            base64(h, png, len);
            out(h, "\">\n");
            free(png);
        }
        out(h, "</div>\n");
    }
    plot(h, r);
    out(h, "<table class=\"layers\"><tr><th>computed by</th><th>tensor</th><th>kind</th>"
           "<th>end to end</th><th>bitwise</th><th>ratio</th><th>local</th><th>ratio</th>"
           "<th>ill%%</th><th>cons ref</th><th>cons f32</th><th>branches / notes</th></tr>\n");
    for (int i = 0; i < r->n_layers; i++) {
        const lrp_layer_report *l = &r->layers[i];
        char ill[32] = "-";
        if (l->has_tlocal && l->tlocal.n > 0)
            snprintf(ill, sizeof ill, "%.1f", 100.0 * (double)l->tlocal.ill / (double)l->tlocal.n);
        out(h, "<tr><td>%s</td><td>%s</td><td>%s</td><td class=\"%s\">%s</td><td>%lld/%lld</td>"
               "<td>%s</td><td class=\"%s\">%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>",
            esc(l->by), esc(l->name), lrp_layer_kind_name(l->kind),
            l->compared ? vclass(l->verdict) : "", l->compared ? lrp_verdict_name(l->verdict) : "-",
            (long long)l->e2e.bitwise_equal, (long long)l->e2e.n,
            num(l->compared ? l->e2e.ratio_pctl[3] : NAN),
            l->has_tlocal ? vclass(l->tlocal_verdict) : "",
            l->has_tlocal ? lrp_verdict_name(l->tlocal_verdict) : "-",
            num(l->has_tlocal ? l->tlocal.ratio_pctl[3] : NAN), ill,
            num(l->has_conservation ? l->cons_ref : NAN),
            num(l->has_conservation ? l->cons_f32 : NAN));
        if (l->n_branch > 1)
            for (int k = 0; k < l->n_branch; k++) {
                int in = l->branch_in[k];
                out(h, "branch to '%s': ref %.9g, f32 %s<br>",
                    in >= 0 && in < r->n_layers ? esc(r->layers[in].name) : "?", l->branch_ref[k],
                    num(l->branch_f32[k]));
            }
        if (l->bn_in) {
            out(h, "<details><summary>BN identity per channel</summary><table class=\"bn\">"
                   "<tr><th>ch</th><th>R_x</th><th>absorbed</th><th>R</th><th>residual</th></tr>");
            for (int64_t c = 0; c < l->bn_C; c++)
                out(h, "<tr><td>%lld</td><td>%.9g</td><td>%.9g</td><td>%.9g</td><td>%.2e</td></tr>",
                    (long long)c, l->bn_in[c], l->bn_abs[c], l->bn_out[c],
                    l->bn_in[c] + l->bn_abs[c] - l->bn_out[c]);
            out(h, "</table></details>");
        }
        if (l->why[0])
            out(h, "%s<br>", esc(l->why));
        if (l->note[0])
            out(h, "%s", esc(l->note));
        out(h, "</td></tr>\n");
    }
    out(h, "</table>\n");
    out(h, "</section>\n");
}

void cli_html_table(cli_html *h, const char *caption, int ncols, const char *const *head,
                    const char *const *cells, int nrows)
{
    out(h, "<section class=\"runsec\"><h2>%s</h2><table class=\"layers\"><tr>", esc(caption));
    for (int c = 0; c < ncols; c++)
        out(h, "<th>%s</th>", esc(head[c]));
    out(h, "</tr>\n");
    for (int r = 0; r < nrows; r++) {
        out(h, "<tr>");
        for (int c = 0; c < ncols; c++) {
            const char *v = cells[r * ncols + c];
            const char *cls = "";
            lrp_verdict vv;
            if (v && !lrp_verdict_parse(v, &vv))
                cls = vclass(vv);
            out(h, "<td class=\"%s\">%s</td>", cls, esc(v ? v : ""));
        }
        out(h, "</tr>\n");
    }
    out(h, "</table></section>\n");
}

int cli_html_write(cli_html *h, const char *dir, const char *title)
{
    if (mkdir(dir, 0777) && errno != EEXIST)
        return cli_usage_error("html", "cannot create directory '%s'", dir);
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
        return cli_usage_error("html", "--html '%s' is not a directory", dir);
    if (h->oom)
        return cli_usage_error("html", "%s", "out of memory");
    cli_html page = {0};
    out(&page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<title>%s</title>\n<style>\n"
        "body{font-family:sans-serif;margin:1.5em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;text-align:left;vertical-align:top}"
        "th{background:#eee}.pass{background:#d8f5d8}.ill{background:#d8eef5}"
        ".suspect{background:#fff2cc}.fail{background:#f8d0d0}"
        ".nan{color:#a00}.origin{color:#a50}.heatmap{margin:4px;border:1px solid #ccc}"
        "dl.legend dt{font-weight:bold}dl.legend dd{margin:0 0 .4em 1.5em}"
        "</style></head><body>\n<h1>%s</h1>\n",
        esc(title), esc(title));
    if (h->n_runs > 0) {
        out(&page, "<p id=\"summary\">%d runs, %d within tolerance or as documented, %d not</p>\n",
            h->n_runs, h->n_ok, h->n_runs - h->n_ok);
        out(&page, "<table id=\"verdicts\"><tr><th>run</th><th>source</th><th>rules</th>"
                   "<th>verdict</th><th>documented</th><th>e2e ratio</th><th>local ratio</th>"
                   "<th>cons f32</th><th>first NaN by</th></tr>\n%s</table>\n",
            h->toc ? h->toc : "");
    }
    out(&page, "<details id=\"legend\"><summary>legend of every number</summary>\n%s</details>\n", legend);
    out(&page, "%s</body></html>\n", h->buf ? h->buf : "");
    if (page.oom) {
        free(page.buf);
        return cli_usage_error("html", "%s", "out of memory");
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/index.html", dir);
    int rc = cli_write_bytes(path, page.buf, page.n);
    free(page.buf);
    return rc;
}
