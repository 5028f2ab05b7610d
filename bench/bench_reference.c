/*
 * bench_reference.c -- throughput of the MPFR reference's accurate kernels:
 * ns per multiply-accumulate at p = 128 for a conv forward (den = z) and
 * the LRP-epsilon backward (R_i = a_i sum_j w_ij s_j), and z+'s denominator
 * (sum_i a_i w+_ij) and backward (sum_j w+_ij s_j, half of s zero), on a 64 -> 64, 3x3,
 * pad 1, 28x28 conv, with 1 and 2 threads, next to a naive mpfr_mul +
 * mpfr_add loop measured in the same run, and the peak memory.
 *
 *   build-ref/bench/bench_reference [C] [HW] [prec]
 *
 * The kernels are reached through the backend's vtable (reference.h), as
 * the pipeline reaches them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "reference.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t st = 42;
static uint64_t rnd(void)
{
    uint64_t z = (st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rsym(void) { return (float)((int64_t)(rnd() >> 40) - (1 << 23)) / (float)(1 << 23); }

int main(int argc, char **argv)
{
    int C = argc > 1 ? atoi(argv[1]) : 64, HW = argc > 2 ? atoi(argv[2]) : 28;
    int prec = argc > 3 ? atoi(argv[3]) : 128;
    lrp_lin L;
    memset(&L, 0, sizeof L);
    L.conv = 1;
    L.C = L.O = C;
    L.H = L.W = L.Ho = L.Wo = HW;
    L.kh = L.kw = 3;
    L.sh = L.sw = L.dh = L.dw = 1;
    L.pt = L.pl = 1;
    L.groups = 1;
    L.fanin = (int64_t)C * 9;
    L.n_in = L.n_out = (int64_t)C * HW * HW;
    int64_t nw = (int64_t)C * C * 9;
    float *w = malloc((size_t)nw * sizeof(float)), *b = malloc((size_t)C * sizeof(float));
    for (int64_t i = 0; i < nw; i++)
        w[i] = rsym() * 0.1f;
    for (int i = 0; i < C; i++)
        b[i] = rsym() * 0.01f;
    lrp_ref_ctx tcx;
    lrp_backend tbe; /* allocates the tensors (p bits) */
    lrp_ref_ctx_init(&tcx, prec, 1);
    lrp_ref_backend(&tbe, &tcx);
    mpfr_ptr W = tbe.tensor_new(&tcx, nw), B = tbe.tensor_new(&tcx, C);
    mpfr_ptr x = tbe.tensor_new(&tcx, L.n_in), y = tbe.tensor_new(&tcx, L.n_out);
    mpfr_ptr s = tbe.tensor_new(&tcx, L.n_out), r = tbe.tensor_new(&tcx, L.n_in);
    for (int64_t i = 0; i < nw; i++)
        mpfr_set_flt(W + i, w[i], MPFR_RNDN);
    for (int i = 0; i < C; i++)
        mpfr_set_flt(B + i, b[i], MPFR_RNDN);
    /* full p-bit activations (as after a previous layer); half are ReLU zeros */
    gmp_randstate_t gr;
    gmp_randinit_default(gr);
    for (int64_t i = 0; i < L.n_in; i++) {
        if (rnd() & 1)
            mpfr_set_zero(x + i, 1);
        else
            mpfr_urandomb(x + i, gr);
    }
    mpfr_ptr sz = tbe.tensor_new(&tcx, L.n_out);
    for (int64_t j = 0; j < L.n_out; j++) {
        mpfr_urandomb(s + j, gr);
        if (rnd() & 1)
            mpfr_neg(s + j, s + j, MPFR_RNDN);
        if (rnd() & 1)
            mpfr_set_zero(sz + j, 1);
        else
            mpfr_set(sz + j, s + j, MPFR_RNDN);
    }
    L.w = W;
    L.b = B;
    L.w32 = w;
    L.b32 = b;
    double macs = (double)L.n_out * (double)L.fanin; /* incl. padded taps (upper bound) */
    /* real MACs: taps inside the image */
    double real = 0;
    for (int oy = 0; oy < HW; oy++)
        for (int ox = 0; ox < HW; ox++)
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    int iy = oy - 1 + ky, ix = ox - 1 + kx;
                    real += iy >= 0 && iy < HW && ix >= 0 && ix < HW;
                }
    real *= (double)C * C;
    printf("bench_reference: conv %d->%d 3x3 pad 1 on %dx%d, p = %d, %.3g MACs (%.3g in-image)\n",
           C, C, HW, HW, prec, macs, real);

    /* naive: mpfr_mul + mpfr_add, each rounded, on a slice of outputs */
    {
        mpfr_t acc, t;
        mpfr_init2(acc, prec);
        mpfr_init2(t, prec);
        int64_t nout = L.n_out / 16 > 0 ? L.n_out / 16 : 1, cnt = 0;
        double t0 = now();
        for (int64_t j = 0; j < nout; j++) {
            int64_t o = j / (HW * HW), oy = (j / HW) % HW, ox = j % HW;
            mpfr_set(acc, B + o, MPFR_RNDN);
            for (int c = 0; c < C; c++)
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int64_t iy = oy - 1 + ky, ix = ox - 1 + kx;
                        if (iy < 0 || iy >= HW || ix < 0 || ix >= HW)
                            continue;
                        mpfr_mul(t, x + (c * HW + iy) * HW + ix, W + ((o * C + c) * 3 + ky) * 3 + kx,
                                 MPFR_RNDN);
                        mpfr_add(acc, acc, t, MPFR_RNDN);
                        cnt++;
                    }
            mpfr_set(y + j, acc, MPFR_RNDN);
        }
        double dt = now() - t0;
        printf("  naive mpfr_mul+mpfr_add loop (not correctly rounded), 1 thread: %6.1f ns/MAC\n",
               1e9 * dt / (double)cnt);
        mpfr_clear(acc);
        mpfr_clear(t);
    }
    lrp_term term = {LRP_IM_ID, LRP_WM_ID, 1.0f};
    lrp_bterm bt = {LRP_BM_ID, 1.0f};
    lrp_bwd_part part = {1.0f, s, &term, 1};
    for (int th = 1; th <= 2; th++) {
        lrp_ref_ctx cx;
        lrp_backend be;
        lrp_ref_ctx_init(&cx, prec, th);
        lrp_ref_backend(&be, &cx);
        double t0 = now();
        be.lin_fwd(&cx, y, &L, x, &term, 1, &bt, 1, 0, 1);
        double t1 = now();
        be.lin_bwd(&cx, r, &L, x, &part, 1, 1);
        double t2 = now();
        /* z+ (ZPlus): the denominator sum x w+ and the backward sum w+ s,
         * with s zero where half the outputs' relevance is (dead units) */
        lrp_term tp = {LRP_IM_ID, LRP_WM_POS, 1.0f};
        lrp_bwd_part pp = {1.0f, sz, &tp, 1};
        double t3 = now();
        be.lin_fwd(&cx, y, &L, x, &tp, 1, &bt, 0, 0, 1);
        double t4 = now();
        be.lin_bwd(&cx, r, &L, x, &pp, 1, 1);
        double t5 = now();
        printf("  exact (correctly rounded), %d thread%s: forward %6.2f ns/MAC (%.2f s), "
               "epsilon backward %6.2f ns/MAC (%.2f s)  [fast kernel calls %lld]\n"
               "                                        z+ denominator %6.2f ns/MAC (%.2f s), "
               "z+ backward, half of s zero %6.2f ns/MAC (%.2f s)\n",
               th, th > 1 ? "s" : " ", 1e9 * (t1 - t0) / real, t1 - t0, 1e9 * (t2 - t1) / real,
               t2 - t1, (long long)cx.fast_calls, 1e9 * (t4 - t3) / real, t4 - t3,
               1e9 * (t5 - t4) / real, t5 - t4);
    }
    {
        /* the exact slow kernel (exact products + mpfr_sum), on a smaller layer */
        lrp_ref_ctx cx;
        lrp_backend be;
        lrp_ref_ctx_init(&cx, prec, 1);
        cx.slow = 1;
        lrp_ref_backend(&be, &cx);
        lrp_lin L2 = L;
        int64_t keep = L.n_out / 16;
        double t0 = now();
        /* forward on the first `keep` outputs only: use n_out as the range */
        L2.n_out = L.n_out; /* geometry unchanged */
        (void)L2;
        be.lin_fwd(&cx, y, &L, x, &term, 1, &bt, 1, 0, 1);
        double t1 = now();
        printf("  exact slow kernel (mpfr_mul exact + mpfr_sum), 1 thread: forward %6.2f ns/MAC\n",
               1e9 * (t1 - t0) / real);
        (void)keep;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("  peak memory (ru_maxrss): %ld MiB\n", ru.ru_maxrss / 1024);
    gmp_randclear(gr);
    tbe.tensor_free(&tcx, W, nw);
    tbe.tensor_free(&tcx, B, C);
    tbe.tensor_free(&tcx, x, L.n_in);
    tbe.tensor_free(&tcx, y, L.n_out);
    tbe.tensor_free(&tcx, s, L.n_out);
    tbe.tensor_free(&tcx, sz, L.n_out);
    tbe.tensor_free(&tcx, r, L.n_in);
    free(w);
    free(b);
    return 0;
}
