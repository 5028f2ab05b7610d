/*
 * test_tokens.c -- token sequences (docs/TRANSFORMERS.md section 1): per-
 * sample tensors (T, F), the layers that act on their last axis.
 *
 * Dense on (T, F): the reference, row by row, against tests/naive's exact
 * rational Dense (an independent witness: it knows nothing of rows; the
 * test hands it one row at a time) under every Dense rule; the float32
 * fast path judged by the oracle (PASS or ILL-CONDITIONED, the gauge's
 * own bound); shape errors named.
 *
 * Seed: LRP_TEST_SEED (printed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <gmp.h>
#include <math.h>
#include <mpfr.h>

#include "lrp.h"
#include "naive/naive.h"
#include "pipeline.h"
#include "reference.h"

static uint64_t g_seed;
static uint64_t g_rng;

static uint64_t rnd(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* k / 1024 in [-1, 1]: short mantissas, so sums are often exact */
static float rsym(void) { return (float)((int64_t)(rnd() % 2049) - 1024) / 1024.0f; }
/* 24-bit mantissas */
static float rsym24(void) { return (float)((int64_t)(rnd() >> 40) - (1 << 23)) / (float)(1 << 23); }

static float *fdup(const float *v, int64_t n)
{
    float *p = malloc((size_t)n * sizeof *p);
    assert_non_null(p);
    memcpy(p, v, (size_t)n * sizeof *p);
    return p;
}

/* Input (T, F) -> Dense units, batch B, relevance r_out given. */
static lrp_net *token_dense_net(int B, int T, int F, int units, const float *x, const float *w,
                                const float *b, const float *rout, const lrp_rule_spec *rs)
{
    lrp_err err;
    lrp_net *net = lrp_net_new();
    assert_non_null(net);
    assert_int_equal(lrp_net_add(net, LRP_LAYER_INPUT, "tokens", &err), 0);
    net->layers[0].shape.rank = 2;
    net->layers[0].shape.d[0] = T;
    net->layers[0].shape.d[1] = F;
    assert_int_equal(lrp_net_add(net, LRP_LAYER_DENSE, "proj", &err), 1);
    lrp_layer *l = &net->layers[1];
    l->n_in = 1;
    l->in[0] = 0;
    l->units = units;
    l->has_bias = b != NULL;
    l->rule = *rs;
    net->batch = B;
    if (lrp_net_infer(net, "test", &err))
        fail_msg("infer: %s", err.msg);
    assert_int_equal(l->shape.rank, 2);
    assert_int_equal(l->shape.d[0], T);
    assert_int_equal(l->shape.d[1], units);
    l->w = fdup(w, (int64_t)units * F);
    if (b)
        l->b = fdup(b, units);
    net->input = fdup(x, (int64_t)B * T * F);
    net->r_out = fdup(rout, (int64_t)B * T * units);
    return net;
}

/* |ref - exact| <= 2^-(p-10) * scale */
static int close_q(mpfr_srcptr ref, const mpq_t exact, const mpq_t scale, int p)
{
    mpq_t r, t;
    mpq_inits(r, t, NULL);
    mpfr_get_q(r, ref);
    mpq_sub(r, r, exact);
    mpq_abs(r, r);
    mpq_div_2exp(t, scale, (mp_bitcnt_t)(p - 10));
    int ok = mpq_cmp(r, t) <= 0;
    mpq_clears(r, t, NULL);
    return ok;
}

typedef struct drule {
    lrp_rule_id id;
    int nv;
} drule;

static naive_rule to_naive(const lrp_rule_spec *s, int nv)
{
    naive_rule r;
    memset(&r, 0, sizeof r);
    r.rule = nv;
    r.stab = (int)s->stab; /* same table order (docs/SPEC.md section 5) */
    r.eps = s->eps;
    r.gamma = s->gamma;
    r.alpha = s->rule == LRP_RULE_ZPLUS ? 1.0f : s->alpha;
    r.beta = s->rule == LRP_RULE_ZPLUS ? 0.0f : s->beta;
    r.low = s->low;
    r.high = s->high;
    r.bias = s->bias;
    return r;
}

/* Every Dense rule on a (T, F) input: each row of the reference's input
 * relevance equals the naive exact Dense of that row (within the
 * reference's own rounding, 2^-(p-10) of the row's magnitudes: close_q),
 * the conservation residual closes, and the fast path's trace is within
 * the gauge. */
static void t_dense_rows(void **s)
{
    (void)s;
    static const drule rules[] = {
        {LRP_RULE_ZERO, NV_LRP0},   {LRP_RULE_EPSILON, NV_EPS}, {LRP_RULE_GAMMA, NV_GAMMA},
        {LRP_RULE_ALPHABETA, NV_AB}, {LRP_RULE_ZPLUS, NV_AB},   {LRP_RULE_WSQUARE, NV_WSQUARE},
        {LRP_RULE_FLAT, NV_FLAT},   {LRP_RULE_ZBOX, NV_ZBOX},
    };
    const int B = 2, T = 3, F = 5, U = 4;
    float x[2 * 3 * 5], w[4 * 5], b[4], rout[2 * 3 * 4];
    int runs = 0;
    for (size_t ri = 0; ri < sizeof rules / sizeof rules[0]; ri++)
        for (int bias = 0; bias < 2; bias++)
            for (int stab = 0; stab < 2; stab++) {
                for (int i = 0; i < B * T * F; i++)
                    x[i] = rsym24();
                for (int i = 0; i < U * F; i++)
                    w[i] = rsym();
                for (int i = 0; i < U; i++)
                    b[i] = rsym() * 0.25f;
                for (int i = 0; i < B * T * U; i++)
                    rout[i] = rsym24();
                /* a row of zeros: every unit's z is its bias (or 0); not
                 * under lrp0 (eps 0), where the fast path divides 0 by 0 as
                 * any float32 implementation does (NONFINITE, by design),
                 * nor under signbit, where a unit whose weights are all
                 * negative has z = -0 exactly and the fast path's +0 flips
                 * the stabilizer: the oracle reports that FAIL for a flat
                 * Dense as well (not a token matter) */
                if (rules[ri].id != LRP_RULE_ZERO && !stab)
                    for (int i = 0; i < F; i++)
                        x[T * F + i] = 0.0f;
                lrp_rule_spec rs = lrp_rule_default(rules[ri].id);
                if (rules[ri].id == LRP_RULE_ALPHABETA) {
                    rs.alpha = 2.0f;
                    rs.beta = 1.0f;
                }
                if (rules[ri].id == LRP_RULE_ZERO)
                    rs.eps = 0.0f;
                rs.bias = bias;
                rs.stab = stab ? LRP_STAB_SIGNBIT : LRP_STAB_SIGN0_POS;
                lrp_net *net = token_dense_net(B, T, F, U, x, w, bias ? b : NULL, rout, &rs);
                lrp_err err;
                lrp_ref_result *R = NULL;
                if (lrp_ref_run(&R, net, NULL, &err))
                    fail_msg("ref: %s", err.msg);
                naive_rule nr = to_naive(&rs, rules[ri].nv);
                naive_geom ng;
                memset(&ng, 0, sizeof ng);
                ng.C = F;
                ng.H = ng.W = 1;
                ng.O = U;
                ng.kh = ng.kw = ng.sh = ng.sw = ng.dh = ng.dw = ng.groups = 1;
                mpq_t Rin[5], gau[5], ab[4], ug[4], sc;
                int st[4];
                mpq_init(sc);
                for (int i = 0; i < F; i++)
                    mpq_inits(Rin[i], gau[i], NULL);
                for (int j = 0; j < U; j++)
                    mpq_inits(ab[j], ug[j], NULL);
                mpfr_srcptr rel = lrp_ref_rel(R, 0);
                for (int bt = 0; bt < B * T; bt++) {
                    for (int i = 0; i < F; i++)
                        mpq_set_ui(Rin[i], 0, 1), mpq_set_ui(gau[i], 0, 1);
                    naive_lrp(Rin, gau, ab, ug, st, &ng, x + bt * F, w, bias ? b : NULL,
                              rout + bt * U, &nr);
                    for (int i = 0; i < F; i++) {
                        mpq_abs(sc, Rin[i]);
                        mpq_add(sc, sc, gau[i]);
                        if (!close_q(rel + bt * F + i, Rin[i], sc, R->prec))
                            fail_msg("rule %s bias %d stab %d seed %llu: row %d R_in[%d] = %.17g, "
                                     "exact %.17g",
                                     lrp_rule_name(rs.rule), bias, stab,
                                     (unsigned long long)g_seed, bt, i,
                                     mpfr_get_d(rel + bt * F + i, MPFR_RNDN), mpq_get_d(Rin[i]));
                    }
                }
                /* the conservation audit (sum R_in + absorbed = sum R_out per
                 * sample, correctly rounded) closes to the reference's own
                 * rounding */
                if (!(R->pipe->L[1].cons_resid <= ldexp(1.0, -(R->prec - 10))))
                    fail_msg("rule %s: conservation residual %g", lrp_rule_name(rs.rule),
                             R->pipe->L[1].cons_resid);
                for (int i = 0; i < F; i++)
                    mpq_clears(Rin[i], gau[i], NULL);
                for (int j = 0; j < U; j++)
                    mpq_clears(ab[j], ug[j], NULL);
                mpq_clear(sc);
                lrp_ref_free(R);
                /* the fast path within the oracle's bound */
                lrp_judgement *J = NULL;
                lrp_judge_opts jo;
                memset(&jo, 0, sizeof jo);
                jo.no_proof = 1;
                if (lrp_judge(&J, net, NULL, &jo, &err))
                    fail_msg("judge: %s", err.msg);
                if (!lrp_judgement_ok(J))
                    fail_msg("rule %s bias %d stab %d: fast path judged %s (%s)",
                             lrp_rule_name(rs.rule), bias, stab,
                             lrp_verdict_name(lrp_judgement_verdict(J)), lrp_judgement_origin(J));
                lrp_judgement_free(J);
                lrp_net_free(net);
                runs++;
            }
    printf("    token Dense: %d runs, every rule\n", runs);
}

/* Flatten of (T, F) is T*F; a Dense on rank 3 is refused with the layer
 * named. */
static void t_dense_shapes(void **s)
{
    (void)s;
    lrp_err err;
    lrp_net *net = lrp_net_new();
    assert_int_equal(lrp_net_add(net, LRP_LAYER_INPUT, "tokens", &err), 0);
    net->layers[0].shape.rank = 2;
    net->layers[0].shape.d[0] = 6;
    net->layers[0].shape.d[1] = 7;
    assert_int_equal(lrp_net_add(net, LRP_LAYER_FLATTEN, "flat", &err), 1);
    net->layers[1].n_in = 1;
    net->layers[1].in[0] = 0;
    net->batch = 1;
    if (lrp_net_infer(net, "test", &err))
        fail_msg("%s", err.msg);
    assert_int_equal(net->layers[1].shape.rank, 1);
    assert_int_equal(net->layers[1].shape.d[0], 42);
    lrp_net_free(net);

    net = lrp_net_new();
    assert_int_equal(lrp_net_add(net, LRP_LAYER_INPUT, "img", &err), 0);
    net->layers[0].shape.rank = 3;
    net->layers[0].shape.d[0] = 2;
    net->layers[0].shape.d[1] = 3;
    net->layers[0].shape.d[2] = 4;
    assert_int_equal(lrp_net_add(net, LRP_LAYER_DENSE, "fc", &err), 1);
    net->layers[1].n_in = 1;
    net->layers[1].in[0] = 0;
    net->layers[1].units = 3;
    net->batch = 1;
    assert_int_equal(lrp_net_infer(net, "f.h5", &err), LRP_E_INVALID);
    assert_non_null(strstr(err.msg, "f.h5: layer 'fc'"));
    assert_null(strchr(err.msg, '\n'));
    lrp_net_free(net);
}

int main(void)
{
    const char *e = getenv("LRP_TEST_SEED");
    g_seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
    g_rng = g_seed;
    printf("test_tokens: seed %llu (LRP_TEST_SEED)\n", (unsigned long long)g_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_dense_rows),
        cmocka_unit_test(t_dense_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
