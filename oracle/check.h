/*
 * check.h -- one oracle run: the reference (MPFR, self-proved), the subject
 * (our float32 fast path, or a trace stored in the fixture by another
 * implementation), the gauge, and the per-layer verdicts of report.h.
 */
#ifndef LRP_CHECK_H
#define LRP_CHECK_H

#include "pipeline.h"
#include "report.h"

/* Phases of lrp_check (the progress display's names).  They run in the
 * order proof, reference, local, subject, judge, identify, tlocal (the
 * ones a run has); the values index tables and do not follow it. */
typedef enum lrp_check_phase {
    LRP_PHASE_PROOF,     /* reference at p + proof_extra (relevance only) */
    LRP_PHASE_REFERENCE, /* reference at p with its audit data */
    LRP_PHASE_SUBJECT,   /* our float32 fast path (check only) */
    LRP_PHASE_JUDGE,     /* end-to-end gauge and per-layer verdicts */
    LRP_PHASE_LOCAL,     /* float32 layers on the reference's inputs (check) */
    LRP_PHASE_TLOCAL,    /* the reference's step on the subject's values */
    LRP_PHASE_IDENTIFY,  /* the reference under the other conventions */
    LRP_PHASE_COUNT
} lrp_check_phase;

/* The samples of one batch spread over several processes (ranks), each
 * running the MPFR work of a contiguous block of them (docs/SCALING.md
 * "MPI"); the oracle knows no MPI: the caller (tools/cli_mpi.c) supplies
 * the exchange.  Every rank calls lrp_check with the same net and options
 * and its own block; the root (the rank with the first block, which must
 * hold at least one sample) gathers each layer's rounded results in rank
 * order inside the runs' hooks and judges the whole batch, so its report
 * is the one of one process.  The other ranks' reports are empty. */
typedef struct lrp_check_split {
    int64_t first, count; /* this rank's block of the batch (count may be 0) */
    int root;             /* this rank judges (first == 0) */
    /* threads for what the root runs alone while the others wait (the
     * gauges, the float32 path, the verdicts; the same bits whatever the
     * number); 0: the options' */
    int root_threads;
    /* Collective, called by every rank the same number of times in the
     * same order: this rank's n bytes at buf are concatenated in rank
     * order into *all (malloc'ed, root only; NULL elsewhere) of *total
     * bytes.  fail non-NULL: this rank failed (fail is its error, without
     * the "lrp-oracle: " prefix; buf is ignored).  Returns 0, or nonzero
     * when a rank failed or the exchange itself did: then every rank has
     * seen it and no call follows. */
    int (*gather)(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                  size_t *total);
    void *ctx;
    /* The layer split instead (docs/SCALING.md "The layer split"): layer
     * non-zero, every rank holds the whole batch (first 0, count the
     * batch) and runs each MPFR run with lrp_pipe_run_split_hooked as rank
     * `rank` of `size`, holding its block of channels of every tensor;
     * exchange is the pipeline's all-gather (lrp_pipe_split.exchange, on
     * ctx too).  In each run's hook every rank packs what the verdicts
     * read of its block (rounded values, the per-cell binary64 terms of
     * the sums, classes; per check of the layer its numerical flags with
     * their first location; per sample the exact sums of its terms of the
     * conservation residual) and the root (rank 0) places the blocks
     * (per sample, the blocks of channels in rank order), recomputes what
     * is not per cell in the one-process order (minimum and maximum, the
     * flags' first occurrences, the residual from the exact partial sums)
     * and judges as one process.  A layer whose flags or residual cannot
     * be merged exactly stops the run with one line. */
    int layer, rank, size;
    int (*exchange)(void *ctx, const void *buf, size_t n, const char *fail, void **all,
                    size_t *total);
} lrp_check_split;

typedef struct lrp_check_opts {
    int prec;          /* reference precision p (bits), default 128 */
    int proof_extra;   /* self-proof at p + proof_extra; 0 disables */
    int threads;       /* both backends */
    const char *source;/* NULL: our fast path; else the name of a trace */
    int local;         /* also judge each float32 layer on reference inputs */
    const char *label; /* fixture name for the report */
    const char *ruleset; /* text for the report */
    /* The float32 engine judged when source is NULL: NULL means our fast
     * path; else any backend whose tensors are float arrays (a user's own
     * implementation of the vtable of core/pipeline.h, or a fault-injecting
     * wrapper in the tests).  Used for the end-to-end and the local runs. */
    const lrp_backend *subject;
    /* trace-local judgement (on by default); strict: a layer whose fraction
     * of ill-conditioned cells exceeds max_ill fails */
    int tlocal;
    int strict;
    double max_ill;
    /* Optional: called as each phase of the run starts (an lrp_check_phase
     * below; LRP_PHASE_COUNT when the run is over), with its place k of the
     * n phases this run has; the pipeline's per-layer progress
     * (core/pipeline.h) runs within them. */
    void (*phase)(void *ctx, int phase, int k, int n);
    void *phase_ctx;
    /* keep per-cell copies of the compared layers in the report (heatmaps,
     * HTML); 1: the input layer only, 2: every layer */
    int keep_cells;
    /* --keep FILE (oracle/keep.c): every judged layer's per-cell arrays
     * written to FILE as the layer is judged; NULL: nothing kept */
    struct lrp_keep *keep;
    /* Convention identification (docs/ORACLE.md): the reference is also
     * run under every other stabilizer convention, and a subject that
     * matches one of them cell by cell rather than its stated one is
     * SUSPECT.  -1 (default): on when the network is small enough
     * (LRP_IDENT_AUTO_MACS multiply-accumulates for the batch); 0 off; 1 on. */
    int identify;
    /* NULL (default): one process runs everything.  Else the sample split
     * above (keep, keep_cells and phase are the root's alone). */
    const lrp_check_split *split;
    /* The trace-local judgement with the trace's activations: 0 (default)
     * takes it that the subject divided by the outputs it stored (as
     * gradient-form implementations and our fast path do, and as the
     * reference's local run does); 1 allows each such denominator to have
     * been computed again in another order (lrp_gauge_opts.recomputed_den;
     * docs/ORACLE.md "Denominators") */
    int recomputed_den;
} lrp_check_opts;

#define LRP_IDENT_AUTO_MACS ((int64_t)20000000)

/* Keep files (oracle/keep.c, docs/FORMAT.md "Keep files"). */
typedef struct lrp_keep lrp_keep;
typedef enum lrp_keep_kind {
    LRP_KEEP_E2E = 0,   /* /end_to_end */
    LRP_KEEP_LOCAL,     /* /local */
    LRP_KEEP_LOCAL_FWD  /* /local_forward */
} lrp_keep_kind;
/* Opens FILE (a temporary beside it until the commit). */
lrp_status lrp_keep_open(lrp_keep **k, const char *path, lrp_err *err);
/* Writes one judged tensor; a failure is remembered and reported by the
 * commit (the run goes on). */
void lrp_keep_layer(lrp_keep *k, lrp_keep_kind kind, const lrp_net *net, int li,
                    const float *subject, const lrp_cell_ref *ref, lrp_verdict v);
/* Finishes and renames into place, or reports the first failure; frees k. */
lrp_status lrp_keep_commit(lrp_keep *k, const char *label, const char *source, lrp_err *err);
/* Discards the temporary file; frees k. */
void lrp_keep_abort(lrp_keep *k);


void lrp_check_opts_default(lrp_check_opts *o);

/* Runs the whole check on an inferred net whose layers carry the rules to
 * use (for an external source, the caller installs the trace's rules).
 * Fills rep (free with lrp_run_report_free).  Returns LRP_OK unless the run
 * itself failed (out of memory, missing trace): verdicts are in rep. */
lrp_status lrp_check(lrp_run_report *rep, lrp_net *net, const lrp_check_opts *o, lrp_err *err);

/* Per-layer min/max/NaN/inf/zero-denominator table of one pipeline run
 * (iNNvestigate's reverse_check_min_max_values), printed for both paths by
 * `lrp-oracle trace`. */
typedef struct lrp_minmax {
    double min, max;
    int64_t nan, inf, zero_den, n;
} lrp_minmax;
void lrp_pipe_minmax_f32(lrp_minmax *out, const lrp_pipe *p, int li);
void lrp_pipe_minmax_ref(lrp_minmax *out, const lrp_pipe *p, int li);

#endif
