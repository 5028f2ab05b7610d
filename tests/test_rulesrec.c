/*
 * test_rulesrec.c -- issue 15, "the reference computes what it says": for
 * each rule option that used to be recorded in a trace without being
 * computed (or computed as something the name does not mean), the CLI
 * writes a reference trace, the test reads the trace's recorded rules back
 * and recomputes the relevance from them:
 *
 *   - `--flag wta_split_ties` reaches the max-pools (it used to stop at the
 *     Dense/Conv2D layers: the suite run claiming split ties tested
 *     first-maximum routing);
 *   - `--composite EpsilonGammaBox` is Zennit's: z^B on the first
 *     convolution only, generalized gamma (with Zennit's loss at z = 0) on
 *     the other convolutions, epsilon on Dense;
 *   - generalized gamma with the bias switch off selects the part on the
 *     layer's real output (with its bias), as Zennit does: recomputed by the
 *     independent rational implementation (tests/naive/) from the recorded
 *     rule;
 *   - `--no-bias` acts on Dense/Conv2D only: an explicit BatchNorm keeps its
 *     shift and its recorded rule says so (bias 0 on a BatchNorm is refused);
 *   - `--flag captum_maxpool_eps` gives the max-pools rule epsilon (Captum's
 *     EpsilonRule there), recorded as such, and the captum profile does so
 *     where the rules are not stated.
 *
 * "Recompute" is the MPFR pipeline run on the file's network with the
 * trace's recorded rules, compared bit for bit with the trace's binary32
 * relevance (same code, same precision: any difference means the rules in
 * the trace are not the ones that were computed).
 *
 * Runs the `lrp-oracle` binary next to this test (BUILD/lrp-oracle), or the
 * one named by LRP_TEST_CLI (to show a test failing on an older build).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <gmp.h>
#include <math.h>
#include <mpfr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lrp.h"
#include "naive/naive.h"
#include "pipeline.h"
#include "reference.h"
#include "util/testutil.h"

static char cli[4200];
static char dir[1024];
static char err[1 << 14];

static int run(const char *fmt, ...)
{
    char args[8000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return tu_run_cli(dir, NULL, cli, args, NULL, 0, err, sizeof err);
}

static char *P(const char *name)
{
    static char buf[4][1400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int setup(void **state)
{
    (void)state;
    if (tu_cli_path(cli, sizeof cli) != 0) {
        fprintf(stderr, "test_rulesrec: %s not built\n", cli);
        return -1;
    }
    snprintf(dir, sizeof dir, "/tmp/lrp_rulesrec_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    if (run("gen --out fx mlp cnn ties") != 0) {
        fprintf(stderr, "test_rulesrec: gen failed: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Reads OUT (written by `reference ... --out OUT`) and returns its net with
 * the reference trace in *t. */
static lrp_net *read_trace(const char *path, lrp_trace **t)
{
    lrp_net *net = NULL;
    lrp_err e = {0};
    if (lrp_fixture_read(&net, path, &e) != LRP_OK)
        fail_msg("%s: %s", path, e.msg);
    int k = lrp_net_trace_find(net, "reference");
    if (k < 0)
        fail_msg("%s: no reference trace", path);
    *t = &net->traces[k];
    assert_non_null((*t)->rules);
    return net;
}

/* Runs the MPFR pipeline on net with the rules in rules[] at precision
 * prec; returns the number of cells of any layer whose binary32 rounding
 * differs (bits) from t's relevance. */
static int64_t recompute_diff(lrp_net *net, const lrp_rule_spec *rules, const lrp_trace *t)
{
    for (int i = 0; i < net->n_layers; i++)
        net->layers[i].rule = rules[i];
    lrp_err e = {0};
    if (lrp_net_infer(net, "recompute", &e) != LRP_OK)
        fail_msg("recorded rules do not validate: %s", e.msg);
    lrp_ref_ctx rcx;
    lrp_ref_ctx_init(&rcx, t->precision, 1);
    lrp_backend be;
    lrp_ref_backend(&be, &rcx);
    lrp_pipe *p = NULL;
    if (lrp_pipe_run_ex(&p, &be, net, LRP_PIPE_RELEVANCE, &e) != LRP_OK)
        fail_msg("recompute: %s", e.msg);
    int64_t diff = 0;
    for (int i = 0; i < net->n_layers; i++) {
        assert_non_null(t->relevance[i]);
        int64_t n = p->L[i].n * net->batch;
        for (int64_t k = 0; k < n; k++) {
            float h = mpfr_get_flt(be.at(be.ctx, p->L[i].rel, k), MPFR_RNDN);
            diff += !tu_f32_same(h, t->relevance[i][k]);
        }
    }
    lrp_pipe_free(p);
    return diff;
}

/* The recorded rules reproduce the trace bit for bit. */
static void assert_recomputes(lrp_net *net, const lrp_trace *t, const char *what)
{
    int64_t d = recompute_diff(net, t->rules, t);
    if (d)
        fail_msg("%s: %lld cells differ from a recomputation with the trace's own rules", what,
                 (long long)d);
}

/* ---- wta_split_ties ---- */

static void test_split_ties_reach_maxpool(void **state)
{
    (void)state;
    /* the suite's run (fixtures/runs.c) */
    assert_int_equal(run("reference fx/ties.h5 --composite EpsilonPlus --flag wta_split_ties "
                         "--out st.h5"),
                     0);
    lrp_trace *t;
    lrp_net *net = read_trace(P("st.h5"), &t);
    int pools = 0;
    for (int i = 0; i < net->n_layers; i++) {
        if (net->layers[i].kind != LRP_LAYER_MAXPOOL2D)
            continue;
        pools++;
        if (!(t->rules[i].flags & LRP_F_WTA_SPLIT_TIES))
            fail_msg("max-pool '%s': the trace's rule lacks wta_split_ties (flags 0x%x)",
                     net->layers[i].name, t->rules[i].flags);
    }
    assert_true(pools > 0);
    assert_recomputes(net, t, "split ties");
    /* and the flag matters on this fixture: first-maximum routing gives
     * another relevance, so the run really tests split ties */
    lrp_rule_spec *r = malloc((size_t)net->n_layers * sizeof *r);
    assert_non_null(r);
    memcpy(r, t->rules, (size_t)net->n_layers * sizeof *r);
    for (int i = 0; i < net->n_layers; i++)
        r[i].flags &= ~(unsigned)LRP_F_WTA_SPLIT_TIES;
    assert_true(recompute_diff(net, r, t) > 0);
    free(r);
    lrp_net_free(net);
    /* and the oracle judges the fast path's split ties within its bounds:
     * the shares R_j / t round in float32 (t = 3 is inexact), which the
     * gauge must count (before, the pool's layer total was SUSPECT against
     * a sharp budget of 0) */
    assert_int_equal(run("check --no-color fx/ties.h5 --composite EpsilonPlus "
                         "--flag wta_split_ties"),
                     0);
    /* on a net without max-pool the flag is refused, not ignored */
    assert_int_equal(run("check --no-color --flag wta_split_ties fx/mlp.h5"), 2);
    assert_non_null(strstr(err, "wta_split_ties"));
}

/* ---- EpsilonGammaBox ---- */

static void test_gammabox_is_zennits(void **state)
{
    (void)state;
    assert_int_equal(run("reference fx/cnn.h5 --composite EpsilonGammaBox --box -1,1 --out gb.h5"),
                     0);
    lrp_trace *t;
    lrp_net *net = read_trace(P("gb.h5"), &t);
    int first_conv = -1, n_gamma = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const lrp_layer *l = &net->layers[i];
        const lrp_rule_spec *r = &t->rules[i];
        if (l->kind == LRP_LAYER_CONV2D && first_conv < 0) {
            first_conv = i;
            assert_int_equal(r->rule, LRP_RULE_ZBOX);
            assert_true(r->low == -1.0f && r->high == 1.0f);
        } else if (l->kind == LRP_LAYER_CONV2D) {
            if (r->rule != LRP_RULE_GAMMA || r->gamma != 0.25f)
                fail_msg("conv '%s': %s, want gamma 0.25", l->name, lrp_rule_name(r->rule));
            unsigned want = LRP_F_GAMMA_GENERALIZED | LRP_F_ZENNIT_GAMMA_DROP0;
            if ((r->flags & want) != want)
                fail_msg("conv '%s': gamma flags 0x%x, want Zennit's generalized gamma",
                         l->name, r->flags);
            n_gamma++;
        } else if (l->kind == LRP_LAYER_DENSE) {
            assert_int_equal(r->rule, LRP_RULE_EPSILON);
        }
    }
    assert_true(first_conv >= 0 && n_gamma > 0);
    assert_string_equal(t->composite, "EpsilonGammaBox");
    assert_recomputes(net, t, "EpsilonGammaBox on cnn");
    lrp_net_free(net);

    /* an MLP has no convolution: Zennit's composite puts epsilon on every
     * Dense (ours used to put z^B on the first one) */
    assert_int_equal(run("reference fx/mlp.h5 --composite EpsilonGammaBox --out gbm.h5"), 0);
    net = read_trace(P("gbm.h5"), &t);
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i].kind == LRP_LAYER_DENSE && t->rules[i].rule != LRP_RULE_EPSILON)
            fail_msg("dense '%s': %s, want epsilon", net->layers[i].name,
                     lrp_rule_name(t->rules[i].rule));
    assert_recomputes(net, t, "EpsilonGammaBox on mlp");
    lrp_net_free(net);
}

/* ---- generalized gamma, bias switch off: select on the real output ---- */

/* Input (4) -> Dense (3 units, bias).  Unit 0: z without the bias 1.5, with
 * it -0.5; unit 1: -0.75 without, +0.25 with; unit 2 has the same sign both
 * ways.  All values dyadic, so the naive rationals are exact. */
static const float sx[4] = {1.0f, 1.0f, -0.5f, 0.25f};
static const float sw[12] = {1.0f,  0.5f, 0.0f,  0.0f,  /* unit 0: 1.5 */
                             -1.0f, 0.25f, 0.0f, 0.0f,  /* unit 1: -0.75 */
                             0.5f,  0.5f, -1.0f, 2.0f}; /* unit 2: 2.0 */
static const float sb[3] = {-2.0f, 1.0f, 0.5f};
static const float sr[3] = {1.0f, -0.5f, 0.75f};

static void write_sel_net(const char *path)
{
    lrp_err e = {0};
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    assert_int_equal(lrp_net_add(net, LRP_LAYER_INPUT, "in", &e), 0);
    net->layers[0].shape.rank = 1;
    net->layers[0].shape.d[0] = 4;
    assert_int_equal(lrp_net_add(net, LRP_LAYER_DENSE, "fc", &e), 1);
    lrp_layer *l = &net->layers[1];
    l->n_in = 1;
    l->in[0] = 0;
    l->units = 3;
    l->has_bias = 1;
    l->rule = lrp_rule_default(LRP_RULE_EPSILON);
    net->batch = 1;
    if (lrp_net_infer(net, "sel", &e) != LRP_OK)
        fail_msg("%s", e.msg);
    l->w = malloc(sizeof sw);
    l->b = malloc(sizeof sb);
    net->input = malloc(sizeof sx);
    net->r_out = malloc(sizeof sr);
    assert_true(l->w && l->b && net->input && net->r_out);
    memcpy(l->w, sw, sizeof sw);
    memcpy(l->b, sb, sizeof sb);
    memcpy(net->input, sx, sizeof sx);
    memcpy(net->r_out, sr, sizeof sr);
    if (lrp_fixture_write(net, path, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    lrp_net_free(net);
}

static void test_gamma_selects_on_real_output(void **state)
{
    (void)state;
    write_sel_net(P("sel.h5"));
    assert_int_equal(run("reference sel.h5 --rule gamma --flag gamma_generalized --no-bias "
                         "--out selr.h5"),
                     0);
    lrp_trace *t;
    lrp_net *net = read_trace(P("selr.h5"), &t);
    const lrp_rule_spec *r = &t->rules[1];
    assert_int_equal(r->rule, LRP_RULE_GAMMA);
    assert_true(r->flags & LRP_F_GAMMA_GENERALIZED);
    assert_int_equal(r->bias, 0);
    assert_recomputes(net, t, "generalized gamma, no bias");
    /* the recorded rule, computed independently: the naive layer selects
     * on sum x w + b whatever the bias switch (Zennit) */
    naive_geom g = {4, 1, 1, 3, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1};
    naive_rule nr;
    memset(&nr, 0, sizeof nr);
    nr.rule = NV_GAMMA;
    nr.stab = (int)r->stab; /* same order as LRP_STAB_LIST */
    nr.eps = r->eps;
    nr.gamma = r->gamma;
    nr.bias = r->bias;
    nr.generalized = 1;
    nr.drop0 = (r->flags & LRP_F_ZENNIT_GAMMA_DROP0) != 0;
    mpq_t Rin[4], gauge[4], ab[3], ug[3];
    int status[3];
    for (int i = 0; i < 4; i++)
        mpq_inits(Rin[i], gauge[i], NULL);
    for (int j = 0; j < 3; j++)
        mpq_inits(ab[j], ug[j], NULL);
    naive_lrp(Rin, gauge, ab, ug, status, &g, sx, sw, sb, sr, &nr);
    for (int i = 0; i < 4; i++) {
        /* the trace's value is hi + lo of a p = 128 result: within 2^-48
         * of the exact value relative to its gauge (hi and lo each round
         * to 24 bits); a selection on the wrong part moves a cell by a
         * multiple of gamma (0.25) times its terms, far beyond that */
        double want = mpq_get_d(Rin[i]);
        double got = (double)t->relevance[0][i] + (double)t->relevance_lo[0][i];
        double tol = 0x1p-48 * (mpq_get_d(gauge[i]) + fabs(want)) + 0x1p-140;
        if (fabs(got - want) > tol)
            fail_msg("input %d: trace %.17g, recorded rule computed independently %.17g", i, got,
                     want);
    }
    for (int i = 0; i < 4; i++)
        mpq_clears(Rin[i], gauge[i], NULL);
    for (int j = 0; j < 3; j++)
        mpq_clears(ab[j], ug[j], NULL);
    lrp_net_free(net);
}

/* ---- --no-bias and BatchNorm ---- */

static void test_no_bias_keeps_bn_shift(void **state)
{
    (void)state;
    assert_int_equal(run("reference fx/cnn.h5 --no-bias --out nb.h5"), 0);
    lrp_trace *t;
    lrp_net *net = read_trace(P("nb.h5"), &t);
    int n_bn = 0, n_lin = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const lrp_layer *l = &net->layers[i];
        if (l->kind == LRP_LAYER_BATCHNORM) {
            n_bn++;
            if (t->rules[i].bias != 1)
                fail_msg("BatchNorm '%s': trace records bias %d; its shift is computed",
                         l->name, t->rules[i].bias);
        }
        if (l->kind == LRP_LAYER_DENSE || l->kind == LRP_LAYER_CONV2D) {
            n_lin++;
            assert_int_equal(t->rules[i].bias, 0);
        }
    }
    assert_true(n_bn > 0 && n_lin > 0);
    assert_recomputes(net, t, "--no-bias on cnn");

    /* a file whose rules say bias 0 on a BatchNorm claims what nothing
     * computes: refused, naming the layer */
    int bn = -1;
    for (int i = 0; i < net->n_layers && bn < 0; i++)
        if (net->layers[i].kind == LRP_LAYER_BATCHNORM)
            bn = i;
    char name[LRP_NAME_MAX];
    snprintf(name, sizeof name, "%s", net->layers[bn].name);
    lrp_net_free(net);
    char cmd[4000];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import h5py,sys; f=h5py.File(sys.argv[1],'r+'); "
             "[f['rules'][k].attrs.__setitem__('bias', 0) for k in f['rules'] "
             "if k.endswith('_'+sys.argv[2])]\" '%s' '%s'",
             P("bnb.h5"), name);
    assert_int_equal(run("gen --out bnfx cnn"), 0);
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " 2>/dev/null");
    char cp[3000];
    snprintf(cp, sizeof cp, "cp '%s' '%s'", P("bnfx/cnn.h5"), P("bnb.h5"));
    assert_int_equal(system(cp), 0);
    if (system(cmd) != 0)
        skip(); /* no h5py */
    int rc = run("info bnb.h5");
    if (rc != 2 || !strstr(err, name) || !strstr(err, "bias"))
        fail_msg("bias 0 on BatchNorm '%s': exit %d, stderr '%s'", name, rc, err);
}

/* ---- captum_maxpool_eps ---- */

static void test_captum_maxpool_eps(void **state)
{
    (void)state;
    /* the switch gives every max-pool rule epsilon with the command's eps
     * and convention; the trace records the rule, not a flag */
    assert_int_equal(run("reference fx/cnn.h5 --rule epsilon --eps 1e-9 --flag captum_maxpool_eps "
                         "--out cm.h5"),
                     0);
    lrp_trace *t;
    lrp_net *net = read_trace(P("cm.h5"), &t);
    int pools = 0;
    for (int i = 0; i < net->n_layers; i++) {
        if (net->layers[i].kind != LRP_LAYER_MAXPOOL2D)
            continue;
        pools++;
        const lrp_rule_spec *r = &t->rules[i];
        if (r->rule != LRP_RULE_EPSILON || r->eps != 0x1.12e0bep-30f ||
            r->stab != LRP_STAB_SIGN0_POS || r->flags)
            fail_msg("max-pool '%s': recorded %s eps %g %s flags 0x%x, want epsilon 1e-9 "
                     "sign0_pos", net->layers[i].name, lrp_rule_name(r->rule), (double)r->eps,
                     lrp_stab_name(r->stab), r->flags);
    }
    assert_true(pools > 0);
    assert_recomputes(net, t, "captum max-pool");
    /* and the rule matters on this fixture: wta gives another relevance */
    lrp_rule_spec *r = malloc((size_t)net->n_layers * sizeof *r);
    assert_non_null(r);
    memcpy(r, t->rules, (size_t)net->n_layers * sizeof *r);
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i].kind == LRP_LAYER_MAXPOOL2D)
            r[i] = lrp_rule_default(LRP_RULE_WTA);
    assert_true(recompute_diff(net, r, t) > 0);
    free(r);
    lrp_net_free(net);
    /* the fast path's epsilon max-pools are within the gauge's bounds */
    assert_int_equal(run("check --no-color fx/cnn.h5 --rule epsilon --eps 1e-9 "
                         "--flag captum_maxpool_eps"),
                     0);
    /* applied or refused: no max-pool, or ties split as well */
    assert_int_equal(run("check --no-color --rule epsilon --flag captum_maxpool_eps fx/mlp.h5"), 2);
    assert_non_null(strstr(err, "captum_maxpool_eps"));
    assert_int_equal(run("check --no-color --rule epsilon --flag captum_maxpool_eps "
                         "--flag wta_split_ties fx/cnn.h5"),
                     2);
    assert_non_null(strstr(err, "wta_split_ties"));
    /* must-fail: a trace with Captum's max-pools judged under wta is
     * SUSPECT (the wta copy is exact, its layer total has a sharp budget of
     * 0: how every real Captum run on a max-pool net was judged before) */
    assert_int_equal(run("fast fx/cnn.h5 --rule epsilon --eps 1e-9 --flag captum_maxpool_eps "
                         "--out ce.h5"),
                     0);
    assert_int_equal(run("compare --no-color ce.h5 --source fastpath --rule epsilon --eps 1e-9"), 1);
    /* the captum profile gives unstated max-pools Captum's rule ... */
    assert_int_equal(run("compare --no-color ce.h5 --source fastpath --rule epsilon "
                         "--profile captum"),
                     0);
    /* ... and leaves a trace's stated wta as it is */
    assert_int_equal(run("fast fx/cnn.h5 --rule epsilon --eps 1e-9 --out cw.h5"), 0);
    assert_int_equal(run("compare --no-color cw.h5 --source fastpath --profile captum"), 0);
    assert_int_equal(run("compare --no-color ce.h5 --source fastpath --profile captum"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_ties_reach_maxpool),
        cmocka_unit_test(test_gammabox_is_zennits),
        cmocka_unit_test(test_gamma_selects_on_real_output),
        cmocka_unit_test(test_no_bias_keeps_bn_shift),
        cmocka_unit_test(test_captum_maxpool_eps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
