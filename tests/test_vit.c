/*
 * test_vit.c -- the ViT patch embedding (core/kind_vit.c, oracle/gauge_vit.c;
 * docs/TRANSFORMERS.md section 7) and the LXT profiles (tools/profiles.c):
 *   - ToTokens / ClsToken shape and parameter errors: one line naming the
 *     file and the layer; a version-1 file naming them is refused;
 *   - the reference against tests/naive/naive_vit.c (the patch embedding
 *     written as a Dense on each flattened patch, 256 bits);
 *   - conservation closing with `cls` absorbed;
 *   - the clean fast path within tolerance on vit_tiny and bert_tiny;
 *   - must-fail mutants: a trace whose relevance through ToTokens is
 *     permuted, or through ClsToken sign-flipped or shifted by a row, is
 *     FAIL at that tensor;
 *   - the profiles lxt and lxt-explicit set the rules they document.
 */
#define _DEFAULT_SOURCE 1 /* mkstemps */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "backend_f32.h"
#include "check.h"
#include "fixtures.h"
#include "gauge.h"
#include "naive/naive_vit.h"
#include "pipeline.h"
#include "reference.h"
#include "util/testutil.h"

/* The profiles are the command line's code (tools/), not the library's:
 * the one file is compiled in here. */
#include "profiles.c"


static lrp_pipe *ref_run(const lrp_net *net, lrp_ref_ctx *cx, lrp_backend *be)
{
    lrp_ref_ctx_init(cx, 128, 2);
    lrp_ref_backend(be, cx);
    lrp_pipe *p = NULL;
    lrp_err e = {0};
    if (lrp_pipe_run(&p, be, net, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    return p;
}

static double dget(mpfr_srcptr t, int64_t i)
{
    return mpfr_get_d(t + i, MPFR_RNDN);
}

/* ---- errors ---- */

static void expect_infer_error(lrp_net *net, const char *want)
{
    lrp_err e = {0};
    lrp_status st = lrp_net_infer(net, "f.h5", &e);
    assert_int_equal(st, LRP_E_INVALID);
    if (!strstr(e.msg, want) || !strstr(e.msg, "f.h5") || strchr(e.msg, '\n'))
        fail_msg("message '%s' lacks '%s' or the file, or is not one line", e.msg, want);
}

static void test_shape_errors(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("vit_tiny");
    int tok = lrp_net_find(net, "tokens"), cls = lrp_net_find(net, "cls_token");
    assert_true(tok > 0 && cls == tok + 1);
    /* ClsToken on the image-shaped patch grid (32, 4, 4) */
    net->layers[cls].in[0] = tok - 1;
    expect_infer_error(net, "layer 'cls_token': ClsToken needs a token sequence (T, F), got rank 3");
    net->layers[cls].in[0] = tok;
    assert_int_equal(lrp_net_infer(net, "f.h5", NULL), LRP_OK);
    lrp_net_free(net);

    /* a ToTokens fed a (T, F) tensor */
    net = lrp_net_new();
    lrp_builder b;
    lrp_err e = {0};
    lrp_build_begin(&b, net, 5, &e);
    int x = lrp_build_input(&b, "x", 2, 4, 8, 0);
    assert_int_equal(lrp_build_totokens(&b, "tt", x), -1);
    if (!strstr(e.msg, "layer 'tt': ToTokens needs a (C, H, W) tensor, got rank 2"))
        fail_msg("message: %s", e.msg);
    lrp_net_free(net);

    /* a non-finite CLS vector is named */
    net = tu_fixture("vit_tiny");
    net->layers[cls].w[5] = NAN;
    assert_int_equal(lrp_net_check_values(net, "f.h5", &e), LRP_E_INVALID);
    if (!strstr(e.msg, "f.h5: layer 'cls_token': parameter cls_token[5] is NaN"))
        fail_msg("message: %s", e.msg);
    lrp_net_free(net);
}

static char *tmp_h5(void)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/lrp_vit_XXXXXX.h5");
    int fd = mkstemps(path, 3);
    assert_true(fd >= 0);
    close(fd);
    remove(path);
    return path;
}

/* round trip; a cls_token dataset of the wrong length and a version-1
 * file are refused with one line naming the file and the layer group */
static void test_file_errors(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("vit_tiny");
    char *path = tmp_h5();
    lrp_err e = {0};
    if (lrp_fixture_write(net, path, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    lrp_net *back = NULL;
    if (lrp_fixture_read(&back, path, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    int cls = lrp_net_find(back, "cls_token");
    assert_int_equal(back->layers[cls].kind, LRP_LAYER_CLSTOKEN);
    assert_int_equal(back->layers[cls - 1].kind, LRP_LAYER_TOTOKENS);
    assert_memory_equal(back->layers[cls].w, net->layers[cls].w, 32 * sizeof(float));
    lrp_net_free(back);

    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    char grp[128];
    snprintf(grp, sizeof grp, "/network/%03d_cls_token", cls);
    hid_t g = H5Gopen2(f, grp, H5P_DEFAULT);
    assert_true(g >= 0);
    assert_true(H5Ldelete(g, "cls_token", H5P_DEFAULT) >= 0);
    hsize_t d = 31;
    hid_t sp = H5Screate_simple(1, &d, NULL);
    float v[31] = {0};
    hid_t ds = H5Dcreate2(g, "cls_token", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(f);
    lrp_status st = lrp_fixture_read(&back, path, &e);
    assert_int_not_equal(st, LRP_OK);
    if (!strstr(e.msg, path) || !strstr(e.msg, "cls_token") || strchr(e.msg, '\n'))
        fail_msg("message: %s", e.msg);

    remove(path);
    if (lrp_fixture_write(net, path, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int32_t ver = 0;
    H5Aread(a, H5T_NATIVE_INT32, &ver);
    assert_int_equal(ver, 2);
    ver = 1;
    H5Awrite(a, H5T_NATIVE_INT32, &ver);
    H5Aclose(a);
    H5Fclose(f);
    assert_int_not_equal(lrp_fixture_read(&back, path, &e), LRP_OK);
    if (!strstr(e.msg, path) || !strstr(e.msg, "_tokens: layer kind 'ToTokens' needs format_version 2") ||
        strchr(e.msg, '\n'))
        fail_msg("message: %s", e.msg);
    remove(path);
    lrp_net_free(net);
}

/* ---- the reference against the naive patch embedding ---- */

/* Input (3, 8, 12) -> Conv2D 5, patch 4 -> ToTokens (6, 5) -> ClsToken
 * (7, 5), R_out given at the ClsToken (T != F: a transpose is not its own
 * inverse).  The reference's pixel relevance
 * against naive_vit_embed (a Dense per flattened patch).  Tolerance: the
 * reference rounds at 128 bits (2^-128 ~ 3e-39 relative per op), a
 * 48-term sum, a division and a product per contribution, amplified by
 * the condition of z (|z| >= 1e-3 sum |w x| in these draws: <= 1e3);
 * 1e-30 of the largest value is a margin of ~1e5 over that, and far below
 * a float32 ulp (6e-8). */
static void vit_vs_naive(lrp_rule_id rule, uint64_t seed)
{
    lrp_net *net = lrp_net_new();
    lrp_builder b;
    lrp_err e = {0};
    lrp_build_begin(&b, net, seed, &e);
    int x = lrp_build_input(&b, "x", 3, 3, 8, 12);
    x = lrp_build_conv(&b, "patch", x, 5, 4, 4, 0, 1, 1);
    x = lrp_build_totokens(&b, "tokens", x);
    lrp_build_clstoken(&b, "cls", x);
    if (lrp_build_finish(&b, 2) != LRP_OK)
        fail_msg("%s", e.msg);
    net->layers[1].rule = lrp_rule_default(rule);
    if (rule == LRP_RULE_ZERO)
        net->layers[1].rule.eps = 0.0f;
    int64_t nout = 7 * 5, nin = 3 * 8 * 12;
    net->r_out = malloc((size_t)(2 * nout) * sizeof(float));
    for (int64_t i = 0; i < 2 * nout; i++)
        net->r_out[i] = lrp_rng_sym(&b.rng);
    lrp_ref_ctx cx;
    lrp_backend be;
    lrp_pipe *p = ref_run(net, &cx, &be);
    const lrp_layer *cv = &net->layers[1];
    for (int64_t s = 0; s < 2; s++) {
        double want[288], cls, absd;
        naive_vit_embed(want, &cls, &absd, net->input + s * nin, 3, 8, 12, 4, 5, cv->w, cv->b,
                        net->r_out + s * nout, rule == LRP_RULE_ZERO ? 0.0f : cv->rule.eps);
        double d = 0, m = 0;
        for (int64_t i = 0; i < nin; i++) {
            double got = dget((mpfr_srcptr)p->L[1].rin[0], s * nin + i);
            d = fmax(d, fabs(got - want[i]));
            m = fmax(m, fabs(want[i]));
        }
        if (!(d <= 1e-30 * m) || !(m > 0))
            fail_msg("%s sample %lld: reference off the naive value by %g (scale %g)",
                     lrp_rule_name(rule), (long long)s, d, m);
        /* the CLS row's relevance is absorbed as `cls`, exactly */
        double ac = 0;
        for (int f = 0; f < 5; f++)
            ac += dget((mpfr_srcptr)p->L[3].abs[LRP_ABS_CLS], s * 5 + f);
        assert_true(fabs(ac - cls) <= 1e-30 * (fabs(cls) + 1));
    }
    /* the copies conserve exactly; the patch Dense up to its bias share */
    assert_true(p->L[2].cons_resid == 0.0);
    assert_true(p->L[3].cons_resid == 0.0);
    assert_true(p->L[1].cons_resid < 1e-30);
    lrp_pipe_free(p);
    lrp_net_free(net);
}

static void test_reference_naive(void **state)
{
    (void)state;
    vit_vs_naive(LRP_RULE_EPSILON, 31);
    vit_vs_naive(LRP_RULE_ZERO, 32);
}

/* ---- conservation on vit_tiny: `cls` closes the ClsToken's books ---- */

static void test_conservation_cls(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("vit_tiny");
    lrp_ref_ctx cx;
    lrp_backend be;
    lrp_pipe *p = ref_run(net, &cx, &be);
    int cls = lrp_net_find(net, "cls_token"), tok = cls - 1;
    int64_t F = 32, n = p->L[cls].n, nin = p->L[tok].n;
    assert_non_null(p->L[cls].abs[LRP_ABS_CLS]);
    assert_int_equal(p->L[cls].n_units, F);
    for (int64_t s = 0; s < net->batch; s++) {
        /* sum R_out = sum R_in + cls, and cls is row 0 of R_out */
        double out = 0, in = 0, ab = 0, row0 = 0;
        for (int64_t i = 0; i < n; i++)
            out += dget((mpfr_srcptr)p->L[cls].rel, s * n + i);
        for (int64_t i = 0; i < nin; i++)
            in += dget((mpfr_srcptr)p->L[cls].rin[0], s * nin + i);
        for (int64_t f = 0; f < F; f++) {
            ab += dget((mpfr_srcptr)p->L[cls].abs[LRP_ABS_CLS], s * F + f);
            row0 += dget((mpfr_srcptr)p->L[cls].rel, s * n + f);
        }
        /* binary64 sums of 544 values: 1e-12 of their magnitude */
        assert_true(fabs(out - in - ab) <= 1e-12 * (fabs(out) + fabs(ab) + 1e-300));
        assert_true(ab == row0 || fabs(ab - row0) <= 1e-15 * fabs(row0));
        assert_true(fabs(ab) > 0); /* the CLS row does receive relevance */
    }
    assert_true(p->L[cls].cons_resid == 0.0);
    assert_true(p->L[tok].cons_resid == 0.0);
    /* ToTokens: the permutation, value for value */
    mpfr_srcptr R = (mpfr_srcptr)p->L[tok].rel, Ri = (mpfr_srcptr)p->L[tok].rin[0];
    for (int64_t t = 0; t < 16; t++)
        for (int64_t c = 0; c < F; c++)
            assert_true(mpfr_equal_p(R + t * F + c, Ri + c * 16 + t));
    lrp_pipe_free(p);
    lrp_net_free(net);
}

/* ---- the gauge's own index map ----
 * The gauge (oracle/gauge_vit.c) states where each copied cell comes from
 * by itself; its bounds must move with the values: ToTokens' output cell
 * (t, c) carries the forward bound of its input cell (c, t), the CLS row
 * carries 0 (a binary32 constant), and backwards the bound of the patch
 * conv's relevance at (c, t) is the one at ToTokens' output (t, c). */
static void test_gauge_map(void **state)
{
    (void)state;
    lrp_net *net = lrp_net_new();
    lrp_builder b;
    lrp_err e = {0};
    lrp_build_begin(&b, net, 41, &e);
    int x = lrp_build_input(&b, "x", 3, 3, 8, 12);
    x = lrp_build_conv(&b, "patch", x, 5, 4, 4, 0, 1, 1);
    x = lrp_build_totokens(&b, "tokens", x);
    x = lrp_build_clstoken(&b, "cls", x);
    x = lrp_build_select(&b, "pool", x, 2);
    lrp_build_dense(&b, "head", x, 3, 1);
    if (lrp_build_finish(&b, 2) != LRP_OK)
        fail_msg("%s", e.msg);
    lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
    lrp_backend be;
    lrp_f32_backend(&be, cx);
    lrp_pipe *p = NULL;
    if (lrp_pipe_run(&p, &be, net, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    float *act[6], *rel[6];
    for (int i = 0; i < 6; i++) {
        act[i] = p->L[i].act;
        rel[i] = p->L[i].rel;
    }
    lrp_gauge g;
    lrp_gauge_opts o = {0, LRP_GI_PROPAGATED, LRP_SHARP_LAMBDA, 2, NULL, NULL, 0, NULL};
    assert_int_equal(lrp_gauge_compute_opts(&g, net, act, rel, &o, &e), LRP_OK);
    const int64_t T = 6, C = 5, n = T * C, N = (T + 1) * C;
    int checked = 0;
    for (int64_t s = 0; s < 2; s++) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = 0; c < C; c++) {
                int64_t it = s * n + t * C + c, ii = s * n + c * T + t;
                assert_true(g.fwd[2][it] == g.fwd[1][ii]);
                assert_true(g.fwd[3][s * N + C + t * C + c] == g.fwd[2][it]);
                assert_true(g.bound[1][ii] == g.bound[2][it]);
                checked += g.bound[1][ii] > 0 && g.fwd[1][ii] > 0;
            }
        for (int64_t c = 0; c < C; c++)
            assert_true(g.fwd[3][s * N + c] == 0.0f);
    }
    assert_true(checked > 0); /* the map was tested on nonzero bounds */
    lrp_gauge_free(&g);
    lrp_pipe_free(p);
    lrp_f32_ctx_free(cx);
    lrp_net_free(net);
}

/* ---- the fast path judged: no false alarm ---- */

static void test_fast_path_clean(void **state)
{
    (void)state;
    /* vit_tiny under three composites, bert_tiny under AttnLRP (the sweep
     * bench/false_alarms.py runs both under every composite x convention) */
    const char *fx[] = {"vit_tiny", "bert_tiny"};
    const lrp_composite_id cs[] = {LRP_COMPOSITE_ATTN_LRP, LRP_COMPOSITE_CP_LRP,
                                   LRP_COMPOSITE_EPSILON_PLUS};
    for (int f = 0; f < 2; f++)
        for (int k = 0; k < (f ? 1 : 3); k++) {
            lrp_net *net = tu_fixture(fx[f]);
            lrp_composite_params p = lrp_composite_params_default();
            lrp_composite_apply(net, cs[k], &p);
            lrp_run_report rep = tu_judge("vit", net, NULL);
            if (!lrp_run_ok(&rep))
                fail_msg("%s under %s: the clean fast path judged %s (a false alarm)", fx[f],
                         lrp_composite_name(cs[k]), lrp_verdict_name(rep.verdict));
            lrp_run_report_free(&rep);
            lrp_net_free(net);
        }
}

/* ---- must-fail mutants ---- */

static float **fast_rel(const lrp_net *net)
{
    lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
    lrp_backend be;
    lrp_f32_backend(&be, cx);
    lrp_pipe *p = NULL;
    lrp_err e = {0};
    if (lrp_pipe_run(&p, &be, net, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    float **rel = calloc((size_t)net->n_layers, sizeof *rel);
    for (int i = 0; i < net->n_layers; i++) {
        size_t n = (size_t)(p->L[i].n * net->batch);
        rel[i] = malloc(n * sizeof(float));
        memcpy(rel[i], p->L[i].rel, n * sizeof(float));
    }
    lrp_pipe_free(p);
    lrp_f32_ctx_free(cx);
    return rel;
}

/* Replaces tensor `tensor` of the clean trace by mutate(), recomputes
 * nothing else (the damage a wrong ToTokens / ClsToken step does to the
 * relevance it hands down, with the rest of the network's steps right),
 * and expects FAIL at that tensor. */
static void mutant(int tensor, void (*mutate)(float *rel, const float *above, int64_t B))
{
    lrp_net *net = tu_fixture("vit_tiny");
    float **rel = fast_rel(net);
    mutate(rel[tensor], rel[tensor + 1], net->batch);
    lrp_err e = {0};
    lrp_trace *t = lrp_net_trace_add(net, "mutant", &e);
    if (!t)
        fail_msg("%s", e.msg);
    for (int i = 0; i < net->n_layers; i++)
        t->relevance[i] = rel[i];
    free(rel);
    lrp_run_report rep = tu_judge("vit", net, "mutant");
    lrp_verdict v = rep.layers[tensor].verdict, lv = rep.layers[tensor].tlocal_verdict;
    int ok = lrp_run_ok(&rep);
    lrp_run_report_free(&rep);
    if (ok || (v < LRP_V_FAIL && lv < LRP_V_FAIL))
        fail_msg("mutant at tensor %d judged %s (local %s): not FAIL", tensor,
                 lrp_verdict_name(v), lrp_verdict_name(lv));
    lrp_net_free(net);
}

/* ToTokens' input (the patch conv's output, (32, 4, 4)): the inverse
 * permutation replaced by the forward one's index map (c and t swapped:
 * what a reshape instead of a transpose hands down) */
static void reshape_not_transpose(float *rel, const float *above, int64_t B)
{
    for (int64_t b = 0; b < B; b++)
        memcpy(rel + b * 512, above + b * 512, 512 * sizeof(float));
}

/* ClsToken's input (16, 32): sign-flipped */
static void flip(float *rel, const float *above, int64_t B)
{
    (void)above;
    for (int64_t i = 0; i < B * 512; i++)
        rel[i] = -rel[i];
}

/* ClsToken's input: rows 0..15 of its output (the CLS row handed down,
 * the last token's dropped) */
static void shift_row(float *rel, const float *above, int64_t B)
{
    for (int64_t b = 0; b < B; b++)
        memcpy(rel + b * 512, above + b * 544, 512 * sizeof(float));
}

static void test_mutants(void **state)
{
    (void)state;
    mutant(1, reshape_not_transpose); /* tensor 'patch', computed by ToTokens */
    mutant(2, flip);                  /* tensor 'tokens', computed by ClsToken */
    mutant(2, shift_row);
}

/* ---- the LXT profiles ---- */

static void expect_rule(const lrp_net *net, const char *layer, lrp_rule_id id, float eps,
                        lrp_stab_id stab)
{
    int li = lrp_net_find(net, layer);
    assert_true(li >= 0);
    const lrp_rule_spec *r = &net->layers[li].rule;
    if (r->rule != id || (eps >= 0 && (r->eps != eps || r->stab != stab)))
        fail_msg("layer '%s': %s eps %g %s, want %s eps %g %s", layer, lrp_rule_name(r->rule),
                 (double)r->eps, lrp_stab_name(r->stab), lrp_rule_name(id), (double)eps,
                 lrp_stab_name(stab));
}

static void test_profiles(void **state)
{
    (void)state;
    for (int ex = 0; ex < 2; ex++) {
        lrp_net *net = tu_fixture("bert_tiny");
        assert_int_equal(cli_profile_apply(net, ex ? "lxt-explicit" : "lxt", 0), 0);
        assert_int_equal(lrp_net_infer(net, "t", NULL), LRP_OK);
        lrp_stab_id st = ex ? LRP_STAB_POSITIVE : LRP_STAB_SIGN0_POS;
        float e6 = 0x1.0c6f7ap-20f, e8 = 0x1.5798eep-27f;
        expect_rule(net, "pooler", ex ? LRP_RULE_EPSILON : LRP_RULE_ZERO, ex ? e6 : 0.0f, st);
        expect_rule(net, "l0_ff1", ex ? LRP_RULE_EPSILON : LRP_RULE_ZERO, ex ? e6 : 0.0f, st);
        expect_rule(net, "l0_ln1", LRP_RULE_LN_LINEAR, ex ? e6 : 0.0f, st);
        expect_rule(net, "l1_attn", LRP_RULE_ATTNLRP, ex ? e6 : 0.0f, st);
        expect_rule(net, "l0_add2", ex ? LRP_RULE_EPSILON : LRP_RULE_ZERO, ex ? e8 : 0.0f, st);
        expect_rule(net, "position", ex ? LRP_RULE_EPSILON : LRP_RULE_ZERO, ex ? e8 : 0.0f, st);
        expect_rule(net, "l0_gelu", LRP_RULE_IDENTITY, -1, st);
        expect_rule(net, "pooler_tanh", LRP_RULE_IDENTITY, -1, st);
        expect_rule(net, "cls", LRP_RULE_PASS, -1, st);
        int li = lrp_net_find(net, "pooler");
        assert_int_equal(net->layers[li].rule.bias, 1); /* the bias absorbs */
        /* stated rules (compare with a trace's /rules): nothing changes */
        lrp_rule_spec was = net->layers[li].rule;
        net->layers[li].rule = lrp_rule_default(LRP_RULE_GAMMA);
        assert_int_equal(cli_profile_apply(net, ex ? "lxt" : "lxt-explicit", 1), 0);
        assert_int_equal(net->layers[li].rule.rule, LRP_RULE_GAMMA);
        (void)was;
        lrp_net_free(net);
    }
    /* the profile names list them */
    assert_non_null(strstr(cli_profile_names(), "lxt, lxt-explicit"));
    /* and bert_tiny's clean fast path passes under lxt */
    lrp_net *net = tu_fixture("bert_tiny");
    cli_profile_apply(net, "lxt", 0);
    lrp_run_report rep = tu_judge("vit", net, NULL);
    if (!lrp_run_ok(&rep))
        fail_msg("bert_tiny under lxt: judged %s", lrp_verdict_name(rep.verdict));
    lrp_run_report_free(&rep);
    lrp_net_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_reference_naive),
        cmocka_unit_test(test_conservation_cls),
        cmocka_unit_test(test_gauge_map),
        cmocka_unit_test(test_fast_path_clean),
        cmocka_unit_test(test_mutants),
        cmocka_unit_test(test_profiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
