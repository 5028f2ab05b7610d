/*
 * test_refpack.c -- the MPFR backend's two lossless forms of a tensor
 * (reference/ref_backend.c): the packed activations a streamed run keeps
 * between its forward and backward passes (pack / unpack: variable-length
 * records, zeros in one byte, low zero limbs and small exponents not
 * stored), and the plain bytes the layer split exchanges between ranks
 * (to_wire / from_wire).  Every kind of value, both signs, exponents at
 * the edges of the short form and far beyond it, significands with zero
 * low limbs, at several precisions (one limb to four), must come back with
 * the same kind, sign, exponent and significand: compared bit for bit,
 * not by value (+0 and -0 are equal as values; a NaN equals nothing).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <gmp.h>
#include <mpfr.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "reference.h"

/* The values: every kind, signs, exponent edges, limb patterns. */
static int64_t fill(mpfr_ptr v, mpfr_prec_t p)
{
    int64_t n = 0;
    mpfr_set_nan(v + n++);
    mpfr_set_inf(v + n++, 1);
    mpfr_set_inf(v + n++, -1);
    mpfr_set_zero(v + n++, 1);
    mpfr_set_zero(v + n++, -1);
    mpfr_set_ui(v + n++, 1, MPFR_RNDN);             /* one bit: low limbs zero */
    mpfr_set_si(v + n++, -3, MPFR_RNDN);
    mpfr_set_flt(v + n++, 0.1f, MPFR_RNDN);        /* 24 bits */
    mpfr_set_d(v + n++, -1e-300, MPFR_RNDN);       /* 53 bits, small exponent */
    mpfr_const_pi(v + n++, MPFR_RNDN);             /* every limb used */
    mpfr_const_log2(v + n, MPFR_RNDN);
    mpfr_neg(v + n, v + n, MPFR_RNDN);
    n++;
    /* exponents at the edges of int16 and beyond, with full significands */
    static const long ex[] = {INT16_MAX - 2, INT16_MAX - 1, INT16_MAX, (long)INT16_MAX + 1,
                              INT16_MIN + 1, INT16_MIN, (long)INT16_MIN - 1, 1L << 40,
                              -(1L << 40)};
    for (size_t k = 0; k < sizeof ex / sizeof *ex; k++) {
        mpfr_const_pi(v + n, MPFR_RNDN);
        mpfr_set_exp(v + n, (mpfr_exp_t)ex[k]);
        if (k & 1)
            mpfr_neg(v + n, v + n, MPFR_RNDN);
        n++;
    }
    /* a significand whose lowest limb alone is nonzero beyond the top bit:
     * 1 + 2^-(p-1), the last bit of the last limb */
    mpfr_set_ui(v + n, 1, MPFR_RNDN);
    mpfr_t u;
    mpfr_init2(u, p);
    mpfr_set_ui_2exp(u, 1, -(p - 1), MPFR_RNDN);
    mpfr_add(v + n, v + n, u, MPFR_RNDN);
    n++;
    /* and one whose middle limbs are zero: 1 + 2^-70 (needs p >= 71) */
    if (p >= 71) {
        mpfr_set_ui(v + n, 1, MPFR_RNDN);
        mpfr_set_ui_2exp(u, 1, -70, MPFR_RNDN);
        mpfr_add(v + n, v + n, u, MPFR_RNDN);
        n++;
    }
    mpfr_clear(u);
    return n;
}

/* the same bits: kind, sign, exponent and the significand's limbs */
static void assert_same_bits(mpfr_srcptr a, mpfr_srcptr b, mpfr_prec_t p, int64_t i)
{
    int ka = mpfr_custom_get_kind(a), kb = mpfr_custom_get_kind(b);
    if (ka != kb)
        fail_msg("value %lld: kind %d came back as %d", (long long)i, ka, kb);
    assert_int_equal(mpfr_get_prec(b), p);
    if (ka == MPFR_REGULAR_KIND || ka == -MPFR_REGULAR_KIND) {
        assert_true(mpfr_custom_get_exp(a) == mpfr_custom_get_exp(b));
        size_t limb = mpfr_custom_get_size(p);
        if (memcmp(mpfr_custom_get_significand(a), mpfr_custom_get_significand(b), limb))
            fail_msg("value %lld: significand differs", (long long)i);
    }
}

static void round_trip(mpfr_prec_t p)
{
    lrp_ref_ctx cx;
    lrp_backend be;
    lrp_ref_ctx_init(&cx, (int)p, 1);
    lrp_ref_backend(&be, &cx);
    assert_non_null(be.pack);
    enum { CAP = 64, REP = 5 };
    /* the values repeated, so records of every size follow one another */
    mpfr_ptr one = be.tensor_new(be.ctx, CAP);
    assert_non_null(one);
    int64_t m = fill(one, p), n = m * REP;
    assert_true(m <= CAP);
    mpfr_ptr t = be.tensor_new(be.ctx, n), keep = be.tensor_new(be.ctx, n);
    assert_non_null(t);
    assert_non_null(keep);
    for (int64_t i = 0; i < n; i++) {
        mpfr_set(t + i, one + (i % m), MPFR_RNDN);
        mpfr_set(keep + i, one + (i % m), MPFR_RNDN);
    }

    /* pack consumes t; unpack gives a new tensor, the packed form stays */
    void *pk = be.pack(be.ctx, t, n);
    assert_non_null(pk);
    for (int round = 0; round < 2; round++) {
        /* memory the allocator will likely hand to unpack, left dirty
         * (every limb set), so limbs unpack does not write are seen */
        mpfr_ptr d = be.tensor_new(be.ctx, n);
        assert_non_null(d);
        for (int64_t i = 0; i < n; i++)
            mpfr_const_pi(d + i, MPFR_RNDN);
        be.tensor_free(be.ctx, d, n);
        mpfr_ptr u = be.unpack(be.ctx, pk, n);
        assert_non_null(u);
        for (int64_t i = 0; i < n; i++)
            assert_same_bits(keep + i, u + i, p, i);
        be.tensor_free(be.ctx, u, n);
    }
    be.pack_free(be.ctx, pk);

    /* the wire form */
    size_t bytes = be.wire_size(be.ctx, n);
    unsigned char *buf = malloc(bytes), *buf2 = malloc(bytes);
    assert_non_null(buf);
    assert_non_null(buf2);
    be.to_wire(be.ctx, buf, keep, n);
    mpfr_ptr w = be.tensor_new(be.ctx, n);
    assert_non_null(w);
    be.from_wire(be.ctx, w, buf, n);
    for (int64_t i = 0; i < n; i++)
        assert_same_bits(keep + i, w + i, p, i);
    /* deterministic bytes: the same values give the same buffer */
    be.to_wire(be.ctx, buf2, w, n);
    assert_memory_equal(buf, buf2, bytes);
    be.tensor_free(be.ctx, w, n);
    free(buf);
    free(buf2);
    be.tensor_free(be.ctx, keep, n);
    be.tensor_free(be.ctx, one, CAP);
}

/* p = 53: one limb; 128: the default (two); 192: the self-proof's (three);
 * 200: four limbs, the last partly used */
static void test_pack_p53(void **s) { (void)s; round_trip(53); }
static void test_pack_p128(void **s) { (void)s; round_trip(128); }
static void test_pack_p192(void **s) { (void)s; round_trip(192); }
static void test_pack_p200(void **s) { (void)s; round_trip(200); }

/* A long run of one-byte records (zeros of both signs, as half of a
 * ReLU's outputs are): each comes back a zero with its sign. */
static void test_pack_zeros(void **s)
{
    (void)s;
    lrp_ref_ctx cx;
    lrp_backend be;
    lrp_ref_ctx_init(&cx, 128, 1);
    lrp_ref_backend(&be, &cx);
    int64_t n = 100000;
    mpfr_ptr t = be.tensor_new(be.ctx, n);
    assert_non_null(t);
    for (int64_t i = 0; i < n; i++)
        mpfr_set_zero(t + i, (i % 3) ? 1 : -1);
    void *pk = be.pack(be.ctx, t, n);
    assert_non_null(pk);
    mpfr_ptr u = be.unpack(be.ctx, pk, n);
    assert_non_null(u);
    for (int64_t i = 0; i < n; i++) {
        assert_true(mpfr_zero_p(u + i));
        assert_int_equal(mpfr_signbit(u + i) != 0, (i % 3) == 0);
    }
    be.tensor_free(be.ctx, u, n);
    be.pack_free(be.ctx, pk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_p53),  cmocka_unit_test(test_pack_p128),
        cmocka_unit_test(test_pack_p192), cmocka_unit_test(test_pack_p200),
        cmocka_unit_test(test_pack_zeros),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
