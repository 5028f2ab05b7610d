/*
 * reference.c -- running the MPFR reference, condition numbers, binary32
 * range flags, the self-proof at higher precision, and trace output.
 *
 * Self-proof (docs/SPEC.md section 7): the whole net is recomputed at
 * p + proof_extra; a relevance value is *resolved* when both runs round to
 * the same binary32 (bitwise, so +0 and -0 differ).  A layer with
 * unresolved values gets the sticky flag unresolved_at_p with the count
 * and first location: the verdict is "raise p", never "blame float32".
 */
#include "reference.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

lrp_ref_opts lrp_ref_opts_default(void)
{
    lrp_ref_opts o;
    o.prec = 128;
    o.threads = 2;
    o.proof_extra = 0;
    o.slow = 0;
    o.lean = 0;
    o.par_min = 0;
    return o;
}

static lrp_status run_at(lrp_ref_result *r, const lrp_net *net, int prec, int threads,
                         int slow, int lean, int64_t par_min, lrp_err *err)
{
    lrp_ref_ctx_init(&r->ctx, prec, threads);
    r->ctx.slow = slow;
    r->ctx.par_min = par_min;
    lrp_ref_backend(&r->be, &r->ctx);
    return lrp_pipe_run_ex(&r->pipe, &r->be, net, lean ? LRP_PIPE_LEAN : 0, err);
}

/* binary32 range flags and kappa for one layer */
static lrp_status post_layer(lrp_ref_result *r, int li, lrp_err *err)
{
    lrp_pipe_layer *P = &r->pipe->L[li];
    lrp_ref_layer *R = &r->L[li];
    R->pipe = P;
    mpfr_srcptr rel = (mpfr_srcptr)P->rel;
    int64_t n = P->n * r->batch;
    for (int64_t i = 0; i < n; i++) {
        mpfr_srcptr v = rel + i;
        if (!mpfr_regular_p(v))
            continue;
        float f = mpfr_get_flt(v, MPFR_RNDN);
        if (isinf(f))
            lrp_nflags_raise(&P->flags, LRP_NF_OVERFLOW32, i / P->n, i % P->n);
        else if (fabsf(f) < FLT_MIN)
            lrp_nflags_raise(&P->flags, LRP_NF_UNDERFLOW32, i / P->n, i % P->n);
    }
    mpfr_t q;
    mpfr_init2(q, 64);
    for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++) {
        if (!P->gauge[k] || !P->den[k])
            continue;
        int64_t nu = P->n_units * r->batch;
        R->kappa[k] = malloc((size_t)nu * sizeof(double));
        if (!R->kappa[k]) {
            mpfr_clear(q);
            return lrp_err_set(err, LRP_E_NOMEM, "<network>: out of memory (kappa)");
        }
        mpfr_srcptr g = (mpfr_srcptr)P->gauge[k], d = (mpfr_srcptr)P->den[k];
        for (int64_t j = 0; j < nu; j++) {
            if (mpfr_zero_p(d + j)) {
                R->kappa[k][j] = mpfr_zero_p(g + j) ? 1.0 : INFINITY;
                continue;
            }
            mpfr_div(q, g + j, d + j, MPFR_RNDN);
            mpfr_abs(q, q, MPFR_RNDN);
            R->kappa[k][j] = mpfr_get_d(q, MPFR_RNDN);
        }
    }
    mpfr_clear(q);
    return LRP_OK;
}

lrp_status lrp_ref_run(lrp_ref_result **out, const lrp_net *net, const lrp_ref_opts *o,
                       lrp_err *err)
{
    *out = NULL;
    lrp_ref_opts d = lrp_ref_opts_default();
    if (!o)
        o = &d;
    if (o->prec < 2 || o->prec > 1 << 20 || o->threads < 1 || o->proof_extra < 0)
        return lrp_err_set(err, LRP_E_USAGE,
                           "<reference>: precision %d / threads %d / proof_extra %d out of range",
                           o->prec, o->threads, o->proof_extra);
    lrp_ref_result *r = calloc(1, sizeof *r);
    if (!r)
        return lrp_err_set(err, LRP_E_NOMEM, "<reference>: out of memory");
    r->prec = o->prec;
    r->threads = o->threads;
    r->n_layers = net->n_layers;
    r->batch = net->batch;
    lrp_status st = run_at(r, net, o->prec, o->threads, o->slow, o->lean, o->par_min, err);
    if (st) {
        free(r);
        return st;
    }
    r->fast_calls = r->ctx.fast_calls;
    r->slow_calls = r->ctx.slow_calls;
    r->vec_calls = r->ctx.vec_calls;
    r->L = calloc((size_t)net->n_layers, sizeof *r->L);
    if (!r->L) {
        lrp_ref_free(r);
        return lrp_err_set(err, LRP_E_NOMEM, "<reference>: out of memory");
    }
    for (int i = 0; i < net->n_layers; i++)
        if ((st = post_layer(r, i, err))) {
            lrp_ref_free(r);
            return st;
        }
    if (o->proof_extra > 0) {
        lrp_ref_result hi;
        memset(&hi, 0, sizeof hi);
        r->proof_prec = o->prec + o->proof_extra;
        if ((st = run_at(&hi, net, r->proof_prec, o->threads, o->slow, 1, o->par_min, err))) {
            lrp_ref_free(r);
            return st;
        }
        for (int i = 0; i < net->n_layers; i++) {
            lrp_pipe_layer *P = &r->pipe->L[i];
            lrp_ref_layer *R = &r->L[i];
            mpfr_srcptr a = (mpfr_srcptr)P->rel, b = (mpfr_srcptr)hi.pipe->L[i].rel;
            R->proved = 1;
            for (int64_t j = 0; j < P->n * r->batch; j++) {
                float fa = mpfr_get_flt(a + j, MPFR_RNDN), fb = mpfr_get_flt(b + j, MPFR_RNDN);
                if (memcmp(&fa, &fb, sizeof fa) != 0) {
                    if (R->unresolved++ == 0) {
                        R->unres_sample = j / P->n;
                        R->unres_unit = j % P->n;
                    }
                    lrp_nflags_raise(&P->flags, LRP_NF_UNRESOLVED, j / P->n, j % P->n);
                }
            }
        }
        lrp_pipe_free(hi.pipe);
    }
    *out = r;
    return LRP_OK;
}

void lrp_ref_free(lrp_ref_result *r)
{
    if (!r)
        return;
    if (r->L)
        for (int i = 0; i < r->n_layers; i++)
            for (int k = 0; k < LRP_PIPE_MAX_PARTS; k++)
                free(r->L[i].kappa[k]);
    free(r->L);
    lrp_pipe_free(r->pipe);
    free(r);
}

mpfr_srcptr lrp_ref_rel(const lrp_ref_result *r, int li)
{
    return (mpfr_srcptr)r->pipe->L[li].rel;
}

mpfr_srcptr lrp_ref_act(const lrp_ref_result *r, int li)
{
    return (mpfr_srcptr)r->pipe->L[li].act;
}

lrp_status lrp_ref_fill_trace(lrp_trace *t, const lrp_ref_result *r, lrp_err *err)
{
    if (!t || t->n_layers != r->n_layers || !t->relevance || !t->relevance_lo)
        return lrp_err_set(err, LRP_E_USAGE, "<reference>: trace not allocated for this net");
    t->precision = r->prec;
    mpfr_t d;
    mpfr_init2(d, r->prec + 64);
    for (int i = 0; i < r->n_layers; i++) {
        const lrp_pipe_layer *P = &r->pipe->L[i];
        int64_t n = P->n * r->batch;
        free(t->relevance[i]);
        free(t->relevance_lo[i]);
        t->relevance[i] = malloc((size_t)(n ? n : 1) * sizeof(float));
        t->relevance_lo[i] = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!t->relevance[i] || !t->relevance_lo[i]) {
            mpfr_clear(d);
            return lrp_err_set(err, LRP_E_NOMEM, "<reference>: out of memory (trace)");
        }
        mpfr_srcptr v = (mpfr_srcptr)P->rel;
        for (int64_t j = 0; j < n; j++) {
            float hi = mpfr_get_flt(v + j, MPFR_RNDN);
            float lo = 0.0f;
            if (isfinite(hi) && mpfr_number_p(v + j)) {
                mpfr_sub_d(d, v + j, (double)hi, MPFR_RNDN);
                lo = mpfr_get_flt(d, MPFR_RNDN);
            }
            t->relevance[i][j] = hi;
            t->relevance_lo[i][j] = lo;
        }
    }
    mpfr_clear(d);
    return LRP_OK;
}
