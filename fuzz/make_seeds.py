#!/usr/bin/python3
"""make_seeds.py GEN_DIR KERAS_DIR OUT_DIR -- seed corpora for the fuzzers.

OUT_DIR/fixture/: small fixtures written by `lrp-oracle gen` (V110 format,
chunked, Fletcher32: what our writer produces), plus each one rewritten
with h5py in HDF5's default ("earliest") format with contiguous, unfiltered
datasets.  The rewritten files have no metadata checksums, so byte
mutations reach the reader's own validation instead of dying at a checksum.

OUT_DIR/keras/: the Keras-layout models of tests/keras/make_keras_models.py
(valid ones, the deliberately broken ones, and a few config mutations),
plus two tiny models written here (smaller files fuzz faster).

Run with /usr/bin/python3 (Debian's python3-h5py and python3-numpy).
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np

FIXTURES = ["mlp", "negzero", "bnzero", "abempty", "zero_input", "ties", "cnn",
            "overflow", "subnormal"]
KERAS_SKIP_SUFFIX = (".expected.h5",)


def copy_attrs(src, dst):
    for k in src.attrs:
        aid = src.attrs.get_id(k)
        val = src.attrs[k]
        dst.attrs.create(k, val, dtype=aid.dtype)


def rewrite(src_path, dst_path):
    with h5py.File(src_path, "r") as s, h5py.File(dst_path, "w") as d:
        def rec(sg, dg):
            copy_attrs(sg, dg)
            for name in sg:
                o = sg[name]
                if isinstance(o, h5py.Group):
                    rec(o, dg.create_group(name))
                else:
                    ds = dg.create_dataset(name, data=o[()], dtype=o.dtype)
                    copy_attrs(o, ds)
        rec(s, d)


def tiny_keras(path, legacy):
    """A Dense-ReLU-Dense model, 4 -> 3 -> 2, in the tf.keras 2.x layout
    (legacy: the Keras <= 2.2.2 bare-list Sequential)."""
    rng = np.random.default_rng(7)
    layers = [
        {"class_name": "Dense", "config": {"name": "d1", "units": 3, "activation": "relu",
                                            "use_bias": True, "dtype": "float32",
                                            "batch_input_shape": [None, 4]}},
        {"class_name": "Dense", "config": {"name": "d2", "units": 2, "activation": "linear",
                                            "use_bias": True, "dtype": "float32"}},
    ]
    if legacy:
        cfg = {"class_name": "Sequential", "config": layers}
        kv = "2.2.2"
    else:
        cfg = {"class_name": "Sequential", "config": {"name": "seq", "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4],
                                                     "dtype": "float32", "name": "in"}}]
            + layers}}
        kv = "2.11.0"
    w = {"d1": [("kernel:0", rng.uniform(-1, 1, (4, 3))), ("bias:0", rng.uniform(-1, 1, 3))],
         "d2": [("kernel:0", rng.uniform(-1, 1, (3, 2))), ("bias:0", rng.uniform(-1, 1, 2))]}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(cfg)
        f.attrs["keras_version"] = kv
        f.attrs["backend"] = "tensorflow"
        mw = f.create_group("model_weights")
        names = (["in"] if not legacy else []) + ["d1", "d2"]
        mw.attrs["layer_names"] = np.array([n.encode() for n in names])
        for n in names:
            g = mw.create_group(n)
            ws = w.get(n, [])
            g.attrs["weight_names"] = np.array([("%s/%s" % (n, wn)).encode() for wn, _ in ws])
            for wn, arr in ws:
                g.create_dataset("%s/%s" % (n, wn), data=arr.astype(np.float32))


def main():
    gen, keras, out = sys.argv[1:4]
    fx = os.path.join(out, "fixture")
    kd = os.path.join(out, "keras")
    os.makedirs(fx, exist_ok=True)
    os.makedirs(kd, exist_ok=True)
    for name in FIXTURES:
        src = os.path.join(gen, name + ".h5")
        if not os.path.exists(src):
            continue
        shutil.copy(src, os.path.join(fx, name + ".h5"))
        rewrite(src, os.path.join(fx, name + "_earliest.h5"))
    picked = 0
    for name in sorted(os.listdir(keras)):
        if not name.endswith(".h5") or name.endswith(KERAS_SKIP_SUFFIX):
            continue
        if name.startswith("fuzz_") and int(name[5:7]) % 10 != 0:
            continue  # a few config mutations are enough
        shutil.copy(os.path.join(keras, name), os.path.join(kd, name))
        picked += 1
    tiny_keras(os.path.join(kd, "tiny_tf2.h5"), legacy=False)
    tiny_keras(os.path.join(kd, "tiny_legacy.h5"), legacy=True)
    print("seeds: %d fixture files, %d keras files" % (len(os.listdir(fx)), picked + 2))


if __name__ == "__main__":
    main()
