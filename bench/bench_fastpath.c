/* bench_fastpath.c -- throughput of the fast-path conv kernels on the conv
 * layers of VGG-16 and ResNet-50 (torchvision shapes), against the measured
 * float32 FMA peak of this machine, with 1 and 2 threads, plus estimates of
 * an EpsilonPlusFlat LRP pass: per conv  forward + z+ forward (same shape,
 * positive weights) + backward-data; per dense  forward + backward-data.
 * (Elementwise work, pooling and the weight clamp are not in the estimate.)
 *
 *   bench_fastpath [--quick] [--net vgg|resnet|all] [--reps N]
 *
 * Not a test: nothing here asserts.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <immintrin.h>

#include "fp_kernels.h"

#include "bench_peak.h"

/* ---- layer lists ---- */

typedef struct {
    const char *name;
    int c, h, co, k, s, p, count;
} conv_shape;

static const conv_shape vgg[] = {
    {"conv1_1", 3, 224, 64, 3, 1, 1, 1},     {"conv1_2", 64, 224, 64, 3, 1, 1, 1},
    {"conv2_1", 64, 112, 128, 3, 1, 1, 1},   {"conv2_2", 128, 112, 128, 3, 1, 1, 1},
    {"conv3_1", 128, 56, 256, 3, 1, 1, 1},   {"conv3_x", 256, 56, 256, 3, 1, 1, 2},
    {"conv4_1", 256, 28, 512, 3, 1, 1, 1},   {"conv4_x", 512, 28, 512, 3, 1, 1, 2},
    {"conv5_x", 512, 14, 512, 3, 1, 1, 3},
};

/* torchvision resnet50 (v1.5: stride in the 3x3) */
static const conv_shape resnet[] = {
    {"conv1 7x7/2", 3, 224, 64, 7, 2, 3, 1},
    {"l1 1x1 64>64", 64, 56, 64, 1, 1, 0, 1},
    {"l1 1x1 256>64", 256, 56, 64, 1, 1, 0, 2},
    {"l1 3x3 64", 64, 56, 64, 3, 1, 1, 3},
    {"l1 1x1 64>256", 64, 56, 256, 1, 1, 0, 4}, /* 3 + downsample */
    {"l2 1x1 256>128", 256, 56, 128, 1, 1, 0, 1},
    {"l2 3x3/2 128", 128, 56, 128, 3, 2, 1, 1},
    {"l2 ds 1x1/2 256>512", 256, 56, 512, 1, 2, 0, 1},
    {"l2 1x1 512>128", 512, 28, 128, 1, 1, 0, 3},
    {"l2 3x3 128", 128, 28, 128, 3, 1, 1, 3},
    {"l2 1x1 128>512", 128, 28, 512, 1, 1, 0, 4},
    {"l3 1x1 512>256", 512, 28, 256, 1, 1, 0, 1},
    {"l3 3x3/2 256", 256, 28, 256, 3, 2, 1, 1},
    {"l3 ds 1x1/2 512>1024", 512, 28, 1024, 1, 2, 0, 1},
    {"l3 1x1 1024>256", 1024, 14, 256, 1, 1, 0, 5},
    {"l3 3x3 256", 256, 14, 256, 3, 1, 1, 5},
    {"l3 1x1 256>1024", 256, 14, 1024, 1, 1, 0, 6},
    {"l4 1x1 1024>512", 1024, 14, 512, 1, 1, 0, 1},
    {"l4 3x3/2 512", 512, 14, 512, 3, 2, 1, 1},
    {"l4 ds 1x1/2 1024>2048", 1024, 14, 2048, 1, 2, 0, 1},
    {"l4 1x1 2048>512", 2048, 7, 512, 1, 1, 0, 2},
    {"l4 3x3 512", 512, 7, 512, 3, 1, 1, 2},
    {"l4 1x1 512>2048", 512, 7, 2048, 1, 1, 0, 3},
};

static int reps_default = 3;

static float *rbuf(size_t n)
{
    float *p = malloc(sizeof(float) * n);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        p[i] = (float)((s >> 9) & 0xffff) / 32768.0f - 1.0f;
    }
    return p;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* best time of fwd (which=0) or bwd (which=1) */
static double time_conv(const lrp_fp_conv_geom *g, float *in, float *w,
                        float *b, float *out, int which, int nt, int reps)
{
    double t[16];
    if (reps > 16)
        reps = 16;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        int rc = which == 0 ? lrp_fp_conv2d_fwd(out, in, w, b, g, nt)
                            : lrp_fp_conv2d_bwd_data(in, out, w, g, nt);
        t[r] = now() - t0;
        if (rc != 0) {
            fprintf(stderr, "conv failed\n");
            exit(1);
        }
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    return t[0]; /* best of reps: the machine may be shared */
}

typedef struct {
    double t_fwd[3], t_bwd[3]; /* by thread count 1, 2 */
} conv_res;

/* Returns the estimated EpsilonPlusFlat conv time (2 fwd + bwd) at `tmax`
 * threads summed over the list. */
static double run_list(const char *title, const conv_shape *L, int nl,
                       int hdiv, int batch, int tmin, int tmax, double peak1,
                       double peak2, double *macs_out)
{
    printf("\n## %s (input %dx%d, batch %d; left columns at %d thread(s))\n", title,
           224 / hdiv, 224 / hdiv, batch, tmin);
    printf("%-24s %5s %9s | %8s %8s %6s | %8s %8s %6s | %s\n", "layer", "count",
           "GMAC", "fwd1 ms", "GF/s", "%pk", "bwd1 ms", "GF/s", "%pk",
           "2-thread fwd/bwd ms (speed-up), GF/s, % of 2-thread peak");
    double est = 0.0, macs_tot = 0.0;
    for (int i = 0; i < nl; i++) {
        const conv_shape *s = &L[i];
        lrp_fp_conv_geom g = {batch, s->c, s->h / hdiv, s->h / hdiv, s->co, s->k, s->k,
                              s->s, s->s, 1, 1, s->p, s->p, s->p, s->p, 1};
        int oh, ow;
        lrp_fp_conv_out_hw(&g, &oh, &ow);
        size_t nin = (size_t)batch * s->c * g.h * g.w;
        size_t nout = (size_t)batch * s->co * oh * ow;
        float *in = rbuf(nin), *out = rbuf(nout), *w = rbuf((size_t)s->co * s->c * s->k * s->k);
        float *b = rbuf((size_t)s->co);
        double macs = (double)nout * s->c * s->k * s->k;
        conv_res r;
        memset(&r, 0, sizeof r);
        for (int nt = tmin; nt <= tmax; nt++) {
            int reps = macs * batch > 4e9 ? 1 : reps_default;
            r.t_fwd[nt] = time_conv(&g, in, w, b, out, 0, nt, reps);
            r.t_bwd[nt] = time_conv(&g, in, w, b, out, 1, nt, reps);
        }
        int t1 = tmin;
        double gf = 2 * macs * 1e-9;
        printf("%-24s %5d %9.3f | %8.2f %8.1f %5.0f%% | %8.2f %8.1f %5.0f%% |", s->name,
               s->count, macs * 1e-9, r.t_fwd[t1] * 1e3, gf / r.t_fwd[t1],
               100 * gf / r.t_fwd[t1] / (peak1 * t1), r.t_bwd[t1] * 1e3,
               gf / r.t_bwd[t1], 100 * gf / r.t_bwd[t1] / (peak1 * t1));
        if (tmax > tmin)
            printf(" %7.2f %7.2f (x%.2f x%.2f) %6.1f/%6.1f GF/s %3.0f%%/%3.0f%%",
                   r.t_fwd[tmax] * 1e3, r.t_bwd[tmax] * 1e3, r.t_fwd[tmin] / r.t_fwd[tmax],
                   r.t_bwd[tmin] / r.t_bwd[tmax], gf / r.t_fwd[tmax], gf / r.t_bwd[tmax],
                   100 * gf / r.t_fwd[tmax] / peak2, 100 * gf / r.t_bwd[tmax] / peak2);
        printf("\n");
        est += s->count * (2 * r.t_fwd[tmax] + r.t_bwd[tmax]);
        macs_tot += s->count * macs;
        free(in); free(out); free(w); free(b);
    }
    *macs_out = macs_tot;
    return est;
}

static double time_dense(int batch, int in, int out, int nt, double *tb)
{
    float *x = rbuf((size_t)batch * in), *W = rbuf((size_t)in * out), *b = rbuf(out);
    float *y = rbuf((size_t)batch * out), *gx = rbuf((size_t)batch * in);
    double tf[3], tbk[3];
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        lrp_fp_dense_fwd(y, x, W, b, batch, in, out, nt);
        tf[r] = now() - t0;
        t0 = now();
        lrp_fp_dense_bwd_data(gx, y, W, batch, in, out, nt);
        tbk[r] = now() - t0;
    }
    qsort(tf, 3, sizeof(double), cmp_d);
    qsort(tbk, 3, sizeof(double), cmp_d);
    free(x); free(W); free(b); free(y); free(gx);
    *tb = tbk[1];
    return tf[1];
}

int main(int argc, char **argv)
{
    int quick = 0;
    const char *net = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--net") && i + 1 < argc)
            net = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps_default = atoi(argv[++i]);
    }
    printf("# bench_fastpath: ISA %s, default threads %d\n",
           lrp_fp_isa_name(lrp_fp_get_isa()), lrp_fp_default_threads());
    double p1 = peak_gflops(1), p2 = peak_gflops(2);
    printf("# measured float32 FMA peak: %.1f GFLOP/s (1 thread), %.1f GFLOP/s (2 threads)\n",
           p1, p2);
    if (p1 <= 0)
        p1 = 1;
    if (p2 <= 0)
        p2 = 2 * p1;
    int nv = (int)(sizeof vgg / sizeof vgg[0]), nr = (int)(sizeof resnet / sizeof resnet[0]);
    double macs;
    if (!strcmp(net, "vgg") || !strcmp(net, "all")) {
        double est = run_list("VGG-16 conv layers", vgg, nv, 1, 1, 1, 2, p1, p2, &macs);
        double tdb[3], tdf[3], dmac = 0;
        int din[3] = {25088, 4096, 4096}, dout[3] = {4096, 4096, 1000};
        double dense = 0;
        for (int i = 0; i < 3; i++) {
            tdf[i] = time_dense(1, din[i], dout[i], 2, &tdb[i]);
            dense += tdf[i] + tdb[i];
            dmac += (double)din[i] * dout[i];
        }
        printf("dense fc6/fc7/fc8 (2 threads) fwd %.2f/%.2f/%.2f ms, bwd %.2f/%.2f/%.2f ms\n",
               tdf[0] * 1e3, tdf[1] * 1e3, tdf[2] * 1e3, tdb[0] * 1e3, tdb[1] * 1e3,
               tdb[2] * 1e3);
        printf("RESULT vgg16_224_b1 conv_gmac %.2f est_lrp_s %.4f (convs %.4f + dense %.4f)\n",
               (macs + dmac) * 1e-9, est + dense, est, dense);
        if (!quick) {
            double e112 = run_list("VGG-16 conv layers", vgg, nv, 2, 1, 2, 2, p1, p2, &macs);
            printf("RESULT vgg16_112_b1 est_lrp_s %.4f (+ dense as above)\n", e112 + dense);
            double e8 = run_list("VGG-16 conv layers", vgg, nv, 1, 8, 2, 2, p1, p2, &macs);
            double d8 = 0;
            for (int i = 0; i < 3; i++) {
                double tb, tf = time_dense(8, din[i], dout[i], 2, &tb);
                d8 += tf + tb;
            }
            printf("RESULT vgg16_224_b8 est_lrp_s %.4f (convs %.4f + dense %.4f)\n", e8 + d8,
                   e8, d8);
        }
    }
    if (!strcmp(net, "resnet") || !strcmp(net, "all")) {
        double est = run_list("ResNet-50 conv layers", resnet, nr, 1, 1, 1, 2, p1, p2, &macs);
        double tb, tf = time_dense(1, 2048, 1000, 2, &tb);
        printf("RESULT resnet50_224_b1 conv_gmac %.2f est_lrp_s %.4f (convs %.4f + fc %.4f)\n",
               macs * 1e-9, est + tf + tb, est, tf + tb);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("RESULT peak_rss_mb %.1f\n", ru.ru_maxrss / 1024.0);
    return 0;
}
