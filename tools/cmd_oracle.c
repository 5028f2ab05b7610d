/*
 * cmd_oracle.c -- the judging subcommands: check, compare, trace,
 * reference, fast.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "cli_mpi.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <mpfr.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend_f32.h"
#include "check.h"
#include "h5io_int.h"
#include "html.h"
#include "kinds.h"
#include "reference.h"
#include "safeout.h"

/* Options common to the judging commands. */
typedef struct judge_opts {
    cli_rules rules;
    const char *json, *junit, *source, *out, *profile, *html, *keep;
    int color, verbose, proof, local, wide, explain;
    int has_expect;
    lrp_verdict expect;
    int strict, require_all, progress, trace_only;
    int split_layer; /* --split layer (reference, check, compare) */
    int identify; /* -1 automatic, 0 off, 1 on */
    int recomputed_den; /* --recomputed-denominators */
    double max_ill;
    unsigned seen; /* bit (c - OPT_JSON) for each option of the enum given */
} judge_opts;

enum {
    OPT_JSON = 2000,
    OPT_JUNIT,
    OPT_SOURCE,
    OPT_NOCOLOR,
    OPT_VERBOSE,
    OPT_NOPROOF,
    OPT_EXPECT,
    OPT_OUT,
    OPT_PROFILE,
    OPT_STRICT,
    OPT_REQUIRE_ALL,
    OPT_PROGRESS,
    OPT_TRACE_ONLY,
    OPT_HTML,
    OPT_WIDE,
    OPT_EXPLAIN,
    OPT_KEEP,
    OPT_IDENTIFY,
    OPT_NO_IDENTIFY,
    OPT_SPLIT,
    OPT_RECOMPUTED,
    OPT_HELP
};

static const struct option judge_long[] = {
    CLI_RULE_OPTIONS,
    {"json", required_argument, 0, OPT_JSON},
    {"junit", required_argument, 0, OPT_JUNIT},
    {"source", required_argument, 0, OPT_SOURCE},
    {"no-color", no_argument, 0, OPT_NOCOLOR},
    {"verbose", no_argument, 0, OPT_VERBOSE},
    {"no-proof", no_argument, 0, OPT_NOPROOF},
    {"expect", required_argument, 0, OPT_EXPECT},
    {"out", required_argument, 0, OPT_OUT},
    {"profile", required_argument, 0, OPT_PROFILE},
    {"strict", optional_argument, 0, OPT_STRICT},
    {"require-all", no_argument, 0, OPT_REQUIRE_ALL},
    {"progress", no_argument, 0, OPT_PROGRESS},
    {"trace-only", no_argument, 0, OPT_TRACE_ONLY},
    {"html", required_argument, 0, OPT_HTML},
    {"wide", no_argument, 0, OPT_WIDE},
    {"explain", no_argument, 0, OPT_EXPLAIN},
    {"keep", required_argument, 0, OPT_KEEP},
    {"identify", no_argument, 0, OPT_IDENTIFY},
    {"no-identify", no_argument, 0, OPT_NO_IDENTIFY},
    {"recomputed-denominators", no_argument, 0, OPT_RECOMPUTED},
    {"split", required_argument, 0, OPT_SPLIT},
    {"help", no_argument, 0, OPT_HELP},
    {0, 0, 0, 0}};

/* Returns -1 to continue, else an exit code (help printed or error). */
static int parse_judge(judge_opts *o, int argc, char **argv, const char *cmd, const char *help)
{
    memset(o, 0, sizeof *o);
    cli_rules_init(&o->rules);
    o->color = cli_isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    o->proof = 1;
    o->local = 1;
    o->identify = -1;
    int c, idx;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", judge_long, &idx)) != -1) {
        if (c >= OPT_JSON && c <= OPT_HELP)
            o->seen |= 1u << (c - OPT_JSON);
        if (c == 'h')
            c = OPT_HELP;
        if (c >= 1000 && c < 1100) {
            if (cli_rules_option(&o->rules, judge_long[c - 1000].name, optarg, cmd))
                return EXIT_USAGE;
            continue;
        }
        switch (c) {
        case OPT_JSON: o->json = optarg; break;
        case OPT_JUNIT: o->junit = optarg; break;
        case OPT_SOURCE: o->source = optarg; break;
        case OPT_NOCOLOR: o->color = 0; break;
        case OPT_VERBOSE: o->verbose = 1; break;
        case OPT_NOPROOF: o->proof = 0; break;
        case OPT_OUT: o->out = optarg; break;
        case OPT_PROFILE: o->profile = optarg; break;
        case OPT_STRICT: {
            o->strict = 1;
            o->max_ill = 0.01;
            if (optarg) {
                char *end = NULL;
                double v = strtod(optarg, &end);
                if (!end || *end || !(v >= 0 && v <= 1))
                    return cli_usage_error(cmd, "--strict wants a fraction in [0, 1], got '%s'",
                                           optarg);
                o->max_ill = v;
            }
            break;
        }
        case OPT_REQUIRE_ALL: o->require_all = 1; break;
        case OPT_PROGRESS: o->progress = 1; break;
        case OPT_TRACE_ONLY: o->trace_only = 1; break;
        case OPT_HTML: o->html = optarg; break;
        case OPT_WIDE: o->wide = 1; break;
        case OPT_EXPLAIN: o->explain = 1; break;
        case OPT_KEEP: o->keep = optarg; break;
        case OPT_IDENTIFY: o->identify = 1; break;
        case OPT_NO_IDENTIFY: o->identify = 0; break;
        case OPT_RECOMPUTED: o->recomputed_den = 1; break;
        case OPT_SPLIT:
            if (strcmp(optarg, "layer") != 0 && strcmp(optarg, "samples") != 0)
                return cli_usage_error(cmd, "--split wants 'samples' or 'layer', got '%s'", optarg);
            o->split_layer = strcmp(optarg, "layer") == 0;
            break;
        case OPT_EXPECT:
            if (lrp_verdict_parse(optarg, &o->expect))
                return cli_usage_error(cmd, "--expect wants a verdict name, got '%s'", optarg);
            o->has_expect = 1;
            break;
        case OPT_HELP:
            printf("%s\n%s", help, CLI_RULE_HELP);
            return EXIT_OK;
        default:
            return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error(cmd, "%s", "missing FILE");
    return -1;
}

#define SEEN(opt) (1u << ((opt) - OPT_JSON))

/* An option the command has no use for is refused, never ignored: returns
 * -1 when every option given is in `allowed`, else EXIT_USAGE naming it. */
static int refuse_unused(const judge_opts *o, unsigned allowed, const char *cmd)
{
    /* --no-color is true of every plain-text output: accepted everywhere */
    unsigned bad = o->seen & ~allowed & ~SEEN(OPT_HELP) & ~SEEN(OPT_NOCOLOR);
    if (!bad)
        return -1;
    for (const struct option *op = judge_long; op->name; op++)
        if (op->val >= OPT_JSON && op->val <= OPT_HELP && (bad & SEEN(op->val))) {
            char fmt[128];
            snprintf(fmt, sizeof fmt, "--%s has no effect on '%%s'; not accepted", op->name);
            return cli_usage_error(cmd, fmt, cmd);
        }
    return EXIT_USAGE;
}

/* An output that is one of the inputs (same device and inode, whatever
 * the spelling) is refused: -1 when none is, else EXIT_USAGE. */
static int refuse_output_is_input(const char *cmd, const char *what, const char *outp, int argc,
                                  char **argv)
{
    for (int a = optind; outp && a < argc; a++)
        if (lrp_same_file(outp, argv[a])) {
            fprintf(stderr, "lrp-oracle %s: %s %s is the input file %s; not overwritten\n", cmd,
                    what, outp, argv[a]);
            return EXIT_USAGE;
        }
    return -1;
}

/* Loads a fixture, applies the rule options and refuses work beyond the
 * resource limits (estimated from the graph, before any of it is done). */
static lrp_status load_apply_e(lrp_net **net, const char *path, const judge_opts *o,
                               const char *cmd, cli_work work, lrp_err *e)
{
    cli_limits_apply(o->rules.threads);
    cli_load_expect(cmd, work, o->rules.prec, o->proof);
    lrp_status st = cli_load(net, path, e);
    if (st != LRP_OK)
        return st;
    if ((st = cli_rules_apply(*net, &o->rules, path, e)) != LRP_OK ||
        (st = cli_limits_check(*net, path, cmd, work, o->rules.prec, o->proof, e)) != LRP_OK) {
        cli_net_free(*net);
        *net = NULL;
    }
    return st;
}

/* The same, printing the error: the exit code, or -1 when loaded. */
static int load_apply(lrp_net **net, const char *path, const judge_opts *o, const char *cmd,
                      cli_work work)
{
    lrp_err e = {0};
    if (load_apply_e(net, path, o, cmd, work, &e) != LRP_OK)
        return cli_fail(&e);
    return -1;
}

static int write_reports(const judge_opts *o, lrp_run_report *runs, int n,
                         const lrp_file_error *errs, int n_errs)
{
    lrp_err e = {0};
    if (o->json && lrp_report_json_ex(o->json, runs, n, errs, n_errs, &e) != LRP_OK)
        return cli_fail(&e);
    if (o->junit && lrp_report_junit_ex(o->junit, runs, n, errs, n_errs, &e) != LRP_OK)
        return cli_fail(&e);
    if (o->html) {
        cli_html *h = cli_html_new();
        if (!h)
            return cli_usage_error("html", "%s", "out of memory");
        for (int a = 0; a < n; a++)
            cli_html_run(h, &runs[a], NULL);
        if (n_errs) {
            static const char *head[2] = {"file", "error"};
            const char **cells = calloc((size_t)n_errs * 2, sizeof *cells);
            for (int a = 0; cells && a < n_errs; a++) {
                cells[2 * a] = errs[a].file;
                cells[2 * a + 1] = errs[a].message;
            }
            if (cells)
                cli_html_table(h, "files that could not be judged", 2, head, cells, n_errs);
            free(cells);
        }
        int rc = cli_html_write(h, o->html, "lrp-oracle report");
        cli_html_free(h);
        if (rc >= 0)
            return rc;
    }
    return -1;
}

/* ---- check / compare ---- */

/* --recomputed-denominators, in the help of check and compare */
#define RECOMPUTED_HELP                                                                    \
    "  --recomputed-denominators  judge a trace with activations allowing that\n"           \
    "                             the subject divided by its layer outputs\n"               \
    "                             computed again in another order, not by the\n"            \
    "                             values it stored (default: the stored ones,\n"            \
    "                             as gradient-form code divides); a near-zero\n"            \
    "                             output then makes the cells it feeds\n"                   \
    "                             ill-conditioned\n"

#define JUDGE_MEMORY_HELP \
    "Memory: one MPFR run at a time, streamed: it holds the forward\n" \
    "activations (packed, about 13 bytes a value at p=128) and the\n" \
    "relevance in flight, and hands each layer's results, rounded to\n" \
    "binary32, to the verdicts; weights are read in place.  Kept between\n" \
    "phases: the reference's activations and relevance rounded (hi+lo, 12\n" \
    "bytes a value), the subject's relevance (check: our fast path, run\n" \
    "streamed; its activations are recomputed for the trace-local run),\n" \
    "per layer the figures the verdicts read, and of the self-proof only\n" \
    "the cells it leaves unresolved.  A gauge's rows live while their\n" \
    "layer is judged.  --keep FILE spills every judged tensor's per-cell\n" \
    "arrays (subject, reference hi+lo, bounds, conds, flags) to the HDF5\n" \
    "file FILE as it is judged, so keeping costs disk, not memory.\n" \
    "--no-proof skips the run at p+64.  Figures for VGG-16 and ResNet-50:\n" \
    "docs/SCALING.md.\n\n" \
    "Under mpirun (docs/SCALING.md \"MPI\"), several FILEs are shared out\n" \
    "whole; one FILE's MPFR runs are split, by --split samples|layer:\n" \
    "samples (default), the batch in blocks of samples; layer, every\n" \
    "layer's channels (a token sequence's tokens) in blocks (one image:\n" \
    "each rank holds its share of the MPFR values; a BatchNorm under\n" \
    "--bn canonize is divided with its conv; the layers it does not divide\n" \
    "-- Concatenate, Reshape, grouped Conv2D, attention, Softmax, ... --\n" \
    "run whole on every rank, and rank 0 takes their per-unit data).\n" \
    "Rank 0 judges; the report is the one-process report, byte for byte.\n" \
    "With --split layer what it reads layer by layer (the rounded reference,\n" \
    "the gauge's forward bounds, the trace-local values) is parked over the\n" \
    "ranks, each keeping a part, and gathered back for the step that reads it.\n" \
    "Each rank first compares what it read of FILE with rank 0's (a hash an\n" \
    "array) and a rank that read other values is refused.  The ranks of one\n" \
    "node keep one copy of the weights and traces in shared memory\n" \
    "(/dev/shm; one copy a rank where it has no room, or with\n" \
    "LRP_MPI_SHARE=0).\n"

/* What became of one file of check / compare, computed on some rank and
 * replayed on rank 0 in file order (tools/cli_mpi.h): kind 1 a report, 2
 * a file that could not be judged (msg: its error line without the
 * "lrp-oracle: " prefix), 3 a fatal error (msg: the whole line; rc: the
 * exit code; the files after it are not reported). */
typedef struct judge_outcome {
    int32_t a, kind, rc;
    char msg[LRP_ERR_MSG_MAX + 128];
} judge_outcome;

/* One file's run on this rank. */
static void judge_file(judge_outcome *oc, lrp_run_report *r, const judge_opts *po,
                       const char *path, int compare, const char *cmd, cli_progress *prog, int a,
                       int nfiles, lrp_check_split *split)
{
    const judge_opts o = *po;
    lrp_net *net = NULL;
    lrp_err e = {0};
    memset(oc, 0, sizeof *oc);
    oc->a = a;
#define OC_ERROR(...)                                                                       \
    do {                                                                                    \
        oc->kind = 2;                                                                       \
        snprintf(oc->msg, sizeof oc->msg, __VA_ARGS__);                                     \
    } while (0)
    if (load_apply_e(&net, path, &o, cmd, CLI_WORK_JUDGE, &e) != LRP_OK) {
        OC_ERROR("%s", e.msg);
        return;
    }
    if (compare) {
        int t = lrp_net_trace_find(net, o.source);
        if (t < 0) {
            OC_ERROR("%s: /traces/%s: no such trace", path, o.source);
            cli_net_free(net);
            return;
        }
        /* the reference is computed under the trace's own assignment,
         * unless rule options override it explicitly; a rule parameter
         * alone would be replaced by the trace's rules: refused, not
         * ignored */
        const cli_rules *ro = &o.rules;
        if (!ro->has_rule && !ro->has_composite && net->traces[t].rules &&
            (ro->has_stab || ro->has_eps || ro->has_gamma || ro->has_alpha || ro->has_beta ||
             ro->has_box || ro->no_bias || ro->flags || ro->maxpool_eps || ro->bn_mode)) {
            cli_net_free(net);
            oc->kind = 3;
            oc->rc = EXIT_USAGE;
            snprintf(oc->msg, sizeof oc->msg, "lrp-oracle %s: %s (see 'lrp-oracle %s --help')",
                     cmd,
                     "rule options without --rule or --composite would be replaced by the rules "
                     "the trace states: give --rule or --composite to override them",
                     cmd);
            return;
        }
        if (!ro->has_rule && !ro->has_composite && net->traces[t].rules)
            for (int i = 0; i < net->n_layers; i++)
                net->layers[i].rule = net->traces[t].rules[i];
    }
    /* --profile rewrites the conventions the way that library computes.
     * A trace's own rule assignment is authoritative otherwise: its
     * declared profile is provenance, not an instruction (a trace may
     * deviate from its library's defaults and says so in its rules). */
    const char *prof = o.profile;
    if (prof) {
        lrp_err pe = {0};
        int stated = compare && !o.rules.has_rule && !o.rules.has_composite &&
                     net->traces[lrp_net_trace_find(net, o.source)].rules;
        if (cli_profile_apply(net, prof, stated)) {
            oc->kind = 3;
            oc->rc = EXIT_USAGE;
            snprintf(oc->msg, sizeof oc->msg, "lrp-oracle %s: unknown profile '%s' (%s)", cmd,
                     prof, cli_profile_names());
            cli_net_free(net);
            return;
        }
        if (lrp_net_infer(net, path, &pe) != LRP_OK) {
            cli_net_free(net);
            OC_ERROR("%s", pe.msg);
            return;
        }
    }
    lrp_check_opts co;
    lrp_check_opts_default(&co);
    co.prec = o.rules.prec;
    co.threads = o.rules.threads;
    co.proof_extra = o.proof ? 64 : 0;
    co.source = compare ? o.source : NULL;
    co.strict = o.strict;
    co.identify = o.identify;
    co.recomputed_den = o.recomputed_den;
    if (o.strict)
        co.max_ill = o.max_ill;
    co.label = path;
    co.keep_cells = o.html ? 1 : 0; /* the heatmaps of the HTML report */
    char rs[128];
    cli_rules_describe(rs, sizeof rs, net, &o.rules);
    if (compare && !o.rules.has_rule && !o.rules.has_composite)
        snprintf(rs, sizeof rs, "rules of trace '%s'%s%s", o.source, o.profile ? ", profile " : "",
                 o.profile ? o.profile : "");
    co.ruleset = rs;
    cli_progress_begin(prog, &co, path, a + 1, nfiles, compare);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* --keep (one file: on rank 0): opened before the run, renamed into
     * place after it; a keep file that cannot be written is fatal */
    lrp_keep *keep = NULL;
    if (o.keep && lrp_keep_open(&keep, o.keep, &e) != LRP_OK) {
        cli_progress_clear(prog);
        cli_net_free(net);
        oc->kind = 3;
        oc->rc = EXIT_USAGE;
        snprintf(oc->msg, sizeof oc->msg, "lrp-oracle: %s", e.msg);
        return;
    }
    co.keep = keep;
    if (split && split->layer) {
        /* every rank the whole batch, its block of every layer */
        split->first = 0;
        split->count = net->batch;
        split->root = cli_mpi_rank() == 0;
        ((cli_split *)split->ctx)->entered = 1;
    } else if (split) {
        /* this rank's block of the samples */
        cli_mpi_block(net->batch, &split->first, &split->count);
        split->root = cli_mpi_rank() == 0;
        ((cli_split *)split->ctx)->entered = 1;
    }
    if (split) {
        /* every rank has the file (a rank that failed before says so in
         * this first exchange); then one copy of its weights and traces
         * a node */
        void *all = NULL;
        size_t got = 0;
        cli_split *sc = split->ctx;
        int rc = cli_split_gather(sc, NULL, 0, NULL, &all, &got) ? sc->code
                                                                 : cli_mpi_share(net, path, 1);
        free(all);
        cli_phase("shared copy (mpi)");
        if (rc >= 0) {
            /* the failing rank's line is out (cli_mpi_agree) */
            cli_progress_clear(prog);
            if (keep)
                lrp_keep_abort(keep);
            cli_net_free(net);
            sc->code = rc;
            sc->self = 0;
            return;
        }
    }
    co.split = split;
    lrp_status st = lrp_check(r, net, &co, &e);
    if (keep) {
        lrp_err ke = {0};
        if (st != LRP_OK) {
            lrp_keep_abort(keep);
        } else if (lrp_keep_commit(keep, path, compare ? o.source : NULL, &ke) != LRP_OK) {
            cli_progress_clear(prog);
            cli_net_free(net);
            lrp_run_report_free(r);
            memset(r, 0, sizeof *r);
            oc->kind = 3;
            oc->rc = EXIT_USAGE;
            snprintf(oc->msg, sizeof oc->msg, "lrp-oracle: %s", ke.msg);
            return;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    cli_progress_clear(prog);
    cli_net_free(net);
    if (st != LRP_OK) {
        lrp_run_report_free(r);
        memset(r, 0, sizeof *r);
        if (st == LRP_E_NOMEM) {
            oc->kind = 3;
            oc->rc = EXIT_USAGE;
            snprintf(oc->msg, sizeof oc->msg, "lrp-oracle: %s", e.msg);
            return;
        }
        OC_ERROR("%s", e.msg);
        return;
    }
    if (compare && r->n_judged == 0) {
        OC_ERROR("%s: /traces/%s: no layer could be judged (the trace holds no "
                 "relevance for any layer whose consumers it also covers)",
                 path, o.source);
        lrp_run_report_free(r);
        memset(r, 0, sizeof *r);
        return;
    }
#undef OC_ERROR
    oc->kind = 1;
}

/* Rank 0: one file's outcome, printed and recorded as one process does
 * (the report is taken over from src).  Returns 1 after a fatal error. */
static int judge_replay(const judge_outcome *oc, lrp_run_report *src, const judge_opts *o,
                        int compare, lrp_run_report *runs, int *n_runs, lrp_file_error *errs,
                        int *n_errs, int *all_ok, int *exit_code, const char *path)
{
    if (oc->kind == 2) {
        snprintf(errs[*n_errs].file, sizeof errs[*n_errs].file, "%.*s",
                 (int)sizeof errs[*n_errs].file - 1, path);
        snprintf(errs[*n_errs].message, sizeof errs[*n_errs].message, "%.*s",
                 (int)sizeof errs[*n_errs].message - 1, oc->msg);
        fprintf(stderr, "lrp-oracle: %s\n", errs[*n_errs].message);
        (*n_errs)++;
        return 0;
    }
    if (oc->kind == 3) {
        fprintf(stderr, "%s\n", oc->msg);
        *exit_code = oc->rc;
        return 1;
    }
    if (oc->kind != 1)
        return 0;
    lrp_run_report *r = &runs[*n_runs];
    *r = *src; /* taken over */
    memset(src, 0, sizeof *src);
    (*n_runs)++;
    if (compare && o->require_all && r->n_unjudged > 0 && r->verdict < LRP_V_FAIL) {
        /* --require-all: a partial trace fails */
        r->verdict = LRP_V_FAIL;
        snprintf(r->origin, sizeof r->origin, "--require-all: %d tensors not judged (%s)",
                 r->n_unjudged, r->unjudged);
        r->origin_layer = r->origin_layer >= 0 ? r->origin_layer : 0;
    }
    if (o->has_expect) {
        r->has_expect = 1;
        r->expect = o->expect;
        r->expected_ok = r->verdict == o->expect;
    }
    if (*n_runs > 1)
        printf("\n");
    lrp_text_opts to = {o->color, o->verbose, o->wide};
    lrp_report_text_ex(stdout, r, &to);
    *all_ok &= lrp_run_ok(r);
    return 0;
}

static int judge(int argc, char **argv, int compare)

{
    const char *cmd = compare ? "compare" : "check";
    judge_opts o;
    int rc = parse_judge(&o, argc, argv, cmd,
                         compare ? "usage: lrp-oracle compare FILE --source NAME [options]\n\n"
                                   "Judges the relevance trace NAME stored in FILE (written by another\n"
                                   "implementation, see docs/FORMAT.md) against the reference computed\n"
                                   "under the trace's own rule assignment and conventions.\n\n"
                                   "  --json FILE --junit FILE   machine-readable reports\n"
                                   "  --html DIR                 self-contained HTML report DIR/index.html\n"
                                   "  --wide                     every column, whole names (default: 100 columns)\n"
                                   "  --explain                  print the legend of every number\n"
                                   "  --no-proof                 skip the reference's self-proof at p+64\n"
                                   "  --expect VERDICT           the documented outcome (exit 0 iff met)\n"
                                   "  --profile NAME             recompute the reference with the conventions\n"
                                   "                             of a library instead of the trace's own\n"
                                   "                             rules: zennit, captum, innvestigate,\n"
                                   "                             innvestigate-2018, rpjl, lrp-toolbox,\n"
                                   "                             lrp-toolbox-caffe, lxt, lxt-explicit\n"
                                   "  --strict[=F]               a layer with more than F (default 0.01)\n"
                                   "                             of its cells ill-conditioned fails\n"
                                   "  --require-all              a trace that misses a layer fails\n"
                                   "                             (a trace with no judged layer is an error)\n"
                                   "  --progress                 per-layer progress on stderr even when it is\n"
                                   "                             not a terminal (on a terminal it is shown\n"
                                   "                             for runs longer than 2 s)\n"
                                   "  --keep FILE                every judged tensor's per-cell arrays, written\n"
                                   "                             to the HDF5 file FILE (docs/FORMAT.md)\n"
                                   "  --identify, --no-identify  also run the reference under every other\n"
                                   "                             stabilizer convention, without bias and with\n"
                                   "                             BatchNorm eps 0; SUSPECT when the relevance\n"
                                   "                             sits on one of those, not the stated rules\n"
                                   "                             (default: on for networks of at most 2e7\n"
                                   "                             multiply-accumulates a batch)\n"
                                   RECOMPUTED_HELP
                                   "  --verbose --no-color\n\n"
                                   "Every tensor of the trace is judged locally: the reference runs the\n"
                                   "step of the layer that computed it on the trace's own relevance at that\n"
                                   "layer's output (and the trace's activations, if it stores them), and the\n"
                                   "trace must agree within that one step's float32 rounding (sharp bound,\n"
                                   "docs/ORACLE.md); the origin of a discrepancy is named by that layer.\n"
                                   "End to end, every tensor is judged against the reference of the whole\n"
                                   "network.  Gross errors (sign, zero, factor 2) over a layer and layer\n"
                                   "totals are FAIL whatever the condition numbers say.  Without\n"
                                   "activations the bounds carry the forward error of the layers below\n"
                                   "(through attention, often wider than the values): a tensor whose\n"
                                   "ill-conditioned cells are grossly off the reference is SUSPECT;\n"
                                   "give transformer traces their activations.\n\n"
                                   JUDGE_MEMORY_HELP
                                 : "usage: lrp-oracle check [options] FILE...\n\n"
                                   "Computes the MPFR reference and our float32 fast path for each\n"
                                   "fixture and judges the float32 relevance layer by layer\n"
                                   "(docs/ORACLE.md): PASS, ILL-CONDITIONED, UNRESOLVED, SUSPECT, FAIL,\n"
                                   "NONFINITE; conservation; the first NaN/inf and its cause.\n\n"
                                   "  --json FILE --junit FILE   machine-readable reports\n"
                                   "  --html DIR                 self-contained HTML report DIR/index.html\n"
                                   "  --wide                     every column, whole names (default: 100 columns)\n"
                                   "  --explain                  print the legend of every number\n"
                                   "  --no-proof                 skip the reference's self-proof at p+64\n"
                                   "  --expect VERDICT           the documented outcome (exit 0 iff met)\n"
                                   "  --profile NAME             compute the way library NAME does\n"
                                   "  --strict[=F]               a layer with more than F (default 0.01)\n"
                                   "                             of its cells ill-conditioned fails\n"
                                   "  --progress                 per-layer progress on stderr even when it is\n"
                                   "                             not a terminal (on a terminal it is shown\n"
                                   "                             for runs longer than 2 s)\n"
                                   "  --keep FILE                every judged tensor's per-cell arrays, written\n"
                                   "                             to the HDF5 file FILE (one fixture only;\n"
                                   "                             docs/FORMAT.md)\n"
                                   "  --identify, --no-identify  also run the reference under every other\n"
                                   "                             stabilizer convention, without bias and with\n"
                                   "                             BatchNorm eps 0; SUSPECT when the relevance\n"
                                   "                             sits on one of those, not the stated rules\n"
                                   "                             (default: on for networks of at most 2e7\n"
                                   "                             multiply-accumulates a batch)\n"
                                   RECOMPUTED_HELP
                                   "  --verbose --no-color\n\n"
                                   JUDGE_MEMORY_HELP);
    if (rc >= 0)
        return rc;
    if ((rc = refuse_unused(&o,
                            SEEN(OPT_JSON) | SEEN(OPT_JUNIT) | SEEN(OPT_NOCOLOR) | SEEN(OPT_HTML) | SEEN(OPT_WIDE) | SEEN(OPT_EXPLAIN) |
                                SEEN(OPT_VERBOSE) | SEEN(OPT_NOPROOF) | SEEN(OPT_EXPECT) |
                                SEEN(OPT_PROFILE) | SEEN(OPT_STRICT) | SEEN(OPT_PROGRESS) |
                                SEEN(OPT_KEEP) | SEEN(OPT_IDENTIFY) | SEEN(OPT_NO_IDENTIFY) |
                                SEEN(OPT_SPLIT) | SEEN(OPT_RECOMPUTED) |
                                (compare ? SEEN(OPT_SOURCE) | SEEN(OPT_REQUIRE_ALL) : 0),
                            cmd)) >= 0 ||
        (rc = refuse_output_is_input(cmd, "--json", o.json, argc, argv)) >= 0 ||
        (rc = refuse_output_is_input(cmd, "--keep", o.keep, argc, argv)) >= 0 ||
        (rc = refuse_output_is_input(cmd, "--junit", o.junit, argc, argv)) >= 0)
        return rc;
    if (compare && !o.source)
        return cli_usage_error(cmd, "%s", "needs --source NAME (see 'lrp-oracle info FILE')");
    int nfiles = argc - optind;
    if (o.keep && nfiles != 1)
        return cli_usage_error(cmd, "%s", "--keep FILE takes one fixture");
    if (o.split_layer && nfiles != 1)
        return cli_usage_error(cmd, "%s", "--split layer takes one FILE");
    lrp_run_report *runs = calloc((size_t)nfiles, sizeof *runs);
    if (!runs)
        return cli_usage_error(cmd, "%s", "out of memory");
    /* A file that cannot be judged is reported (stderr, and as an error in
     * JSON / JUnit / HTML) and the others are still judged and reported;
     * the exit code is then 2.  Only running out of memory stops the loop. */
    lrp_file_error *errs = calloc((size_t)nfiles, sizeof *errs);
    if (!errs) {
        free(runs);
        return cli_usage_error(cmd, "%s", "out of memory");
    }
    int all_ok = 1, exit_code = -1, n_runs = 0, n_errs = 0;
    cli_progress prog;
    cli_progress_init(&prog, o.progress);
    /* Under MPI the files are spread over the ranks (each file's run
     * whole on one rank: file a on rank a % R) and rank 0 prints and
     * writes every outcome in file order; one process replays each file
     * as soon as it is judged, as before.  One file: its samples are
     * spread over the ranks instead (lrp_check_split), and rank 0 replays
     * the outcome as one process. */
    int rank = cli_mpi_rank(), size = cli_mpi_size();
    int split = (size > 1 && nfiles == 1) || o.split_layer; /* layer: also with one rank */
    judge_outcome *ocs = calloc((size_t)nfiles, sizeof *ocs);
    lrp_run_report *got = calloc((size_t)nfiles, sizeof *got);
    if (!ocs || !got)
        exit_code = cli_usage_error(cmd, "%s", "out of memory");
    if ((exit_code = cli_mpi_agree(exit_code)) >= 0) {
        free(ocs);
        free(got);
        free(runs);
        free(errs);
        return exit_code;
    }
    if (split) {
        cli_split sc = {-1, 0, 0};
        /* while rank 0 judges, the ranks of its node wait: their cores
         * are its threads */
        lrp_check_split sp = {0, 0, 0, o.rules.threads * cli_mpi_local_size(), cli_split_gather,
                              &sc, o.split_layer, rank, size, cli_split_allgather};
        judge_opts os = o;
        if (rank > 0)
            os.keep = NULL; /* rank 0 writes */
        judge_file(&ocs[0], &got[0], &os, argv[optind], compare, cmd, &prog, 0, 1, &sp);
        if (!sc.entered) {
            /* failed before the run (the same file on every rank: rank 0
             * reports it as one process would): say so in the exchange
             * the others' run makes first */
            void *all = NULL;
            size_t total = 0;
            if (rank > 0)
                fprintf(stderr, ocs[0].kind == 3 ? "%s\n" : "lrp-oracle: %s\n", ocs[0].msg);
            if (cli_split_gather(&sc, NULL, 0, "", &all, &total) == 0)
                free(all);
        }
        if (rank > 0 || (sc.code >= 0 && !sc.self)) {
            /* done here; or a rank other than 0 failed: its line is out */
            lrp_run_report_free(&got[0]);
            free(ocs);
            free(got);
            free(runs);
            free(errs);
            return rank > 0 ? (sc.code >= 0 ? sc.code : EXIT_OK) : sc.code;
        }
        judge_replay(&ocs[0], &got[0], &o, compare, runs, &n_runs, errs, &n_errs, &all_ok,
                     &exit_code, argv[optind]);
    }
    cli_bytes mine = {0};
    for (int a = 0; a < nfiles && !split; a++) {
        if (a % size != rank)
            continue;
        judge_file(&ocs[a], &got[a], &o, argv[optind + a], compare, cmd, &prog, a, nfiles, NULL);
        if (size > 1) {
            cli_bytes_put(&mine, &ocs[a], sizeof ocs[a]);
            if (ocs[a].kind == 1)
                cli_report_pack(&mine, &got[a]);
            lrp_run_report_free(&got[a]);
            continue;
        }
        /* one process: replay at once, stop after a fatal error */
        if (judge_replay(&ocs[a], &got[a], &o, compare, runs, &n_runs, errs, &n_errs, &all_ok,
                         &exit_code, argv[optind + a]))
            break;
    }
    if (size > 1 && !split) {
        void *all = NULL;
        size_t total = 0;
        int mrc = mine.oom ? cli_usage_error(cmd, "%s", "out of memory") : -1;
        if ((mrc = cli_mpi_agree(mrc)) < 0)
            mrc = cli_mpi_gather(mine.p, mine.n, &all, &total);
        cli_bytes_free(&mine);
        for (size_t pos = 0; mrc < 0 && rank == 0 && pos < total;) {
            judge_outcome oc;
            lrp_run_report rep;
            memset(&rep, 0, sizeof rep);
            if (total - pos < sizeof oc) {
                mrc = cli_usage_error(cmd, "%s", "damaged results from a rank");
                break;
            }
            memcpy(&oc, (char *)all + pos, sizeof oc);
            pos += sizeof oc;
            if (oc.a < 0 || oc.a >= nfiles ||
                (oc.kind == 1 && cli_report_unpack(&rep, all, total, &pos))) {
                mrc = cli_usage_error(cmd, "%s", "damaged results from a rank");
                break;
            }
            ocs[oc.a] = oc;
            got[oc.a] = rep;
        }
        free(all);
        if (rank > 0 || mrc >= 0) {
            for (int a = 0; a < nfiles; a++)
                lrp_run_report_free(&got[a]);
            free(ocs);
            free(got);
            free(runs);
            free(errs);
            return mrc < 0 ? EXIT_OK : mrc;
        }
        for (int a = 0; a < nfiles; a++)
            if (judge_replay(&ocs[a], &got[a], &o, compare, runs, &n_runs, errs, &n_errs, &all_ok,
                             &exit_code, argv[optind + a]))
                break;
    }
    for (int a = 0; a < nfiles; a++) /* reports not taken over (after a fatal error) */
        lrp_run_report_free(&got[a]);
    free(ocs);
    free(got);
    if (o.explain) {
        printf("\n");
        lrp_report_legend(stdout);
    }
    if (exit_code < 0) {
        rc = write_reports(&o, runs, n_runs, errs, n_errs);
        exit_code = rc >= 0 ? rc : n_errs ? EXIT_USAGE : (all_ok ? EXIT_OK : EXIT_CHECK_FAILED);
    }
    for (int a = 0; a < n_runs; a++)
        lrp_run_report_free(&runs[a]);
    free(runs);
    free(errs);
    return exit_code;
}

int cmd_check(int argc, char **argv) { return judge(argc, argv, 0); }
int cmd_compare(int argc, char **argv) { return judge(argc, argv, 1); }

/* ---- trace: min/max/NaN per layer, both paths ---- */

/* Sum of n reference values (each rounded to double; for display). */
static double ref_sum(const lrp_backend *be, const void *t, int64_t off, int64_t n)
{
    double s = 0;
    for (int64_t k = 0; k < n; k++)
        s += mpfr_get_d(be->at(be->ctx, t, off + k), MPFR_RNDN);
    return s;
}

static double f32_sum(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t k = 0; k < n; k++)
        s += (double)x[k];
    return s;
}

/* Below an Add / Concatenate row: the relevance it passes to each input
 * (branch), both paths.  Below a BatchNorm row: per channel, R_x +
 * absorbed (shift or mean + beta, stabilizer) = R, reference. */
static void trace_identities(const lrp_net *net, int i, const lrp_backend *rbe,
                             const lrp_pipe *ref, const lrp_pipe *f32)
{
    const lrp_layer *l = &net->layers[i];
    const lrp_pipe_layer *P = &ref->L[i], *F = &f32->L[i];
    int64_t B = net->batch;
    if (l->kind == LRP_LAYER_ADD || l->kind == LRP_LAYER_CONCAT) {
        for (int k = 0; k < P->n_rin && k < l->n_in; k++) {
            if (!P->rin[k])
                continue;
            int64_t n = P->n_rin_per[k] * B;
            printf("  %16s branch to '%s': sum R ref %.9g | f32 %.9g\n", "",
                   net->layers[l->in[k]].name, ref_sum(rbe, P->rin[k], 0, n),
                   F->rin[k] ? f32_sum(F->rin[k], n) : NAN);
        }
        printf("  %16s output: sum R ref %.9g | f32 %.9g\n", "", ref_sum(rbe, P->rel, 0, P->n * B),
               f32_sum(F->rel, P->n * B));
    }
    if (l->kind == LRP_LAYER_BATCHNORM && P->bn_C > 0 && P->rin[0] && P->n_units == P->n) {
        int64_t C = P->bn_C, hw = P->n / C;
        printf("  %16s per channel (reference, summed over batch and positions):\n"
               "  %16s %5s %15s %15s %15s %10s\n", "", "", "ch", "R_x", "absorbed", "R", "residual");
        for (int64_t c = 0; c < C; c++) {
            double in = 0, ab = 0, out = 0;
            for (int64_t b = 0; b < B; b++) {
                int64_t off = b * P->n + c * hw;
                in += ref_sum(rbe, P->rin[0], off, hw);
                out += ref_sum(rbe, P->rel, off, hw);
                for (int a = 0; a < LRP_ABS_COUNT; a++)
                    if (P->abs[a])
                        ab += ref_sum(rbe, P->abs[a], off, hw);
            }
            printf("  %16s %5lld %15.9g %15.9g %15.9g %10.2e\n", "", (long long)c, in, ab, out,
                   in + ab - out);
        }
    }
}

int cmd_trace(int argc, char **argv)
{
    judge_opts o;
    int rc = parse_judge(&o, argc, argv, "trace",
                         "usage: lrp-oracle trace [rule options] FILE...\n\n"
                         "Per layer, for the reference and the float32 fast path side by side:\n"
                         "min and max relevance, NaN and inf counts, zero denominators (the table\n"
                         "iNNvestigate's reverse_check_min_max_values printed).  Below each\n"
                         "Add / Concatenate: the relevance it passes to each branch, both paths;\n"
                         "below each BatchNorm: per channel, R_x + absorbed = R (reference).\n");
    if (rc >= 0 || (rc = refuse_unused(&o, 0, "trace")) >= 0)
        return rc;
    for (int a = optind; a < argc; a++) {
        lrp_net *net = NULL;
        if ((rc = load_apply(&net, argv[a], &o, "trace", CLI_WORK_JUDGE)) >= 0)
            return rc;
        lrp_ref_ctx rcx;
        lrp_ref_ctx_init(&rcx, o.rules.prec, o.rules.threads);
        lrp_backend rbe, fbe;
        lrp_ref_backend(&rbe, &rcx);
        lrp_f32_ctx *fcx = lrp_f32_ctx_new(o.rules.threads);
        lrp_f32_backend(&fbe, fcx);
        lrp_pipe *ref = NULL, *f32 = NULL;
        lrp_err e = {0};
        if (lrp_pipe_run(&ref, &rbe, net, &e) || lrp_pipe_run(&f32, &fbe, net, &e)) {
            lrp_pipe_free(ref);
            lrp_f32_ctx_free(fcx);
            cli_net_free(net);
            return cli_fail(&e);
        }
        printf("%s  (relevance at each layer's output; reference p=%d | float32)\n", argv[a],
               o.rules.prec);
        printf("  %-16s %12s %12s %5s | %12s %12s %6s %6s %8s\n", "layer", "ref min", "ref max",
               "0den", "f32 min", "f32 max", "NaN", "inf", "0den");
        for (int i = net->n_layers - 1; i >= 0; i--) {
            lrp_minmax mr, mf;
            lrp_pipe_minmax_ref(&mr, ref, i);
            lrp_pipe_minmax_f32(&mf, f32, i);
            printf("  %-16s %12.4g %12.4g %5lld | %12.4g %12.4g %6lld %6lld %8lld\n",
                   net->layers[i].name, mr.min, mr.max, (long long)mr.zero_den, mf.min, mf.max,
                   (long long)mf.nan, (long long)mf.inf, (long long)mf.zero_den);
            trace_identities(net, i, &rbe, ref, f32);
        }
        lrp_pipe_free(ref);
        lrp_pipe_free(f32);
        lrp_f32_ctx_free(fcx);
        cli_net_free(net);
    }
    return EXIT_OK;
}

/* ---- reference / fast: write a trace into the fixture ---- */

#define TRACE_ONLY_HELP \
    "  --trace-only   OUT holds only the trace and names FILE (a trace file,\n" \
    "                 docs/FORMAT.md): nothing of FILE is copied; compare,\n" \
    "                 info and check read OUT as FILE with the trace added, and\n" \
    "                 refuse it if FILE has changed since (size and digest).\n" \
    "  --progress     per-layer progress on stderr, with the time elapsed and\n" \
    "                 an estimate of what is left, even when stderr is not a\n" \
    "                 terminal (on a terminal it shows for runs over 2 s)\n"

typedef struct digest_job {
    const char *path;
    uint64_t digest;
    int64_t size;
    lrp_status st;
    lrp_err err;
} digest_job;

static void *digest_run(void *arg)
{
    digest_job *j = arg;
    j->st = lrp_file_digest(&j->digest, &j->size, j->path, &j->err);
    return NULL;
}

typedef struct copy_job {
    const lrp_net *net;
    const char *out, *source;
    lrp_h5_writer *h;
    lrp_status st;
    lrp_err err;
} copy_job;

static void *copy_begin(void *arg)
{
    copy_job *j = arg;
    j->st = lrp_h5_write_begin(&j->h, j->net, j->out, NULL, j->source, &j->err);
    return NULL;
}

/* One layer's relevance (and, for the reference, its low parts) and
 * activations of the pipeline's n cells into rel / lo / act. */
static void fill_layer(float *rel, float *lo, float *act, const lrp_backend *be, const lrp_pipe *p,
                       int i, int64_t n, int reference, int prec)
{
    if (reference) {
        mpfr_t d;
        mpfr_init2(d, prec + 300);
        for (int64_t k = 0; k < n; k++) {
            mpfr_srcptr x = be->at(be->ctx, p->L[i].rel, k);
            float h = mpfr_get_flt(x, MPFR_RNDN);
            rel[k] = h;
            if (isfinite(h)) {
                mpfr_sub_d(d, x, (double)h, MPFR_RNDN);
                lo[k] = mpfr_get_flt(d, MPFR_RNDN);
            } else {
                lo[k] = 0.0f;
            }
        }
        mpfr_clear(d);
        for (int64_t k = 0; k < n; k++)
            act[k] = mpfr_get_flt(be->at(be->ctx, p->L[i].act, k), MPFR_RNDN);
    } else {
        memcpy(rel, p->L[i].rel, (size_t)n * sizeof(float));
        memcpy(act, p->L[i].act, (size_t)n * sizeof(float));
    }
}

/* The reference's run is streamed (core/pipeline.h LRP_PIPE_STREAM): each
 * layer's activations and relevance are rounded to the trace's binary32
 * arrays (hi, lo, act: 12 bytes a value) in the run's hook, as soon as
 * they are final, and the run frees its MPFR values of the layer.  Before
 * (December 6, 2026) the whole MPFR run was kept and rounded at its end,
 * 96 bytes a value at p = 128: VGG-16 224 with a batch of 8 peaked at
 * 22.3 GB on this 24 GB machine.  The same rounding of the same values:
 * the file is the same byte for byte. */
typedef struct trace_take {
    float **rel, **lo, **act; /* per layer, this rank's share (batch-major) */
    int64_t *n;               /* their values */
    int prec;
    int oom;
} trace_take;

static void trace_take_free(trace_take *k, int nl)
{
    for (int i = 0; i < nl && k->rel; i++) {
        free(k->rel[i]);
        free(k->lo[i]);
        free(k->act[i]);
    }
    free(k->rel);
    free(k->lo);
    free(k->act);
    free(k->n);
    memset(k, 0, sizeof *k);
}

static int trace_take_init(trace_take *k, int nl, int prec)
{
    memset(k, 0, sizeof *k);
    k->prec = prec;
    k->rel = calloc((size_t)nl, sizeof *k->rel);
    k->lo = calloc((size_t)nl, sizeof *k->lo);
    k->act = calloc((size_t)nl, sizeof *k->act);
    k->n = calloc((size_t)nl, sizeof *k->n);
    return k->rel && k->lo && k->act && k->n ? 0 : -1;
}

/* lrp_pipe_hook: after layer li's backward step its activations and
 * relevance are final (and freed after the hook under STREAM) */
static void take_trace(void *ctx, const lrp_pipe *p, int li, int bwd)
{
    trace_take *k = ctx;
    if (!bwd || k->oom)
        return;
    int64_t n = p->L[li].n * p->batch;
    size_t sz = (size_t)(n ? n : 1) * sizeof(float);
    k->n[li] = n;
    if (!(k->rel[li] = malloc(sz)) || !(k->lo[li] = malloc(sz)) || !(k->act[li] = malloc(sz))) {
        k->oom = 1;
        return;
    }
    fill_layer(k->rel[li], k->lo[li], k->act[li], p->be, p, li, n, 1, k->prec);
}

/* A reference run's share of layer i, [rel | act | lo], into share (3 n
 * values), its arrays freed: each layer is held once, as it is sent. */
static void take_share(trace_take *k, int i, float *share, int64_t n)
{
    memcpy(share, k->rel[i], (size_t)n * sizeof(float));
    memcpy(share + n, k->act[i], (size_t)n * sizeof(float));
    memcpy(share + 2 * n, k->lo[i], (size_t)n * sizeof(float));
    free(k->rel[i]);
    free(k->act[i]);
    free(k->lo[i]);
    k->rel[i] = k->act[i] = k->lo[i] = NULL;
}

/* Under MPI (tools/cli_mpi.h): every rank converts its samples' share of
 * each layer and rank 0 gathers them, layer by layer, into the trace t
 * (rank 0's; NULL elsewhere).  The samples are split in contiguous blocks
 * in rank order, so the gathered bytes are the batch-major arrays of one
 * process.  Returns -1 or the agreed exit code. */
static int gather_trace(lrp_trace *t, const lrp_net *net, const lrp_backend *be,
                        const lrp_pipe *p, trace_take *k, int64_t count, int reference, int prec)
{
    int rank = cli_mpi_rank(), size = cli_mpi_size(), parts = reference ? 3 : 2;
    int64_t B = net->batch;
    for (int i = 0; i < net->n_layers; i++) {
        int64_t n1 = lrp_shape_numel(&net->layers[i].shape), n = n1 * count;
        float *share = malloc((size_t)(n ? n : 1) * (size_t)parts * sizeof(float));
        int rc = share ? -1 : cli_usage_error(reference ? "reference" : "fast", "%s", "out of memory");
        if (rank == 0 && rc < 0) {
            size_t m = (size_t)(n1 * B > 0 ? n1 * B : 1) * sizeof(float);
            if (!(t->relevance[i] = malloc(m)) || !(t->activation[i] = malloc(m)) ||
                (reference && !(t->relevance_lo[i] = malloc(m))))
                rc = cli_usage_error(reference ? "reference" : "fast", "%s", "out of memory");
        }
        if ((rc = cli_mpi_agree(rc)) >= 0) {
            free(share);
            return rc;
        }
        if (n && reference)
            take_share(k, i, share, n); /* (rounded in the run's hook) */
        else if (n)
            fill_layer(share, NULL, share + n, be, p, i, n, 0, prec);
        void *all = NULL;
        size_t total = 0;
        rc = cli_mpi_gather(share, (size_t)n * (size_t)parts * sizeof(float), &all, &total);
        free(share);
        if (rc >= 0)
            return rc;
        if (rank == 0) {
            /* rank r's block: [rel | act | lo] of its count_r samples */
            const float *q = all;
            int64_t at = 0;
            for (int r = 0; r < size; r++) {
                int64_t cr = B / size + (r < B % size), m = n1 * cr;
                memcpy(t->relevance[i] + at, q, (size_t)m * sizeof(float));
                memcpy(t->activation[i] + at, q + m, (size_t)m * sizeof(float));
                if (reference)
                    memcpy(t->relevance_lo[i] + at, q + 2 * m, (size_t)m * sizeof(float));
                q += parts * m;
                at += m;
            }
        }
        free(all);
    }
    return -1;
}

/* The layer split (core/pipeline.h lrp_pipe_run_split): every rank
 * converts its block of each layer's channels, sample by sample, and rank
 * 0 puts the blocks in their places: the batch-major arrays of one
 * process.  Returns -1 or the agreed exit code. */
static int gather_trace_layers(lrp_trace *t, const lrp_net *net, trace_take *k)
{
    int rank = cli_mpi_rank(), size = cli_mpi_size();
    int64_t B = net->batch;
    for (int i = 0; i < net->n_layers; i++) {
        const lrp_shape *sh = &net->layers[i].shape;
        int64_t n1 = lrp_shape_numel(sh), inner = n1 / sh->d[0], n = k->n[i];
        float *share = malloc((size_t)(n ? n : 1) * 3 * sizeof(float));
        int rc = share ? -1 : cli_usage_error("reference", "%s", "out of memory");
        if (rank == 0 && rc < 0) {
            size_t m = (size_t)(n1 * B > 0 ? n1 * B : 1) * sizeof(float);
            if (!(t->relevance[i] = malloc(m)) || !(t->activation[i] = malloc(m)) ||
                !(t->relevance_lo[i] = malloc(m)))
                rc = cli_usage_error("reference", "%s", "out of memory");
        }
        if ((rc = cli_mpi_agree(rc)) >= 0) {
            free(share);
            return rc;
        }
        if (n)
            take_share(k, i, share, n); /* (rounded in the run's hook) */
        void *all = NULL;
        size_t total = 0;
        rc = cli_mpi_gather(share, (size_t)n * 3 * sizeof(float), &all, &total);
        free(share);
        if (rc >= 0)
            return rc;
        if (rank == 0) {
            /* rank r's share: [rel | act | lo] of its block of every sample */
            const float *q = all;
            for (int r = 0; r < size; r++) {
                int64_t lo, hi;
                lrp_pipe_split_block(net, i, r, size, &lo, &hi);
                int64_t w = (hi - lo) * inner, m = w * B;
                for (int64_t b = 0; b < B; b++) {
                    int64_t at = b * n1 + lo * inner;
                    memcpy(t->relevance[i] + at, q + b * w, (size_t)w * sizeof(float));
                    memcpy(t->activation[i] + at, q + m + b * w, (size_t)w * sizeof(float));
                    memcpy(t->relevance_lo[i] + at, q + 2 * m + b * w, (size_t)w * sizeof(float));
                }
                q += 3 * m;
            }
            LRP_ASSERT((size_t)((const char *)q - (const char *)all) == total);
        }
        free(all);
    }
    return -1;
}

static int write_trace(int argc, char **argv, int reference)
{
    const char *cmd = reference ? "reference" : "fast";
    judge_opts o;
    int rc = parse_judge(&o, argc, argv, cmd,
                         reference ? "usage: lrp-oracle reference [rule options] FILE --out OUT\n\n"
                                     "Computes the MPFR reference relevance and stores it as trace\n"
                                     "'reference' (binary32 hi + lo parts, precision recorded) in a\n"
                                     "copy OUT of FILE, written atomically; FILE is never rewritten\n"
                                     "(OUT holds what the format models, docs/FORMAT.md).\n\n"
                                     TRACE_ONLY_HELP
                                     "  --split samples|layer\n"
                                     "                 under mpirun, what the ranks share (docs/SCALING.md\n"
                                     "                 \"MPI\"): samples (default), the batch in blocks of\n"
                                     "                 samples; layer, every layer's channels (a token\n"
                                     "                 sequence's tokens) in blocks, for a batch smaller\n"
                                     "                 than the ranks (one image): each rank holds its\n"
                                     "                 share of the MPFR values; an attention is divided\n"
                                     "                 by rows of queries.  The layers it does not\n"
                                     "                 divide (Concatenate, Reshape, grouped Conv2D,\n"
                                     "                 Softmax, attention stages, ...) run whole on\n"
                                     "                 every rank.\n"
                                     "                 The file is the one-process file, byte for byte.\n"
                                   : "usage: lrp-oracle fast [rule options] FILE --out OUT\n\n"
                                     "Runs the float32 fast path and stores its relevance as trace\n"
                                     "'fastpath' in a copy OUT of FILE, written atomically; FILE is\n"
                                     "never rewritten.\n\n"
                                     TRACE_ONLY_HELP);
    if (rc >= 0 || (rc = refuse_unused(&o, SEEN(OPT_OUT) | SEEN(OPT_TRACE_ONLY) |
                                               SEEN(OPT_PROGRESS) |
                                               (reference ? SEEN(OPT_SPLIT) : 0), cmd)) >= 0)
        return rc;
    if (argc - optind != 1)
        return cli_usage_error(cmd, "%s", "takes exactly one FILE");
    /* never rewrite the input: it would lose what the format does not model
     * (and two runs at once would lose a trace) */
    if (!o.out)
        return cli_usage_error(cmd, "%s",
                               "writes a copy: pass --out OUT (FILE itself is never rewritten)");
    if ((rc = refuse_output_is_input(cmd, "--out", o.out, argc, argv)) >= 0)
        return rc;
    const char *path = argv[optind];
    lrp_net *net = NULL;
    /* the fixture's digest (a trace file records it) is a read of the
     * whole file, made on a thread after the load, while the engine runs:
     * a thread running while the sandbox forks its child can leave a lock
     * (malloc's, ASan's) held in the child, which then hangs (seen under
     * ASan: "parsing did not finish"); nothing forks after the load */
    digest_job dj = {path, 0, 0, LRP_OK, {0}};
    rc = load_apply(&net, path, &o, cmd, reference ? CLI_WORK_REFERENCE : CLI_WORK_FAST);
    if (cli_mpi_size() > 1) {
        /* every rank has the file (a rank that failed says so here, so
         * that each rank makes the same agreements after); then one copy
         * of its weights a node, before the copy's writer reads them */
        if ((rc = cli_mpi_agree(rc)) < 0)
            rc = cli_mpi_share(net, path, 0); /* rank 0 may replace a trace */
        cli_phase("shared copy (mpi)");
        if (rc >= 0)
            cli_net_free(net); /* NULL where the load failed */
    }
    if (rc >= 0)
        return rc;
    lrp_err e = {0};
    pthread_t dth;
    int dth_on = 0;
    if (o.trace_only && cli_mpi_rank() == 0) { /* rank 0 writes the trace file */
        dth_on = pthread_create(&dth, NULL, digest_run, &dj) == 0;
        if (!dth_on)
            digest_run(&dj);
    }
    lrp_ref_ctx rcx;
    lrp_backend be;
    lrp_f32_ctx *fcx = NULL;
    lrp_pipe *p = NULL;
    const char *source = reference ? "reference" : "fastpath";
    /* A copy is built and written on another thread while the relevance is
     * computed: everything of FILE first, the new trace last (the file is
     * the same as one write after the run; tests/test_h5io.c).  Not when
     * FILE holds a trace of that name: it is replaced where it stands. */
    copy_job cj = {net, o.out, source, NULL, LRP_OK, {0}};
    pthread_t cth;
    int mpi = cli_mpi_size() > 1, rank = cli_mpi_rank();
    int split = o.split_layer;     /* the layer split: also with one rank */
    int gathered = mpi || split;   /* rank 0 gathers the trace from the ranks */
    int cth_on = rank == 0 && !o.trace_only && lrp_net_trace_find(net, source) < 0 &&
                 pthread_create(&cth, NULL, copy_begin, &cj) == 0;
    /* Under MPI each rank computes a contiguous block of the samples: a
     * view of the net with that block's data (the layers and weights are
     * shared, read-only; rank 0's writer thread reads the whole net) */
    lrp_net sub = *net;
    int64_t first = 0, count = net->batch;
    if (mpi && !split) {
        cli_mpi_block(net->batch, &first, &count);
        int64_t nin = lrp_shape_numel(&net->layers[0].shape);
        int64_t nout = lrp_shape_numel(&net->layers[net->n_layers - 1].shape);
        sub.batch = (int)count;
        sub.input = net->input + first * nin;
        sub.r_out = net->r_out ? net->r_out + first * nout : NULL;
        sub.target = net->target ? net->target + first : NULL;
        /* the attention's key mask is per sample too */
        int64_t pT = lrp_padding_T(net);
        sub.key_padding_mask =
            net->key_padding_mask && pT > 0 ? net->key_padding_mask + first * pT : NULL;
        sub.n_traces = 0;
        sub.traces = NULL;
    }
    if (reference) {
        lrp_ref_ctx_init(&rcx, o.rules.prec, o.rules.threads);
        lrp_ref_backend(&be, &rcx);
    } else {
        fcx = lrp_f32_ctx_new(o.rules.threads);
        lrp_f32_backend(&be, fcx);
    }
    /* only the relevance of every layer is stored: the engine mode skips
     * the audit data (same relevance bit for bit, tests/test_fastpath.c) */
    cli_phase("engine setup");
    /* per layer on a terminal (or with --progress), rank 0's; the layer
     * hook is removed as soon as the run ends (cli_progress_step), and an
     * error line erases the line first (cli_fail) */
    cli_progress prog;
    cli_progress_init(&prog, o.progress && rank == 0);
    if (rank > 0)
        prog.mode = 0;
    cli_progress_begin_run(&prog, path, reference, o.rules.prec);
    /* a rank with no samples (more ranks than samples) computes nothing */
    cli_split cs = {-1, 0, 0};
    lrp_status st = LRP_OK;
    /* the reference streamed: its trace arrays taken layer by layer */
    trace_take tk;
    memset(&tk, 0, sizeof tk);
    if (reference && trace_take_init(&tk, net->n_layers, o.rules.prec))
        st = lrp_err_set(&e, LRP_E_NOMEM, "%s: out of memory", path);
    const unsigned rflags = LRP_PIPE_RELEVANCE | (reference ? LRP_PIPE_STREAM : 0);
    if (split) {
        /* every layer's channels in blocks over the ranks; a failure is
         * agreed inside the run (its exchanges), cs.code then set (a rank
         * out of memory for tk's tables tells the others there too) */
        lrp_pipe_split sp = {rank, cli_mpi_size(), cli_split_allgather, &cs};
        if (st) {
            /* (as a rank failing inside the run: the others are in its
             * first exchange, lrp_pipe_split_fail) */
            void *all = NULL;
            size_t total = 0;
            cli_split_allgather(&cs, NULL, 0, e.msg, &all, &total);
            free(all);
        } else {
            st = lrp_pipe_run_split_hooked(&p, &be, net, rflags, NULL,
                                           reference ? take_trace : NULL, &tk, &sp, &e);
        }
    } else if (count > 0 && !st) {
        st = lrp_pipe_run_hooked(&p, &be, &sub, rflags, NULL, reference ? take_trace : NULL, &tk,
                                 &e);
    }
    /* every layer taken, or the run stops as out of memory */
    for (int i = 0; reference && !st && (split || count > 0) && i < net->n_layers; i++)
        if (tk.oom || !tk.rel[i])
            st = lrp_err_set(&e, LRP_E_NOMEM, "%s: out of memory", path);
    cli_phase("engine");
    {
        char what[160];
        snprintf(what, sizeof what, "%s%s", gathered ? "gathering and writing " : "writing ",
                 lrp_out_is_stdout(o.out) ? "to stdout" : o.out);
        cli_progress_step(&prog, what);
    }
    if (dth_on) {
        pthread_join(dth, NULL);
        cli_phase("digest (joined)");
    }
    if (cs.code >= 0) {
        if (cth_on)
            pthread_join(cth, NULL);
        lrp_h5_write_abort(cj.h);
        trace_take_free(&tk, net->n_layers);
        lrp_pipe_free(p);
        cli_net_free(net);
        /* rank 0's own failure is printed here; another rank's line was
         * replayed by the agreement */
        return rank == 0 && cs.self ? cli_fail(&e) : cs.code;
    }
    if (mpi && (rc = cli_mpi_agree(st ? cli_fail(&e) : -1)) >= 0) {
        if (cth_on)
            pthread_join(cth, NULL);
        lrp_h5_write_abort(cj.h);
        trace_take_free(&tk, net->n_layers);
        lrp_pipe_free(p);
        lrp_f32_ctx_free(fcx);
        cli_net_free(net);
        return rc;
    }
    if (cth_on) {
        /* the net is read by the writer until here; then it gains the trace */
        pthread_join(cth, NULL);
        cli_phase("copy written (joined)");
        if (!st && cj.st && !mpi) {
            trace_take_free(&tk, net->n_layers);
            lrp_pipe_free(p);
            lrp_f32_ctx_free(fcx);
            cli_net_free(net);
            return cli_fail(&cj.err);
        }
    }
    if (mpi && (rc = cli_mpi_agree(cth_on && cj.st ? cli_fail(&cj.err) : -1)) >= 0) {
        trace_take_free(&tk, net->n_layers);
        lrp_pipe_free(p);
        lrp_f32_ctx_free(fcx);
        cli_net_free(net);
        return rc;
    }
    if (!st && o.trace_only && lrp_net_trace_find(net, source) >= 0) {
        cli_progress_erase();
        trace_take_free(&tk, net->n_layers);
        lrp_pipe_free(p);
        lrp_f32_ctx_free(fcx);
        cli_net_free(net);
        fprintf(stderr,
                "lrp-oracle %s: %s already holds a trace '%s'; a trace file beside it would be "
                "ambiguous (write a copy without --trace-only)\n",
                cmd, path, source);
        return EXIT_USAGE;
    }
    lrp_trace *t = st || (mpi && rank > 0) ? NULL : lrp_net_trace_add(net, source, &e);
    if (gathered) {
        if ((rc = cli_mpi_agree(rank == 0 && !t ? cli_fail(&e) : -1)) < 0)
            rc = split ? gather_trace_layers(t, net, &tk)
                       : gather_trace(t, net, &be, p, &tk, count, reference, o.rules.prec);
        trace_take_free(&tk, net->n_layers);
        lrp_pipe_free(p);
        lrp_f32_ctx_free(fcx);
        if (rc >= 0 || rank > 0) {
            /* ranks > 0 are done: rank 0 writes */
            if (rank == 0)
                lrp_h5_write_abort(cj.h);
            cli_net_free(net);
            return rc >= 0 ? rc : EXIT_OK;
        }
        p = NULL;
        fcx = NULL;
    } else if (!t) {
        lrp_h5_write_abort(cj.h);
        trace_take_free(&tk, net->n_layers);
        lrp_pipe_free(p);
        lrp_f32_ctx_free(fcx);
        cli_net_free(net);
        return cli_fail(&e);
    }
    snprintf(t->producer, sizeof t->producer, "lrp-oracle %s (%s)", LRP_VERSION_STRING,
             reference ? "MPFR reference" : "float32 fast path");
    t->precision = reference ? o.rules.prec : 24;
    snprintf(t->composite, sizeof t->composite, "%s", net->composite);
    int ok = 1;
    /* The fast path's own buffers are the trace: lent to it for the write
     * (a copy would be 8 bytes a cell of fresh memory, about 0.5 s on
     * VGG-16 224 on this machine's first-touch page cost), taken back
     * before the net is freed; the pipeline is freed after the write. */
    int lent = !reference && !gathered;
    for (int i = 0; i < net->n_layers && lent; i++) {
        t->relevance[i] = (float *)p->L[i].rel;
        t->activation[i] = (float *)p->L[i].act;
        if (!t->relevance[i] || !t->activation[i])
            lent = 0;
    }
    if (!reference && !gathered && !lent) /* a layer without its buffers: copied after all */
        for (int i = 0; i < net->n_layers; i++)
            t->relevance[i] = t->activation[i] = NULL;
    /* the reference's arrays, rounded in the run's hook, are the trace:
     * moved, not copied.  With them the forward activations the relevance
     * was computed from: `compare` judges every layer's step on exactly
     * its inputs (docs/ORACLE.md, trace-local judgement) */
    for (int i = 0; i < net->n_layers && reference && !gathered; i++) {
        t->relevance[i] = tk.rel[i];
        t->relevance_lo[i] = tk.lo[i];
        t->activation[i] = tk.act[i];
        tk.rel[i] = tk.lo[i] = tk.act[i] = NULL;
    }
    trace_take_free(&tk, net->n_layers);
    for (int i = 0; i < net->n_layers && ok && !reference && !gathered && !lent; i++) {
        int64_t n = p->L[i].n * net->batch;
        t->relevance[i] = malloc((size_t)(n ? n : 1) * sizeof(float));
        t->activation[i] = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!t->relevance[i] || !t->activation[i]) {
            ok = 0;
            break;
        }
        memcpy(t->relevance[i], p->L[i].rel, (size_t)n * sizeof(float));
        memcpy(t->activation[i], p->L[i].act, (size_t)n * sizeof(float));
    }
    cli_phase(lent ? "trace lent" : "trace copy");
    if (!lent) {
        lrp_pipe_free(p);
        lrp_f32_ctx_free(fcx);
        p = NULL;
        fcx = NULL;
        cli_phase("engine free");
    }
    if (!ok) {
        lrp_h5_write_abort(cj.h);
        cli_net_free(net);
        return cli_usage_error(cmd, "%s", "out of memory");
    }
    const char *dst = o.out;
    if (o.trace_only) {
        /* only the trace, naming the fixture: by its name when both are in
         * one directory (the pair can move together), else by its full path */
        char fref[PATH_MAX], fdir[PATH_MAX], odir[PATH_MAX], tmp[PATH_MAX];
        lrp_trace_ref tref = {fref, 0, 0, source};
        int same = 0;
        if (!realpath(path, fref)) {
            snprintf(fref, sizeof fref, "%s", path);
        } else if (strcmp(dst, "-") != 0) {
            snprintf(tmp, sizeof tmp, "%s", dst);
            char *sl = strrchr(tmp, '/');
            if (sl)
                *sl = '\0';
            snprintf(fdir, sizeof fdir, "%s", fref);
            *strrchr(fdir, '/') = '\0';
            same = realpath(sl ? tmp : ".", odir) && strcmp(odir, fdir[0] ? fdir : "/") == 0;
        }
        if (same)
            memmove(fref, strrchr(fref, '/') + 1, strlen(strrchr(fref, '/') + 1) + 1);
        st = dj.st;
        tref.digest = dj.digest;
        tref.size = dj.size;
        if (st)
            e = dj.err;
        if (!st)
            st = lrp_fixture_write_ex(net, dst, &tref, &e);
    } else if (cj.h) {
        st = lrp_h5_write_finish(cj.h, net, &e);
    } else {
        st = lrp_fixture_write(net, dst, &e);
    }
    cli_phase("write");
    for (int i = 0; i < net->n_layers && lent; i++)
        t->relevance[i] = t->activation[i] = NULL; /* the pipeline's: freed with it */
    lrp_pipe_free(p);
    lrp_f32_ctx_free(fcx);
    cli_net_free(net);
    cli_phase("free");
    if (st)
        return cli_fail(&e);
    cli_progress_clear(&prog);
    /* the file itself may be on stdout: the note then goes to stderr */
    fprintf(lrp_out_is_stdout(dst) ? stderr : stdout, "wrote trace '%s' to %s\n",
            reference ? "reference" : "fastpath", dst);
    return EXIT_OK;
}

int cmd_reference(int argc, char **argv) { return write_trace(argc, argv, 1); }
int cmd_fast(int argc, char **argv) { return write_trace(argc, argv, 0); }
