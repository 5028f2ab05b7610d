/*
 * test_refexact.c -- the MPFR backend's exact partial sums
 * (reference/ref_exact.c; core/pipeline.h bmm_exact, rowsum_exact,
 * sum_exact), on which the layer split of an attention rests: terms
 * spread over R ranks in any way, each rank's exact sum sent as bytes and
 * the R values summed and rounded once, must give the one-process sum bit
 * for bit (value, sign of a zero, NaN and infinities), for any partition,
 * empty parts included, and parts too wide to sum exactly (sent as their
 * terms) among them.  Compared bit for bit, never with a tolerance:
 * the split promises the same bits, not nearby ones.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <mpfr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h"
#include "pipeline.h"
#include "reference.h"

#define P 128
#define MAXR 7

static lrp_rng rng; /* seeded in main */
static uint64_t next(void) { return lrp_rng_next(&rng); }

/* the MPFR backend at P bits on threads threads */
static void backend(lrp_ref_ctx *c, lrp_backend *be, int threads)
{
    lrp_ref_ctx_init(c, P, threads);
    lrp_ref_backend(be, c);
}

/* same kind, sign, exponent and significand */
static int same_bits(mpfr_srcptr a, mpfr_srcptr b)
{
    if (mpfr_nan_p(a) || mpfr_nan_p(b))
        return mpfr_nan_p(a) && mpfr_nan_p(b);
    if (mpfr_signbit(a) != mpfr_signbit(b))
        return 0;
    return mpfr_equal_p(a, b);
}

/* a value of one of several shapes: signed zeros, tiny and huge
 * exponents, values that cancel their neighbours exactly */
static void term(mpfr_ptr x, int shape, mpfr_srcptr prev)
{
    switch (shape) {
    case 0: mpfr_set_zero(x, 1); break;
    case 1: mpfr_set_zero(x, -1); break;
    case 2: /* -prev: an exact cancellation */
        if (prev)
            mpfr_neg(x, prev, MPFR_RNDN);
        else
            mpfr_set_zero(x, -1);
        break;
    default: {
        mpfr_set_si(x, (long)(next() % 2000001) - 1000000, MPFR_RNDN);
        mpfr_div_ui(x, x, 7, MPFR_RNDN); /* a full significand */
        long e = shape == 3 ? 0 : (long)(next() % 4001) - 2000; /* spread exponents */
        mpfr_mul_2si(x, x, e, MPFR_RNDN);
    }
    }
}

/* n terms of v split at random over R parts (some empty): each part's
 * exact sum onto its buffer (rowsum_exact, one row), then sum_exact of
 * the R buffers against mpfr_sum of all the terms at P */
static void check_partition(const lrp_backend *be, mpfr_ptr v, int64_t n, int R,
                            const char *what)
{
    void *cx = be->ctx;
    int *owner = malloc((size_t)(n ? n : 1) * sizeof *owner);
    assert_non_null(owner);
    for (int64_t i = 0; i < n; i++)
        owner[i] = (int)(next() % (uint64_t)R);
    lrp_bytes buf[MAXR];
    memset(buf, 0, sizeof buf);
    void *part = be->tensor_new(cx, n ? n : 1);
    for (int q = 0; q < R; q++) {
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            if (owner[i] == q)
                mpfr_set((mpfr_ptr)be->at(cx, part, m++), v + i, MPFR_RNDN); /* exact: same P */
        assert_int_equal(be->rowsum_exact(cx, &buf[q], part, 1, m), 0);
    }
    const unsigned char *in[MAXR], *end[MAXR];
    for (int q = 0; q < R; q++) {
        in[q] = buf[q].p;
        end[q] = buf[q].p + buf[q].n;
    }
    void *out = be->tensor_new(cx, 1);
    lrp_bmm G = {1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1.0f};
    assert_int_equal(be->sum_exact(cx, out, &G, in, end, R), 0);
    for (int q = 0; q < R; q++)
        assert_ptr_equal(in[q], end[q]); /* every byte read */
    mpfr_ptr *pp = malloc((size_t)(n ? n : 1) * sizeof *pp);
    assert_non_null(pp);
    for (int64_t i = 0; i < n; i++)
        pp[i] = v + i;
    mpfr_t want;
    mpfr_init2(want, P);
    if (n)
        mpfr_sum(want, pp, (unsigned long)n, MPFR_RNDN);
    else
        mpfr_set_zero(want, -1); /* nothing: the neutral -0 */
    if (!same_bits(want, be->at(cx, out, 0)))
        fail_msg("%s, R = %d, %lld terms: split sum %s differs from one sum", what, R,
                 (long long)n, mpfr_get_str(NULL, NULL, 10, 0, be->at(cx, out, 0), MPFR_RNDN));
    /* the same parts through the public pair the oracle's conservation
     * residual uses (lrp_ref_exact_put, lrp_ref_exact_acc) */
    lrp_ref_exact_acc *acc = lrp_ref_exact_acc_new();
    assert_non_null(acc);
    for (int q = 0; q < R; q++) {
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            if (owner[i] == q)
                pp[m++] = v + i;
        lrp_bytes b = {0};
        assert_int_equal(lrp_ref_exact_put(&b, pp, m), 0);
        const unsigned char *rp = b.p;
        assert_int_equal(lrp_ref_exact_acc_read(acc, &rp, b.p + b.n), 0);
        assert_ptr_equal(rp, b.p + b.n); /* every byte read */
        if (b.n > 1) /* a part that ends early is refused */
            rp = b.p, assert_int_equal(lrp_ref_exact_acc_read(acc, &rp, b.p + b.n - 1), -1);
        lrp_bytes_free(&b);
    }
    mpfr_t got;
    mpfr_init2(got, P);
    lrp_ref_exact_acc_sum(acc, got);
    if (!same_bits(want, got))
        fail_msg("%s, R = %d, %lld terms: lrp_ref_exact_acc's sum differs from one sum", what, R,
                 (long long)n);
    mpfr_clear(got);
    lrp_ref_exact_acc_free(acc);
    mpfr_clear(want);
    free(pp);
    be->tensor_free(cx, out, 1);
    be->tensor_free(cx, part, n ? n : 1);
    for (int q = 0; q < R; q++)
        lrp_bytes_free(&buf[q]);
    free(owner);
}

static void rowsum_partitions(void **state)
{
    (void)state;
    lrp_ref_ctx c;
    lrp_backend be;
    backend(&c, &be, 1);
    const int64_t N = 40;
    mpfr_ptr v = be.tensor_new(&c, N);
    for (int trial = 0; trial < 400; trial++) {
        int64_t n = (int64_t)(next() % (uint64_t)(N + 1));
        /* trial's mix of shapes: all -0, all zeros, cancellations, spreads */
        int mode = trial % 5;
        for (int64_t i = 0; i < n; i++) {
            int shape = mode == 0 ? 1 : mode == 1 ? (int)(next() % 2) : (int)(next() % 5);
            term(v + i, shape, i ? v + i - 1 : NULL);
        }
        for (int R = 1; R <= MAXR; R++)
            check_partition(&be, v, n, R, mode == 0 ? "all -0" : mode == 1 ? "zeros" : "mixed");
    }
    /* NaN and infinities pass through as mpfr_sum has them */
    term(v, 3, NULL);
    mpfr_set_inf(v + 1, 1);
    mpfr_set_inf(v + 2, -1);
    mpfr_set_nan(v + 3);
    check_partition(&be, v, 2, 3, "+inf");
    check_partition(&be, v, 3, 3, "+inf and -inf");
    check_partition(&be, v + 3, 1, 2, "NaN");
    be.tensor_free(&c, v, N);
}

/* bmm_exact over blocks of k on R "ranks", summed by sum_exact into the
 * output cells, against bmm on all of k: c a power of two (applied after
 * the rounding) and not (in each product) */
static void bmm_blocks(void **state)
{
    (void)state;
    lrp_ref_ctx c;
    lrp_backend be;
    backend(&c, &be, 2);
    c.par_min = 1; /* bmm_exact's pieces on both threads */
    const int64_t n1 = 2, n2 = 3, M = 5, N = 4, K = 9;
    void *a = be.tensor_new(&c, n1 * n2 * M * K), *b = be.tensor_new(&c, n1 * n2 * K * N);
    void *want = be.tensor_new(&c, n1 * n2 * M * N), *got = be.tensor_new(&c, n1 * n2 * M * N);
    for (int64_t i = 0; i < n1 * n2 * M * K; i++)
        term(be.at(&c, a, i), (int)(next() % 5), i ? be.at(&c, a, i - 1) : NULL);
    for (int64_t i = 0; i < n1 * n2 * K * N; i++)
        term(be.at(&c, b, i), 3 + (int)(next() % 2), NULL);
    const float cs[] = {1.0f, 0.125f, 0x1.6a09e6p-2f, -0.5f};
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++)
        for (int R = 1; R <= MAXR; R++) {
            /* a (i1, i2, m, k), b (i1, i2, k, n), out (i1, i2, m, n) */
            lrp_bmm G = {n1, n2, M, N, K,
                         n2 * M * K, M * K, K, 1,
                         n2 * K * N, K * N, N, 1,
                         n2 * M * N, M * N, N, 1, cs[ci]};
            be.bmm(&c, want, a, b, &G);
            lrp_bytes buf[MAXR];
            memset(buf, 0, sizeof buf);
            for (int q = 0; q < R; q++) {
                int64_t lo = q * K / R, hi = (q + 1) * K / R; /* empty when R > K */
                lrp_bmm g = G;
                g.K = hi - lo;
                assert_int_equal(
                    be.bmm_exact(&c, &buf[q], be.at(&c, a, lo), be.at(&c, b, lo * N), &g), 0);
            }
            const unsigned char *in[MAXR], *end[MAXR];
            for (int q = 0; q < R; q++) {
                in[q] = buf[q].p;
                end[q] = buf[q].p + buf[q].n;
            }
            assert_int_equal(be.sum_exact(&c, got, &G, in, end, R), 0);
            for (int64_t i = 0; i < n1 * n2 * M * N; i++)
                if (!same_bits(be.at(&c, want, i), be.at(&c, got, i)))
                    fail_msg("c = %a, R = %d: cell %lld differs from bmm", (double)cs[ci], R,
                             (long long)i);
            /* bytes that end early are refused, not read past */
            if (buf[0].n > 1) {
                in[0] = buf[0].p;
                end[0] = buf[0].p + buf[0].n - 1;
                for (int q = 1; q < R; q++)
                    in[q] = buf[q].p;
                assert_int_equal(be.sum_exact(&c, got, &G, in, end, R), -1);
            }
            for (int q = 0; q < R; q++)
                lrp_bytes_free(&buf[q]);
        }
    be.tensor_free(&c, a, n1 * n2 * M * K);
    be.tensor_free(&c, b, n1 * n2 * K * N);
    be.tensor_free(&c, want, n1 * n2 * M * N);
    be.tensor_free(&c, got, n1 * n2 * M * N);
}

/* a part whose exact sum would need more than 2^22 bits (a softmax
 * weight of exp(-10^7) beside one) is sent as its terms: the sums still
 * equal one process's, and the bytes show which way each part went */
static void too_wide_sent_as_terms(void **state)
{
    (void)state;
    lrp_ref_ctx c;
    lrp_backend be;
    backend(&c, &be, 1);
    const int64_t N = 12;
    mpfr_ptr v = be.tensor_new(&c, N);
    for (int trial = 0; trial < 60; trial++) {
        for (int64_t i = 0; i < N; i++) {
            term(v + i, 3 + (int)(next() % 2), i ? v + i - 1 : NULL);
            if (next() % 3 == 0) /* far below the rest */
                mpfr_mul_2si(v + i, v + i, -(1L << 23) - (long)(next() % 1000), MPFR_RNDN);
            else if (next() % 4 == 0)
                mpfr_set_zero(v + i, next() % 2 ? 1 : -1);
        }
        for (int R = 1; R <= MAXR; R++)
            check_partition(&be, v, N, R, "spread over 2^23 bits");
    }
    /* the two forms on the wire: kind 7 and the terms, or one value */
    lrp_bytes buf = {0};
    mpfr_set_ui(v, 1, MPFR_RNDN);
    mpfr_set_ui_2exp(v + 1, 1, -(1L << 23), MPFR_RNDN);
    assert_int_equal(be.rowsum_exact(&c, &buf, v, 1, 2), 0);
    assert_int_equal(buf.p[0], 7);
    lrp_bytes_free(&buf);
    mpfr_set_ui_2exp(v + 1, 1, -(1L << 21), MPFR_RNDN); /* 2^21 apart: held exactly */
    assert_int_equal(be.rowsum_exact(&c, &buf, v, 1, 2), 0);
    assert_int_equal(buf.p[0], 2);
    lrp_bytes_free(&buf);
    be.tensor_free(&c, v, N);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rowsum_partitions),
        cmocka_unit_test(bmm_blocks),
        cmocka_unit_test(too_wide_sent_as_terms),
    };
    lrp_rng_seed(&rng, 0xe8ac7u);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mpfr_free_cache();
    return rc;
}
