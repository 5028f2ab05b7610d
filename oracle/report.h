/*
 * report.h -- what one oracle run found, and its three renderings: an
 * aligned text table (colours only on a TTY), JSON, and JUnit XML (one
 * testcase per fixture x rule set x layer check).
 */
#ifndef LRP_REPORT_H
#define LRP_REPORT_H

#include <stdio.h>

#include "oracle.h"
#include "pipeline.h"

/* Absorbed relevance kinds: lrp_abs_kind of core/pipeline.h. */


typedef struct lrp_layer_report {
    int layer;                 /* index in the net */
    char name[LRP_NAME_MAX];
    lrp_layer_kind kind;
    char rule[160];            /* rule that produced this relevance (text) */
    int compared;              /* 0: no float32 values for this layer */
    lrp_layer_cmp e2e;         /* end to end (accumulated) */
    int has_local;
    lrp_layer_cmp local;       /* this layer alone, fed reference inputs */
    lrp_verdict verdict;       /* e2e verdict */
    lrp_verdict local_verdict;
    /* Trace-local judgement (every trace, ours or another library's): the
     * reference's own step of the layer(s) that computed this relevance,
     * fed the trace's relevance at their outputs and the trace's
     * activations (or the reference forward where the trace has none),
     * against the sharp bound of that one step. */
    int has_tlocal;
    lrp_layer_cmp tlocal;
    lrp_verdict tlocal_verdict;
    char by[160];              /* the layer(s) that computed this relevance */
    char why[320];             /* layer-level reasons (gross, total, strict) */
    double total_got, total_ref, total_budget; /* layer totals (local) */
    /* forward: this layer's activations in the trace against the
     * reference's step on the trace's own inputs (traces with activations) */
    int has_fwd;
    lrp_layer_cmp fwd;
    lrp_verdict fwd_verdict;
    /* conservation, relative to sum |R_out|: |sum R_in + absorbed - sum R_out| */
    int has_conservation;
    double cons_ref, cons_f32;
    double absorbed[LRP_ABS_COUNT]; /* reference, summed over units */
    double sum_in_ref, sum_out_ref;
    /* finiteness: min/max of both paths, NaN/inf counts of float32 */
    double ref_min, ref_max, f32_min, f32_max;
    int64_t f32_nan, f32_inf;
    char ref_flags[160];       /* reference numerical flags, text */
    char note[384];            /* e.g. BN identities, sign-of-zero findings */
    /* per-cell copies, only when lrp_check_opts.keep_cells asked for them
     * (heatmaps, HTML report); batch * numel(shape) each, else NULL */
    /* per input of the layer (Add / Concatenate branches, every layer):
     * the relevance it passes to each input, summed (reference; float32
     * of our fast path, NaN for an external trace) */
    int n_branch;
    int branch_in[LRP_MAX_INPUTS];      /* index of the input layer */
    double branch_ref[LRP_MAX_INPUTS], branch_f32[LRP_MAX_INPUTS];
    /* BatchNorm (not canonized): per channel, reference sums over batch
     * and positions: R_x + absorbed (shift or mean + beta, stabilizer) = R */
    int64_t bn_C;
    double *bn_in, *bn_abs, *bn_out;   /* bn_C each, or NULL */
    lrp_shape shape;           /* per-sample shape of this tensor */
    float *cell_ref;           /* reference rounded to binary32 */
    float *cell_got;           /* the trace's / fast path's value */
    float *cell_units;         /* signed (got - ref) / bound: in units of the
                                  oracle's bound (sharp tier where present) */
    uint8_t *cell_mark;        /* LRP_MARK_* */
} lrp_layer_report;

enum {
    LRP_MARK_NONFINITE = 1u << 0, /* got is NaN or inf */
    LRP_MARK_UNDEFINED = 1u << 1, /* the reference is undefined there */
    LRP_MARK_ILL = 1u << 2,       /* excused as ill-conditioned */
    LRP_MARK_UNRESOLVED = 1u << 3 /* the reference is unresolved at p */
};

typedef struct lrp_run_report {
    char fixture[256];         /* file path */
    char source[LRP_NAME_MAX]; /* trace judged: "fastpath" or external name */
    char ruleset[128];         /* composite or rule text */
    char convention[LRP_NAME_MAX];
    int precision;
    int batch;                 /* samples */
    int n_layers;
    lrp_layer_report *layers;
    lrp_verdict verdict;       /* worst e2e layer verdict */
    double max_ratio;          /* worst finite gauge ratio */
    double max_cons_f32;       /* worst float32 conservation residual */
    double max_cons_ref;
    int introduced_at;         /* layer whose LOCAL verdict is worst first, -1 */
    /* trace-local: the first tensor (backward order) whose relevance fails
     * locally, and its text (by which layer, why); the first layer (forward
     * order) whose trace activations fail */
    int origin_layer;
    char origin[512];
    /* convention identification (lrp_check_opts.identify): ran, the
     * convention the subject matches best, the decisive cells voting for
     * it and for the stated one, and the text of the finding */
    int ident_ran, ident_flagged;
    char ident_best[LRP_NAME_MAX];
    int64_t ident_votes_best, ident_votes_stated;
    char ident[384];
    int fwd_origin;
    lrp_verdict e2e_verdict;   /* worst end-to-end layer verdict */
    lrp_verdict tlocal_verdict;/* worst trace-local verdict (layer-level included) */
    int tlocal_exact_act;      /* 1: the trace's own activations were used */
    int tlocal_act_missing;    /* a trace with some activations but not all:
                                  the first layer it has none for (the
                                  reason the reference's were used); else -1 */
    int n_judged, n_unjudged;  /* tensors judged locally / not (no relevance) */
    int64_t tl_defined, tl_resolved; /* their defined cells, and of those the cells
                                        resolved by their bounds (lrp_layer_cmp) */
    char unjudged[256];        /* names of the first tensors not judged */
    double max_sharp_ratio;    /* worst end-to-end ratio to the sharp bound */
    double max_tlocal_ratio;   /* worst trace-local ratio to the sharp bound */
    double sum_input_ref;      /* sum of the reference input relevance */
    double sum_output_ref;     /* sum of the output relevance (the start) */
    double growth;             /* max over layers of max|R| / max|R_out| (reference) */
    int64_t neg_den;           /* alpha-beta/z+ positive-part denominators < 0 */
    int neg_den_layer;         /* first layer with one, -1 */
    /* first NaN/inf in the float32 trace, in backward order */
    int nf_layer;
    int64_t nf_index;
    char nf_cause[512];
    double seconds;            /* wall time of the run (set by the caller) */
    /* expectation (reproductions of buggy conventions) */
    int has_expect;
    lrp_verdict expect;        /* the documented outcome */
    int expected_ok;           /* verdict == expect */
} lrp_run_report;

void lrp_run_report_free(lrp_run_report *r);
/* 1 when the run is acceptable: verdict within tolerance (PASS or
 * ILL-CONDITIONED) or exactly the documented expected outcome. */
int lrp_run_ok(const lrp_run_report *r);

void lrp_report_text(FILE *f, const lrp_run_report *r, int color, int verbose);
/* The text report: rows named by the layer that computed each relevance;
 * within 100 columns (names shortened with '~', notes wrapped) unless wide,
 * which prints every column and whole names and adds Add/Concatenate
 * branch sums. */
typedef struct lrp_text_opts {
    int color, verbose, wide;
} lrp_text_opts;
void lrp_report_text_ex(FILE *f, const lrp_run_report *r, const lrp_text_opts *o);
/* The legend of every number of the text report (--explain). */
void lrp_report_legend(FILE *f);
/* A file that could not be judged (unreadable, malformed, no such trace):
 * reported as an error beside the runs of the good files. */
typedef struct lrp_file_error {
    char file[256];
    char message[LRP_ERR_MSG_MAX];
} lrp_file_error;

/* Writes all runs as JSON / JUnit XML atomically (temp file + rename). */
lrp_status lrp_report_json(const char *path, const lrp_run_report *runs, int n, lrp_err *err);
lrp_status lrp_report_junit(const char *path, const lrp_run_report *runs, int n, lrp_err *err);
/* The same with the files that could not be judged: JSON "errors", JUnit
 * one testsuite per file with an <error> testcase (errors="1"). */
lrp_status lrp_report_json_ex(const char *path, const lrp_run_report *runs, int n,
                              const lrp_file_error *errs, int n_errs, lrp_err *err);
lrp_status lrp_report_junit_ex(const char *path, const lrp_run_report *runs, int n,
                               const lrp_file_error *errs, int n_errs, lrp_err *err);

#endif
