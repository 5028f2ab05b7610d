/*
 * graph_int.h -- internal graph functions shared by core/ and fixtures/.
 */
#ifndef LRP_GRAPH_INT_H
#define LRP_GRAPH_INT_H

#include "lrp.h"

/* Infers and validates the output shape of layer li alone (its inputs must
 * already be inferred).  lrp_net_infer runs this over the whole graph. */
lrp_status lrp_layer_infer(lrp_net *net, int li, const char *where, lrp_err *err);

#endif
