/*
 * tolerance.c -- THE tolerance table.  Each entry is a promise about the
 * float32 fast path (and what we accept from any float32 implementation):
 * change an entry only with a reason in the commit message; never generate
 * it from measured results (docs/ORACLE.md, "Tolerance table").
 *
 * pass_ratio 30: the BLAS/LAPACK test drivers accept ratios below 16..30 of
 *   the normalised error; our gauge is a first-order worst-case bound, so a
 *   correct float32 implementation sits far below 1 on random data.
 * fail_ratio 4096 = 1/sqrt(u): an error this many gauges large means half
 *   the float32 digits are gone: no summation order explains it.
 * ill_cond 2^-4: u * n_j * kappa_j above 1/16 means the float32 denominator
 *   may have lost all but ~4 bits, and its sign is not reliable well before
 *   that bound is reached (first-order analysis breaks down).
 * ill_agree 2^-12: an ill-conditioned cell whose float32 value still agrees
 *   with the reference to 12 bits (half of binary32's) is not reported as
 *   ill-conditioned: worst-case bounds are pessimistic, and a cell that
 *   agrees this well was determined after all.
 */
#include "oracle.h"

static const lrp_tolerance t_default = {30.0, 4096.0, 0x1p-4, 0x1p-12, 1.0, 0x1p-6};

/* Pass-through and winner-take-all layers add no error of their own, but
 * the relevance they hand on carries the propagated error of the layers
 * above, which the gauge bounds: they get the same promise.  (An earlier
 * tighter row for them judged propagated error against a local promise.) */
const lrp_tolerance *lrp_tolerance_for(lrp_rule_id r, lrp_layer_kind k)
{
    (void)r;
    (void)k;
    return &t_default;
}
