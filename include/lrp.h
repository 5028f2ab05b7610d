/*
 * lrp.h -- public API of lrp-oracle.
 *
 * The network model: a DAG of layers, each producing one named tensor (the
 * tensor carries the layer's name).  Layers are stored in explicit execution
 * order; a layer's inputs are indices of earlier layers.
 *
 * Canonical layout (recorded in every fixture file): activations are NCHW,
 * per-sample shape (C, H, W) for spatial tensors or (F) for flat ones; a
 * Flatten of (C, H, W) yields index c*H*W + h*W + w (PyTorch's order).
 * Dense weight is (out, in); Conv2D weight is (out, in/groups, kH, kW).
 *
 * Three kinds of failure (docs/DESIGN.md): programmer errors abort (LRP_ASSERT),
 * recoverable errors return an lrp_status and fill an lrp_err with one line
 * "FILE: OBJECT: problem", numerical events are sticky flags in traces.
 */
#ifndef LRP_H
#define LRP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LRP_VERSION_STRING "0.1.0"
#define LRP_FORMAT_VERSION 1
/* The newest format version read and written: a file is written as
 * version 2 (with root attribute token_layout = "TF") only when one of its
 * layers' kinds needs it (docs/FORMAT.md); every other file stays version 1,
 * byte for byte. */
#define LRP_FORMAT_VERSION_MAX 2

/* ------------------------------------------------------------------ */
/* Status codes and the error record                                   */
/* ------------------------------------------------------------------ */

typedef enum lrp_status {
    LRP_OK = 0,
    LRP_E_USAGE,       /* bad command-line or API argument                */
    LRP_E_IO,          /* cannot open / read / write / rename              */
    LRP_E_FORMAT,      /* not HDF5, truncated, missing object, wrong type  */
    LRP_E_INVALID,     /* well-formed but invalid: shapes, cycle, params   */
    LRP_E_UNSUPPORTED, /* unknown layer kind, rule, convention, flag       */
    LRP_E_NOMEM,       /* allocation failed or size limit exceeded         */
    LRP_E_NUMERIC      /* a numerical failure that cannot be a flag        */
} lrp_status;

#define LRP_ERR_MSG_MAX 640

typedef struct lrp_err {
    lrp_status code;
    char msg[LRP_ERR_MSG_MAX]; /* one line, "FILE: OBJECT: problem" */
} lrp_err;

/* Sets err (if not NULL) and returns code.  printf-style message. */
lrp_status lrp_err_set(lrp_err *err, lrp_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* s made safe for a terminal, into buf (n bytes, truncated): control
 * characters (C0, DEL, and the C1 range U+0080..U+009F) and bytes that
 * are not well-formed UTF-8 are written as \xNN / \u00NN; returns buf. */
const char *lrp_str_esc(char *buf, size_t n, const char *s);
const char *lrp_status_name(lrp_status s);

/* Programmer errors: abort with file and line. Never used for bad input. */
void lrp_assert_fail(const char *expr, const char *file, int line);
#define LRP_ASSERT(e) ((e) ? (void)0 : lrp_assert_fail(#e, __FILE__, __LINE__))

/* ------------------------------------------------------------------ */
/* The layer list (one place; X-macro, as ggml's op table)             */
/* X(ENUM, "name in files", min_inputs, max_inputs)                    */
/* ------------------------------------------------------------------ */

#define LRP_MAX_INPUTS 16

#define LRP_LAYER_LIST(X)                         \
    X(INPUT, "Input", 0, 0)                       \
    X(DENSE, "Dense", 1, 1)                       \
    X(CONV2D, "Conv2D", 1, 1)                     \
    X(MAXPOOL2D, "MaxPool2D", 1, 1)               \
    X(AVGPOOL2D, "AvgPool2D", 1, 1)               \
    X(GLOBALAVGPOOL, "GlobalAvgPool", 1, 1)       \
    X(ADD, "Add", 2, LRP_MAX_INPUTS)              \
    X(CONCAT, "Concatenate", 2, LRP_MAX_INPUTS)   \
    X(BATCHNORM, "BatchNorm", 1, 1)               \
    X(RELU, "ReLU", 1, 1)                         \
    X(FLATTEN, "Flatten", 1, 1)                   \
    X(RESHAPE, "Reshape", 1, 1)                   \
    X(DROPOUT, "Dropout", 1, 1)                   \
    X(LAYERNORM, "LayerNorm", 1, 1)               \
    X(RMSNORM, "RMSNorm", 1, 1)                   \
    X(GELU, "GELU", 1, 1)                         \
    X(SILU, "SiLU", 1, 1)                         \
    X(TANH, "Tanh", 1, 1)                         \
    X(SOFTMAX, "Softmax", 1, 1)                   \
    X(MUL, "Mul", 2, 2)                           \
    X(MHA, "MultiHeadAttention", 1, 1)            \
    X(EMBEDDING, "Embedding", 1, 1)               \
    X(POSITION, "Position", 1, 1)                 \
    X(SELECTTOKEN, "SelectToken", 1, 1)           \
    X(TOTOKENS, "ToTokens", 1, 1)                 \
    X(CLSTOKEN, "ClsToken", 1, 1)                 \
    X(ATTNSCORES, "AttnScores", 2, 2)             \
    X(ATTNSOFTMAX, "AttnSoftmax", 1, 1)           \
    X(ATTNCONTEXT, "AttnContext", 2, 2)

typedef enum lrp_layer_kind {
#define X(e, s, mn, mx) LRP_LAYER_##e,
    LRP_LAYER_LIST(X)
#undef X
    LRP_LAYER_COUNT
} lrp_layer_kind;

const char *lrp_layer_kind_name(lrp_layer_kind k);
/* Returns 0 and sets *out, or -1 when the name is unknown. */
int lrp_layer_kind_parse(const char *name, lrp_layer_kind *out);
int lrp_layer_kind_min_inputs(lrp_layer_kind k);
int lrp_layer_kind_max_inputs(lrp_layer_kind k);

/* ------------------------------------------------------------------ */
/* Rules (docs/SPEC.md section 2 and 3)                                 */
/* X(ENUM, "name")                                                     */
/* ------------------------------------------------------------------ */

#define LRP_RULE_LIST(X)          \
    X(ZERO, "lrp0")               \
    X(EPSILON, "epsilon")         \
    X(GAMMA, "gamma")             \
    X(ALPHABETA, "alphabeta")     \
    X(ZPLUS, "zplus")             \
    X(WSQUARE, "wsquare")         \
    X(FLAT, "flat")               \
    X(ZBOX, "zbox")               \
    X(PASS, "pass")               \
    X(WTA, "wta")                 \
    X(LN_LINEAR, "ln_linear")     \
    X(LN_FINE, "ln_fine")         \
    X(IDENTITY, "identity")       \
    X(TAYLOR, "taylor")           \
    X(UNIFORM, "uniform")         \
    X(ATTNLRP, "attnlrp")         \
    X(CPLRP, "cplrp")

typedef enum lrp_rule_id {
#define X(e, s) LRP_RULE_##e,
    LRP_RULE_LIST(X)
#undef X
    LRP_RULE_COUNT
} lrp_rule_id;

const char *lrp_rule_name(lrp_rule_id r);
int lrp_rule_parse(const char *name, lrp_rule_id *out);

/* Stabilizer conventions (docs/SPEC.md section 5): stab(z) = z + s(z) eps. */
#define LRP_STAB_LIST(X)           \
    X(SIGN0_POS, "sign0_pos")      \
    X(SIGNBIT, "signbit")          \
    X(SIGN0_ZERO, "sign0_zero")    \
    X(ZERO_ONLY, "zero_only")      \
    X(SKIP_ZERO, "skip_zero")      \
    X(POSITIVE, "positive")

typedef enum lrp_stab_id {
#define X(e, s) LRP_STAB_##e,
    LRP_STAB_LIST(X)
#undef X
    LRP_STAB_COUNT
} lrp_stab_id;

const char *lrp_stab_name(lrp_stab_id s);
int lrp_stab_parse(const char *name, lrp_stab_id *out);

/* Rule variant and peer-quirk flags. X(ENUM, bit, "name") */
#define LRP_FLAG_LIST(X)                                                    \
    X(GAMMA_GENERALIZED, 0, "gamma_generalized") /* Zennit >= 0.5 a+/a- */ \
    X(ZENNIT_GAMMA_DROP0, 1, "zennit_gamma_drop0") /* R_j lost at z_j=0 */ \
    X(INNV_AB_FULLBIAS, 2, "innvestigate_ab_fullbias") /* b in both dens */ \
    X(CAPTUM_A1B0, 3, "captum_a1b0") /* clip weights only, full bias */    \
    X(WTA_SPLIT_TIES, 4, "wta_split_ties") /* maxpool ties split evenly */  \
    X(BN_CANONIZE, 5, "bn_canonize") /* fold BN into preceding layer */     \
    X(BN_FINE, 6, "bn_fine") /* report R_mu and R_beta separately */      \
    X(CAPTUM_GAMMA_FULLBIAS, 7, "captum_gamma_fullbias") /* gamma den: b */

enum {
#define X(e, bit, s) LRP_F_##e = 1u << (bit),
    LRP_FLAG_LIST(X)
#undef X
};
#define LRP_F_ALL_MASK 0xffu

const char *lrp_flag_name(unsigned single_flag);
int lrp_flag_parse(const char *name, unsigned *out_flag);

/* The rule assigned to one layer.  All parameters are binary32 values,
 * used bit-identically by both backends. */
typedef struct lrp_rule_spec {
    lrp_rule_id rule;
    lrp_stab_id stab;
    float eps;
    float gamma;
    float alpha, beta; /* alpha - beta == 1, both >= 0 */
    float low, high;   /* z^B scalar bounds (when the net has no arrays) */
    int bias;          /* 1: bias in the denominator; 0: bias ignored */
    unsigned flags;    /* LRP_F_* */
} lrp_rule_spec;

/* A rule spec with the defaults of the given rule (eps = 1e-6 as binary32,
 * gamma = 0.25, alpha = 1, beta = 0, low = 0, high = 1, bias on, sign0_pos). */
lrp_rule_spec lrp_rule_default(lrp_rule_id r);

/* ------------------------------------------------------------------ */
/* Shapes, layers, networks                                            */
/* ------------------------------------------------------------------ */

#define LRP_NAME_MAX 64
#define LRP_MAX_RANK 3
/* "Absurd size" limits applied by validation and the loader. */
#define LRP_MAX_DIM ((int64_t)1 << 24)
#define LRP_MAX_ELEMS ((int64_t)1 << 31)  /* per tensor, per sample */
#define LRP_MAX_LAYERS 4096
#define LRP_MAX_BATCH 4096

typedef struct lrp_shape {
    int rank;                   /* 1 (F), 2 (T, F): a token sequence
                                   (docs/TRANSFORMERS.md), or 3 (C, H, W) */
    int64_t d[LRP_MAX_RANK];
} lrp_shape;

int64_t lrp_shape_numel(const lrp_shape *s);
/* Writes e.g. "(64, 32, 32)" into buf. */
void lrp_shape_str(char *buf, size_t n, const lrp_shape *s);

typedef struct lrp_layer {
    char name[LRP_NAME_MAX];
    lrp_layer_kind kind;
    int n_in;
    int in[LRP_MAX_INPUTS];   /* indices of earlier layers in net->layers */
    lrp_shape shape;          /* output shape per sample (Input: given;
                                 otherwise inferred by lrp_net_infer) */

    /* Dense: units = out features.  Conv2D: units = out channels. */
    int64_t units;
    int kh, kw;               /* kernel (Conv2D, pools) */
    int sh, sw;               /* stride */
    int dh, dw;               /* dilation (Conv2D) */
    int pt, pb, pl, pr;       /* zero padding per side: top bottom left right */
    int groups;               /* Conv2D; depthwise: groups == in channels */
    int has_bias;             /* Dense, Conv2D */
    int count_include_pad;    /* AvgPool2D: padded cells count in the area */
    lrp_shape target;         /* Reshape */
    float bn_eps;             /* BatchNorm; LayerNorm, RMSNorm: their eps */
    int has_weight;           /* LayerNorm, RMSNorm: affine weight present */
    int approximate;          /* GELU: 0 erf ("none"), 1 "tanh" */
    /* attention kinds (docs/FORMAT.md, version 2): MultiHeadAttention
     * heads, scale c of S = c Q K^T, causal 0/1, mask_value (-inf or a
     * finite binary32 added to masked scores); Embedding vocab; Position
     * max_len; SelectToken index; Input: tokens 1 when it reads
     * /data/tokens (token ids held as exact binary32 integers);
     * ToTokens and ClsToken (the ViT patch embedding) have no attribute */
    int heads;
    float scale;
    int causal;
    int use_padding_mask; /* MultiHeadAttention: keys masked by /data/key_padding_mask */
    float mask_value;
    int64_t vocab, max_len, index;
    int tokens;

    /* Parameters (owned by the layer, malloc'ed). */
    float *w;                 /* Dense (units, in), Conv2D (units, C/g, kh, kw);
                                 LayerNorm, RMSNorm (F) when has_weight */
    float *b;                 /* (units) when has_bias; LayerNorm (F) */
    float *bn_gamma, *bn_beta, *bn_mean, *bn_var; /* (C) each */
    /* MultiHeadAttention: w = in_proj_weight (3F, F), b = in_proj_bias
     * (3F), w2 = out_proj_weight (F, F), b2 = out_proj_bias (F);
     * Embedding: w = weight (vocab, F); Position: w = table (max_len, F);
     * ClsToken: w = cls_token (F) */
    float *w2, *b2;

    lrp_rule_spec rule;       /* rule assignment */
} lrp_layer;

/* One source's relevance trace: relevance arriving at every layer's output
 * tensor (the Input layer's entry is the input relevance), batch-major. */
typedef struct lrp_trace {
    char source[LRP_NAME_MAX]; /* "reference", "fastpath", "zennit", ... */
    char producer[128];        /* free text: tool and version */
    char notes[256];
    char profile[LRP_NAME_MAX];   /* convention profile name or "" */
    char composite[LRP_NAME_MAX]; /* composite name or "" */
    int precision;             /* bits (reference); 24 for binary32 */
    int n_layers;              /* == net->n_layers */
    lrp_rule_spec *rules;      /* per layer: the assignment used */
    float **relevance;         /* per layer, batch*numel, NULL if absent */
    float **relevance_lo;      /* optional low parts: value = hi + lo */
    float **activation;        /* optional forward activations the trace's
                                  producer computed (the reference's rounded
                                  to binary32 in golden traces) */
} lrp_trace;

typedef struct lrp_net {
    int n_layers;
    int cap_layers;
    lrp_layer *layers;        /* execution order; output = last layer */
    int batch;                /* samples in data/input */
    float *input;             /* batch * numel(input shape) */
    float *r_out;             /* batch * numel(output), or NULL */
    int32_t *target;          /* batch class indices (used if r_out NULL) */
    float *zbox_low, *zbox_high; /* optional per-input bounds, numel(input) */
    float *key_padding_mask;  /* (batch, T) 0 / 1 (1: the key is masked), for the
                                 MultiHeadAttention layers with use_padding_mask;
                                 else NULL (docs/FORMAT.md, version 2) */
    uint64_t seed;            /* generator seed, 0 if not generated */
    char description[256];
    char composite[LRP_NAME_MAX]; /* name of composite that set rules, or "" */
    int n_traces;
    lrp_trace *traces;
} lrp_net;

/* Construction. */
lrp_net *lrp_net_new(void);
void lrp_net_free(lrp_net *net);
/* Appends a zeroed layer of the given kind and name, with default geometry
 * (strides/dilation 1, groups 1, rule default for the kind).  Returns its
 * index, or -1 (err set) on duplicate name / too many layers / no memory. */
int lrp_net_add(lrp_net *net, lrp_layer_kind kind, const char *name, lrp_err *err);
int lrp_net_find(const lrp_net *net, const char *name);

/* Shape inference and validation of the whole graph: input indices refer to
 * earlier layers, arity, geometry (no zero stride, groups divide channels,
 * sizes within limits), shape agreement (Add, Concatenate, Dense fan-in,
 * Reshape element count), rule validity for each layer, single sink.
 * `where` names the file for messages (may be NULL). */
lrp_status lrp_net_infer(lrp_net *net, const char *where, lrp_err *err);
/* The values a computation cannot judge anything on, checked once the
 * parameters and data are in: every parameter finite, BatchNorm variances
 * >= 0 with var + bn_eps > 0 (else the BatchNorm divides by zero or takes
 * the root of a negative number, the reference is NaN there and any trace
 * would "agree"), the given output relevance and z^B bounds finite.  The
 * first offender is named (file, layer, parameter, index, value). */
lrp_status lrp_net_check_values(const lrp_net *net, const char *where, lrp_err *err);

/* Expected parameter shapes, for loaders to check before allocating.
 * which: 0 weight, 1 bias, 2 gamma, 3 beta, 4 mean, 5 var. Returns 0 when
 * the layer has no such parameter.  Requires input shapes inferred. */
int lrp_layer_param_shape(const lrp_net *net, int li, int which, lrp_shape *out);
int64_t lrp_layer_param_count(const lrp_net *net, int li);
/* Multiply-accumulates of the forward pass per sample. */
int64_t lrp_layer_macs(const lrp_net *net, int li);
/* Validates one rule spec for a layer kind (alpha-beta, eps >= 0, ...). */
lrp_status lrp_rule_validate(const lrp_rule_spec *r, lrp_layer_kind k,
                             const char *where, const char *lname, lrp_err *err);
/* Rule for layers a composite does not touch (pass, wta, lrp0 for Add...). */
lrp_rule_spec lrp_rule_default_for(lrp_layer_kind k);

/* ------------------------------------------------------------------ */
/* Composites: named assignments of rules to layers                    */
/* ------------------------------------------------------------------ */

#define LRP_COMPOSITE_LIST(X)                                 \
    X(EPSILON_PLUS, "EpsilonPlus")                            \
    X(EPSILON_PLUS_FLAT, "EpsilonPlusFlat")                   \
    X(EPSILON_ALPHA2_BETA1, "EpsilonAlpha2Beta1")             \
    X(EPSILON_ALPHA2_BETA1_FLAT, "EpsilonAlpha2Beta1Flat")    \
    X(EPSILON_GAMMA_BOX, "EpsilonGammaBox")                   \
    X(SEQUENTIAL_PRESET_A, "SequentialPresetA")               \
    X(SEQUENTIAL_PRESET_B, "SequentialPresetB")               \
    X(ATTN_LRP, "AttnLRP")                                    \
    X(CP_LRP, "CPLRP")

typedef enum lrp_composite_id {
#define X(e, s) LRP_COMPOSITE_##e,
    LRP_COMPOSITE_LIST(X)
#undef X
    LRP_COMPOSITE_COUNT
} lrp_composite_id;

const char *lrp_composite_name(lrp_composite_id c);
int lrp_composite_parse(const char *name, lrp_composite_id *out);

/* Parameters a composite uses; lrp_composite_params_default fills peer-
 * neutral defaults (eps 1e-6, gamma 0.25, stab sign0_pos, box [0,1]). */
typedef struct lrp_composite_params {
    float eps;
    float gamma;
    float low, high;
    lrp_stab_id stab;
    int bias;
    unsigned flags;
} lrp_composite_params;
lrp_composite_params lrp_composite_params_default(void);

/* Assigns rules to every layer of an inferred net. */
void lrp_composite_apply(lrp_net *net, lrp_composite_id c,
                         const lrp_composite_params *p);
/* Assigns the same rule to every Dense/Conv2D layer, and the matching
 * treatment to Add/AvgPool/BatchNorm (epsilon -> epsilon, else lrp0). */
void lrp_rule_apply_all(lrp_net *net, const lrp_rule_spec *r);

/* ------------------------------------------------------------------ */
/* Verdicts of the oracle (docs/ORACLE.md)                             */
/* ------------------------------------------------------------------ */

/* Verdicts in increasing severity. X(ENUM, "name") */
#define LRP_VERDICT_LIST(X)                 \
    X(PASS, "PASS")                         \
    X(ILL_CONDITIONED, "ILL-CONDITIONED")   \
    X(UNRESOLVED, "UNRESOLVED")             \
    X(SUSPECT, "SUSPECT")                   \
    X(FAIL, "FAIL")                         \
    X(NONFINITE, "NONFINITE")

typedef enum lrp_verdict {
#define X(e, s) LRP_V_##e,
    LRP_VERDICT_LIST(X)
#undef X
    LRP_V_COUNT
} lrp_verdict;

const char *lrp_verdict_name(lrp_verdict v);
/* Parses a verdict name (case-insensitive); 0 or -1 if unknown. */
int lrp_verdict_parse(const char *name, lrp_verdict *out);

/* ------------------------------------------------------------------ */
/* Fixture files (HDF5, docs/FORMAT.md)                                */
/* ------------------------------------------------------------------ */

/* Reads a fixture (network, parameters, data, rules, all traces).
 * Validates before allocating; on failure returns NULL-net and sets err
 * with "PATH: OBJECT: problem".  HDF5's error printer stays silent. */
lrp_status lrp_fixture_read(lrp_net **out, const char *path, lrp_err *err);

/* Writes the whole net (and its traces) to path atomically (temp file in
 * the same directory, then rename).  Output is byte-reproducible. */
lrp_status lrp_fixture_write(const lrp_net *net, const char *path, lrp_err *err);
/* A trace file (docs/FORMAT.md "Trace files"): instead of a whole fixture,
 * only trace `source` of net, with a reference to the fixture file it
 * belongs to (path as stored: relative to the trace file's directory, or
 * absolute) and that file's size and digest (lrp_file_digest).  Reading a
 * trace file (lrp_fixture_read) gives the fixture with the trace added. */
typedef struct lrp_trace_ref {
    const char *fixture;
    int64_t size;
    uint64_t digest;
    const char *source;
} lrp_trace_ref;
lrp_status lrp_fixture_write_ex(const lrp_net *net, const char *path, const lrp_trace_ref *tref,
                                lrp_err *err);
lrp_status lrp_file_digest(uint64_t *digest, int64_t *size, const char *path, lrp_err *err);

/* Trace helpers. */
lrp_trace *lrp_net_trace_add(lrp_net *net, const char *source, lrp_err *err);
int lrp_net_trace_find(const lrp_net *net, const char *source);
void lrp_trace_clear(lrp_trace *t);

/* ------------------------------------------------------------------ */
/* Running LRP and judging a trace (oracle/api.c)                      */
/*                                                                    */
/*   lrp_net *net; lrp_err e;                                          */
/*   lrp_fixture_read(&net, "cnn.h5", &e);          load               */
/*   lrp_composite_apply(net, LRP_COMPOSITE_EPSILON_PLUS, &params);    */
/*   lrp_run(net, LRP_ENGINE_REFERENCE, NULL, &e);  trace "reference"  */
/*   lrp_run(net, LRP_ENGINE_FAST, NULL, &e);       trace "fastpath"   */
/*   lrp_judgement *j; lrp_judge(&j, net, "fastpath", NULL, &e);       */
/*   lrp_judgement_verdict(j), lrp_judgement_layer_verdict(j, i), ...  */
/*   lrp_judgement_free(j); lrp_net_free(net);                         */
/*                                                                    */
/* A complete program: docs/example.c.  Every function returns LRP_OK  */
/* or fills err with one line "FILE: OBJECT: problem"; none aborts on  */
/* bad input.                                                          */
/* ------------------------------------------------------------------ */

typedef enum lrp_engine {
    LRP_ENGINE_REFERENCE = 0, /* MPFR at opts->prec bits (default 128) */
    LRP_ENGINE_FAST = 1       /* the float32 fast path */
} lrp_engine;

typedef struct lrp_run_opts {
    int prec;    /* reference precision in bits, up to 2^20; 0: 128 */
    int threads; /* 0: 2 */
} lrp_run_opts;

/* Runs LRP on every sample of net under the rules its layers carry (set
 * them with lrp_composite_apply / lrp_rule_apply_all, or keep the
 * fixture's) and stores the relevance at every layer's output, and the
 * forward activations, as a trace of net named "reference" or "fastpath"
 * (replacing one of that name).  The relevance of the input is
 * trace->relevance[0], batch-major, numel(net->layers[0].shape) per
 * sample; the reference trace also holds the binary32 low parts
 * (relevance_lo: value = hi + lo).  opts may be NULL.  *out (may be
 * NULL) points into net->traces and is valid until the next trace is
 * added.  Numerical events (NaN, zero denominators) are not errors: they
 * are in the values, and lrp_judge explains them. */
lrp_status lrp_run(lrp_trace **out, lrp_net *net, lrp_engine engine, const lrp_run_opts *opts,
                   lrp_err *err);

/* The verdict of a judged trace: what the oracle found, layer by layer. */
typedef struct lrp_judgement lrp_judgement;

typedef struct lrp_judge_opts {
    int prec;        /* reference precision; 0: 128 */
    int threads;     /* 0: 2 */
    int no_proof;    /* 1: skip the reference's self-proof at prec + 64 */
    int strict;      /* 1: a layer with more than max_ill ill-conditioned
                        cells fails */
    double max_ill;  /* 0: 0.01 */
    int identify;    /* which rules computed the trace (lrp-oracle --identify):
                        0: automatic (on up to 2e7 multiply-accumulates a
                        batch), 1: on, -1: off */
    int recomputed_den; /* 1: the subject may have divided by its layer
                        outputs computed again, not by the stored ones
                        (lrp-oracle --recomputed-denominators) */
} lrp_judge_opts;

/* Judges trace `source` of net against the MPFR reference computed under
 * the trace's own rule assignment (lrp-oracle compare); source NULL runs
 * and judges the float32 fast path (lrp-oracle check).  opts may be NULL.
 * The net is left as it was (its rules are swapped for the trace's during
 * the call and restored: do not judge the same net from two threads at
 * once).  Free *out with lrp_judgement_free. */
lrp_status lrp_judge(lrp_judgement **out, const lrp_net *net, const char *source,
                     const lrp_judge_opts *opts, lrp_err *err);
void lrp_judgement_free(lrp_judgement *j);

/* The overall verdict (worst of end-to-end and trace-local), and 1 when it
 * is within tolerance (PASS or ILL-CONDITIONED). */
lrp_verdict lrp_judgement_verdict(const lrp_judgement *j);
int lrp_judgement_ok(const lrp_judgement *j);
/* Largest error over all layers in units of the sharp float32 bound. */
double lrp_judgement_max_ratio(const lrp_judgement *j);
/* Per tensor (index i of net->layers: the relevance at that layer's
 * output): its name, end-to-end verdict (LRP_V_PASS when the trace has no
 * values there: see lrp_judgement_layer_judged), largest ratio to the
 * sharp bound, and the name of the layer whose backward step computed it. */
int lrp_judgement_n_layers(const lrp_judgement *j);
const char *lrp_judgement_layer_name(const lrp_judgement *j, int i);
int lrp_judgement_layer_judged(const lrp_judgement *j, int i);
lrp_verdict lrp_judgement_layer_verdict(const lrp_judgement *j, int i);
double lrp_judgement_layer_ratio(const lrp_judgement *j, int i);
const char *lrp_judgement_layer_by(const lrp_judgement *j, int i);
/* Where a discrepancy was introduced (the first tensor, in backward order,
 * whose relevance fails the trace-local check, and why); "" when none. */
const char *lrp_judgement_origin(const lrp_judgement *j);
/* The first NaN/inf of the judged trace in backward order: returns 1 and
 * sets *layer, *cell (batch-major index into that tensor) and *cause (the
 * layer, unit and reason that produced it; may be NULL args), or 0. */
int lrp_judgement_first_nonfinite(const lrp_judgement *j, int *layer, int64_t *cell,
                                  const char **cause);
/* Rule identification (lrp_judge_opts.identify): -1 when it did not run,
 * 0 when the trace sits on the stated rules, 1 when it sits on another
 * convention or variant (the judgement is then SUSPECT or worse).  *closest
 * (may be NULL) names the closest alternative ("convention 'zero_only'",
 * ...; "" when none told apart), *text (may be NULL) the report's line. */
int lrp_judgement_identified(const lrp_judgement *j, const char **closest, const char **text);
/* Writes the judgement as the JSON report of lrp-oracle check --json. */
lrp_status lrp_judgement_write_json(const lrp_judgement *j, const char *path, lrp_err *err);

#ifdef __cplusplus
}
#endif
#endif /* LRP_H */
