/*
 * fuzz_keras.c -- libFuzzer harness for the Keras importer lrp_keras_import
 * (core/keras_import.c): an imported net must be an inferred, valid net.
 */
#include "fuzz_common.h"
#include "keras_import.h"

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
    lrp_status st = lrp_keras_import(&net, path, &e);
    fz_check_after(st, &e, "lrp_keras_import");
    if (st == LRP_OK) {
        if (!net) {
            fprintf(stderr, "lrp_keras_import: LRP_OK with a NULL net\n");
            abort();
        }
        lrp_err e2 = {0};
        if (lrp_net_infer(net, "fuzz", &e2) != LRP_OK) {
            fprintf(stderr, "lrp_keras_import: accepted net fails lrp_net_infer: %s\n", e2.msg);
            abort();
        }
        volatile float sink = 0.0f;
        for (int li = 0; li < net->n_layers; li++) {
            const lrp_layer *l = &net->layers[li];
            lrp_shape ps;
            if (lrp_layer_param_shape(net, li, 0, &ps) && l->w)
                for (int64_t i = 0; i < lrp_shape_numel(&ps); i++)
                    sink += l->w[i];
        }
        (void)sink;
    } else if (net) {
        fprintf(stderr, "lrp_keras_import: failed (%s) but returned a net\n", e.msg);
        abort();
    }
    lrp_net_free(net);
    unlink(path);
    return 0;
}
