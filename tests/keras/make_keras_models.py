#!/usr/bin/python3
"""make_keras_models.py OUTDIR -- Keras-layout .h5 test models for test_keras.

TensorFlow is not available on the project machines, so the files are
written with h5py in the layout tf.keras 2.x / Keras <= 2.2.2 / Keras 3
(legacy .h5) produce: root attributes model_config (JSON), keras_version,
backend; group model_weights/ with layer_names and, per layer,
weight_names plus the datasets they name (weights assigned by order).

For every valid model, an independent numpy interpreter evaluates the
forward pass with Keras semantics (NHWC for channels_last, TensorFlow's
"same" padding, BatchNormalization with its float32 epsilon, Flatten in
(H, W, C) order, average pools excluding padded cells) in float64 on the
model's float32 weights, and MODEL.expected.h5 stores the input (Keras
layout, float32) and the pre-softmax logits (float64).

Run with /usr/bin/python3 (Debian's python3-h5py and python3-numpy).
"""
import json
import os
import sys

import h5py
import numpy as np

RNG = np.random.default_rng(20240611)


def rnd(*shape, scale=0.5):
    return (RNG.uniform(-1.0, 1.0, size=shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- model spec

class Model:
    """Layers in model.layers order: dicts with cls, name, cfg, inputs,
    weights [(short name, array)]."""

    def __init__(self, name, kind, data_format="channels_last"):
        self.name = name
        self.kind = kind  # "sequential" or "functional"
        self.df = data_format
        self.layers = []

    def add(self, cls, name, cfg=None, inputs=None, weights=()):
        if inputs is None:
            inputs = [self.layers[-1]["name"]] if self.layers else []
        elif isinstance(inputs, str):
            inputs = [inputs]
        c = {"name": name, "trainable": True, "dtype": "float32"}
        c.update(cfg or {})
        self.layers.append({"cls": cls, "name": name, "cfg": c, "inputs": list(inputs),
                            "weights": list(weights)})
        return name

    def layer(self, name):
        return next(l for l in self.layers if l["name"] == name)


def conv_cfg(filters, k, s=1, padding="valid", act="linear", bias=True, dil=1, groups=1,
             df="channels_last"):
    return {"filters": filters, "kernel_size": [k[0], k[1]] if isinstance(k, tuple) else [k, k],
            "strides": [s, s], "padding": padding, "data_format": df,
            "dilation_rate": [dil, dil], "groups": groups, "activation": act, "use_bias": bias,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None}


def add_conv(m, name, cin, filters, k, s=1, padding="valid", act="linear", bias=True, dil=1,
             groups=1, inputs=None):
    kh, kw = k if isinstance(k, tuple) else (k, k)
    w = [("kernel", rnd(kh, kw, cin // groups, filters, scale=1.0 / np.sqrt(cin * kh * kw / groups) * 1.7))]
    if bias:
        w.append(("bias", rnd(filters, scale=0.2)))
    return m.add("Conv2D", name, conv_cfg(filters, k, s, padding, act, bias, dil, groups, m.df),
                 inputs, w)


def add_dwconv(m, name, cin, mult, k, s=1, padding="valid", act="linear", bias=True, inputs=None):
    cfg = conv_cfg(0, k, s, padding, act, bias, 1, 1, m.df)
    del cfg["filters"], cfg["groups"]
    cfg["depth_multiplier"] = mult
    w = [("depthwise_kernel", rnd(k, k, cin, mult, scale=0.6))]
    if bias:
        w.append(("bias", rnd(cin * mult, scale=0.2)))
    return m.add("DepthwiseConv2D", name, cfg, inputs, w)


def add_sepconv(m, name, cin, mult, filters, k, padding="valid", act="linear", inputs=None):
    cfg = conv_cfg(filters, k, 1, padding, act, True, 1, 1, m.df)
    del cfg["groups"]
    cfg["depth_multiplier"] = mult
    w = [("depthwise_kernel", rnd(k, k, cin, mult, scale=0.6)),
         ("pointwise_kernel", rnd(1, 1, cin * mult, filters, scale=0.6)),
         ("bias", rnd(filters, scale=0.2))]
    return m.add("SeparableConv2D", name, cfg, inputs, w)


def add_dense(m, name, fin, units, act="linear", bias=True, inputs=None):
    w = [("kernel", rnd(fin, units, scale=1.7 / np.sqrt(fin)))]
    if bias:
        w.append(("bias", rnd(units, scale=0.2)))
    return m.add("Dense", name, {"units": units, "activation": act, "use_bias": bias}, inputs, w)


def add_bn(m, name, ch, eps=1e-3, scale=True, center=True, axis=None, inputs=None):
    w = []
    if scale:
        w.append(("gamma", (1.0 + rnd(ch, scale=0.4)).astype(np.float32)))
    if center:
        w.append(("beta", rnd(ch, scale=0.3)))
    w.append(("moving_mean", rnd(ch, scale=0.3)))
    w.append(("moving_variance", (1.0 + rnd(ch, scale=0.5)).astype(np.float32)))
    if axis is None:
        axis = [3] if m.df == "channels_last" else [1]
    return m.add("BatchNormalization", name,
                 {"axis": axis, "momentum": 0.99, "epsilon": eps, "center": center,
                  "scale": scale}, inputs, w)


def add_pool(m, cls, name, k=2, s=None, padding="valid", inputs=None):
    return m.add(cls, name, {"pool_size": [k, k], "strides": [s or k, s or k],
                             "padding": padding, "data_format": m.df}, inputs)


# ---------------------------------------------------------------- numpy forward

def same_pads(n, k, s, d):
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def window_geometry(x, kh, kw, sh, sw, dh, dw, padding):
    h, w = x.shape[0], x.shape[1]
    if padding == "same":
        pt, pb = same_pads(h, kh, sh, dh)
        pl, pr = same_pads(w, kw, sw, dw)
    else:
        pt = pb = pl = pr = 0
    ho = (h + pt + pb - ((kh - 1) * dh + 1)) // sh + 1
    wo = (w + pl + pr - ((kw - 1) * dw + 1)) // sw + 1
    return pt, pb, pl, pr, ho, wo


def patches(xp, i, j, ho, wo, sh, sw, dh, dw):
    return xp[i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw, :]


def conv_hwc(x, kern, bias, s, padding, d, groups):
    kh, kw, cg, out = kern.shape
    pt, pb, pl, pr, ho, wo = window_geometry(x, kh, kw, s[0], s[1], d[0], d[1], padding)
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    y = np.zeros((ho, wo, out))
    og = out // groups
    for i in range(kh):
        for j in range(kw):
            p = patches(xp, i, j, ho, wo, s[0], s[1], d[0], d[1])
            for g in range(groups):
                y[:, :, g * og:(g + 1) * og] += np.einsum(
                    "hwc,co->hwo", p[:, :, g * cg:(g + 1) * cg], kern[i, j, :, g * og:(g + 1) * og])
    if bias is not None:
        y += bias
    return y


def dwconv_hwc(x, kern, bias, s, padding, d):
    kh, kw, c, mult = kern.shape
    pt, pb, pl, pr, ho, wo = window_geometry(x, kh, kw, s[0], s[1], d[0], d[1], padding)
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    y = np.zeros((ho, wo, c, mult))
    for i in range(kh):
        for j in range(kw):
            p = patches(xp, i, j, ho, wo, s[0], s[1], d[0], d[1])
            y += p[:, :, :, None] * kern[i, j][None, None, :, :]
    y = y.reshape(ho, wo, c * mult)  # channel c*mult + m, Keras' order
    if bias is not None:
        y += bias
    return y


def pool_hwc(x, k, s, padding, mode):
    pt, pb, pl, pr, ho, wo = window_geometry(x, k[0], k[1], s[0], s[1], 1, 1, padding)
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    ones = np.pad(np.ones(x.shape[:2] + (1,)), ((pt, pb), (pl, pr), (0, 0)))
    acc = np.full((ho, wo, x.shape[2]), -np.inf) if mode == "max" else np.zeros((ho, wo, x.shape[2]))
    cnt = np.zeros((ho, wo, 1))
    for i in range(k[0]):
        for j in range(k[1]):
            p = patches(xp, i, j, ho, wo, s[0], s[1], 1, 1)
            if mode == "max":
                acc = np.maximum(acc, p)
            else:
                acc += p
                cnt += patches(ones, i, j, ho, wo, s[0], s[1], 1, 1)
    return acc if mode == "max" else acc / cnt  # TF: padded cells do not count


def evaluate(m, x):
    """Keras-semantics forward pass, float64, one sample without batch axis.
    Returns the model output with a final softmax left out (the logits)."""
    cf = m.df == "channels_first"
    to_hwc = (lambda t: np.transpose(t, (1, 2, 0))) if cf else (lambda t: t)
    from_hwc = (lambda t: np.transpose(t, (2, 0, 1))) if cf else (lambda t: t)
    vals = {}
    out_name = m.layers[-1]["name"]
    for l in m.layers:
        cls, c = l["cls"], l["cfg"]
        ins = [vals[n] for n in l["inputs"]]
        w = [np.asarray(a, dtype=np.float64) for _, a in l["weights"]]
        a = ins[0] if ins else None
        act = c.get("activation", "linear")
        if cls == "InputLayer":
            y = np.asarray(x, dtype=np.float64)
        elif cls == "Conv2D":
            y = from_hwc(conv_hwc(to_hwc(a), w[0], w[1] if c["use_bias"] else None, c["strides"],
                                  c["padding"], c["dilation_rate"], c.get("groups", 1)))
        elif cls == "DepthwiseConv2D":
            y = from_hwc(dwconv_hwc(to_hwc(a), w[0], w[1] if c["use_bias"] else None,
                                    c["strides"], c["padding"], c["dilation_rate"]))
        elif cls == "SeparableConv2D":
            t = dwconv_hwc(to_hwc(a), w[0], None, c["strides"], c["padding"], c["dilation_rate"])
            y = from_hwc(conv_hwc(t, w[1], w[2], [1, 1], "valid", [1, 1], 1))
        elif cls == "Dense":
            y = a @ w[0] + (w[1] if c["use_bias"] else 0.0)
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            y = from_hwc(pool_hwc(to_hwc(a), c["pool_size"], c["strides"], c["padding"],
                                  "max" if cls == "MaxPooling2D" else "avg"))
        elif cls == "GlobalAveragePooling2D":
            y = to_hwc(a).mean(axis=(0, 1))
        elif cls == "GlobalMaxPooling2D":
            y = to_hwc(a).max(axis=(0, 1))
        elif cls == "Add":
            y = sum(ins)
        elif cls == "Concatenate":
            y = np.concatenate(ins, axis=c["axis"] - 1 if c["axis"] > 0 else c["axis"])
        elif cls == "BatchNormalization":
            ax = c["axis"][0] if isinstance(c["axis"], list) else c["axis"]
            ch = a.shape[ax - 1 if ax > 0 else ax]
            k = 0
            gamma = w[k] if c["scale"] else np.ones(ch)
            k += c["scale"]
            beta = w[k] if c["center"] else np.zeros(ch)
            k += c["center"]
            mean, var = w[k], w[k + 1]
            eps = float(np.float32(c["epsilon"]))  # Keras adds it in float32
            shp = [1] * a.ndim
            shp[ax - 1 if ax > 0 else ax] = ch
            r = lambda v: v.reshape(shp)
            y = r(gamma) * (a - r(mean)) / np.sqrt(r(var) + eps) + r(beta)
        elif cls == "Activation":
            y = a
        elif cls == "ReLU":
            y = np.maximum(a, 0.0)
        elif cls == "Dropout":
            y = a
        elif cls == "Flatten":
            # Keras: a channels_first Flatten transposes to channels_last first.
            if a.ndim == 3 and c.get("data_format", "channels_last") == "channels_first":
                a = np.transpose(a, (1, 2, 0))
            y = a.reshape(-1)
        elif cls == "Reshape":
            y = a.reshape(c["target_shape"])
        elif cls == "ZeroPadding2D":
            (t, b), (le, ri) = c["padding"]
            y = from_hwc(np.pad(to_hwc(a), ((t, b), (le, ri), (0, 0))))
        else:
            raise ValueError("evaluate: no semantics for " + cls)
        if cls == "Activation" or act != "linear":
            if act == "relu":
                y = np.maximum(y, 0.0)
            elif act == "softmax":
                assert l["name"] == out_name, "softmax only at the output"
            elif act != "linear":
                raise ValueError("activation " + act)
        vals[l["name"]] = y
    return vals[out_name]


# ---------------------------------------------------------------- writers

def layer_entry_k2(m, l):
    e = {"class_name": l["cls"], "config": l["cfg"]}
    if m.kind == "functional":
        e["name"] = l["name"]
        e["inbound_nodes"] = [[[n, 0, 0, {}] for n in l["inputs"]]] if l["inputs"] else []
    return e


def config_tf2(m):
    layers = [layer_entry_k2(m, l) for l in m.layers]
    if m.kind == "sequential":
        return {"class_name": "Sequential", "config": {"name": m.name, "layers": layers}}
    return {"class_name": "Functional",
            "config": {"name": m.name, "layers": layers,
                       "input_layers": [[m.layers[0]["name"], 0, 0]],
                       "output_layers": [[m.layers[-1]["name"], 0, 0]]}}


def config_legacy(m):
    """Keras <= 2.2.2: Sequential config is a bare list, no InputLayer; the
    first layer carries batch_input_shape."""
    assert m.kind == "sequential" and m.layers[0]["cls"] == "InputLayer"
    layers = []
    for i, l in enumerate(m.layers[1:]):
        cfg = dict(l["cfg"])
        if i == 0:
            cfg["batch_input_shape"] = m.layers[0]["cfg"]["batch_input_shape"]
        layers.append({"class_name": l["cls"], "config": cfg})
    return {"class_name": "Sequential", "config": layers}


def config_keras3(m):
    def tensor(n):
        return {"class_name": "__keras_tensor__",
                "config": {"shape": None, "dtype": "float32", "keras_history": [n, 0, 0]}}
    layers = []
    for l in m.layers:
        cfg = dict(l["cfg"])
        if l["cls"] == "InputLayer":
            cfg = {"batch_shape": cfg["batch_input_shape"], "dtype": "float32",
                   "sparse": False, "name": l["name"]}
        e = {"module": "keras.layers", "class_name": l["cls"], "config": cfg,
             "registered_name": None, "name": l["name"]}
        if l["inputs"]:
            args = [tensor(l["inputs"][0])] if len(l["inputs"]) == 1 else \
                [[tensor(n) for n in l["inputs"]]]
            e["inbound_nodes"] = [{"args": args, "kwargs": {}}]
        else:
            e["inbound_nodes"] = []
        layers.append(e)
    return {"module": "keras", "class_name": "Functional", "registered_name": "Functional",
            "config": {"name": m.name, "trainable": True, "layers": layers,
                       "input_layers": [m.layers[0]["name"], 0, 0],
                       "output_layers": [m.layers[-1]["name"], 0, 0]}}


def write_model(path, m, dialect="tf2", version="2.15.0", vlen_config=False, suffix=":0",
                split_names=0, config_text=None, mutate=None, weight_dtype=None):
    """mutate(entries) may edit the per-layer weight entries
    [(layer, [(full name, array)])] before writing."""
    cfg = {"tf2": config_tf2, "legacy": config_legacy, "keras3": config_keras3}[dialect](m)
    text = config_text if config_text is not None else json.dumps(cfg)
    entries = []
    for l in m.layers:
        if l["cls"] == "InputLayer" and (m.kind == "sequential"):
            continue  # Sequential.layers has no InputLayer
        entries.append((l["name"], [("%s/%s%s" % (l["name"], n, suffix), a)
                                    for n, a in l["weights"]]))
    if mutate:
        mutate(entries)
    with h5py.File(path, "w") as f:
        if text is not False:
            f.attrs["model_config"] = text if vlen_config else text.encode("utf8")
        f.attrs["keras_version"] = version.encode()
        f.attrs["backend"] = b"tensorflow"
        g = f.create_group("model_weights")
        names = [n.encode("utf8") for n, _ in entries]
        if split_names:
            for k in range(0, len(names), split_names):
                g.attrs["layer_names%d" % (k // split_names)] = np.array(names[k:k + split_names])
        else:
            g.attrs["layer_names"] = np.array(names)
        g.attrs["backend"] = b"tensorflow"
        g.attrs["keras_version"] = version.encode()
        for n, ws in entries:
            lg = g.create_group(n)
            lg.attrs["weight_names"] = np.array([wn.encode("utf8") for wn, _ in ws]) if ws \
                else np.array([])  # Keras: an empty float64 array
            for wn, a in ws:
                lg.create_dataset(wn, data=a.astype(weight_dtype) if weight_dtype else a)


def write_expected(path, m, x):
    y = evaluate(m, x)
    with h5py.File(path, "w") as f:
        f.create_dataset("input", data=x.astype(np.float32))
        f.create_dataset("logits", data=np.asarray(y, dtype=np.float64).reshape(-1))
        f.attrs["layout"] = "NCHW" if m.df == "channels_first" else "NHWC"


# ---------------------------------------------------------------- models

def vgg():
    m = Model("vgg_like", "sequential")
    m.add("InputLayer", "input_1", {"batch_input_shape": [None, 12, 12, 3], "sparse": False,
                                    "ragged": False})
    add_conv(m, "conv2d", 3, 8, 3, padding="same", act="relu")
    add_conv(m, "conv2d_1", 8, 8, 2, padding="same", act="relu")      # even kernel: asymmetric
    add_pool(m, "MaxPooling2D", "max_pooling2d", 2)
    add_bn(m, "batch_normalization", 8, eps=1e-3)
    add_conv(m, "conv2d_2", 8, 6, 3, s=2, padding="same")             # stride-2 same: 0 top, 1 bottom
    m.add("Activation", "activation", {"activation": "relu"})
    add_pool(m, "AveragePooling2D", "average_pooling2d", 2, 2, padding="same")  # 3 -> 2, padded
    add_pool(m, "MaxPooling2D", "max_pooling2d_1", 2, 1, padding="same")
    m.add("Dropout", "dropout", {"rate": 0.5, "noise_shape": None, "seed": None})
    m.add("Flatten", "flatten", {"data_format": "channels_last"})
    add_dense(m, "dense", 24, 16, act="relu")
    add_dense(m, "dense_1", 16, 5, act="softmax")
    return m


def resnet():
    m = Model("resnet_like", "functional")
    m.add("InputLayer", "input_1", {"batch_input_shape": [None, 8, 8, 4], "sparse": False,
                                    "ragged": False})
    add_conv(m, "conv2d", 4, 8, 3, padding="same", bias=False)
    add_bn(m, "batch_normalization", 8, eps=1.001e-5)
    m.add("ReLU", "re_lu", {"max_value": None, "negative_slope": 0.0, "threshold": 0.0})
    add_conv(m, "conv2d_1", 8, 8, 3, padding="same", dil=2)
    add_bn(m, "batch_normalization_1", 8, center=False)
    m.add("Add", "add", {}, inputs=["re_lu", "batch_normalization_1"])
    m.add("Activation", "activation", {"activation": "relu"})
    m.add("ZeroPadding2D", "zero_padding2d",
          {"padding": [[1, 0], [0, 1]], "data_format": "channels_last"})
    add_dwconv(m, "depthwise_conv2d", 8, 2, 3, s=2, act="relu")      # 9x9 -> 4x4, 16 ch
    add_conv(m, "conv2d_2", 16, 12, 1, groups=4)
    add_bn(m, "batch_normalization_2", 12, scale=False)
    m.add("GlobalAveragePooling2D", "global_average_pooling2d",
          {"data_format": "channels_last", "keepdims": False})
    m.add("GlobalAveragePooling2D", "global_average_pooling2d_1",
          {"data_format": "channels_last"}, inputs="activation")
    m.add("Concatenate", "concatenate", {"axis": -1},
          inputs=["global_average_pooling2d", "global_average_pooling2d_1"])
    add_dense(m, "dense", 20, 7)
    m.add("Activation", "predictions", {"activation": "softmax"})
    return m


def legacy():
    """Keras 2.1-style Sequential: flat BN on a permuted Flatten output."""
    m = Model("legacy_seq", "sequential")
    m.add("InputLayer", "input_1", {"batch_input_shape": [None, 6, 5, 3]})
    add_conv(m, "conv2d_1", 3, 4, 3, padding="same", act="relu")
    add_pool(m, "AveragePooling2D", "average_pooling2d_1", 2, 2, padding="same")  # 3x3
    m.add("Flatten", "flatten_1", {})
    add_bn(m, "batch_normalization_1", 36, axis=-1)
    add_dense(m, "dense_1", 36, 9, act="relu")
    m.add("Dropout", "dropout_1", {"rate": 0.25})
    add_dense(m, "dense_2", 9, 4)
    return m


def keras3():
    m = Model("k3_functional", "functional")
    m.add("InputLayer", "input_layer", {"batch_input_shape": [None, 7, 7, 3]})
    add_sepconv(m, "separable_conv2d", 3, 2, 5, 3, padding="same", act="relu")
    add_pool(m, "MaxPooling2D", "max_pooling2d", 2, 2, padding="same")  # 7 -> 4
    m.add("Flatten", "flatten", {"data_format": "channels_last"})
    m.add("GlobalMaxPooling2D", "global_max_pooling2d",
          {"data_format": "channels_last", "keepdims": False}, inputs="max_pooling2d")
    m.add("Concatenate", "concatenate", {"axis": -1}, inputs=["global_max_pooling2d", "flatten"])
    add_dense(m, "dense", 85, 6, act="softmax")
    return m


def channels_first():
    m = Model("cf_seq", "sequential", data_format="channels_first")
    m.add("InputLayer", "input_1", {"batch_input_shape": [None, 2, 6, 5]})
    add_conv(m, "conv2d", 2, 3, 3, padding="same", act="relu")
    add_pool(m, "MaxPooling2D", "max_pooling2d", 2)
    add_bn(m, "batch_normalization", 3, axis=1)
    m.add("Flatten", "flatten", {"data_format": "channels_first"})
    add_dense(m, "dense", 18, 4)
    return m


def mlp_reshape():
    m = Model("mlp_reshape", "functional")
    m.add("InputLayer", "input_1", {"batch_input_shape": [None, 10]})
    add_dense(m, "dense", 10, 16, act="relu")
    m.add("Reshape", "reshape", {"target_shape": [1, 1, 16]})
    add_conv(m, "conv2d", 16, 6, 1, act="relu")
    m.add("Flatten", "flatten", {"data_format": "channels_last"})
    add_dense(m, "dense_1", 6, 3)
    return m


def small():
    m = Model("small", "sequential")
    m.add("InputLayer", "input_1", {"batch_input_shape": [None, 6, 6, 2]})
    add_conv(m, "conv2d", 2, 4, 3, padding="same", act="relu")
    m.add("Flatten", "flatten", {"data_format": "channels_last"})
    add_dense(m, "dense", 144, 3)
    return m


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    P = lambda n: os.path.join(out, n)

    def valid(name, m, **kw):
        write_model(P(name + ".h5"), m, **kw)
        shape = m.layers[0]["cfg"]["batch_input_shape"][1:]
        write_expected(P(name + ".expected.h5"), m, RNG.uniform(-1, 1, size=shape).astype(np.float32))

    valid("vgg", vgg())
    valid("resnet", resnet(), version="2.12.0")
    valid("legacy", legacy(), dialect="legacy", version="2.1.6")
    valid("keras3", keras3(), dialect="keras3", version="3.3.3", vlen_config=True, suffix="",
          split_names=2)
    valid("cf", channels_first(), weight_dtype=np.float64)  # float64 holding float32 values
    valid("mlp", mlp_reshape(), vlen_config=True)

    # ---- malformed and unsupported variants of `small`
    s = small()
    cfg = config_tf2(s)
    write_model(P("bad_noconfig.h5"), s, config_text=False)
    write_model(P("bad_json.h5"), s, config_text=json.dumps(cfg, indent=1)[:-40])
    nan_cfg = json.loads(json.dumps(cfg))
    nan_cfg["config"]["layers"][1]["config"]["bias_initializer"] = \
        {"class_name": "Constant", "config": {"value": float("nan")}}
    write_model(P("bad_nan.h5"), s, config_text=json.dumps(nan_cfg, indent=1))

    lam = small()
    lam.layers.insert(2, {"cls": "Lambda", "name": "lambda_1", "inputs": ["conv2d"],
                          "cfg": {"name": "lambda_1", "function": ["4wEAAAAAAAAA", None, None]},
                          "weights": []})
    write_model(P("bad_lambda.h5"), lam)

    def drop_bias(entries):
        for n, ws in entries:
            if n == "dense":
                del ws[1]
    write_model(P("bad_wcount.h5"), s, mutate=drop_bias)

    def transpose_kernel(entries):
        for n, ws in entries:
            if n == "dense":
                ws[0] = (ws[0][0], ws[0][1].T.copy())
    write_model(P("bad_wshape.h5"), s, mutate=transpose_kernel)

    def f16(entries):
        for n, ws in entries:
            if n == "conv2d":
                ws[0] = (ws[0][0], ws[0][1].astype(np.float16))
    write_model(P("bad_f16.h5"), s, mutate=f16)

    def f64_inexact(entries):
        for n, ws in entries:
            if n == "dense":
                ws[1] = (ws[1][0], ws[1][1].astype(np.float64) + 1e-12)
    write_model(P("bad_f64.h5"), s, mutate=f64_inexact)

    def drop_layer(entries):
        del entries[[n for n, _ in entries].index("dense")]
    write_model(P("bad_nlayers.h5"), s, mutate=drop_layer)

    def rename_ds(entries):
        for n, ws in entries:
            if n == "dense":
                ws[0] = ("dense/kernel_renamed:0", ws[0][1])
    write_model(P("bad_missingds.h5"), s, mutate=rename_ds)
    # weight_names still says dense/kernel:0: patch the attribute afterwards
    with h5py.File(P("bad_missingds.h5"), "a") as f:
        f["model_weights/dense"].attrs["weight_names"] = np.array([b"dense/kernel:0",
                                                                   b"dense/bias:0"])

    tanh = small()
    tanh.layer("conv2d")["cfg"]["activation"] = "tanh"
    write_model(P("bad_tanh.h5"), tanh)

    mid = small()
    mid.layer("conv2d")["cfg"]["activation"] = "softmax"
    write_model(P("bad_midsoftmax.h5"), mid)

    zp = Model("zp_pool", "sequential")
    zp.add("InputLayer", "input_1", {"batch_input_shape": [None, 6, 6, 2]})
    zp.add("ZeroPadding2D", "zero_padding2d", {"padding": [[1, 1], [1, 1]]})
    add_pool(zp, "MaxPooling2D", "max_pooling2d", 2)
    zp.add("Flatten", "flatten", {})
    add_dense(zp, "dense", 32, 2)
    write_model(P("bad_zeropool.h5"), zp)

    shared = Model("shared", "functional")
    shared.add("InputLayer", "input_1", {"batch_input_shape": [None, 4]})
    add_dense(shared, "dense", 4, 4)
    write_model(P("bad_shared.h5"), shared, config_text=json.dumps({
        "class_name": "Functional", "config": {
            "name": "shared", "layers": [
                {"class_name": "InputLayer", "name": "input_1",
                 "config": {"batch_input_shape": [None, 4], "name": "input_1"},
                 "inbound_nodes": []},
                {"class_name": "Dense", "name": "dense",
                 "config": {"name": "dense", "units": 4, "activation": "linear", "use_bias": True},
                 "inbound_nodes": [[["input_1", 0, 0, {}]], [["dense", 0, 0, {}]]]}],
            "input_layers": [["input_1", 0, 0]], "output_layers": [["dense", 1, 0]]}}))

    with open(P("bad_nothdf5.h5"), "w") as f:
        f.write("this is not an HDF5 file\n")

    mixed = small()
    mixed.layer("conv2d")["cfg"]["dtype"] = {"class_name": "Policy",
                                              "config": {"name": "mixed_float16"}}
    write_model(P("bad_mixed.h5"), mixed)

    # ---- mutation sweep: each file changes one config value of a valid
    # model to a wrong type, a bad value or a dangling reference.  The
    # importer must either accept it (the change was harmless) or reject it
    # with a one-line message; never crash or leak (run under ASan).
    fuzz(P)


FUZZ_COUNT = 80
FUZZ_VALUES = [None, -1, 0, 1, 10 ** 12, -(10 ** 12), 1.5, "x", "same", "channels_first", [],
               {}, [0, 0], [1, 2, 3], [[1, 2], [3]], True, "input_1", ["nope", 0, 0, {}],
               [None, 4, 4, 3], "softmax", 4097, 2 ** 31]


def fuzz(P):
    rng = np.random.default_rng(7)
    sources = [(resnet(), "tf2"), (vgg(), "tf2"), (keras3(), "keras3"), (legacy(), "legacy")]
    log = open(P("fuzz_list.txt"), "w")
    for k in range(FUZZ_COUNT):
        m, dialect = sources[k % len(sources)]
        cfg = {"tf2": config_tf2, "legacy": config_legacy, "keras3": config_keras3}[dialect](m)
        cfg = json.loads(json.dumps(cfg))
        # collect (container, key) pairs anywhere in the layer list
        spots = []

        def walk(o, depth):
            if depth > 6:
                return
            if isinstance(o, dict):
                for key in o:
                    spots.append((o, key))
                    walk(o[key], depth + 1)
            elif isinstance(o, list):
                for i in range(len(o)):
                    spots.append((o, i))
                    walk(o[i], depth + 1)
        walk(cfg["config"], 0)
        o, key = spots[rng.integers(len(spots))]
        old = o[key]
        o[key] = FUZZ_VALUES[rng.integers(len(FUZZ_VALUES))]
        log.write("fuzz_%02d %s[%r]: %.60s -> %r\n" % (k, m.name, key, json.dumps(old), o[key]))
        write_model(P("fuzz_%02d.h5" % k), m, dialect=dialect, config_text=json.dumps(cfg),
                    suffix="" if dialect == "keras3" else ":0")


if __name__ == "__main__":
    main()
