/*
 * sandbox.c -- parsing untrusted files in a forked child.
 *
 * libhdf5 can crash or loop on corrupted files written with the default
 * ("earliest") format (docs/RELIABILITY.md section 0: 10 segfaults and 8 hangs in 10,322
 * single-byte flips), and Keras models or traces from other tools are such
 * files.  So the first parse of any file happens in a child process with a
 * CPU-time limit, an address-space limit and a wall-clock deadline; a crash,
 * a kill or a timeout there becomes one line "FILE: file is corrupt or
 * unsupported (...)" and exit code 2, instead of taking the CLI down.  A
 * file the child parsed cleanly is not parsed again: the child streams each
 * array to the parent as it reads it, then the network's structure
 * (cli_wire_send / cli_wire_recv below), and the parent checks that stream
 * as it would a file.  libhdf5 never runs on an untrusted file in the
 * parent.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "kinds.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "h5io_int.h"
#include "sanitizer.h"
#define UNDER_ASAN LRP_UNDER_ASAN

/* ---- the sandbox: fork, limits, a pipe back ---- */

/* The child's first byte on the pipe says what follows: an error message
 * (then it exits 10 + status) or a payload (then it exits 0). */
#define FRAME_ERROR 'E'
#define FRAME_PAYLOAD 'N'
#define FRAME_ARRAY 'A' /* an array read, streamed while the child parses */
#define FRAME_RAW 'R'   /* where an array's values lie in the file (cli_raw) */

static double remaining_ms(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return 1e3 * (double)(deadline->tv_sec - now.tv_sec) +
           1e-6 * (double)(deadline->tv_nsec - now.tv_nsec);
}

/* Reads exactly n bytes before the deadline (NULL: none).  0 on success,
 * -1 at end of file or on an error, -2 when the deadline passed. */
static int read_full(int fd, void *buf, size_t n, const struct timespec *deadline)
{
    unsigned char *p = buf;
    while (n > 0) {
        if (deadline) {
            double ms = remaining_ms(deadline);
            if (ms <= 0)
                return -2;
            struct pollfd pf = {fd, POLLIN, 0};
            int r = poll(&pf, 1, ms > 1e6 ? 1000000 : (int)ms + 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return -1;
            if (r == 0)
                continue; /* the deadline is checked above */
        }
        ssize_t got = read(fd, p, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

/* The child's error message: the rest of the stream, at most cap - 1 bytes. */
static void read_message(int fd, char *msg, size_t cap, const struct timespec *deadline,
                         int *timed_out)
{
    size_t n = 0;
    while (n + 1 < cap && read_full(fd, msg + n, 1, deadline) == 0)
        n++;
    msg[n] = '\0';
    if (deadline && remaining_ms(deadline) <= 0)
        *timed_out = 1;
}

static int write_full(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* What the parent does with a payload: reads it from fd before the
 * deadline; *timed_out set when the deadline passed.  Errors are
 * LRP_E_FORMAT with a message saying what was wrong with the payload. */
typedef lrp_status (*recv_fn)(void *ctx, int fd, int first, const struct timespec *deadline,
                              int *timed_out, char *msg, size_t msgcap, lrp_err *err);
/* What the child sends after fn succeeded. */
typedef lrp_status (*send_fn)(void *ctx, int fd, lrp_err *err);

/* In the sandboxed child, the pipe to the parent (else -1). */
static int sandbox_child_fd = -1;

#define SANDBOX_MEM_MIN_MB 64

static lrp_status sandbox_run(const char *path, lrp_status (*fn)(void *ctx, lrp_err *err),
                              send_fn send, recv_fn recv, void *ctx, lrp_err *err)
{
    long cpu_s = cli_env_long("LRP_SANDBOX_CPU", 60);
    long wall_s = cli_env_long("LRP_SANDBOX_WALL", 120);
    long mem_mb = cli_env_long("LRP_SANDBOX_MEM_MB", 8192);
    if (mem_mb < SANDBOX_MEM_MIN_MB && !UNDER_ASAN)
        /* libhdf5 and the loader need ~30 MiB of address space to start:
         * below that every file would fail in some allocation, reported as
         * whatever libhdf5 happened to be doing */
        return lrp_err_set(err, LRP_E_USAGE,
                           "%s: LRP_SANDBOX_MEM_MB=%ld is below the %d MiB the file parser needs "
                           "to start",
                           path, mem_mb, SANDBOX_MEM_MIN_MB);
    int fds[2];
    if (pipe(fds) != 0)
        return lrp_err_set(err, LRP_E_IO, "%s: cannot create pipe: %s", path, strerror(errno));
#ifdef F_SETPIPE_SZ
    if (send)
        (void)fcntl(fds[1], F_SETPIPE_SZ, 1 << 20); /* fewer switches for a big payload */
#endif
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return lrp_err_set(err, LRP_E_IO, "%s: cannot fork: %s", path, strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        /* the parent's handler (cli_limits_apply) would turn the child's
         * CPU-time signal into an exit code: the parse's limit is reported
         * as what it is */
        signal(SIGXCPU, SIG_DFL);
        struct rlimit rl;
        rl.rlim_cur = (rlim_t)cpu_s;
        rl.rlim_max = (rlim_t)cpu_s + 1;
        setrlimit(RLIMIT_CPU, &rl);
        if (!UNDER_ASAN) { /* ASan reserves terabytes of address space */
            rl.rlim_cur = rl.rlim_max = (rlim_t)mem_mb << 20;
            setrlimit(RLIMIT_AS, &rl);
        }
        rl.rlim_cur = rl.rlim_max = 0; /* no core dumps of a crashing parse */
        setrlimit(RLIMIT_CORE, &rl);
        /* the child reports through the pipe; whatever a crashing parser
         * prints would break the one-line contract -- except under ASan,
         * where the sanitizer's report from the child is the point of the
         * build (docs/RELIABILITY.md section 3): it reaches stderr before
         * the CLI's line */
        if (!UNDER_ASAN) {
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) {
                dup2(devnull, STDERR_FILENO);
                close(devnull);
            }
        }
        lrp_err e = {0};
        if (send)
            sandbox_child_fd = fds[1]; /* fn may stream arrays as it reads them */
        lrp_status st = fn(ctx, &e);
        if (st != LRP_OK) {
            char frame = FRAME_ERROR;
            (void)(write_full(fds[1], &frame, 1) || write_full(fds[1], e.msg, strlen(e.msg)));
        } else if (send) {
            st = send(ctx, fds[1], &e);
        }
        close(fds[1]);
        _exit(st == LRP_OK ? 0 : 10 + (int)st);
    }
    close(fds[1]);
    struct timespec t0, deadline;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    deadline = t0;
    deadline.tv_sec += wall_s;
    /* the child's report, read while it runs (a payload does not fit the
     * pipe): an error message, a payload, or nothing */
    char msg[LRP_ERR_MSG_MAX];
    msg[0] = '\0';
    char frame = 0;
    int timed_out = 0, payload = 0;
    lrp_status pst = LRP_OK;
    lrp_err pe = {0};
    int r = read_full(fds[0], &frame, 1, &deadline);
    if (r == -2) {
        timed_out = 1;
    } else if (r == 0 && frame == FRAME_ERROR) {
        read_message(fds[0], msg, sizeof msg, &deadline, &timed_out);
    } else if (r == 0 && (frame == FRAME_PAYLOAD || frame == FRAME_ARRAY || frame == FRAME_RAW) &&
               recv) {
        payload = 1;
        pst = recv(ctx, fds[0], frame, &deadline, &timed_out, msg, sizeof msg, &pe);
        if (msg[0]) /* the child failed after streaming arrays: its message */
            payload = 0, pst = LRP_OK;
    } else if (r == 0) {
        payload = 1;
        pst = lrp_err_set(&pe, LRP_E_FORMAT, "unexpected report");
    }
    /* a child blocked writing a payload the parent refused dies of SIGPIPE */
    close(fds[0]);
    /* wait with a wall-clock deadline */
    int status = 0, done = 0;
    while (!done && !timed_out) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            done = 1;
            break;
        }
        if (w < 0 && errno != EINTR) {
            break;
        }
        if (remaining_ms(&deadline) <= 0) {
            timed_out = 1;
            break;
        }
        struct timespec d = {0, 2000000}; /* 2 ms */
        nanosleep(&d, NULL);
    }
    if (timed_out && !done) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        done = 1;
    }
    if (timed_out)
        return lrp_err_set(err, LRP_E_FORMAT,
                           "%s: file is corrupt or unsupported (parsing did not finish in %ld s)",
                           path, wall_s);
    if (!done)
        return lrp_err_set(err, LRP_E_IO, "%s: lost the parsing process", path);
    if (WIFSIGNALED(status) && !(WTERMSIG(status) == SIGPIPE && pst != LRP_OK)) {
        int sig = WTERMSIG(status);
        return lrp_err_set(err, LRP_E_FORMAT,
                           "%s: file is corrupt or unsupported (the parser %s: signal %d, %s)",
                           path, sig == SIGXCPU ? "exceeded its CPU time" : "crashed", sig,
                           strsignal(sig));
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code > 10 && msg[0] && code - 10 == (int)LRP_E_NOMEM && !UNDER_ASAN)
        return lrp_err_set(err, LRP_E_NOMEM, "%s (the parse's limit: LRP_SANDBOX_MEM_MB=%ld MiB)",
                           msg, mem_mb);
    if (code > 10 && msg[0])
        return lrp_err_set(err, (lrp_status)(code - 10), "%s", msg);
    if (code != 0 && pst == LRP_OK)
        return lrp_err_set(err, LRP_E_FORMAT,
                           "%s: file is corrupt or unsupported (the parser exited with %d)", path,
                           code);
    if (pst != LRP_OK || (recv && !payload))
        return lrp_err_set(err, LRP_E_FORMAT,
                           "%s: file is corrupt or unsupported (the parser's result was refused: %s)",
                           path, pst != LRP_OK ? pe.msg : "no result");
    return LRP_OK;
}

lrp_status cli_sandboxed(const char *path, lrp_status (*fn)(void *ctx, lrp_err *err), void *ctx,
                         lrp_err *err)
{
    if (getenv("LRP_NO_SANDBOX"))
        return fn(ctx, err);
    return sandbox_run(path, fn, NULL, NULL, ctx, err);
}

void cli_phase(const char *what)
{
    static int on = -1;
    static struct timespec t0, prev;
    if (on < 0) {
        on = getenv("LRP_TIMING") != NULL;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        prev = t0;
    }
    if (!on)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    fprintf(stderr, "lrp-oracle: timing: %-24s %8.3f s (%8.3f s)\n", what,
            (double)(now.tv_sec - prev.tv_sec) + 1e-9 * (double)(now.tv_nsec - prev.tv_nsec),
            (double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec));
    prev = now;
}

/* The work the caller will do with the net (cli_load_expect): the child
 * refuses a net beyond the resource limits, so the parent never reads it */
static struct {
    const char *cmd;
    cli_work work;
    int prec, proof;
} expect;

void cli_load_expect(const char *cmd, cli_work work, int prec, int proof)
{
    expect.cmd = cmd;
    expect.work = work;
    expect.prec = prec;
    expect.proof = proof;
}

/* ---- the parsed net, from the sandboxed child to the parent ---- */

/* The child parses the file (libhdf5 runs only there), validates it and
 * writes the network through the pipe; the parent reads it straight into
 * the buffers it keeps.  The parent trusts the stream no more than a file:
 * a child that libhdf5 let a hostile file take over could write anything,
 * so every count, name, index and rule is checked (lrp_net_infer and the
 * checks below) before anything is sized from it, and a short, long or
 * garbled stream is an error, never a crash or a wait past the deadline.
 * Both ends are this program: host byte order, the structs as they are. */
#define WIRE_MAGIC "LRPWIRE\x01"
#define WIRE_END "LRPWEND\x01"

typedef struct wire_head {
    char magic[8];
    uint32_t what; /* CLI_LOAD_* */
    int32_t n_layers, batch, n_traces;
    uint32_t present; /* 1 r_out, 2 target, 4 zbox */
    uint64_t seed;
    char description[256];
    char composite[LRP_NAME_MAX];
} wire_head;

typedef struct wire_trace {
    char source[LRP_NAME_MAX], producer[128], notes[256], profile[LRP_NAME_MAX],
        composite[LRP_NAME_MAX];
    int32_t precision;
} wire_trace;

enum { WIRE_REL = 1, WIRE_LO = 2, WIRE_ACT = 4 };

static int64_t wire_numel(const lrp_shape *s, int batch)
{
    return lrp_shape_numel(s) * batch;
}

/* One array as a frame: 'A', its byte count (uint64), the values.  Frees
 * it when free_sent (the child's copy is not needed again). */
static int send_array(int fd, float **a, int64_t n, int free_sent)
{
    unsigned char head[9];
    uint64_t bytes = (uint64_t)n * sizeof(float);
    head[0] = FRAME_ARRAY;
    memcpy(head + 1, &bytes, 8);
    int r = write_full(fd, head, 9) || write_full(fd, *a, (size_t)bytes);
    if (free_sent) {
        free(*a);
        *a = NULL;
    }
    return r;
}

/* The arrays in the reader's order (lrp_h5_set_array_hook): parameters
 * layer by layer, input, relevance_out, zbox_low, zbox_high, then per
 * trace its relevance, relevance_lo and activation, each layer by layer. */
static int send_arrays(int fd, lrp_net *net, int free_sent)
{
    int bad = 0;
    for (int i = 0; !bad && i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        for (int w = 0; !bad && w < LRP_P_COUNT; w++) {
            lrp_shape ps;
            if (lrp_layer_param_shape(net, i, w, &ps))
                bad = send_array(fd, lrp_layer_param_slot(l, w), lrp_shape_numel(&ps), free_sent);
        }
    }
    const lrp_shape *ins = &net->layers[0].shape, *outs = &net->layers[net->n_layers - 1].shape;
    if (!bad)
        bad = send_array(fd, &net->input, wire_numel(ins, net->batch), free_sent);
    if (!bad && net->key_padding_mask) /* the reader's order: right after the input */
        bad = send_array(fd, &net->key_padding_mask, lrp_padding_T(net) * net->batch, free_sent);
    if (!bad && net->r_out)
        bad = send_array(fd, &net->r_out, wire_numel(outs, net->batch), free_sent);
    if (!bad && net->zbox_low)
        bad = send_array(fd, &net->zbox_low, lrp_shape_numel(ins), free_sent) ||
              send_array(fd, &net->zbox_high, lrp_shape_numel(ins), free_sent);
    for (int k = 0; !bad && k < net->n_traces; k++) {
        lrp_trace *t = &net->traces[k];
        float **g[3] = {t->relevance, t->relevance_lo, t->activation};
        for (int q = 0; q < 3; q++)
            for (int i = 0; !bad && g[q] && i < net->n_layers; i++)
                if (g[q][i])
                    bad = send_array(fd, &g[q][i], wire_numel(&net->layers[i].shape, net->batch),
                                     free_sent);
    }
    return bad;
}

/* The structure: 'N', the header, layers, traces (fields, rules, which
 * arrays each layer has), the target, relevance_out when the arrays are not
 * streamed, the end mark. */
static lrp_status send_structure(int fd, lrp_net *net, unsigned what, lrp_err *err)
{
    wire_head h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, WIRE_MAGIC, 8);
    h.what = what;
    h.n_layers = net->n_layers;
    h.batch = net->batch;
    h.n_traces = net->n_traces;
    h.present = (net->r_out ? 1u : 0u) | (net->target ? 2u : 0u) | (net->zbox_low ? 4u : 0u);
    h.seed = net->seed;
    memcpy(h.description, net->description, sizeof h.description);
    memcpy(h.composite, net->composite, sizeof h.composite);
    char frame = FRAME_PAYLOAD;
    int bad = write_full(fd, &frame, 1) || write_full(fd, &h, sizeof h);
    for (int i = 0; !bad && i < net->n_layers; i++)
        bad = write_full(fd, &net->layers[i], sizeof net->layers[i]);
    unsigned char *pres = malloc((size_t)net->n_layers);
    if (!pres)
        return lrp_err_set(err, LRP_E_NOMEM, "out of memory");
    for (int k = 0; !bad && k < net->n_traces; k++) {
        const lrp_trace *t = &net->traces[k];
        wire_trace wt;
        memset(&wt, 0, sizeof wt);
        memcpy(wt.source, t->source, sizeof wt.source);
        memcpy(wt.producer, t->producer, sizeof wt.producer);
        memcpy(wt.notes, t->notes, sizeof wt.notes);
        memcpy(wt.profile, t->profile, sizeof wt.profile);
        memcpy(wt.composite, t->composite, sizeof wt.composite);
        wt.precision = t->precision;
        for (int i = 0; i < net->n_layers; i++)
            pres[i] = (unsigned char)((t->relevance[i] ? WIRE_REL : 0) |
                                      (t->relevance_lo[i] ? WIRE_LO : 0) |
                                      (t->activation && t->activation[i] ? WIRE_ACT : 0));
        bad = write_full(fd, &wt, sizeof wt) ||
              write_full(fd, t->rules, (size_t)net->n_layers * sizeof *t->rules) ||
              write_full(fd, pres, (size_t)net->n_layers);
    }
    free(pres);
    if (!bad && net->target)
        bad = write_full(fd, net->target, (size_t)net->batch * sizeof *net->target);
    const lrp_shape *outs = &net->layers[net->n_layers - 1].shape;
    if (!bad && net->r_out && !(what & CLI_LOAD_ARRAYS))
        bad = write_full(fd, net->r_out, (size_t)wire_numel(outs, net->batch) * sizeof(float));
    if (!bad)
        bad = write_full(fd, WIRE_END, 8);
    return bad ? lrp_err_set(err, LRP_E_IO, "cannot send the parsed network: %s", strerror(errno))
               : LRP_OK;
}

lrp_status cli_wire_send(int fd, lrp_net *net, unsigned what, int free_sent, lrp_err *err)
{
    if ((what & CLI_LOAD_ARRAYS) && send_arrays(fd, net, free_sent))
        return lrp_err_set(err, LRP_E_IO, "cannot send the parsed network: %s", strerror(errno));
    return send_structure(fd, net, what, err);
}

static int terminated(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 when two of the n strings are equal. */
static int has_duplicate(const char **v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_names);
    for (int i = 1; i < n; i++)
        if (!strcmp(v[i - 1], v[i]))
            return 1;
    return 0;
}

static lrp_status wire_read(int fd, const struct timespec *deadline, int *timed_out, void *buf,
                            size_t n, const char *what, lrp_err *err)
{
    int r = read_full(fd, buf, n, deadline);
    if (r == -2)
        *timed_out = 1;
    return r ? lrp_err_set(err, LRP_E_FORMAT, "%s: %s", what, r == -2 ? "timed out" : "cut short")
             : LRP_OK;
}

static lrp_status wire_floats(int fd, const struct timespec *deadline, int *timed_out, float **dst,
                              int64_t n, const char *what, lrp_err *err)
{
    if (n < 1 || (uint64_t)n > SIZE_MAX / sizeof(float) / 2)
        return lrp_err_set(err, LRP_E_FORMAT, "%s: %lld values", what, (long long)n);
    if (!(*dst = malloc((size_t)n * sizeof(float))))
        return lrp_err_set(err, LRP_E_NOMEM, "%s: out of memory for %lld values", what,
                           (long long)n);
    return wire_read(fd, deadline, timed_out, *dst, (size_t)n * sizeof(float), what, err);
}

static int composite_ok(const char *name)
{
    lrp_composite_id id;
    return !name[0] || lrp_composite_parse(name, &id) == 0;
}

/* ---- arrays the parent reads from the file itself (FRAME_RAW) ---- */

/* The frame: 'R', then raw_head, dims[rank], chunk[rank] (uint64), per
 * chunk its address, stored size (uint64) and filter mask (uint32), then
 * the dataset's path (obj_len bytes, for messages). */
typedef struct raw_head {
    uint32_t rank, fletcher;
    uint64_t n_chunks;
    uint32_t obj_len, pad;
} raw_head;

typedef struct cli_raw_item {
    float **dst; /* the net's slot, filled by cli_raw_fill */
    uint32_t rank, fletcher;
    uint64_t n_chunks, cbytes; /* cbytes: one chunk's values, in bytes */
    uint64_t dims[LRP_MAX_RANK + 1], chunk[LRP_MAX_RANK + 1];
    uint64_t *addr, *size;
    uint32_t *mask;
    char obj[256];
} cli_raw_item;

static void raw_item_free(cli_raw_item *it)
{
    if (!it)
        return;
    free(it->addr);
    free(it->size);
    free(it->mask);
    free(it);
}

void cli_raw_free(cli_raw *raw)
{
    if (!raw)
        return;
    for (size_t k = 0; k < raw->n; k++) {
        free(raw->item[k].addr);
        free(raw->item[k].size);
        free(raw->item[k].mask);
    }
    free(raw->item);
    raw->item = NULL;
    raw->n = raw->cap = 0;
}

/* The child's side: the reader's hook (lrp_h5_set_raw_hook) sends the
 * description instead of the values. */
static int raw_send(int fd, const lrp_h5_raw *r)
{
    size_t ol = strlen(r->obj);
    if (ol > 255)
        ol = 255;
    raw_head h = {(uint32_t)r->rank, (uint32_t)r->fletcher, r->n_chunks, (uint32_t)ol, 0};
    char f = FRAME_RAW;
    int bad = write_full(fd, &f, 1) || write_full(fd, &h, sizeof h) ||
              write_full(fd, r->dims, (size_t)r->rank * 8) ||
              write_full(fd, r->chunk, (size_t)r->rank * 8);
    for (uint64_t k = 0; !bad && k < r->n_chunks; k++)
        bad = write_full(fd, &r->addr[k], 8) || write_full(fd, &r->size[k], 8) ||
              write_full(fd, &r->mask[k], 4);
    return bad || write_full(fd, r->obj, ol);
}

static lrp_status wire_read(int fd, const struct timespec *deadline, int *timed_out, void *buf,
                            size_t n, const char *what, lrp_err *err);

/* The parent's side: reads and checks a description (the child may lie:
 * every size is bounded, every chunk must lie inside the file). */
static lrp_status raw_recv(int fd, const struct timespec *deadline, int *timed_out,
                           const cli_raw *raw, cli_raw_item **out, int64_t *values, lrp_err *err)
{
    raw_head h;
    lrp_status st;
    cli_raw_item *it = NULL;
    *out = NULL;
#define RBAD(...)                                                                                \
    do {                                                                                         \
        st = lrp_err_set(err, LRP_E_FORMAT, __VA_ARGS__);                                        \
        goto fail;                                                                               \
    } while (0)
    if ((st = wire_read(fd, deadline, timed_out, &h, sizeof h, "raw array", err)))
        return st;
    if (!raw || raw->fd < 0)
        return lrp_err_set(err, LRP_E_FORMAT, "raw array: not asked for");
    if (h.rank < 1 || h.rank > LRP_MAX_RANK + 1 || h.fletcher > 1 || h.n_chunks < 1 ||
        h.n_chunks > LRP_H5_RAW_MAX_CHUNKS || h.obj_len > 255)
        return lrp_err_set(err, LRP_E_FORMAT, "raw array: bad header");
    if (!(it = calloc(1, sizeof *it)))
        return lrp_err_set(err, LRP_E_NOMEM, "out of memory");
    it->rank = h.rank;
    it->fletcher = h.fletcher;
    it->n_chunks = h.n_chunks;
    if ((st = wire_read(fd, deadline, timed_out, it->dims, (size_t)h.rank * 8, "raw array", err)) ||
        (st = wire_read(fd, deadline, timed_out, it->chunk, (size_t)h.rank * 8, "raw array", err)))
        goto fail;
    /* dimensions are bounded like the graph's (LRP_MAX_DIM each), so no
     * product below overflows; the chunk grid must be the one described */
    uint64_t grid = 1, total = 1, cvals = 1;
    for (uint32_t i = 0; i < h.rank; i++) {
        if (it->dims[i] < 1 || it->dims[i] > (uint64_t)LRP_MAX_DIM || it->chunk[i] < 1 ||
            it->chunk[i] > it->dims[i])
            RBAD("raw array: bad dimensions");
        total *= it->dims[i];
        cvals *= it->chunk[i];
        grid *= (it->dims[i] + it->chunk[i] - 1) / it->chunk[i];
        if (total > ((uint64_t)1 << 40) || cvals > ((uint64_t)1 << 28) ||
            grid > LRP_H5_RAW_MAX_CHUNKS)
            RBAD("raw array: too large");
    }
    if (grid != h.n_chunks)
        RBAD("raw array: %llu chunks, the grid has %llu", (unsigned long long)h.n_chunks,
             (unsigned long long)grid);
    it->cbytes = cvals * sizeof(float);
    if (!(it->addr = malloc(h.n_chunks * 8)) || !(it->size = malloc(h.n_chunks * 8)) ||
        !(it->mask = malloc(h.n_chunks * 4))) {
        st = lrp_err_set(err, LRP_E_NOMEM, "out of memory");
        goto fail;
    }
    for (uint64_t k = 0; k < h.n_chunks; k++) {
        if ((st = wire_read(fd, deadline, timed_out, &it->addr[k], 8, "raw array", err)) ||
            (st = wire_read(fd, deadline, timed_out, &it->size[k], 8, "raw array", err)) ||
            (st = wire_read(fd, deadline, timed_out, &it->mask[k], 4, "raw array", err)))
            goto fail;
        /* the stored size follows from the chunk and whether its checksum
         * was applied; with one filter only bit 0 of the mask means anything */
        uint64_t want = it->cbytes + (it->fletcher && !(it->mask[k] & 1u) ? 4 : 0);
        if ((it->mask[k] & ~1u) || it->size[k] != want || it->addr[k] > raw->size ||
            it->size[k] > raw->size - it->addr[k])
            RBAD("raw array: chunk %llu is not where the file has room for it",
                 (unsigned long long)k);
    }
    if ((st = wire_read(fd, deadline, timed_out, it->obj, h.obj_len, "raw array", err)))
        goto fail;
    it->obj[h.obj_len] = '\0';
    *values = (int64_t)total;
    *out = it;
    return LRP_OK;
fail:
#undef RBAD
    raw_item_free(it);
    return st;
}

/* pread of exactly n bytes at off: 0, -1 an error (errno), 1 the file ends first */
static int pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 1;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* One array's values from the file into dst (values it->dims). */
static lrp_status raw_read_item(const cli_raw *raw, const char *path, const cli_raw_item *it,
                                float *dst, unsigned char *tmp, lrp_err *err)
{
    unsigned char *d = (unsigned char *)dst;
    /* one chunk that is the whole array (contiguous storage, h5py's
     * chunks=shape): read in place, its checksum beside */
    int whole = it->n_chunks == 1;
    for (uint32_t i = 0; whole && i < it->rank; i++)
        whole = it->chunk[i] == it->dims[i];
    uint64_t off[LRP_MAX_RANK + 1] = {0};
    uint32_t R = it->rank;
    for (uint64_t k = 0; k < it->n_chunks; k++) {
        unsigned char *buf = whole ? d : tmp, sum[4];
        int r = pread_full(raw->fd, buf, (size_t)it->cbytes, it->addr[k]);
        if (r == 0 && it->size[k] == it->cbytes + 4)
            r = pread_full(raw->fd, sum, 4, it->addr[k] + it->cbytes);
        if (r < 0)
            return lrp_err_set(err, LRP_E_IO, "%s: %s: cannot read data: %s", path, it->obj,
                               strerror(errno));
        if (r > 0)
            return lrp_err_set(err, LRP_E_FORMAT,
                               "%s: %s: cannot read data (corrupt file?): the file ends inside "
                               "chunk %llu",
                               path, it->obj, (unsigned long long)k);
        if (it->size[k] == it->cbytes + 4) {
            /* as libhdf5 checks it: the stored sum little-endian, or with
             * the bytes of each half swapped (files of HDF5 1.6) */
            uint32_t f = lrp_h5_fletcher32(buf, (size_t)it->cbytes), s;
            const unsigned char *c = sum;
            s = (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24;
            uint32_t fr = ((f & 0x00ff00ffu) << 8) | ((f >> 8) & 0x00ff00ffu);
            if (s != f && s != fr)
                return lrp_err_set(err, LRP_E_FORMAT,
                                   "%s: %s: cannot read data (corrupt file?): chunk %llu fails "
                                   "its Fletcher32 checksum",
                                   path, it->obj, (unsigned long long)k);
        }
        if (whole)
            return LRP_OK;
        /* the chunk's rows along the last dimension, the part inside the
         * dataset copied to its place (pack_chunk in core/h5io.c, reversed) */
        uint64_t idx[LRP_MAX_RANK + 1] = {0};
        uint64_t row = it->chunk[R - 1] * 4, last_in = it->dims[R - 1] - off[R - 1];
        size_t keep = (size_t)((last_in < it->chunk[R - 1] ? last_in : it->chunk[R - 1]) * 4);
        const unsigned char *src = tmp;
        for (;;) {
            int inside = 1;
            uint64_t so = 0;
            for (uint32_t i = 0; i + 1 < R; i++) {
                if (off[i] + idx[i] >= it->dims[i])
                    inside = 0;
                so = so * it->dims[i] + off[i] + idx[i];
            }
            if (inside)
                memcpy(d + (so * it->dims[R - 1] + off[R - 1]) * 4, src, keep);
            src += row;
            int i = (int)R - 2;
            for (; i >= 0; i--) {
                if (++idx[i] < it->chunk[i])
                    break;
                idx[i] = 0;
            }
            if (i < 0)
                break;
        }
        for (int i = (int)R - 1; i >= 0; i--) {
            off[i] += it->chunk[i];
            if (off[i] < it->dims[i])
                break;
            off[i] = 0;
        }
    }
    return LRP_OK;
}

/* One reader of cli_raw_fill: the items k with part[k] == who, in order;
 * stops at its first failure (bad: that item's index). */
typedef struct raw_worker {
    cli_raw *raw;
    const char *path;
    const unsigned char *part;
    unsigned char who;
    size_t bad;
    lrp_status st;
    lrp_err err;
} raw_worker;

static void *raw_work(void *arg)
{
    raw_worker *w = arg;
    cli_raw *raw = w->raw;
    uint64_t tcap = 0;
    for (size_t k = 0; k < raw->n; k++)
        if (w->part[k] == w->who && raw->item[k].n_chunks > 1 && raw->item[k].cbytes > tcap)
            tcap = raw->item[k].cbytes;
    unsigned char *tmp = tcap ? malloc((size_t)tcap) : NULL;
    if (tcap && !tmp) {
        w->st = lrp_err_set(&w->err, LRP_E_NOMEM, "%s: out of memory", w->path);
        w->bad = 0;
        return NULL;
    }
    for (size_t k = 0; k < raw->n && !w->st; k++) {
        cli_raw_item *it = &raw->item[k];
        if (w->part[k] != w->who)
            continue;
        uint64_t n = 1;
        for (uint32_t i = 0; i < it->rank; i++)
            n *= it->dims[i];
        float *a = malloc((size_t)n * sizeof(float));
        if (!a)
            w->st = lrp_err_set(&w->err, LRP_E_NOMEM, "%s: %s: out of memory for %llu values",
                                w->path, it->obj, (unsigned long long)n);
        else
            *it->dst = a; /* the net owns it from here, filled or not */
        if (a)
            w->st = raw_read_item(raw, w->path, it, a, tmp, &w->err);
        if (w->st)
            w->bad = k;
    }
    free(tmp);
    return NULL;
}

lrp_status cli_raw_fill(cli_raw *raw, const char *path, lrp_err *err)
{
    /* Two readers when there is much to read (the page faults of the
     * fresh buffers are most of the cost, and they go in parallel), each
     * taking the next item while it holds fewer bytes; the error reported
     * is that of the first failing item, as one reader would meet it. */
    unsigned char *part = calloc(raw->n ? raw->n : 1, 1);
    if (!part)
        return lrp_err_set(err, LRP_E_NOMEM, "%s: out of memory", path);
    uint64_t load[2] = {0, 0};
    for (size_t k = 0; k < raw->n; k++) {
        uint64_t b = raw->item[k].n_chunks * raw->item[k].cbytes;
        part[k] = load[1] < load[0];
        load[part[k]] += b;
    }
    raw_worker w[2] = {{raw, path, part, 0, 0, LRP_OK, {0}}, {raw, path, part, 1, 0, LRP_OK, {0}}};
    pthread_t th;
    int two = load[0] + load[1] >= ((uint64_t)64 << 20) &&
              pthread_create(&th, NULL, raw_work, &w[1]) == 0;
    if (!two)
        for (size_t k = 0; k < raw->n; k++)
            part[k] = 0;
    raw_work(&w[0]);
    if (two)
        pthread_join(th, NULL);
    free(part);
    int q = w[0].st && (!w[1].st || w[0].bad < w[1].bad) ? 0 : 1;
    if (!w[q].st)
        return LRP_OK;
    if (err)
        *err = w[q].err;
    return w[q].st;
}

/* The arrays received before the structure, taken in the reader's order. */
typedef struct wire_arrays {
    float **a;
    int64_t *n;
    cli_raw_item **raw; /* an array the parent reads from the file, or NULL */
    size_t count, cap, next;
    double bytes;
} wire_arrays;

static lrp_status take(wire_arrays *A, cli_raw *raw, float **dst, int64_t n, lrp_err *err)
{
    if (A->next >= A->count || A->n[A->next] != n)
        return lrp_err_set(err, LRP_E_FORMAT, "arrays: array %zu does not fit the network",
                           A->next);
    if (A->raw[A->next]) {
        /* filled by cli_raw_fill once the child is gone */
        if (raw->n == raw->cap) {
            size_t cap = raw->cap ? 2 * raw->cap : 64;
            cli_raw_item *p = realloc(raw->item, cap * sizeof *p);
            if (!p)
                return lrp_err_set(err, LRP_E_NOMEM, "out of memory");
            raw->item = p;
            raw->cap = cap;
        }
        cli_raw_item *it = A->raw[A->next];
        it->dst = dst;
        raw->item[raw->n++] = *it;
        free(it); /* its arrays moved to the list */
        A->raw[A->next] = NULL;
        *dst = NULL;
        A->next++;
        return LRP_OK;
    }
    *dst = A->a[A->next];
    A->a[A->next++] = NULL;
    return LRP_OK;
}

lrp_status cli_wire_recv(int fd, int first, const struct timespec *deadline, int *timed_out,
                         unsigned what, const char *path, lrp_net **out, int **trace_layers,
                         cli_raw *raw, char *msg, size_t msgcap, lrp_err *err)
{
    wire_head h;
    lrp_status st;
    lrp_net *net = NULL;
    const char **names = NULL;
    unsigned char *pres = NULL;
    int *counts = NULL;
    wire_arrays A = {0};
    *out = NULL;
    if (trace_layers)
        *trace_layers = NULL;
#define RD(buf, n, what_) \
    if ((st = wire_read(fd, deadline, timed_out, buf, n, what_, err))) goto done
#define BAD(...) \
    do { st = lrp_err_set(err, LRP_E_FORMAT, __VA_ARGS__); goto done; } while (0)
    /* the arrays as the child reads them, then the structure */
    for (;;) {
        char frame;
        if (first >= 0) {
            frame = (char)first;
            first = -1;
        } else {
            RD(&frame, 1, "frame");
        }
        if (frame == FRAME_PAYLOAD)
            break;
        if (frame == FRAME_ERROR && msg) {
            read_message(fd, msg, msgcap, deadline, timed_out);
            BAD("the parser failed");
        }
        if ((frame != FRAME_ARRAY && frame != FRAME_RAW) || !(what & CLI_LOAD_ARRAYS))
            BAD("frame: unexpected");
        if (A.count == A.cap) {
            size_t cap = A.cap ? 2 * A.cap : 64;
            float **na = realloc(A.a, cap * sizeof *na);
            if (na)
                A.a = na;
            int64_t *nn = na ? realloc(A.n, cap * sizeof *nn) : NULL;
            if (nn)
                A.n = nn;
            cli_raw_item **nr = nn ? realloc(A.raw, cap * sizeof *nr) : NULL;
            if (!nr) {
                st = lrp_err_set(err, LRP_E_NOMEM, "out of memory");
                goto done;
            }
            A.raw = nr;
            A.cap = cap;
        }
        A.a[A.count] = NULL;
        A.raw[A.count] = NULL;
        if (frame == FRAME_RAW) {
            int64_t values = 0;
            A.n[A.count] = 0;
            if ((st = raw_recv(fd, deadline, timed_out, raw, &A.raw[A.count++], &values, err)))
                goto done;
            A.n[A.count - 1] = values;
            A.bytes += (double)values * sizeof(float);
            if (A.bytes > (double)cli_limit_mem_mb() * 1048576.0)
                BAD("array: %lld values, beyond the parser's memory limit", (long long)values);
            continue;
        }
        uint64_t bytes;
        RD(&bytes, 8, "array");
        A.bytes += (double)bytes;
        if (bytes == 0 || bytes % sizeof(float) ||
            A.bytes > (double)cli_limit_mem_mb() * 1048576.0)
            BAD("array: %llu bytes, beyond the parser's memory limit", (unsigned long long)bytes);
        A.n[A.count] = (int64_t)(bytes / sizeof(float));
        if ((st = wire_floats(fd, deadline, timed_out, &A.a[A.count++], (int64_t)(bytes / 4),
                              "array", err)))
            goto done;
    }
    RD(&h, sizeof h, "header");
    if (memcmp(h.magic, WIRE_MAGIC, 8) || h.what != what)
        BAD("header: not a network");
    if (h.n_layers < 2 || h.n_layers > LRP_MAX_LAYERS || h.batch < 1 || h.batch > LRP_MAX_BATCH ||
        h.n_traces < 0 || h.n_traces > LRP_H5_MAX_TRACES || (h.present & ~7u))
        BAD("header: counts out of range");
    if (!terminated(h.description, sizeof h.description) ||
        !terminated(h.composite, sizeof h.composite) || !composite_ok(h.composite))
        BAD("header: bad strings");
    if (!(net = lrp_net_new()) || !(net->layers = calloc((size_t)h.n_layers, sizeof *net->layers)) ||
        !(names = malloc((size_t)(h.n_layers > h.n_traces ? h.n_layers : h.n_traces + 1) *
                         sizeof *names)) ||
        !(pres = malloc((size_t)h.n_layers * (size_t)(h.n_traces + 1))) ||
        !(counts = calloc((size_t)h.n_traces + 1, sizeof *counts))) {
        st = lrp_err_set(err, LRP_E_NOMEM, "out of memory");
        goto done;
    }
    net->batch = h.batch;
    net->seed = h.seed;
    memcpy(net->description, h.description, sizeof net->description);
    memcpy(net->composite, h.composite, sizeof net->composite);
    for (int i = 0; i < h.n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        RD(l, sizeof *l, "layers");
        /* the child's pointers mean nothing here */
        l->w = l->b = l->bn_gamma = l->bn_beta = l->bn_mean = l->bn_var = NULL;
        l->w2 = l->b2 = NULL;
        net->n_layers = net->cap_layers = i + 1;
        if (!terminated(l->name, sizeof l->name) || !l->name[0] || strchr(l->name, '/') ||
            (unsigned)l->kind >= LRP_LAYER_COUNT || l->n_in < 0 || l->n_in > LRP_MAX_INPUTS ||
            l->shape.rank < 0 || l->shape.rank > LRP_MAX_RANK || l->target.rank < 0 ||
            l->target.rank > LRP_MAX_RANK)
            BAD("layer %d: bad fields", i);
        names[i] = l->name;
    }
    /* geometry, shapes, rules, input indices, single sink */
    if ((st = lrp_net_infer(net, path, err)))
        goto done;
    if (has_duplicate(names, net->n_layers))
        BAD("duplicate layer names");
    for (int k = 0; k < h.n_traces; k++) {
        wire_trace wt;
        char where[LRP_ERR_MSG_MAX];
        RD(&wt, sizeof wt, "trace");
        if (!terminated(wt.source, sizeof wt.source) || !wt.source[0] ||
            strchr(wt.source, '/') || !terminated(wt.producer, sizeof wt.producer) ||
            !terminated(wt.notes, sizeof wt.notes) || !terminated(wt.profile, sizeof wt.profile) ||
            !terminated(wt.composite, sizeof wt.composite) || !composite_ok(wt.composite) ||
            wt.precision < 1 || lrp_net_trace_find(net, wt.source) >= 0)
            BAD("trace %d: bad fields", k);
        lrp_trace *t = lrp_net_trace_add(net, wt.source, err);
        if (!t) {
            st = err->code;
            goto done;
        }
        memcpy(t->producer, wt.producer, sizeof t->producer);
        memcpy(t->notes, wt.notes, sizeof t->notes);
        memcpy(t->profile, wt.profile, sizeof t->profile);
        memcpy(t->composite, wt.composite, sizeof t->composite);
        t->precision = wt.precision;
        RD(t->rules, (size_t)net->n_layers * sizeof *t->rules, "trace rules");
        snprintf(where, sizeof where, "%s: trace %d", path, k);
        for (int i = 0; i < net->n_layers; i++)
            if ((st = lrp_rule_validate(&t->rules[i], net->layers[i].kind, where,
                                        net->layers[i].name, err)))
                goto done;
        unsigned char *p = pres + (size_t)k * (size_t)net->n_layers;
        RD(p, (size_t)net->n_layers, "trace layers");
        for (int i = 0; i < net->n_layers; i++) {
            if ((p[i] & ~7u) || ((p[i] & WIRE_LO) && !(p[i] & WIRE_REL)))
                BAD("trace %d: bad layer flags", k);
            counts[k] += (p[i] & WIRE_REL) != 0;
        }
    }
    /* sizes come from the checked graph; the work is within the limits */
    if (expect.cmd && (st = cli_limits_check(net, path, expect.cmd, expect.work, expect.prec,
                                             expect.proof, err)))
        goto done;
    {
        /* and the arrays fit where the child held them (its address space
         * was LRP_SANDBOX_MEM_MB): nothing larger is allocated here */
        double total = 2.0 * (double)lrp_shape_numel(&net->layers[0].shape);
        for (int i = 0; i < net->n_layers; i++) {
            double cells = (double)lrp_shape_numel(&net->layers[i].shape) * net->batch;
            total += (double)lrp_layer_param_count(net, i);
            for (int k = 0; k < h.n_traces; k++)
                total += cells * (double)__builtin_popcount(pres[(size_t)k * (size_t)net->n_layers +
                                                                 (size_t)i]);
            if (i == 0 || i == net->n_layers - 1)
                total += cells;
        }
        if (total * sizeof(float) > (double)cli_limit_mem_mb() * 1048576.0)
            BAD("%.3g values, more than the parser's memory limit holds", total);
    }
    const lrp_shape *outs = &net->layers[net->n_layers - 1].shape;
    if (h.present & 2) {
        if (!(net->target = malloc((size_t)net->batch * sizeof *net->target))) {
            st = lrp_err_set(err, LRP_E_NOMEM, "out of memory");
            goto done;
        }
        RD(net->target, (size_t)net->batch * sizeof *net->target, "target");
        int64_t nout = lrp_shape_numel(outs);
        for (int b = 0; b < net->batch; b++)
            if (net->target[b] < 0 || net->target[b] >= nout)
                BAD("target out of range");
    }
    if ((h.present & 1) && !(what & CLI_LOAD_ARRAYS) &&
        (st = wire_floats(fd, deadline, timed_out, &net->r_out, wire_numel(outs, net->batch),
                          "relevance_out", err)))
        goto done;
    if (what & CLI_LOAD_ARRAYS) {
        /* in the reader's order (send_arrays, lrp_h5_set_array_hook) */
        for (int i = 0; i < net->n_layers; i++) {
            lrp_layer *l = &net->layers[i];
            for (int w = 0; w < LRP_P_COUNT; w++) {
                lrp_shape ps;
                if (lrp_layer_param_shape(net, i, w, &ps) &&
                    (st = take(&A, raw, lrp_layer_param_slot(l, w), lrp_shape_numel(&ps), err)))
                    goto done;
            }
        }
        const lrp_shape *ins = &net->layers[0].shape;
        int64_t pT = lrp_padding_T(net);
        if ((st = take(&A, raw, &net->input, wire_numel(ins, net->batch), err)) ||
            (pT > 0 && (st = take(&A, raw, &net->key_padding_mask, pT * net->batch, err))) ||
            ((h.present & 1) && (st = take(&A, raw, &net->r_out, wire_numel(outs, net->batch), err))) ||
            ((h.present & 4) && ((st = take(&A, raw, &net->zbox_low, lrp_shape_numel(ins), err)) ||
                                 (st = take(&A, raw, &net->zbox_high, lrp_shape_numel(ins), err)))))
            goto done;
        for (int k = 0; k < net->n_traces; k++) {
            lrp_trace *t = &net->traces[k];
            const unsigned char *p = pres + (size_t)k * (size_t)net->n_layers;
            float **g[3] = {t->relevance, t->relevance_lo, t->activation};
            static const unsigned bit[3] = {WIRE_REL, WIRE_LO, WIRE_ACT};
            for (int q = 0; q < 3; q++)
                for (int i = 0; i < net->n_layers; i++)
                    if ((p[i] & bit[q]) &&
                        (st = take(&A, raw, &g[q][i], wire_numel(&net->layers[i].shape, net->batch),
                                   err)))
                        goto done;
        }
        if (A.next != A.count)
            BAD("arrays: %zu more than the network has", A.count - A.next);
    }
    char end[8];
    RD(end, 8, "end");
    if (memcmp(end, WIRE_END, 8))
        BAD("end: garbled");
    *out = net;
    net = NULL;
    if (trace_layers) {
        *trace_layers = counts;
        counts = NULL;
    }
done:
#undef RD
#undef BAD
    for (size_t k = 0; k < A.count; k++) {
        free(A.a[k]);
        raw_item_free(A.raw[k]);
    }
    free(A.a);
    free(A.n);
    free(A.raw);
    if (st != LRP_OK)
        cli_raw_free(raw); /* its slots were in the net just freed */
    lrp_net_free(net);
    free(names);
    free(pres);
    free(counts);
    return st;
}

/* ---- loading a fixture: parsed in the sandboxed child, handed over ---- */

struct load_ctx {
    const char *path;
    unsigned what;
    lrp_net *net;      /* the child's parse */
    lrp_net **out;     /* the parent's copy */
    int **trace_layers;
    int stream_bad;    /* the child could not send an array */
    cli_raw raw;       /* the file, opened before the fork; arrays read from it */
};

/* The child sends every array as soon as the reader has it: the parent
 * copies it into its own buffer on the other core while the parse goes on */
static void stream_array(void *vctx, const float *a, int64_t n)
{
    struct load_ctx *c = vctx;
    float *p = (float *)a;
    if (!c->stream_bad && send_array(sandbox_child_fd, &p, n, 0))
        c->stream_bad = 1;
}

/* ... or, for a dataset stored plainly, where its values lie: the parent
 * reads them itself (cli_raw) */
static int raw_array(void *vctx, const lrp_h5_raw *r)
{
    struct load_ctx *c = vctx;
    if (!c->stream_bad && raw_send(sandbox_child_fd, r))
        c->stream_bad = 1;
    return 1;
}

static lrp_status load_child(void *vctx, lrp_err *err)
{
    struct load_ctx *c = vctx;
    struct stat sb;
    if (sandbox_child_fd >= 0 && (c->what & CLI_LOAD_ARRAYS)) {
        lrp_h5_set_array_hook(stream_array, c);
        if (c->raw.fd >= 0 && fstat(c->raw.fd, &sb) == 0)
            lrp_h5_set_raw_hook(raw_array, c, (uint64_t)sb.st_dev, (uint64_t)sb.st_ino);
    }
    lrp_status st = lrp_fixture_read(&c->net, c->path, err);
    lrp_h5_set_array_hook(NULL, NULL);
    lrp_h5_set_raw_hook(NULL, NULL, 0, 0);
    if (st == LRP_OK && c->stream_bad)
        st = lrp_err_set(err, LRP_E_IO, "%s: cannot send the parsed network: %s", c->path,
                         strerror(errno));
    if (st == LRP_OK && expect.cmd)
        st = cli_limits_check(c->net, c->path, expect.cmd, expect.work, expect.prec, expect.proof,
                              err);
    return st;
}

static lrp_status load_send(void *vctx, int fd, lrp_err *err)
{
    struct load_ctx *c = vctx;
    /* the arrays went while the file was read: the structure follows */
    return send_structure(fd, c->net, c->what, err);
}

static lrp_status load_recv(void *vctx, int fd, int first, const struct timespec *deadline,
                            int *timed_out, char *msg, size_t msgcap, lrp_err *err)
{
    struct load_ctx *c = vctx;
    return cli_wire_recv(fd, first, deadline, timed_out, c->what, c->path, c->out,
                         c->trace_layers, &c->raw, msg, msgcap, err);
}

lrp_status cli_load_ex(lrp_net **out, const char *path, unsigned what, int **trace_layers,
                       lrp_err *err)
{
    struct load_ctx c = {path, what, NULL, out, trace_layers, 0, {-1, 0, NULL, 0, 0}};
    lrp_status st;
    *out = NULL;
    if (trace_layers)
        *trace_layers = NULL;
    /* tools/hugepages.c sets the tunable (read here, not called: tests
     * include this file alone) */
    const char *tun = getenv("GLIBC_TUNABLES");
    cli_phase(tun && strstr(tun, "glibc.malloc.hugetlb=1") ? "start (huge pages)" : "start");
    cli_limits_apply(2); /* this process and the work: the same limits */
    if (getenv("LRP_NO_SANDBOX")) {
        /* in-process: the parse is the net */
        if ((st = load_child(&c, err)) == LRP_OK) {
            *out = c.net;
            if (trace_layers && !(*trace_layers = calloc((size_t)c.net->n_traces + 1,
                                                         sizeof **trace_layers))) {
                lrp_net_free(c.net);
                *out = NULL;
                return lrp_err_set(err, LRP_E_NOMEM, "%s: out of memory", path);
            }
            for (int k = 0; trace_layers && k < c.net->n_traces; k++)
                for (int i = 0; i < c.net->n_layers; i++)
                    (*trace_layers)[k] += c.net->traces[k].relevance[i] != NULL;
        } else {
            lrp_net_free(c.net);
        }
        cli_phase("parse");
        return st;
    }
    if (what & CLI_LOAD_ARRAYS) {
        /* opened before the fork: the child checks that it parses this
         * file (device and inode); O_NONBLOCK: a FIFO must not block here */
        struct stat sb;
        c.raw.fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (c.raw.fd >= 0 && (fstat(c.raw.fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
            close(c.raw.fd);
            c.raw.fd = -1;
        }
        if (c.raw.fd >= 0)
            c.raw.size = (uint64_t)sb.st_size;
    }
    st = sandbox_run(path, load_child, load_send, load_recv, &c, err);
    cli_phase("parse (sandboxed) and hand-over");
    if (st == LRP_OK && c.raw.n > 0) {
        /* the child is gone: the values it pointed at, read here */
        st = cli_raw_fill(&c.raw, path, err);
        cli_phase("arrays read from the file");
    }
    /* checked here whatever the child said (it skips the check when it did
     * not read the values) */
    if (st == LRP_OK && (what & CLI_LOAD_ARRAYS))
        st = lrp_net_check_values(*out, path, err);
    cli_raw_free(&c.raw);
    if (c.raw.fd >= 0)
        close(c.raw.fd);
    if (st != LRP_OK) {
        lrp_net_free(*out);
        *out = NULL;
        if (trace_layers) {
            free(*trace_layers);
            *trace_layers = NULL;
        }
    }
    return st;
}

lrp_status cli_load(lrp_net **out, const char *path, lrp_err *err)
{
    return cli_load_ex(out, path, CLI_LOAD_ARRAYS, NULL, err);
}
