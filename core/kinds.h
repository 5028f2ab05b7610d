/*
 * kinds.h -- layer kinds as data: one record per kind of LRP_LAYER_LIST
 * (include/lrp.h, which holds the name and the arity).
 *
 * A record says what the rest of the code needs to know about a kind: its
 * role under composites, its default and admissible rules, the attributes
 * and parameters of its group in a fixture file (one schema, read by
 * h5io.c's reader and writer alike), its shape inference, its MAC count,
 * the line `lrp-oracle info` prints for it, its forward and LRP steps.  The records live one file
 * per family (core/kind_linear.c, kind_pool.c, kind_norm.c, kind_shape.c,
 * kind_token.c, kind_attn.c, kind_vit.c);
 * core/kinds.c builds the table from LRP_LAYER_LIST, so a kind of the list
 * without a record `lrp_kind_<ENUM>` does not link.
 *
 * A record also holds the kind's forward and LRP steps over the backend
 * vtable (core/pipeline_int.h); core/pipeline.c runs them over the graph
 * and keeps the bookkeeping common to all kinds.  The gauge
 * (oracle/gauge.c) keeps its own code per kind on purpose (an independent
 * error model), as tests/naive does.
 */
#ifndef LRP_KINDS_H
#define LRP_KINDS_H

#include <stddef.h>
#include <stdint.h>

#include "lrp.h"

/* The parameter datasets a layer group may hold, in the `which` order of
 * lrp_layer_param_shape. X(ENUM, "dataset name", lrp_layer field) */
#define LRP_PARAM_LIST(X)          \
    X(WEIGHT, "weight", w)         \
    X(BIAS, "bias", b)             \
    X(GAMMA, "gamma", bn_gamma)    \
    X(BETA, "beta", bn_beta)       \
    X(MEAN, "mean", bn_mean)       \
    X(VAR, "var", bn_var)                              \
    X(IN_PROJ_WEIGHT, "in_proj_weight", w)             \
    X(IN_PROJ_BIAS, "in_proj_bias", b)                 \
    X(OUT_PROJ_WEIGHT, "out_proj_weight", w2)          \
    X(OUT_PROJ_BIAS, "out_proj_bias", b2)              \
    X(TABLE, "table", w)                               \
    X(CLS_TOKEN, "cls_token", w)

enum {
#define X(e, s, f) LRP_P_##e,
    LRP_PARAM_LIST(X)
#undef X
    LRP_P_COUNT
};

extern const char *const lrp_param_names[LRP_P_COUNT];
/* &l->w, &l->b, ... for parameter `which` */
float **lrp_layer_param_slot(lrp_layer *l, int which);
const float *lrp_layer_param(const lrp_layer *l, int which);

/* One attribute of a layer group (docs/FORMAT.md "Layers"): its name, how
 * it is stored and which fields of lrp_layer it fills (offsets).  The
 * writer writes them in this order; the reader reads them in this order
 * (so the first missing one is the one named). */
typedef enum lrp_attr_type {
    LRP_A_SHAPE, /* int64 vector of 1..LRP_MAX_RANK dims in [1, LRP_MAX_DIM]: lrp_shape */
    LRP_A_I64,   /* int64 scalar (range checked by inference): int64_t */
    LRP_A_BOOL,  /* int32 scalar, 0 or 1: int */
    LRP_A_I32,   /* int32 scalar: int */
    LRP_A_I32V,  /* int32 vector of n values: n ints */
    LRP_A_F32,   /* binary32 scalar: float */
    LRP_A_ENUM   /* string, one of lrp_attr_enums[n]: its index as int */
} lrp_attr_type;

typedef struct lrp_kind_attr {
    const char *name;
    uint8_t type; /* lrp_attr_type */
    uint8_t n;    /* LRP_A_I32V: values; else 1 */
    uint16_t off[4];
} lrp_kind_attr;

/* LRP_A_ENUM attributes: n is the index of their list of values
 * (NULL-terminated) in lrp_attr_enums (core/kinds.c). */
enum { LRP_ENUM_GELU_APPROXIMATE };
extern const char *const *const lrp_attr_enums[];

#define LRP_KA(name, type, field) {name, type, 1, {offsetof(lrp_layer, field)}}

struct lrp_pipe_state; /* core/pipeline_int.h */

/* What composites and uniform rules do with a kind (graph.c). */
typedef enum lrp_kind_role {
    LRP_ROLE_PASS,   /* relevance crosses unchanged (rule pass)               */
    LRP_ROLE_LINEAR, /* the composite's rules (Dense, Conv2D)                 */
    LRP_ROLE_NORM,   /* the stabilized proportional split (Zennit's Norm):
                        lrp0, or epsilon with the composite's eps              */
    LRP_ROLE_MAX,    /* winner-take-all                                       */
    LRP_ROLE_OWN     /* its own rule: the token layers keep a file's choice
                        (a composite sets only its eps and stabilizer, for
                        the rules that divide: LayerNorm's ln_linear); the
                        attention kinds get their kind's default (Softmax
                        taylor, Mul uniform, ...), composites naming them
                        set it                                              */
} lrp_kind_role;

typedef struct lrp_kind_desc {
    lrp_layer_kind kind; /* its own index in the table (tests check) */
    const char *family;  /* "linear", "pool", "norm", "shape" */
    lrp_kind_role role;
    lrp_rule_id default_rule; /* lrp_rule_default_for */
    unsigned rules;           /* admissible rules: 1u << lrp_rule_id */
    /* the file schema: attributes; the parameters are param_shape's */
    const lrp_kind_attr *attrs;
    int n_attrs;
    /* Expected shape of parameter `which` (LRP_P_*), 0 when the layer has
     * none; NULL: no parameters.  Requires the input shapes inferred. */
    int (*param_shape)(const lrp_net *net, int li, int which, lrp_shape *out);
    /* the weight's stored rank is 4: (units, C/g, kh, kw) (Conv2D) */
    int weight_rank4;
    /* the bias may be absent (has_bias 0): a 'bias' dataset then is an error */
    int bias_optional;
    /* per parameter: the dimension whose extent comes from the first
     * input's shape (named in the reader's messages), -1 none */
    int8_t param_in_dim[LRP_P_COUNT];
    /* Output shape of layer li from its inputs' (already inferred), after
     * checking its geometry; f names the file for messages. */
    lrp_status (*infer)(lrp_net *net, int li, const char *f, lrp_err *err, lrp_shape *out);
    /* Multiply-accumulates per sample; NULL: 0. */
    int64_t (*macs)(const lrp_net *net, int li);
    /* The geometry `lrp-oracle info` prints ("" when none); NULL: none. */
    void (*geometry)(char *buf, size_t n, const lrp_layer *l);
    /* The forward step over the backend (core/pipeline_int.h): the layer's
     * activations P->act (allocated, batch * numel) from its inputs', and
     * what the LRP step keeps of the forward (parameters as tensors). */
    lrp_status (*forward)(struct lrp_pipe_state *r, int li);
    /* The LRP step: relevance R at the output to P->rin[k] at each input,
     * with the bookkeeping (parts, classes, absorbed relevance, flags);
     * NULL: the kind only ever passes relevance through. */
    lrp_status (*lrp_step)(struct lrp_pipe_state *r, int li, const void *R);
    /* 1: relevance crosses this layer unchanged (rin[0] is R itself, no
     * copy); NULL: never. */
    int (*through)(const lrp_layer *l);
    int format_version; /* 2: the kind needs format_version 2 (docs/FORMAT.md) */
} lrp_kind_desc;

#define LRP_RULE_BIT(r) (1u << LRP_RULE_##r)

#define X(e, s, mn, mx) extern const lrp_kind_desc lrp_kind_##e;
LRP_LAYER_LIST(X)
#undef X

/* T of the MultiHeadAttention and AttnSoftmax layers with use_padding_mask (the second
 * extent of /data/key_padding_mask), 0 when none, -1 when they differ. */
int64_t lrp_padding_T(const lrp_net *net);

/* The record of kind k (k < LRP_LAYER_COUNT). */
const lrp_kind_desc *lrp_kind(lrp_layer_kind k);

/* Helpers of the inference functions (core/kinds.c). */
int lrp_shape_ok(const lrp_shape *s);
/* Output extent of a window op along one axis, or -1 if empty/invalid. */
int64_t lrp_window_out(int64_t in, int pad0, int pad1, int k, int dil, int stride);
lrp_status lrp_check_window(const lrp_layer *l, const char *f, lrp_err *err, int dilated);

#endif
