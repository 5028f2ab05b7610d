/*
 * limits.c -- bounded resources for the work after the parse.
 *
 * A 16 KB fixture can declare tensors of gigabytes (HDF5 fill values: the
 * data need not be stored), and a Dense 16384 x 16384 in 477 KB was killed
 * by the OOM killer with no message.  So, before any LRP work:
 *
 *   1. the memory and CPU time of the command are estimated from the graph
 *      (parameters, activation cells, multiply-accumulates, precision) and
 *      a run above the limits is refused with exit 2 and one line saying
 *      what was estimated and which variable raises the limit;
 *   2. the process then runs under the same kind of limits as the sandboxed
 *      parse: RLIMIT_AS (the memory limit, plus the address space that
 *      thread stacks and malloc arenas reserve without using) and
 *      RLIMIT_CPU; exceeding either ends with one line and exit 2, not with
 *      the OOM killer (GMP's allocation failure, which would abort, is
 *      turned into that line too).
 *
 * Limits (docs/RELIABILITY.md section 3):
 *   LRP_SANDBOX_MEM_MB  memory in MiB, the parse's and the work's (8192)
 *   LRP_LIMIT_CPU       CPU seconds of the work, all threads (14400)
 *
 * The estimate's coefficients were measured on this project's machine
 * (peak RSS and user CPU time of `check`, `reference` and `fast` on dense
 * nets of 0.8M and 3.1M parameters and conv nets of 0.36M and 1.44M
 * activation cells; at p = 128): per parameter 165 / 54 / 9 bytes, per
 * activation cell (batch included) 600 / 81 / 16 bytes, per MAC (batch
 * included) 360 / 44 / 2 ns.  The fit is within about 15 % on those nets
 * and predicts the 4.0 GB measured for one compare of ResNet-50 at 64x64
 * (Makefile, mutants).  The MPFR parts grow with the precision's limbs.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <gmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sanitizer.h"

#define MEM_MB_DEFAULT 8192
#define CPU_S_DEFAULT 14400

long cli_env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    return (*end || v <= 0) ? dflt : v;
}

long cli_limit_mem_mb(void) { return cli_env_long("LRP_SANDBOX_MEM_MB", MEM_MB_DEFAULT); }
long cli_limit_cpu_s(void) { return cli_env_long("LRP_LIMIT_CPU", CPU_S_DEFAULT); }

/* bytes of one MPFR number of p bits (a 32-byte header and the limbs) */
static double mpfr_scale(int prec)
{
    double limbs = (double)((prec + 63) / 64);
    return 32.0 + 8.0 * limbs;
}

void cli_estimate(cli_estimate_t *e, const lrp_net *net, cli_work work, int prec, int proof)
{
    double params = 0, cells = 0, macs = 0;
    for (int i = 0; i < net->n_layers; i++) {
        params += (double)lrp_layer_param_count(net, i);
        cells += (double)lrp_shape_numel(&net->layers[i].shape);
        macs += (double)lrp_layer_macs(net, i);
    }
    cells *= net->batch;
    macs *= net->batch;
    /* the coefficients were measured at p = 128 (check/compare: with their
     * self-proof at p + 64, the default) */
    (void)proof;
    double s = mpfr_scale(prec) / mpfr_scale(128);
    double bp, bc, tm; /* bytes per parameter, per cell; seconds per MAC */
    switch (work) {
    case CLI_WORK_JUDGE:
        /* streamed oracle (December 2026): weights read in place, the
         * gauges emitted layer by layer; the peak is the MPFR runs.
         * Measured: check ResNet-50 64x64 0.58 GB, compare 0.42 GB,
         * compare ResNet-50 224 3.07 GB; this fit gives 0.66 / 0.66 /
         * 4.4 GB (a third of margin at 224) */
        bp = 12;
        bc = 30 + 80 * s;
        tm = 360e-9 * s;
        break;
    case CLI_WORK_REFERENCE:
        /* streamed since December 6, 2026 (tools/cmd_oracle.c take_trace):
         * weights read in place, the trace's binary32 arrays (12 bytes a
         * cell) and the run's layers in flight.  Measured: ResNet-50 224
         * 0.99 GiB, VGG-16 224 1.90 GiB, VGG-16 224 batch 8 11.35 GiB;
         * this fit gives 2.2 / 2.6 / 13.5 GiB.  (Before: 6 + 48 s a parameter,
         * 8 + 73 s a cell, for the run kept whole: VGG-16 at batch 1 was
         * refused under the default 8 GiB.) */
        bp = 8;
        bc = 8 + 50 * s;
        tm = 44e-9 * s;
        break;
    default:
        bp = 9;
        bc = 16;
        tm = 2e-9;
        break;
    }
    e->params = params;
    e->cells = cells;
    e->macs = macs;
    e->mem_mb = (16.0 * 1048576 + bp * params + bc * cells) / 1048576.0;
    e->cpu_s = tm * macs;
}

lrp_status cli_limits_check(const lrp_net *net, const char *path, const char *cmd,
                            cli_work work, int prec, int proof, lrp_err *err)
{
    cli_estimate_t e;
    cli_estimate(&e, net, work, prec, proof);
    long mem = cli_limit_mem_mb(), cpu = cli_limit_cpu_s();
    if (e.mem_mb > (double)mem)
        return lrp_err_set(err, LRP_E_UNSUPPORTED,
                           "%s: %s would need about %.0f MiB of memory (estimated from the graph: "
                           "%.3g parameters, %.3g activation cells, p = %d), above the limit of "
                           "%ld MiB; not started (raise LRP_SANDBOX_MEM_MB to run it)",
                           path, cmd, e.mem_mb, e.params, e.cells, prec, mem);
    if (e.cpu_s > (double)cpu)
        return lrp_err_set(err, LRP_E_UNSUPPORTED,
                           "%s: %s would need about %.0f s of CPU time (estimated from the graph: "
                           "%.3g multiply-accumulates, p = %d), above the limit of %ld s; not "
                           "started (raise LRP_LIMIT_CPU to run it)",
                           path, cmd, e.cpu_s, e.macs, prec, cpu);
    return LRP_OK;
}

/* ---- the limits on this process ---- */

/* where the handlers' last line goes (an MPI rank > 0 holds its stderr
 * back otherwise: tools/cli_mpi.c) */
int cli_err_fd = STDERR_FILENO;

static void on_xcpu(int sig)
{
    (void)sig;
    static const char msg[] = "lrp-oracle: stopped: the run exceeded its CPU-time limit "
                              "(LRP_LIMIT_CPU seconds)\n";
    ssize_t w = write(cli_err_fd, msg, sizeof msg - 1);
    (void)w;
    _exit(EXIT_USAGE);
}

static void oom_exit(void)
{
    static const char msg[] = "lrp-oracle: stopped: out of memory (the limit is "
                              "LRP_SANDBOX_MEM_MB MiB of address space)\n";
    ssize_t w = write(cli_err_fd, msg, sizeof msg - 1);
    (void)w;
    _exit(EXIT_USAGE);
}

static void *gmp_alloc(size_t n)
{
    void *p = malloc(n);
    if (!p && n)
        oom_exit();
    return p;
}

static void *gmp_realloc(void *p, size_t old, size_t n)
{
    (void)old;
    void *q = realloc(p, n);
    if (!q && n)
        oom_exit();
    return q;
}

static void gmp_free(void *p, size_t n)
{
    (void)n;
    free(p);
}

static void lower(int res, rlim_t soft, rlim_t hard)
{
    struct rlimit rl;
    if (getrlimit(res, &rl) != 0)
        return;
    if (rl.rlim_max != RLIM_INFINITY && hard > rl.rlim_max)
        hard = rl.rlim_max;
    if (soft > hard)
        soft = hard;
    if (rl.rlim_cur != RLIM_INFINITY && soft > rl.rlim_cur)
        return; /* already lower: keep */
    rl.rlim_cur = soft;
    rl.rlim_max = hard;
    setrlimit(res, &rl);
}

void cli_limits_apply(int threads)
{
    static int done;
    if (done || getenv("LRP_NO_SANDBOX"))
        return;
    done = 1;
    mp_set_memory_functions(gmp_alloc, gmp_realloc, gmp_free);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_xcpu;
    sigaction(SIGXCPU, &sa, NULL);
    rlim_t cpu = (rlim_t)cli_limit_cpu_s();
    lower(RLIMIT_CPU, cpu, cpu + 5);
    if (!LRP_UNDER_ASAN) { /* ASan reserves terabytes of address space */
        /* reserved, not used: 1 GiB for the libraries and libhdf5's
         * caches, 80 MiB per thread (8 MiB stack + a 64 MiB malloc arena) */
        rlim_t as = ((rlim_t)cli_limit_mem_mb() + 1024 + 80 * (rlim_t)(threads > 0 ? threads : 1))
                    << 20;
        lower(RLIMIT_AS, as, as);
    }
}
