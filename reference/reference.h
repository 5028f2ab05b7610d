/*
 * reference.h -- the MPFR reference: LRP computed in real arithmetic rounded
 * to p bits (docs/SPEC.md; default p = 128) through the shared pipeline
 * (core/pipeline.h) with the MPFR backend (reference/ref_backend.c).
 *
 *   lrp_ref_result *r;
 *   lrp_ref_opts o = lrp_ref_opts_default();   // p = 128, 2 threads
 *   if (lrp_ref_run(&r, net, &o, &err)) ...     // rules: net->layers[i].rule
 *   r->L[i].pipe->rel  : mpfr_t array, relevance at layer i's output
 *   lrp_ref_fill_trace(trace, r, &err);         // binary32 hi + lo parts
 *   lrp_ref_free(r);
 *
 * What a layer keeps (lrp_pipe_layer, all MPFR tensors are mpfr_ptr arrays,
 * batch-major): act (forward), rel (relevance at the output), rin[k] (this
 * layer's relevance to input k), den[k] / gauge[k] / cls[k] per rule part,
 * abs[kind] absorbed relevance per output unit, cons_resid (max over
 * samples of |sum R_in + absorbed - sum R_out| / sum |.|, via mpfr_sum), and
 * sticky flags with first (sample, unit).  lrp_ref_layer adds the condition
 * numbers kappa_j = gauge_j / |den_j| per part and the self-proof verdict.
 */
#ifndef LRP_REFERENCE_H
#define LRP_REFERENCE_H

#include <mpfr.h>

#include "lrp.h"
#include "pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The MPFR backend of core/pipeline.h, for callers that drive the pipeline
 * themselves (the oracle, the CLI), as lrp_f32_backend is the float32 one:
 *
 *   lrp_ref_ctx cx;  lrp_backend be;
 *   lrp_ref_ctx_init(&cx, prec, threads);
 *   lrp_ref_backend(&be, &cx);
 *   lrp_pipe_run_ex(&p, &be, net, flags, &err);
 *
 * The context is a complete type so that it lives where the caller keeps
 * it (no allocation, nothing to free, like an mpfr_t); outside reference/
 * only lrp_ref_ctx_init writes it.  The reference's internals (kernels,
 * accumulators) are in reference/ref_int.h, for reference/ alone. */
typedef struct lrp_ref_ctx {
    mpfr_prec_t prec; /* p: every stored value has p bits */
    int threads;      /* >= 1; heavy loops split by output element */
    int slow;         /* 1: force the mpfr_mul + mpfr_sum exact kernels;
                         2: binary64-piece accumulator only (no digits);
                         3: the digit kernel without its vector form;
                         all bit-identical (lrp_ref_opts.slow) */
    int64_t fast_calls, slow_calls; /* which kernel ran (tests check) */
    int64_t vec_calls; /* calls that ran the vector digit kernel (ref_vec.c) */
    /* the element-wise and row-wise ops (norms, activations, softmax,
     * stabilizer, absorption, element-wise arithmetic) run on the threads
     * when they touch at least this many values; 0: LRP_REF_PAR_MIN.
     * Bit-identical whatever it is (tests set 1 to reach the threaded
     * path on small nets). */
    int64_t par_min;
    int64_t par_calls; /* such ops that ran on the threads (tests check) */
} lrp_ref_ctx;

/* A thread costs tens of microseconds to start and join, the work of
 * about a thousand MPFR operations: smaller ops stay on the caller. */
#define LRP_REF_PAR_MIN 8192

/* The precision at which the sum of the n values at v is exact (its bits
 * lie between the least significant bit of any term and the largest
 * exponent plus the carries), or 0 when that is over
 * LRP_REF_EXACT_MAX_PREC bits (the layer split's exact partial sums). */
#define LRP_REF_EXACT_MAX_PREC ((int64_t)1 << 22)
int64_t lrp_ref_exact_prec(mpfr_ptr const *v, int64_t n);

/* One rank's part of an exact sum in the bytes of reference/ref_exact.c:
 * the exact sum of the n values at v (-0 for none), or the values
 * themselves when that sum is too wide to hold.  -1: out of memory. */
int lrp_ref_exact_put(lrp_bytes *b, mpfr_ptr *v, int64_t n);
/* The values of one sum as the ranks' parts arrive (read), then rounded
 * once (sum): the same exact value, and so the same bits, as one mpfr_sum
 * of all the terms. */
typedef struct lrp_ref_exact_acc lrp_ref_exact_acc;
lrp_ref_exact_acc *lrp_ref_exact_acc_new(void); /* NULL: out of memory */
void lrp_ref_exact_acc_free(lrp_ref_exact_acc *a);
/* Appends the part at [*p, end) and moves *p past it; -1 (nothing
 * appended, *p unchanged) on bytes that end early or are damaged, or out
 * of memory. */
int lrp_ref_exact_acc_read(lrp_ref_exact_acc *a, const unsigned char **p,
                           const unsigned char *end);
/* out = the sum of every value read since the last sum, rounded to out's
 * precision (RNDN); -0 when none was read.  The accumulator is empty
 * afterwards. */
void lrp_ref_exact_acc_sum(lrp_ref_exact_acc *a, mpfr_ptr out);

/* p bits (>= MPFR_PREC_MIN), threads >= 1, kernel choice 0 (auto). */
void lrp_ref_ctx_init(lrp_ref_ctx *cx, int prec, int threads);
/* Fills the vtable; the context must outlive every use of it. */
void lrp_ref_backend(lrp_backend *be, lrp_ref_ctx *cx);

typedef struct lrp_ref_opts {
    int prec;        /* p in bits (>= 2; 24+ makes binary32 data exact) */
    int threads;     /* >= 1 */
    int proof_extra; /* > 0: recompute at p + proof_extra and compare the
                        binary32 roundings of every relevance value */
    int slow;        /* kernel choice for the linear maps, all bit-identical:
                        0 auto (48-bit-digit integer kernel where weights are
                        binary32, eight outputs of a stride-1 conv at a time
                        on a CPU with AVX-512 IFMA), 1 exact products +
                        mpfr_sum, 2 binary64 pieces + exponent bins, 3 the
                        digit kernel one output at a time (tests and
                        benchmarks) */
    int lean;        /* 1: LRP_PIPE_LEAN (no kappa / gauges, no rin kept) */
    int64_t par_min; /* lrp_ref_ctx.par_min (0: the default) */
} lrp_ref_opts;

/* p = 128, threads = 2, proof_extra = 0, slow = 0, lean = 0. */
lrp_ref_opts lrp_ref_opts_default(void);

typedef struct lrp_ref_layer {
    lrp_pipe_layer *pipe;         /* the pipeline's record of this layer */
    double *kappa[LRP_PIPE_MAX_PARTS]; /* batch*n_units, linear layers, else NULL;
                                     +inf where den_j == 0 */
    int proved;                   /* self-proof ran */
    int64_t unresolved;           /* relevance values whose binary32
                                     rounding differs at p and p+extra */
    int64_t unres_sample, unres_unit; /* first one */
} lrp_ref_layer;

typedef struct lrp_ref_result {
    int prec, threads, proof_prec;    /* proof_prec 0: no self-proof */
    int n_layers;
    int64_t batch;
    lrp_ref_ctx ctx;
    lrp_backend be;
    lrp_pipe *pipe;
    lrp_ref_layer *L;
    int64_t fast_calls, slow_calls;   /* kernels used (diagnostics) */
    int64_t vec_calls;                /* of the fast ones, with the vector kernel */
} lrp_ref_result;

/* Runs the reference on an inferred net with its per-layer rules. */
lrp_status lrp_ref_run(lrp_ref_result **out, const lrp_net *net, const lrp_ref_opts *o,
                       lrp_err *err);
void lrp_ref_free(lrp_ref_result *r);

/* Relevance at layer li's output (batch * numel values). */
mpfr_srcptr lrp_ref_rel(const lrp_ref_result *r, int li);
/* Forward activation of layer li. */
mpfr_srcptr lrp_ref_act(const lrp_ref_result *r, int li);

/* Fills trace t (allocated for the net, e.g. by lrp_net_trace_add) with
 * relevance rounded to nearest binary32 (relevance) and the binary32
 * rounding of the remainder value - hi (relevance_lo), precision p. */
lrp_status lrp_ref_fill_trace(lrp_trace *t, const lrp_ref_result *r, lrp_err *err);

#ifdef __cplusplus
}
#endif
#endif /* LRP_REFERENCE_H */
