/* bench_lrp.c -- end-to-end benchmark of the float32 LRP engine on VGG-16
 * and ResNet-50 shaped networks (torchvision layer shapes, builder weights
 * from a fixed seed) under the EpsilonPlusFlat composite.
 *
 * Two modes of lrp_pipe_run_ex over the f32 backend are timed:
 *   engine: LRP_PIPE_RELEVANCE, exactly what `lrp-oracle fast` runs --
 *           forward, LRP backward, every layer's activations and relevance
 *           kept (the trace stores all of them), numerical flags (zero
 *           denominators, NaN / inf with first location);
 *   full:   flags 0, what `lrp-oracle check` runs on the float side -- the
 *           same plus the audit data: gauges, classes, absorbed relevance
 *           by kind, per-layer conservation residuals.
 * Both give the same relevance bit for bit (tests/test_fastpath.c).
 *
 *   bench_lrp [--quick] [--reps N] [--threads T] [--case NAME] [--no-det | --det-only]
 *   bench_lrp --write-fixture PATH CASE     (the case's net as a fixture file)
 *
 * Cases: vgg16_224_b1, vgg16_112_b1, vgg16_224_b8, resnet50_224_b1 (--quick:
 * the first and the last).  Each case runs in a forked child (so the peak
 * RSS is the case's own), builds the net, does one warm-up run and N timed
 * runs (median) at 1 and at T threads, then one more run through a timing
 * wrapper of the backend vtable for the per-op breakdown (conv / dense
 * GFLOP/s against the measured FMA peak).  VGG-16 at 112 is also run at 1
 * and 2 threads and the relevance of every layer compared bitwise.
 *
 * VGG-16 at 112x112: the features end at 512x3x3 and fc6 takes those 4608
 * values (no adaptive pooling to 7x7, which is not a layer of the model);
 * bench/torch_baseline.py builds the same.
 *
 * Output lines "RESULT lrp <case> t1_s .. tN_s .." are read by
 * scripts/bench.sh.  Not a test: only the determinism check sets the exit
 * status (1 when 1 and 2 threads differ).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <immintrin.h>

#include "backend_f32.h"
#include "fixtures.h"
#include "fp_kernels.h"
#include "lrp.h"
#include "pipeline.h"
#include "reference.h"

#define SEED UINT64_C(20261126)

#include "bench_peak.h"

/* ---- networks ---- */

static void die(const char *what, const lrp_err *e)
{
    fprintf(stderr, "bench_lrp: %s: %s\n", what, e ? e->msg : "");
    exit(2);
}

static lrp_net *build_vgg16(int hw, int batch)
{
    static const int cfg[] = {64, 64, -1, 128, 128, -1, 256, 256, 256, -1,
                              512, 512, 512, -1, 512, 512, 512, -1};
    lrp_err e = {0};
    lrp_net *net = lrp_net_new();
    lrp_builder b;
    lrp_build_begin(&b, net, SEED, &e);
    int x = lrp_build_input(&b, "input", 3, 3, hw, hw);
    char nm[64];
    int nconv = 0, npool = 0;
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        if (cfg[i] < 0) {
            snprintf(nm, sizeof nm, "pool%d", ++npool);
            x = lrp_build_maxpool(&b, nm, x, 2, 2, 0);
        } else {
            snprintf(nm, sizeof nm, "conv%d", ++nconv);
            x = lrp_build_conv(&b, nm, x, cfg[i], 3, 1, 1, 1, 1);
            snprintf(nm, sizeof nm, "relu%d", nconv);
            x = lrp_build_relu(&b, nm, x);
        }
    }
    x = lrp_build_flatten(&b, "flatten", x);
    x = lrp_build_dense(&b, "fc6", x, 4096, 1);
    x = lrp_build_relu(&b, "relu_fc6", x);
    x = lrp_build_dense(&b, "fc7", x, 4096, 1);
    x = lrp_build_relu(&b, "relu_fc7", x);
    x = lrp_build_dense(&b, "fc8", x, 1000, 1);
    if (x < 0 || lrp_build_finish(&b, batch) != LRP_OK)
        die("building VGG-16", &e);
    return net;
}

/* torchvision resnet50 (v1.5: stride in the 3x3), BatchNorm explicit. */
static lrp_net *build_resnet50(int hw, int batch)
{
    lrp_err e = {0};
    lrp_net *net = lrp_net_new();
    lrp_builder b;
    lrp_build_begin(&b, net, SEED, &e);
    char nm[64];
    int x = lrp_build_input(&b, "input", 3, 3, hw, hw);
    x = lrp_build_conv(&b, "conv1", x, 64, 7, 2, 3, 1, 0);
    x = lrp_build_bn(&b, "bn1", x);
    x = lrp_build_relu(&b, "relu1", x);
    x = lrp_build_maxpool(&b, "maxpool", x, 3, 2, 1);
    static const int widths[4] = {64, 128, 256, 512}, counts[4] = {3, 4, 6, 3};
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < counts[s]; i++) {
            int stride = (i == 0 && s > 0) ? 2 : 1, w = widths[s];
            int in = x;
#define NM(fmt) (snprintf(nm, sizeof nm, "l%d_%d_" fmt, s + 1, i), nm)
            int h = lrp_build_conv(&b, NM("conv1"), in, w, 1, 1, 0, 1, 0);
            h = lrp_build_bn(&b, NM("bn1"), h);
            h = lrp_build_relu(&b, NM("relu1"), h);
            h = lrp_build_conv(&b, NM("conv2"), h, w, 3, stride, 1, 1, 0);
            h = lrp_build_bn(&b, NM("bn2"), h);
            h = lrp_build_relu(&b, NM("relu2"), h);
            h = lrp_build_conv(&b, NM("conv3"), h, 4 * w, 1, 1, 0, 1, 0);
            h = lrp_build_bn(&b, NM("bn3"), h);
            int sk = in;
            if (i == 0) {
                sk = lrp_build_conv(&b, NM("down"), in, 4 * w, 1, stride, 0, 1, 0);
                sk = lrp_build_bn(&b, NM("down_bn"), sk);
            }
            int ins[2] = {h, sk};
            x = lrp_build_add(&b, NM("add"), 2, ins);
            x = lrp_build_relu(&b, NM("relu"), x);
#undef NM
        }
    x = lrp_build_gap(&b, "gap", x);
    x = lrp_build_dense(&b, "fc", x, 1000, 1);
    if (x < 0 || lrp_build_finish(&b, batch) != LRP_OK)
        die("building ResNet-50", &e);
    return net;
}

static void apply_composite(lrp_net *net)
{
    lrp_composite_params cp = lrp_composite_params_default();
    lrp_composite_apply(net, LRP_COMPOSITE_EPSILON_PLUS_FLAT, &cp);
}

/* ---- timing wrapper of the backend vtable ---- */

enum {
    C_CONV_FWD, C_GAUGE, C_CONV_BWD, C_DENSE_FWD, C_DENSE_BWD, C_DIV, C_EW, C_POOL, C_BN,
    C_CLASSIFY, C_RESID, C_MEM, C_FREE, C_SET, C_NCAT
};
static const char *const cat_name[C_NCAT] = {
    "conv fwd (plain, den)", "gauges |z| (conv + dense)", "conv bwd-data + a*g",
    "dense fwd (plain, den)",
    "dense bwd-data + a*g", "stab_div + absorb", "elementwise / row / sum",
    "pools", "batchnorm coef / fwd", "classify / argmax / scan", "residual",
    "tensor_new / raw", "tensor_free", "set_f32 / wrap_f32 (weights)"};

typedef struct {
    lrp_backend in;
    double t[C_NCAT];
    double macs[C_NCAT];
    long calls[C_NCAT];
} tw_state;
static tw_state TW;

#define TIMED(cat, call)                \
    do {                                \
        double t0_ = now();             \
        call;                           \
        TW.t[cat] += now() - t0_;       \
        TW.calls[cat]++;                \
    } while (0)

static void *w_new(void *c, int64_t n)
{
    void *r;
    TIMED(C_MEM, r = TW.in.tensor_new(c, n));
    return r;
}
static void *w_raw(void *c, int64_t n)
{
    void *r;
    TIMED(C_MEM, r = TW.in.tensor_raw(c, n));
    return r;
}
static void *w_wrap(void *c, const float *s, int64_t n)
{
    void *r;
    TIMED(C_SET, r = TW.in.wrap_f32(c, s, n));
    return r;
}
static void w_scan(void *c, const void *t, int64_t n, int64_t cnt[2], int64_t first[2])
{
    TIMED(C_CLASSIFY, TW.in.scan_nonfinite(c, t, n, cnt, first));
}
static void w_free(void *c, void *t, int64_t n) { TIMED(C_FREE, TW.in.tensor_free(c, t, n)); }
static void *w_at(void *c, const void *t, int64_t i) { return TW.in.at(c, t, i); }
static void w_set(void *c, void *d, const float *s, int64_t n) { TIMED(C_SET, TW.in.set_f32(c, d, s, n)); }
static void w_classify(void *c, uint8_t *o, const void *t, int64_t n)
{
    TIMED(C_CLASSIFY, TW.in.classify(c, o, t, n));
}
static int64_t w_argmax(void *c, const void *t, int64_t n)
{
    int64_t r;
    TIMED(C_CLASSIFY, r = TW.in.argmax(c, t, n));
    return r;
}
static void w_ew(void *c, lrp_ew_op op, void *o, const void *a, const void *b, float c1,
                 float c2, int64_t n)
{
    TIMED(C_EW, TW.in.ew(c, op, o, a, b, c1, c2, n));
}
static void w_row(void *c, lrp_row_op op, void *o, const void *a, const void *v, int64_t r,
                  int64_t cols, int64_t vm)
{
    TIMED(C_EW, TW.in.row(c, op, o, a, v, r, cols, vm));
}
static void w_sum_n(void *c, void *o, const void *const *ins, int k, int64_t n)
{
    TIMED(C_EW, TW.in.sum_n(c, o, ins, k, n));
}
/* convolutions one lin_fwd call runs: one per input modifier (fused
 * weights), one per term for the gauge */
static int n_maps(const lrp_term *t, int nt, int absval)
{
    if (absval)
        return nt;
    int n = 0;
    for (int k = 0; k < nt; k++) {
        int seen = 0;
        for (int q = 0; q < k; q++)
            seen |= t[q].in == t[k].in;
        n += !seen;
    }
    return n;
}
static void w_lin_fwd(void *c, void *o, const lrp_lin *L, const void *x, const lrp_term *t,
                      int nt, const lrp_bterm *bt, int nb, int absval, int64_t batch)
{
    int cat = absval ? C_GAUGE : L->conv ? C_CONV_FWD : C_DENSE_FWD;
    if (!absval) /* gauges: time only (the backend may copy the denominator) */
        TW.macs[cat] += (double)batch * L->n_out * L->fanin * n_maps(t, nt, absval);
    TIMED(cat, TW.in.lin_fwd(c, o, L, x, t, nt, bt, nb, absval, batch));
}
static void w_lin_bwd(void *c, void *o, const lrp_lin *L, const void *x,
                      const lrp_bwd_part *p, int np, int64_t batch)
{
    int cat = L->conv ? C_CONV_BWD : C_DENSE_BWD;
    for (int k = 0; k < np; k++)
        TW.macs[cat] += (double)batch * L->n_out * L->fanin * n_maps(p[k].t, p[k].nt, 0);
    TIMED(cat, TW.in.lin_bwd(c, o, L, x, p, np, batch));
}
static void w_stab_div(void *c, void *s, uint8_t *cls, const void *R, const void *den,
                       const uint8_t *mask, lrp_stab_id st, float eps, int el, int64_t n)
{
    TIMED(C_DIV, TW.in.stab_div(c, s, cls, R, den, mask, st, eps, el, n));
}
static void w_absorb(void *c, void *const *a, const void *R, const void *s, const void *bd,
                     const uint8_t *cls, float coef, float eps, int64_t n)
{
    TIMED(C_DIV, TW.in.absorb(c, a, R, s, bd, cls, coef, eps, n));
}
static void w_max_fwd(void *c, void *o, const void *x, const lrp_pool *P, int64_t b)
{
    TIMED(C_POOL, TW.in.max_fwd(c, o, x, P, b));
}
static void w_max_bwd(void *c, void *o, const void *x, const void *R, const lrp_pool *P,
                      int64_t b)
{
    TIMED(C_POOL, TW.in.max_bwd(c, o, x, R, P, b));
}
static void w_avg_fwd(void *c, void *o, const void *x, const lrp_pool *P, int64_t b)
{
    TIMED(C_POOL, TW.in.avg_fwd(c, o, x, P, b));
}
static void w_avg_bwd(void *c, void *o, const void *x, const void *s, const lrp_pool *P,
                      int64_t b)
{
    TIMED(C_POOL, TW.in.avg_bwd(c, o, x, s, P, b));
}
static void w_bn_coef(void *c, void *a, void *b, void *d, void *e, const lrp_layer *l,
                      int64_t C)
{
    TIMED(C_BN, TW.in.bn_coef(c, a, b, d, e, l, C));
}
static void w_bn_fwd(void *c, void *y, const void *x, const void *wc, const void *sh,
                     int64_t b, int64_t C, int64_t hw)
{
    TIMED(C_BN, TW.in.bn_fwd(c, y, x, wc, sh, b, C, hw));
}
static void w_residual(void *c, double *r, double *sc, const void *const *in, const int64_t *n_in,
                       int k_in, const void *const *ab, int k_abs, int64_t n_abs,
                       const void *out, int64_t n_out)
{
    TIMED(C_RESID, TW.in.residual(c, r, sc, in, n_in, k_in, ab, k_abs, n_abs, out, n_out));
}

static void wrap_backend(lrp_backend *w, const lrp_backend *in)
{
    memset(&TW, 0, sizeof TW);
    TW.in = *in;
    *w = *in;
    w->tensor_new = w_new;
    w->tensor_raw = in->tensor_raw ? w_raw : NULL;
    w->wrap_f32 = in->wrap_f32 ? w_wrap : NULL;
    w->scan_nonfinite = in->scan_nonfinite ? w_scan : NULL;
    w->tensor_free = w_free;
    w->at = w_at;
    w->set_f32 = w_set;
    w->classify = w_classify;
    w->argmax = w_argmax;
    w->ew = w_ew;
    w->row = w_row;
    w->sum_n = w_sum_n;
    w->lin_fwd = w_lin_fwd;
    w->lin_bwd = w_lin_bwd;
    w->stab_div = w_stab_div;
    w->absorb = w_absorb;
    w->max_fwd = w_max_fwd;
    w->max_bwd = w_max_bwd;
    w->avg_fwd = w_avg_fwd;
    w->avg_bwd = w_avg_bwd;
    w->bn_coef = w_bn_coef;
    w->bn_fwd = w_bn_fwd;
    w->residual = w_residual;
}

/* ---- running ---- */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* LRP_PIPE_RELEVANCE (engine) or 0 (full audit) */
static lrp_pipe *run_once(const lrp_backend *be, const lrp_net *net, unsigned mode,
                          double *secs)
{
    lrp_err e = {0};
    lrp_pipe *p = NULL;
    double t0 = now();
    if (lrp_pipe_run_ex(&p, be, net, mode, &e) != LRP_OK)
        die("lrp_pipe_run", &e);
    *secs = now() - t0;
    return p;
}

/* median of reps runs after one warm-up; *cold: the warm-up (a fresh
 * context: empty weight cache and tensor pool, like one `lrp-oracle fast`) */
static double time_runs(const lrp_net *net, int nthreads, unsigned mode, int reps,
                        double *cold)
{
    lrp_f32_ctx *cx = lrp_f32_ctx_new(nthreads);
    lrp_backend be;
    lrp_f32_backend(&be, cx);
    double t[64];
    if (reps > 64)
        reps = 64;
    double tw;
    lrp_pipe_free(run_once(&be, net, mode, &tw));
    *cold = tw;
    for (int r = 0; r < reps; r++)
        lrp_pipe_free(run_once(&be, net, mode, &t[r]));
    lrp_f32_ctx_free(cx);
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    return t[reps / 2];
}

static double sum_input_relevance(const lrp_pipe *p, const lrp_net *net, int *finite)
{
    int64_t n = p->L[0].n * net->batch;
    const float *r = p->L[0].rel;
    double s = 0.0;
    *finite = 1;
    for (int i = 1; i < net->n_layers; i++) {
        const float *q = p->L[i].rel;
        for (int64_t k = 0; k < p->L[i].n * net->batch; k++)
            if (!isfinite(q[k]))
                *finite = 0;
    }
    for (int64_t k = 0; k < n; k++) {
        if (!isfinite(r[k]))
            *finite = 0;
        s += r[k];
    }
    return s;
}

static double conv_gmacs(const lrp_net *net)
{
    double m = 0;
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i].kind == LRP_LAYER_CONV2D)
            m += (double)lrp_layer_macs(net, i);
    return m * net->batch * 1e-9;
}

static void run_case(const char *name, int reps, int tmax, double peak1, double peakT)
{
    int hw = strstr(name, "_112_") ? 112 : 224;
    int batch = strstr(name, "_b8") ? 8 : 1;
    int resnet = strncmp(name, "resnet", 6) == 0;
    double tb0 = now();
    lrp_net *net = resnet ? build_resnet50(hw, batch) : build_vgg16(hw, batch);
    apply_composite(net);
    double tbuild = now() - tb0;
    printf("\n## %s: %d layers, batch %d, %dx%d, conv %.2f GMAC per pass, built in %.2f s\n",
           name, net->n_layers, batch, hw, hw, conv_gmacs(net), tbuild);
    if (batch > 1 && reps > 3)
        reps = 3;
    double c1, cT, cF;
    double t1 = time_runs(net, 1, LRP_PIPE_RELEVANCE, reps, &c1);
    printf("  engine (lrp-oracle fast), 1 thread : %.4f s (median of %d; cold first run %.4f s)\n",
           t1, reps, c1);
    double tT = time_runs(net, tmax, LRP_PIPE_RELEVANCE, reps, &cT);
    printf("  engine (lrp-oracle fast), %d threads: %.4f s (median of %d; cold first run %.4f s), "
           "speed-up x%.2f\n", tmax, tT, reps, cT, t1 / tT);
    double tF = time_runs(net, tmax, 0, reps, &cF);
    printf("  full audit run (check),   %d threads: %.4f s (median of %d; cold first run %.4f s)\n",
           tmax, tF, reps, cF);

    /* breakdown run through the timing wrapper, tmax threads */
    lrp_f32_ctx *cx = lrp_f32_ctx_new(tmax);
    lrp_backend be, wb;
    lrp_f32_backend(&be, cx);
    wrap_backend(&wb, &be);
    double tw;
    lrp_pipe_free(run_once(&wb, net, LRP_PIPE_RELEVANCE, &tw)); /* warm-up, wrapped */
    wrap_backend(&wb, &be);
    lrp_pipe *p = run_once(&wb, net, LRP_PIPE_RELEVANCE, &tw);
    double inside = 0;
    printf("  breakdown (one engine run at %d threads, %.4f s):\n", tmax, tw);
    for (int c = 0; c < C_NCAT; c++) {
        inside += TW.t[c];
        if (TW.calls[c] == 0)
            continue;
        printf("    %-32s %8.4f s %5.1f%% %6ld calls", cat_name[c], TW.t[c], 100 * TW.t[c] / tw,
               TW.calls[c]);
        if (TW.macs[c] > 0)
            printf("  %7.2f GMAC  %6.1f GFLOP/s (%4.0f%% of %d-thread peak)", TW.macs[c] * 1e-9,
                   2e-9 * TW.macs[c] / TW.t[c], 100 * 2e-9 * TW.macs[c] / TW.t[c] / peakT, tmax);
        printf("\n");
    }
    printf("    %-32s %8.4f s %5.1f%%\n", "pipeline itself (flags, masks...)", tw - inside,
           100 * (tw - inside) / tw);
    double cm = TW.macs[C_CONV_FWD] + TW.macs[C_CONV_BWD];
    double ct = TW.t[C_CONV_FWD] + TW.t[C_CONV_BWD];
    printf("  conv layers: %.2f GMAC in %.4f s = %.1f GFLOP/s = %.0f%% of the measured %d-thread "
           "peak %.1f (1-thread peak %.1f)\n",
           cm * 1e-9, ct, 2e-9 * cm / ct, 100 * 2e-9 * cm / ct / peakT, tmax, peakT, peak1);
    int finite;
    double s = sum_input_relevance(p, net, &finite);
    printf("  sanity: relevance %s, sum of input relevance %.6g\n",
           finite ? "finite in every layer" : "NOT FINITE", s);
    lrp_pipe_free(p);
    lrp_f32_ctx_free(cx);
    lrp_fp_release_workspace();
    lrp_net_free(net);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("  peak RSS %.1f MB\n", ru.ru_maxrss / 1024.0);
    printf("RESULT lrp %s t1_s %.4f t%d_s %.4f speedup %.2f cold%d_s %.4f full%d_s %.4f "
           "conv_gflops %.1f peak_pct %.0f peak_rss_mb %.1f finite %d\n",
           name, t1, tmax, tT, t1 / tT, tmax, cT, tmax, tF, 2e-9 * cm / ct,
           100 * 2e-9 * cm / ct / peakT, ru.ru_maxrss / 1024.0, finite);
    fflush(stdout);
}

/* VGG-16 at 112: every layer's relevance at 1 and 2 threads, bitwise. */
static int determinism_check(void)
{
    lrp_net *net = build_vgg16(112, 1);
    apply_composite(net);
    lrp_pipe *p[2];
    lrp_f32_ctx *cx[2];
    for (int k = 0; k < 2; k++) {
        lrp_backend be;
        cx[k] = lrp_f32_ctx_new(k + 1);
        lrp_f32_backend(&be, cx[k]);
        double t;
        p[k] = run_once(&be, net, LRP_PIPE_RELEVANCE, &t);
    }
    int64_t diff = 0, tot = 0, diff_in = 0;
    for (int i = 0; i < net->n_layers; i++) {
        int64_t n = p[0]->L[i].n * net->batch;
        const uint32_t *a = p[0]->L[i].rel, *b = p[1]->L[i].rel;
        for (int64_t k = 0; k < n; k++)
            if (a[k] != b[k]) {
                diff++;
                if (i == 0)
                    diff_in++;
            }
        tot += n;
    }
    printf("\n## determinism: VGG-16 112 b1, 1 vs 2 threads: input relevance %s "
           "(%lld of %lld values differ), all layers: %lld of %lld differ\n",
           diff_in ? "DIFFERS" : "bitwise identical", (long long)diff_in,
           (long long)(p[0]->L[0].n * net->batch), (long long)diff, (long long)tot);
    printf("RESULT determinism vgg16_112_b1 %s\n", diff ? "FAIL" : "ok");
    for (int k = 0; k < 2; k++) {
        lrp_pipe_free(p[k]);
        lrp_f32_ctx_free(cx[k]);
    }
    lrp_net_free(net);
    return diff != 0;
}

/* --digest NAME: a digest of every layer's relevance and activation (for
 * comparing two builds bit for bit). */
static void digest_case(const char *name)
{
    int hw = strstr(name, "_112_") ? 112 : strstr(name, "_64_") ? 64 : 224;
    int batch = strstr(name, "_b8") ? 8 : strstr(name, "_b2") ? 2 : 1;
    lrp_net *net = strncmp(name, "resnet", 6) == 0 ? build_resnet50(hw, batch)
                                                  : build_vgg16(hw, batch);
    apply_composite(net);
    lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
    lrp_backend be;
    lrp_f32_backend(&be, cx);
    double t;
    lrp_pipe *p = run_once(&be, net, 0, &t);
    uint64_t h = 0xcbf29ce484222325u;
    for (int i = 0; i < net->n_layers; i++) {
        const lrp_pipe_layer *P = &p->L[i];
        const void *ts[2 + 2 * LRP_PIPE_MAX_PARTS] = {P->rel, P->act};
        int64_t ns[2 + 2 * LRP_PIPE_MAX_PARTS] = {P->n, P->n};
        int nt = 2;
        for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++) {
            if (P->den[k]) {
                ts[nt] = P->den[k];
                ns[nt++] = P->n_units;
            }
            if (P->gauge[k]) {
                ts[nt] = P->gauge[k];
                ns[nt++] = P->n_units;
            }
        }
        for (int q = 0; q < nt; q++) {
            const uint32_t *u = ts[q];
            for (int64_t k = 0; k < ns[q] * net->batch; k++)
                h = (h ^ u[k]) * 0x100000001b3u;
        }
    }
    printf("DIGEST %s %016llx\n", name, (unsigned long long)h);
    lrp_pipe_free(p);
    lrp_f32_ctx_free(cx);
    lrp_net_free(net);
}

/* --reference HW: the MPFR reference (p = 128, 2 threads, lean mode) of an
 * LRP-epsilon pass on ResNet-50 at HW x HW, batch 1 -- issue #3's "ResNet-50
 * in <= 3 minutes" figure. */
static int reference_case(int hw)
{
    lrp_net *net = build_resnet50(hw, 1);
    lrp_rule_spec r = lrp_rule_default(LRP_RULE_EPSILON);
    lrp_rule_apply_all(net, &r);
    lrp_err e = {0};
    if (lrp_net_infer(net, "resnet50", &e) != LRP_OK)
        die("infer", &e);
    int64_t macs = 0;
    for (int i = 0; i < net->n_layers; i++)
        macs += lrp_layer_macs(net, i);
    lrp_ref_opts o = lrp_ref_opts_default();
    o.lean = 1;
    lrp_ref_result *res = NULL;
    double t0 = now();
    if (lrp_ref_run(&res, net, &o, &e) != LRP_OK)
        die("reference", &e);
    double t = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("reference resnet50_%d_b1 epsilon p=%d threads=%d lean: %.1f s, %.2f GMAC forward, "
           "%.1f ns per forward MAC (forward + LRP backward), peak RSS %.2f GB\n",
           hw, o.prec, o.threads, t, (double)macs * 1e-9, t * 1e9 / (double)macs,
           (double)ru.ru_maxrss / (1024.0 * 1024.0));
    lrp_ref_free(res);
    lrp_net_free(net);
    return 0;
}

/* torchvision densenet121 (growth 32, bottleneck 4 x 32, blocks of 6, 12,
 * 24, 16 layers, transitions halving the channels), BatchNorm explicit,
 * convs without bias.  Each layer's features are joined to the block's
 * by a Concatenate of two inputs (the block so far, the new features):
 * the same tensors as torchvision's one cat of every earlier feature map
 * (a Concatenate takes at most LRP_MAX_INPUTS).  For the layer split's
 * whole-layer fallback (docs/SCALING.md "The layer split"): not a case
 * of the benchmark, a fixture (--write-fixture densenet121_64_b1). */
static lrp_net *build_densenet121(int hw, int batch)
{
    lrp_err e = {0};
    lrp_net *net = lrp_net_new();
    lrp_builder b;
    lrp_build_begin(&b, net, SEED, &e);
    char nm[64];
    int x = lrp_build_input(&b, "input", 3, 3, hw, hw);
    x = lrp_build_conv(&b, "conv0", x, 64, 7, 2, 3, 1, 0);
    x = lrp_build_bn(&b, "norm0", x);
    x = lrp_build_relu(&b, "relu0", x);
    x = lrp_build_maxpool(&b, "pool0", x, 3, 2, 1);
    static const int counts[4] = {6, 12, 24, 16};
    int64_t C = 64;
    for (int s = 0; s < 4; s++) {
        for (int i = 0; i < counts[s]; i++) {
#define NM(fmt) (snprintf(nm, sizeof nm, "b%d_%d_" fmt, s + 1, i + 1), nm)
            int h = lrp_build_bn(&b, NM("norm1"), x);
            h = lrp_build_relu(&b, NM("relu1"), h);
            h = lrp_build_conv(&b, NM("conv1"), h, 128, 1, 1, 0, 1, 0);
            h = lrp_build_bn(&b, NM("norm2"), h);
            h = lrp_build_relu(&b, NM("relu2"), h);
            h = lrp_build_conv(&b, NM("conv2"), h, 32, 3, 1, 1, 1, 0);
            int ins[2] = {x, h};
            x = lrp_build_concat(&b, NM("cat"), 2, ins);
            C += 32;
#undef NM
        }
        if (s == 3)
            break;
#define NM(fmt) (snprintf(nm, sizeof nm, "t%d_" fmt, s + 1), nm)
        x = lrp_build_bn(&b, NM("norm"), x);
        x = lrp_build_relu(&b, NM("relu"), x);
        C /= 2;
        x = lrp_build_conv(&b, NM("conv"), x, C, 1, 1, 0, 1, 0);
        x = lrp_build_avgpool(&b, NM("pool"), x, 2, 2, 0);
#undef NM
    }
    x = lrp_build_bn(&b, "norm5", x);
    x = lrp_build_relu(&b, "relu5", x);
    x = lrp_build_gap(&b, "gap", x);
    x = lrp_build_dense(&b, "classifier", x, 1000, 1);
    if (x < 0 || lrp_build_finish(&b, batch) != LRP_OK)
        die("building DenseNet-121", &e);
    return net;
}

/* --write-fixture PATH CASE: the case's network (builder weights, input and
 * target from the fixed seed, EpsilonPlusFlat rules) as a fixture file, for
 * the mutation benchmark's big nets (`make mutants MUTANTS_BIG=1`).  CASE as
 * for --digest: vgg16_224_b1, resnet50_224_b1, ..._112_, ..._64_, _b2, _b8;
 * also densenet121_* (the same sizes). */
static int write_fixture_case(const char *path, const char *name)
{
    int hw = strstr(name, "_112_") ? 112 : strstr(name, "_64_") ? 64 : 224;
    int batch = strstr(name, "_b8") ? 8 : strstr(name, "_b2") ? 2 : 1;
    int resnet = strncmp(name, "resnet", 6) == 0;
    int densenet = strncmp(name, "densenet121", 11) == 0;
    if (!resnet && !densenet && strncmp(name, "vgg16", 5) != 0) {
        fprintf(stderr,
                "bench_lrp: --write-fixture: unknown case '%s' (vgg16_*, resnet50_*, "
                "densenet121_*)\n",
                name);
        return 2;
    }
    lrp_net *net = densenet ? build_densenet121(hw, batch)
                   : resnet ? build_resnet50(hw, batch)
                            : build_vgg16(hw, batch);
    apply_composite(net);
    net->seed = SEED;
    snprintf(net->description, sizeof net->description, "bench_lrp %s (%s %dx%d, batch %d)", name,
             densenet ? "DenseNet-121" : resnet ? "ResNet-50" : "VGG-16", hw, hw, batch);
    lrp_err e = {0};
    if (lrp_fixture_write(net, path, &e) != LRP_OK)
        die("writing the fixture", &e);
    printf("wrote %s (%s, %d layers)\n", path, name, net->n_layers);
    lrp_net_free(net);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--write-fixture"))
        return write_fixture_case(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "--digest")) {
        digest_case(argv[2]);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "--reference"))
        return reference_case(atoi(argv[2]));
    int quick = 0, reps = 3, tmax = 2, det = 1;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            tmax = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--case") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--no-det"))
            det = 0;
        else if (!strcmp(argv[i], "--det-only"))
            only = "none", det = 2;
        else {
            fprintf(stderr, "usage: bench_lrp [--quick] [--reps N] [--threads T] [--case NAME] "
                            "[--no-det | --det-only]\n");
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    if (tmax < 1)
        tmax = 1;
    double la[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3)
            la[0] = -1;
        fclose(f);
    }
    printf("# bench_lrp: EpsilonPlusFlat, lrp_pipe_run + f32 backend, ISA %s, %ld CPUs, "
           "load average %.2f %.2f %.2f\n",
           lrp_fp_isa_name(lrp_fp_get_isa()), sysconf(_SC_NPROCESSORS_ONLN), la[0], la[1], la[2]);
    double p1 = peak_gflops(1), pT = peak_gflops(tmax);
    printf("# measured float32 FMA peak: %.1f GFLOP/s (1 thread), %.1f GFLOP/s (%d threads)\n",
           p1, pT, tmax);
    if (pT <= 0)
        pT = 1;
    printf("RESULT peak gflops1 %.1f gflops%d %.1f\n", p1, tmax, pT);
    const char *cases[] = {"vgg16_224_b1", "vgg16_112_b1", "vgg16_224_b8", "resnet50_224_b1"};
    int rc = 0;
    for (int i = 0; i < 4; i++) {
        if (only && strcmp(only, cases[i]))
            continue;
        if (!only && quick && (i == 1 || i == 2))
            continue;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            run_case(cases[i], reps, tmax, p1, pT);
            continue;
        }
        if (pid == 0) {
            run_case(cases[i], reps, tmax, p1, pT);
            fflush(stdout);
            _exit(0);
        }
        int stt = 0;
        waitpid(pid, &stt, 0);
        if (!WIFEXITED(stt) || WEXITSTATUS(stt) != 0) {
            printf("  case %s failed (status %d)\n", cases[i], stt);
            rc = 1;
        }
    }
    if ((det && !only) || det == 2)
        rc |= determinism_check();
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) == 3)
            printf("# load average at the end: %.2f %.2f %.2f\n", la[0], la[1], la[2]);
        fclose(f);
    }
    return rc;
}
