/*
 * heatmap.h -- pictures of one oracle run (lrp-oracle heatmap, --html):
 * per sample and tensor, the reference relevance, the judged trace's, and
 * the signed error in units of the oracle's bound, in a diverging colormap
 * symmetric around zero, with NaN/inf, undefined, ill-conditioned and
 * unresolved cells marked.  Encoded as PNG with libpng.
 */
#ifndef LRP_HEATMAP_H
#define LRP_HEATMAP_H

#include <stddef.h>

#include "report.h"

/* Renders tensor `layer` of sample `sample` of run r (whose layer report
 * holds per-cell copies: lrp_check_opts.keep_cells) as a PNG in a
 * malloc'ed buffer.  Returns LRP_OK, LRP_E_USAGE when the layer has no
 * cells kept, or LRP_E_NOMEM. */
lrp_status lrp_heatmap_png(unsigned char **png, size_t *len, const lrp_run_report *r, int layer,
                           int sample, lrp_err *err);

/* Counts of marked cells of one sample of one tensor (LRP_MARK_* bits). */
void lrp_heatmap_marks(long long counts[4], const lrp_run_report *r, int layer, int sample);

#endif
