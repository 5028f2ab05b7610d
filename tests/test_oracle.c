/*
 * test_oracle.c -- every verdict class produced end to end by a constructed
 * case through the real reference, fast path and gauge:
 *   PASS            our fast path on a plain fixture, and a planted 1-ULP change;
 *   FAIL            a planted wrong sign;
 *   ILL-CONDITIONED a near-cancelling denominator (fixture nearcancel);
 *   UNRESOLVED      a reference at a precision too small to prove its digits;
 *   NONFINITE       sign0_zero on a dead unit (iNNvestigate #2), with its origin;
 * and the JSON / JUnit reports parsed back.
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
#include <jansson.h>

#include "backend_f32.h"
#include "check.h"
#include "fixtures.h"
#include "util/testutil.h"


static void set_rule(lrp_net *net, lrp_rule_id id, lrp_stab_id stab, float eps)
{
    lrp_rule_spec r = lrp_rule_default(id);
    r.stab = stab;
    r.eps = eps;
    lrp_rule_apply_all(net, &r);
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i].rule.rule != LRP_RULE_PASS && net->layers[i].rule.rule != LRP_RULE_WTA)
            net->layers[i].rule.stab = stab;
    lrp_err e = {0};
    if (lrp_net_infer(net, "test", &e) != LRP_OK)
        fail_msg("%s", e.msg);
}

/* Stores our fast path's relevance as an external trace named `source`. */
static lrp_trace *fast_trace(lrp_net *net, const char *source)
{
    lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
    lrp_backend be;
    lrp_f32_backend(&be, cx);
    lrp_pipe *p = NULL;
    lrp_err e = {0};
    if (lrp_pipe_run(&p, &be, net, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    lrp_trace *t = lrp_net_trace_add(net, source, &e);
    assert_non_null(t);
    for (int i = 0; i < net->n_layers; i++) {
        int64_t n = p->L[i].n * net->batch;
        t->relevance[i] = malloc((size_t)n * sizeof(float));
        assert_non_null(t->relevance[i]);
        memcpy(t->relevance[i], p->L[i].rel, (size_t)n * sizeof(float));
    }
    lrp_pipe_free(p);
    lrp_f32_ctx_free(cx);
    return t;
}

static void run(lrp_run_report *rep, lrp_net *net, const char *source, int prec)
{
    lrp_check_opts o;
    lrp_check_opts_default(&o);
    o.source = source;
    o.label = "test";
    if (prec)
        o.prec = prec;
    lrp_err e = {0};
    if (lrp_check(rep, net, &o, &e) != LRP_OK)
        fail_msg("%s", e.msg);
}

/* The cell with the largest |R| of a layer (a cell that matters). */
static int64_t big_cell(const float *r, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 1; i < n; i++)
        if (fabsf(r[i]) > fabsf(r[k]))
            k = i;
    return k;
}

static void test_fast_path_passes(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("mlp");
    lrp_run_report rep;
    run(&rep, net, NULL, 0);
    assert_int_equal(rep.verdict, LRP_V_PASS);
    assert_true(lrp_run_ok(&rep));
    assert_int_equal(rep.nf_layer, -1);
    /* the reference conserves to ~2^-(p-10) of sum |R| at p = 128 */
    assert_true(rep.max_cons_ref < 0x1p-100);
    lrp_run_report_free(&rep);
    lrp_net_free(net);
}

static void test_planted_one_ulp_passes(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("mlp");
    lrp_trace *t = fast_trace(net, "planted");
    int li = lrp_net_find(net, "fc1"); /* relevance at fc1's output */
    int64_t n = 32 * net->batch;
    int64_t k = big_cell(t->relevance[li], n);
    lrp_run_report base, rep;
    run(&base, net, "planted", 0);
    float *c = &net->traces[0].relevance[li][k];
    *c = nextafterf(*c, INFINITY);
    run(&rep, net, "planted", 0);
    /* one ULP on a cell whose gauge is many ULPs wide stays PASS, but the
     * oracle sees the change: one fewer (or one more) bitwise-equal cell */
    assert_int_equal(rep.layers[li].verdict, LRP_V_PASS);
    assert_true(llabs(rep.layers[li].e2e.bitwise_equal - base.layers[li].e2e.bitwise_equal) == 1);
    assert_true(rep.layers[li].e2e.max_ulp >= 1.0);
    lrp_run_report_free(&base);
    lrp_run_report_free(&rep);
    lrp_net_free(net);
}

static void test_planted_wrong_sign_fails(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("mlp");
    lrp_trace *t = fast_trace(net, "planted");
    int li = lrp_net_find(net, "relu2");
    int64_t k = big_cell(t->relevance[li], 32 * net->batch);
    t->relevance[li][k] = -t->relevance[li][k];
    lrp_run_report rep;
    run(&rep, net, "planted", 0);
    assert_int_equal(rep.layers[li].verdict, LRP_V_FAIL);
    assert_int_equal(rep.layers[li].e2e.worst, k);
    assert_int_equal(rep.verdict, LRP_V_FAIL);
    assert_false(lrp_run_ok(&rep));
    lrp_run_report_free(&rep);
    lrp_net_free(net);
}

static void test_near_cancellation_is_ill_conditioned(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("nearcancel");
    set_rule(net, LRP_RULE_EPSILON, LRP_STAB_SIGN0_POS, 0x1.0c6f7ap-20f);
    lrp_run_report rep;
    run(&rep, net, NULL, 0);
    /* fc1 unit 0 has |z| ~ 1e-7 sum |z_i|: its inputs' relevance (at the
     * input tensor) cannot be determined in float32 */
    assert_int_equal(rep.layers[0].verdict, LRP_V_ILL_CONDITIONED);
    assert_int_equal(rep.verdict, LRP_V_ILL_CONDITIONED);
    assert_true(lrp_run_ok(&rep)); /* a property of the input, not a bug */
    lrp_run_report_free(&rep);
    lrp_net_free(net);
}

static void test_tiny_precision_is_unresolved(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("mlp");
    lrp_run_report rep;
    /* p = 20 < 24: the reference cannot even hold binary32 products; at p
     * and p + 64 cells round to different binary32 values */
    run(&rep, net, NULL, 20);
    int unresolved = 0;
    for (int i = 0; i < rep.n_layers; i++)
        unresolved += rep.layers[i].e2e.count[LRP_V_UNRESOLVED] > 0;
    assert_true(unresolved > 0);
    assert_true(rep.verdict >= LRP_V_UNRESOLVED);
    lrp_run_report_free(&rep);
    /* and at the default p = 128 nothing is unresolved */
    run(&rep, net, NULL, 0);
    for (int i = 0; i < rep.n_layers; i++)
        assert_int_equal(rep.layers[i].e2e.count[LRP_V_UNRESOLVED], 0);
    lrp_run_report_free(&rep);
    lrp_net_free(net);
}

static void test_sign0_zero_dead_unit_is_nonfinite(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("vgg_dead");
    set_rule(net, LRP_RULE_EPSILON, LRP_STAB_SIGN0_ZERO, 0x1.ad7f2ap-24f); /* 1e-7 */
    lrp_run_report rep;
    run(&rep, net, NULL, 0);
    assert_int_equal(rep.verdict, LRP_V_NONFINITE);
    assert_int_equal(rep.nf_layer, lrp_net_find(net, "flatten"));
    assert_non_null(strstr(rep.nf_cause, "'fc1'"));
    assert_non_null(strstr(rep.nf_cause, "sign0_zero"));
    assert_non_null(strstr(rep.nf_cause, "unit 5")); /* the planted dead unit */
    lrp_run_report_free(&rep);
    /* the same network with sign0_pos: finite everywhere */
    set_rule(net, LRP_RULE_EPSILON, LRP_STAB_SIGN0_POS, 0x1.ad7f2ap-24f);
    run(&rep, net, NULL, 0);
    assert_int_equal(rep.nf_layer, -1);
    assert_true(lrp_run_ok(&rep));
    lrp_run_report_free(&rep);
    lrp_net_free(net);
}

/* ---- local vs propagated: where was the discrepancy introduced? ---- */

/* A fault-injecting float32 engine: our fast path, except that the
 * backward of the Dense layer with 32 inputs and 32 outputs (mlp's fc2)
 * scales its result by 1 + 2^-8 -- a bug in one layer's arithmetic. */
static lrp_backend faulty;
static void (*real_lin_bwd)(void *, void *, const lrp_lin *, const void *,
                            const lrp_bwd_part *, int, int64_t);

static void faulty_lin_bwd(void *ctx, void *out, const lrp_lin *L, const void *x,
                           const lrp_bwd_part *parts, int np, int64_t batch)
{
    real_lin_bwd(ctx, out, L, x, parts, np, batch);
    if (!L->conv && L->n_in == 32 && L->n_out == 32)
        for (int64_t i = 0; i < batch * L->n_in; i++)
            ((float *)out)[i] *= 1.00390625f;
}

typedef void (*lin_bwd_fn)(void *, void *, const lrp_lin *, const void *, const lrp_bwd_part *,
                           int, int64_t);

/* our fast path's backward unchanged (a subject altered elsewhere) */
static void real_lin_bwd_passthrough(void *ctx, void *out, const lrp_lin *L, const void *x,
                                     const lrp_bwd_part *parts, int np, int64_t batch)
{
    real_lin_bwd(ctx, out, L, x, parts, np, batch);
}

/* check's options with `faulty` as the subject: our fast path with its
 * Dense/Conv2D backward replaced by fn (which calls real_lin_bwd).  The
 * caller frees the returned context. */
static lrp_f32_ctx *subject_opts(lrp_check_opts *o, lin_bwd_fn fn)
{
    lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
    assert_non_null(cx);
    lrp_f32_backend(&faulty, cx);
    real_lin_bwd = faulty.lin_bwd;
    faulty.lin_bwd = fn;
    lrp_check_opts_default(o);
    o->subject = &faulty;
    o->label = "test";
    return cx;
}

static void test_local_names_the_faulty_layer(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("mlp");
    lrp_check_opts o;
    lrp_f32_ctx *cx = subject_opts(&o, faulty_lin_bwd);
    lrp_run_report rep;
    lrp_err e = {0};
    if (lrp_check(&rep, net, &o, &e) != LRP_OK)
        fail_msg("%s", e.msg);
    /* fc2's relevance at its input (relu1's output) is 2^-8 off: far more
     * than its gauge; the layers below inherit it end to end, but locally
     * only fc2 is wrong, so it is named as where the error was introduced */
    int relu1 = lrp_net_find(net, "relu1"), fc1 = lrp_net_find(net, "fc1");
    assert_true(rep.verdict >= LRP_V_SUSPECT);
    assert_false(lrp_run_ok(&rep));
    assert_int_equal(rep.introduced_at, relu1);
    assert_true(rep.layers[relu1].local_verdict >= LRP_V_SUSPECT);
    /* propagated: the input relevance is thousands of ULPs off end to end
     * (within the loose worst-case bound of three layers), but fc1 fed the
     * reference's inputs is fine */
    assert_true(rep.layers[0].e2e.max_ulp > 1000);
    assert_int_equal(rep.layers[0].local_verdict, LRP_V_PASS);
    assert_int_equal(rep.layers[fc1].local_verdict, LRP_V_PASS);
    lrp_run_report_free(&rep);
    lrp_f32_ctx_free(cx);
    lrp_net_free(net);
}

/* An engine whose second run gives other activations and the same
 * relevance: once the trace-local phase has begun (the phase callback;
 * check runs the subject again there for its activations), mlp's logits
 * (fc3, 10 outputs) of sample 0 get one ulp more at a class that is not
 * the target.  The output relevance is one-hot at the target, so that
 * class's relevance stays 0 and no relevance changes: only a check of the
 * activations themselves (per-sample hashes of the first run) sees that
 * the trace-local judgement would read values the first run did not give. */
typedef void (*lin_fwd_fn)(void *, void *, const lrp_lin *, const void *, const lrp_term *, int,
                           const lrp_bterm *, int, int, int64_t);
static lin_fwd_fn real_lin_fwd;
static int act_flaky_on, act_flaky_class;

static void act_flaky_lin_fwd(void *ctx, void *out, const lrp_lin *L, const void *x,
                              const lrp_term *t, int nt, const lrp_bterm *bt, int nb, int absval,
                              int64_t batch)
{
    real_lin_fwd(ctx, out, L, x, t, nt, bt, nb, absval, batch);
    if (act_flaky_on && !absval && !L->conv && L->n_out == 10) {
        float *o = (float *)out + act_flaky_class;
        *o = nextafterf(*o, INFINITY);
    }
}

static void act_flaky_phase(void *ctx, int phase, int k, int n)
{
    (void)ctx;
    (void)k;
    (void)n;
    if (phase == LRP_PHASE_TLOCAL)
        act_flaky_on = 1;
}

static void test_activations_of_second_run_checked(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("mlp");
    assert_non_null(net->target);
    lrp_check_opts o;
    lrp_f32_ctx *cx = subject_opts(&o, real_lin_bwd_passthrough);
    real_lin_fwd = faulty.lin_fwd;
    faulty.lin_fwd = act_flaky_lin_fwd;
    act_flaky_class = (int)((net->target[0] + 1) % 10);
    o.phase = act_flaky_phase;
    lrp_run_report rep;
    lrp_err e = {0};
    act_flaky_on = 0;
    assert_int_equal(lrp_check(&rep, net, &o, &e), LRP_E_NUMERIC);
    assert_non_null(strstr(e.msg, "not deterministic"));
    lrp_run_report_free(&rep);
    /* the nudge from the start (both runs alike): judged, not refused */
    act_flaky_on = 1;
    o.phase = NULL;
    lrp_err e2 = {0};
    if (lrp_check(&rep, net, &o, &e2) != LRP_OK)
        fail_msg("%s", e2.msg);
    lrp_run_report_free(&rep);
    act_flaky_on = 0;
    lrp_f32_ctx_free(cx);
    lrp_net_free(net);
}

/* A flaky engine (tests/util: tu_flaky_lin_bwd): our fast path, except
 * that every other run scales each Dense backward by 1 + 2^-8.  check
 * reads the subject's relevance from one run and its activations from a
 * second (oracle/check.c f32_activations): the two must agree, or the
 * verdicts would judge values the subject did not give. */
static void test_nondeterministic_subject_is_refused(void **state)
{
    (void)state;
    lrp_net *net = tu_fixture("mlp");
    lrp_check_opts o;
    lrp_f32_ctx *cx = subject_opts(&o, tu_flaky_lin_bwd);
    tu_flaky_arm(net, real_lin_bwd);
    lrp_run_report rep;
    lrp_err e = {0};
    tu_flaky_calls = 0;
    assert_int_equal(lrp_check(&rep, net, &o, &e), LRP_E_NUMERIC);
    assert_non_null(strstr(e.msg, "not deterministic"));
    assert_non_null(strstr(e.msg, "test: "));
    lrp_run_report_free(&rep);
    /* the same engine made steady (the flaw on every run) is judged: it
     * is the fault, not the refusal, that the run then reports */
    faulty.lin_bwd = faulty_lin_bwd;
    lrp_err e2 = {0};
    if (lrp_check(&rep, net, &o, &e2) != LRP_OK)
        fail_msg("%s", e2.msg);
    assert_false(lrp_run_ok(&rep));
    lrp_run_report_free(&rep);
    lrp_f32_ctx_free(cx);
    lrp_net_free(net);
}

/* ---- reports parsed back ---- */

static char tmpdir[256];

static int count_str(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    return b;
}

/* Minimal XML well-formedness: tags balance and nest. */
static int xml_balanced(const char *s)
{
    char stack[64][64];
    int top = 0;
    for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
        if (p[1] == '?')
            continue;
        const char *end = strchr(p, '>');
        if (!end)
            return 0;
        int closing = p[1] == '/', selfc = end[-1] == '/';
        const char *nm = p + 1 + closing;
        size_t len = strcspn(nm, " />");
        if (len >= 64)
            return 0;
        if (closing) {
            if (top == 0 || strncmp(stack[top - 1], nm, len) || stack[top - 1][len])
                return 0;
            top--;
        } else if (!selfc) {
            if (top == 64)
                return 0;
            memcpy(stack[top], nm, len);
            stack[top++][len] = '\0';
        }
    }
    return top == 0;
}

static void test_reports_parse_back(void **state)
{
    (void)state;
    lrp_run_report runs[2];
    lrp_net *a = tu_fixture("mlp"), *b = tu_fixture("vgg_dead");
    run(&runs[0], a, NULL, 0);
    set_rule(b, LRP_RULE_EPSILON, LRP_STAB_SIGN0_ZERO, 0x1.ad7f2ap-24f);
    run(&runs[1], b, NULL, 0);
    char jp[512], xp[512];
    snprintf(jp, sizeof jp, "%s/r.json", tmpdir);
    snprintf(xp, sizeof xp, "%s/r.xml", tmpdir);
    lrp_err e = {0};
    assert_int_equal(lrp_report_json(jp, runs, 2, &e), LRP_OK);
    assert_int_equal(lrp_report_junit(xp, runs, 2, &e), LRP_OK);

    json_error_t je;
    json_t *root = json_load_file(jp, 0, &je);
    if (!root)
        fail_msg("JSON does not parse: %s line %d", je.text, je.line);
    json_t *arr = json_object_get(root, "runs");
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "verdict")),
                        "PASS");
    json_t *r1 = json_array_get(arr, 1);
    assert_string_equal(json_string_value(json_object_get(r1, "verdict")), "NONFINITE");
    json_t *nf = json_object_get(r1, "first_nonfinite");
    assert_string_equal(json_string_value(json_object_get(nf, "layer")), "flatten");
    assert_false(json_is_true(json_object_get(root, "ok")));
    assert_int_equal(json_array_size(json_object_get(json_array_get(arr, 0), "layers")),
                     (size_t)a->n_layers);
    json_decref(root);

    char *x = slurp(xp);
    assert_true(xml_balanced(x));
    /* one testcase per compared layer of each run; failures = NONFINITE
     * layers of the second run */
    int cases = 0, fails = 0;
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < runs[r].n_layers; i++)
            if (runs[r].layers[i].compared) {
                cases++;
                fails += runs[r].layers[i].verdict != LRP_V_PASS &&
                         runs[r].layers[i].verdict != LRP_V_ILL_CONDITIONED;
            }
    assert_int_equal(count_str(x, "<testcase "), cases);
    assert_int_equal(count_str(x, "<failure "), fails);
    assert_true(fails > 0);
    char attr[64];
    snprintf(attr, sizeof attr, "tests=\"%d\" failures=\"%d\"", cases, fails);
    assert_non_null(strstr(x, attr));
    free(x);
    lrp_run_report_free(&runs[0]);
    lrp_run_report_free(&runs[1]);
    lrp_net_free(a);
    lrp_net_free(b);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lrp_oracle_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char p[600];
    snprintf(p, sizeof p, "%s/r.json", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/r.xml", tmpdir);
    unlink(p);
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_path_passes),
        cmocka_unit_test(test_planted_one_ulp_passes),
        cmocka_unit_test(test_planted_wrong_sign_fails),
        cmocka_unit_test(test_near_cancellation_is_ill_conditioned),
        cmocka_unit_test(test_tiny_precision_is_unresolved),
        cmocka_unit_test(test_sign0_zero_dead_unit_is_nonfinite),
        cmocka_unit_test(test_local_names_the_faulty_layer),
        cmocka_unit_test(test_nondeterministic_subject_is_refused),
        cmocka_unit_test(test_activations_of_second_run_checked),
        cmocka_unit_test(test_reports_parse_back),
    };
    return cmocka_run_group_tests_name("oracle", tests, setup, teardown);
}
