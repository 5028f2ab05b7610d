/*
 * progress.c -- the per-layer progress line of check and compare.
 *
 * On a terminal (stderr is a TTY) a run that lasts more than a couple of
 * seconds shows one line, rewritten in place at most 4 times a second:
 *
 *   [1/1] vgg16.h5: reference p=128 (2/5) backward 12/38 'conv4_3', 1:04 elapsed, ~2:30 left
 *
 * `reference` and `fast` show the same line for their one engine run, then
 * what follows it (gathering and writing the trace):
 *
 *   [1/1] vgg16.h5: reference p=128 (1/1) backward 3/38 'fc7', 2:10 elapsed, ~2:40 left
 *
 * --progress asks for it whatever stderr is; when stderr is not a terminal
 * (a CI log) it prints plain lines instead: one as each phase starts and at
 * most one every 10 s within a phase.  Without --progress nothing is
 * printed when stderr is not a terminal, so CI logs stay as they were.
 *
 * The estimate of what is left: each layer's forward cost is taken as its
 * multiply-accumulates plus its output size (per sample); its backward
 * cost as the same for each rule part, and for a Dense / Conv2D part whose
 * denominator is not the forward's z one more pass for that denominator
 * (epsilon 1, z+ 2, alpha-beta 4).  Measured with bench_reference, a z+
 * denominator and backward cost 1.8 forwards, an epsilon backward 0.6; a
 * BERT-base reference (LRP-0 / epsilon on its Dense layers) spends as
 * long forward as backward, where the former "backward twice the forward"
 * put two thirds of the run in the backward.  The phases are weighted by their
 * measured shares of a run (the MPFR runs dominate; the float32 runs and
 * the gauge are a few percent).  It is an estimate, printed with '~'.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "cli_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "pipeline.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Relative cost of each phase (lrp_check_phase order): measured on
 * ResNet-50 and VGG-16 at 224 (docs/SCALING.md); the proof runs at p + 64
 * bits and carries no audit data. */
static const double phase_weight[LRP_PHASE_COUNT] = {1.0, 1.1, 0.02, 0.15, 0.03, 1.0, 2.5};
static const char *const phase_name[LRP_PHASE_COUNT] = {
    "self-proof p+64", "reference", "float32 fast path", "gauge and verdicts",
    "float32 layers alone", "trace-local reference", "other conventions' references"};

void cli_progress_init(cli_progress *p, int asked)
{
    memset(p, 0, sizeof *p);
    int tty = cli_isatty(STDERR_FILENO);
    p->mode = tty ? 1 : asked ? 2 : 0;
    p->asked = asked;
}

static void fmt_time(char *buf, size_t n, double s)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* the line on the terminal now, erased before an error line is printed
 * (cli_progress_erase) */
static cli_progress *g_live;

void cli_progress_erase(void)
{
    if (g_live && g_live->mode == 1 && g_live->shown) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        g_live->shown = 0;
    }
}

static void show(cli_progress *p, int force)
{
    double t = now_s();
    double el = t - p->t0;
    if (p->mode == 0)
        return;
    /* a short run on a terminal shows nothing (no flicker); asked for, it
     * shows from the start */
    if (p->mode == 1 && !p->asked && el < 2.0)
        return;
    if (!force && t - p->last < (p->mode == 1 ? 0.25 : 10.0))
        return;
    p->last = t;
    /* fraction of the run done */
    double done = 0, all = 0;
    for (int k = 0; k < p->n_phases; k++) {
        double w = phase_weight[p->seq[k]];
        all += w;
        if (k < p->k)
            done += w;
    }
    double within = 0;
    /* only once this phase has reached a layer: at a phase's start the
     * layer seen last is the previous phase's (its backward's last layer,
     * which read as this phase done: "~0:00 left" at the start of the
     * trace-local reference, minutes early on BERT-base) */
    if (p->in_layers && p->cum && p->cum[p->nl] + p->cumb[p->nl] > 0) {
        /* the hook runs as a layer's step starts: the layers before it
         * (forward) or after it (backward) are done */
        double F = p->cum[p->nl], B = p->cumb[p->nl];
        within = p->bwd ? (F + B - p->cumb[p->li + 1]) / (F + B) : p->cum[p->li] / (F + B);
    }
    if (p->k < p->n_phases)
        done += phase_weight[p->seq[p->k]] * within;
    double frac = all > 0 ? done / all : 0;
    char line[512], e1[32], e2[32];
    fmt_time(e1, sizeof e1, el);
    int len = snprintf(line, sizeof line, "[%d/%d] %s: %s", p->file_k, p->n_files,
                       p->file ? p->file : "", phase_name[p->phase]);
    if (p->phase == LRP_PHASE_REFERENCE && len < (int)sizeof line)
        len += snprintf(line + len, sizeof line - (size_t)len, " p=%d", p->prec);
    if (len < (int)sizeof line)
        len += snprintf(line + len, sizeof line - (size_t)len, " (%d/%d)", p->k + 1, p->n_phases);
    if (p->step[0] && len < (int)sizeof line)
        len += snprintf(line + len, sizeof line - (size_t)len, " %s", p->step);
    else if (p->cum && p->in_layers && len < (int)sizeof line)
        len += snprintf(line + len, sizeof line - (size_t)len, " %s %d/%d '%s'",
                        p->bwd ? "backward" : "forward", p->bwd ? p->nl - p->li : p->li + 1,
                        p->nl, p->lname);
    if (len < (int)sizeof line)
        len += snprintf(line + len, sizeof line - (size_t)len, ", %s elapsed", e1);
    if (!p->step[0] && frac > 0.02 && frac < 1 && el > 1.0 && len < (int)sizeof line) {
        fmt_time(e2, sizeof e2, el * (1 - frac) / frac);
        len += snprintf(line + len, sizeof line - (size_t)len, ", ~%s left", e2);
    }
    if (p->mode == 1) {
        fprintf(stderr, "\r%s\033[K", line);
        g_live = p;
    }
    else
        fprintf(stderr, "lrp-oracle: %s\n", line);
    fflush(stderr);
    p->shown = 1;
}

/* passes over a layer's weights in its backward step (see the top) */
static double bwd_passes(const lrp_layer *l)
{
    if (l->kind != LRP_LAYER_DENSE && l->kind != LRP_LAYER_CONV2D)
        return 1;
    const lrp_rule_desc *d = lrp_rule_describe(&l->rule);
    if (!d)
        return 1;
    double n = 0;
    for (int k = 0; k < d->n_parts; k++) {
        const lrp_part_desc *pd = &d->p[k];
        int plain = pd->n_terms == 1 && pd->t[0].in == LRP_IM_ID && pd->t[0].w == LRP_WM_ID;
        n += plain ? 1 : 2;
    }
    return n > 0 ? n : 1;
}

static void on_layer(void *ctx, const lrp_net *net, int li, int bwd)
{
    cli_progress *p = ctx;
    if (net != p->net || net->n_layers != p->nl || !p->cum) {
        /* costs of this net's layers, cumulative in forward order (a net
         * freed and another allocated at its address with as many layers
         * keeps the old costs: an estimate, never out of bounds) */
        free(p->cum);
        p->net = net;
        p->nl = net->n_layers;
        p->cum = malloc(2 * ((size_t)net->n_layers + 1) * sizeof *p->cum);
        if (p->cum) {
            p->cumb = p->cum + net->n_layers + 1;
            p->cum[0] = p->cumb[0] = 0;
            for (int i = 0; i < net->n_layers; i++) {
                double m = (double)lrp_layer_macs(net, i),
                       o = (double)lrp_shape_numel(&net->layers[i].shape);
                p->cum[i + 1] = p->cum[i] + m + o;
                p->cumb[i + 1] = p->cumb[i] + m * bwd_passes(&net->layers[i]) + o;
            }
        }
    }
    if (!p->cum)
        p->net = NULL;
    p->li = li;
    p->bwd = bwd;
    p->in_layers = 1;
    snprintf(p->lname, sizeof p->lname, "%s", net->layers[li].name);
    show(p, 0);
}

static void on_phase(void *ctx, int phase, int k, int n)
{
    cli_progress *p = ctx;
    if (phase >= LRP_PHASE_COUNT) {
        cli_progress_clear(p);
        return;
    }
    p->phase = phase;
    p->k = k;
    p->in_layers = 0;
    if (k < (int)(sizeof p->seq / sizeof p->seq[0]))
        p->seq[k] = phase;
    /* lrp_check's own count (an automatic identification phase is known
     * only once the network is) */
    if (n > p->n_phases && n <= (int)(sizeof p->seq / sizeof p->seq[0]))
        p->n_phases = n;
    show(p, 1);
}

/* a new file's run: its name and clock, no phase or layer seen yet */
static void start_file(cli_progress *p, const char *file, int file_k, int n_files, int prec)
{
    p->file = file;
    p->file_k = file_k;
    p->n_files = n_files;
    p->prec = prec;
    p->t0 = now_s();
    p->last = 0;
    p->k = 0;
    p->step[0] = 0;
    free(p->cum);
    p->cum = NULL;
    p->net = NULL;
    p->nl = 0;
    p->in_layers = 0;
}

void cli_progress_begin(cli_progress *p, lrp_check_opts *co, const char *file, int file_k,
                        int n_files, int compare)
{
    if (p->mode == 0)
        return;
    start_file(p, file, file_k, n_files, co->prec);
    /* the phases lrp_check will run, in its order */
    int m = 0;
    if (co->proof_extra > 0)
        p->seq[m++] = LRP_PHASE_PROOF;
    p->seq[m++] = LRP_PHASE_REFERENCE;
    if (!compare && co->local)
        p->seq[m++] = LRP_PHASE_LOCAL;
    if (!compare)
        p->seq[m++] = LRP_PHASE_SUBJECT;
    p->seq[m++] = LRP_PHASE_JUDGE;
    if (co->identify > 0)
        p->seq[m++] = LRP_PHASE_IDENTIFY;
    if (co->tlocal)
        p->seq[m++] = LRP_PHASE_TLOCAL;
    p->n_phases = m;
    co->phase = on_phase;
    co->phase_ctx = p;
    lrp_pipe_set_progress(on_layer, p);
}

void cli_progress_begin_run(cli_progress *p, const char *file, int reference, int prec)
{
    if (p->mode == 0)
        return;
    start_file(p, file, 1, 1, prec);
    p->phase = p->seq[0] = reference ? LRP_PHASE_REFERENCE : LRP_PHASE_SUBJECT;
    p->n_phases = 1;
    lrp_pipe_set_progress(on_layer, p);
    show(p, 1);
}

void cli_progress_step(cli_progress *p, const char *what)
{
    if (p->mode == 0 || !p->file)
        return;
    lrp_pipe_set_progress(NULL, NULL);
    free(p->cum); /* the layers are done */
    p->cum = NULL;
    p->net = NULL;
    snprintf(p->step, sizeof p->step, "%s", what);
    show(p, 1);
}

void cli_progress_clear(cli_progress *p)
{
    lrp_pipe_set_progress(NULL, NULL);
    if (g_live == p)
        g_live = NULL;
    if (p->mode == 1 && p->shown)
        fprintf(stderr, "\r\033[K");
    else if (p->mode == 2 && p->file)
        fprintf(stderr, "lrp-oracle: [%d/%d] %s: done in %.1f s\n", p->file_k, p->n_files, p->file,
                now_s() - p->t0);
    if (p->mode)
        fflush(stderr);
    p->shown = 0;
    p->file = NULL;
    p->step[0] = 0;
    free(p->cum);
    p->cum = NULL;
    p->net = NULL;
    p->nl = 0;
}
