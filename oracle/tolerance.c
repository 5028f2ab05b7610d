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
 */
#include "oracle.h"

static const lrp_tolerance t_default = {30.0, 4096.0, 0x1p-4};
/* Winner-take-all and pass-through layers move values without arithmetic
 * (or with one product): any difference is a routing bug, so the promise
 * is tighter. */
static const lrp_tolerance t_exact = {2.0, 64.0, 0x1p-4};

const lrp_tolerance *lrp_tolerance_for(lrp_rule_id r, lrp_layer_kind k)
{
    (void)k;
    if (r == LRP_RULE_PASS || r == LRP_RULE_WTA)
        return &t_exact;
    return &t_default;
}
