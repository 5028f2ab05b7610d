/*
 * test_golden.c -- the CI gate on the float32 fast path through the
 * committed golden traces (fixtures/golden/, regenerated only by
 * `make golden`): for every fixture, a fresh float32 run must
 *   (1) reproduce the committed fast-path bits exactly -- the engine is
 *       deterministic across runs, thread counts and ISA paths, so any
 *       difference is a numeric change someone must look at and commit
 *       with `make golden` (which prints what changed); and
 *   (2) be judged against the committed MPFR reference (hi + lo) with the
 *       gauge, within the tolerance table or as documented (overflow:
 *       NONFINITE) -- no MPFR run needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/testutil.h"

#include "backend_f32.h"
#include "fixtures.h"
#include "golden.h"

static char dir[4096];

static int setup(void **state)
{
    (void)state;
    /* tests run from the source tree (make check); else next to BUILD */
    if (access("fixtures/golden/mlp.h5", R_OK) == 0) {
        snprintf(dir, sizeof dir, "fixtures/golden");
        return 0;
    }
    char self[4096];
    if (tu_exe_dir(self, sizeof self, 3) != 0) /* BUILD's parent */
        return -1;
    snprintf(dir, sizeof dir, "%.4000s/fixtures/golden", self);
    return access(dir, R_OK) == 0 ? 0 : -1;
}

/* The documented verdict of a fixture under its own rules, or -1. */
static int expected_for(const char *fixture)
{
    const char *e = lrp_suite_expect(fixture);
    lrp_verdict v;
    return e && lrp_verdict_parse(e, &v) == 0 ? (int)v : -1;
}

static void test_golden_traces(void **state)
{
    (void)state;
    int checked = 0;
    for (int k = 0; k < lrp_fixture_count; k++) {
        const char *name = lrp_fixture_defs[k].name;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s.h5", dir, name);
        lrp_net *net = NULL;
        lrp_err e = {0};
        if (lrp_fixture_read(&net, path, &e) != LRP_OK)
            fail_msg("%s (run 'make golden' after adding a fixture)", e.msg);
        int ir = lrp_net_trace_find(net, "reference"), iff = lrp_net_trace_find(net, "fastpath");
        assert_true(ir >= 0 && iff >= 0);
        lrp_f32_ctx *cx = lrp_f32_ctx_new(2);
        lrp_backend be;
        lrp_f32_backend(&be, cx);
        lrp_pipe *p = NULL;
        if (lrp_pipe_run(&p, &be, net, &e) != LRP_OK)
            fail_msg("%s: %s", name, e.msg);
        float **got = calloc((size_t)net->n_layers, sizeof *got);
        assert_non_null(got);
        for (int i = 0; i < net->n_layers; i++)
            got[i] = p->L[i].rel;
        lrp_golden_result gr;
        if (lrp_golden_judge(&gr, net, &net->traces[ir], &net->traces[iff], got, &e) != LRP_OK)
            fail_msg("%s: %s", name, e.msg);
        if (gr.total_diffs)
            fail_msg("%s: %lld float32 cells differ from the committed bits (first in layer '%s'; "
                     "verdict against the golden reference: %s): a numeric change of the fast "
                     "path; if intended, run 'make golden' and commit the result",
                     name, (long long)gr.total_diffs, net->layers[gr.first_diff_layer].name,
                     lrp_verdict_name(gr.worst));
        int expect = expected_for(name);
        if (expect >= 0) {
            if ((int)gr.worst != expect)
                fail_msg("%s: verdict %s, documented %s", name, lrp_verdict_name(gr.worst),
                         lrp_verdict_name((lrp_verdict)expect));
        } else if (gr.worst != LRP_V_PASS && gr.worst != LRP_V_ILL_CONDITIONED) {
            fail_msg("%s: layer '%s' is %s against the golden reference", name,
                     net->layers[gr.worst_layer].name, lrp_verdict_name(gr.worst));
        }
        lrp_golden_result_free(&gr);
        free(got);
        lrp_pipe_free(p);
        lrp_f32_ctx_free(cx);
        lrp_net_free(net);
        checked++;
    }
    assert_int_equal(checked, lrp_fixture_count);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_golden_traces)};
    return cmocka_run_group_tests_name("golden", tests, setup, NULL);
}
