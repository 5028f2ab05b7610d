/*
 * test_h5io.c -- the HDF5 fixture format (core/h5io.c, docs/FORMAT.md).
 *
 * Round trips compare every field and every float bitwise (I/O must be
 * exact).  Each malformed case builds a real malformed file (a valid file
 * edited with the HDF5 C API, or bytes written by hand) and checks the
 * status, that the message names the file, the object and the problem, and
 * that HDF5 printed nothing on stderr.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "h5io_int.h"
#include "lrp.h"
#include "util/testutil.h"

#include <hdf5.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *g_dir; /* scratch directory for the whole binary */

/* ------------------------------------------------------------------ */
/* Building nets                                                       */
/* ------------------------------------------------------------------ */

/* Deterministic values: a 32-bit LCG mapped to k * 2^-20, k in [-2^20, 2^20),
 * with a few special values (signed zero, a subnormal) mixed in so the
 * round trip proves they survive bit for bit. */
static uint32_t g_lcg = 12345u;

static float val(void)
{
    g_lcg = g_lcg * 1664525u + 1013904223u;
    uint32_t k = g_lcg >> 11;
    switch (k % 97) {
    case 0: return -0.0f;
    case 1: return 0x1.8p-140f; /* subnormal */
    case 2: return 0.0f;
    default: return (float)((int32_t)(k & 0x1fffff) - (1 << 20)) * 0x1p-20f;
    }
}

static float *vals(int64_t n)
{
    float *p = malloc((size_t)n * sizeof *p);
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = val();
    return p;
}

static int add(lrp_net *net, lrp_layer_kind k, const char *name, int in0, int in1)
{
    lrp_err e;
    int i = lrp_net_add(net, k, name, &e);
    if (i < 0)
        fail_msg("lrp_net_add %s: %s", name, e.msg);
    lrp_layer *l = &net->layers[i];
    if (in0 >= 0)
        l->in[l->n_in++] = in0;
    if (in1 >= 0)
        l->in[l->n_in++] = in1;
    return i;
}

static void infer_ok(lrp_net *net)
{
    lrp_err e;
    if (lrp_net_infer(net, "test", &e) != LRP_OK)
        fail_msg("lrp_net_infer: %s", e.msg);
}

/* Parameters for every layer that has them, after inference. */
static void fill_params(lrp_net *net)
{
    for (int i = 0; i < net->n_layers; i++) {
        lrp_layer *l = &net->layers[i];
        float **dst[6] = {&l->w, &l->b, &l->bn_gamma, &l->bn_beta, &l->bn_mean, &l->bn_var};
        for (int w = 0; w < 6; w++) {
            lrp_shape s;
            if (lrp_layer_param_shape(net, i, w, &s)) {
                *dst[w] = vals(lrp_shape_numel(&s));
                if (w == 5) /* variances positive */
                    for (int64_t q = 0; q < lrp_shape_numel(&s); q++)
                        (*dst[w])[q] = fabsf((*dst[w])[q]) + 0.5f;
            }
        }
    }
}

static void fill_input(lrp_net *net, int batch)
{
    net->batch = batch;
    net->input = vals(batch * lrp_shape_numel(&net->layers[0].shape));
}

/* Input (8) -> Dense 16 + bias -> ReLU -> Dense 4. */
static lrp_net *make_mlp(void)
{
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    g_lcg = 12345u; /* same values on every call */
    int in = add(net, LRP_LAYER_INPUT, "in0", -1, -1);
    net->layers[in].shape.rank = 1;
    net->layers[in].shape.d[0] = 8;
    int fc1 = add(net, LRP_LAYER_DENSE, "fc1", in, -1);
    net->layers[fc1].units = 16;
    net->layers[fc1].has_bias = 1;
    int r = add(net, LRP_LAYER_RELU, "relu1", fc1, -1);
    int fc2 = add(net, LRP_LAYER_DENSE, "fc2", r, -1);
    net->layers[fc2].units = 4;
    infer_ok(net);
    fill_params(net);
    fill_input(net, 3);
    net->target = malloc(3 * sizeof *net->target);
    net->target[0] = 0;
    net->target[1] = 3;
    net->target[2] = 2;
    lrp_rule_spec eps = lrp_rule_default(LRP_RULE_EPSILON);
    lrp_rule_apply_all(net, &eps);
    net->seed = 0xfedcba9876543210ull; /* top bit set: must stay unsigned */
    snprintf(net->description, sizeof net->description, "tiny MLP, caf\xc3\xa9 UTF-8");
    infer_ok(net);
    return net;
}

static void conv_geom(lrp_layer *l, int64_t units, int k, int pad, int groups, int bias)
{
    l->units = units;
    l->kh = l->kw = k;
    l->pt = l->pb = l->pl = l->pr = pad;
    l->groups = groups;
    l->has_bias = bias;
}

/* Input (3,8,8) -> Conv 8 3x3 p1 -> BN -> ReLU -> Conv 8 3x3 p1 -> Add(skip)
 * -> MaxPool 2x2 -> depthwise Conv -> Concatenate(with the pool) -> AvgPool
 * -> Dropout -> GlobalAvgPool -> Reshape (4,4) -> Flatten -> Dense 5:
 * every layer kind once. */
static lrp_net *make_cnn(void)
{
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    g_lcg = 777u;
    int in = add(net, LRP_LAYER_INPUT, "image", -1, -1);
    net->layers[in].shape.rank = 3;
    net->layers[in].shape.d[0] = 3;
    net->layers[in].shape.d[1] = 8;
    net->layers[in].shape.d[2] = 8;
    int c1 = add(net, LRP_LAYER_CONV2D, "conv1", in, -1);
    conv_geom(&net->layers[c1], 8, 3, 1, 1, 1);
    int bn = add(net, LRP_LAYER_BATCHNORM, "bn1", c1, -1);
    net->layers[bn].bn_eps = 0x1.4f8b58p-17f; /* 1e-5 */
    int r1 = add(net, LRP_LAYER_RELU, "relu1", bn, -1);
    int c2 = add(net, LRP_LAYER_CONV2D, "conv2", r1, -1);
    conv_geom(&net->layers[c2], 8, 3, 1, 1, 0);
    net->layers[c2].dh = net->layers[c2].dw = 1;
    int ad = add(net, LRP_LAYER_ADD, "add1", c2, r1);
    int mp = add(net, LRP_LAYER_MAXPOOL2D, "pool1", ad, -1);
    net->layers[mp].kh = net->layers[mp].kw = 2;
    net->layers[mp].sh = net->layers[mp].sw = 2;
    int dw = add(net, LRP_LAYER_CONV2D, "dw", mp, -1);
    conv_geom(&net->layers[dw], 8, 3, 1, 8, 1);
    net->layers[dw].pb = 2; /* asymmetric padding and dilation 2x1 */
    net->layers[dw].dh = 2;
    net->layers[dw].pt = 2;
    int cat = add(net, LRP_LAYER_CONCAT, "cat", dw, mp);
    int ap = add(net, LRP_LAYER_AVGPOOL2D, "avg", cat, -1);
    net->layers[ap].kh = net->layers[ap].kw = 3;
    net->layers[ap].sh = net->layers[ap].sw = 2;
    net->layers[ap].pt = net->layers[ap].pl = 1;
    net->layers[ap].count_include_pad = 1;
    int dr = add(net, LRP_LAYER_DROPOUT, "drop", ap, -1);
    int gp = add(net, LRP_LAYER_GLOBALAVGPOOL, "gap", dr, -1);
    int rs = add(net, LRP_LAYER_RESHAPE, "reshape", gp, -1);
    net->layers[rs].target.rank = 2;
    net->layers[rs].target.d[0] = 4;
    net->layers[rs].target.d[1] = 4;
    int fl = add(net, LRP_LAYER_FLATTEN, "flat", rs, -1);
    int fc = add(net, LRP_LAYER_DENSE, "fc", fl, -1);
    net->layers[fc].units = 5;
    net->layers[fc].has_bias = 1;
    infer_ok(net);
    fill_params(net);
    fill_input(net, 2);
    net->r_out = vals(2 * 5);
    int64_t nin = lrp_shape_numel(&net->layers[0].shape);
    net->zbox_low = malloc((size_t)nin * sizeof(float));
    net->zbox_high = malloc((size_t)nin * sizeof(float));
    for (int64_t i = 0; i < nin; i++) {
        net->zbox_low[i] = -1.0f - (float)i * 0x1p-10f;
        net->zbox_high[i] = 1.0f + (float)i * 0x1p-12f;
    }

    lrp_composite_params p = lrp_composite_params_default();
    p.gamma = 0.5f;
    p.low = -3.0f;
    lrp_composite_apply(net, LRP_COMPOSITE_EPSILON_GAMMA_BOX, &p);
    /* Hand-set rules with flags on top of the composite. */
    lrp_rule_spec ab = lrp_rule_default(LRP_RULE_ALPHABETA);
    ab.alpha = 2.0f;
    ab.beta = 1.0f;
    ab.stab = LRP_STAB_SIGNBIT;
    ab.flags = LRP_F_INNV_AB_FULLBIAS;
    ab.bias = 0;
    net->layers[c2].rule = ab;
    net->layers[dw].rule.flags = LRP_F_GAMMA_GENERALIZED | LRP_F_ZENNIT_GAMMA_DROP0;
    net->layers[dw].rule.eps = -0.0f;
    net->layers[bn].rule.flags = LRP_F_BN_CANONIZE | LRP_F_BN_FINE;
    net->layers[mp].rule.flags = LRP_F_WTA_SPLIT_TIES;
    net->layers[fc].rule.stab = LRP_STAB_ZERO_ONLY;
    net->layers[fc].rule.eps = 0x1p-149f; /* smallest subnormal */
    net->seed = 42;
    snprintf(net->description, sizeof net->description, "every layer kind");
    infer_ok(net);

    /* Two traces, added in name order (the reader returns them so). */
    lrp_err e;
    lrp_trace *t = lrp_net_trace_add(net, "fastpath", &e);
    assert_non_null(t);
    snprintf(t->producer, sizeof t->producer, "lrp-oracle fastpath 0.1.0");
    t->precision = 24;
    for (int i = 0; i < net->n_layers; i += 3)
        t->relevance[i] = vals(2 * lrp_shape_numel(&net->layers[i].shape));
    t = lrp_net_trace_add(net, "reference", &e);
    assert_non_null(t);
    snprintf(t->producer, sizeof t->producer, "lrp-oracle reference (MPFR)");
    snprintf(t->notes, sizeof t->notes, "golden");
    snprintf(t->profile, sizeof t->profile, "zennit");
    snprintf(t->composite, sizeof t->composite, "EpsilonGammaBox");
    t->precision = 128;
    t->rules[fc].eps = 0x1p-10f;
    t->rules[fc].flags = LRP_F_CAPTUM_A1B0;
    for (int i = 0; i < net->n_layers; i++) {
        int64_t n = 2 * lrp_shape_numel(&net->layers[i].shape);
        t->relevance[i] = vals(n);
        if (i % 2 == 0) {
            t->relevance_lo[i] = vals(n);
            uint32_t nanbits = 0x7fc01234u; /* NaN with a payload */
            memcpy(&t->relevance_lo[i][0], &nanbits, sizeof nanbits);
        }
    }
    return net;
}

/* ------------------------------------------------------------------ */
/* Comparing nets                                                      */
/* ------------------------------------------------------------------ */

static void same_f(float a, float b, const char *what)
{
    if (!tu_f32_same(a, b))
        fail_msg("%s: %a vs %a", what, (double)a, (double)b);
}

static void same_rule(const lrp_rule_spec *a, const lrp_rule_spec *b, const char *who)
{
    if (a->rule != b->rule || a->stab != b->stab || a->bias != b->bias || a->flags != b->flags)
        fail_msg("%s: rule/stab/bias/flags differ", who);
    same_f(a->eps, b->eps, who);
    same_f(a->gamma, b->gamma, who);
    same_f(a->alpha, b->alpha, who);
    same_f(a->beta, b->beta, who);
    same_f(a->low, b->low, who);
    same_f(a->high, b->high, who);
}

static void same_shape(const lrp_shape *a, const lrp_shape *b, const char *who)
{
    assert_int_equal(a->rank, b->rank);
    for (int i = 0; i < a->rank; i++)
        if (a->d[i] != b->d[i])
            fail_msg("%s: shape differs", who);
}

static void assert_nets_equal(const lrp_net *a, const lrp_net *b)
{
    char who[256];
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->batch, b->batch);
    assert_true(a->seed == b->seed);
    assert_string_equal(a->description, b->description);
    assert_string_equal(a->composite, b->composite);
    for (int i = 0; i < a->n_layers; i++) {
        const lrp_layer *x = &a->layers[i], *y = &b->layers[i];
        snprintf(who, sizeof who, "layer %s", x->name);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->n_in, y->n_in);
        for (int k = 0; k < x->n_in; k++)
            assert_int_equal(x->in[k], y->in[k]);
        same_shape(&x->shape, &y->shape, who);
        same_shape(&x->target, &y->target, who);
        assert_true(x->units == y->units);
        assert_int_equal(x->kh, y->kh);
        assert_int_equal(x->kw, y->kw);
        assert_int_equal(x->sh, y->sh);
        assert_int_equal(x->sw, y->sw);
        assert_int_equal(x->dh, y->dh);
        assert_int_equal(x->dw, y->dw);
        assert_int_equal(x->pt, y->pt);
        assert_int_equal(x->pb, y->pb);
        assert_int_equal(x->pl, y->pl);
        assert_int_equal(x->pr, y->pr);
        assert_int_equal(x->groups, y->groups);
        assert_int_equal(x->has_bias, y->has_bias);
        assert_int_equal(x->count_include_pad, y->count_include_pad);
        same_f(x->bn_eps, y->bn_eps, who);
        const float *px[6] = {x->w, x->b, x->bn_gamma, x->bn_beta, x->bn_mean, x->bn_var};
        const float *py[6] = {y->w, y->b, y->bn_gamma, y->bn_beta, y->bn_mean, y->bn_var};
        for (int w = 0; w < 6; w++) {
            lrp_shape s;
            if (lrp_layer_param_shape(a, i, w, &s))
                tu_assert_f32_bits(px[w], py[w], (size_t)lrp_shape_numel(&s), who);
            else
                assert_true(px[w] == NULL && py[w] == NULL);
        }
        same_rule(&x->rule, &y->rule, who);
    }
    int64_t nin = lrp_shape_numel(&a->layers[0].shape);
    int64_t nout = lrp_shape_numel(&a->layers[a->n_layers - 1].shape);
    tu_assert_f32_bits(a->input, b->input, (size_t)(a->batch * nin), "input");
    tu_assert_f32_bits(a->r_out, b->r_out, (size_t)(a->batch * nout), "r_out");
    tu_assert_f32_bits(a->zbox_low, b->zbox_low, (size_t)nin, "zbox_low");
    tu_assert_f32_bits(a->zbox_high, b->zbox_high, (size_t)nin, "zbox_high");
    assert_true((a->target == NULL) == (b->target == NULL));
    for (int i = 0; a->target && i < a->batch; i++)
        assert_int_equal(a->target[i], b->target[i]);
    assert_int_equal(a->n_traces, b->n_traces);
    for (int k = 0; k < a->n_traces; k++) {
        const lrp_trace *s = &a->traces[k], *t = &b->traces[k];
        assert_string_equal(s->source, t->source);
        assert_string_equal(s->producer, t->producer);
        assert_string_equal(s->notes, t->notes);
        assert_string_equal(s->profile, t->profile);
        assert_string_equal(s->composite, t->composite);
        assert_int_equal(s->precision, t->precision);
        assert_int_equal(s->n_layers, t->n_layers);
        for (int i = 0; i < s->n_layers; i++) {
            size_t n = (size_t)(a->batch * lrp_shape_numel(&a->layers[i].shape));
            snprintf(who, sizeof who, "trace %s layer %s", s->source, a->layers[i].name);
            same_rule(&s->rules[i], &t->rules[i], who);
            tu_assert_f32_bits(s->relevance[i], t->relevance[i], n, who);
            tu_assert_f32_bits(s->relevance_lo[i], t->relevance_lo[i], n, who);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Helpers: write, read, expect failures                               */
/* ------------------------------------------------------------------ */

static char *path_of(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    return tu_join(buf[k], sizeof buf[k], g_dir, name);
}

static void write_ok(const lrp_net *net, const char *path)
{
    lrp_err e;
    tu_capture cap;
    char out[512];
    assert_int_equal(tu_stderr_begin(&cap), 0);
    lrp_status st = lrp_fixture_write(net, path, &e);
    size_t nerr = tu_stderr_end(&cap, out, sizeof out);
    if (st != LRP_OK)
        fail_msg("lrp_fixture_write %s: %s", path, e.msg);
    if (nerr)
        fail_msg("stderr not empty after write: %s", out);
}

static lrp_net *read_ok(const char *path)
{
    lrp_err e;
    lrp_net *net = NULL;
    lrp_status st = lrp_fixture_read(&net, path, &e);
    if (st != LRP_OK)
        fail_msg("lrp_fixture_read %s: %s", path, e.msg);
    assert_non_null(net);
    return net;
}

/* Reads path, expects status `want`, a message naming the path and each
 * keyword (NULL-terminated), no net, and nothing on stderr. */
static void expect_fail(const char *path, lrp_status want, ...)
{
    lrp_err e;
    lrp_net *net = (lrp_net *)&e; /* must be reset to NULL */
    tu_capture cap;
    char out[1024];
    memset(&e, 0, sizeof e);
    assert_int_equal(tu_stderr_begin(&cap), 0);
    lrp_status st = lrp_fixture_read(&net, path, &e);
    size_t nerr = tu_stderr_end(&cap, out, sizeof out);
    print_message("    -> %s\n", e.msg);
    if (nerr)
        fail_msg("stderr not empty: %s", out);
    assert_null(net);
    if (st != want)
        fail_msg("status %s, expected %s: %s", lrp_status_name(st), lrp_status_name(want), e.msg);
    assert_int_equal(e.code, want);
    if (!strstr(e.msg, path))
        fail_msg("message does not name the file: %s", e.msg);
    if (strchr(e.msg, '\n'))
        fail_msg("message is not one line: %s", e.msg);
    va_list ap;
    va_start(ap, want);
    for (const char *kw; (kw = va_arg(ap, const char *)) != NULL;)
        if (!strstr(e.msg, kw))
            fail_msg("message lacks '%s': %s", kw, e.msg);
    va_end(ap);
}

/* A valid MLP fixture at name, returned open read-write for editing. */
static hid_t mlp_file(const char *name)
{
    lrp_net *net = make_mlp();
    write_ok(net, path_of(name));
    lrp_net_free(net);
    hid_t f = H5Fopen(path_of(name), H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

static hid_t cnn_file(const char *name)
{
    lrp_net *net = make_cnn();
    write_ok(net, path_of(name));
    lrp_net_free(net);
    hid_t f = H5Fopen(path_of(name), H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

static void close_file(hid_t f) { assert_true(H5Fclose(f) >= 0); }

static void del_attr(hid_t f, const char *obj, const char *name)
{
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0)
        assert_true(H5Adelete_by_name(f, obj, name, H5P_DEFAULT) >= 0);
}

static void put_attr(hid_t f, const char *obj, const char *name, hid_t type, int rank, hsize_t n,
                     const void *buf)
{
    del_attr(f, obj, name);
    hid_t sp = rank ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, type, buf) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

static hid_t vstr(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static void put_str(hid_t f, const char *obj, const char *name, const char *s)
{
    hid_t t = vstr();
    put_attr(f, obj, name, t, 0, 1, &s);
    H5Tclose(t);
}

static void put_strs(hid_t f, const char *obj, const char *name, const char **v, int n)
{
    hid_t t = vstr();
    put_attr(f, obj, name, t, 1, (hsize_t)n, v);
    H5Tclose(t);
}

static void put_i64(hid_t f, const char *obj, const char *name, int64_t v)
{
    put_attr(f, obj, name, H5T_NATIVE_INT64, 0, 1, &v);
}

static void put_i32v(hid_t f, const char *obj, const char *name, const int32_t *v, int n)
{
    put_attr(f, obj, name, H5T_NATIVE_INT32, 1, (hsize_t)n, v);
}

static void put_f32(hid_t f, const char *obj, const char *name, float v)
{
    put_attr(f, obj, name, H5T_IEEE_F32LE, 0, 1, &v);
}

/* Replaces a dataset by a contiguous one of the given type and shape
 * (contents zero). */
static void put_ds(hid_t f, const char *path, hid_t type, int rank, const hsize_t *dims)
{
    if (H5Lexists(f, path, H5P_DEFAULT) > 0)
        assert_true(H5Ldelete(f, path, H5P_DEFAULT) >= 0);
    hsize_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    void *zero = calloc((size_t)n, 8);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, path, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    free(zero);
}

static void del_link(hid_t f, const char *path)
{
    assert_true(H5Ldelete(f, path, H5P_DEFAULT) >= 0);
}

/* MLP layer groups: 000_in0, 001_fc1, 002_relu1, 003_fc2. */
#define FC1 "/network/001_fc1"
#define RELU1 "/network/002_relu1"
#define FC2 "/network/003_fc2"

/* ------------------------------------------------------------------ */
/* Round trips and the writer                                          */
/* ------------------------------------------------------------------ */

static void test_roundtrip_mlp(void **state)
{
    (void)state;
    lrp_net *a = make_mlp();
    write_ok(a, path_of("mlp.h5"));
    lrp_net *b = read_ok(path_of("mlp.h5"));
    assert_nets_equal(a, b);
    assert_int_equal(b->n_traces, 0);
    lrp_net_free(a);
    lrp_net_free(b);
}

static void test_roundtrip_cnn(void **state)
{
    (void)state;
    lrp_net *a = make_cnn();
    write_ok(a, path_of("cnn.h5"));
    lrp_net *b = read_ok(path_of("cnn.h5"));
    assert_nets_equal(a, b);
    assert_int_equal(b->n_traces, 2);
    /* Write what was read: the same bytes again. */
    write_ok(b, path_of("cnn2.h5"));
    assert_true(tu_files_equal(path_of("cnn.h5"), path_of("cnn2.h5")));
    lrp_net_free(a);
    lrp_net_free(b);
}

/* A chain deeper than the writer's link-estimate threshold (256 layers):
 * its per-layer groups are created with sized object headers; the file
 * must read back to the same net and trace, and rewrite to the same bytes. */
static void test_roundtrip_deep_chain(void **state)
{
    (void)state;
    lrp_net *a = lrp_net_new();
    assert_non_null(a);
    g_lcg = 777u;
    int prev = add(a, LRP_LAYER_INPUT, "in", -1, -1);
    a->layers[prev].shape.rank = 1;
    a->layers[prev].shape.d[0] = 4;
    char name[32];
    for (int k = 0; k < 200; k++) {
        snprintf(name, sizeof name, "fc%d", k);
        prev = add(a, LRP_LAYER_DENSE, name, prev, -1);
        a->layers[prev].units = 4;
        a->layers[prev].has_bias = 1;
        snprintf(name, sizeof name, "relu%d", k);
        prev = add(a, LRP_LAYER_RELU, name, prev, -1);
    }
    assert_true(a->n_layers > 256);
    infer_ok(a);
    fill_params(a);
    fill_input(a, 1);
    a->target = calloc(1, sizeof *a->target);
    lrp_rule_spec eps = lrp_rule_default(LRP_RULE_EPSILON);
    lrp_rule_apply_all(a, &eps);
    lrp_err e;
    lrp_trace *t = lrp_net_trace_add(a, "deep", &e);
    assert_non_null(t);
    t->precision = 24;
    for (int i = 0; i < a->n_layers; i++) {
        t->relevance[i] = vals(4);
        t->activation[i] = vals(4);
    }
    write_ok(a, path_of("deep.h5"));
    lrp_net *b = read_ok(path_of("deep.h5"));
    assert_nets_equal(a, b);
    write_ok(b, path_of("deep2.h5"));
    assert_true(tu_files_equal(path_of("deep.h5"), path_of("deep2.h5")));
    lrp_net_free(a);
    lrp_net_free(b);
}

static void test_byte_identical(void **state)
{
    (void)state;
    lrp_net *a = make_cnn();
    write_ok(a, path_of("same1.h5"));
    write_ok(a, path_of("same2.h5"));
    assert_true(tu_files_equal(path_of("same1.h5"), path_of("same2.h5")));
    /* Overwriting an existing file gives the same bytes too. */
    write_ok(a, path_of("same1.h5"));
    assert_true(tu_files_equal(path_of("same1.h5"), path_of("same2.h5")));
    lrp_net_free(a);
    assert_int_equal(tu_count_entries(g_dir, "lrp-tmp"), 0);
}

static void test_write_refuses_invalid_net(void **state)
{
    (void)state;
    const char *p = path_of("keep.h5");
    lrp_net *a = make_mlp();
    write_ok(a, p);
    size_t n0;
    unsigned char *before = tu_read_file(p, &n0);
    assert_non_null(before);

    lrp_err e;
    a->layers[1].units = 17; /* weight no longer matches; fc2 fan-in breaks */
    a->layers[3].rule.eps = -1.0f;
    assert_int_equal(lrp_fixture_write(a, p, &e), LRP_E_INVALID);
    assert_non_null(strstr(e.msg, p));
    a->layers[1].units = 16;
    a->layers[3].rule.eps = 0.0f;
    float *w = a->layers[1].w;
    a->layers[1].w = NULL; /* a missing parameter */
    assert_int_equal(lrp_fixture_write(a, p, &e), LRP_E_INVALID);
    assert_non_null(strstr(e.msg, "weight"));
    a->layers[1].w = w;

    size_t n1;
    unsigned char *after = tu_read_file(p, &n1);
    assert_non_null(after);
    assert_true(n0 == n1 && memcmp(before, after, n0) == 0);
    assert_int_equal(tu_count_entries(g_dir, "lrp-tmp"), 0);
    free(before);
    free(after);
    lrp_net_free(a);
}

static void test_write_failure_keeps_target(void **state)
{
    (void)state;
    lrp_net *a = make_mlp();
    lrp_err e;
    /* A target that cannot be replaced (a non-empty directory): refused
     * before anything is written, no temporary file left. */
    const char *d = path_of("adir.h5");
    char inner[600];
    assert_int_equal(mkdir(d, 0700), 0);
    assert_int_equal(tu_write_file(tu_join(inner, sizeof inner, d, "x"), "x", 1), 0);
    assert_int_equal(lrp_fixture_write(a, d, &e), LRP_E_USAGE);
    assert_non_null(strstr(e.msg, d));
    assert_non_null(strstr(e.msg, "directory"));
    assert_int_equal(tu_count_entries(g_dir, "lrp-tmp"), 0);
    assert_int_equal(access(inner, F_OK), 0);

    /* A directory that does not exist. */
    assert_int_equal(lrp_fixture_write(a, path_of("nodir/x.h5"), &e), LRP_E_IO);

    /* A read-only directory holding an existing fixture (root ignores
     * permissions, so the check is skipped then). */
    if (geteuid() != 0) {
        char ro[600], tgt[700];
        tu_join(ro, sizeof ro, g_dir, "ro");
        assert_int_equal(mkdir(ro, 0700), 0);
        tu_join(tgt, sizeof tgt, ro, "t.h5");
        write_ok(a, tgt);
        size_t n0, n1;
        unsigned char *before = tu_read_file(tgt, &n0);
        assert_int_equal(chmod(ro, 0500), 0);
        a->seed = 7;
        assert_int_equal(lrp_fixture_write(a, tgt, &e), LRP_E_IO);
        unsigned char *after = tu_read_file(tgt, &n1);
        assert_true(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
        chmod(ro, 0700);
        free(before);
        free(after);
    }
    lrp_net_free(a);
}

/* Files from h5py: fixed-length strings, numpy bools (enum over int8),
 * float64 attributes holding binary32 values, a scalar `inputs`,
 * optional rule attributes left out. */
static void test_reads_h5py_style(void **state)
{
    (void)state;
    hid_t f = mlp_file("h5py.h5");
    hid_t fs = H5Tcopy(H5T_C_S1);
    H5Tset_size(fs, 5);
    H5Tset_strpad(fs, H5T_STR_NULLPAD);
    put_attr(f, FC1, "kind", fs, 0, 1, "Dense"); /* fills the field, no NUL */
    H5Tclose(fs);
    hid_t en = H5Tenum_create(H5T_NATIVE_INT8);
    int8_t fa = 0, tr = 1;
    H5Tenum_insert(en, "FALSE", &fa);
    H5Tenum_insert(en, "TRUE", &tr);
    put_attr(f, FC1, "has_bias", en, 0, 1, &tr);
    H5Tclose(en);
    double d = 0x1.0c6f7ap-20;
    put_attr(f, "/rules/001_fc1", "eps", H5T_NATIVE_DOUBLE, 0, 1, &d);
    put_str(f, FC2, "inputs", "relu1");
    del_attr(f, "/rules/003_fc2", "stabilizer");
    del_attr(f, "/rules/003_fc2", "flags");
    del_attr(f, "/rules/003_fc2", "gamma");
    del_link(f, "/rules/002_relu1"); /* defaults for the kind */
    close_file(f);
    lrp_net *b = read_ok(path_of("h5py.h5"));
    lrp_net *a = make_mlp();
    assert_nets_equal(a, b);
    lrp_net_free(a);
    lrp_net_free(b);
}

/* ------------------------------------------------------------------ */
/* Malformed files                                                     */
/* ------------------------------------------------------------------ */

static void test_not_hdf5(void **state)
{
    (void)state;
    const char *p = path_of("text.h5");
    const char *txt = "this is not an HDF5 file\n";
    assert_int_equal(tu_write_file(p, txt, strlen(txt)), 0);
    expect_fail(p, LRP_E_FORMAT, "not an HDF5 file", NULL);
}

static void test_empty_file(void **state)
{
    (void)state;
    const char *p = path_of("empty.h5");
    assert_int_equal(tu_write_file(p, "", 0), 0);
    expect_fail(p, LRP_E_FORMAT, "not an HDF5 file", "empty", NULL);
}

static void test_missing_file(void **state)
{
    (void)state;
    expect_fail(path_of("does-not-exist.h5"), LRP_E_IO, "cannot open", NULL);
}

static void test_truncated(void **state)
{
    (void)state;
    lrp_net *a = make_cnn();
    const char *p = path_of("trunc.h5");
    write_ok(a, p);
    lrp_net_free(a);
    size_t n;
    unsigned char *b = tu_read_file(p, &n);
    assert_non_null(b);
    assert_int_equal(tu_write_file(p, b, n / 2), 0);
    free(b);
    expect_fail(p, LRP_E_FORMAT, "truncated", NULL);
}

static void test_missing_network(void **state)
{
    (void)state;
    hid_t f = mlp_file("nonet.h5");
    del_link(f, "/network");
    close_file(f);
    expect_fail(path_of("nonet.h5"), LRP_E_FORMAT, "/network", "missing", NULL);
}

static void test_missing_weight(void **state)
{
    (void)state;
    hid_t f = mlp_file("now.h5");
    del_link(f, FC1 "/weight");
    close_file(f);
    expect_fail(path_of("now.h5"), LRP_E_FORMAT, FC1 "/weight", "missing", NULL);
}

static void test_weight_int32(void **state)
{
    (void)state;
    hid_t f = mlp_file("wint.h5");
    hsize_t d[2] = {16, 8};
    put_ds(f, FC1 "/weight", H5T_STD_I32LE, 2, d);
    close_file(f);
    expect_fail(path_of("wint.h5"), LRP_E_FORMAT, FC1 "/weight", "wrong type", "32-bit float",
                "integer", NULL);
}

static void test_weight_float64(void **state)
{
    (void)state;
    hid_t f = mlp_file("wf64.h5");
    hsize_t d[2] = {16, 8};
    put_ds(f, FC1 "/weight", H5T_IEEE_F64LE, 2, d);
    close_file(f);
    expect_fail(path_of("wf64.h5"), LRP_E_FORMAT, FC1 "/weight", "wrong type", "64-bit float",
                NULL);
}

static void test_weight_wrong_rank(void **state)
{
    (void)state;
    hid_t f = mlp_file("wrank.h5");
    hsize_t d[3] = {16, 8, 1};
    put_ds(f, FC1 "/weight", H5T_IEEE_F32LE, 3, d);
    close_file(f);
    expect_fail(path_of("wrank.h5"), LRP_E_FORMAT, FC1 "/weight", "rank", "(16, 8)", "(16, 8, 1)",
                NULL);
}

static void test_conv_weight_rank3(void **state)
{
    (void)state;
    hid_t f = cnn_file("crank.h5");
    hsize_t d[3] = {8, 3, 9};
    put_ds(f, "/network/001_conv1/weight", H5T_IEEE_F32LE, 3, d);
    close_file(f);
    expect_fail(path_of("crank.h5"), LRP_E_FORMAT, "/network/001_conv1/weight",
                "expected shape (8, 3, 3, 3), found (8, 3, 9)", NULL);
}

static void test_weight_wrong_shape(void **state)
{
    (void)state;
    hid_t f = mlp_file("wshape.h5");
    hsize_t d[2] = {15, 8};
    put_ds(f, FC1 "/weight", H5T_IEEE_F32LE, 2, d);
    close_file(f);
    expect_fail(path_of("wshape.h5"), LRP_E_FORMAT, FC1 "/weight", "wrong shape", "(15, 8)", NULL);
}

static void test_graph_shape_mismatch(void **state)
{
    (void)state;
    /* fc1 now has 17 units (weight and bias consistent), but fc2's weight
     * still takes 16 features: the Dense fan-ins disagree along the graph. */
    hid_t f = mlp_file("graph.h5");
    hsize_t w[2] = {17, 8}, b[1] = {17};
    put_i64(f, FC1, "units", 17);
    put_ds(f, FC1 "/weight", H5T_IEEE_F32LE, 2, w);
    put_ds(f, FC1 "/bias", H5T_IEEE_F32LE, 1, b);
    close_file(f);
    expect_fail(path_of("graph.h5"), LRP_E_INVALID, FC2 "/weight", "shape mismatch along the graph",
                "relu1", "(4, 17)", NULL);
}

static void test_add_shape_mismatch(void **state)
{
    (void)state;
    hid_t f = cnn_file("addmis.h5");
    /* conv2 with 4 output channels no longer matches the skip input. */
    put_i64(f, "/network/004_conv2", "units", 4);
    close_file(f);
    expect_fail(path_of("addmis.h5"), LRP_E_INVALID, "add1", "differ in shape", NULL);
}

static void test_cycle(void **state)
{
    (void)state;
    hid_t f = mlp_file("cycle.h5");
    const char *a[1] = {"relu1"}, *b[1] = {"fc1"};
    put_strs(f, FC1, "inputs", a, 1);
    put_strs(f, RELU1, "inputs", b, 1);
    close_file(f);
    expect_fail(path_of("cycle.h5"), LRP_E_INVALID, "/network", "cycle through layers",
                "fc1 -> relu1 -> fc1", NULL);
}

static void test_self_cycle(void **state)
{
    (void)state;
    hid_t f = mlp_file("self.h5");
    const char *a[1] = {"relu1"};
    put_strs(f, RELU1, "inputs", a, 1);
    close_file(f);
    expect_fail(path_of("self.h5"), LRP_E_INVALID, "cycle", "relu1 -> relu1", NULL);
}

static void test_forward_reference(void **state)
{
    (void)state;
    /* relu1 reads fc2, fc2 reads relu1's old input fc1: no cycle, but the
     * order attribute is not an execution order. */
    hid_t f = mlp_file("fwd.h5");
    const char *a[1] = {"fc2"}, *b[1] = {"fc1"};
    put_strs(f, RELU1, "inputs", a, 1);
    put_strs(f, FC2, "inputs", b, 1);
    close_file(f);
    expect_fail(path_of("fwd.h5"), LRP_E_INVALID, RELU1, "fc2", "later in /network order", NULL);
}

static void test_unknown_input(void **state)
{
    (void)state;
    hid_t f = mlp_file("noin.h5");
    const char *a[1] = {"nope"};
    put_strs(f, FC2, "inputs", a, 1);
    close_file(f);
    expect_fail(path_of("noin.h5"), LRP_E_FORMAT, FC2, "'nope'", "names no layer", NULL);
}

static void test_unknown_kind(void **state)
{
    (void)state;
    hid_t f = mlp_file("kind.h5");
    put_str(f, RELU1, "kind", "Softmux");
    close_file(f);
    expect_fail(path_of("kind.h5"), LRP_E_UNSUPPORTED, RELU1, "unknown layer kind", "Softmux",
                NULL);
}

static void test_unknown_rule(void **state)
{
    (void)state;
    hid_t f = mlp_file("rule.h5");
    put_str(f, "/rules/001_fc1", "rule", "lrp_magic");
    close_file(f);
    expect_fail(path_of("rule.h5"), LRP_E_UNSUPPORTED, "/rules/001_fc1", "unknown rule",
                "lrp_magic", NULL);
}

static void test_unknown_stabilizer(void **state)
{
    (void)state;
    hid_t f = mlp_file("stab.h5");
    put_str(f, "/rules/003_fc2", "stabilizer", "sign_magic");
    close_file(f);
    expect_fail(path_of("stab.h5"), LRP_E_UNSUPPORTED, "/rules/003_fc2", "unknown stabilizer",
                "sign_magic", NULL);
}

static void test_unknown_flag(void **state)
{
    (void)state;
    hid_t f = mlp_file("flag.h5");
    const char *fl[2] = {"gamma_generalized", "no_such_flag"};
    put_strs(f, "/rules/003_fc2", "flags", fl, 2);
    close_file(f);
    expect_fail(path_of("flag.h5"), LRP_E_UNSUPPORTED, "/rules/003_fc2", "unknown flag",
                "no_such_flag", NULL);
}

static void test_alpha_beta(void **state)
{
    (void)state;
    hid_t f = mlp_file("ab.h5");
    put_str(f, "/rules/001_fc1", "rule", "alphabeta");
    put_f32(f, "/rules/001_fc1", "alpha", 2.0f);
    put_f32(f, "/rules/001_fc1", "beta", 0.5f);
    close_file(f);
    expect_fail(path_of("ab.h5"), LRP_E_INVALID, "fc1", "alpha - beta must be 1", NULL);
}

static void test_negative_eps(void **state)
{
    (void)state;
    hid_t f = mlp_file("eps.h5");
    put_f32(f, "/rules/003_fc2", "eps", -1e-6f);
    close_file(f);
    expect_fail(path_of("eps.h5"), LRP_E_INVALID, "fc2", "epsilon", ">= 0", NULL);
}

static void test_trace_rule_invalid(void **state)
{
    (void)state;
    hid_t f = cnn_file("trule.h5");
    put_f32(f, "/traces/reference/rules/014_fc", "eps", -1.0f);
    close_file(f);
    expect_fail(path_of("trule.h5"), LRP_E_INVALID, "/traces/reference/rules", "'fc'", "epsilon",
                NULL);
}

static void test_inexact_float64_attr(void **state)
{
    (void)state;
    hid_t f = mlp_file("f64.h5");
    double d = 1e-6; /* a Python float: not a binary32 value */
    put_attr(f, "/rules/001_fc1", "eps", H5T_NATIVE_DOUBLE, 0, 1, &d);
    close_file(f);
    expect_fail(path_of("f64.h5"), LRP_E_FORMAT, "/rules/001_fc1", "eps", "not exactly a binary32",
                NULL);
}

static void test_groups_not_dividing(void **state)
{
    (void)state;
    hid_t f = cnn_file("groups.h5");
    int32_t g = 3;
    put_attr(f, "/network/007_dw", "groups", H5T_NATIVE_INT32, 0, 1, &g);
    close_file(f);
    expect_fail(path_of("groups.h5"), LRP_E_INVALID, "'dw'", "groups 3 must divide", NULL);
}

static void test_zero_stride(void **state)
{
    (void)state;
    hid_t f = cnn_file("stride.h5");
    int32_t s[2] = {0, 1};
    put_i32v(f, "/network/001_conv1", "stride", s, 2);
    close_file(f);
    expect_fail(path_of("stride.h5"), LRP_E_INVALID, "'conv1'", "stride 0x1", NULL);
}

static void test_absurd_units(void **state)
{
    (void)state;
    hid_t f = mlp_file("absurd.h5");
    put_i64(f, FC1, "units", (int64_t)1 << 40);
    close_file(f);
    expect_fail(path_of("absurd.h5"), LRP_E_INVALID, "'fc1'", "units 1099511627776 out of range",
                NULL);
}

static void test_absurd_dataset(void **state)
{
    (void)state;
    /* A dataset claiming 2^62 elements: refused from its shape, never
     * allocated. */
    hid_t f = mlp_file("huge.h5");
    del_link(f, FC1 "/weight");
    hsize_t d[2] = {(hsize_t)1 << 31, (hsize_t)1 << 31}, one[2] = {1, 1};
    hid_t sp = H5Screate_simple(2, d, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, one);
    hid_t ds = H5Dcreate2(f, FC1 "/weight", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(ds >= 0);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    close_file(f);
    expect_fail(path_of("huge.h5"), LRP_E_FORMAT, FC1 "/weight", "wrong shape", "2147483648",
                NULL);
}

static void test_absurd_batch(void **state)
{
    (void)state;
    hid_t f = mlp_file("batch.h5");
    put_i64(f, "/", "batch", (int64_t)1 << 40);
    close_file(f);
    expect_fail(path_of("batch.h5"), LRP_E_INVALID, "/", "batch", "out of range", NULL);
}

static void test_format_version(void **state)
{
    (void)state;
    hid_t f = mlp_file("ver.h5");
    int32_t v = 99;
    put_attr(f, "/", "format_version", H5T_NATIVE_INT32, 0, 1, &v);
    close_file(f);
    expect_fail(path_of("ver.h5"), LRP_E_UNSUPPORTED, ": /: ", "format_version 99", NULL);
}

static void test_not_a_fixture(void **state)
{
    (void)state;
    hid_t f = mlp_file("magic.h5");
    del_attr(f, "/", "format");
    close_file(f);
    expect_fail(path_of("magic.h5"), LRP_E_FORMAT, "'format'", "not an lrp-oracle fixture", NULL);
}

static void test_order_missing(void **state)
{
    (void)state;
    hid_t f = mlp_file("noorder.h5");
    del_attr(f, "/network", "order");
    close_file(f);
    expect_fail(path_of("noorder.h5"), LRP_E_FORMAT, "/network", "missing attribute 'order'", NULL);
}

static void test_order_names_missing_layer(void **state)
{
    (void)state;
    hid_t f = mlp_file("ghost.h5");
    const char *o[4] = {"in0", "fc1", "ghost", "fc2"};
    put_strs(f, "/network", "order", o, 4);
    close_file(f);
    expect_fail(path_of("ghost.h5"), LRP_E_FORMAT, "/network/002_ghost", "missing group", NULL);
}

static void test_unlisted_layer_group(void **state)
{
    (void)state;
    hid_t f = mlp_file("extra.h5");
    hid_t g = H5Gcreate2(f, "/network/004_extra", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(g >= 0);
    H5Gclose(g);
    close_file(f);
    expect_fail(path_of("extra.h5"), LRP_E_FORMAT, "/network/004_extra", "not listed", NULL);
}

static void test_misspelt_rule_entry(void **state)
{
    (void)state;
    hid_t f = mlp_file("misspelt.h5");
    assert_true(H5Lmove(f, "/rules/001_fc1", f, "/rules/001_fc_1", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    close_file(f);
    expect_fail(path_of("misspelt.h5"), LRP_E_FORMAT, "/rules/001_fc_1", "names no layer", NULL);
}

static void test_soft_link(void **state)
{
    (void)state;
    hid_t f = mlp_file("soft.h5");
    del_link(f, FC2 "/weight");
    assert_true(H5Lcreate_soft(FC1 "/weight", f, FC2 "/weight", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    close_file(f);
    expect_fail(path_of("soft.h5"), LRP_E_FORMAT, FC2 "/weight", "soft link", NULL);
}

static void test_external_storage(void **state)
{
    (void)state;
    hid_t f = mlp_file("ext.h5");
    del_link(f, FC2 "/weight");
    hsize_t d[2] = {4, 16};
    hid_t sp = H5Screate_simple(2, d, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_external(dcpl, path_of("ext.raw"), 0, 4 * 16 * 4);
    hid_t ds = H5Dcreate2(f, FC2 "/weight", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(ds >= 0);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    close_file(f);
    expect_fail(path_of("ext.h5"), LRP_E_FORMAT, FC2 "/weight", "external storage", NULL);
}

static void test_bias_without_has_bias(void **state)
{
    (void)state;
    hid_t f = mlp_file("bias.h5");
    hsize_t d[1] = {4};
    put_ds(f, FC2 "/bias", H5T_IEEE_F32LE, 1, d);
    close_file(f);
    expect_fail(path_of("bias.h5"), LRP_E_INVALID, FC2, "has_bias is 0", NULL);
}

static void test_input_wrong_shape(void **state)
{
    (void)state;
    hid_t f = mlp_file("input.h5");
    hsize_t d[2] = {3, 9};
    put_ds(f, "/data/input", H5T_IEEE_F32LE, 2, d);
    close_file(f);
    expect_fail(path_of("input.h5"), LRP_E_FORMAT, "/data/input", "wrong shape", "(3, 8)", "(3, 9)",
                NULL);
}

static void test_relevance_out_wrong_shape(void **state)
{
    (void)state;
    hid_t f = mlp_file("rout.h5");
    hsize_t d[2] = {3, 5};
    put_ds(f, "/data/relevance_out", H5T_IEEE_F32LE, 2, d);
    close_file(f);
    expect_fail(path_of("rout.h5"), LRP_E_FORMAT, "/data/relevance_out", "(3, 4)", NULL);
}

static void test_target_out_of_range(void **state)
{
    (void)state;
    hid_t f = mlp_file("target.h5");
    int32_t t[3] = {0, 4, 1};
    hsize_t n = 3;
    del_link(f, "/data/target");
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(f, "/data/target", H5T_STD_I64BE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, t) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    close_file(f);
    expect_fail(path_of("target.h5"), LRP_E_INVALID, "/data/target", "target[1] = 4 out of range",
                NULL);
}

static void test_trace_wrong_shape(void **state)
{
    (void)state;
    hid_t f = cnn_file("trace.h5");
    hsize_t d[2] = {2, 6};
    put_ds(f, "/traces/fastpath/relevance/014_fc", H5T_IEEE_F32LE, 2, d);
    close_file(f);
    expect_fail(path_of("trace.h5"), LRP_E_FORMAT, "/traces/fastpath/relevance/014_fc",
                "wrong shape", "(2, 5)", NULL);
}

static void test_corrupt_data_checksum(void **state)
{
    (void)state;
    /* Flip a byte inside the input data: Fletcher32 must catch it. */
    lrp_net *a = make_mlp();
    const char *p = path_of("flip.h5");
    write_ok(a, p);
    size_t n;
    unsigned char *b = tu_read_file(p, &n);
    assert_non_null(b);
    /* Find the input values' bytes in the file and flip one. */
    size_t len = 3 * 8 * sizeof(float), at = (size_t)-1;
    for (size_t i = 0; i + len <= n && at == (size_t)-1; i++)
        if (memcmp(b + i, a->input, len) == 0)
            at = i;
    assert_true(at != (size_t)-1);
    b[at + 5] ^= 0x10;
    assert_int_equal(tu_write_file(p, b, n), 0);
    free(b);
    lrp_net_free(a);
    expect_fail(p, LRP_E_FORMAT, "/data/input", "cannot read data", NULL);
}

static void test_write_refuses_slash_name(void **state)
{
    (void)state;
    lrp_net *a = make_mlp();
    lrp_err e;
    snprintf(a->layers[2].name, sizeof a->layers[2].name, "relu/1");
    assert_int_equal(lrp_fixture_write(a, path_of("slash.h5"), &e), LRP_E_INVALID);
    assert_non_null(strstr(e.msg, "relu/1"));
    assert_int_equal(access(path_of("slash.h5"), F_OK), -1);
    lrp_net_free(a);
}

/* ------------------------------------------------------------------ */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_mlp),
        cmocka_unit_test(test_roundtrip_cnn),
        cmocka_unit_test(test_roundtrip_deep_chain),
        cmocka_unit_test(test_byte_identical),
        cmocka_unit_test(test_write_refuses_invalid_net),
        cmocka_unit_test(test_write_failure_keeps_target),
        cmocka_unit_test(test_reads_h5py_style),
        cmocka_unit_test(test_not_hdf5),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_missing_network),
        cmocka_unit_test(test_missing_weight),
        cmocka_unit_test(test_weight_int32),
        cmocka_unit_test(test_weight_float64),
        cmocka_unit_test(test_weight_wrong_rank),
        cmocka_unit_test(test_conv_weight_rank3),
        cmocka_unit_test(test_weight_wrong_shape),
        cmocka_unit_test(test_graph_shape_mismatch),
        cmocka_unit_test(test_add_shape_mismatch),
        cmocka_unit_test(test_cycle),
        cmocka_unit_test(test_self_cycle),
        cmocka_unit_test(test_forward_reference),
        cmocka_unit_test(test_unknown_input),
        cmocka_unit_test(test_unknown_kind),
        cmocka_unit_test(test_unknown_rule),
        cmocka_unit_test(test_unknown_stabilizer),
        cmocka_unit_test(test_unknown_flag),
        cmocka_unit_test(test_alpha_beta),
        cmocka_unit_test(test_negative_eps),
        cmocka_unit_test(test_trace_rule_invalid),
        cmocka_unit_test(test_inexact_float64_attr),
        cmocka_unit_test(test_groups_not_dividing),
        cmocka_unit_test(test_zero_stride),
        cmocka_unit_test(test_absurd_units),
        cmocka_unit_test(test_absurd_dataset),
        cmocka_unit_test(test_absurd_batch),
        cmocka_unit_test(test_format_version),
        cmocka_unit_test(test_not_a_fixture),
        cmocka_unit_test(test_order_missing),
        cmocka_unit_test(test_order_names_missing_layer),
        cmocka_unit_test(test_unlisted_layer_group),
        cmocka_unit_test(test_misspelt_rule_entry),
        cmocka_unit_test(test_soft_link),
        cmocka_unit_test(test_external_storage),
        cmocka_unit_test(test_bias_without_has_bias),
        cmocka_unit_test(test_input_wrong_shape),
        cmocka_unit_test(test_relevance_out_wrong_shape),
        cmocka_unit_test(test_target_out_of_range),
        cmocka_unit_test(test_trace_wrong_shape),
        cmocka_unit_test(test_corrupt_data_checksum),
        cmocka_unit_test(test_write_refuses_slash_name),
    };
    /* The scratch directory is removed here, not in a group teardown, so
     * it goes even when a test fails. */
    g_dir = tu_mkdtemp("h5io");
    if (!g_dir)
        return 1;
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (tu_rmtree(g_dir) != 0) {
        fprintf(stderr, "test_h5io: cannot remove %s\n", g_dir);
        failed++;
    }
    free(g_dir);
    return failed;
}
