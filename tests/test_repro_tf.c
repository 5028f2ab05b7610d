/*
 * test_repro_tf.c -- the two transformer reproductions of
 * docs/REPRODUCTIONS.md, judged on their committed trace files
 * (fixtures/traces, written by tools/python/peers/repro_tf.py):
 *
 *   lxt-29    LXT's efficient-mode rules on the decoder dec_silu0 (a SiLU
 *             input exactly 0): the float16 trace is NONFINITE, first at
 *             the relevance SiLU sends to 'gate', with the identity rule's
 *             0/0 named as the cause and the reference finite there; the
 *             float32 trace of the same script has no NaN at all.
 *   xai-tf-2  the gamma rule (0.02, on weights and biases) on vit_negbias:
 *             the audit closes every layer's bookkeeping with the bias
 *             terms alone, and the block whose total changes most (block
 *             4, factor ~5.7) owes it to the bias of 'fc4_1'.
 *
 * The fixtures are generated here (byte-reproducible, so the trace files'
 * size and digest match) into a temporary directory beside copies of the
 * trace files.
 */
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

#include "util/testutil.h"

#include "check.h"
#include "fixtures.h"

static char traces[4096];
static char *tmp;

static void gen(const char *name)
{
    const lrp_fixture_def *d = lrp_fixture_lookup(name);
    assert_non_null(d);
    lrp_net *net = NULL;
    lrp_err e = {0};
    char path[4200];
    if (d->build(&net, LRP_FIXTURE_SEED, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    snprintf(path, sizeof path, "%s/%s.h5", tmp, name);
    if (lrp_fixture_write(net, path, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    lrp_net_free(net);
}

static void copy_trace(const char *file)
{
    char from[4200], to[4200];
    size_t len = 0;
    snprintf(from, sizeof from, "%s/%s", traces, file);
    snprintf(to, sizeof to, "%s/%s", tmp, file);
    unsigned char *data = tu_read_file(from, &len);
    if (!data)
        fail_msg("cannot read %s (make repro-traces writes it)", from);
    assert_int_equal(tu_write_file(to, data, len), 0);
    free(data);
}

static int setup(void **state)
{
    (void)state;
    /* tests run from the source tree (make check); else next to BUILD */
    if (access("fixtures/traces/dec_silu0.lxt-f16.h5", R_OK) == 0) {
        snprintf(traces, sizeof traces, "fixtures/traces");
    } else {
        char self[4096];
        if (tu_exe_dir(self, sizeof self, 3) != 0)
            return -1;
        snprintf(traces, sizeof traces, "%.4000s/fixtures/traces", self);
    }
    tmp = tu_mkdtemp("repro_tf");
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (tmp)
        tu_rmtree(tmp);
    free(tmp);
    return 0;
}

/* compare FILE --source S, under the trace's own rules (as the CLI does) */
static lrp_run_report judge(const char *file, const char *source)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", tmp, file);
    lrp_net *net = NULL;
    lrp_err e = {0};
    if (lrp_fixture_read(&net, path, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    int t = lrp_net_trace_find(net, source);
    assert_true(t >= 0);
    assert_non_null(net->traces[t].rules);
    for (int i = 0; i < net->n_layers; i++)
        net->layers[i].rule = net->traces[t].rules[i];
    if (lrp_net_infer(net, path, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    lrp_check_opts o;
    lrp_check_opts_default(&o);
    o.source = source;
    o.label = file;
    o.proof_extra = 0;
    o.identify = 0;
    lrp_run_report rep;
    if (lrp_check(&rep, net, &o, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    lrp_net_free(net);
    return rep;
}

static int layer_index(const lrp_run_report *r, const char *name)
{
    for (int i = 0; i < r->n_layers; i++)
        if (!strcmp(r->layers[i].name, name))
            return i;
    fail_msg("no layer '%s' in the report", name);
    return -1;
}

static void test_lxt29_float16_nan_at_silu(void **state)
{
    (void)state;
    gen("dec_silu0");
    copy_trace("dec_silu0.lxt-f16.h5");
    lrp_run_report r = judge("dec_silu0.lxt-f16.h5", "lxt-f16");
    assert_int_equal(r.verdict, LRP_V_NONFINITE);
    assert_true(r.nf_layer >= 0);
    /* the first NaN in backward order: the relevance the SiLU sends to
     * its input, the output of 'gate', at token 0 unit 0 */
    assert_string_equal(r.layers[r.nf_layer].name, "gate");
    assert_int_equal(r.nf_index, 0);
    const char *c = r.nf_cause;
    if (!strstr(c, "'silu'") || !strstr(c, "rule identity") || !strstr(c, "exactly 0") ||
        !strstr(c, "0/0") || !strstr(c, "float16"))
        fail_msg("cause does not name the SiLU's 0/0 in float16: %s", c);
    /* the reference is finite there */
    const lrp_layer_report *g = &r.layers[r.nf_layer];
    assert_true(isfinite(g->ref_min) && isfinite(g->ref_max));
    assert_true(g->f32_nan > 0);
    lrp_run_report_free(&r);
}

static void test_lxt29_float32_finite(void **state)
{
    (void)state;
    gen("dec_silu0");
    copy_trace("dec_silu0.lxt-f32.h5");
    lrp_run_report r = judge("dec_silu0.lxt-f32.h5", "lxt-f32");
    /* float32 keeps the 1e-10: 0 / 1e-10 = 0, no NaN anywhere */
    assert_true(r.verdict != LRP_V_NONFINITE);
    assert_int_equal(r.nf_layer, -1);
    for (int i = 0; i < r.n_layers; i++)
        assert_int_equal(r.layers[i].f32_nan + r.layers[i].f32_inf, 0);
    lrp_run_report_free(&r);
}

static void test_xaitf2_bias_moves_the_total(void **state)
{
    (void)state;
    gen("vit_negbias");
    copy_trace("vit_negbias.xaitf2.h5");
    lrp_run_report r = judge("vit_negbias.xaitf2.h5", "xaitf2");
    /* the reporter's LayerNorm (unbiased std, eps outside the root) is
     * another forward: the trace's activations go wrong at the first one */
    assert_int_equal(r.verdict, LRP_V_FAIL);
    assert_true(r.fwd_origin >= 0);
    assert_string_equal(r.layers[r.fwd_origin].name, "ln1");
    /* block totals from the reference's audit under the stated rule:
     * the relevance at each block's output (addK) and at the input */
    double tot[7];
    const lrp_layer_report *l1 = &r.layers[layer_index(&r, "ln1")];
    const lrp_layer_report *a1 = &r.layers[layer_index(&r, "add1")];
    assert_true(l1->has_conservation && a1->has_conservation);
    tot[0] = l1->sum_in_ref;
    for (int k = 0; k < a1->n_branch; k++)
        if (!strcmp(r.layers[a1->branch_in[k]].name, "input"))
            tot[0] += a1->branch_ref[k];
    int worst = 0;
    double wf = 0, bias[7] = {0}, bscale[7] = {0};
    for (int b = 1; b <= 6; b++) {
        char n[16];
        snprintf(n, sizeof n, "add%d", b);
        tot[b] = r.layers[layer_index(&r, n)].sum_out_ref;
        double f = fabs(tot[b - 1] / tot[b]);
        if (f > wf) {
            wf = f;
            worst = b;
        }
        /* each block's layers: the bookkeeping closes with the bias terms
         * alone (eps 0: no stabilizer).  Tolerance: the report's sums are
         * exact sums rounded to binary64 and added in binary64, a few
         * units of 2^-53 of the layer's largest term */
        const char *fmt[3] = {"ln%d", "fc%d_1", "fc%d_2"};
        for (int q = 0; q < 3; q++) {
            snprintf(n, sizeof n, fmt[q], b);
            const lrp_layer_report *L = &r.layers[layer_index(&r, n)];
            assert_true(L->has_conservation);
            double ab = 0, scale = fabs(L->sum_in_ref) + fabs(L->sum_out_ref);
            for (int a = 0; a < LRP_ABS_COUNT; a++) {
                ab += L->absorbed[a];
                scale += fabs(L->absorbed[a]);
                if (a != LRP_ABS_BIAS && L->absorbed[a] != 0)
                    fail_msg("%s absorbs %s %g: only bias expected", n,
                             lrp_abs_name((lrp_abs_kind)a), L->absorbed[a]);
            }
            assert_true(fabs(L->sum_in_ref + ab - L->sum_out_ref) <= 16 * 0x1p-53 * scale);
            bias[b] += L->absorbed[LRP_ABS_BIAS];
            bscale[b] += scale;
        }
        /* the Add conserves, so a block changes the total by exactly its
         * bias terms: in = out - bias (same tolerance, over the block) */
        if (fabs(tot[b - 1] - (tot[b] - bias[b])) > 16 * 0x1p-53 * bscale[b])
            fail_msg("block %d: total in %.17g, out %.17g, bias %.17g: the bias does not account "
                     "for the change", b, tot[b - 1], tot[b], bias[b]);
    }
    /* documented (docs/REPRODUCTIONS.md xai-tf-2): block 4 moves the total
     * most, by a factor above 5 (5.66 measured), and within it the bias of
     * fc4_1 absorbs most */
    assert_int_equal(worst, 4);
    assert_true(wf > 5.0);
    const char *in4[3] = {"ln4", "fc4_1", "fc4_2"};
    int big = 0;
    for (int q = 1; q < 3; q++)
        if (fabs(r.layers[layer_index(&r, in4[q])].absorbed[LRP_ABS_BIAS]) >
            fabs(r.layers[layer_index(&r, in4[big])].absorbed[LRP_ABS_BIAS]))
            big = q;
    assert_string_equal(in4[big], "fc4_1");
    lrp_run_report_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lxt29_float16_nan_at_silu),
        cmocka_unit_test(test_lxt29_float32_finite),
        cmocka_unit_test(test_xaitf2_bias_moves_the_total),
    };
    return cmocka_run_group_tests_name("repro_tf", tests, setup, teardown);
}
