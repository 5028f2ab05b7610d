/*
 * cmd_import.c -- `lrp-oracle import-keras MODEL.h5 OUT.h5`.
 *
 * A Keras model is a file the project did not write: the whole import and
 * the write of OUT run in a forked child with CPU, memory and wall-clock
 * limits (tools/sandbox.c), so a crash or hang inside libhdf5 on a corrupt
 * model becomes "file is corrupt or unsupported" with exit code 2.  OUT is
 * written atomically (temp file + rename) and never left half-written.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h"
#include "keras_import.h"
#include "safeout.h"

struct import_ctx {
    const char *in, *out;
    int n_layers;
};

static lrp_status import_child(void *vctx, lrp_err *err)
{
    struct import_ctx *c = vctx;
    lrp_net *net = NULL;
    lrp_status st = lrp_keras_import(&net, c->in, err);
    if (st == LRP_OK && !net->input) {
        /* a model file has no data: one deterministic sample U(-1, 1) from
         * the suite's generator, so the fixture runs as is */
        int64_t n = lrp_shape_numel(&net->layers[0].shape);
        net->batch = 1;
        net->input = malloc((size_t)n * sizeof *net->input);
        if (!net->input)
            st = lrp_err_set(err, LRP_E_NOMEM, "%s: out of memory", c->in);
        lrp_rng r;
        lrp_rng_seed(&r, LRP_FIXTURE_SEED);
        for (int64_t i = 0; net->input && i < n; i++)
            net->input[i] = lrp_rng_sym(&r);
        net->seed = LRP_FIXTURE_SEED;
    }
    /* a model with NaN weights or an impossible BatchNorm variance would
     * give a fixture no command reads: refused here, naming the layer */
    if (st == LRP_OK)
        st = lrp_net_check_values(net, c->in, err);
    if (st == LRP_OK) {
        lrp_composite_params p = lrp_composite_params_default();
        lrp_composite_apply(net, LRP_COMPOSITE_EPSILON_PLUS, &p);
        st = lrp_fixture_write(net, c->out, err);
    }
    lrp_net_free(net);
    return st;
}

int cmd_import_keras(int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: lrp-oracle import-keras MODEL.h5 OUT.h5\n\n"
                   "Converts a Keras .h5 model (tf.keras 2.x, Keras <= 2.2.2, Keras 3 legacy h5;\n"
                   "docs/KERAS.md) into a fixture: kernels transposed to the canonical layout,\n"
                   "fused activations split into their own nodes, 'same' padding made explicit,\n"
                   "BatchNorm epsilon kept, the flatten order fixed.  The model is parsed in a\n"
                   "sandboxed child process; OUT is written atomically.  The fixture's rule\n"
                   "assignment is EpsilonPlus; data/input is one deterministic sample U(-1, 1)\n"
                   "(SplitMix64, the suite's seed): replace it with h5py (docs/FORMAT.md).\n");
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    if (argc - optind != 2)
        return cli_usage_error("import-keras", "%s", "wants MODEL.h5 OUT.h5");
    struct import_ctx ctx = {argv[optind], argv[optind + 1], 0};
    /* the same file under any spelling (./m.h5, a symlink, a hard link) */
    if (!strcmp(ctx.in, ctx.out) || lrp_same_file(ctx.in, ctx.out)) {
        fprintf(stderr, "lrp-oracle import-keras: OUT %s is the model file %s; not overwritten\n",
                ctx.out, ctx.in);
        return EXIT_USAGE;
    }
    lrp_err e = {0};
    if (cli_sandboxed(ctx.in, import_child, &ctx, &e) != LRP_OK)
        return cli_fail(&e);
    fprintf(lrp_out_is_stdout(ctx.out) ? stderr : stdout, "wrote %s\n", ctx.out);
    return EXIT_OK;
}
