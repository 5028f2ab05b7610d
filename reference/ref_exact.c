/*
 * ref_exact.c -- exact partial sums for the layer split (core/pipeline.h,
 * lrp_backend.bmm_exact / rowsum_exact / sum_exact; core/kind_attn.c).
 *
 * An attention divided by query rows over ranks has sums whose terms lie
 * on several ranks: the relevance of a key or value is a sum over every
 * query row, and the absorbed totals are sums over every row.  One process
 * rounds the exact value of such a sum once (mpfr_sum).  Here each rank
 * forms the EXACT value of the sum of its own terms (mpfr_sum at a
 * precision wide enough to hold it: no rounding at all), sends it as
 * bytes, and the receiver rounds the exact sum of the ranks' values once:
 * the same exact value, the same rounding, the same bits.
 *
 * On the wire, one value: a byte of kind (0 +0, 1 -0, 2 positive, 3
 * negative, 4 NaN, 5 +inf, 6 -inf); a finite nonzero value |x| = m 2^e
 * follows as e (int64), the count of 64-bit words of m (uint32) and m's
 * words, least significant first (m odd: no trailing zero bits).  A rank's
 * part of one sum is one such value, its exact sum; or, when that sum
 * would be too wide to hold (its terms' exponents over 2^22 bits apart,
 * LRP_REF_EXACT_MAX_PREC: a softmax weight of exp(-10^7) beside one), the
 * terms themselves: a byte 7, their count (uint32) and each term as a
 * value.  The receiver sums every value it gets for the cell, the terms
 * among them, and rounds once: the same exact sum either way, so a rank
 * never has to refuse a sum one process makes.
 *
 * Zeros: the sum of no terms is sent as -0, which adds nothing to any sum
 * (-0 + -0 = -0, -0 + +0 = +0): a rank without rows changes no bit, the
 * sign of an exact zero included.  A partial sum is -0 exactly when each
 * of its terms is -0, +0 when they cancel or hold a +0 (IEEE, as
 * mpfr_sum), so the sum of the partial sums is -0 exactly when each of all
 * the terms is, as the one-process sum.
 */
#include "ref_int.h"

#include <gmp.h>
#include <stdlib.h>

#define CX(c) ((ref_ctx *)(c))

int64_t lrp_ref_exact_prec(mpfr_ptr const *v, int64_t n)
{
    int64_t emax = 0, emin = 0;
    int any = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!mpfr_regular_p(v[i]))
            continue;
        int64_t e = mpfr_get_exp(v[i]), l = e - (int64_t)mpfr_get_prec(v[i]);
        if (!any || e > emax)
            emax = e;
        if (!any || l < emin)
            emin = l;
        any = 1;
    }
    if (!any)
        return MPFR_PREC_MIN;
    int64_t p = emax - emin + 66; /* n < 2^64 terms: 64 carries, and a margin */
    return p > LRP_REF_EXACT_MAX_PREC ? 0 : p;
}

/* x (exact, any precision) onto b; z scratch */
static int put_exact(lrp_bytes *b, mpfr_srcptr x, mpz_t z)
{
    unsigned char k;
    if (mpfr_nan_p(x))
        k = 4;
    else if (mpfr_inf_p(x))
        k = mpfr_sgn(x) > 0 ? 5 : 6;
    else if (mpfr_zero_p(x))
        k = mpfr_signbit(x) ? 1 : 0;
    else
        k = mpfr_sgn(x) > 0 ? 2 : 3;
    if (lrp_bytes_put(b, &k, 1))
        return -1;
    if (k != 2 && k != 3)
        return 0;
    int64_t e = mpfr_get_z_2exp(z, x);
    mpz_abs(z, z);
    mp_bitcnt_t tz = mpz_scan1(z, 0);
    mpz_fdiv_q_2exp(z, z, tz);
    e += (int64_t)tz;
    size_t words = (mpz_sizeinbase(z, 2) + 63) / 64, cnt = 0;
    uint32_t nw = (uint32_t)words;
    unsigned char *d = lrp_bytes_grow(b, sizeof e + sizeof nw + words * 8);
    if (!d)
        return -1;
    memcpy(d, &e, sizeof e);
    memcpy(d + sizeof e, &nw, sizeof nw);
    mpz_export(d + sizeof e + sizeof nw, &cnt, -1, 8, 0, 0, z);
    LRP_ASSERT(cnt == words);
    return 0;
}

/* the next value of [*p, end) into x (its precision set to hold it); z
 * scratch; -1: the bytes end early */
static int get_exact(const unsigned char **p, const unsigned char *end, mpfr_t x, mpz_t z)
{
    const unsigned char *q = *p;
    if (q >= end)
        return -1;
    unsigned char k = *q++;
    switch (k) {
    case 0:
    case 1:
        mpfr_set_prec(x, MPFR_PREC_MIN);
        mpfr_set_zero(x, k ? -1 : 1);
        break;
    case 4:
        mpfr_set_prec(x, MPFR_PREC_MIN);
        mpfr_set_nan(x);
        break;
    case 5:
    case 6:
        mpfr_set_prec(x, MPFR_PREC_MIN);
        mpfr_set_inf(x, k == 5 ? 1 : -1);
        break;
    case 2:
    case 3: {
        int64_t e;
        uint32_t nw;
        if ((size_t)(end - q) < sizeof e + sizeof nw)
            return -1;
        memcpy(&e, q, sizeof e);
        memcpy(&nw, q + sizeof e, sizeof nw);
        q += sizeof e + sizeof nw;
        if (nw == 0 || (size_t)(end - q) / 8 < nw)
            return -1;
        mpz_import(z, nw, -1, 8, 0, 0, q);
        q += (size_t)nw * 8;
        size_t bits = mpz_sizeinbase(z, 2);
        mpfr_set_prec(x, bits < MPFR_PREC_MIN ? MPFR_PREC_MIN : (mpfr_prec_t)bits);
        mpfr_set_z_2exp(x, z, (mpfr_exp_t)e, MPFR_RNDN); /* exact: prec >= bits */
        if (k == 3)
            mpfr_neg(x, x, MPFR_RNDN);
        break;
    }
    default: return -1;
    }
    *p = q;
    return 0;
}

/* this rank's part of one sum of the n values at v onto b: their exact
 * sum (s: its precision set), -0 for no values, or the values themselves
 * when their sum is too wide to hold */
static int put_sum(lrp_bytes *b, mpfr_ptr *v, int64_t n, mpfr_t s, mpz_t z)
{
    if (n == 0) {
        mpfr_set_prec(s, MPFR_PREC_MIN);
        mpfr_set_zero(s, -1);
        return put_exact(b, s, z);
    }
    int64_t prec = lrp_ref_exact_prec(v, n);
    if (!prec) {
        unsigned char k = 7;
        uint32_t c = (uint32_t)n;
        if (n > (int64_t)UINT32_MAX || lrp_bytes_put(b, &k, 1) || lrp_bytes_put(b, &c, sizeof c))
            return -1;
        for (int64_t i = 0; i < n; i++)
            if (put_exact(b, v[i], z))
                return -1;
        return 0;
    }
    mpfr_set_prec(s, (mpfr_prec_t)prec);
    mpfr_sum(s, v, (unsigned long)n, MPFR_RNDN); /* exact at this precision */
    return put_exact(b, s, z);
}

/* The values of one cell, as sum_exact reads them from the ranks */
typedef struct cell_vals {
    mpfr_t *v;
    mpfr_ptr *pp;
    int64_t n, cap;
} cell_vals;

static int cell_room(cell_vals *c, int64_t more)
{
    if (c->n + more <= c->cap)
        return 0;
    int64_t cap = c->cap ? c->cap : 8;
    while (cap < c->n + more)
        cap *= 2;
    mpfr_t *v = realloc(c->v, (size_t)cap * sizeof *v);
    if (!v)
        return -1;
    c->v = v;
    mpfr_ptr *pp = realloc(c->pp, (size_t)cap * sizeof *pp);
    if (!pp)
        return -1;
    c->pp = pp;
    for (int64_t i = c->cap; i < cap; i++)
        mpfr_init2(c->v[i], MPFR_PREC_MIN);
    c->cap = cap;
    return 0;
}

/* one rank's part of a cell from [*p, end) appended to c */
static int get_part(const unsigned char **p, const unsigned char *end, cell_vals *c, mpz_t z)
{
    uint32_t k = 1;
    if (*p < end && **p == 7) {
        if ((size_t)(end - *p) < 1 + sizeof k)
            return -1;
        memcpy(&k, *p + 1, sizeof k);
        *p += 1 + sizeof k;
    }
    if (cell_room(c, k))
        return -1;
    for (uint32_t i = 0; i < k; i++, c->n++)
        if (get_exact(p, end, c->v[c->n], z))
            return -1;
    return 0;
}

int lrp_ref_exact_put(lrp_bytes *b, mpfr_ptr *v, int64_t n)
{
    mpfr_t s;
    mpz_t z;
    mpfr_init2(s, MPFR_PREC_MIN);
    mpz_init(z);
    int rc = put_sum(b, v, n, s, z);
    mpz_clear(z);
    mpfr_clear(s);
    return rc;
}

struct lrp_ref_exact_acc {
    cell_vals cv;
    mpz_t z;
};

lrp_ref_exact_acc *lrp_ref_exact_acc_new(void)
{
    lrp_ref_exact_acc *a = calloc(1, sizeof *a);
    if (a)
        mpz_init(a->z);
    return a;
}

static void cell_vals_free(cell_vals *c)
{
    for (int64_t i = 0; i < c->cap; i++)
        mpfr_clear(c->v[i]);
    free(c->v);
    free(c->pp);
    memset(c, 0, sizeof *c);
}

void lrp_ref_exact_acc_free(lrp_ref_exact_acc *a)
{
    if (!a)
        return;
    cell_vals_free(&a->cv);
    mpz_clear(a->z);
    free(a);
}

int lrp_ref_exact_acc_read(lrp_ref_exact_acc *a, const unsigned char **p,
                           const unsigned char *end)
{
    int64_t n0 = a->cv.n;
    const unsigned char *p0 = *p;
    if (get_part(p, end, &a->cv, a->z)) { /* nothing of it kept */
        a->cv.n = n0;
        *p = p0;
        return -1;
    }
    return 0;
}

/* the values of c summed into o (the one rounding), -0 for none */
static void cell_sum(cell_vals *c, mpfr_ptr o)
{
    for (int64_t i = 0; i < c->n; i++)
        c->pp[i] = c->v[i];
    if (c->n)
        mpfr_sum(o, c->pp, (unsigned long)c->n, MPFR_RNDN);
    else
        mpfr_set_zero(o, -1); /* no rank: no terms */
    c->n = 0;
}

void lrp_ref_exact_acc_sum(lrp_ref_exact_acc *a, mpfr_ptr out)
{
    cell_sum(&a->cv, out);
}

typedef struct bx_job {
    ref_ctx *cx;
    mpfr_srcptr a, b;
    const lrp_bmm *G;
    int64_t rows, pieces;
    lrp_bytes *buf; /* one a piece */
    int *fail;      /* one a piece */
} bx_job;

/* pieces [lo, hi): piece k is rows [k rows / pieces, (k + 1) rows / pieces) */
static void bx_range(void *arg, int64_t lo, int64_t hi)
{
    bx_job *J = arg;
    const lrp_bmm *G = J->G;
    mpfr_prec_t q = 2 * J->cx->prec + 24;
    int64_t K = G->K;
    mpfr_ptr tmp = lrp_ref_tensor_new(q, K ? K : 1);
    mpfr_ptr *pp = malloc((size_t)(K ? K : 1) * sizeof *pp);
    mpfr_t cf, s;
    mpz_t z;
    LRP_ASSERT(tmp && pp);
    mpfr_init2(cf, 24);
    mpfr_init2(s, MPFR_PREC_MIN);
    mpz_init(z);
    mpfr_set_flt(cf, G->c, MPFR_RNDN);
    long e2;
    int pow2 = lrp_ref_bmm_pow2(G->c, &e2);
    for (int64_t k = lo; k < hi; k++) {
        int64_t r0 = k * J->rows / J->pieces, r1 = (k + 1) * J->rows / J->pieces;
        for (int64_t row = r0; row < r1 && !J->fail[k]; row++) {
            int64_t m = row % G->M, i2 = row / G->M % G->n2, i1 = row / G->M / G->n2;
            mpfr_srcptr a = J->a + i1 * G->a1 + i2 * G->a2 + m * G->am;
            mpfr_srcptr b = J->b + i1 * G->b1 + i2 * G->b2;
            for (int64_t n = 0; n < G->N; n++) {
                for (int64_t t = 0; t < K; t++) {
                    /* the products of lrp_ref_bmm, exact at 2p + 24 */
                    mpfr_mul(tmp + t, a + t * G->ak, b + t * G->bk + n * G->bn, MPFR_RNDN);
                    if (!pow2)
                        mpfr_mul(tmp + t, tmp + t, cf, MPFR_RNDN);
                    pp[t] = tmp + t;
                }
                if (put_sum(&J->buf[k], pp, K, s, z)) {
                    J->fail[k] = 1;
                    break;
                }
            }
        }
    }
    mpz_clear(z);
    mpfr_clears(cf, s, (mpfr_ptr)0);
    lrp_ref_tensor_free(tmp);
    free(pp);
}

int lrp_ref_bmm_exact(void *c, lrp_bytes *buf, const void *a, const void *b, const lrp_bmm *G)
{
    ref_ctx *cx = CX(c);
    int64_t rows = G->n1 * G->n2 * G->M;
    if (rows == 0 || G->N == 0)
        return 0;
    /* fixed pieces, whatever the threads: the bytes never depend on them */
    int64_t pieces = rows < 64 ? rows : 64;
    bx_job J = {cx, a, b, G, rows, pieces, calloc((size_t)pieces, sizeof(lrp_bytes)),
                calloc((size_t)pieces, sizeof(int))};
    int rc = J.buf && J.fail ? 0 : -1;
    if (!rc) {
        int64_t min = cx->par_min > 0 ? cx->par_min : LRP_REF_PAR_MIN;
        if (cx->threads > 1 && rows * G->N * (G->K ? G->K : 1) >= min)
            lrp_ref_par_for(cx->threads, pieces, bx_range, &J);
        else
            bx_range(&J, 0, pieces);
        for (int64_t k = 0; k < pieces && !rc; k++)
            rc = J.fail[k] || lrp_bytes_put(buf, J.buf[k].p, J.buf[k].n) ? -1 : 0;
    }
    for (int64_t k = 0; J.buf && k < pieces; k++)
        lrp_bytes_free(&J.buf[k]);
    free(J.buf);
    free(J.fail);
    return rc;
}

int lrp_ref_rowsum_exact(void *c, lrp_bytes *buf, const void *a, int64_t rows, int64_t cols)
{
    (void)c;
    mpfr_ptr *pp = malloc((size_t)(cols ? cols : 1) * sizeof *pp);
    mpfr_t s;
    mpz_t z;
    if (!pp)
        return -1;
    mpfr_init2(s, MPFR_PREC_MIN);
    mpz_init(z);
    int rc = 0;
    for (int64_t r = 0; r < rows && !rc; r++) {
        for (int64_t k = 0; k < cols; k++)
            pp[k] = (mpfr_ptr)a + r * cols + k;
        rc = put_sum(buf, pp, cols, s, z);
    }
    mpz_clear(z);
    mpfr_clear(s);
    free(pp);
    return rc;
}

int lrp_ref_sum_exact(void *c, void *out, const lrp_bmm *G, const unsigned char **src,
                      const unsigned char *const *end, int n)
{
    (void)c;
    cell_vals cv = {NULL, NULL, 0, 0};
    mpz_t z;
    mpz_init(z);
    long e2;
    int pow2 = lrp_ref_bmm_pow2(G->c, &e2), rc = 0;
    for (int64_t i1 = 0; i1 < G->n1 && !rc; i1++)
        for (int64_t i2 = 0; i2 < G->n2 && !rc; i2++)
            for (int64_t m = 0; m < G->M && !rc; m++)
                for (int64_t j = 0; j < G->N && !rc; j++) {
                    mpfr_ptr o = (mpfr_ptr)out + i1 * G->o1 + i2 * G->o2 + m * G->om + j * G->on;
                    cv.n = 0;
                    for (int k = 0; k < n && !rc; k++)
                        rc = get_part(&src[k], end[k], &cv, z);
                    if (rc)
                        break;
                    cell_sum(&cv, o); /* the one rounding */
                    if (pow2 && e2)
                        mpfr_mul_2si(o, o, e2, MPFR_RNDN);
                }
    cell_vals_free(&cv);
    mpz_clear(z);
    return rc;
}
