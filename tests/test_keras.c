/*
 * test_keras.c -- the Keras .h5 importer (core/keras_import.c).
 *
 * tests/keras/make_keras_models.py writes Keras-layout files with h5py (no
 * TensorFlow on the project machines) and evaluates each valid model with
 * an independent numpy interpreter of Keras semantics (NHWC, TensorFlow's
 * "same" padding, BN epsilon in float32, Flatten in (H, W, C) order).  Here
 * each model is imported and evaluated by a naive double-precision NCHW
 * forward pass over the lrp_net written below, on the same input converted
 * NHWC -> NCHW.  Both sides are double-precision evaluations of the same
 * float32 weights, differing only in summation order, so they must agree
 * to ~1e-9 relative (the actual difference is ~1e-15).  A wrong layout
 * conversion, padding side or Flatten permutation changes logits at the
 * 1e-2 level.
 *
 * Malformed and unsupported files must fail with the right status and a
 * one-line message naming the file, the object and the problem, without
 * HDF5 printing anything to stderr.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "keras_import.h"
#include "lrp.h"
#include "util/testutil.h"

#define PYTHON "/usr/bin/python3"

static char *g_dir;      /* generated models, or NULL when skipped */
static const char *g_skip_why = "";

static char *script_path(void)
{
    const char *env = getenv("LRP_KERAS_SCRIPT");
    if (env)
        return strdup(env);
    /* __FILE__ is tests/test_keras.c relative to the repository root. */
    const char *f = __FILE__;
    const char *slash = strrchr(f, '/');
    size_t n = slash ? (size_t)(slash - f + 1) : 0;
    char *p = malloc(n + 64);
    if (!p)
        return NULL;
    memcpy(p, f, n);
    strcpy(p + n, "keras/make_keras_models.py");
    return p;
}

static int group_setup(void **state)
{
    (void)state;
    if (access(PYTHON, X_OK) != 0) {
        g_skip_why = PYTHON " not found";
        return 0;
    }
    if (system(PYTHON " -c 'import h5py, numpy' >/dev/null 2>&1") != 0) {
        g_skip_why = PYTHON " lacks h5py or numpy (Debian: python3-h5py python3-numpy)";
        return 0;
    }
    char *script = script_path();
    g_dir = tu_mkdtemp("keras");
    if (!script || !g_dir || access(script, R_OK) != 0) {
        fprintf(stderr, "test_keras: cannot find %s or create a scratch directory\n",
                script ? script : "the script");
        free(script);
        return -1;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, PYTHON " '%s' '%s'", script, g_dir);
    free(script);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_keras: %s failed\n", cmd);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_dir) {
        tu_rmtree(g_dir);
        free(g_dir);
        g_dir = NULL;
    }
    return 0;
}

static void need_models(void)
{
    if (!g_dir) {
        print_message("skipped: %s\n", g_skip_why);
        skip();
    }
}

static const char *model_path(const char *name)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
    return buf;
}

/* ---- a naive double-precision forward pass over an lrp_net (NCHW) ---- */

static double *forward(const lrp_net *net, const double *x)
{
    double **a = calloc((size_t)net->n_layers, sizeof *a);
    assert_non_null(a);
    for (int li = 0; li < net->n_layers; li++) {
        const lrp_layer *l = &net->layers[li];
        int64_t n = lrp_shape_numel(&l->shape);
        double *y = calloc((size_t)n, sizeof *y);
        assert_non_null(y);
        a[li] = y;
        const double *in = l->n_in ? a[l->in[0]] : NULL;
        const lrp_shape *is = l->n_in ? &net->layers[l->in[0]].shape : NULL;
        switch (l->kind) {
        case LRP_LAYER_INPUT: memcpy(y, x, (size_t)n * sizeof *y); break;
        case LRP_LAYER_DENSE: {
            int64_t f = is->d[0];
            for (int64_t o = 0; o < l->units; o++) {
                double s = l->has_bias ? l->b[o] : 0.0;
                for (int64_t q = 0; q < f; q++)
                    s += (double)l->w[o * f + q] * in[q];
                y[o] = s;
            }
            break;
        }
        case LRP_LAYER_CONV2D: {
            int64_t C = is->d[0], H = is->d[1], W = is->d[2];
            int64_t O = l->shape.d[0], Ho = l->shape.d[1], Wo = l->shape.d[2];
            int64_t cg = C / l->groups, og = O / l->groups;
            for (int64_t o = 0; o < O; o++)
                for (int64_t oy = 0; oy < Ho; oy++)
                    for (int64_t ox = 0; ox < Wo; ox++) {
                        double s = l->has_bias ? l->b[o] : 0.0;
                        int64_t g = o / og;
                        for (int64_t q = 0; q < cg; q++)
                            for (int i = 0; i < l->kh; i++)
                                for (int j = 0; j < l->kw; j++) {
                                    int64_t iy = oy * l->sh - l->pt + (int64_t)i * l->dh;
                                    int64_t ix = ox * l->sw - l->pl + (int64_t)j * l->dw;
                                    if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                        continue;
                                    s += (double)l->w[((o * cg + q) * l->kh + i) * l->kw + j] *
                                         in[((g * cg + q) * H + iy) * W + ix];
                                }
                        y[(o * Ho + oy) * Wo + ox] = s;
                    }
            break;
        }
        case LRP_LAYER_MAXPOOL2D:
        case LRP_LAYER_AVGPOOL2D: {
            int64_t C = is->d[0], H = is->d[1], W = is->d[2];
            int64_t Ho = l->shape.d[1], Wo = l->shape.d[2];
            int mx = l->kind == LRP_LAYER_MAXPOOL2D;
            for (int64_t c = 0; c < C; c++)
                for (int64_t oy = 0; oy < Ho; oy++)
                    for (int64_t ox = 0; ox < Wo; ox++) {
                        double s = mx ? -INFINITY : 0.0;
                        int cnt = 0;
                        for (int i = 0; i < l->kh; i++)
                            for (int j = 0; j < l->kw; j++) {
                                int64_t iy = oy * l->sh - l->pt + i, ix = ox * l->sw - l->pl + j;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                    continue;
                                double v = in[(c * H + iy) * W + ix];
                                if (mx)
                                    s = v > s ? v : s;
                                else
                                    s += v;
                                cnt++;
                            }
                        if (!mx)
                            s /= l->count_include_pad ? (double)(l->kh * l->kw) : (double)cnt;
                        y[(c * Ho + oy) * Wo + ox] = s;
                    }
            break;
        }
        case LRP_LAYER_GLOBALAVGPOOL: {
            int64_t hw = is->d[1] * is->d[2];
            for (int64_t c = 0; c < is->d[0]; c++) {
                double s = 0.0;
                for (int64_t p = 0; p < hw; p++)
                    s += in[c * hw + p];
                y[c] = s / (double)hw;
            }
            break;
        }
        case LRP_LAYER_ADD:
            for (int k = 0; k < l->n_in; k++)
                for (int64_t e = 0; e < n; e++)
                    y[e] += a[l->in[k]][e];
            break;
        case LRP_LAYER_CONCAT: {
            int64_t off = 0;
            for (int k = 0; k < l->n_in; k++) {
                int64_t m = lrp_shape_numel(&net->layers[l->in[k]].shape);
                memcpy(y + off, a[l->in[k]], (size_t)m * sizeof *y);
                off += m;
            }
            break;
        }
        case LRP_LAYER_BATCHNORM: {
            int64_t C = is->d[0], inner = n / C;
            for (int64_t c = 0; c < C; c++)
                for (int64_t p = 0; p < inner; p++)
                    y[c * inner + p] = (double)l->bn_gamma[c] * (in[c * inner + p] - l->bn_mean[c]) /
                                           sqrt((double)l->bn_var[c] + (double)l->bn_eps) +
                                       l->bn_beta[c];
            break;
        }
        case LRP_LAYER_RELU:
            for (int64_t e = 0; e < n; e++)
                y[e] = in[e] > 0.0 ? in[e] : 0.0;
            break;
        case LRP_LAYER_FLATTEN:
        case LRP_LAYER_RESHAPE:
        case LRP_LAYER_DROPOUT: memcpy(y, in, (size_t)n * sizeof *y); break;
        default: fail_msg("kind %s: no Keras importer maps to it", lrp_layer_kind_name(l->kind));
        }
    }
    double *out = a[net->n_layers - 1];
    for (int li = 0; li + 1 < net->n_layers; li++)
        free(a[li]);
    free(a);
    return out;
}

/* Reads a float64 view of a dataset of the sidecar file. */
static double *read_ds(hid_t f, const char *name, int64_t *n, int *rank, hsize_t *dims)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t s = H5Dget_space(d);
    *rank = H5Sget_simple_extent_ndims(s);
    H5Sget_simple_extent_dims(s, dims, NULL);
    *n = H5Sget_simple_extent_npoints(s);
    double *v = malloc((size_t)*n * sizeof *v);
    assert_non_null(v);
    assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Sclose(s);
    H5Dclose(d);
    return v;
}

static lrp_net *import_ok(const char *name)
{
    lrp_net *net = NULL;
    lrp_err e = {0};
    lrp_status st = lrp_keras_import(&net, model_path(name), &e);
    if (st != LRP_OK)
        fail_msg("%s: import failed: %s: %s", name, lrp_status_name(st), e.msg);
    assert_non_null(net);
    return net;
}

/* Imports NAME.h5 and checks its logits against NAME.expected.h5. */
static lrp_net *check_model(const char *name)
{
    char file[256], exp[256];
    snprintf(file, sizeof file, "%s.h5", name);
    snprintf(exp, sizeof exp, "%s.expected.h5", name);
    lrp_net *net = import_ok(file);

    hid_t f = H5Fopen(model_path(exp), H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    int rank;
    hsize_t dims[8];
    int64_t nx, ny;
    double *xk = read_ds(f, "input", &nx, &rank, dims);
    double *ref = read_ds(f, "logits", &ny, &rank, dims + 4);
    char layout[8] = "";
    hid_t at = H5Aopen(f, "layout", H5P_DEFAULT);
    assert_true(at >= 0);
    hid_t ty = H5Aget_type(at), mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    char *lay = NULL;
    if (H5Tis_variable_str(ty) > 0) {
        H5Aread(at, mt, &lay);
        snprintf(layout, sizeof layout, "%s", lay);
        H5free_memory(lay);
    } else {
        H5Aread(at, ty, layout);
    }
    H5Tclose(mt);
    H5Tclose(ty);
    H5Aclose(at);
    H5Fclose(f);

    /* Input: Keras (H, W, C) -> our (C, H, W) for channels_last images. */
    const lrp_shape *is = &net->layers[0].shape;
    assert_int_equal(lrp_shape_numel(is), nx);
    double *x = malloc((size_t)nx * sizeof *x);
    assert_non_null(x);
    if (is->rank == 3 && strcmp(layout, "NHWC") == 0) {
        int64_t C = is->d[0], H = is->d[1], W = is->d[2];
        assert_int_equal(dims[0], H);
        assert_int_equal(dims[1], W);
        assert_int_equal(dims[2], C);
        for (int64_t c = 0; c < C; c++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t w = 0; w < W; w++)
                    x[(c * H + h) * W + w] = xk[(h * W + w) * C + c];
    } else {
        memcpy(x, xk, (size_t)nx * sizeof *x);
    }
    const lrp_shape *os = &net->layers[net->n_layers - 1].shape;
    assert_int_equal(lrp_shape_numel(os), ny);
    double *y = forward(net, x);
    double scale = 1.0, maxerr = 0.0;
    for (int64_t k = 0; k < ny; k++)
        scale = fabs(ref[k]) > scale ? fabs(ref[k]) : scale;
    for (int64_t k = 0; k < ny; k++) {
        double d = fabs(y[k] - ref[k]);
        maxerr = d > maxerr ? d : maxerr;
        if (!(d <= 1e-9 * scale))
            fail_msg("%s: logit %lld: imported net %.17g, Keras semantics %.17g", name,
                     (long long)k, y[k], ref[k]);
    }
    print_message("%s: %d layers, %lld logits, max |diff| %.3g (%s)\n", name, net->n_layers,
                  (long long)ny, maxerr, net->description);
    free(x);
    free(xk);
    free(ref);
    free(y);
    return net;
}

static const lrp_layer *layer(const lrp_net *net, const char *name)
{
    int i = lrp_net_find(net, name);
    if (i < 0)
        fail_msg("no layer '%s'", name);
    return &net->layers[i];
}

static void assert_pads(const lrp_layer *l, int t, int b, int le, int r)
{
    if (l->pt != t || l->pb != b || l->pl != le || l->pr != r)
        fail_msg("layer '%s': padding (%d, %d, %d, %d), expected (%d, %d, %d, %d)", l->name, l->pt,
                 l->pb, l->pl, l->pr, t, b, le, r);
}

/* ---- valid models ---- */

static void test_vgg_sequential(void **state)
{
    (void)state;
    need_models();
    lrp_net *net = check_model("vgg");
    assert_pads(layer(net, "conv2d"), 1, 1, 1, 1);
    assert_pads(layer(net, "conv2d_1"), 0, 1, 0, 1);   /* 2x2 "same": the extra cell after */
    assert_pads(layer(net, "conv2d_2"), 0, 1, 0, 1);   /* 6 -> 3 at stride 2 */
    assert_pads(layer(net, "average_pooling2d"), 0, 1, 0, 1);
    assert_int_equal(layer(net, "average_pooling2d")->count_include_pad, 0);
    assert_int_equal(layer(net, "conv2d_relu")->kind, LRP_LAYER_RELU);
    assert_int_equal(layer(net, "dense_relu")->kind, LRP_LAYER_RELU);
    assert_true(layer(net, "batch_normalization")->bn_eps == 1e-3f);
    /* Output is dense_1 itself: the softmax was dropped, with a note. */
    assert_string_equal(net->layers[net->n_layers - 1].name, "dense_1");
    assert_non_null(strstr(net->description, "softmax"));
    assert_non_null(strstr(net->description, "2.15.0"));
    lrp_net_free(net);
}

static void test_resnet_functional(void **state)
{
    (void)state;
    need_models();
    lrp_net *net = check_model("resnet");
    const lrp_layer *dw = layer(net, "depthwise_conv2d");
    assert_int_equal(dw->groups, 8);
    assert_int_equal(dw->units, 16);
    assert_pads(dw, 1, 0, 0, 1); /* folded ZeroPadding2D ((1, 0), (0, 1)) */
    assert_int_equal(lrp_net_find(net, "zero_padding2d"), -1);
    assert_int_equal(layer(net, "conv2d_1")->dh, 2);
    assert_pads(layer(net, "conv2d_1"), 2, 2, 2, 2);
    assert_int_equal(layer(net, "conv2d_2")->groups, 4);
    assert_true(layer(net, "batch_normalization")->bn_eps == 1.001e-5f);
    const lrp_layer *bn1 = layer(net, "batch_normalization_1"); /* center=False */
    const lrp_layer *bn2 = layer(net, "batch_normalization_2"); /* scale=False */
    for (int c = 0; c < 8; c++)
        assert_true(bn1->bn_beta[c] == 0.0f);
    for (int c = 0; c < 12; c++)
        assert_true(bn2->bn_gamma[c] == 1.0f);
    assert_int_equal(layer(net, "add")->kind, LRP_LAYER_ADD);
    assert_int_equal(layer(net, "concatenate")->kind, LRP_LAYER_CONCAT);
    assert_string_equal(net->layers[net->n_layers - 1].name, "dense");
    assert_non_null(strstr(net->description, "'predictions' dropped"));
    lrp_net_free(net);
}

static void test_legacy_bare_list(void **state)
{
    (void)state;
    need_models();
    /* Flatten -> BatchNormalization (permuted per feature) -> Dense. */
    lrp_net *net = check_model("legacy");
    assert_string_equal(net->layers[0].name, "input");
    assert_non_null(strstr(net->description, "Keras <= 2.2.2"));
    lrp_net_free(net);
}

static void test_keras3_functional(void **state)
{
    (void)state;
    need_models();
    /* keras_history inbound nodes, batch_shape, names without ':0',
     * variable-length model_config, layer_names0..3, SeparableConv2D,
     * GlobalMaxPooling2D, Concatenate of a permuted Flatten. */
    lrp_net *net = check_model("keras3");
    assert_int_equal(layer(net, "separable_conv2d_depthwise")->groups, 3);
    assert_non_null(strstr(net->description, "Keras 3"));
    lrp_net_free(net);
}

static void test_channels_first_float64(void **state)
{
    (void)state;
    need_models();
    lrp_net *net = check_model("cf");
    assert_int_equal(net->layers[0].shape.d[0], 2);
    assert_int_equal(net->layers[0].shape.d[1], 6);
    assert_non_null(strstr(net->description, "channels_first"));
    lrp_net_free(net);
}

static void test_reshape_mlp(void **state)
{
    (void)state;
    need_models();
    lrp_net *net = check_model("mlp");
    assert_int_equal(layer(net, "reshape")->kind, LRP_LAYER_RESHAPE);
    assert_int_equal(layer(net, "reshape")->shape.d[0], 16);
    lrp_net_free(net);
}

static void test_error_printer_restored(void **state)
{
    (void)state;
    need_models();
    H5E_auto2_t fn0 = NULL, fn1 = NULL;
    void *d0 = NULL, *d1 = NULL;
    H5Eget_auto2(H5E_DEFAULT, &fn0, &d0);
    lrp_net *net = NULL;
    lrp_err e;
    assert_int_not_equal(lrp_keras_import(&net, model_path("bad_missingds.h5"), &e), LRP_OK);
    H5Eget_auto2(H5E_DEFAULT, &fn1, &d1);
    assert_true(fn0 == fn1 && d0 == d1);
    assert_null(net);
}

/* ---- malformed and unsupported files ---- */

static const struct bad_case {
    const char *file;
    lrp_status code;
    const char *needles[3]; /* substrings the message must contain */
} bad_cases[] = {
    {"bad_nothdf5.h5", LRP_E_FORMAT, {"bad_nothdf5.h5: file: ", "not an HDF5 file"}},
    {"bad_noconfig.h5", LRP_E_FORMAT, {"bad_noconfig.h5: model_config: ", "missing"}},
    {"bad_json.h5", LRP_E_FORMAT, {"bad_json.h5: model_config: invalid JSON at line ", "column"}},
    {"bad_nan.h5", LRP_E_FORMAT, {"bad_nan.h5: model_config: line ", "bare NaN", "not valid JSON"}},
    {"bad_lambda.h5", LRP_E_UNSUPPORTED,
     {"bad_lambda.h5: model_config: layer 2 'lambda_1' (Lambda): unsupported layer class"}},
    {"bad_wcount.h5", LRP_E_INVALID,
     {"bad_wcount.h5: model_weights/dense: ", "lists 1 arrays", "'dense'"}},
    {"bad_wshape.h5", LRP_E_INVALID,
     {"bad_wshape.h5: model_weights/dense/dense/kernel:0: shape (3, 144), expected (144, 3)",
      "'dense'"}},
    {"bad_f16.h5", LRP_E_UNSUPPORTED, {"bad_f16.h5: model_weights/conv2d/conv2d/kernel:0: ", "float16"}},
    {"bad_f64.h5", LRP_E_UNSUPPORTED,
     {"bad_f64.h5: model_weights/dense/dense/bias:0: ", "not exactly representable in float32"}},
    {"bad_nlayers.h5", LRP_E_INVALID,
     {"bad_nlayers.h5: model_weights: 1 layers carry weights, model_config has 2"}},
    {"bad_missingds.h5", LRP_E_FORMAT,
     {"bad_missingds.h5: model_weights/dense/dense/kernel:0: missing object"}},
    {"bad_tanh.h5", LRP_E_UNSUPPORTED,
     {"bad_tanh.h5: model_config: layer 1 'conv2d' (Conv2D): activation 'tanh' unsupported"}},
    {"bad_midsoftmax.h5", LRP_E_UNSUPPORTED,
     {"layer 1 'conv2d' (Conv2D): activation 'softmax' unsupported", "only at the model output"}},
    {"bad_zeropool.h5", LRP_E_UNSUPPORTED,
     {"layer 1 'zero_padding2d' (ZeroPadding2D): feeds 'max_pooling2d' (MaxPooling2D)"}},
    {"bad_shared.h5", LRP_E_UNSUPPORTED,
     {"bad_shared.h5: model_config: layer 1 'dense' (Dense): ", "shared layer"}},
    {"bad_mixed.h5", LRP_E_UNSUPPORTED,
     {"layer 1 'conv2d' (Conv2D): dtype policy 'mixed_float16' unsupported"}},
    {"does_not_exist.h5", LRP_E_IO, {"does_not_exist.h5: file: cannot open"}},
};

static void test_malformed(void **state)
{
    (void)state;
    need_models();
    for (size_t k = 0; k < sizeof bad_cases / sizeof bad_cases[0]; k++) {
        const struct bad_case *b = &bad_cases[k];
        lrp_net *net = (lrp_net *)&net; /* must be reset to NULL */
        lrp_err e;
        memset(&e, 0, sizeof e);
        char path[1024], printed[512];
        snprintf(path, sizeof path, "%s", model_path(b->file));
        tu_capture cap;
        assert_int_equal(tu_stderr_begin(&cap), 0);
        lrp_status st = lrp_keras_import(&net, path, &e);
        size_t nprinted = tu_stderr_end(&cap, printed, sizeof printed);
        if (nprinted)
            fail_msg("%s: something was printed to stderr: %s", b->file, printed);
        assert_null(net);
        if (st != b->code)
            fail_msg("%s: status %s, expected %s (%s)", b->file, lrp_status_name(st),
                     lrp_status_name(b->code), e.msg);
        assert_int_equal(e.code, b->code);
        assert_null(strchr(e.msg, '\n'));
        assert_true(strncmp(e.msg, path, strlen(path)) == 0);
        for (int q = 0; q < 3 && b->needles[q]; q++)
            if (!strstr(e.msg, b->needles[q]))
                fail_msg("%s: message lacks \"%s\": %s", b->file, b->needles[q], e.msg);
        print_message("%-20s %s\n", b->file, e.msg);
    }
}

/* FUZZ_COUNT in make_keras_models.py */
#define N_FUZZ 80

static void test_config_mutations(void **state)
{
    (void)state;
    need_models();
    int ok = 0, rejected = 0;
    for (int k = 0; k < N_FUZZ; k++) {
        char name[32], path[1024];
        snprintf(name, sizeof name, "fuzz_%02d.h5", k);
        snprintf(path, sizeof path, "%s", model_path(name));
        lrp_net *net = NULL;
        lrp_err e;
        memset(&e, 0, sizeof e);
        lrp_status st = lrp_keras_import(&net, path, &e);
        if (st == LRP_OK) {
            /* accepted: a valid, inferred net */
            assert_non_null(net);
            assert_int_equal(lrp_net_infer(net, path, &e), LRP_OK);
            lrp_net_free(net);
            ok++;
            continue;
        }
        rejected++;
        assert_null(net);
        if (st != LRP_E_FORMAT && st != LRP_E_INVALID && st != LRP_E_UNSUPPORTED)
            fail_msg("%s: unexpected status %s: %s", name, lrp_status_name(st), e.msg);
        assert_int_equal(e.code, st);
        assert_null(strchr(e.msg, '\n'));
        if (strncmp(e.msg, path, strlen(path)) != 0 || strlen(e.msg) < strlen(path) + 6)
            fail_msg("%s: message does not name the file and an object: %s", name, e.msg);
    }
    print_message("config mutations: %d accepted, %d rejected\n", ok, rejected);
    assert_true(rejected > N_FUZZ / 4); /* the sweep does reach the checks */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vgg_sequential),
        cmocka_unit_test(test_resnet_functional),
        cmocka_unit_test(test_legacy_bare_list),
        cmocka_unit_test(test_keras3_functional),
        cmocka_unit_test(test_channels_first_float64),
        cmocka_unit_test(test_reshape_mlp),
        cmocka_unit_test(test_error_printer_restored),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_config_mutations),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
