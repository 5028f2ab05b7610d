/*
 * gauge_token.h -- the gauge's own error model of the token layers
 * (LayerNorm, RMSNorm, GELU, SiLU, Tanh; oracle/gauge_token.c), called by
 * oracle/gauge.c.  Independent of core/kind_token.c and of both backends,
 * like the rest of the gauge.  Bounds are in units of u = 2^-24.
 */
#ifndef LRP_GAUGE_TOKEN_H
#define LRP_GAUGE_TOKEN_H

#include <stdint.h>

#include "lrp.h"

/* Forward bounds of layer li's output (B samples): A (rigorous) and As
 * (sharp, <= A) from its input x (binary32 activations), its input's
 * bounds Ai, Asi, and its own output y.  Returns 0, or -1 out of memory. */
int lrp_gauge_token_fwd(const lrp_net *net, int li, int64_t B, const float *x, const float *y,
                        const double *Ai, const double *Asi, double *A, double *As);

/* One LayerNorm's backward step under ln_linear / ln_fine: what it adds
 * into its input's rows. */
typedef struct lrp_gtok_bwd {
    const float *x, *y, *R;  /* input and output activations, R at the output */
    const double *Ax;        /* forward bound of x */
    const double *Rb, *Rc;   /* bound and cond of R */
    const double *Rbs, *Rcs; /* sharp bound and cond of R, or NULL */
    double *Bi, *ci;         /* the input's bound and cond (added into / max) */
    uint8_t *fi;             /* the input's cell flags (or'ed) */
    double *Ls, *Ss, *cs;    /* sharp: linear part, magnitude, cond (or NULL) */
    double *tl;              /* sharp: the input total's linear part */
    double *ill_mass;        /* relevance of units whose cond exceeds 2^-4 */
    int den_traced;          /* y is what the subject divided by, as the
                                trace holds it: its error in s_k = R_k /
                                stab(y_k) is its storage rounding u |y_k|
                                (lrp_gauge_opts.recomputed_den 0) */
} lrp_gtok_bwd;
int lrp_gauge_token_bwd(const lrp_net *net, int li, int64_t B, const lrp_gtok_bwd *io);

#endif
