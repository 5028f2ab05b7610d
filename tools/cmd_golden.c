/*
 * cmd_golden.c -- `lrp-oracle golden`: check the float32 fast path against
 * the committed golden traces (fixtures/golden/, no MPFR), or regenerate
 * them on explicit request (--update), showing what changed.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <mpfr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend_f32.h"
#include "fixtures.h"
#include "golden.h"
#include "html.h"
#include "reference.h"

/* The documented outcome of a fixture under its own rules (suite runs with
 * empty arguments), or -1 for "within tolerance". */
/* The documented verdict of a fixture under its own rules, or -1. */
static int expected_for(const char *fixture)
{
    const char *e = lrp_suite_expect(fixture);
    lrp_verdict v;
    return e && lrp_verdict_parse(e, &v) == 0 ? (int)v : -1;
}

/* be must outlive *p (the pipeline keeps a pointer to its backend). */
static lrp_status run_fast(lrp_pipe **p, lrp_backend *be, lrp_f32_ctx **cx, const lrp_net *net,
                           lrp_err *err)
{
    *cx = lrp_f32_ctx_new(2);
    if (!*cx)
        return lrp_err_set(err, LRP_E_NOMEM, "golden: out of memory");
    lrp_f32_backend(be, *cx);
    return lrp_pipe_run(p, be, net, err);
}

/* Builds the golden file content for one fixture: the net from the
 * generator with both traces. */
static lrp_status make_golden(lrp_net **out, const lrp_fixture_def *d, lrp_err *err)
{
    lrp_net *net = NULL;
    lrp_pipe *rp = NULL, *fp = NULL;
    lrp_f32_ctx *fcx = NULL;
    lrp_ref_ctx rcx;
    lrp_backend rbe, fbe;
    lrp_status st = d->build(&net, LRP_FIXTURE_SEED, err);
    if (st)
        return st;
    lrp_ref_ctx_init(&rcx, 128, 2);
    lrp_ref_backend(&rbe, &rcx);
    if ((st = lrp_pipe_run(&rp, &rbe, net, err)) || (st = run_fast(&fp, &fbe, &fcx, net, err)))
        goto done;
    lrp_trace *tr = lrp_net_trace_add(net, "reference", err);
    if (!tr) {
        st = err->code;
        goto done;
    }
    snprintf(tr->producer, sizeof tr->producer, "lrp-oracle %s MPFR reference (golden)",
             LRP_VERSION_STRING);
    snprintf(tr->notes, sizeof tr->notes,
             "relevance = hi + lo (RN32 of the p=128 value and of the rest); activation = RN32");
    tr->precision = 128;
    mpfr_t dd;
    mpfr_init2(dd, 128 + 300);
    for (int i = 0; i < net->n_layers && !st; i++) {
        int64_t n = rp->L[i].n * net->batch;
        tr->relevance[i] = malloc((size_t)n * sizeof(float));
        tr->relevance_lo[i] = malloc((size_t)n * sizeof(float));
        tr->activation[i] = malloc((size_t)n * sizeof(float));
        if (!tr->relevance[i] || !tr->relevance_lo[i] || !tr->activation[i]) {
            st = lrp_err_set(err, LRP_E_NOMEM, "golden: out of memory");
            break;
        }
        for (int64_t k = 0; k < n; k++) {
            mpfr_srcptr x = rbe.at(rbe.ctx, rp->L[i].rel, k);
            float h = mpfr_get_flt(x, MPFR_RNDN);
            tr->relevance[i][k] = h;
            mpfr_sub_d(dd, x, (double)h, MPFR_RNDN);
            tr->relevance_lo[i][k] = isfinite(h) ? mpfr_get_flt(dd, MPFR_RNDN) : 0.0f;
            tr->activation[i][k] = mpfr_get_flt(rbe.at(rbe.ctx, rp->L[i].act, k), MPFR_RNDN);
        }
    }
    mpfr_clear(dd);
    if (st)
        goto done;
    lrp_trace *tf = lrp_net_trace_add(net, "fastpath", err);
    if (!tf) {
        st = err->code;
        goto done;
    }
    snprintf(tf->producer, sizeof tf->producer, "lrp-oracle %s float32 fast path (golden bits)",
             LRP_VERSION_STRING);
    tf->precision = 24;
    for (int i = 0; i < net->n_layers; i++) {
        int64_t n = fp->L[i].n * net->batch;
        tf->relevance[i] = malloc((size_t)n * sizeof(float));
        if (!tf->relevance[i]) {
            st = lrp_err_set(err, LRP_E_NOMEM, "golden: out of memory");
            goto done;
        }
        memcpy(tf->relevance[i], fp->L[i].rel, (size_t)n * sizeof(float));
    }
done:
    lrp_pipe_free(rp);
    lrp_pipe_free(fp);
    lrp_f32_ctx_free(fcx);
    if (st) {
        lrp_net_free(net);
        return st;
    }
    *out = net;
    return LRP_OK;
}

static int64_t trace_diffs(const lrp_net *a, const lrp_trace *ta, const lrp_trace *tb, int lo)
{
    int64_t d = 0;
    for (int i = 0; i < a->n_layers; i++) {
        float *x = lo ? ta->relevance_lo[i] : ta->relevance[i];
        float *y = lo ? tb->relevance_lo[i] : tb->relevance[i];
        if (!x || !y)
            continue;
        int64_t n = a->batch * lrp_shape_numel(&a->layers[i].shape);
        for (int64_t k = 0; k < n; k++)
            d += memcmp(&x[k], &y[k], sizeof(float)) != 0;
    }
    return d;
}

enum { NCOL = 5 };

static int golden_main(int argc, char **argv, char (*cells)[160]);

/* cells: the table for --html (fixture, verdict, documented, bits, change),
 * owned here so that every early return of golden_main frees it */
int cmd_golden(int argc, char **argv)
{
    char(*cells)[160] = calloc((size_t)lrp_fixture_count * NCOL, sizeof *cells);
    if (!cells)
        return cli_usage_error("golden", "%s", "out of memory");
    int rc = golden_main(argc, argv, cells);
    free(cells);
    return rc;
}

static int golden_main(int argc, char **argv, char (*cells)[160])
{
    static const struct option opts[] = {{"dir", required_argument, 0, 'd'},
                                         {"update", no_argument, 0, 'u'},
                                         {"html", required_argument, 0, 'H'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    static char datadir[2048];
    const char *dir =
        cli_data_path(datadir, sizeof datadir, "golden") ? datadir : "fixtures/golden";
    int update = 0, c;
    const char *html = NULL;
    int nrows = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'u': update = 1; break;
        case 'H': html = optarg; break;
        case 'h':
            printf("usage: lrp-oracle golden [--dir DIR] [--update] [--html DIR]\n\n"
                   "Without --update: runs the float32 fast path on every golden file in DIR\n"
                   "(default: the installed golden traces, or fixtures/golden in the source\n"
                   "tree) and judges it against the stored MPFR reference (no MPFR needed),\n"
                   "and bitwise against the stored fast-path bits.  Exit 1 if\n"
                   "any bit changed or any verdict is out of tolerance.\n"
                   "With --update: recomputes reference and fast path for every fixture,\n"
                   "prints what changed against the files in DIR, and replaces them.\n");
            return EXIT_OK;
        default: return cli_usage_error("golden", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (update && mkdir(dir, 0777) && errno != EEXIST)
        return cli_usage_error("golden", "cannot create '%s'", dir);
    int bad = 0;
    printf("%-14s %-16s %-12s %14s  %s\n", "fixture", "verdict", "documented", "bits changed",
           update ? "reference changed" : "first changed layer");
    for (int k = 0; k < lrp_fixture_count; k++) {
        const lrp_fixture_def *d = &lrp_fixture_defs[k];
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.h5", dir, d->name);
        lrp_err e = {0};
        lrp_net *old = NULL;
        struct stat sb;
        int have_old = stat(path, &sb) == 0;
        if (have_old && cli_load(&old, path, &e) != LRP_OK)
            return cli_fail(&e);
        if (!have_old && !update) {
            printf("%-14s missing: run 'make golden' to create it\n", d->name);
            bad++;
            continue;
        }
        lrp_net *net = old;
        if (update) {
            if (make_golden(&net, d, &e) != LRP_OK) {
                lrp_net_free(old);
                return cli_fail(&e);
            }
        }
        int ir = lrp_net_trace_find(net, "reference"), iff = lrp_net_trace_find(net, "fastpath");
        if (ir < 0 || iff < 0) {
            fprintf(stderr, "lrp-oracle: %s: /traces: golden file lacks 'reference' or 'fastpath'\n",
                    path);
            lrp_net_free(net);
            if (net != old)
                lrp_net_free(old);
            return EXIT_USAGE;
        }
        /* judge a fresh fast-path run against the (new or stored) golden */
        lrp_pipe *fp = NULL;
        lrp_f32_ctx *fcx = NULL;
        lrp_backend fbe;
        if (run_fast(&fp, &fbe, &fcx, net, &e) != LRP_OK) {
            lrp_f32_ctx_free(fcx);
            return cli_fail(&e);
        }
        float **got = calloc((size_t)net->n_layers, sizeof *got);
        for (int i = 0; got && i < net->n_layers; i++)
            got[i] = fp->L[i].rel;
        lrp_golden_result gr;
        lrp_status st = got ? lrp_golden_judge(&gr, net, &net->traces[ir], &net->traces[iff], got, &e)
                            : lrp_err_set(&e, LRP_E_NOMEM, "golden: out of memory");
        free(got);
        lrp_pipe_free(fp);
        lrp_f32_ctx_free(fcx);
        if (st) {
            lrp_net_free(net);
            if (net != old)
                lrp_net_free(old);
            return cli_fail(&e);
        }
        int expect = expected_for(d->name);
        int ok_v = expect >= 0 ? (int)gr.worst == expect
                               : (gr.worst == LRP_V_PASS || gr.worst == LRP_V_ILL_CONDITIONED);
        char changed[160];
        int64_t diffs = gr.total_diffs;
        if (update && old) {
            /* what regenerating changes against the committed file */
            int jo = lrp_net_trace_find(old, "fastpath"), jr = lrp_net_trace_find(old, "reference");
            int same_shape = old->n_layers == net->n_layers;
            diffs = (jo >= 0 && same_shape) ? trace_diffs(net, &old->traces[jo], &net->traces[iff], 0)
                                            : -1;
            int64_t rd = (jr >= 0 && same_shape)
                             ? trace_diffs(net, &old->traces[jr], &net->traces[ir], 0) +
                                   trace_diffs(net, &old->traces[jr], &net->traces[ir], 1)
                             : -1;
            snprintf(changed, sizeof changed, "%lld cells", (long long)rd);
        } else if (update) {
            snprintf(changed, sizeof changed, "new file");
        } else {
            snprintf(changed, sizeof changed, "%s",
                     gr.first_diff_layer >= 0 ? net->layers[gr.first_diff_layer].name : "-");
        }
        printf("%-14s %-16s %-12s %14lld  %s\n", d->name, lrp_verdict_name(gr.worst),
               expect >= 0 ? lrp_verdict_name((lrp_verdict)expect) : "within tol.",
               (long long)diffs, changed);
        snprintf(cells[nrows * NCOL + 0], 160, "%s", d->name);
        snprintf(cells[nrows * NCOL + 1], 160, "%s", lrp_verdict_name(gr.worst));
        snprintf(cells[nrows * NCOL + 2], 160, "%s",
                 expect >= 0 ? lrp_verdict_name((lrp_verdict)expect) : "within tol.");
        snprintf(cells[nrows * NCOL + 3], 160, "%lld", (long long)diffs);
        snprintf(cells[nrows * NCOL + 4], 160, "%s", changed);
        nrows++;
        if (!ok_v || (!update && gr.total_diffs))
            bad++;
        lrp_golden_result_free(&gr);
        if (update) {
            lrp_status ws = lrp_fixture_write(net, path, &e);
            if (ws) {
                lrp_net_free(net);
                lrp_net_free(old);
                return cli_fail(&e);
            }
            lrp_net_free(old);
        }
        lrp_net_free(net);
    }
    printf("golden: %d fixtures, %d not as committed\n", lrp_fixture_count, bad);
    if (html) {
        static const char *head[NCOL] = {"fixture", "verdict", "documented", "bits changed",
                                         "first changed layer"};
        const char **cp = malloc((size_t)(nrows ? nrows : 1) * NCOL * sizeof *cp);
        cli_html *h = cli_html_new();
        int rc = -1;
        if (!cp || !h)
            rc = cli_usage_error("golden", "%s", "out of memory");
        for (int k = 0; rc < 0 && k < nrows * NCOL; k++)
            cp[k] = cells[k];
        if (rc < 0) {
            char cap[128];
            snprintf(cap, sizeof cap, "golden traces: %d fixtures, %d not as committed",
                     lrp_fixture_count, bad);
            cli_html_table(h, cap, NCOL, head, cp, nrows);
            rc = cli_html_write(h, html, "lrp-oracle golden");
        }
        free(cp);
        cli_html_free(h);
        if (rc >= 0)
            return rc;
        return bad ? EXIT_CHECK_FAILED : EXIT_OK;
    }
    return bad ? EXIT_CHECK_FAILED : EXIT_OK;
}
