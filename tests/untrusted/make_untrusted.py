"""Files for tests/test_untrusted.c (issue 15): fixtures whose values,
sizes or names a reader must not trust.  Run with Debian's Python (h5py).

  damage SRC DST WHAT   copy SRC (a fixture with trace 'fastpath'), set every
                        relevance of that trace to 12345 (an arbitrary
                        trace), drop its activations, then break one value:
                        nan | inf (a Conv2D weight), varneg (a BatchNorm
                        variance < 0), varzero (var = 0 and bn_eps = 0)
  fill DST N            a 3-layer Dense N x N net whose weights are HDF5
                        fill values: a file of tens of KB that declares
                        3 N^2 parameters
  conv DST H            a conv net (16 -> 32 -> 32 channels, H x H, batch 2)
  escname SRC DST       the second layer renamed with terminal escape
                        sequences, and the same in the description
  nulname SRC DST       the second layer's 'name' attribute a fixed-length
                        string with a NUL inside ('<name>' NUL 'evil')
"""
import shutil
import sys

import h5py
import numpy as np

f32 = np.float32
S = h5py.string_dtype("utf-8")


def strs(v):
    return np.array(v, dtype=S)


def layer_groups(f):
    return sorted(f["network"].keys())


def first_of_kind(f, kind):
    for k in layer_groups(f):
        kd = f["network"][k].attrs["kind"]
        kd = kd.decode() if isinstance(kd, bytes) else str(kd)
        if kd == kind:
            return f["network"][k]
    raise SystemExit("no %s layer" % kind)


def damage(src, dst, what):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        t = f["traces/fastpath"]
        for k in t["relevance"]:
            t["relevance"][k][...] = f32(12345)
        if "activation" in t:
            del t["activation"]
        if what in ("nan", "inf"):
            d = first_of_kind(f, "Conv2D")["weight"]
            a = d[...]
            a.flat[5] = np.nan if what == "nan" else np.inf
            d[...] = a
        elif what in ("varneg", "varzero"):
            g = first_of_kind(f, "BatchNorm")
            a = g["var"][...]
            a[1] = -0.5 if what == "varneg" else 0.0
            g["var"][...] = a
            if what == "varzero":
                g.attrs["bn_eps"] = f32(0)
        else:
            raise SystemExit("unknown damage " + what)


def new_fixture(dst, batch):
    f = h5py.File(dst, "w")
    f.attrs.update(format="lrp-oracle-fixture", format_version=np.int32(1), layout="NCHW",
                   flatten_order="CHW", batch=np.int32(batch), seed=np.uint64(0))
    return f


def add(f, order, name, kind, **a):
    g = f["network"].create_group("%03d_%s" % (len(order), name))
    g.attrs.update(name=name, kind=kind, **a)
    order.append(name)
    return g


def fill(dst, n):
    with new_fixture(dst, 1) as f:
        f.create_group("network")
        order = []
        add(f, order, "x", "Input", shape=np.array([n], np.int64))
        prev = "x"
        for k in range(3):
            g = add(f, order, "fc%d" % k, "Dense", inputs=strs([prev]), units=n, has_bias=1)
            g.create_dataset("weight", shape=(n, n), dtype=f32, fillvalue=f32(1e-3))
            g.create_dataset("bias", shape=(n,), dtype=f32, fillvalue=f32(0))
            prev = "fc%d" % k
        f["network"].attrs["order"] = strs(order)
        f.create_dataset("data/input", shape=(1, n), dtype=f32, fillvalue=f32(0.5))
        f["data/target"] = np.zeros(1, np.int32)


def conv(dst, h):
    rng = np.random.default_rng(1)
    with new_fixture(dst, 2) as f:
        f.create_group("network")
        order = []
        add(f, order, "x", "Input", shape=np.array([16, h, h], np.int64))
        prev, cin = "x", 16
        for k in range(2):
            g = add(f, order, "c%d" % k, "Conv2D", inputs=strs([prev]), units=32, has_bias=1,
                    kernel=np.array([3, 3]), stride=np.array([1, 1]),
                    padding=np.array([1, 1, 1, 1]), dilation=np.array([1, 1]), groups=1)
            g["weight"] = (rng.standard_normal((32, cin, 3, 3)) * 0.1).astype(f32)
            g["bias"] = (rng.standard_normal(32) * 0.1).astype(f32)
            cin = 32
            add(f, order, "r%d" % k, "ReLU", inputs=strs(["c%d" % k]))
            prev = "r%d" % k
        add(f, order, "fl", "Flatten", inputs=strs([prev]))
        g = add(f, order, "fc", "Dense", inputs=strs(["fl"]), units=10, has_bias=1)
        g["weight"] = (rng.standard_normal((10, 32 * h * h)) * 0.01).astype(f32)
        g["bias"] = np.zeros(10, f32)
        f["network"].attrs["order"] = strs(order)
        f["data/input"] = rng.random((2, 16, h, h)).astype(f32)
        f["data/target"] = np.zeros(2, np.int32)


def rename(f, old, new):
    """Renames layer `old` to `new` everywhere the format names it."""
    order = [o.decode() if isinstance(o, bytes) else str(o) for o in f["network"].attrs["order"]]
    i = order.index(old)
    order[i] = new
    for top in ("network", "rules"):
        if top in f and "%03d_%s" % (i, old) in f[top]:
            f[top].move("%03d_%s" % (i, old), "%03d_%s" % (i, new))
    f["network/%03d_%s" % (i, new)].attrs["name"] = new
    for k in f["network"]:
        g = f["network"][k]
        if "inputs" in g.attrs:
            ins = [s.decode() if isinstance(s, bytes) else str(s) for s in g.attrs["inputs"]]
            if old in ins:
                g.attrs["inputs"] = strs([new if s == old else s for s in ins])
    f["network"].attrs["order"] = strs(order)
    return i


def second_name(f):
    o = f["network"].attrs["order"][1]
    return o.decode() if isinstance(o, bytes) else str(o)


def escname(src, dst):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        rename(f, second_name(f), "L\x1b[2J\x1b]0;pwned\x07\u009b31m")
        f.attrs["description"] = "desc \x1b[31mred\x1b[0m \x9b"


def nulname(src, dst):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        name = second_name(f)
        raw = name.encode() + b"\x00evil"
        g = f["network/001_%s" % name]
        g.attrs.create("name", np.array(raw, dtype="S%d" % len(raw)))


def main(argv):
    cmd = argv[1]
    if cmd == "damage":
        damage(argv[2], argv[3], argv[4])
    elif cmd == "fill":
        fill(argv[2], int(argv[3]))
    elif cmd == "conv":
        conv(argv[2], int(argv[3]))
    elif cmd == "escname":
        escname(argv[2], argv[3])
    elif cmd == "nulname":
        nulname(argv[2], argv[3])
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
