/*
 * kinds.c -- the table of layer-kind records (core/kinds.h), built from
 * LRP_LAYER_LIST: a kind of the list without its record lrp_kind_<ENUM>
 * (in its family's file) is an undefined symbol, so the library does not
 * link.  Also the parameter names and the geometry helpers the families'
 * shape inference shares.
 */
#include "kinds.h"

#include <stdio.h>

static const lrp_kind_desc *const kind_tab[] = {
#define X(e, s, mn, mx) [LRP_LAYER_##e] = &lrp_kind_##e,
    LRP_LAYER_LIST(X)
#undef X
};
_Static_assert(sizeof kind_tab / sizeof kind_tab[0] == LRP_LAYER_COUNT, "kind records");

const lrp_kind_desc *lrp_kind(lrp_layer_kind k)
{
    LRP_ASSERT((unsigned)k < LRP_LAYER_COUNT);
    return kind_tab[k];
}

static const char *const gelu_approximate[] = {"none", "tanh", NULL};
const char *const *const lrp_attr_enums[] = {
    [LRP_ENUM_GELU_APPROXIMATE] = gelu_approximate,
};

const char *const lrp_param_names[LRP_P_COUNT] = {
#define X(e, s, f) [LRP_P_##e] = s,
    LRP_PARAM_LIST(X)
#undef X
};

float **lrp_layer_param_slot(lrp_layer *l, int which)
{
    switch (which) {
#define X(e, s, f) \
    case LRP_P_##e: return &l->f;
        LRP_PARAM_LIST(X)
#undef X
    }
    LRP_ASSERT(0);
    return NULL;
}

const float *lrp_layer_param(const lrp_layer *l, int which)
{
    return *lrp_layer_param_slot((lrp_layer *)l, which);
}

/* Checks rank and dims within limits; product within LRP_MAX_ELEMS. */
int lrp_shape_ok(const lrp_shape *s)
{
    if (s->rank < 1 || s->rank > LRP_MAX_RANK)
        return 0;
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        if (s->d[i] < 1 || s->d[i] > LRP_MAX_DIM)
            return 0;
        n *= s->d[i];
        if (n > LRP_MAX_ELEMS)
            return 0;
    }
    return 1;
}

int64_t lrp_window_out(int64_t in, int pad0, int pad1, int k, int dil, int stride)
{
    int64_t span = (int64_t)dil * (k - 1) + 1;
    int64_t padded = in + pad0 + pad1;
    if (padded < span)
        return -1;
    return (padded - span) / stride + 1;
}

lrp_status lrp_check_window(const lrp_layer *l, const char *f, lrp_err *err, int dilated)
{
    if (l->kh < 1 || l->kw < 1 || l->kh > 4096 || l->kw > 4096)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': kernel %dx%d out of range [1, 4096]",
                           f, l->name, l->kh, l->kw);
    if (l->sh < 1 || l->sw < 1 || l->sh > 4096 || l->sw > 4096)
        return lrp_err_set(err, LRP_E_INVALID, "%s: layer '%s': stride %dx%d out of range [1, 4096]",
                           f, l->name, l->sh, l->sw);
    if (dilated && (l->dh < 1 || l->dw < 1 || l->dh > 4096 || l->dw > 4096))
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': dilation %dx%d out of range [1, 4096]", f, l->name,
                           l->dh, l->dw);
    if (l->pt < 0 || l->pb < 0 || l->pl < 0 || l->pr < 0 || l->pt > 4096 || l->pb > 4096 ||
        l->pl > 4096 || l->pr > 4096)
        return lrp_err_set(err, LRP_E_INVALID,
                           "%s: layer '%s': padding (%d, %d, %d, %d) out of range [0, 4096]", f,
                           l->name, l->pt, l->pb, l->pl, l->pr);
    return LRP_OK;
}
