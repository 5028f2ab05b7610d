/*
 * test_runwire.c -- run reports as bytes (tools/runwire.c), the form in
 * which MPI ranks send their results to rank 0 (tools/cli_mpi.h), and the
 * one-rank functions of tools/cli_mpi.c that the default build uses.
 *
 * A report of a real run (cnn: BatchNorm per-channel sums, every layer's
 * per-cell arrays) is packed and read back: every field and array is the
 * same and the JSON report written from the copy is byte for byte the
 * original's.  Every shorter buffer, and a damaged presence byte, is
 * refused without a leak (ASan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cli.h"
#include "cli_mpi.h"
#include "fixtures.h"
#include "util/testutil.h"

/* cli_mpi.c's one-rank gather reports out of memory through this */
int cli_usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "lrp-oracle %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return EXIT_USAGE;
}

#include "../tools/cli_mpi.c"
#include "../tools/runwire.c"

static lrp_run_report g_rep;

static int setup(void **state)
{
    (void)state;
    const lrp_fixture_def *d = lrp_fixture_lookup("cnn");
    lrp_net *net = NULL;
    lrp_err e = {0};
    if (!d || d->build(&net, LRP_FIXTURE_SEED, &e) != LRP_OK)
        return -1;
    lrp_check_opts co;
    lrp_check_opts_default(&co);
    co.keep_cells = 2; /* every layer's per-cell arrays */
    co.label = "cnn.h5";
    co.ruleset = "EpsilonPlus";
    lrp_status st = lrp_check(&g_rep, net, &co, &e);
    lrp_net_free(net);
    g_rep.seconds = 0.25;
    return st == LRP_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    lrp_run_report_free(&g_rep);
    return 0;
}

static char *json_of(const lrp_run_report *r, size_t *n)
{
    char path[] = "/tmp/lrp_runwire_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    lrp_err e = {0};
    assert_int_equal(lrp_report_json(path, r, 1, &e), LRP_OK);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    unlink(path);
    *n = (size_t)len;
    return buf;
}

static void test_roundtrip(void **state)
{
    (void)state;
    const lrp_run_report *r = &g_rep;
    int with_bn = 0, with_cells = 0;
    for (int i = 0; i < r->n_layers; i++) {
        with_bn += r->layers[i].bn_in != NULL;
        with_cells += r->layers[i].cell_ref != NULL;
    }
    assert_true(with_bn > 0);    /* the test covers the per-channel arrays */
    assert_true(with_cells > 1); /* and the per-cell arrays of several layers */
    cli_bytes b = {0};
    cli_report_pack(&b, r);
    cli_bytes_put(&b, "tail", 4); /* what follows in a gathered buffer */
    assert_false(b.oom);
    lrp_run_report c;
    size_t pos = 0;
    assert_int_equal(cli_report_unpack(&c, b.p, b.n, &pos), 0);
    assert_int_equal(pos, b.n - 4);
    assert_int_equal(c.n_layers, r->n_layers);
    assert_int_equal(c.verdict, r->verdict);
    assert_memory_equal(c.origin, r->origin, sizeof c.origin);
    for (int i = 0; i < r->n_layers; i++) {
        const lrp_layer_report *x = &r->layers[i], *y = &c.layers[i];
        size_t m = (size_t)(lrp_shape_numel(&x->shape) * r->batch);
        assert_memory_equal(&x->e2e, &y->e2e, sizeof x->e2e);
        assert_string_equal(x->why, y->why);
        assert_int_equal(x->cell_ref != NULL, y->cell_ref != NULL);
        if (x->cell_ref) {
            assert_memory_equal(x->cell_ref, y->cell_ref, m * sizeof(float));
            assert_memory_equal(x->cell_got, y->cell_got, m * sizeof(float));
            assert_memory_equal(x->cell_units, y->cell_units, m * sizeof(float));
            assert_memory_equal(x->cell_mark, y->cell_mark, m);
        }
        assert_int_equal(x->bn_in != NULL, y->bn_in != NULL);
        if (x->bn_in) {
            assert_memory_equal(x->bn_in, y->bn_in, (size_t)x->bn_C * sizeof(double));
            assert_memory_equal(x->bn_abs, y->bn_abs, (size_t)x->bn_C * sizeof(double));
            assert_memory_equal(x->bn_out, y->bn_out, (size_t)x->bn_C * sizeof(double));
        }
    }
    size_t n1, n2;
    char *j1 = json_of(r, &n1), *j2 = json_of(&c, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(j1, j2, n1);
    free(j1);
    free(j2);
    lrp_run_report_free(&c);
    cli_bytes_free(&b);
}

static void test_short_and_damaged(void **state)
{
    (void)state;
    cli_bytes b = {0};
    cli_report_pack(&b, &g_rep);
    assert_false(b.oom);
    /* every cut: at the struct, the layers, the arrays and their presence
     * bytes (a stride keeps it quick; the struct boundaries exactly) */
    size_t cuts[] = {0, 1, sizeof(lrp_run_report) - 1, sizeof(lrp_run_report),
                     sizeof(lrp_run_report) + 1, sizeof(lrp_run_report) + sizeof(lrp_layer_report),
                     sizeof(lrp_run_report) + sizeof(lrp_layer_report) + 1, b.n / 2, b.n - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        lrp_run_report c;
        size_t pos = 0;
        assert_int_equal(cli_report_unpack(&c, b.p, cuts[k], &pos), -1);
        assert_null(c.layers);
    }
    for (size_t cut = 0; cut < b.n; cut += 997) {
        lrp_run_report c;
        size_t pos = 0;
        assert_int_equal(cli_report_unpack(&c, b.p, cut, &pos), -1);
    }
    /* a presence byte that is neither 0 nor 1 */
    unsigned char *p = b.p + sizeof(lrp_run_report) + sizeof(lrp_layer_report);
    assert_true(*p == 0 || *p == 1);
    *p = 7;
    lrp_run_report c;
    size_t pos = 0;
    assert_int_equal(cli_report_unpack(&c, b.p, b.n, &pos), -1);
    cli_bytes_free(&b);
}

/* The default build's MPI layer: one rank, collectives return their input. */
static void test_one_rank(void **state)
{
    (void)state;
    assert_int_equal(cli_mpi_rank(), 0);
    assert_int_equal(cli_mpi_size(), 1);
    assert_int_equal(cli_mpi_agree(-1), -1);
    assert_int_equal(cli_mpi_agree(EXIT_USAGE), EXIT_USAGE);
    int64_t first = -1, count = -1;
    cli_mpi_block(7, &first, &count);
    assert_int_equal(first, 0);
    assert_int_equal(count, 7);
    void *all = NULL;
    size_t total = 0;
    assert_int_equal(cli_mpi_gather("abc", 3, &all, &total), -1);
    assert_int_equal(total, 3);
    assert_memory_equal(all, "abc", 3);
    free(all);
    assert_int_equal(cli_mpi_finish(EXIT_CHECK_FAILED), EXIT_CHECK_FAILED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_short_and_damaged),
        cmocka_unit_test(test_one_rank),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
