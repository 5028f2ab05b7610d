/*
 * lrp_oracle.c -- the `lrp-oracle` command line.
 *
 * Exit codes (documented in README.md and `lrp-oracle --help`):
 *   0  success (for check/compare: every verdict within tolerance or expected)
 *   1  a check failed
 *   2  usage error or bad input (unreadable / malformed / invalid file)
 * Every error is one line on stderr: "lrp-oracle: FILE: OBJECT: problem".
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fixtures.h"
#include "cli_mpi.h"
#include "kinds.h"

/* ---- shared helpers ---- */

/* 1 when name is one of the comma-separated list. */
int cli_in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, name, n))
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

int cli_fail(const lrp_err *e)
{
    cli_progress_erase();
    fprintf(stderr, "lrp-oracle: %s\n", e->msg);
    return e->code == LRP_OK ? 0 : EXIT_USAGE;
}

int cli_usage_error(const char *cmd, const char *fmt, const char *arg)
{
    cli_progress_erase();
    fprintf(stderr, "lrp-oracle %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see 'lrp-oracle %s --help')\n", cmd);
    return EXIT_USAGE;
}

/* Parses a binary32 parameter: decimal or hex-float, finite.  A value in
 * the subnormal range is accepted (rounded like any decimal: strtof reports
 * ERANGE for it, which is not an error); one that rounds to zero from a
 * nonzero text, or overflows, is refused. */
int cli_parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end || !isfinite(v))
        return -1;
    if (errno == ERANGE && v == 0.0f && strtod(s, NULL) != 0.0)
        return -1;
    *out = v;
    return 0;
}

void cli_rule_str(char *buf, size_t n, const lrp_rule_spec *r)
{
    int k = snprintf(buf, n, "%s", lrp_rule_name(r->rule));
#define ADD(...)                                                     \
    do {                                                             \
        if (k >= 0 && (size_t)k < n)                                 \
            k += snprintf(buf + k, n - (size_t)k, __VA_ARGS__);      \
    } while (0)
    switch (r->rule) {
    case LRP_RULE_GAMMA: ADD(" gamma=%g", (double)r->gamma); break;
    case LRP_RULE_ALPHABETA: ADD(" alpha=%g beta=%g", (double)r->alpha, (double)r->beta); break;
    case LRP_RULE_ZBOX: ADD(" box=[%g,%g]", (double)r->low, (double)r->high); break;
    default: break;
    }
    /* identity divides only with an eps (LXT's implicit identity on an
     * activation, x R / stab(x)): then its eps and convention are shown */
    if (r->rule != LRP_RULE_PASS && r->rule != LRP_RULE_WTA &&
        (r->rule != LRP_RULE_IDENTITY || r->eps != 0.0f)) {
        if (r->eps != 0.0f)
            ADD(" eps=%g", (double)r->eps);
        ADD(" %s", lrp_stab_name(r->stab));
        if (!r->bias)
            ADD(" no-bias");
    }
    for (unsigned f = 1; f <= LRP_F_ALL_MASK; f <<= 1)
        if (r->flags & f)
            ADD(" +%s", lrp_flag_name(f));
#undef ADD
}

/* ---- info ---- */

static void layer_geometry(char *buf, size_t n, const lrp_net *net, const lrp_layer *l)
{
    const lrp_kind_desc *kd = lrp_kind(l->kind);
    buf[0] = '\0';
    if (kd->geometry)
        kd->geometry(buf, n, l);
    (void)net;
}

static int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, {"wide", no_argument, 0, 'w'}, {0, 0, 0, 0}};
    int c, wide = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'w') {
            wide = 1;
            continue;
        }
        if (c == 'h') {
            printf("usage: lrp-oracle info [--wide] FILE...\n\n"
                   "Prints each fixture's network (layers, inputs, output shapes, parameter\n"
                   "counts, multiply-accumulates per sample), its rule assignment, its data and\n"
                   "the relevance traces it holds.  The table fits 100 columns (geometry and\n"
                   "rule on a line of their own); --wide prints one line per layer.\n");
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    if (optind >= argc)
        return cli_usage_error("info", "%s", "missing FILE");
    for (int a = optind; a < argc; a++) {
        lrp_net *net = NULL;
        lrp_err e = {0};
        int *trace_layers = NULL;
        /* the structure alone: every array is checked in the sandboxed
         * child, none is printed, so none is handed over */
        if (cli_load_ex(&net, argv[a], 0, &trace_layers, &e) != LRP_OK)
            return cli_fail(&e);
        char eb[4][1024]; /* names from the file, made safe for a terminal */
        printf("%s\n", lrp_str_esc(eb[0], sizeof eb[0], argv[a]));
        if (net->description[0])
            printf("  %s\n", lrp_str_esc(eb[0], sizeof eb[0], net->description));
        printf("  layout NCHW (flatten order C,H,W), batch %d, seed %" PRIu64 ", composite %s\n\n",
               net->batch, net->seed,
               net->composite[0] ? lrp_str_esc(eb[0], sizeof eb[0], net->composite) : "(per-layer)");
        if (wide)
            printf("  %3s  %-14s %-13s %-36s %-16s %10s %12s  %s\n", "#", "layer", "kind",
                   "geometry", "output", "params", "MACs", "rule");
        else
            printf("  %3s  %-14s %-13s %-16s %12s %14s\n", "#", "layer", "kind", "output", "params",
                   "MACs");
        int64_t tp = 0, tm = 0;
        for (int i = 0; i < net->n_layers; i++) {
            const lrp_layer *l = &net->layers[i];
            char geo[96], shp[64], rule[160], ins[160];
            layer_geometry(geo, sizeof geo, net, l);
            lrp_shape_str(shp, sizeof shp, &l->shape);
            cli_rule_str(rule, sizeof rule, &l->rule);
            int64_t p = lrp_layer_param_count(net, i), m = lrp_layer_macs(net, i);
            tp += p;
            tm += m;
            ins[0] = '\0';
            for (int k = 0; k < l->n_in; k++) {
                size_t len = strlen(ins);
                snprintf(ins + len, sizeof ins - len, "%s%s", k ? "," : "<- ",
                         lrp_str_esc(eb[1], sizeof eb[1], net->layers[l->in[k]].name));
            }
            if (wide) {
                printf("  %3d  %-14s %-13s %-36s %-16s %10" PRId64 " %12" PRId64 "  %s\n", i,
                       lrp_str_esc(eb[0], sizeof eb[0], l->name), lrp_layer_kind_name(l->kind),
                       geo, shp, p, m, rule);
            } else {
                printf("  %3d  %-14s %-13s %-16s %12" PRId64 " %14" PRId64 "\n", i,
                       lrp_str_esc(eb[0], sizeof eb[0], l->name), lrp_layer_kind_name(l->kind),
                       shp, p, m);
                /* geometry and rule below, cut to the 100 columns */
                char sub[300];
                snprintf(sub, sizeof sub, "%s%s%s", geo, geo[0] ? "; " : "", rule);
                printf("  %3s  %.93s\n", "", sub);
            }
            if (l->n_in > 1 || (l->n_in == 1 && l->in[0] != i - 1))
                printf("  %3s  %-14s %s\n", "", "", ins);
        }
        printf("\n  total: %" PRId64 " parameters, %" PRId64 " MACs per sample\n", tp, tm);
        char ishp[64];
        lrp_shape_str(ishp, sizeof ishp, &net->layers[0].shape);
        printf("  data: input %s x batch %d, %s\n", ishp, net->batch,
               net->r_out ? "explicit output relevance" : "target class per sample");
        if (net->n_traces == 0)
            printf("  traces: none\n");
        for (int t = 0; t < net->n_traces; t++) {
            const lrp_trace *tr = &net->traces[t];
            int have = trace_layers[t];
            printf("  trace '%s': %d/%d layers, precision %d, producer '%s'%s%s%s%s\n",
                   lrp_str_esc(eb[0], sizeof eb[0], tr->source), have, tr->n_layers,
                   tr->precision, lrp_str_esc(eb[1], sizeof eb[1], tr->producer),
                   tr->profile[0] ? ", profile " : "", lrp_str_esc(eb[2], sizeof eb[2], tr->profile),
                   tr->composite[0] ? ", composite " : "",
                   lrp_str_esc(eb[3], sizeof eb[3], tr->composite));
        }
        if (a + 1 < argc)
            printf("\n");
        free(trace_layers);
        lrp_net_free(net);
    }
    return EXIT_OK;
}

/* ---- gen ---- */

static int mkdir_p(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -1;
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0777) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    if (mkdir(tmp, 0777) && errno != EEXIST)
        return -1;
    return 0;
}

static int cmd_gen(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"seed", required_argument, 0, 's'},
                                         {"list", no_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *outdir = "build/fixtures";
    uint64_t seed = LRP_FIXTURE_SEED;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:s:lh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': outdir = optarg; break;
        case 's': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 0);
            if (end == optarg || *end || errno || optarg[0] == '-')
                return cli_usage_error("gen", "--seed '%s' is not an unsigned integer", optarg);
            seed = v;
            break;
        }
        case 'l':
            for (int i = 0; i < lrp_fixture_count; i++)
                printf("%-12s %s\n", lrp_fixture_defs[i].name, lrp_fixture_defs[i].description);
            return EXIT_OK;
        case 'h':
            printf("usage: lrp-oracle gen [--out DIR] [--seed N] [--list] [NAME...]\n\n"
                   "Writes the named fixtures (default: all) as DIR/NAME.h5 (default DIR:\n"
                   "build/fixtures).  Each is a pure function of the seed (default %" PRIu64 "):\n"
                   "the same seed gives byte-identical files.\n",
                   (uint64_t)LRP_FIXTURE_SEED);
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (mkdir_p(outdir))
        return cli_usage_error("gen", "cannot create output directory '%s'", outdir);
    int first = optind, last = argc;
    for (int k = 0; k < (first < last ? last - first : lrp_fixture_count); k++) {
        const lrp_fixture_def *d =
            first < last ? lrp_fixture_lookup(argv[first + k]) : &lrp_fixture_defs[k];
        if (!d)
            return cli_usage_error("gen", "unknown fixture '%s' (try --list)", argv[first + k]);
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s.h5", outdir, d->name) >= (int)sizeof path)
            return cli_usage_error("gen", "output path too long: '%s'", outdir);
        lrp_net *net = NULL;
        lrp_err e = {0};
        if (d->build(&net, seed, &e) != LRP_OK)
            return cli_fail(&e);
        lrp_status st = lrp_fixture_write(net, path, &e);
        lrp_net_free(net);
        if (st != LRP_OK)
            return cli_fail(&e);
        printf("wrote %s\n", path);
    }
    return EXIT_OK;
}

/* ---- dispatch ---- */

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command commands[] = {
    {"info", cmd_info, "print a fixture's network, shapes, costs, rules and traces"},
    {"gen", cmd_gen, "write the deterministic fixture networks"},
    {"suite", cmd_suite, "the oracle over the whole fixture suite (make run)"},
    {"golden", cmd_golden, "judge the fast path against committed golden traces (no MPFR)"},
    {"check", cmd_check, "reference + fast path + verdicts, layer by layer"},
    {"compare", cmd_compare, "judge another implementation's trace against the reference"},
    {"heatmap", cmd_heatmap, "PNG heatmaps: reference, trace and error in units of the bound"},
    {"trace", cmd_trace, "min/max/NaN/inf per layer, reference and float32 side by side"},
    {"reference", cmd_reference, "store the MPFR reference relevance as a trace"},
    {"fast", cmd_fast, "store the float32 fast-path relevance as a trace"},
    {"import-keras", cmd_import_keras, "convert a Keras .h5 model into a fixture (sandboxed)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: lrp-oracle COMMAND [OPTIONS] [FILE...]\n\n"
               "A test oracle for Layer-wise Relevance Propagation: an MPFR reference of every\n"
               "LRP rule, a float32 fast path, and verdicts comparing float32 traces with it.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'lrp-oracle COMMAND --help' describes one command.\n\n"
               "exit codes: 0 success; 1 a check failed; 2 usage error or bad input file\n");
}

/* Commands that spread their work over MPI ranks (tools/cli_mpi.h); any
 * other runs on rank 0 alone while the others wait. */
static int distributed(const char *name)
{
    return cli_in_list("suite,reference,fast,check,compare", name);
}

static int run_command(int argc, char **argv)
{
    if (cli_mpi_rank() > 0 && (argc < 2 || !distributed(argv[1])))
        return EXIT_OK;
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "help") && argc > 2) {
        /* `help CMD` is `CMD --help` */
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (!strcmp(argv[2], commands[i].name)) {
                char *hargv[] = {argv[2], "--help", NULL};
                return commands[i].fn(2, hargv);
            }
        fprintf(stderr, "lrp-oracle: help: unknown command '%s' (see 'lrp-oracle --help')\n",
                argv[2]);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("lrp-oracle %s (fixture format %d)\n", LRP_VERSION_STRING, LRP_FORMAT_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "lrp-oracle: unknown command '%s' (see 'lrp-oracle --help')\n", argv[1]);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    cli_hugepages_reexec(argv); /* tools/hugepages.c */
    cli_mpi_init(&argc, &argv);
    return cli_mpi_finish(run_command(argc, argv));
}
