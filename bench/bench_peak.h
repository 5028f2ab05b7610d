/*
 * bench_peak.h -- shared by the benchmarks: a monotonic clock and the
 * machine's measured float32 peak (24 independent AVX-512 FMA chains per
 * core, best of 7), against which kernel GFLOP/s are reported.
 * Header-only (static functions): each bench is one translation unit.
 */
#ifndef LRP_BENCH_PEAK_H
#define LRP_BENCH_PEAK_H

#include <immintrin.h>
#include <pthread.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

__attribute__((target("avx512f"))) static double fma_loop_avx512(long iters)
{
    __m512 a[24];
    for (int i = 0; i < 24; i++)
        a[i] = _mm512_set1_ps((float)i * 1e-3f);
    __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++)
            a[i] = _mm512_fmadd_ps(a[i], m, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 24; i++)
        s = _mm512_add_ps(s, a[i]);
    float out[16];
    _mm512_storeu_ps(out, s);
    return out[0];
}

static void *peak_thread(void *arg)
{
    double *res = arg;
    long iters = 4000000;
    double t0 = now();
    res[1] = fma_loop_avx512(iters);
    res[0] = (double)iters * 24 * 16 * 2 / (now() - t0) * 1e-9;
    return NULL;
}

/* GFLOP/s of nthreads (1 or 2) cores running the FMA loop at once. */
static double peak_once(int nthreads)
{
    if (!__builtin_cpu_supports("avx512f"))
        return 0.0;
    double res[2][2];
    pthread_t t;
    if (nthreads > 1)
        pthread_create(&t, NULL, peak_thread, res[1]);
    peak_thread(res[0]);
    double tot = res[0][0];
    if (nthreads > 1) {
        pthread_join(t, NULL);
        tot += res[1][0];
    }
    return tot;
}

static double peak_gflops(int nthreads)
{
    double best = 0.0;
    for (int i = 0; i < 7; i++) {
        double p = peak_once(nthreads);
        if (p > best)
            best = p;
    }
    return best;
}

#endif
