/*
 * gauge_vit.h -- the gauge of the ViT patch-embedding kinds (ToTokens,
 * ClsToken; oracle/gauge_vit.c), called by oracle/gauge.c.
 */
#ifndef LRP_GAUGE_VIT_H
#define LRP_GAUGE_VIT_H

#include <stdint.h>

#include "lrp.h"

/* 1 when the gauge of kind k is here */
int lrp_gauge_vit_kind(lrp_layer_kind k);
/* The cell of li's (only) input, within one sample, that output cell i
 * (within one sample) copies; -1 for a cell that copies no input (the CLS
 * row: a binary32 constant, exact; its relevance absorbed). */
int64_t lrp_gauge_vit_src(const lrp_net *net, int li, int64_t i);

#endif
