/*
 * cmd_heatmap.c -- `lrp-oracle heatmap FILE... --out DIR`: PNG heatmaps of
 * the reference relevance, the judged trace's (or our fast path's) and
 * their signed difference in units of the oracle's bound, per sample, at
 * the input or at the layers asked for (tools/heatmap.c draws them).
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "heatmap.h"
#include "safeout.h"

static const char *help =
    "usage: lrp-oracle heatmap [rule options] FILE... --out DIR [--source NAME]\n"
    "                          [--layers all|NAME,...] [--samples N] [--no-proof]\n\n"
    "Judges FILE as `check` does (or, with --source, its trace NAME as `compare`\n"
    "does) and writes one PNG per sample and tensor into DIR (created if\n"
    "missing), named FIXTURE_TENSOR_sN.png: the reference relevance, the\n"
    "judged relevance beside it (same symmetric blue-white-red scale), and the\n"
    "signed error (got - ref) / bound in units of the oracle's bound (sharp\n"
    "tier).  Spatial tensors are summed over channels.  Marked cells: black\n"
    "NaN/inf, green undefined reference, orange ill-conditioned, magenta\n"
    "unresolved at p.\n\n"
    "  --out DIR          output directory (required)\n"
    "  --source NAME      draw trace NAME of FILE instead of our fast path\n"
    "  --layers L         the input relevance (default), 'all' tensors, or a\n"
    "                     comma-separated list of tensor names\n"
    "  --samples N        the first N samples (default: all, at most 64)\n"
    "  --no-proof         skip the reference's self-proof at p+64\n";

static void sanitize_name(char *dst, size_t n, const char *src)
{
    size_t k = 0;
    for (; *src && k + 1 < n; src++)
        dst[k++] = (char)((*src >= 'a' && *src <= 'z') || (*src >= 'A' && *src <= 'Z') ||
                                  (*src >= '0' && *src <= '9') || *src == '-' || *src == '_'
                              ? *src
                              : '_');
    dst[k] = '\0';
}

/* The fixture's name without directory and .h5. */
static void stem(char *dst, size_t n, const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", b);
    size_t l = strlen(tmp);
    if (l > 3 && !strcmp(tmp + l - 3, ".h5"))
        tmp[l - 3] = '\0';
    sanitize_name(dst, n, tmp);
}

int cli_write_bytes(const char *path, const void *data, size_t n)
{
    lrp_out o;
    lrp_err e = {0};
    if (lrp_out_open(&o, path, &e) || lrp_out_write(&o, data, n, &e) ||
        lrp_out_commit(&o, &e)) {
        lrp_out_abort(&o);
        return cli_fail(&e);
    }
    return -1;
}

int cli_heatmaps(const char *dir, const char *fixture_path, const lrp_run_report *r,
                 const char *layers, int max_samples, char ***written, int *n_written)
{
    char fx[128];
    stem(fx, sizeof fx, fixture_path);
    int ns = r->batch < max_samples ? r->batch : max_samples;
    int any = 0;
    for (int i = 0; i < r->n_layers; i++) {
        const lrp_layer_report *l = &r->layers[i];
        if (!(layers ? (!strcmp(layers, "all") || cli_in_list(layers, l->name)) : i == 0))
            continue;
        if (!l->cell_ref)
            continue;
        any = 1;
        char ln[LRP_NAME_MAX];
        sanitize_name(ln, sizeof ln, l->name);
        for (int b = 0; b < ns; b++) {
            unsigned char *png = NULL;
            size_t len = 0;
            lrp_err e = {0};
            if (lrp_heatmap_png(&png, &len, r, i, b, &e))
                return cli_fail(&e);
            char path[4096];
            snprintf(path, sizeof path, "%s/%s_%s_s%d.png", dir, fx, ln, b);
            int rc = cli_write_bytes(path, png, len);
            free(png);
            if (rc >= 0)
                return rc;
            if (written) {
                char **w = realloc(*written, (size_t)(*n_written + 1) * sizeof *w);
                if (!w)
                    return cli_usage_error("heatmap", "%s", "out of memory");
                *written = w;
                w[(*n_written)++] = strdup(path);
            } else {
                printf("wrote %s\n", path);
            }
        }
    }
    if (!any)
        return cli_usage_error("heatmap", "no tensor of '%s' matches --layers (or the trace "
                               "holds none of them)", layers ? layers : "input");
    return -1;
}

int cmd_heatmap(int argc, char **argv)
{
    enum { O_OUT = 4000, O_SOURCE, O_LAYERS, O_SAMPLES, O_NOPROOF, O_NOCOLOR, O_HELP };
    static const struct option opts[] = {CLI_RULE_OPTIONS,
                                         {"out", required_argument, 0, O_OUT},
                                         {"source", required_argument, 0, O_SOURCE},
                                         {"layers", required_argument, 0, O_LAYERS},
                                         {"samples", required_argument, 0, O_SAMPLES},
                                         {"no-proof", no_argument, 0, O_NOPROOF},
                                         {"no-color", no_argument, 0, O_NOCOLOR},
                                         {"help", no_argument, 0, O_HELP},
                                         {0, 0, 0, 0}};
    cli_rules ro;
    cli_rules_init(&ro);
    const char *out = NULL, *source = NULL, *layers = NULL;
    int samples = 64, proof = 1, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c >= 1000 && c < 1100) {
            if (cli_rules_option(&ro, opts[c - 1000].name, optarg, "heatmap"))
                return EXIT_USAGE;
            continue;
        }
        switch (c) {
        case O_OUT: out = optarg; break;
        case O_SOURCE: source = optarg; break;
        case O_LAYERS: layers = optarg; break;
        case O_SAMPLES: {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (!end || *end || v < 1 || v > 4096)
                return cli_usage_error("heatmap", "--samples wants an integer in [1, 4096], got '%s'",
                                       optarg);
            samples = (int)v;
            break;
        }
        case O_NOPROOF: proof = 0; break;
        case O_NOCOLOR: break;
        case 'h':
        case O_HELP: printf("%s\n%s", help, CLI_RULE_HELP); return EXIT_OK;
        default:
            return cli_usage_error("heatmap", "unknown or incomplete option '%s'",
                                   argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error("heatmap", "%s", "missing FILE");
    if (!out)
        return cli_usage_error("heatmap", "%s", "needs --out DIR");
    if (mkdir(out, 0777) && errno != EEXIST)
        return cli_usage_error("heatmap", "cannot create output directory '%s'", out);
    struct stat sb;
    if (stat(out, &sb) || !S_ISDIR(sb.st_mode))
        return cli_usage_error("heatmap", "--out '%s' is not a directory", out);
    int all_ok = 1;
    for (int a = optind; a < argc; a++) {
        const char *path = argv[a];
        lrp_net *net = NULL;
        lrp_err e = {0};
        if (cli_load(&net, path, &e) != LRP_OK)
            return cli_fail(&e);
        if (cli_rules_apply(net, &ro, path, &e) != LRP_OK) {
            lrp_net_free(net);
            return cli_fail(&e);
        }
        if (source) {
            int t = lrp_net_trace_find(net, source);
            if (t < 0) {
                fprintf(stderr, "lrp-oracle: %s: /traces/%s: no such trace\n", path, source);
                lrp_net_free(net);
                return EXIT_USAGE;
            }
            if (!ro.has_rule && !ro.has_composite && net->traces[t].rules)
                for (int i = 0; i < net->n_layers; i++)
                    net->layers[i].rule = net->traces[t].rules[i];
        }
        if (layers && strcmp(layers, "all")) {
            /* every name asked for must exist: a typo is an error, not an
             * empty directory */
            char *dup = strdup(layers), *save = NULL;
            for (char *tok = dup ? strtok_r(dup, ",", &save) : NULL; tok;
                 tok = strtok_r(NULL, ",", &save))
                if (lrp_net_find(net, tok) < 0) {
                    fprintf(stderr, "lrp-oracle heatmap: %s: no tensor named '%s'\n", path, tok);
                    free(dup);
                    lrp_net_free(net);
                    return EXIT_USAGE;
                }
            free(dup);
        }
        lrp_check_opts co;
        lrp_check_opts_default(&co);
        co.prec = ro.prec;
        co.threads = ro.threads;
        co.proof_extra = proof ? 64 : 0;
        co.source = source;
        co.label = path;
        co.keep_cells = layers ? 2 : 1;
        lrp_run_report rep;
        lrp_status st = lrp_check(&rep, net, &co, &e);
        lrp_net_free(net);
        if (st) {
            lrp_run_report_free(&rep);
            return cli_fail(&e);
        }
        int rc = cli_heatmaps(out, path, &rep, layers, samples, NULL, NULL);
        printf("%s: verdict %s\n", path, lrp_verdict_name(rep.verdict));
        all_ok &= lrp_run_ok(&rep);
        lrp_run_report_free(&rep);
        if (rc >= 0)
            return rc;
    }
    return all_ok ? EXIT_OK : EXIT_CHECK_FAILED;
}
