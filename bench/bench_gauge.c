/*
 * bench_gauge.c -- time the oracle's gauge (oracle/gauge.c) alone on a
 * trace's own values, and print a digest of every row it computes, so that
 * two builds can be compared for speed and for identical bits without the
 * MPFR runs around it (issue 14).
 *
 *   bench_gauge FILE SOURCE [THREADS]
 *
 * For trace SOURCE of FILE (its rules installed, its activations and
 * relevance): the end-to-end gauge (as `compare` computes it, here on the
 * trace's values instead of the reference's) and the trace-local gauge
 * (LRP_GI_EXACT), each streamed (lrp_gauge_opts.emit); per mode the wall
 * time, the peak RSS so far, and an FNV-1a digest of every emitted row
 * in emission order.
 */
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gauge.h"
#include "lrp.h"

static double bench_peak_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* kB on Linux */
}

typedef struct digest {
    uint64_t h;
    int64_t rows;
    const lrp_net *net;
} digest;

static void fnv(digest *d, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        d->h ^= c[i];
        d->h *= 0x100000001b3ull;
    }
}

static lrp_status hash_rows(void *ctx, lrp_gauge *g, int li, int bwd)
{
    digest *d = ctx;
    size_t n = (size_t)(d->net->batch * lrp_shape_numel(&d->net->layers[li].shape));
    fnv(d, &li, sizeof li);
    fnv(d, &bwd, sizeof bwd);
    if (!bwd) {
        fnv(d, g->fwd[li], n * sizeof(float));
        if (g->fwd_sharp)
            fnv(d, g->fwd_sharp[li], n * sizeof(float));
    } else {
        fnv(d, g->bound[li], n * sizeof(float));
        fnv(d, g->cond[li], n * sizeof(float));
        fnv(d, g->cflags[li], n);
        if (g->sharp) {
            fnv(d, g->sharp[li], n * sizeof(float));
            fnv(d, g->scond[li], n * sizeof(float));
        }
        fnv(d, &g->ill_mass[li], sizeof(double));
        fnv(d, &g->total_sharp[li], sizeof(double));
    }
    d->rows++;
    return LRP_OK;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE SOURCE [THREADS]\n", argv[0]);
        return 2;
    }
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    lrp_err err;
    lrp_net *net = NULL;
    if (lrp_fixture_read(&net, argv[1], &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    int t = lrp_net_trace_find(net, argv[2]);
    if (t < 0 || !net->traces[t].activation) {
        fprintf(stderr, "%s: no trace '%s' with activations\n", argv[1], argv[2]);
        return 2;
    }
    const lrp_trace *tr = &net->traces[t];
    for (int i = 0; i < net->n_layers; i++) {
        if (tr->rules)
            net->layers[i].rule = tr->rules[i];
        if (!tr->relevance[i] || !tr->activation[i]) {
            fprintf(stderr, "%s: trace '%s' lacks layer %d\n", argv[1], argv[2], i);
            return 2;
        }
    }
    printf("gauge of %s trace '%s', %d threads, peak RSS after loading %.0f MB\n", argv[1],
           argv[2], threads, bench_peak_mb());
    const char *names[2] = {"end to end", "trace-local"};
    for (int m = 0; m < 2; m++) {
        digest d = {0xcbf29ce484222325ull, 0, net};
        lrp_gauge_opts go = {m, m ? LRP_GI_EXACT : LRP_GI_PROPAGATED, LRP_SHARP_LAMBDA, threads,
                             hash_rows, &d};
        lrp_gauge g;
        double t0 = now();
        if (lrp_gauge_compute_opts(&g, net, tr->activation, tr->relevance, &go, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double t1 = now();
        lrp_gauge_free(&g);
        printf("%-12s %8.2f s  peak RSS %6.0f MB  rows %lld  digest %016llx\n", names[m], t1 - t0,
               bench_peak_mb(), (long long)d.rows, (unsigned long long)d.h);
    }
    lrp_net_free(net);
    return 0;
}
