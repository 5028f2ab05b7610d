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
#include "fixtures.h"
#include "html.h"

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
                                       "--box ", "--profile ", "--"};
    static const char *const to[] = {"", "", "conv=", "+", "eps=", "gamma=", "alpha=", "beta=",
                                     "bn=", "box=", "profile=", ""};
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
    snprintf(errs[*n].file, sizeof errs[*n].file, "%s", path);
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
    int color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR"), verbose = 0, wide = 0, explain = 0, c;
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
                   "fixtures.  A fixture file that cannot be read is reported (stderr, and as an\n"
                   "error in JSON / JUnit / HTML), the other runs go on, and the exit code is 2.\n"
                   "The table fits 100 columns; --wide adds the convention, input relevance and\n"
                   "growth columns and keeps notes on the row; --explain prints the legend of\n"
                   "every number.\n");
            return EXIT_OK;
        default: return cli_usage_error("suite", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (mkdir(dir, 0777) && errno != EEXIST)
        return cli_usage_error("suite", "cannot create '%s'", dir);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lrp_run_report *runs = calloc((size_t)lrp_suite_run_count, sizeof *runs);
    lrp_file_error *errs = calloc((size_t)lrp_suite_run_count, sizeof *errs);
    int n_errs = 0, n_skipped = 0;
    if (!runs || !errs) {
        free(runs);
        free(errs);
        return cli_usage_error("suite", "%s", "out of memory");
    }
    int n = 0, bad = 0, n_pass = 0, n_ill = 0, n_expected = 0, rc = -1;
    const char *reset = color ? "\033[0m" : "";
    /* ratio: end to end to the sharp bound; local: the trace-local one */
    if (wide)
        printf("%-13s %-58s %-10s %-16s %-16s %8s %8s %9s %11s %9s  %s\n", "fixture", "rules",
               "conv", "verdict", "documented", "ratio", "local", "cons f32", "sum R_in", "growth",
               "notes");
    else
        printf("%-12s %-28s %-15s %-15s %8s %8s %8s\n", "fixture", "rules", "verdict",
               "documented", "ratio", "local", "cons f32");
    for (int k = 0; k < lrp_suite_run_count; k++) {
        const lrp_suite_run *sr = &lrp_suite_runs[k];
        if (only && !cli_in_list(only, sr->fixture))
            continue;
        char path[4096];
        if ((rc = ensure_fixture(dir, sr->fixture, path, sizeof path)) >= 0)
            break;
        lrp_net *net = NULL;
        lrp_err e = {0};
        cli_load_expect("check", CLI_WORK_JUDGE, 128, 1);
        if (cli_load(&net, path, &e) != LRP_OK) {
            /* a damaged fixture in DIR: an error entry, the other runs go on */
            suite_error(errs, &n_errs, path, e.msg);
            n_skipped++;
            continue;
        }
        cli_rules o;
        cli_rules_init(&o);
        if ((rc = parse_args(&o, sr->args)) != 0) {
            lrp_net_free(net);
            break;
        }
        rc = -1;
        if (cli_rules_apply(net, &o, path, &e) != LRP_OK ||
            cli_limits_check(net, path, "check", CLI_WORK_JUDGE, o.prec, 1, &e) != LRP_OK) {
            lrp_net_free(net);
            suite_error(errs, &n_errs, path, e.msg);
            n_skipped++;
            continue;
        }
        lrp_check_opts co;
        lrp_check_opts_default(&co);
        co.label = path;
        co.keep_cells = html ? 1 : 0; /* input heatmaps of the HTML report */
        char rs[160];
        snprintf(rs, sizeof rs, "%s", sr->args[0] ? sr->args : "EpsilonPlus (fixture's)");
        co.ruleset = rs;
        if (isatty(STDERR_FILENO))
            fprintf(stderr, "\r[%d/%d] %s %s ...", k + 1, lrp_suite_run_count, sr->fixture, sr->args);
        struct timespec r0, r1;
        clock_gettime(CLOCK_MONOTONIC, &r0);
        lrp_status st = lrp_check(&runs[n], net, &co, &e);
        clock_gettime(CLOCK_MONOTONIC, &r1);
        runs[n].seconds =
            (double)(r1.tv_sec - r0.tv_sec) + 1e-9 * (double)(r1.tv_nsec - r0.tv_nsec);
        if (isatty(STDERR_FILENO))
            fprintf(stderr, "\r\033[K");
        lrp_net_free(net);
        if (st != LRP_OK) {
            lrp_run_report_free(&runs[n]);
            if (st == LRP_E_NOMEM) {
                rc = cli_fail(&e);
                break;
            }
            suite_error(errs, &n_errs, path, e.msg);
            n_skipped++;
            continue;
        }
        lrp_run_report *r = &runs[n++];
        if (sr->expect) {
            lrp_verdict v;
            if (lrp_verdict_parse(sr->expect, &v)) {
                rc = cli_usage_error("suite", "bad expected verdict '%s'", sr->expect);
                break;
            }
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
    for (int i = 0; i < n; i++)
        lrp_run_report_free(&runs[i]);
    free(runs);
    free(errs);
    return rc;
}
