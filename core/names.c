/*
 * names.c -- the name tables generated from the X-macro lists in lrp.h,
 * the error record, and rule defaults.  Every name a file or the command
 * line can carry is parsed here and nowhere else.
 */
#include "lrp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (2 to 4 bytes, no
 * overlongs, no surrogates, at most U+10FFFF), or 0. */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    int n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (!n || c > 0xf4)
        return 0;
    for (int k = 1; k < n; k++)
        if ((s[k] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) ||
        (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

const char *lrp_str_esc(char *buf, size_t n, const char *s)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    if (!n)
        return buf;
    while (*p) {
        char tmp[8];
        size_t len;
        int u = utf8_len(p);
        if (*p >= 0x20 && *p != 0x7f && *p < 0x80) {
            tmp[0] = (char)*p;
            len = 1;
            p++;
        } else if (u == 2 && p[0] == 0xc2 && p[1] < 0xa0) {
            /* C1 controls U+0080..U+009F: U+009B is a CSI to a terminal */
            len = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", p[1]);
            p += 2;
        } else if (u > 0) {
            memcpy(tmp, p, (size_t)u);
            len = (size_t)u;
            p += u;
        } else {
            len = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", *p);
            p++;
        }
        if (o + len >= n)
            break;
        memcpy(buf + o, tmp, len);
        o += len;
    }
    buf[o] = '\0';
    return buf;
}

lrp_status lrp_err_set(lrp_err *err, lrp_status code, const char *fmt, ...)
{
    if (err) {
        char raw[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
        /* One line: newlines from library messages become spaces; other
         * control characters (names read from files may carry terminal
         * escape sequences) are written as \xNN. */
        for (char *p = raw; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        lrp_str_esc(err->msg, sizeof err->msg, raw);
        err->code = code;
    }
    return code;
}

const char *lrp_status_name(lrp_status s)
{
    switch (s) {
    case LRP_OK: return "ok";
    case LRP_E_USAGE: return "usage error";
    case LRP_E_IO: return "I/O error";
    case LRP_E_FORMAT: return "malformed file";
    case LRP_E_INVALID: return "invalid network";
    case LRP_E_UNSUPPORTED: return "unsupported";
    case LRP_E_NOMEM: return "out of memory";
    case LRP_E_NUMERIC: return "numerical failure";
    }
    return "unknown status";
}

void lrp_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "lrp-oracle: internal error: %s:%d: assertion '%s' failed\n",
            file, line, expr);
    abort();
}

/* ---- layer kinds ---- */

static const struct {
    const char *name;
    int min_in, max_in;
} layer_tab[] = {
#define X(e, s, mn, mx) {s, mn, mx},
    LRP_LAYER_LIST(X)
#undef X
};
_Static_assert(sizeof layer_tab / sizeof layer_tab[0] == LRP_LAYER_COUNT,
               "layer table and enum disagree");

const char *lrp_layer_kind_name(lrp_layer_kind k)
{
    return (unsigned)k < LRP_LAYER_COUNT ? layer_tab[k].name : "?";
}

int lrp_layer_kind_parse(const char *name, lrp_layer_kind *out)
{
    for (int i = 0; i < LRP_LAYER_COUNT; i++)
        if (strcmp(name, layer_tab[i].name) == 0) {
            *out = (lrp_layer_kind)i;
            return 0;
        }
    return -1;
}

int lrp_layer_kind_min_inputs(lrp_layer_kind k) { return layer_tab[k].min_in; }
int lrp_layer_kind_max_inputs(lrp_layer_kind k) { return layer_tab[k].max_in; }

/* ---- rules, stabilizers, flags, composites ---- */

static const char *const rule_tab[] = {
#define X(e, s) s,
    LRP_RULE_LIST(X)
#undef X
};
_Static_assert(sizeof rule_tab / sizeof rule_tab[0] == LRP_RULE_COUNT,
               "rule table and enum disagree");

static const char *const stab_tab[] = {
#define X(e, s) s,
    LRP_STAB_LIST(X)
#undef X
};
_Static_assert(sizeof stab_tab / sizeof stab_tab[0] == LRP_STAB_COUNT,
               "stabilizer table and enum disagree");

static const char *const composite_tab[] = {
#define X(e, s) s,
    LRP_COMPOSITE_LIST(X)
#undef X
};
_Static_assert(sizeof composite_tab / sizeof composite_tab[0] == LRP_COMPOSITE_COUNT,
               "composite table and enum disagree");

static const struct {
    unsigned flag;
    const char *name;
} flag_tab[] = {
#define X(e, bit, s) {1u << (bit), s},
    LRP_FLAG_LIST(X)
#undef X
};

static int parse_in(const char *const *tab, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(name, tab[i]) == 0)
            return i;
    return -1;
}

const char *lrp_rule_name(lrp_rule_id r)
{
    return (unsigned)r < LRP_RULE_COUNT ? rule_tab[r] : "?";
}

int lrp_rule_parse(const char *name, lrp_rule_id *out)
{
    int i = parse_in(rule_tab, LRP_RULE_COUNT, name);
    if (i < 0)
        return -1;
    *out = (lrp_rule_id)i;
    return 0;
}

const char *lrp_stab_name(lrp_stab_id s)
{
    return (unsigned)s < LRP_STAB_COUNT ? stab_tab[s] : "?";
}

int lrp_stab_parse(const char *name, lrp_stab_id *out)
{
    int i = parse_in(stab_tab, LRP_STAB_COUNT, name);
    if (i < 0)
        return -1;
    *out = (lrp_stab_id)i;
    return 0;
}

const char *lrp_composite_name(lrp_composite_id c)
{
    return (unsigned)c < LRP_COMPOSITE_COUNT ? composite_tab[c] : "?";
}

int lrp_composite_parse(const char *name, lrp_composite_id *out)
{
    int i = parse_in(composite_tab, LRP_COMPOSITE_COUNT, name);
    if (i < 0)
        return -1;
    *out = (lrp_composite_id)i;
    return 0;
}

const char *lrp_flag_name(unsigned f)
{
    for (size_t i = 0; i < sizeof flag_tab / sizeof flag_tab[0]; i++)
        if (flag_tab[i].flag == f)
            return flag_tab[i].name;
    return "?";
}

int lrp_flag_parse(const char *name, unsigned *out)
{
    for (size_t i = 0; i < sizeof flag_tab / sizeof flag_tab[0]; i++)
        if (strcmp(name, flag_tab[i].name) == 0) {
            *out = flag_tab[i].flag;
            return 0;
        }
    return -1;
}

/* 1e-6 rounded to binary32: 0x1.0c6f7ap-20f.  Every peer's default
 * epsilon is a decimal literal that its framework rounds to binary32. */
/* eps = 1e-6 rounded to binary32 (hex below).  */
lrp_rule_spec lrp_rule_default(lrp_rule_id r)
{
    lrp_rule_spec s;
    memset(&s, 0, sizeof s);
    s.rule = r;
    s.stab = LRP_STAB_SIGN0_POS;
    /* LRP-0 has no stabilizer by definition (a zero denominator is
     * reported); every other dividing rule gets Zennit's 1e-6. */
    s.eps = (r == LRP_RULE_ZERO || r == LRP_RULE_PASS || r == LRP_RULE_WTA ||
             r == LRP_RULE_IDENTITY)
                ? 0.0f : 0x1.0c6f7ap-20f;
    s.gamma = 0.25f;
    s.alpha = 1.0f;
    s.beta = 0.0f;
    s.low = 0.0f;
    s.high = 1.0f;
    s.bias = 1;
    s.flags = 0;
    return s;
}
