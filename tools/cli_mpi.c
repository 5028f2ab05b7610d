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
int cli_mpi_share(lrp_net *net, const char *path, int traces)
{
    (void)net, (void)path, (void)traces;
    return -1;
}
void cli_net_free(lrp_net *net) { lrp_net_free(net); }

#else /* LRP_MPI */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend_f32.h"
#include "kinds.h"

static int g_on, g_launched, g_rank, g_size = 1, g_local = 1;
static int g_err_fd = -1; /* this rank's real stderr (ranks > 0) */
static FILE *g_cap;       /* where stderr goes meanwhile (ranks > 0) */
static int *g_pair;       /* agree_counts: each rank's state and count */
static MPI_Comm g_node = MPI_COMM_NULL; /* the ranks of this node */
static int g_lrank;       /* this rank's place among them */

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
    /* kept for cli_mpi_share */
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &g_node) ==
        MPI_SUCCESS) {
        MPI_Comm_size(g_node, &g_local);
        MPI_Comm_rank(g_node, &g_lrank);
        widen_root(g_node);
    } else {
        g_node = MPI_COMM_NULL;
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
    if (g_node != MPI_COMM_NULL)
        MPI_Comm_free(&g_node);
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

/* ---- one copy of the weights a node (cli_mpi_share) ---- */

/* The net whose arrays are in a node's shared copy (one at a time). */
static struct {
    lrp_net *net;
    void *base;
    size_t len;
} g_sh;

/* One array of the shared copy: the net's slot holding it, its values,
 * its offset in the copy, and what it is (for a message). */
typedef struct share_item {
    float **slot;
    int64_t n;
    size_t off;
    int li;           /* its layer */
    const char *what; /* "weight", ..., or "relevance" / ... of a trace */
    const char *trace; /* the trace's source, or NULL for a parameter */
} share_item;

/* Walks the arrays the copy holds, in order, each at a 64-byte aligned
 * offset; at(ctx, item) for each when at is non-NULL.  Returns the total
 * bytes; *count the arrays.  Parameters always; with traces, every
 * trace's relevance, low parts and activations too. */
static size_t share_layout(lrp_net *net, int traces, size_t *count,
                           void (*at)(void *ctx, const share_item *it), void *ctx)
{
    size_t off = 0, k = 0;
    for (int li = 0; li < net->n_layers; li++) {
        lrp_layer *l = &net->layers[li];
        for (int w = 0; w < LRP_P_COUNT; w++) {
            lrp_shape sh;
            float **slot = lrp_layer_param_slot(l, w);
            if (!*slot || !lrp_layer_param_shape(net, li, w, &sh))
                continue;
            /* two names may fill one field (weight, in_proj_weight):
             * taken once, under the first name the layer has */
            int dup = 0;
            for (int u = 0; u < w && !dup; u++) {
                lrp_shape su;
                dup = lrp_layer_param_slot(l, u) == slot && lrp_layer_param_shape(net, li, u, &su);
            }
            share_item it = {slot, lrp_shape_numel(&sh), off, li, lrp_param_names[w], NULL};
            if (dup || it.n <= 0)
                continue;
            if (at)
                at(ctx, &it);
            off += ((size_t)it.n * sizeof(float) + 63) & ~(size_t)63;
            k++;
        }
    }
    for (int t = 0; traces && t < net->n_traces; t++) {
        lrp_trace *tr = &net->traces[t];
        float **arr[3] = {tr->relevance, tr->relevance_lo, tr->activation};
        static const char *const name[3] = {"relevance", "relevance_lo", "activation"};
        for (int a = 0; a < 3; a++)
            for (int li = 0; arr[a] && li < tr->n_layers && li < net->n_layers; li++) {
                share_item it = {&arr[a][li], (int64_t)net->batch *
                                                  lrp_shape_numel(&net->layers[li].shape),
                                 off, li, name[a], tr->source};
                if (!arr[a][li] || it.n <= 0)
                    continue;
                if (at)
                    at(ctx, &it);
                off += ((size_t)it.n * sizeof(float) + 63) & ~(size_t)63;
                k++;
            }
    }
    *count = k;
    return off;
}

typedef struct share_walk {
    int mode; /* 0 write into fd, 1 hash into h, 2 take base's, 3 the test's change */
    int fd, werr;        /* mode 0: the copy's file; a write failed */
    uint64_t *h;         /* mode 1: one hash an array */
    unsigned char *base; /* mode 2: the mapped copy */
    size_t k, last;      /* arrays seen; mode 3: the last one's index */
    size_t bad;          /* the array sought (its index) */
    share_item bad_it;   /* and what it is, once seen */
} share_walk;

static void share_at(void *ctx, const share_item *it)
{
    share_walk *s = ctx;
    size_t k = s->k++, bytes = (size_t)it->n * sizeof(float);
    if (k == s->bad)
        s->bad_it = *it;
    if (s->mode == 0) {
        const char *p = (const char *)*it->slot;
        off_t at = (off_t)it->off;
        while (bytes > 0 && !s->werr) {
            ssize_t w = pwrite(s->fd, p, bytes, at);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                s->werr = 1;
                break;
            }
            p += w;
            at += w;
            bytes -= (size_t)w;
        }
    } else if (s->mode == 1) {
        s->h[k] = lrp_f32_hash(*it->slot, it->n);
    } else if (s->mode == 2) {
        free(*it->slot);
        *it->slot = (float *)(void *)(s->base + it->off);
    } else if (s->mode == 3 && k == s->last) {
        /* LRP_MPI_TEST_SHARE_DIFF: the last value of the last array, one
         * ulp up, in this rank's own copy only */
        float *v = *it->slot + (it->n - 1);
        uint32_t u;
        memcpy(&u, v, sizeof u);
        u++;
        memcpy(v, &u, sizeof u);
    }
}

/* MIN over the node's ranks */
static int node_min(int v)
{
    int m = v;
    if (MPI_Allreduce(&v, &m, 1, MPI_INT, MPI_MIN, g_node) != MPI_SUCCESS)
        return 0;
    return m;
}

/* The node's part (every rank of g_node): -1 shared or not (both fine),
 * or EXIT_USAGE with this rank's line said. */
/* Every rank read the same values: the arrays the copy would hold, and
 * the batch's input and output relevance.  Each rank hashes what it read
 * (the fast path's memory-speed hash, 64 bits an array, all ranks at
 * once) and compares with rank 0's.  Ranks that read the file at other
 * times, or another file of the same path on another node (a stale
 * node-local copy), would each compute with their own values, and rank 0
 * would merge their blocks into one report: refused, naming the array.
 * A changed file is told, not a forgery.  -1, or EXIT_USAGE with this
 * rank's line said (every rank of the world calls it). */
static int same_inputs(lrp_net *net, const char *path, int traces)
{
    size_t count = 0, len = share_layout(net, traces, &count, NULL, NULL);
    int64_t nin = (int64_t)net->batch * lrp_shape_numel(&net->layers[0].shape);
    int64_t nout = (int64_t)net->batch * lrp_shape_numel(&net->layers[net->n_layers - 1].shape);
    unsigned long long mine[4] = {len, count, net->input ? (unsigned long long)nin : 0,
                                  net->r_out ? (unsigned long long)nout : 0},
                       lo[4], hi[4];
    if (MPI_Allreduce(mine, lo, 4, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD) !=
            MPI_SUCCESS ||
        MPI_Allreduce(mine, hi, 4, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        return -1;
    if (memcmp(lo, hi, sizeof lo) != 0) {
        fprintf(stderr,
                "lrp-oracle: %s: the ranks read networks, data or traces of different sizes (was "
                "the file replaced while they read it, or is it another file on another node?)\n",
                path);
        return EXIT_USAGE;
    }
    /* LRP_MPI_TEST_SHARE_DIFF=R (scripts/check_mpi.sh): world rank R's own
     * values differ from the others' by one ulp in their last array, as if
     * the file had changed between the ranks' reads */
    const char *td = getenv("LRP_MPI_TEST_SHARE_DIFF");
    if (td && atoi(td) == g_rank && count > 0) {
        share_walk tw = {.mode = 3, .last = count - 1, .bad = SIZE_MAX};
        share_layout(net, traces, &count, share_at, &tw);
    }
    size_t n = count + 2; /* the arrays, then the input and r_out */
    uint64_t *h = calloc(2 * n, sizeof *h);
    int ok = h != NULL && 2 * n * sizeof *h <= INT_MAX;
    if (ok) {
        share_walk hw = {.mode = 1, .h = h, .bad = SIZE_MAX};
        share_layout(net, traces, &count, share_at, &hw);
        h[count] = net->input ? lrp_f32_hash(net->input, nin) : 0;
        h[count + 1] = net->r_out ? lrp_f32_hash(net->r_out, nout) : 0;
        memcpy(h + n, h, n * sizeof *h);
    }
    int all = ok;
    if (MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS || !all ||
        MPI_Bcast(h + n, (int)(n * sizeof *h), MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(h);
        return ok ? -1 : cli_usage_error("mpi", "%s", "out of memory comparing the ranks' values");
    }
    size_t bad = SIZE_MAX;
    for (size_t k = 0; k < n && bad == SIZE_MAX; k++)
        if (h[k] != h[n + k])
            bad = k;
    free(h);
    if (bad == SIZE_MAX)
        return -1;
    const char *why = "(was the file changed while the ranks read it, or is it another file on "
                      "this rank's node?)";
    if (bad >= count) {
        fprintf(stderr, "lrp-oracle: %s: %s: rank %d read other values than rank 0 %s\n", path,
                bad == count ? "data/input" : "data/relevance_out", g_rank, why);
        return EXIT_USAGE;
    }
    share_walk bw = {.mode = 4, .bad = bad};
    share_layout(net, traces, &count, share_at, &bw);
    const share_item *b = &bw.bad_it;
    if (b->trace)
        fprintf(stderr, "lrp-oracle: %s: /traces/%s: layer '%s' %s: rank %d read other values "
                        "than rank 0 %s\n",
                path, b->trace, net->layers[b->li].name, b->what, g_rank, why);
    else
        fprintf(stderr, "lrp-oracle: %s: layer '%s' %s: rank %d read other values than rank 0 %s\n",
                path, net->layers[b->li].name, b->what, g_rank, why);
    return EXIT_USAGE;
}

/* The node's part (every rank of g_node), once same_inputs has found the
 * ranks' values alike: -1 shared or not (both fine). */
static int share_node(lrp_net *net, int traces)
{
    size_t count = 0, len = share_layout(net, traces, &count, NULL, NULL);
    if (len == 0)
        return -1;
    /* The node's first rank makes the object; the name travels to the
     * others, which open it; it is unlinked as soon as all have it open
     * (a rank killed later leaves nothing in /dev/shm), then written and
     * mapped. */
    static unsigned serial;
    struct {
        int ok;
        char name[64];
    } made = {0, ""};
    int fd = -1;
    if (g_lrank == 0) {
        snprintf(made.name, sizeof made.name, "/lrp-oracle-%ld-%u", (long)getpid(), serial++);
        fd = shm_open(made.name, O_RDWR | O_CREAT | O_EXCL, 0600);
        /* the room reserved now: a tmpfs short of it fails here, not with
         * SIGBUS at a later touch.  LRP_MPI_TEST_SHARE_NOROOM=1
         * (scripts/check_mpi.sh): as a /dev/shm too small for it */
        const char *nr = getenv("LRP_MPI_TEST_SHARE_NOROOM");
        int room = !(nr && strcmp(nr, "1") == 0);
        made.ok = fd >= 0 && ftruncate(fd, (off_t)len) == 0 && room &&
                  posix_fallocate(fd, 0, (off_t)len) == 0;
        if (fd >= 0 && !made.ok)
            shm_unlink(made.name);
    }
    if (MPI_Bcast(&made, (int)sizeof made, MPI_BYTE, 0, g_node) != MPI_SUCCESS)
        made.ok = 0;
    if (made.ok && g_lrank > 0)
        fd = shm_open(made.name, O_RDONLY, 0);
    int opened = node_min(made.ok && fd >= 0);
    if (g_lrank == 0 && made.ok)
        shm_unlink(made.name);
    void *base = MAP_FAILED;
    int wrote = 0;
    if (opened && g_lrank == 0) {
        /* written with pwrite, not through a mapping: a fault a 4 KiB
         * page of shared memory made the copy 0.3 GB/s (VGG-16 224:
         * 1.9 s, against 0.12 s) */
        share_walk ww = {.mode = 0, .fd = fd, .bad = SIZE_MAX};
        share_layout(net, traces, &count, share_at, &ww);
        wrote = !ww.werr;
    }
    if (opened && MPI_Bcast(&wrote, 1, MPI_INT, 0, g_node) != MPI_SUCCESS)
        wrote = 0;
    struct stat st;
    if (wrote && fstat(fd, &st) == 0 && (size_t)st.st_size == len)
        base = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (fd >= 0)
        close(fd);
    /* every rank mapped it, or none uses it */
    if (!opened || !node_min(base != MAP_FAILED)) {
        if (base != MAP_FAILED)
            munmap(base, len);
        return -1;
    }
    share_walk tw = {.mode = 2, .base = base, .bad = SIZE_MAX};
    share_layout(net, traces, &count, share_at, &tw);
    g_sh.net = net;
    g_sh.base = base;
    g_sh.len = len;
    return -1;
}

int cli_mpi_share(lrp_net *net, const char *path, int traces)
{
    if (!g_on || g_size == 1)
        return -1;
    int rc = same_inputs(net, path, traces);
    if ((rc = cli_mpi_agree(rc)) >= 0)
        return rc;
    if (g_node != MPI_COMM_NULL && g_local > 1 && !g_sh.net) {
        const char *e = getenv("LRP_MPI_SHARE");
        /* the node's ranks decide together (an environment set on one
         * rank alone must not split them) */
        if (node_min(!(e && strcmp(e, "0") == 0)))
            share_node(net, traces);
    }
    return -1;
}

/* the slot's array in the shared copy: forgotten (counted in *in) */
static void forget(float **slot, size_t *in, size_t *all)
{
    const unsigned char *b = g_sh.base, *v = (const unsigned char *)*slot;
    *all += v != NULL;
    if (v && v >= b && v < b + g_sh.len) {
        *slot = NULL;
        ++*in;
    }
}

void cli_net_free(lrp_net *net)
{
    if (net && net == g_sh.net) {
        size_t in = 0, all = 0;
        for (int li = 0; li < net->n_layers; li++)
            for (int w = 0; w < LRP_P_COUNT; w++) {
                /* a field two names fill, once */
                float **slot = lrp_layer_param_slot(&net->layers[li], w);
                int dup = 0;
                for (int u = 0; u < w && !dup; u++)
                    dup = lrp_layer_param_slot(&net->layers[li], u) == slot;
                if (!dup)
                    forget(slot, &in, &all);
            }
        for (int t = 0; t < net->n_traces; t++) {
            lrp_trace *tr = &net->traces[t];
            for (int li = 0; li < tr->n_layers; li++) {
                if (tr->relevance)
                    forget(&tr->relevance[li], &in, &all);
                if (tr->relevance_lo)
                    forget(&tr->relevance_lo[li], &in, &all);
                if (tr->activation)
                    forget(&tr->activation[li], &in, &all);
            }
        }
        /* LRP_MPI_TEST_SHARE_REPORT (scripts/check_mpi.sh): what this rank
         * read from the copy, to its own stderr */
        if (getenv("LRP_MPI_TEST_SHARE_REPORT"))
            dprintf(g_rank > 0 && g_err_fd >= 0 ? g_err_fd : STDERR_FILENO,
                    "lrp-oracle: mpi test: rank %d: %zu of %zu arrays in the node's copy\n",
                    g_rank, in, all);
        munmap(g_sh.base, g_sh.len);
        memset(&g_sh, 0, sizeof g_sh);
    }
    lrp_net_free(net);
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
