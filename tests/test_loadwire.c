/*
 * test_loadwire.c -- the parsed network as the sandboxed child hands it to
 * the parent (tools/sandbox.c, cli_wire_send / cli_wire_recv), and the
 * writer's own Fletcher32 (core/h5io.c).
 *
 *   - every suite fixture (with a trace added: relevance, low parts,
 *     activations) read by lrp_fixture_read, sent and received, is the same
 *     network bit for bit; the structure-only form (`info`) has no arrays
 *     and the right trace counts; cli_load (the real fork) gives the same
 *     network as lrp_fixture_read;
 *   - the stream is untrusted (a child taken over by a hostile file can
 *     write anything): every truncation and a seeded sample of byte flips
 *     and random bytes must give an error with a one-line message or a
 *     network that passes lrp_net_infer -- never a crash (ASan build) and
 *     never an allocation beyond LRP_SANDBOX_MEM_MB;
 *   - a silent writer is given up at the deadline;
 *   - the writer in two steps (begin, the trace added, finish) writes the
 *     same file as one write of the final net;
 *   - arrays the parent reads from the file itself (cli_raw): datasets
 *     stored in small uneven chunks with and without Fletcher32, contiguous
 *     and gzip-compressed (not raw: read by the child) load as the
 *     in-process reader reads them; a flipped byte in a checksummed chunk
 *     is the file's error naming the dataset; hostile descriptions from
 *     the child are refused;
 *   - the writer's file driver (core/h5sink.c) writes what the core
 *     driver's image holds, byte for byte, and a write the file system
 *     refuses is one error with no file left behind;
 *   - lrp_h5_fletcher32 equals libhdf5's H5_checksum_fletcher32 on every
 *     length 0..4096 and on large buffers of random, all-0xff and zero
 *     bytes (the folds' representatives of 0 differ: 0 and 0xffff).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "fixtures.h"
#include "kinds.h"
#include "h5io_int.h"
#include "safeout.h"
#include "util/testutil.h"

#include "../tools/limits.c"
#include "../tools/sandbox.c"

/* libhdf5's own (exported, not in its public headers) */
extern uint32_t H5_checksum_fletcher32(const void *data, size_t len);

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp("loadwire");
    setenv("LRP_SANDBOX_MEM_MB", "256", 1);
    unsetenv("LRP_NO_SANDBOX");
    return dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A suite fixture with a full trace, written and read back. */
static lrp_net *fixture_with_trace(int k, char *path, size_t n)
{
    lrp_net *net = NULL;
    lrp_err e = {0};
    assert_int_equal(lrp_fixture_defs[k].build(&net, LRP_FIXTURE_SEED, &e), LRP_OK);
    lrp_trace *t = lrp_net_trace_add(net, "wiretest", &e);
    assert_non_null(t);
    snprintf(t->producer, sizeof t->producer, "test_loadwire");
    t->precision = 24;
    for (int i = 0; i < net->n_layers; i++) {
        int64_t c = lrp_shape_numel(&net->layers[i].shape) * net->batch;
        if (i % 3 == 2)
            continue; /* some layers not traced */
        t->relevance[i] = malloc((size_t)c * sizeof(float));
        t->activation[i] = malloc((size_t)c * sizeof(float));
        if (i % 2)
            t->relevance_lo[i] = malloc((size_t)c * sizeof(float));
        for (int64_t j = 0; j < c; j++) {
            t->relevance[i][j] = (float)(int32_t)next() * 0x1p-31f;
            t->activation[i][j] = (float)j;
            if (t->relevance_lo[i])
                t->relevance_lo[i][j] = 0x1p-40f * (float)(j % 7);
        }
    }
    snprintf(path, n, "%s/%s.h5", dir, lrp_fixture_defs[k].name);
    assert_int_equal(lrp_fixture_write(net, path, &e), LRP_OK);
    lrp_net_free(net);
    net = NULL;
    if (lrp_fixture_read(&net, path, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    return net;
}

static void same_floats(const float *a, const float *b, int64_t n, const char *what)
{
    if (!a || !b) {
        if (a != b)
            fail_msg("%s: present on one side only", what);
        return;
    }
    if (memcmp(a, b, (size_t)n * sizeof(float)))
        fail_msg("%s: values differ", what);
}

static void same_net(const lrp_net *a, const lrp_net *b, int arrays)
{
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->batch, b->batch);
    assert_true(a->seed == b->seed);
    assert_string_equal(a->description, b->description);
    assert_string_equal(a->composite, b->composite);
    for (int i = 0; i < a->n_layers; i++) {
        const lrp_layer *x = &a->layers[i], *y = &b->layers[i];
        lrp_layer xc = *x, yc = *y;
        xc.w = xc.b = xc.bn_gamma = xc.bn_beta = xc.bn_mean = xc.bn_var = NULL;
        yc.w = yc.b = yc.bn_gamma = yc.bn_beta = yc.bn_mean = yc.bn_var = NULL;
        xc.w2 = xc.b2 = yc.w2 = yc.b2 = NULL;
        assert_memory_equal(&xc, &yc, sizeof xc);
        for (int w = 0; w < LRP_P_COUNT; w++) {
            const float *px = lrp_layer_param(x, w), *py = lrp_layer_param(y, w);
            lrp_shape s;
            if (!lrp_layer_param_shape(a, i, w, &s))
                continue;
            if (arrays)
                same_floats(px, py, lrp_shape_numel(&s), x->name);
            else
                assert_null(py);
        }
    }
    int64_t nin = lrp_shape_numel(&a->layers[0].shape);
    int64_t nout = lrp_shape_numel(&a->layers[a->n_layers - 1].shape);
    same_floats(a->r_out, b->r_out, nout * a->batch, "r_out");
    assert_true(!a->target == !b->target);
    if (a->target)
        assert_memory_equal(a->target, b->target, (size_t)a->batch * sizeof *a->target);
    if (arrays) {
        same_floats(a->input, b->input, nin * a->batch, "input");
        same_floats(a->zbox_low, b->zbox_low, nin, "zbox_low");
        same_floats(a->zbox_high, b->zbox_high, nin, "zbox_high");
    } else {
        assert_null(b->input);
        assert_null(b->zbox_low);
    }
    assert_int_equal(a->n_traces, b->n_traces);
    for (int k = 0; k < a->n_traces; k++) {
        const lrp_trace *s = &a->traces[k], *t = &b->traces[k];
        assert_string_equal(s->source, t->source);
        assert_string_equal(s->producer, t->producer);
        assert_string_equal(s->notes, t->notes);
        assert_string_equal(s->profile, t->profile);
        assert_string_equal(s->composite, t->composite);
        assert_int_equal(s->precision, t->precision);
        assert_memory_equal(s->rules, t->rules, (size_t)a->n_layers * sizeof *s->rules);
        for (int i = 0; i < a->n_layers; i++) {
            int64_t c = lrp_shape_numel(&a->layers[i].shape) * a->batch;
            if (arrays) {
                same_floats(s->relevance[i], t->relevance[i], c, "relevance");
                same_floats(s->relevance_lo[i], t->relevance_lo[i], c, "relevance_lo");
                same_floats(s->activation[i], t->activation[i], c, "activation");
            } else {
                assert_null(t->relevance[i]);
            }
        }
    }
}

/* The stream of net (what) as bytes (in memory: thousands of cases). */
static unsigned char *wire_bytes(lrp_net *net, unsigned what, size_t *len)
{
    lrp_err e = {0};
    int fd = memfd_create("wire", 0);
    assert_true(fd >= 0);
    assert_int_equal(cli_wire_send(fd, net, what, 0, &e), LRP_OK);
    off_t n = lseek(fd, 0, SEEK_END);
    unsigned char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(pread(fd, b, (size_t)n, 0), n);
    close(fd);
    *len = (size_t)n;
    return b;
}

/* Receives bytes[0..n) as a stream. */
static lrp_status wire_recv_bytes(const unsigned char *bytes, size_t n, unsigned what,
                                  lrp_net **out, int **counts, lrp_err *e)
{
    int fd = memfd_create("wire", 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, n), (ssize_t)n);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    int timed_out = 0;
    lrp_status st = cli_wire_recv(fd, -1, NULL, &timed_out, what, "x.h5", out, counts, NULL, NULL, 0, e);
    close(fd);
    assert_int_equal(timed_out, 0);
    return st;
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int k = 0; k < lrp_fixture_count; k++) {
        char path[4200];
        lrp_net *net = fixture_with_trace(k, path, sizeof path);
        for (unsigned what = 0; what <= CLI_LOAD_ARRAYS; what++) {
            size_t n;
            unsigned char *bytes = wire_bytes(net, what, &n);
            lrp_net *got = NULL;
            int *counts = NULL;
            lrp_err e = {0};
            if (wire_recv_bytes(bytes, n, what, &got, &counts, &e) != LRP_OK)
                fail_msg("%s: %s", lrp_fixture_defs[k].name, e.msg);
            same_net(net, got, what & CLI_LOAD_ARRAYS);
            for (int t = 0; t < net->n_traces; t++) {
                int have = 0;
                for (int i = 0; i < net->n_layers; i++)
                    have += net->traces[t].relevance[i] != NULL;
                assert_int_equal(counts[t], have);
            }
            free(counts);
            lrp_net_free(got);
            free(bytes);
        }
        /* through the real sandbox (fork, pipe, deadline) */
        lrp_net *viafork = NULL;
        lrp_err e = {0};
        if (cli_load(&viafork, path, &e) != LRP_OK)
            fail_msg("%s: %s", lrp_fixture_defs[k].name, e.msg);
        same_net(net, viafork, 1);
        lrp_net_free(viafork);
        lrp_net_free(net);
    }
}

/* The writer in two steps (lrp-oracle fast: the copy is built while the
 * trace is computed) writes the same bytes as one write of the final net. */
static void test_split_write_same_file(void **state)
{
    (void)state;
    for (int k = 0; k < lrp_fixture_count; k++) {
        char path[4200], one[4200], two[4200];
        lrp_net *net = fixture_with_trace(k, path, sizeof path);
        snprintf(one, sizeof one, "%s/one.h5", dir);
        snprintf(two, sizeof two, "%s/two.h5", dir);
        lrp_err e = {0};
        lrp_h5_writer *h = NULL;
        assert_int_equal(lrp_h5_write_begin(&h, net, two, NULL, "late", &e), LRP_OK);
        lrp_trace *t = lrp_net_trace_add(net, "late", &e);
        assert_non_null(t);
        snprintf(t->producer, sizeof t->producer, "test");
        t->precision = 24;
        int64_t c = lrp_shape_numel(&net->layers[0].shape) * net->batch;
        t->relevance[0] = calloc((size_t)c, sizeof(float));
        assert_non_null(t->relevance[0]);
        if (lrp_h5_write_finish(h, net, &e) != LRP_OK)
            fail_msg("%s", e.msg);
        assert_int_equal(lrp_fixture_write(net, one, &e), LRP_OK);
        if (!tu_files_equal(one, two))
            fail_msg("%s: the two-step write differs from the one-step write",
                     lrp_fixture_defs[k].name);
        /* an abort leaves nothing behind */
        assert_int_equal(lrp_h5_write_begin(&h, net, two, NULL, NULL, &e), LRP_OK);
        lrp_h5_write_abort(h);
        assert_int_equal(tu_count_entries(dir, LRP_TMP_MARK), 0);
        lrp_net_free(net);
    }
}

static void check_outcome(lrp_status st, lrp_net *got, const lrp_err *e, const char *what)
{
    if (st != LRP_OK) {
        size_t len = strlen(e->msg);
        if (!len || strchr(e->msg, '\n'))
            fail_msg("%s: bad message '%s'", what, e->msg);
        assert_null(got);
        return;
    }
    /* accepted: a network the graph accepts */
    lrp_err e2 = {0};
    assert_non_null(got);
    assert_int_equal(lrp_net_infer(got, "x", &e2), LRP_OK);
}

static void test_hostile_stream(void **state)
{
    (void)state;
    static const char *const names[] = {"cnn", "resnet", "mlp", "captum_cat"};
    for (size_t f = 0; f < sizeof names / sizeof *names; f++) {
        const lrp_fixture_def *d = lrp_fixture_lookup(names[f]);
        if (!d)
            continue;
        char path[4200];
        lrp_net *net = fixture_with_trace((int)(d - lrp_fixture_defs), path, sizeof path);
        size_t n;
        unsigned char *bytes = wire_bytes(net, CLI_LOAD_ARRAYS, &n);
        unsigned char *copy = malloc(n);
        assert_non_null(copy);
        int accepted = 0, refused = 0;
        /* every cut inside the header and the layers; then every 97th */
        for (size_t cut = 0; cut < n; cut += cut < 8192 ? 1 : 97) {
            lrp_net *got = NULL;
            lrp_err e = {0};
            lrp_status st = wire_recv_bytes(bytes, cut, CLI_LOAD_ARRAYS, &got, NULL, &e);
            assert_int_not_equal(st, LRP_OK); /* a cut stream is never complete */
            check_outcome(st, got, &e, "cut");
            refused++;
        }
        /* flips and random bytes, mostly in the structure */
        for (int r = 0; r < 3000; r++) {
            memcpy(copy, bytes, n);
            int k = 1 + (int)(next() % 4);
            for (int j = 0; j < k; j++) {
                size_t at = (next() % 4 == 0) ? next() % n : next() % (n < 16384 ? n : 16384);
                copy[at] = (r % 2) ? (unsigned char)(copy[at] ^ (1u << (next() % 8)))
                                   : (unsigned char)next();
            }
            lrp_net *got = NULL;
            lrp_err e = {0};
            lrp_status st = wire_recv_bytes(copy, n, CLI_LOAD_ARRAYS, &got, NULL, &e);
            check_outcome(st, got, &e, "flip");
            if (st == LRP_OK)
                accepted++;
            else
                refused++;
            lrp_net_free(got);
        }
        printf("  %s: %zu-byte stream, %d refused, %d accepted (values or padding changed)\n",
               names[f], n, refused, accepted);
        free(copy);
        free(bytes);
        lrp_net_free(net);
    }
}

static void test_silent_writer_times_out(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    /* the start of the structure, then nothing, the write end kept open */
    char part[16] = "NLRPWIRE\x01";
    assert_int_equal(write(fds[1], part, 12), 12);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += 200000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    lrp_net *got = NULL;
    lrp_err e = {0};
    int timed_out = 0;
    lrp_status st = cli_wire_recv(fds[0], -1, &deadline, &timed_out, CLI_LOAD_ARRAYS, "x.h5",
                                  &got, NULL, NULL, NULL, 0, &e);
    assert_int_not_equal(st, LRP_OK);
    assert_int_equal(timed_out, 1);
    assert_null(got);
    close(fds[0]);
    close(fds[1]);
}

static uint32_t naive_fletcher32(const unsigned char *d, size_t n)
{
    /* the textbook loop, as libhdf5 writes it */
    size_t len = n / 2;
    uint32_t s1 = 0, s2 = 0;
    while (len) {
        size_t t = len > 360 ? 360 : len;
        len -= t;
        do {
            s1 += (uint32_t)d[0] << 8 | d[1];
            d += 2;
            s2 += s1;
        } while (--t);
        s1 = (s1 & 0xffff) + (s1 >> 16);
        s2 = (s2 & 0xffff) + (s2 >> 16);
    }
    if (n % 2) {
        s1 += (uint32_t)*d << 8;
        s2 += s1;
        s1 = (s1 & 0xffff) + (s1 >> 16);
        s2 = (s2 & 0xffff) + (s2 >> 16);
    }
    s1 = (s1 & 0xffff) + (s1 >> 16);
    s2 = (s2 & 0xffff) + (s2 >> 16);
    return s2 << 16 | s1;
}

static void test_fletcher32(void **state)
{
    (void)state;
    size_t big = (size_t)3 << 20;
    unsigned char *b = malloc(big + 1);
    assert_non_null(b);
    for (int fill = 0; fill < 3; fill++) {
        for (size_t i = 0; i <= big; i++)
            b[i] = fill == 0 ? (unsigned char)next() : fill == 1 ? 0xff : 0;
        for (size_t n = 0; n <= 4096; n++) {
            uint32_t want = H5_checksum_fletcher32(b, n);
            assert_int_equal(lrp_h5_fletcher32(b, n), want);
            assert_int_equal(naive_fletcher32(b, n), want);
        }
        for (size_t n = big - 5; n <= big; n++)
            assert_int_equal(lrp_h5_fletcher32(b, n), H5_checksum_fletcher32(b, n));
    }
    free(b);
}

/* ---- raw arrays (cli_raw) ---- */

typedef struct visit_ctx {
    char (*names)[512];
    int n, cap;
} visit_ctx;

static herr_t collect(hid_t o, const char *name, const H5O_info_t *info, void *op)
{
    (void)o;
    visit_ctx *v = op;
    if (info->type == H5O_TYPE_DATASET && v->n < v->cap)
        snprintf(v->names[v->n++], 512, "/%s", name);
    return 0;
}

/* Rewrites every float dataset of at least 2 dimensions and 12 values in
 * one of four layouts, by turns: uneven small chunks with Fletcher32,
 * contiguous, gzip (not raw), small chunks without a filter.  Returns the
 * name of the first chunked Fletcher32 one in fl (for the corruption). */
static void relayout(const char *path, char *fl, size_t fln)
{
    static char names[4096][512];
    visit_ctx v = {names, 0, 4096};
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ovisit(f, H5_INDEX_NAME, H5_ITER_NATIVE, collect, &v) >= 0);
    int turn = 0;
    fl[0] = '\0';
    for (int k = 0; k < v.n; k++) {
        hid_t ds = H5Dopen2(f, names[k], H5P_DEFAULT);
        hid_t ft = H5Dget_type(ds), sp = H5Dget_space(ds);
        hsize_t dims[8];
        int rank = H5Sget_simple_extent_ndims(sp);
        int isf = H5Tget_class(ft) == H5T_FLOAT && H5Tget_size(ft) == 4;
        hssize_t n = H5Sget_simple_extent_npoints(sp);
        if (!isf || rank < 2 || n < 12) {
            H5Tclose(ft);
            H5Sclose(sp);
            H5Dclose(ds);
            continue;
        }
        H5Sget_simple_extent_dims(sp, dims, NULL);
        float *buf = malloc((size_t)n * sizeof(float));
        assert_non_null(buf);
        assert_true(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
        H5Dclose(ds);
        assert_true(H5Ldelete(f, names[k], H5P_DEFAULT) >= 0);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        int lay = turn++ % 4;
        if (lay != 1) {
            /* chunks that do not divide the dimensions: edge chunks padded */
            hsize_t ch[8];
            for (int i = 0; i < rank; i++)
                ch[i] = dims[i] > 2 ? dims[i] / 2 + 1 : dims[i];
            H5Pset_chunk(dcpl, rank, ch);
        }
        if (lay == 0)
            H5Pset_fletcher32(dcpl);
        if (lay == 2)
            H5Pset_deflate(dcpl, 1);
        hid_t nd = H5Dcreate2(f, names[k], H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        assert_true(nd >= 0);
        assert_true(H5Dwrite(nd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
        if (lay == 0 && !fl[0] && strlen(names[k]) < fln)
            memcpy(fl, names[k], strlen(names[k]) + 1);
        H5Dclose(nd);
        H5Pclose(dcpl);
        H5Tclose(ft);
        H5Sclose(sp);
        free(buf);
    }
    H5Fclose(f);
    assert_true(turn >= 4); /* every layout used */
}

static void test_raw_layouts(void **state)
{
    (void)state;
    static const char *const names[] = {"cnn", "resnet", "mlp"};
    for (size_t q = 0; q < sizeof names / sizeof *names; q++) {
        const lrp_fixture_def *d = lrp_fixture_lookup(names[q]);
        assert_non_null(d);
        char path[4200], fl[512];
        lrp_net *net = fixture_with_trace((int)(d - lrp_fixture_defs), path, sizeof path);
        relayout(path, fl, sizeof fl);
        lrp_net *ref = NULL, *viafork = NULL;
        lrp_err e = {0};
        assert_int_equal(lrp_fixture_read(&ref, path, &e), LRP_OK);
        same_net(net, ref, 1);
        if (cli_load(&viafork, path, &e) != LRP_OK)
            fail_msg("%s: %s", names[q], e.msg);
        same_net(ref, viafork, 1);
        lrp_net_free(viafork);
        lrp_net_free(ref);
        lrp_net_free(net);

        /* a flipped byte inside a checksummed chunk: the file's error,
         * naming the dataset, as the in-process reader's is */
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t ds = H5Dopen2(f, fl, H5P_DEFAULT);
        hsize_t off[8] = {0}, sz = 0;
        haddr_t addr = HADDR_UNDEF;
        unsigned mask = 0;
        assert_true(H5Dget_chunk_info_by_coord(ds, off, &mask, &addr, &sz) >= 0);
        H5Dclose(ds);
        H5Fclose(f);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        unsigned char b;
        assert_int_equal(pread(fd, &b, 1, (off_t)addr + 5), 1);
        b ^= 0x10;
        assert_int_equal(pwrite(fd, &b, 1, (off_t)addr + 5), 1);
        close(fd);
        assert_int_equal(cli_load(&viafork, path, &e), LRP_E_FORMAT);
        assert_null(viafork);
        assert_non_null(strstr(e.msg, fl));
        assert_non_null(strstr(e.msg, "Fletcher32"));
        assert_null(strchr(e.msg, '\n'));
        assert_int_equal(lrp_fixture_read(&ref, path, &e), LRP_E_FORMAT);
        assert_null(ref);
    }
}

/* A description as the child would send it (after the frame byte). */
static size_t raw_desc_bytes(unsigned char *b, uint32_t rank, uint32_t fl, uint64_t nc,
                             const uint64_t *dims, const uint64_t *chunk, const uint64_t *addr,
                             const uint64_t *size, const uint32_t *mask, const char *obj)
{
    raw_head h = {rank, fl, nc, (uint32_t)strlen(obj), 0};
    size_t at = 0;
    memcpy(b + at, &h, sizeof h);
    at += sizeof h;
    memcpy(b + at, dims, rank * 8);
    at += rank * 8;
    memcpy(b + at, chunk, rank * 8);
    at += rank * 8;
    for (uint64_t k = 0; k < nc; k++) {
        memcpy(b + at, &addr[k], 8);
        memcpy(b + at + 8, &size[k], 8);
        memcpy(b + at + 16, &mask[k], 4);
        at += 20;
    }
    memcpy(b + at, obj, strlen(obj));
    return at + strlen(obj);
}

static lrp_status raw_try(const unsigned char *b, size_t n, const cli_raw *raw, int64_t *values,
                          lrp_err *e)
{
    int fd = memfd_create("rawdesc", 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    int timed_out = 0;
    cli_raw_item *it = NULL;
    lrp_status st = raw_recv(fd, NULL, &timed_out, raw, &it, values, e);
    close(fd);
    assert_true((st == LRP_OK) == (it != NULL));
    if (st != LRP_OK && (!e->msg[0] || strchr(e->msg, '\n')))
        fail_msg("bad message '%s'", e->msg);
    raw_item_free(it);
    return st;
}

/* The child may lie: every description that does not fit the file or
 * its own grid is refused. */
static void test_raw_hostile_descriptions(void **state)
{
    (void)state;
    cli_raw raw = {3, 10000, NULL, 0, 0}; /* a 10000-byte file (fd unused here) */
    unsigned char b[4096];
    uint64_t dims[2] = {10, 7}, chunk[2] = {4, 7}, addr[3] = {0, 200, 400},
             size[3] = {116, 116, 116};
    uint32_t mask[3] = {0, 0, 0};
    int64_t values = 0;
    lrp_err e = {0};
    /* the valid one: 3 chunks of 4 x 7 values with their checksums */
    size_t n = raw_desc_bytes(b, 2, 1, 3, dims, chunk, addr, size, mask, "/network/fc/weight");
    assert_int_equal(raw_try(b, n, &raw, &values, &e), LRP_OK);
    assert_int_equal(values, 70);
    /* every cut is refused */
    for (size_t cut = 0; cut < n; cut++)
        assert_int_not_equal(raw_try(b, cut, &raw, &values, &e), LRP_OK);
    /* not asked for */
    cli_raw none = {-1, 0, NULL, 0, 0};
    assert_int_not_equal(raw_try(b, n, &none, &values, &e), LRP_OK);
    assert_int_not_equal(raw_try(b, n, NULL, &values, &e), LRP_OK);
    struct {
        uint32_t rank, fl;
        uint64_t nc, d0, c0, a2, s1;
        uint32_t m0;
    } bad[] = {
        {0, 1, 3, 10, 4, 400, 116, 0},  /* rank 0 */
        {5, 1, 3, 10, 4, 400, 116, 0},  /* rank beyond the format */
        {2, 2, 3, 10, 4, 400, 116, 0},  /* fletcher neither 0 nor 1 */
        {2, 1, 2, 10, 4, 400, 116, 0},  /* fewer chunks than the grid */
        {2, 1, 3, 10, 11, 400, 116, 0}, /* a chunk larger than the array */
        {2, 1, 3, 10, 0, 400, 116, 0},  /* an empty chunk */
        {2, 1, 3, 10, 4, 9900, 116, 0}, /* a chunk past the file's end */
        {2, 1, 3, 10, 4, UINT64_MAX - 50, 116, 0}, /* an address that wraps */
        {2, 1, 3, 10, 4, 400, 112, 0},  /* a checksum missing */
        {2, 0, 3, 10, 4, 400, 116, 0},  /* a checksum too many */
        {2, 1, 3, 10, 4, 400, 116, 2},  /* a filter mask naming a filter it has not */
        {2, 1, 3, 0, 4, 400, 116, 0},   /* a zero dimension */
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        uint64_t d2[8] = {bad[k].d0, 7, 1, 1, 1}, c2[8] = {bad[k].c0, 7, 1, 1, 1};
        uint64_t a3[3] = {0, 200, bad[k].a2}, s3[3] = {116, bad[k].s1, 116};
        uint32_t m3[3] = {bad[k].m0, 0, 0};
        uint64_t nc = bad[k].nc;
        n = raw_desc_bytes(b, bad[k].rank <= 5 ? bad[k].rank : 2, bad[k].fl, nc, d2, c2, a3, s3,
                           m3, "/x");
        if (raw_try(b, n, &raw, &values, &e) == LRP_OK)
            fail_msg("bad description %zu accepted", k);
    }
    /* a path longer than the frame allows */
    raw_head h = {2, 1, 3, 300, 0};
    memcpy(b, &h, sizeof h);
    assert_int_not_equal(raw_try(b, sizeof h, &raw, &values, &e), LRP_OK);
}

/* ---- the writer's driver (core/h5sink.c) ---- */

static void test_sink_same_as_core(void **state)
{
    (void)state;
    for (int k = 0; k < lrp_fixture_count; k++) {
        char path[4200], core[4200];
        lrp_net *net = fixture_with_trace(k, path, sizeof path); /* written by the sink */
        snprintf(core, sizeof core, "%s/core.h5", dir);
        lrp_err e = {0};
        setenv("LRP_H5_CORE", "1", 1);
        lrp_status st = lrp_fixture_write(net, core, &e);
        unsetenv("LRP_H5_CORE");
        assert_int_equal(st, LRP_OK);
        if (!tu_files_equal(path, core))
            fail_msg("%s: the sink's file differs from the core driver's image",
                     lrp_fixture_defs[k].name);
        lrp_net_free(net);
    }
}

/* A write the file system refuses part-way (RLIMIT_FSIZE: EFBIG, as a
 * full disk gives ENOSPC): one error, no file left, no crash in libhdf5. */
static void test_sink_write_error(void **state)
{
    (void)state;
    const lrp_fixture_def *d = lrp_fixture_lookup("cnn");
    assert_non_null(d);
    char path[4200], out[4200];
    lrp_net *net = fixture_with_trace((int)(d - lrp_fixture_defs), path, sizeof path);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    snprintf(out, sizeof out, "%s/toolarge.h5", dir);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {(rlim_t)sb.st_size / 2, (rlim_t)sb.st_size / 2};
        setrlimit(RLIMIT_FSIZE, &rl);
        lrp_err e = {0};
        lrp_status st = lrp_fixture_write(net, out, &e);
        int ok = st == LRP_E_IO && strstr(e.msg, "cannot write") && strstr(e.msg, out) &&
                 !strchr(e.msg, '\n');
        if (!ok)
            fprintf(stderr, "status %d: %s\n", (int)st, e.msg);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(access(out, F_OK), -1);
    assert_int_equal(tu_count_entries(dir, LRP_TMP_MARK), 0);
    lrp_net_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fletcher32),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_split_write_same_file),
        cmocka_unit_test(test_hostile_stream),
        cmocka_unit_test(test_silent_writer_times_out),
        cmocka_unit_test(test_raw_layouts),
        cmocka_unit_test(test_raw_hostile_descriptions),
        cmocka_unit_test(test_sink_same_as_core),
        cmocka_unit_test(test_sink_write_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
