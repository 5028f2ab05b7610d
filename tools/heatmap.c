/*
 * heatmap.c -- PNG heatmaps of one oracle run (heatmap.h).
 *
 * One picture per sample and tensor, three panels side by side:
 *   reference   the MPFR reference relevance (rounded to binary32);
 *   trace       the judged values (our fast path, or another library's);
 *   error       (got - ref) / bound, the signed error in units of the bound
 *               the verdict used (the sharp tier where present): |x| <= 1 is
 *               within one bound, the usual float32 case is far below.
 * A spatial tensor (C, H, W) is drawn as H x W, summed over channels (the
 * way LRP heatmaps of images are drawn); its error panel shows, per pixel,
 * the channel with the largest |error|, and a pixel is marked when any of
 * its channels is.  A flat tensor (F) is drawn as a near-square grid, row
 * by row.  Colours: a blue-white-red map symmetric around zero (matplotlib's
 * "bwr", the default of Zennit's and Captum's image heatmaps), the same
 * scale for the reference and the trace; marked cells are painted solid:
 * black NaN/inf in the trace, green undefined reference (a zero denominator
 * with no stabilizer), orange ill-conditioned (excused), magenta unresolved
 * at p.  Labels use a built-in 3x5 pixel font, so no font library is needed.
 */
#include "heatmap.h"

#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a small RGB canvas ---- */

typedef struct canvas {
    int w, h;
    uint8_t *px; /* w * h * 3 */
} canvas;

typedef struct rgb {
    uint8_t r, g, b;
} rgb;

static const rgb BLACK = {0, 0, 0}, GREY = {200, 200, 200},
                 INK = {40, 40, 40}, GREEN = {0, 170, 0}, ORANGE = {255, 140, 0},
                 MAGENTA = {200, 0, 200};

static void put(canvas *c, int x, int y, rgb k)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return;
    uint8_t *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = k.r;
    p[1] = k.g;
    p[2] = k.b;
}

static void rect(canvas *c, int x, int y, int w, int h, rgb k)
{
    for (int j = 0; j < h; j++)
        for (int i = 0; i < w; i++)
            put(c, x + i, y + j, k);
}

/* 3x5 glyphs, 5 rows of 3 bits (left = 4). */
static const struct {
    char ch;
    uint8_t row[5];
} font[] = {
    {'A', {2, 5, 7, 5, 5}}, {'B', {6, 5, 6, 5, 6}}, {'C', {3, 4, 4, 4, 3}}, {'D', {6, 5, 5, 5, 6}},
    {'E', {7, 4, 6, 4, 7}}, {'F', {7, 4, 6, 4, 4}}, {'G', {3, 4, 5, 5, 3}}, {'H', {5, 5, 7, 5, 5}},
    {'I', {7, 2, 2, 2, 7}}, {'J', {1, 1, 1, 5, 2}}, {'K', {5, 5, 6, 5, 5}}, {'L', {4, 4, 4, 4, 7}},
    {'M', {5, 7, 7, 5, 5}}, {'N', {6, 5, 5, 5, 5}}, {'O', {2, 5, 5, 5, 2}}, {'P', {6, 5, 6, 4, 4}},
    {'Q', {2, 5, 5, 6, 3}}, {'R', {6, 5, 6, 5, 5}}, {'S', {3, 4, 2, 1, 6}}, {'T', {7, 2, 2, 2, 2}},
    {'U', {5, 5, 5, 5, 7}}, {'V', {5, 5, 5, 5, 2}}, {'W', {5, 5, 7, 7, 5}}, {'X', {5, 5, 2, 5, 5}},
    {'Y', {5, 5, 2, 2, 2}}, {'Z', {7, 1, 2, 4, 7}}, {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}},
    {'2', {6, 1, 2, 4, 7}}, {'3', {6, 1, 2, 1, 6}}, {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 6, 1, 6}},
    {'6', {3, 4, 7, 5, 7}}, {'7', {7, 1, 2, 2, 2}}, {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 6}},
    {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}}, {'+', {0, 2, 7, 2, 0}}, {'/', {1, 1, 2, 4, 4}},
    {':', {0, 2, 0, 2, 0}}, {'=', {0, 7, 0, 7, 0}}, {'(', {1, 2, 2, 2, 1}}, {')', {4, 2, 2, 2, 4}},
    {'_', {0, 0, 0, 0, 7}}, {'\'', {2, 2, 0, 0, 0}}, {',', {0, 0, 0, 2, 4}}, {'<', {1, 2, 4, 2, 1}},
    {'>', {4, 2, 1, 2, 4}}, {'|', {2, 2, 2, 2, 2}},
};

#define GLYPH_SCALE 2
#define CHAR_W (4 * GLYPH_SCALE)
#define LINE_H (7 * GLYPH_SCALE)

static int text_width(const char *s) { return (int)strlen(s) * CHAR_W; }

static void text(canvas *c, int x, int y, const char *s, rgb k)
{
    for (; *s; s++, x += CHAR_W) {
        char ch = *s >= 'a' && *s <= 'z' ? (char)(*s - 'a' + 'A') : *s;
        for (size_t g = 0; g < sizeof font / sizeof font[0]; g++) {
            if (font[g].ch != ch)
                continue;
            for (int r = 0; r < 5; r++)
                for (int b = 0; b < 3; b++)
                    if (font[g].row[r] & (4 >> b))
                        rect(c, x + b * GLYPH_SCALE, y + r * GLYPH_SCALE, GLYPH_SCALE,
                             GLYPH_SCALE, k);
            break;
        }
    }
}

/* matplotlib "bwr": -1 blue, 0 white, +1 red (linear). */
static rgb bwr(double t)
{
    if (!(t == t))
        return BLACK;
    if (t < -1)
        t = -1;
    if (t > 1)
        t = 1;
    rgb k;
    if (t < 0) {
        double a = 1 + t; /* 0 at -1 */
        k.r = (uint8_t)lrint(255 * a);
        k.g = (uint8_t)lrint(255 * a);
        k.b = 255;
    } else {
        double a = 1 - t;
        k.r = 255;
        k.g = (uint8_t)lrint(255 * a);
        k.b = (uint8_t)lrint(255 * a);
    }
    return k;
}

/* ---- the tensor as a 2-D image ---- */

typedef struct image {
    int h, w;          /* pixels (cells of the picture) */
    double *ref, *got; /* summed over channels */
    double *err;       /* signed units with the largest |units| */
    uint8_t *mark;     /* OR over channels */
    uint8_t *pad;      /* 1: no cell (grid padding of flat tensors) */
} image;

static void image_free(image *im)
{
    free(im->ref);
    free(im->got);
    free(im->err);
    free(im->mark);
    free(im->pad);
}

static int image_make(image *im, const lrp_layer_report *l, int sample)
{
    const lrp_shape *s = &l->shape;
    int64_t n = lrp_shape_numel(s);
    int64_t C = 1, H, W;
    if (s->rank == 3) {
        C = s->d[0];
        H = s->d[1];
        W = s->d[2];
    } else if (s->rank == 2) {
        H = s->d[0];
        W = s->d[1];
    } else {
        W = (int64_t)ceil(sqrt((double)n));
        if (W < 1)
            W = 1;
        H = (n + W - 1) / W;
    }
    if (H < 1)
        H = 1;
    im->h = (int)H;
    im->w = (int)W;
    size_t m = (size_t)(H * W);
    im->ref = calloc(m, sizeof(double));
    im->got = calloc(m, sizeof(double));
    im->err = calloc(m, sizeof(double));
    im->mark = calloc(m, 1);
    im->pad = calloc(m, 1);
    if (!im->ref || !im->got || !im->err || !im->mark || !im->pad)
        return -1;
    for (size_t p = (size_t)n / (size_t)C; p < m; p++)
        im->pad[p] = 1;
    const int64_t base = (int64_t)sample * n;
    for (int64_t k = 0; k < n; k++) {
        size_t p = (size_t)(k % (n / C)); /* pixel: h*W + w, or the flat index */
        int64_t q = base + k;
        im->ref[p] += (double)l->cell_ref[q];
        im->got[p] += (double)l->cell_got[q];
        double e = (double)l->cell_units[q];
        if (!(fabs(e) <= fabs(im->err[p])) && e == e)
            im->err[p] = e;
        im->mark[p] |= l->cell_mark[q];
    }
    return 0;
}

/* ---- the picture ---- */

#define MARGIN 10
#define GAP 16

static void fmt_num(char *b, size_t n, double x)
{
    snprintf(b, n, "%.2e", x);
}

/* One panel at (x, y): cells scaled by sc, a colour bar with its range. */
static void panel(canvas *c, int x, int y, const image *im, int sc, int which, double vmax,
                  const char *label, const char *unit)
{
    text(c, x, y, label, INK);
    y += LINE_H + 4;
    for (int i = 0; i < im->h; i++)
        for (int j = 0; j < im->w; j++) {
            size_t p = (size_t)i * (size_t)im->w + (size_t)j;
            rgb k;
            double v = which == 0 ? im->ref[p] : which == 1 ? im->got[p] : im->err[p];
            uint8_t mk = im->mark[p];
            if (im->pad[p])
                k = GREY;
            else if (which == 0 && (mk & LRP_MARK_UNDEFINED))
                k = GREEN;
            else if (which > 0 && ((mk & LRP_MARK_NONFINITE) || !isfinite(v)))
                k = BLACK;
            else if (which > 0 && (mk & LRP_MARK_UNDEFINED))
                k = GREEN;
            else if (which == 2 && (mk & LRP_MARK_UNRESOLVED))
                k = MAGENTA;
            else if (which == 2 && (mk & LRP_MARK_ILL))
                k = ORANGE;
            else
                k = bwr(vmax > 0 ? v / vmax : 0);
            rect(c, x + j * sc, y + i * sc, sc, sc, k);
        }
    int pw = im->w * sc;
    y += im->h * sc + 6;
    for (int i = 0; i < pw; i++)
        rect(c, x + i, y, 1, 10, bwr(pw > 1 ? 2.0 * i / (pw - 1) - 1 : 0));
    y += 14;
    char lo[32], hi[32];
    fmt_num(lo, sizeof lo, -vmax);
    fmt_num(hi, sizeof hi, vmax);
    text(c, x, y, lo, INK);
    text(c, x + pw - text_width(hi), y, hi, INK);
    if (unit)
        text(c, x, y + LINE_H + 2, unit, INK);
}

void lrp_heatmap_marks(long long counts[4], const lrp_run_report *r, int layer, int sample)
{
    const lrp_layer_report *l = &r->layers[layer];
    int64_t n = lrp_shape_numel(&l->shape);
    for (int b = 0; b < 4; b++)
        counts[b] = 0;
    if (!l->cell_mark)
        return;
    for (int64_t k = 0; k < n; k++)
        for (int b = 0; b < 4; b++)
            counts[b] += (l->cell_mark[(int64_t)sample * n + k] >> b) & 1;
}

typedef struct membuf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} membuf;

static void mem_write(png_structp png, png_bytep data, png_size_t len)
{
    membuf *m = png_get_io_ptr(png);
    if (m->oom)
        return;
    if (m->n + len > m->cap) {
        size_t cap = (m->cap ? m->cap * 2 : 65536);
        while (cap < m->n + len)
            cap *= 2;
        unsigned char *q = realloc(m->p, cap);
        if (!q) {
            m->oom = 1;
            return;
        }
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, len);
    m->n += len;
}

static void mem_flush(png_structp png) { (void)png; }

static int encode_png(membuf *m, const canvas *c)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *rows = malloc((size_t)c->h * sizeof *rows);
    if (!png || !info || !rows) {
        png_destroy_write_struct(&png, info ? &info : NULL);
        free(rows);
        return -1;
    }
    /* volatile: modified between setjmp and a longjmp back */
    png_bytep *volatile vrows = rows;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(vrows);
        return -1;
    }
    png_set_write_fn(png, m, mem_write, mem_flush);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    for (int y = 0; y < c->h; y++)
        vrows[y] = c->px + (size_t)y * (size_t)c->w * 3;
    png_set_rows(png, info, vrows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    free(vrows);
    return m->oom ? -1 : 0;
}

lrp_status lrp_heatmap_png(unsigned char **out, size_t *len, const lrp_run_report *r, int layer,
                           int sample, lrp_err *err)
{
    *out = NULL;
    *len = 0;
    const lrp_layer_report *l = &r->layers[layer];
    if (!l->cell_ref)
        return lrp_err_set(err, LRP_E_USAGE, "%s: '%s': no values of the trace to draw",
                           r->fixture, l->name);
    image im = {0};
    canvas c = {0};
    membuf m = {0};
    lrp_status st = LRP_OK;
    if (image_make(&im, l, sample))
        goto oom;
    /* scale: the longer side about 200 px, whole pixels per cell, <= 24 */
    int big = im.h > im.w ? im.h : im.w;
    int sc = big >= 200 ? 1 : 200 / big;
    if (sc > 24)
        sc = 24;
    int pw = im.w * sc, ph = im.h * sc;
    char lab[3][96];
    snprintf(lab[0], sizeof lab[0], "reference");
    snprintf(lab[1], sizeof lab[1], "%.40s", r->source);
    double emx = 0;
    for (size_t p = 0; p < (size_t)im.h * (size_t)im.w; p++)
        if (!im.pad[p] && isfinite(im.err[p]) && fabs(im.err[p]) > emx)
            emx = fabs(im.err[p]);
    snprintf(lab[2], sizeof lab[2], "error/bound max %.2g", emx);
    int colw = pw;
    for (int k = 0; k < 3; k++)
        if (text_width(lab[k]) > colw)
            colw = text_width(lab[k]);
    if (colw < 20 * CHAR_W)
        colw = 20 * CHAR_W; /* room for the colour bar's two numbers */
    long long cnt[4];
    lrp_heatmap_marks(cnt, r, layer, sample);
    char title[256], legend[4][64];
    snprintf(title, sizeof title, "%.60s sample %d", l->name, sample);
    snprintf(legend[0], sizeof legend[0], "nan/inf %lld", cnt[0]);
    snprintf(legend[1], sizeof legend[1], "undefined %lld", cnt[1]);
    snprintf(legend[2], sizeof legend[2], "ill-cond %lld", cnt[2]);
    snprintf(legend[3], sizeof legend[3], "unresolved %lld", cnt[3]);
    c.w = 2 * MARGIN + 3 * colw + 2 * GAP;
    int minw = 2 * MARGIN + text_width(title), legw = 2 * MARGIN;
    for (int k = 0; k < 4; k++)
        legw += LINE_H + text_width(legend[k]) + 3 * CHAR_W;
    if (minw < legw)
        minw = legw;
    if (c.w < minw)
        c.w = minw;
    c.h = MARGIN + LINE_H + 8 + (LINE_H + 4) + ph + 6 + 14 + 2 * LINE_H + 2 + 10 + LINE_H + MARGIN;
    c.px = malloc((size_t)c.w * (size_t)c.h * 3);
    if (!c.px)
        goto oom;
    memset(c.px, 255, (size_t)c.w * (size_t)c.h * 3);
    int y = MARGIN;
    text(&c, MARGIN, y, title, INK);
    y += LINE_H + 8;
    /* one scale for the reference and the trace: comparable colours */
    double vmax = 0, emax = 1;
    for (size_t p = 0; p < (size_t)im.h * (size_t)im.w; p++) {
        if (im.pad[p])
            continue;
        if (isfinite(im.ref[p]) && fabs(im.ref[p]) > vmax)
            vmax = fabs(im.ref[p]);
        if (isfinite(im.err[p]) && fabs(im.err[p]) > emax)
            emax = fabs(im.err[p]);
    }
    panel(&c, MARGIN, y, &im, sc, 0, vmax, lab[0], NULL);
    panel(&c, MARGIN + colw + GAP, y, &im, sc, 1, vmax, lab[1], NULL);
    panel(&c, MARGIN + 2 * (colw + GAP), y, &im, sc, 2, emax, lab[2], "units of the bound");
    y += LINE_H + 4 + ph + 6 + 14 + 2 * LINE_H + 2 + 10;
    static const rgb mk[4] = {{0, 0, 0}, {0, 170, 0}, {255, 140, 0}, {200, 0, 200}};
    int x = MARGIN;
    for (int k = 0; k < 4; k++) {
        rect(&c, x, y, LINE_H - 4, LINE_H - 4, mk[k]);
        text(&c, x + LINE_H, y, legend[k], INK);
        x += LINE_H + text_width(legend[k]) + 3 * CHAR_W;
    }
    if (encode_png(&m, &c))
        goto oom;
    *out = m.p;
    *len = m.n;
    m.p = NULL;
    goto done;
oom:
    st = lrp_err_set(err, LRP_E_NOMEM, "%s: '%s': out of memory drawing the heatmap", r->fixture,
                     l->name);
done:
    free(m.p);
    free(c.px);
    image_free(&im);
    return st;
}
