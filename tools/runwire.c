/*
 * runwire.c -- run reports as bytes, for gathering the results of MPI
 * ranks on rank 0 (tools/cli_mpi.h).  The ranks are one binary on one kind of
 * machine, so the structs travel as their bytes; the per-cell and
 * per-channel arrays follow, each behind a presence byte, and the pointers
 * are rebuilt on reading.
 */
#include "cli_mpi.h"

#include <stdlib.h>
#include <string.h>

#include "report.h"

void cli_bytes_put(cli_bytes *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

void cli_bytes_free(cli_bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void put_arr(cli_bytes *b, const void *p, size_t bytes)
{
    unsigned char has = p != NULL;
    cli_bytes_put(b, &has, 1);
    if (p)
        cli_bytes_put(b, p, bytes);
}

static size_t cells_of(const lrp_run_report *r, const lrp_layer_report *l)
{
    int64_t n = lrp_shape_numel(&l->shape) * r->batch;
    return (size_t)(n ? n : 1);
}

void cli_report_pack(cli_bytes *b, const lrp_run_report *r)
{
    cli_bytes_put(b, r, sizeof *r);
    for (int i = 0; i < r->n_layers; i++) {
        const lrp_layer_report *l = &r->layers[i];
        size_t m = cells_of(r, l), c = (size_t)(l->bn_C > 0 ? l->bn_C : 0);
        cli_bytes_put(b, l, sizeof *l);
        put_arr(b, l->cell_ref, m * sizeof(float));
        put_arr(b, l->cell_got, m * sizeof(float));
        put_arr(b, l->cell_units, m * sizeof(float));
        put_arr(b, l->cell_mark, m);
        put_arr(b, l->bn_in, c * sizeof(double));
        put_arr(b, l->bn_abs, c * sizeof(double));
        put_arr(b, l->bn_out, c * sizeof(double));
    }
}

static int take(void *dst, size_t k, const unsigned char *buf, size_t n, size_t *pos)
{
    if (k > n - *pos)
        return -1;
    memcpy(dst, buf + *pos, k);
    *pos += k;
    return 0;
}

static int take_arr(void **dst, size_t bytes, const unsigned char *buf, size_t n, size_t *pos)
{
    unsigned char has;
    *dst = NULL;
    if (take(&has, 1, buf, n, pos))
        return -1;
    if (!has)
        return 0;
    if (has != 1 || !(*dst = malloc(bytes ? bytes : 1)))
        return -1;
    return take(*dst, bytes, buf, n, pos);
}

int cli_report_unpack(lrp_run_report *r, const unsigned char *buf, size_t n, size_t *pos)
{
    if (*pos > n || take(r, sizeof *r, buf, n, pos) || r->n_layers < 0 || r->batch < 0) {
        memset(r, 0, sizeof *r);
        return -1;
    }
    int nl = r->n_layers;
    r->layers = calloc((size_t)(nl ? nl : 1), sizeof *r->layers);
    r->n_layers = 0;
    if (!r->layers)
        return -1;
    for (int i = 0; i < nl; i++) {
        lrp_layer_report *l = &r->layers[i];
        if (take(l, sizeof *l, buf, n, pos))
            goto bad;
        l->cell_ref = l->cell_got = l->cell_units = NULL;
        l->cell_mark = NULL;
        l->bn_in = l->bn_abs = l->bn_out = NULL;
        r->n_layers = i + 1;
        size_t m = cells_of(r, l), c = (size_t)(l->bn_C > 0 ? l->bn_C : 0);
        if (take_arr((void **)&l->cell_ref, m * sizeof(float), buf, n, pos) ||
            take_arr((void **)&l->cell_got, m * sizeof(float), buf, n, pos) ||
            take_arr((void **)&l->cell_units, m * sizeof(float), buf, n, pos) ||
            take_arr((void **)&l->cell_mark, m, buf, n, pos) ||
            take_arr((void **)&l->bn_in, c * sizeof(double), buf, n, pos) ||
            take_arr((void **)&l->bn_abs, c * sizeof(double), buf, n, pos) ||
            take_arr((void **)&l->bn_out, c * sizeof(double), buf, n, pos))
            goto bad;
    }
    return 0;
bad:
    lrp_run_report_free(r);
    memset(r, 0, sizeof *r);
    return -1;
}
