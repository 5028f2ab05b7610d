/*
 * cmd_suite.c -- `lrp-oracle suite`: the oracle over the whole fixture
 * suite (fixtures/runs.c), one summary table, exit 0 only when every run
 * behaves as documented.  `make run` calls it.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cli_mpi.h"
#include "fixtures.h"
#include "html.h"
#include "safeout.h"

static const struct option rule_opts[] = {CLI_RULE_OPTIONS, {0, 0, 0, 0}};

/* Applies a run's argument string ("--rule epsilon --eps 1e-7") to o. */
static int parse_args(cli_rules *o, const char *args)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", args);
    char *save = NULL;
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        if (strncmp(tok, "--", 2) != 0)
            return cli_usage_error("suite", "bad run arguments '%s'", args);
        if (!strcmp(tok, "--profile")) {
            /* applied after the rule options (suite_compute), as check does */
            const char *pv = strtok_r(NULL, " ", &save);
            lrp_net *t = lrp_net_new();
            int bad = !pv || !t || cli_profile_apply(t, pv, 0);
            lrp_net_free(t);
            if (bad)
                return cli_usage_error("suite", "unknown profile in run arguments '%s'", args);
            continue;
        }
        const struct option *opt = NULL;
        for (const struct option *p = rule_opts; p->name; p++)
            if (!strcmp(p->name, tok + 2))
                opt = p;
        if (!opt)
            return cli_usage_error("suite", "unknown option in run arguments '%s'", args);
        const char *val = NULL;
        if (opt->has_arg == required_argument && !(val = strtok_r(NULL, " ", &save)))
            return cli_usage_error("suite", "missing value in run arguments '%s'", args);
        if (cli_rules_option(o, opt->name, val, "suite"))
            return EXIT_USAGE;
    }
    return 0;
}

/* The value of "--profile NAME" in a run's arguments, or NULL. */
static const char *run_profile(const char *args, char *buf, size_t n)
{
    const char *p = strstr(args, "--profile ");
    if (!p)
        return NULL;
    p += strlen("--profile ");
    size_t k = strcspn(p, " ");
    snprintf(buf, n, "%.*s", (int)k, p);
    return buf;
}

/* A reproduction judged on a committed trace (docs/REPRODUCTIONS.md): run
 * arguments "--trace FILE --source S [rule options]".  FILE is a trace
 * file (docs/FORMAT.md) naming its fixture by base name; it is `compare`d
 * as trace S, under the trace's own rules unless --rule / --composite are
 * given.  Returns the rule options after it, or NULL for an ordinary run. */
static const char *trace_run(const char *args, char *file, size_t fn, char *src, size_t sn)
{
    char f[256], so[64];
    int used = 0;
    if (strncmp(args, "--trace ", 8) != 0 ||
        sscanf(args, "--trace %255s --source %63s%n", f, so, &used) != 2 || used <= 0)
        return NULL;
    snprintf(file, fn, "%s", f);
    snprintf(src, sn, "%s", so);
    return args + used + (args[used] == ' ');
}

/* The run's file in DIR: its fixture, or its trace file (copied into DIR
 * from the source tree's fixtures/traces when DIR lacks it; `make install`
 * puts the trace files beside the installed fixtures). */
static int ensure_trace(const char *dir, const char *file)
{
    char path[4096], from[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (stat(path, &sb) == 0)
        return -1;
    snprintf(from, sizeof from, "fixtures/traces/%s", file);
    FILE *in = fopen(from, "rb");
    if (!in)
        return cli_usage_error("suite", "trace file '%s' is missing (neither in DIR nor in "
                               "fixtures/traces)", file);
    lrp_err e = {0};
    lrp_out out;
    if (lrp_out_open(&out, path, &e) != LRP_OK) {
        fclose(in);
        return cli_fail(&e);
    }
    char buf[1 << 15];
    size_t got;
    lrp_status st = LRP_OK;
    while (st == LRP_OK && (got = fread(buf, 1, sizeof buf, in)) > 0)
        st = lrp_out_write(&out, buf, got, &e);
    int bad = ferror(in);
    fclose(in);
    if (st == LRP_OK && bad) {
        lrp_out_abort(&out);
        return cli_usage_error("suite", "cannot read '%s'", from);
    }
    if (st != LRP_OK || (st = lrp_out_commit(&out, &e)) != LRP_OK) {
        lrp_out_abort(&out);
        return cli_fail(&e);
    }
    return -1;
}

static int ensure_fixture(const char *dir, const char *name, char *path, size_t n)
{
    snprintf(path, n, "%s/%s.h5", dir, name);
    struct stat sb;
    if (stat(path, &sb) == 0)
        return -1;
    const lrp_fixture_def *d = lrp_fixture_lookup(name);
    if (!d)
        return cli_usage_error("suite", "no fixture named '%s'", name);
    lrp_net *net = NULL;
    lrp_err e = {0};
    if (d->build(&net, LRP_FIXTURE_SEED, &e) != LRP_OK)
        return cli_fail(&e);
    lrp_status st = lrp_fixture_write(net, path, &e);
    lrp_net_free(net);
    if (st)
        return cli_fail(&e);
    return -1;
}

static void fmt_g(char *b, size_t n, double x)
{
    if (isnan(x))
        snprintf(b, n, "nan");
    else if (isinf(x))
        snprintf(b, n, "inf");
    else
        snprintf(b, n, "%.3g", x);
}

/* "--composite EpsilonPlusFlat --convention signbit" -> "EpsilonPlusFlat
 * conv=signbit", cut to w columns with '~'. */
static void short_rules(char *d, size_t n, const char *rs, int w)
{
    static const char *const from[] = {"--composite ", "--rule ", "--convention ", "--flag ",
                                       "--eps ", "--gamma ", "--alpha ", "--beta ", "--bn ",
                                       "--box ", "--profile ", "--ln ", "--trace ",
                                       "--source ", "--"};
    static const char *const to[] = {"", "", "conv=", "+", "eps=", "gamma=", "alpha=", "beta=",
                                     "bn=", "box=", "profile=", "ln=", "trace=", "src=", ""};
    char buf[256];
    size_t k = 0;
    for (const char *p = rs; *p && k + 1 < sizeof buf;) {
        size_t i;
        for (i = 0; i < sizeof from / sizeof from[0]; i++)
            if (!strncmp(p, from[i], strlen(from[i])) && (p == rs || p[-1] == ' '))
                break;
        if (i < sizeof from / sizeof from[0]) {
            for (const char *t = to[i]; *t && k + 1 < sizeof buf; t++)
                buf[k++] = *t;
            p += strlen(from[i]);
        } else {
            buf[k++] = *p++;
        }
    }
    buf[k] = '\0';
    if ((int)k > w)
        snprintf(d, n, "%.*s~", w - 1, buf);
    else
        snprintf(d, n, "%s", buf);
}

/* A run whose fixture cannot be read or judged: stderr now, an error
 * entry in JSON / JUnit, exit 2 at the end; the other runs go on. */
static void suite_error(lrp_file_error *errs, int *n, const char *path, const char *msg)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(errs[i].file, path))
            return; /* one entry per file, however many runs use it */
    snprintf(errs[*n].file, sizeof errs[*n].file, "%.*s", (int)sizeof errs[*n].file - 1, path);
    snprintf(errs[*n].message, sizeof errs[*n].message, "%s", msg);
    fprintf(stderr, "lrp-oracle: %s\n", msg);
    (*n)++;
}

/* A note under a row: indented 4, wrapped at 100 columns. */
static void wrap_note(const char *text)
{
    int col = 4;
    printf("    ");
    for (const char *p = text; *p;) {
        const char *e = strchr(p, ' ');
        int wl = e ? (int)(e - p) : (int)strlen(p);
        if (col > 4 && col + 1 + wl > 100) {
            printf("\n      ");
            col = 6;
        } else if (col > 4) {
            putchar(' ');
            col++;
        }
        printf("%.*s", wl, p);
        col += wl;
        p += wl;
        while (*p == ' ')
            p++;
    }
    putchar('\n');
}

/* What became of one run of the table: computed on some rank, replayed in
 * table order on rank 0 (tools/cli_mpi.h).  kind: 0 not run here, 1 a
 * report, 2 a file that could not be judged (msg), 3 a fatal error (msg,
 * rc: the loop stops there). */
typedef struct suite_outcome {
    int32_t k, kind, rc;
    char msg[LRP_ERR_MSG_MAX];
} suite_outcome;

/* Which rank runs each run of the table: the runs sorted by their
 * estimated CPU time (tools/limits.c, from the fixture as the registry
 * builds it), the longest first, each to the rank with the least work so
 * far (lowest rank on ties).  The same on every rank; with one rank,
 * everything is rank 0's and nothing is estimated. */
static int *suite_assign(const char *only, int size)
{
    int nr = lrp_suite_run_count;
    int *owner = calloc((size_t)nr, sizeof *owner);
    double *cost = calloc((size_t)nr, sizeof *cost), *load = calloc((size_t)size, sizeof *load);
    int *order = calloc((size_t)nr, sizeof *order);
    if (!owner || !cost || !load || !order) {
        free(owner);
        owner = NULL;
        goto out;
    }
    if (size == 1)
        goto out;
    for (int k = 0; k < nr; k++) {
        const lrp_suite_run *sr = &lrp_suite_runs[k];
        order[k] = k;
        cost[k] = -1; /* not selected */
        if (only && !cli_in_list(only, sr->fixture))
            continue;
        for (int j = 0; j < k; j++) /* the same fixture costs the same */
            if (!strcmp(lrp_suite_runs[j].fixture, sr->fixture) && cost[j] >= 0) {
                cost[k] = cost[j];
                break;
            }
        if (cost[k] >= 0)
            continue;
        cost[k] = 0;
        const lrp_fixture_def *d = lrp_fixture_lookup(sr->fixture);
        lrp_net *net = NULL;
        lrp_err e = {0};
        if (d && d->build(&net, LRP_FIXTURE_SEED, &e) == LRP_OK) {
            cli_estimate_t est;
            cli_estimate(&est, net, CLI_WORK_JUDGE, 128, 1);
            cost[k] = est.cpu_s;
        }
        lrp_net_free(net);
    }
    /* insertion sort, longest first, table order on ties: deterministic */
    for (int i = 1; i < nr; i++)
        for (int j = i; j > 0 && cost[order[j]] > cost[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int i = 0; i < nr; i++) {
        int k = order[i], best = 0;
        if (cost[k] < 0)
            continue;
        for (int r = 1; r < size; r++)
            if (load[r] < load[best])
                best = r;
        owner[k] = best;
        load[best] += cost[k] + 1e-3; /* a run costs something */
    }
out:
    free(cost);
    free(load);
    free(order);
    return owner;
}

/* One run of the table on this rank: the outcome into oc, the report (kind
 * 1) into *rep.  The same steps as a one-process run, in the same order. */
static void suite_compute(suite_outcome *oc, lrp_run_report *rep, const char *dir, int k,
                          const char *html)
{
    const lrp_suite_run *sr = &lrp_suite_runs[k];
    char path[4096], tf[256], ts[64];
    const char *ra = trace_run(sr->args, tf, sizeof tf, ts, sizeof ts);
    if (ra)
        snprintf(path, sizeof path, "%s/%s", dir, tf);
    else
        snprintf(path, sizeof path, "%s/%s.h5", dir, sr->fixture);
    lrp_net *net = NULL;
    lrp_err e = {0};
    oc->k = k;
    cli_load_expect("check", CLI_WORK_JUDGE, 128, 1);
    if (cli_load(&net, path, &e) != LRP_OK) {
        /* a damaged fixture in DIR: an error entry, the other runs go on */
        oc->kind = 2;
        snprintf(oc->msg, sizeof oc->msg, "%s", e.msg);
        return;
    }
    cli_rules o;
    cli_rules_init(&o);
    parse_args(&o, ra ? ra : sr->args); /* checked by every rank before any run */
    int t = ra ? lrp_net_trace_find(net, ts) : -1;
    if (ra && t < 0) {
        lrp_net_free(net);
        oc->kind = 2;
        snprintf(oc->msg, sizeof oc->msg, "%.400s: /traces/%s: no such trace", path, ts);
        return;
    }
    /* compare's rule: the trace's own assignment unless overridden */
    if (t >= 0 && !o.has_rule && !o.has_composite && net->traces[t].rules)
        for (int i = 0; i < net->n_layers; i++)
            net->layers[i].rule = net->traces[t].rules[i];
    char pbuf[LRP_NAME_MAX];
    const char *prof = run_profile(sr->args, pbuf, sizeof pbuf);
    if (cli_rules_apply(net, &o, path, &e) != LRP_OK ||
        (prof && (cli_profile_apply(net, prof, 0) || lrp_net_infer(net, path, &e) != LRP_OK)) ||
        cli_limits_check(net, path, "check", CLI_WORK_JUDGE, o.prec, 1, &e) != LRP_OK) {
        lrp_net_free(net);
        oc->kind = 2;
        snprintf(oc->msg, sizeof oc->msg, "%s", e.msg);
        return;
    }
    lrp_check_opts co;
    lrp_check_opts_default(&co);
    co.label = path;
    co.source = t >= 0 ? net->traces[t].source : NULL;
    co.keep_cells = html ? 1 : 0; /* input heatmaps of the HTML report */
    char rs[160];
    snprintf(rs, sizeof rs, "%s", sr->args[0] ? sr->args : "EpsilonPlus (fixture's)");
    co.ruleset = rs;
    if (cli_isatty(STDERR_FILENO))
        fprintf(stderr, "\r[%d/%d] %s %s ...", k + 1, lrp_suite_run_count, sr->fixture, sr->args);
    struct timespec r0, r1;
    clock_gettime(CLOCK_MONOTONIC, &r0);
    lrp_status st = lrp_check(rep, net, &co, &e);
    clock_gettime(CLOCK_MONOTONIC, &r1);
    rep->seconds = (double)(r1.tv_sec - r0.tv_sec) + 1e-9 * (double)(r1.tv_nsec - r0.tv_nsec);
    if (cli_isatty(STDERR_FILENO))
        fprintf(stderr, "\r\033[K");
    lrp_net_free(net);
    if (st != LRP_OK) {
        lrp_run_report_free(rep);
        memset(rep, 0, sizeof *rep);
        oc->kind = st == LRP_E_NOMEM ? 3 : 2;
        oc->rc = EXIT_USAGE;
        snprintf(oc->msg, sizeof oc->msg, "%s", e.msg);
        return;
    }
    oc->kind = 1;
}

int cmd_suite(int argc, char **argv)
{
    enum { O_DIR = 3000, O_JSON, O_JUNIT, O_NOCOLOR, O_ONLY, O_VERBOSE, O_HTML, O_WIDE, O_EXPLAIN, O_HELP };
    static const struct option opts[] = {{"dir", required_argument, 0, O_DIR},
                                         {"json", required_argument, 0, O_JSON},
                                         {"junit", required_argument, 0, O_JUNIT},
                                         {"no-color", no_argument, 0, O_NOCOLOR},
                                         {"only", required_argument, 0, O_ONLY},
                                         {"verbose", no_argument, 0, O_VERBOSE},
                                         {"html", required_argument, 0, O_HTML},
                                         {"wide", no_argument, 0, O_WIDE},
                                         {"explain", no_argument, 0, O_EXPLAIN},
                                         {"help", no_argument, 0, O_HELP},
                                         {0, 0, 0, 0}};
    static char datadir[2048];
    const char *dir = cli_data_path(datadir, sizeof datadir, "fixtures") ? datadir
                                                                          : "build/fixtures";
    const char *json = NULL, *junit = NULL, *only = NULL, *html = NULL;
    int color = cli_isatty(STDOUT_FILENO) && !getenv("NO_COLOR"), verbose = 0, wide = 0, explain = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_DIR: dir = optarg; break;
        case O_JSON: json = optarg; break;
        case O_JUNIT: junit = optarg; break;
        case O_NOCOLOR: color = 0; break;
        case O_ONLY: only = optarg; break;
        case O_VERBOSE: verbose = 1; break;
        case O_HTML: html = optarg; break;
        case O_WIDE: wide = 1; break;
        case O_EXPLAIN: explain = 1; break;
        case O_HELP:
        case 'h':
            printf("usage: lrp-oracle suite [--dir DIR] [--only F1,F2] [--json F] [--junit F]\n"
                   "                        [--html DIR] [--wide] [--explain] [--verbose]\n"
                   "                        [--no-color]\n\n"
                   "Runs `check` over every fixture of the suite under its rule sets and the\n"
                   "reproductions of real reports (docs/REPRODUCTIONS.md), generating missing\n"
                   "fixtures into DIR (default: the installed fixtures, or build/fixtures in\n"
                   "the source tree).  Prints one table and exits 0\n"
                   "only when every run behaves as documented: within the tolerance table, or\n"
                   "exactly the documented outcome of a reproduction.  --verbose prints each\n"
                   "run's full per-layer report as well; --only keeps the runs of the listed\n"
                   "fixtures.  A reproduction run \"--trace FILE --source S\" compares a\n"
                   "committed trace file (fixtures/traces, copied into DIR) instead of checking\n"
                   "our fast path.  A fixture file that cannot be read is reported (stderr, and as an\n"
                   "error in JSON / JUnit / HTML), the other runs go on, and the exit code is 2.\n"
                   "The table fits 100 columns; --wide adds the convention, input relevance and\n"
                   "growth columns and keeps notes on the row; --explain prints the legend of\n"
                   "every number.\n");
            return EXIT_OK;
        default: return cli_usage_error("suite", "unknown option '%s'", argv[optind - 1]);
        }
    }
    int rank = cli_mpi_rank(), size = cli_mpi_size();
    int rc = -1;
    /* rank 0 alone writes into DIR: the missing fixtures first, then the
     * runs (spread over the ranks under MPI) */
    if (rank == 0 && mkdir(dir, 0777) && errno != EEXIST)
        rc = cli_usage_error("suite", "cannot create '%s'", dir);
    for (int k = 0; rc < 0 && rank == 0 && k < lrp_suite_run_count; k++) {
        const lrp_suite_run *sr = &lrp_suite_runs[k];
        char path[4096];
        char tf[256], ts[64];
        if (!only || cli_in_list(only, sr->fixture))
            rc = ensure_fixture(dir, sr->fixture, path, sizeof path);
        if (rc < 0 && (!only || cli_in_list(only, sr->fixture)) &&
            trace_run(sr->args, tf, sizeof tf, ts, sizeof ts))
            rc = ensure_trace(dir, tf);
    }
    /* the table's own arguments and documented outcomes, once, before any
     * run (every rank parses the same table) */
    for (int k = 0; rc < 0 && k < lrp_suite_run_count; k++) {
        const lrp_suite_run *sr = &lrp_suite_runs[k];
        cli_rules o;
        lrp_verdict v;
        cli_rules_init(&o);
        if (only && !cli_in_list(only, sr->fixture))
            continue;
        char tf[256], ts[64];
        const char *ra = trace_run(sr->args, tf, sizeof tf, ts, sizeof ts);
        if ((rc = parse_args(&o, ra ? ra : sr->args)) != 0)
            break;
        rc = -1;
        if (sr->expect && lrp_verdict_parse(sr->expect, &v))
            rc = cli_usage_error("suite", "bad expected verdict '%s'", sr->expect);
    }
    if ((rc = cli_mpi_agree(rc)) >= 0)
        return rc;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int nr = lrp_suite_run_count;
    lrp_run_report *runs = calloc((size_t)nr, sizeof *runs);
    lrp_file_error *errs = calloc((size_t)nr, sizeof *errs);
    suite_outcome *ocs = calloc((size_t)nr, sizeof *ocs);
    int *owner = suite_assign(only, size);
    int n_errs = 0, n_skipped = 0;
    if (!runs || !errs || !ocs || !owner)
        rc = cli_usage_error("suite", "%s", "out of memory");
    if ((rc = cli_mpi_agree(rc)) >= 0) {
        free(runs);
        free(errs);
        free(ocs);
        free(owner);
        return rc;
    }
    /* this rank's runs, in table order; each outcome indexed by its run */
    cli_bytes mine = {0};
    for (int k = 0; k < nr; k++) {
        if (owner[k] != rank || (only && !cli_in_list(only, lrp_suite_runs[k].fixture)))
            continue;
        lrp_run_report rep;
        memset(&rep, 0, sizeof rep);
        suite_outcome oc;
        memset(&oc, 0, sizeof oc);
        suite_compute(&oc, &rep, dir, k, html);
        if (size == 1) {
            ocs[k] = oc;
            runs[k] = rep;
            continue;
        }
        cli_bytes_put(&mine, &oc, sizeof oc);
        if (oc.kind == 1)
            cli_report_pack(&mine, &rep);
        lrp_run_report_free(&rep);
    }
    if (size > 1) {
        void *all = NULL;
        size_t total = 0;
        rc = mine.oom ? cli_usage_error("suite", "%s", "out of memory") : -1;
        if ((rc = cli_mpi_agree(rc)) < 0)
            rc = cli_mpi_gather(mine.p, mine.n, &all, &total);
        cli_bytes_free(&mine);
        for (size_t pos = 0; rc < 0 && rank == 0 && pos < total;) {
            suite_outcome oc;
            lrp_run_report rep;
            memset(&rep, 0, sizeof rep);
            if (total - pos < sizeof oc) {
                rc = cli_usage_error("suite", "%s", "damaged results from a rank");
                break;
            }
            memcpy(&oc, (char *)all + pos, sizeof oc);
            pos += sizeof oc;
            if (oc.k < 0 || oc.k >= nr ||
                (oc.kind == 1 && cli_report_unpack(&rep, all, total, &pos))) {
                rc = cli_usage_error("suite", "%s", "damaged results from a rank");
                break;
            }
            ocs[oc.k] = oc;
            runs[oc.k] = rep;
        }
        free(all);
        if (rank > 0 || rc >= 0) {
            for (int k = 0; k < nr; k++)
                lrp_run_report_free(&runs[k]);
            free(runs);
            free(errs);
            free(ocs);
            free(owner);
            return rc < 0 ? EXIT_OK : rc;
        }
    }
    free(owner);
    /* rank 0: the table, in table order, as one process prints it */
    int n = 0, bad = 0, n_pass = 0, n_ill = 0, n_expected = 0;
    const char *reset = color ? "\033[0m" : "";
    /* ratio: end to end to the sharp bound; local: the trace-local one */
    if (wide)
        printf("%-13s %-58s %-10s %-16s %-16s %8s %8s %9s %11s %9s  %s\n", "fixture", "rules",
               "conv", "verdict", "documented", "ratio", "local", "cons f32", "sum R_in", "growth",
               "notes");
    else
        printf("%-12s %-28s %-15s %-15s %8s %8s %8s\n", "fixture", "rules", "verdict",
               "documented", "ratio", "local", "cons f32");
    for (int k = 0; k < nr; k++) {
        const lrp_suite_run *sr = &lrp_suite_runs[k];
        if (only && !cli_in_list(only, sr->fixture))
            continue;
        char path[4096], tf[256], ts[64];
        if (trace_run(sr->args, tf, sizeof tf, ts, sizeof ts))
            snprintf(path, sizeof path, "%s/%s", dir, tf);
        else
            snprintf(path, sizeof path, "%s/%s.h5", dir, sr->fixture);
        suite_outcome *oc = &ocs[k];
        if (oc->kind == 2) {
            suite_error(errs, &n_errs, path, oc->msg);
            n_skipped++;
            continue;
        }
        if (oc->kind == 3) {
            fprintf(stderr, "lrp-oracle: %s\n", oc->msg);
            rc = oc->rc;
            break;
        }
        if (oc->kind != 1)
            continue;
        if (n != k)
            runs[n] = runs[k]; /* the reports of the runs made, packed */
        if (n != k)
            memset(&runs[k], 0, sizeof runs[k]);
        lrp_run_report *r = &runs[n++];
        char rs[160];
        snprintf(rs, sizeof rs, "%s", sr->args[0] ? sr->args : "EpsilonPlus (fixture's)");
        if (sr->expect) {
            lrp_verdict v;
            lrp_verdict_parse(sr->expect, &v); /* checked above */
            r->has_expect = 1;
            r->expect = v;
            r->expected_ok = r->verdict == v;
        }
        int ok = lrp_run_ok(r);
        bad += !ok;
        if (ok && r->has_expect && r->verdict != LRP_V_PASS && r->verdict != LRP_V_ILL_CONDITIONED)
            n_expected++;
        else if (ok && r->verdict == LRP_V_ILL_CONDITIONED)
            n_ill++;
        else if (ok)
            n_pass++;
        char ratio[32], lratio[32], cons[32], sin[32], gr[32], notes[700];
        fmt_g(ratio, sizeof ratio, r->max_sharp_ratio);
        fmt_g(lratio, sizeof lratio, r->max_tlocal_ratio);
        fmt_g(cons, sizeof cons, r->max_cons_f32);
        snprintf(sin, sizeof sin, "%.6g", r->sum_input_ref);
        fmt_g(gr, sizeof gr, r->growth);
        notes[0] = '\0';
        if (sr->repro)
            snprintf(notes, sizeof notes, "[%s] ", sr->repro);
        size_t len = strlen(notes);
        if (r->nf_layer >= 0)
            snprintf(notes + len, sizeof notes - len, "first NaN/inf at '%s' cell %lld, %s",
                     r->layers[r->nf_layer].name, (long long)r->nf_index, r->nf_cause);
        else if (r->neg_den > 0)
            snprintf(notes + len, sizeof notes - len, "%lld negative z+ denominators (first in '%s')",
                     (long long)r->neg_den, r->layers[r->neg_den_layer].name);
        const char *vc = "";
        if (color)
            vc = ok ? "\033[32m" : "\033[31m";
        char rules[60];
        snprintf(rules, sizeof rules, "%.59s", rs);
        if (wide) {
            printf("%-13s %-58s %-10s %s%-16s%s %-16s %8s %8s %9s %11s %9s  %s\n", sr->fixture,
                   rules, r->convention, vc, lrp_verdict_name(r->verdict), reset,
                   sr->expect ? sr->expect : "within tol.", ratio, lratio, cons, sin, gr, notes);
        } else {
            /* 100 columns: the rule text without option dashes, a longer
             * one ends in '~' (--wide: all of it) */
            char rshort[40];
            short_rules(rshort, sizeof rshort, rs, 28);
            printf("%-12.12s %-28s %s%-15s%s %-15s %8s %8s %8s\n", sr->fixture, rshort, vc,
                   lrp_verdict_name(r->verdict), reset, sr->expect ? sr->expect : "within tol.",
                   ratio, lratio, cons);
            if (notes[0])
                wrap_note(notes);
        }
        if (verbose || !ok) {
            lrp_text_opts to = {color, 0, wide};
            lrp_report_text_ex(stdout, r, &to);
            printf("\n");
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (rc < 0) {
        lrp_err e = {0};
        if (json && lrp_report_json_ex(json, runs, n, errs, n_errs, &e) != LRP_OK)
            rc = cli_fail(&e);
        else if (junit && lrp_report_junit_ex(junit, runs, n, errs, n_errs, &e) != LRP_OK)
            rc = cli_fail(&e);
        if (rc < 0 && html) {
            cli_html *h = cli_html_new();
            if (!h)
                rc = cli_usage_error("suite", "%s", "out of memory");
            for (int i = 0; h && i < n; i++)
                cli_html_run(h, &runs[i], NULL);
            if (h && n_errs) {
                static const char *head[2] = {"file", "error"};
                const char *cells[2 * 64];
                int ne = n_errs < 64 ? n_errs : 64;
                for (int i = 0; i < ne; i++) {
                    cells[2 * i] = errs[i].file;
                    cells[2 * i + 1] = errs[i].message;
                }
                cli_html_table(h, "fixtures that could not be judged", 2, head, cells, ne);
            }
            if (h)
                rc = cli_html_write(h, html, "lrp-oracle suite");
            cli_html_free(h);
        }
    }
    if (rc < 0) {
        if (explain) {
            printf("\n");
            lrp_report_legend(stdout);
        }
        printf("\nsuite: %d runs in %.1f s: %d pass, %d ill-conditioned, %d documented failures, "
               "%d not as documented\n",
               n, secs, n_pass, n_ill, n_expected, bad);
        if (n_errs)
            printf("suite: %d runs not made: %d fixture files could not be read (exit 2)\n",
                   n_skipped, n_errs);
        rc = n_errs ? EXIT_USAGE : bad ? EXIT_CHECK_FAILED : EXIT_OK;
    }
    for (int i = 0; i < nr; i++) /* packed ones, and any after a fatal error */
        lrp_run_report_free(&runs[i]);
    free(runs);
    free(errs);
    free(ocs);
    return rc;
}
