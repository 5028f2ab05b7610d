/*
 * cli_mpi.c -- the optional MPI layer of the CLI (tools/cli_mpi.h).  Without
 * LRP_MPI (the default build) one rank and no MPI symbol.
 */
#define _GNU_SOURCE
#include "cli_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include <unistd.h>

#ifndef LRP_MPI

int cli_isatty(int fd) { return isatty(fd); }

void cli_mpi_init(int *argc, char ***argv) { (void)argc, (void)argv; }
int cli_mpi_finish(int rc) { return rc; }
int cli_mpi_rank(void) { return 0; }
int cli_mpi_size(void) { return 1; }
int cli_mpi_local_size(void) { return 1; }
int cli_mpi_agree(int rc) { return rc; }
static int gather_rc(int rc, const void *buf, size_t n, void **all, size_t *total)
{
    *all = NULL;
    *total = 0;
    if (rc >= 0)
        return rc;
    *all = malloc(n ? n : 1);
    *total = n;
    if (!*all)
        return cli_usage_error("mpi", "%s", "out of memory gathering results");
    if (n)
        memcpy(*all, buf, n);
    return -1;
}
void cli_mpi_block(int64_t n, int64_t *first, int64_t *count)
{
    *first = 0;
    *count = n;
}
static int allgather_rc(int rc, const void *buf, size_t n, void **all, size_t *total)
{
    return gather_rc(rc, buf, n, all, total);
}

#else /* LRP_MPI */

#include <fcntl.h>
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

static int g_on, g_launched, g_rank, g_size = 1, g_local = 1;
static int g_err_fd = -1; /* this rank's real stderr (ranks > 0) */
static FILE *g_cap;       /* where stderr goes meanwhile (ranks > 0) */
static int *g_pair;       /* agree_counts: each rank's state and count */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Waits for a non-blocking collective: polls for 100 us, then sleeps
 * between polls.  A blocking Open MPI collective spins at full speed,
 * taking a core from the ranks (and threads) that still compute; sleeping
 * from the first poll cost every exchange a sleep's latency (at least
 * 20 us asked, about 60 us given), and a DenseNet-121 check under the
 * layer split makes about 17,000 exchanges (docs/SCALING.md, "Exchanges
 * without a sleep each"). */

static void lazy_wait(MPI_Request *rq)
{
    int done = 0;
    double t0 = now_s();
    while (now_s() - t0 < 100e-6) {
        MPI_Test(rq, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
    }
    long ns = 20000;
    for (;;) {
        MPI_Test(rq, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
        /* up to 0.25 ms between polls: with 2 ms a request from the root
         * to a rank asleep waited about a millisecond */
        if (ns < 250000)
            ns += ns / 4;
    }
}

/* Rank 0 runs the judgement's phases alone with the threads of every
 * rank of its node (lrp_check_split.root_threads) while they wait; a
 * launcher that binds each rank to its own cores (Open MPI's default for
 * -n 2: one core each) would hold those threads to rank 0's one core.
 * So rank 0 takes the union of its node's ranks' CPU sets (cores this
 * job was given), before any thread is made (the threads inherit it).
 * Measured: ResNet-50 112 check -n 2, rank 0's phases alone at 1.0 core
 * bound, docs/SCALING.md "Rank 0's cores".  A failure leaves the binding
 * as it was. */
static void widen_root(MPI_Comm node)
{
    cpu_set_t mine, u;
    int ok = sched_getaffinity(0, sizeof mine, &mine) == 0;
    if (!ok)
        CPU_ZERO(&mine); /* (adds nothing; and this rank keeps its own) */
    CPU_ZERO(&u);
    /* the node's union at its first rank (world rank 0 on its node: the
     * ranks are ordered by world rank) */
    if (MPI_Reduce(&mine, &u, (int)sizeof mine, MPI_BYTE, MPI_BOR, 0, node) != MPI_SUCCESS)
        return;
    if (g_rank == 0 && ok && CPU_COUNT(&u) > CPU_COUNT(&mine))
        sched_setaffinity(0, sizeof u, &u);
}

void cli_mpi_init(int *argc, char ***argv)
{
    int prov;
    /* started by a launcher, not as a singleton (then as the default build) */
    g_launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") ||
                 getenv("PMI_SIZE");
    /* only the main thread calls MPI; the compute threads never do */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &prov) != MPI_SUCCESS)
        return; /* MPI_Init aborts on failure by default; not reached */
    g_on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (!(g_pair = malloc(2 * (size_t)g_size * sizeof *g_pair))) {
        /* before any exchange, so no rank can be left waiting on this one */
        fprintf(stderr, "lrp-oracle: mpi: out of memory at start (rank %d)\n", g_rank);
        MPI_Abort(MPI_COMM_WORLD, EXIT_USAGE);
    }
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_size(node, &g_local);
        widen_root(node);
        MPI_Comm_free(&node);
    }
    if (g_rank > 0) {
        /* no stdout reports from ranks > 0; their stderr is held back */
        fflush(stdout);
        int dn = open("/dev/null", O_WRONLY);
        if (dn >= 0) {
            dup2(dn, STDOUT_FILENO);
            close(dn);
        }
        fflush(stderr);
        g_cap = tmpfile();
        g_err_fd = dup(STDERR_FILENO);
        if (g_cap && g_err_fd >= 0) {
            dup2(fileno(g_cap), STDERR_FILENO);
            cli_err_fd = g_err_fd;
        }
    }
}

int cli_mpi_rank(void) { return g_rank; }
int cli_isatty(int fd) { return !g_launched && isatty(fd); }
int cli_mpi_size(void) { return g_size; }
int cli_mpi_local_size(void) { return g_local; }

/* Rank > 0 that failed first: its last captured stderr line, once. */
static void replay_last_line(void)
{
    fflush(stderr);
    if (!g_cap || g_err_fd < 0)
        return;
    long end = lseek(STDERR_FILENO, 0, SEEK_END);
    if (end <= 0)
        return;
    long from = end > 4096 ? end - 4096 : 0;
    char buf[4097];
    ssize_t got = pread(STDERR_FILENO, buf, (size_t)(end - from), from);
    if (got <= 0)
        return;
    buf[got] = '\0';
    while (got > 0 && buf[got - 1] == '\n')
        buf[--got] = '\0';
    char *line = strrchr(buf, '\n');
    line = line ? line + 1 : buf;
    /* progress lines rewritten with '\r': the last piece */
    char *cr = strrchr(line, '\r');
    if (cr)
        line = cr + 1;
    dprintf(g_err_fd, "%s\n", line);
}

static void clear_capture(void)
{
    if (!g_cap)
        return;
    fflush(stderr);
    if (ftruncate(STDERR_FILENO, 0) == 0)
        lseek(STDERR_FILENO, 0, SEEK_SET);
}

/* LRP_MPI_TEST_FAIL=R (scripts/check_mpi.sh): rank R fails at its first
 * agreement with one line and exit 2, as a rank that met bad input would;
 * R:exit makes it leave at once without MPI_Finalize, as a crash would;
 * R@N (R@N:exit) at its N-th agreement instead of the first (a failure in
 * the middle of a run: every exchange of data begins with one). */
static int test_fail(int rc)
{
    static int done, calls;
    const char *s = getenv("LRP_MPI_TEST_FAIL");
    if (done || !s || atoi(s) != g_rank || rc >= 0)
        return rc;
    const char *at = strchr(s, '@');
    if (at && ++calls < atoi(at + 1))
        return rc;
    done = 1;
    fprintf(stderr, "lrp-oracle: mpi test: rank %d fails here (LRP_MPI_TEST_FAIL)\n", g_rank);
    if (strstr(s, ":exit")) {
        replay_last_line();
        _exit(EXIT_USAGE);
    }
    return EXIT_USAGE;
}

/* the end of an agreement: first is the lowest failing rank (-1: none),
 * code its exit code; that rank's held-back line reaches stderr once */
static int agreed(int first, int code)
{
    if (first >= 0 && first == g_rank && g_rank > 0)
        replay_last_line();
    clear_capture();
    return first < 0 ? -1 : code;
}

int cli_mpi_agree(int rc)
{
    if (!g_on || g_size == 1)
        return rc;
    rc = test_fail(rc);
    int mine = rc >= 0 ? g_rank : g_size, first = g_size;
    MPI_Request rq;
    MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &rq);
    lazy_wait(&rq);
    if (first == g_size)
        return agreed(-1, -1);
    int code = rc;
    MPI_Ibcast(&code, 1, MPI_INT, first, MPI_COMM_WORLD, &rq);
    lazy_wait(&rq);
    return agreed(first, code);
}

/* cli_mpi_agree and the ranks' byte counts in one collective (an
 * exchange's first step): every rank's state (-1 fine, else its exit code)
 * and count reach every rank.  Returns -1 with counts[r] set (counts may
 * be NULL where they are not needed), or the lowest failing rank's code,
 * as cli_mpi_agree.  (cli_mpi_agree itself keeps an all-reduce: it sends
 * one int a rank, not two a rank to every rank.) */
static int agree_counts(int rc, int cnt, int *counts)
{
    rc = test_fail(rc);
    int mine[2] = {rc, rc >= 0 ? 0 : cnt};
    MPI_Request rq;
    MPI_Iallgather(mine, 2, MPI_INT, g_pair, 2, MPI_INT, MPI_COMM_WORLD, &rq);
    lazy_wait(&rq);
    int first = -1;
    for (int r = 0; r < g_size && first < 0; r++)
        if (g_pair[2 * r] >= 0)
            first = r;
    for (int r = 0; first < 0 && counts && r < g_size; r++)
        counts[r] = g_pair[2 * r + 1];
    return agreed(first, first < 0 ? -1 : g_pair[2 * first]);
}

int cli_mpi_finish(int rc)
{
    if (!g_on)
        return rc;
    fflush(stdout);
    int code = cli_mpi_agree(rc < 0 || rc == EXIT_OK ? -1 : rc);
    /* a rank's nonzero code that is a verdict, not an error (exit 1 of a
     * failed check), is rank 0's to give: only rank 0 judges */
    MPI_Finalize();
    free(g_pair);
    g_pair = NULL;
    g_on = 0;
    return code < 0 ? EXIT_OK : code;
}

/* rc, or EXIT_USAGE (said) when this rank's n bytes exceed an MPI count */
static int share_rc(int rc, size_t n)
{
    if (rc < 0 && n > INT_MAX) {
        fprintf(stderr, "lrp-oracle: mpi: a rank's share of %zu bytes exceeds MPI's count range\n",
                n);
        rc = EXIT_USAGE;
    }
    return rc;
}

static int gather_rc(int rc0, const void *buf, size_t n, void **all, size_t *total)
{
    *all = NULL;
    *total = 0;
    if (!g_on || g_size == 1) {
        if (rc0 >= 0)
            return rc0;
        *all = malloc(n ? n : 1);
        if (!*all)
            return cli_usage_error("mpi", "%s", "out of memory gathering results");
        if (n)
            memcpy(*all, buf, n);
        *total = n;
        return -1;
    }
    int rc = share_rc(rc0, n);
    int cnt = rc < 0 ? (int)n : 0;
    int *counts = NULL, *displs = NULL;
    MPI_Request rq;
    if (g_rank == 0 && !(counts = calloc((size_t)g_size, sizeof *counts)))
        rc = cli_usage_error("mpi", "%s", "out of memory gathering results");
    if ((rc = agree_counts(rc, cnt, counts)) >= 0) {
        free(counts);
        return rc;
    }
    size_t sum = 0;
    if (g_rank == 0) {
        displs = calloc((size_t)g_size, sizeof *displs);
        for (int r = 0; r < g_size; r++) {
            if (sum > INT_MAX)
                rc = EXIT_USAGE;
            if (displs)
                displs[r] = (int)sum;
            sum += (size_t)counts[r];
        }
        if (rc >= 0 || sum > INT_MAX)
            rc = (fprintf(stderr, "lrp-oracle: mpi: %zu bytes gathered on rank 0 exceed MPI's "
                                  "count range\n", sum), EXIT_USAGE);
        else if (!displs || !(*all = malloc(sum ? sum : 1)))
            rc = cli_usage_error("mpi", "%s", "out of memory gathering results");
    }
    if ((rc = cli_mpi_agree(rc)) >= 0) {
        free(counts);
        free(displs);
        free(*all);
        *all = NULL;
        return rc;
    }
    MPI_Igatherv(buf, cnt, MPI_BYTE, *all, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD, &rq);
    lazy_wait(&rq);
    free(counts);
    free(displs);
    *total = sum;
    return -1;
}

/* As gather_rc, with the concatenation on every rank (the layer split's
 * exchanges: every rank computes from the whole tensor). */
static int allgather_rc(int rc0, const void *buf, size_t n, void **all, size_t *total)
{
    *all = NULL;
    *total = 0;
    if (!g_on || g_size == 1)
        return gather_rc(rc0, buf, n, all, total);
    int rc = share_rc(rc0, n);
    int cnt = rc < 0 ? (int)n : 0;
    int *counts = calloc((size_t)g_size, sizeof *counts);
    int *displs = calloc((size_t)g_size, sizeof *displs);
    MPI_Request rq;
    if (rc < 0 && (!counts || !displs))
        rc = cli_usage_error("mpi", "%s", "out of memory exchanging values");
    if ((rc = agree_counts(rc, cnt, counts)) >= 0) {
        free(counts);
        free(displs);
        return rc;
    }
    size_t sum = 0;
    for (int r = 0; r < g_size; r++) {
        displs[r] = sum <= INT_MAX ? (int)sum : 0;
        sum += (size_t)counts[r];
    }
    if (sum > INT_MAX)
        rc = (fprintf(stderr, "lrp-oracle: mpi: %zu bytes exchanged exceed MPI's count range\n",
                      sum), EXIT_USAGE);
    else if (!(*all = malloc(sum ? sum : 1)))
        rc = cli_usage_error("mpi", "%s", "out of memory exchanging values");
    if ((rc = cli_mpi_agree(rc)) >= 0) {
        free(counts);
        free(displs);
        free(*all);
        *all = NULL;
        return rc;
    }
    MPI_Iallgatherv(buf, cnt, MPI_BYTE, *all, counts, displs, MPI_BYTE, MPI_COMM_WORLD, &rq);
    lazy_wait(&rq);
    free(counts);
    free(displs);
    *total = sum;
    return -1;
}

void cli_mpi_block(int64_t n, int64_t *first, int64_t *count)
{
    int64_t q = n / g_size, m = n % g_size, r = g_rank;
    *count = q + (r < m);
    *first = r * q + (r < m ? r : m);
}

#endif /* LRP_MPI */

int cli_mpi_gather(const void *buf, size_t n, void **all, size_t *total)
{
    return gather_rc(-1, buf, n, all, total);
}

/* this rank's failure (fail non-NULL) for an exchange: its line, its code */
static int split_fail(cli_split *c, const char *fail)
{
    if (!fail)
        return -1;
    /* this rank's error line: on ranks > 0 it is held back and replayed
     * by the agreement when this rank is the first to fail; rank 0's
     * own error is its caller's to print (the one-process outcome) */
    c->self = 1;
    if (cli_mpi_rank() > 0 && fail[0])
        fprintf(stderr, "lrp-oracle: %s\n", fail);
    return EXIT_USAGE;
}

int cli_split_allgather(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                        size_t *total)
{
    cli_split *c = ctx;
    int rc = allgather_rc(split_fail(c, fail), buf, fail ? 0 : n, all, total);
    if (rc >= 0) {
        c->code = rc;
        return -1;
    }
    return 0;
}

int cli_split_gather(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                     size_t *total)
{
    cli_split *c = ctx;
    int rc = -1;
    if (fail) {
        /* this rank's error line: on ranks > 0 it is held back and replayed
         * by the agreement when this rank is the first to fail; rank 0's
         * own error is its report's (the one-process outcome) */
        c->self = 1;
        rc = EXIT_USAGE;
        if (cli_mpi_rank() > 0 && fail[0])
            fprintf(stderr, "lrp-oracle: %s\n", fail);
    }
    rc = gather_rc(rc, buf, fail ? 0 : n, all, total);
    if (rc >= 0) {
        c->code = rc;
        return -1;
    }
    return 0;
}
