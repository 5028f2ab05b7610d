"""lrp_torch -- PyTorch <-> lrp-oracle fixture adapter.

The fixture format is docs/FORMAT.md (written and read in C by core/h5io.c).
This module gives PyTorch users four things:

  fixture_to_module(path)        a torch.nn.Module that evaluates the fixture's
                                 network exactly as the format defines it
                                 (float32, NCHW, explicit per-side padding,
                                 dilation, groups, BN with its stored epsilon,
                                 count_include_pad, flatten order C,H,W)
  export_module(model, x, path)  a user's model (Sequential of supported
                                 layers, torchvision-style VGG / ResNet
                                 BasicBlock, transformer encoders of
                                 nn.MultiheadAttention / SelfAttention,
                                 LayerNorm, GELU, Embedding, ..., anything
                                 torch.fx can trace into supported layers)
                                 -> a fixture file
  capture_relevance(...)         per-layer relevance of a user-supplied LRP
                                 function, collected with forward hooks
  write_trace(path, source, R)   adds a trace (per-layer relevance plus
                                 provenance) to an existing fixture

Files are written to a temporary name in the target directory and renamed
over the target only when complete (and, when an lrp-oracle binary is known,
only when `lrp-oracle info` accepts them): a failure never clobbers the
user's file.

Requires numpy, h5py and torch (Debian: python3-numpy python3-h5py
python3-torch; torch 1.13 is enough).  No torchvision needed.
"""

import collections
import operator
import os
import shutil
import subprocess
import tempfile

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "RMSNorm", "SelfAttention", "FixtureAttention", "FixturePosition", "FixtureError", "UnsupportedModuleError", "ExportError",
    "read_fixture", "write_fixture", "fixture_to_module", "FixtureModule",
    "export_module", "module_to_layers", "capture_relevance", "write_trace",
    "read_trace", "epsilon_rules", "entry_name", "verify_with_cli",
]

FORMAT_MAGIC = "lrp-oracle-fixture"
FORMAT_VERSION = 1
# The token layers (docs/TRANSFORMERS.md) need format_version 2, with root
# attribute token_layout = "TF"; a file without them stays version 1.
FORMAT_VERSION_MAX = 2
V2_KINDS = ("LayerNorm", "RMSNorm", "GELU", "SiLU", "Tanh", "Softmax", "Mul",
            "MultiHeadAttention", "Embedding", "Position", "SelectToken", "ToTokens",
            "ClsToken", "AttnScores", "AttnSoftmax", "AttnContext")
NAME_MAX = 63  # bytes, LRP_NAME_MAX - 1

# Name tables of include/lrp.h (LRP_*_LIST); matched case-sensitively.
LAYER_KINDS = ("Input", "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool",
               "Add", "Concatenate", "BatchNorm", "ReLU", "Flatten", "Reshape", "Dropout",
               "LayerNorm", "RMSNorm", "GELU", "SiLU", "Tanh", "Softmax", "Mul",
               "MultiHeadAttention", "Embedding", "Position", "SelectToken", "ToTokens",
               "ClsToken", "AttnScores", "AttnSoftmax", "AttnContext")
RULES = ("lrp0", "epsilon", "gamma", "alphabeta", "zplus", "wsquare", "flat", "zbox",
         "pass", "wta", "ln_linear", "ln_fine", "identity", "taylor", "uniform", "attnlrp",
         "cplrp")
STABILIZERS = ("sign0_pos", "signbit", "sign0_zero", "zero_only", "skip_zero", "positive")
FLAGS = ("gamma_generalized", "zennit_gamma_drop0", "innvestigate_ab_fullbias",
         "captum_a1b0", "wta_split_ties", "bn_canonize", "bn_fine", "captum_gamma_fullbias")
COMPOSITES = ("EpsilonPlus", "EpsilonPlusFlat", "EpsilonAlpha2Beta1",
              "EpsilonAlpha2Beta1Flat", "EpsilonGammaBox", "SequentialPresetA",
              "SequentialPresetB", "AttnLRP", "CPLRP")
EPS_DEFAULT = np.float32(1e-6)  # 0x1.0c6f7ap-20, lrp_rule_default's eps


class FixtureError(ValueError):
    """A fixture file this module cannot read or write as the format says."""


class UnsupportedModuleError(ValueError):
    """export_module met a module or operation with no fixture equivalent."""


class ExportError(RuntimeError):
    """export_module produced a file that does not reproduce the model."""


def entry_name(index, name):
    """Member name of layer `index` under /network, /rules, .../relevance."""
    return "%03d_%s" % (index, name)


def _str(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == (1,):
        return _str(v[0])
    return str(v)


def _strs(v):
    if v is None:
        return []
    if isinstance(v, (str, bytes)):
        return [_str(v)]
    return [_str(s) for s in np.asarray(v).reshape(-1)]


def _ints(v):
    return [int(t) for t in np.asarray(v).reshape(-1)]


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

_GEOM_INTS = ("units", "has_bias", "groups", "count_include_pad", "has_weight",
              # the attention kinds (docs/FORMAT.md "Format version 2")
              "heads", "causal", "use_padding_mask", "vocab", "features", "max_len", "index")
_GEOM_VECS = ("shape", "kernel", "stride", "padding", "dilation", "target_shape")
_PARAMS = ("weight", "bias", "gamma", "beta", "mean", "var", "in_proj_weight", "in_proj_bias",
           "out_proj_weight", "out_proj_bias", "table", "cls_token")
# attribute -> numpy type the writer stores it as (the C reader's types:
# LRP_A_I64 -> int64, LRP_A_I32 / LRP_A_BOOL -> int32, LRP_A_F32 -> float32)
_V2_ATTRS = (("heads", np.int32), ("scale", np.float32), ("causal", np.int32),
             ("use_padding_mask", np.int32), ("mask_value", np.float32), ("vocab", np.int64),
             ("features", np.int64), ("max_len", np.int64), ("index", np.int64))


def read_fixture(path):
    """Reads a fixture into plain Python: a dict with keys
    attrs (root attributes), layers (list of dicts in execution order:
    name, kind, inputs, geometry, parameter arrays as float32 numpy),
    input, target (or None), relevance_out (or None), rules ({name: dict}),
    traces ({source: {"attrs", "rules", "relevance", "relevance_lo"}}).
    Checks the structure the module relies on; the C reader checks more."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise FixtureError("%s: cannot open as HDF5: %s" % (path, e))
    with f:
        attrs = {k: (_str(v) if isinstance(v, (str, bytes)) else v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT_MAGIC:
            raise FixtureError("%s: /: attribute 'format' is %r, expected %r"
                               % (path, attrs.get("format"), FORMAT_MAGIC))
        version = int(attrs.get("format_version", -1))
        if not FORMAT_VERSION <= version <= FORMAT_VERSION_MAX:
            raise FixtureError("%s: /: format_version %r not supported"
                               % (path, attrs.get("format_version")))
        if version >= 2 and attrs.get("token_layout") != "TF":
            raise FixtureError("%s: /: token_layout %r: version 2 needs 'TF'"
                               % (path, attrs.get("token_layout")))
        if attrs.get("layout") != "NCHW" or attrs.get("flatten_order") != "CHW":
            raise FixtureError("%s: /: layout %r / flatten_order %r: only NCHW / CHW"
                               % (path, attrs.get("layout"), attrs.get("flatten_order")))
        if "network" not in f:
            raise FixtureError("%s: /network: missing group" % path)
        order = _strs(f["network"].attrs.get("order"))
        layers = []
        for i, name in enumerate(order):
            en = entry_name(i, name)
            if en not in f["network"]:
                raise FixtureError("%s: /network/%s: missing group" % (path, en))
            g = f["network"][en]
            kind = _str(g.attrs["kind"])
            if kind not in LAYER_KINDS:
                raise FixtureError("%s: /network/%s: unknown layer kind %r" % (path, en, kind))
            L = {"name": name, "kind": kind, "inputs": _strs(g.attrs.get("inputs"))}
            for k in _GEOM_INTS:
                if k in g.attrs:
                    L[k] = int(np.asarray(g.attrs[k]).reshape(-1)[0])
            for k in _GEOM_VECS:
                if k in g.attrs:
                    L[k] = _ints(g.attrs[k])
            if "bn_eps" in g.attrs:
                L["bn_eps"] = np.float32(np.asarray(g.attrs["bn_eps"]).reshape(-1)[0])
            if "eps" in g.attrs:  # LayerNorm, RMSNorm
                L["eps"] = np.float32(np.asarray(g.attrs["eps"]).reshape(-1)[0])
            if "approximate" in g.attrs:  # GELU
                L["approximate"] = _str(g.attrs["approximate"])
            for k in ("scale", "mask_value"):  # MultiHeadAttention
                if k in g.attrs:
                    L[k] = np.float32(np.asarray(g.attrs[k]).reshape(-1)[0])
            if kind == "Input" and "dtype" in g.attrs:  # "token": reads /data/tokens
                L["dtype"] = _str(g.attrs["dtype"])
            if kind in V2_KINDS and version < 2:
                raise FixtureError("%s: /network/%s: layer kind %r needs format_version 2"
                                   % (path, en, kind))
            for p in _PARAMS:
                if p in g:
                    L[p] = np.asarray(g[p][()], dtype=np.float32)
            layers.append(L)
        d = f["data"]
        tokens = layers and layers[0].get("dtype") == "token"
        if tokens and "tokens" not in d:
            raise FixtureError("%s: /data/tokens: missing (the Input %r reads token ids)"
                               % (path, layers[0]["name"]))
        if not tokens and "input" not in d:
            raise FixtureError("%s: /data/input: missing dataset" % path)
        kpm = None
        if "key_padding_mask" in d:
            kpm = np.asarray(d["key_padding_mask"][()])
            if kpm.ndim != 2 or not np.isin(kpm, (0, 1)).all():
                raise FixtureError("%s: /data/key_padding_mask: must be (batch, T) of 0 / 1"
                                   % path)
            kpm = kpm.astype(np.uint8)
        out = {
            "path": path,
            "attrs": attrs,
            "layers": layers,
            # a token Input: the ids (int64), the same array as "tokens"
            "input": (np.asarray(d["tokens"][()], dtype=np.int64) if tokens
                      else np.asarray(d["input"][()], dtype=np.float32)),
            "tokens": np.asarray(d["tokens"][()], dtype=np.int64) if tokens else None,
            "key_padding_mask": kpm,
            "target": np.asarray(d["target"][()], dtype=np.int64) if "target" in d else None,
            "relevance_out": (np.asarray(d["relevance_out"][()], dtype=np.float32)
                              if "relevance_out" in d else None),
            "rules": _read_rules(f, order),
            "traces": {},
        }
        if "traces" in f:
            for src, tg in f["traces"].items():
                out["traces"][src] = _read_trace_group(tg, order)
        return out


def _read_rules(parent, order):
    res = {}
    if "rules" not in parent:
        return res
    for i, name in enumerate(order):
        en = entry_name(i, name)
        if en in parent["rules"]:
            a = parent["rules"][en].attrs
            r = {}
            for k, v in a.items():
                if k in ("rule", "stabilizer"):
                    r[k] = _str(v)
                elif k == "flags":
                    r[k] = _strs(v)
                elif k == "bias":
                    r[k] = int(np.asarray(v).reshape(-1)[0])
                else:
                    r[k] = np.float32(np.asarray(v).reshape(-1)[0])
            res[name] = r
    return res


def _read_trace_group(tg, order):
    t = {"attrs": {k: (_str(v) if isinstance(v, (str, bytes)) else v) for k, v in tg.attrs.items()},
         "rules": _read_rules(tg, order), "relevance": {}, "relevance_lo": {}}
    for grp in ("relevance", "relevance_lo"):
        if grp in tg:
            for i, name in enumerate(order):
                en = entry_name(i, name)
                if en in tg[grp]:
                    t[grp][name] = np.asarray(tg[grp][en][()], dtype=np.float32)
    return t


def read_trace(path, source):
    """The trace `source` of a fixture: {"attrs", "rules", "relevance",
    "relevance_lo"} with relevance keyed by layer name."""
    fx = read_fixture(path)
    if source not in fx["traces"]:
        raise FixtureError("%s: /traces/%s: no such trace (traces: %s)"
                           % (path, source, ", ".join(sorted(fx["traces"])) or "none"))
    return fx["traces"][source]


# ---------------------------------------------------------------------------
# The fixture network as a torch module
# ---------------------------------------------------------------------------
#
# Every layer that an LRP library attaches a rule to is a *standard*
# torch.nn module (nn.Linear, nn.Conv2d, nn.BatchNorm1d/2d, nn.ReLU,
# nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten),
# because Zennit maps rules with isinstance() on these classes and Captum
# with type(m) in its table: a custom class silently gets the plain
# gradient (Zennit) or raises TypeError (Captum).  Operations no peer
# attaches a rule to (the input, explicit asymmetric padding, concatenation,
# reshape, the flatten after a global pool) are plain functions, not
# modules, so Captum's leaf-module walk never meets a class it refuses.
# Add is the module the chosen peer knows (peer="zennit": zennit.layer.Sum
# over the stacked inputs, the module Zennit's ResNet canonizer inserts;
# peer="captum": captum's Addition_Module, chained for more than two
# inputs; default: a plain left-to-right `+`).
#
# Each layer is a _Node (not an nn.Module): it holds the standard module,
# is callable, accepts forward hooks, and its `forward` may be replaced
# per instance (what tests/python and example_validate.py do).

class RMSNorm(nn.Module):
    """y = w * x / sqrt(mean(x^2, last axis) + eps) (LLaMA / Qwen's RMSNorm;
    torch 1.13 has none built in).  export_module maps any module of a class
    named RMSNorm with a `weight` (or None) and an `eps` attribute to the
    fixture's RMSNorm."""

    def __init__(self, dim, eps=1e-6, weight=None):
        super().__init__()
        self.eps = eps
        self.weight = (nn.Parameter(torch.ones(dim)) if weight is None
                       else nn.Parameter(torch.from_numpy(np.array(weight, np.float32))))

    def forward(self, x):
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return x * r * self.weight


def _param(a):
    return nn.Parameter(torch.from_numpy(np.array(a, dtype=np.float32, copy=True)),
                        requires_grad=False)


def _set_params(mod, weight, bias):
    mod.weight = _param(weight)
    if bias is not None:
        mod.bias = _param(bias)
    return mod


def _sym(pad):
    """(ph, pw) when padding [t, b, l, r] is symmetric, else None."""
    t, b, l, r = pad
    return (t, l) if t == b and l == r else None


PEERS = (None, "zennit", "captum")


class _Handle:
    def __init__(self, hooks, key):
        self.hooks, self.key = hooks, key

    def remove(self):
        self.hooks.pop(self.key, None)


class _Node:
    """One fixture layer: `kind`, `lname`, `inputs` mirror the file;
    `module` is the standard torch module a peer hooks (None for layers no
    peer attaches a rule to).  Calling it runs `forward` (replaceable per
    instance) and then its forward hooks, like a module."""

    def __init__(self, spec, fn, module=None):
        self.kind = spec["kind"]
        self.lname = spec["name"]
        self.inputs = list(spec.get("inputs", []))
        self.module = module
        self._fn = fn
        self._hooks = collections.OrderedDict()
        self._next = 0

    def forward(self, *xs):
        return self._fn(*xs)

    def __call__(self, *xs):
        y = self.forward(*xs)
        for h in list(self._hooks.values()):
            r = h(self, xs, y)
            if r is not None:
                y = r
        return y

    def register_forward_hook(self, hook):
        self._next += 1
        self._hooks[self._next] = hook
        return _Handle(self._hooks, self._next)

    def __repr__(self):
        return "%s %r (%s)" % (self.kind, self.lname,
                               type(self.module).__name__ if self.module is not None
                               else "function")


def _add_modules(n, peer):
    """The Add layer's modules and function for `n` inputs under `peer`."""
    if peer == "zennit":
        from zennit.layer import Sum  # the class Zennit's rule maps match
        s = Sum(dim=-1)
        # two inputs: stack + sum is one IEEE addition, bitwise a + b
        return [s], lambda *xs: s(torch.stack(xs, dim=-1))
    if peer == "captum":
        from captum.attr._utils.custom_modules import Addition_Module
        mods = [Addition_Module() for _ in range(n - 1)]

        def chain(*xs):
            y = xs[0]
            for m, t in zip(mods, xs[1:]):  # left to right, as the format adds
                y = m(y, t)
            return y
        return mods, chain

    def plain(*xs):
        y = xs[0]
        for t in xs[1:]:
            y = y + t
        return y
    return [], plain


def _make_node(L, in_shape, peer, kpm=None):
    """(node, [modules in execution order]) for layer dict L whose (first)
    input has per-sample shape in_shape; kpm: the module's _MaskHolder."""
    k = L["kind"]
    if k == "Input":
        # a view, bitwise the input: a gradient hook on a leaf does not fire
        # under torch.autograd.grad (Zennit's attributors), on a view it does
        return _Node(L, lambda x: x.view_as(x)), []
    if k == "Dense":
        w = L["weight"]
        m = _set_params(nn.Linear(w.shape[1], w.shape[0], bias=bool(L.get("has_bias", 0))),
                        w, L["bias"] if L.get("has_bias", 0) else None)
        return _Node(L, m, m), [m]
    if k == "Conv2D":
        w = L["weight"]
        G = int(L["groups"])
        s = _sym(L["padding"])
        m = nn.Conv2d(w.shape[1] * G, w.shape[0], tuple(w.shape[2:]), stride=tuple(L["stride"]),
                      padding=s if s is not None else 0, dilation=tuple(L["dilation"]),
                      groups=G, bias=bool(L.get("has_bias", 0)))
        _set_params(m, w, L["bias"] if L.get("has_bias", 0) else None)
        if s is not None:
            return _Node(L, m, m), [m]
        # Asymmetric padding: explicit zero padding first (F.pad's order is
        # l, r, t, b).  A rule that reads the module's input (Flat, ZBox)
        # then sees the padded zeros as inputs: see docs/PEERS.md.
        t, b, l, r = L["padding"]
        return _Node(L, lambda x: m(F.pad(x, (l, r, t, b))), m), [m]
    if k == "MaxPool2D":
        s = _sym(L["padding"])
        m = nn.MaxPool2d(tuple(L["kernel"]), tuple(L["stride"]), s if s is not None else 0)
        if s is not None:
            return _Node(L, m, m), [m]
        t, b, l, r = L["padding"]
        return _Node(L, lambda x: m(F.pad(x, (l, r, t, b), value=float("-inf"))), m), [m]
    if k == "AvgPool2D":
        s = _sym(L["padding"])
        cip = bool(L["count_include_pad"])
        if s is not None:
            m = nn.AvgPool2d(tuple(L["kernel"]), tuple(L["stride"]), s, False, cip)
            return _Node(L, m, m), [m]
        t, b, l, r = L["padding"]
        if cip:
            m = nn.AvgPool2d(tuple(L["kernel"]), tuple(L["stride"]), 0)
            return _Node(L, lambda x: m(F.pad(x, (l, r, t, b))), m), [m]
        kern, strd = tuple(L["kernel"]), tuple(L["stride"])

        # No torch module divides each window by its count of real cells
        # under asymmetric padding: a function (no peer rule attaches).
        def avg(x):
            xp = F.pad(x, (l, r, t, b))
            ssum = F.avg_pool2d(xp, kern, strd, 0, divisor_override=1)
            ones = F.pad(torch.ones_like(x[:1, :1]), (l, r, t, b))
            cnt = F.avg_pool2d(ones, kern, strd, 0, divisor_override=1)
            return ssum / cnt
        return _Node(L, avg), []
    if k == "GlobalAvgPool":
        # adaptive_avg_pool2d is what torchvision models run; output rank 1.
        m = nn.AdaptiveAvgPool2d(1)
        return _Node(L, lambda x: m(x).flatten(1), m), [m]
    if k == "Add":
        mods, fn = _add_modules(len(L["inputs"]), peer)
        return _Node(L, fn, mods[0] if len(mods) == 1 else None), mods
    if k == "Concatenate":
        return _Node(L, lambda *xs: torch.cat(xs, dim=1)), []
    if k == "BatchNorm":
        C = len(L["gamma"])
        cls = nn.BatchNorm1d if len(in_shape) == 1 else nn.BatchNorm2d
        # Inference BN with the stored epsilon (never PyTorch's default):
        # nn.BatchNorm in eval mode calls F.batch_norm(training=False).
        m = cls(C, eps=float(np.float32(L["bn_eps"])), momentum=0.0)
        _set_params(m, L["gamma"], L["beta"])
        m.running_mean.copy_(torch.from_numpy(np.array(L["mean"], np.float32)))
        m.running_var.copy_(torch.from_numpy(np.array(L["var"], np.float32)))
        m.eval()
        return _Node(L, m, m), [m]
    if k == "ReLU":
        m = nn.ReLU()
        return _Node(L, m, m), [m]
    if k == "Flatten":
        if peer == "captum":  # Captum raises TypeError on an nn.Flatten leaf
            return _Node(L, lambda x: torch.flatten(x, 1)), []
        m = nn.Flatten()  # C, H, W order
        return _Node(L, m, m), [m]
    if k == "Reshape":
        ts = tuple(L["target_shape"])
        return _Node(L, lambda x: x.reshape((x.shape[0],) + ts)), []
    if k == "Dropout":
        m = nn.Dropout()  # eval mode: the identity, bit for bit
        return _Node(L, m, m), [m]
    if k == "LayerNorm":
        Fd = int(in_shape[-1])
        aff = bool(L.get("has_weight", 0)) or bool(L.get("has_bias", 0))
        m = nn.LayerNorm(Fd, eps=float(np.float32(L["eps"])), elementwise_affine=aff)
        if aff:
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(np.array(L["weight"], np.float32))
                               if L.get("has_weight", 0) else torch.ones(Fd))
                m.bias.copy_(torch.from_numpy(np.array(L["bias"], np.float32))
                             if L.get("has_bias", 0) else torch.zeros(Fd))
            m.weight.requires_grad_(False)
            m.bias.requires_grad_(False)
        return _Node(L, m, m), [m]
    if k == "RMSNorm":
        m = RMSNorm(int(in_shape[-1]), eps=float(np.float32(L["eps"])),
                    weight=L.get("weight") if L.get("has_weight", 0) else None)
        return _Node(L, m, m), [m]
    if k == "GELU":
        m = nn.GELU(approximate=L.get("approximate", "none"))
        return _Node(L, m, m), [m]
    if k == "SiLU":
        m = nn.SiLU()
        return _Node(L, m, m), [m]
    if k == "Tanh":
        m = nn.Tanh()
        return _Node(L, m, m), [m]
    if k == "Softmax":
        m = nn.Softmax(dim=-1)
        return _Node(L, m, m), [m]
    if k == "Mul":
        return _Node(L, lambda a, b: a * b), []
    if k == "SelectToken":
        i = int(L["index"])
        return _Node(L, lambda x: x[:, i]), []
    if k == "ToTokens":  # (C, H, W) -> (H W, C), token t = h W + w
        return _Node(L, lambda x: x.flatten(2).transpose(1, 2)), []
    if k == "ClsToken":
        m = FixtureCls(L["cls_token"])
        return _Node(L, m, m), [m]
    if k == "Embedding":
        w = L["weight"]
        m = nn.Embedding(w.shape[0], w.shape[1])
        m.weight = _param(w)
        # ids held as float (torch_lrp, float traces) are exact integers
        return _Node(L, lambda x: m(x.long())), [m]
    if k == "Position":
        m = FixturePosition(L["table"])
        return _Node(L, m, m), [m]
    if k == "MultiHeadAttention":
        m = FixtureAttention.from_layer(L, kpm)
        return _Node(L, m, m), [m]
    if k == "AttnScores":
        h, c = int(L["heads"]), float(np.float32(L["scale"]))
        return _Node(L, lambda q, kk: torch.matmul(_heads(q, h), _heads(kk, h).transpose(-1, -2))
                     * c), []
    if k == "AttnSoftmax":
        m = FixtureAttention(1, 1, 1.0, L.get("causal", 0), L.get("use_padding_mask", 0),
                             L.get("mask_value", np.float32("-inf")), False, kpm)
        return _Node(L, lambda S: m.probs(S, m.mask(S.shape[0], S.shape[-1], S.device))), []
    if k == "AttnContext":
        def context(A, v):
            B, T, F = v.shape
            return torch.matmul(A, _heads(v, A.shape[1])).transpose(1, 2).reshape(B, T, F)
        return _Node(L, context), []
    raise FixtureError("layer %r: unknown kind %r" % (L["name"], k))


def _heads(x, h):
    """(B, T, F) -> (B, h, T, F / h): head i at features i F / h .."""
    B, T, F = x.shape
    return x.reshape(B, T, h, F // h).transpose(1, 2)


class FixturePosition(nn.Module):
    """The Position kind: y = x + table[:T] (a learned or fixed table)."""

    def __init__(self, table):
        super().__init__()
        self.table = _param(table)

    def forward(self, x):
        return x + self.table[:x.shape[1]]


class FixtureCls(nn.Module):
    """The ClsToken kind: the stored vector (F) as token 0 before the
    input's (T, F) tokens."""

    def __init__(self, cls_token):
        super().__init__()
        self.cls_token = _param(cls_token)

    def forward(self, x):
        c = self.cls_token.reshape(1, 1, -1).expand(x.shape[0], 1, x.shape[-1])
        return torch.cat([c, x], 1)


class _MaskHolder:
    """The key padding mask of a FixtureModule's current forward: one mask
    serves every MultiHeadAttention with use_padding_mask (docs/FORMAT.md)."""

    def __init__(self, mask=None):
        self.mask = mask


class FixtureAttention(nn.Module):
    """The MultiHeadAttention kind as docs/FORMAT.md defines its forward
    (self-attention on (T, F), PyTorch's q, k, v packing):
        [q k v] = x Win^T + bin;  per head S = scale (q k^T);
        X = S with masked keys excluded (mask_value -inf) or S + mask_value;
        A = softmax(X) over the keys, a query with no visible key: A = 0;
        O = A v (heads merged);  y = O Wout^T + bout.
    Not nn.MultiheadAttention: torch 1.13's returns NaN for a fully masked
    query row and scales q before the product, where the format scales S.
    `key_padding_mask` (batch, T), 1 / True = masked, comes from the module's
    holder (FixtureModule passes the fixture's /data/key_padding_mask)."""

    def __init__(self, F, heads, scale, causal=False, use_padding_mask=False,
                 mask_value=float("-inf"), bias=True, holder=None):
        super().__init__()
        self.F, self.heads, self.scale = F, heads, float(np.float32(scale))
        self.causal, self.use_padding_mask = bool(causal), bool(use_padding_mask)
        self.mask_value = float(np.float32(mask_value))
        self.in_proj = nn.Linear(F, 3 * F, bias=bias)
        self.out_proj = nn.Linear(F, F, bias=bias)
        self.holder = holder or _MaskHolder()

    @classmethod
    def from_layer(cls, L, holder):
        W = L["in_proj_weight"]
        F = W.shape[1]
        b = bool(L.get("has_bias", 0))
        m = cls(F, int(L["heads"]), L["scale"], L.get("causal", 0), L.get("use_padding_mask", 0),
                L.get("mask_value", np.float32("-inf")), b, holder)
        _set_params(m.in_proj, W, L["in_proj_bias"] if b else None)
        _set_params(m.out_proj, L["out_proj_weight"], L["out_proj_bias"] if b else None)
        return m

    def mask(self, B, T, device):
        """(B, 1, T, T) bool, True = masked, or None."""
        m = None
        if self.use_padding_mask and self.holder.mask is not None:
            kpm = torch.as_tensor(self.holder.mask, device=device).to(torch.bool)
            if kpm.shape != (B, T):
                raise ValueError("key padding mask of shape %s, the attention wants (%d, %d)"
                                 % (tuple(kpm.shape), B, T))
            m = kpm[:, None, None, :].expand(B, 1, T, T)
        if self.causal:
            c = torch.triu(torch.ones(T, T, dtype=torch.bool, device=device), 1)[None, None]
            m = c.expand(B, 1, T, T) if m is None else (m | c)
        return m

    def scores(self, x):
        """(q, k, v) split into heads (B, h, T, d) and S (B, h, T, T)."""
        B, T, F = x.shape
        d = F // self.heads
        qkv = self.in_proj(x)
        q, k, v = (qkv[..., i * F:(i + 1) * F].reshape(B, T, self.heads, d).transpose(1, 2)
                   for i in range(3))
        return q, k, v, torch.matmul(q, k.transpose(-1, -2)) * self.scale

    def probs(self, S, mask):
        if mask is None:
            return torch.softmax(S, -1)
        if self.mask_value != float("-inf"):
            return torch.softmax(S + mask.to(S.dtype) * self.mask_value, -1)
        # excluded keys: a row with no visible key gives A = 0, never NaN
        full = mask.all(-1, keepdim=True)
        X = S.masked_fill(mask, float("-inf")).masked_fill(full, 0.0)
        return torch.softmax(X, -1).masked_fill(mask, 0.0)

    def forward(self, x):
        B, T, F = x.shape
        q, k, v, S = self.scores(x)
        A = self.probs(S, self.mask(B, T, x.device))
        O = torch.matmul(A, v).transpose(1, 2).reshape(B, T, F)
        return self.out_proj(O)


class FixtureModule(nn.Module):
    """The fixture's network.  forward(x) returns the output (last layer);
    forward(x, return_all=True) returns an OrderedDict layer name -> output
    in execution order.  `layer_names`, `layer_kinds` are in execution
    order; `layer(name)` is the layer's _Node (its `.module` the standard
    torch module, hookable).  `peer` ("zennit", "captum" or None) picks the
    Add module that library knows.  The standard modules are children in
    execution order (Zennit's SequentialMergeBatchNorm pairs a linear layer
    with the BatchNorm that follows it in this order, as on a user's
    nn.Sequential).  Always float32, always in eval mode."""

    def __init__(self, layers, input_data=None, target=None, path=None, peer=None,
                 key_padding_mask=None):
        super().__init__()
        if peer not in PEERS:
            raise ValueError("peer must be one of %s" % (PEERS,))
        where = path or "network"
        if not layers or layers[0]["kind"] != "Input":
            raise FixtureError("%s: the first layer must be the Input" % where)
        self.layer_names = [L["name"] for L in layers]
        self.layer_kinds = [L["kind"] for L in layers]
        self.layer_inputs = [list(L.get("inputs", [])) for L in layers]
        self.input_shape = tuple(layers[0]["shape"])
        self._index = {n: i for i, n in enumerate(self.layer_names)}
        for i, ins in enumerate(self.layer_inputs):
            for n in ins:
                if self._index.get(n, i) >= i:
                    raise FixtureError("%s: layer %r: input %r is not an earlier layer"
                                       % (where, self.layer_names[i], n))
        self.peer = peer
        self.nodes = []
        # a token Input (dtype "token"): forward takes (batch, T) integer ids
        self.tokens = layers[0].get("dtype") == "token"
        # /data/key_padding_mask (batch, T), 1 = masked, or None; forward
        # takes another one as key_padding_mask=
        self.key_padding_mask = key_padding_mask
        self._kpm = _MaskHolder()
        mods = []
        # per-sample shapes, from a zero sample, to pick BatchNorm1d / 2d
        # (no mask: the shapes do not depend on it)
        shapes = {}
        with torch.no_grad():
            z = {}
            for L, ins in zip(layers, self.layer_inputs):
                node, ms = _make_node(L, shapes[ins[0]] if ins else None, peer, self._kpm)
                self.nodes.append(node)
                mods.extend(ms)
                x0 = torch.zeros((1,) + self.input_shape,
                                 dtype=torch.int64 if self.tokens else torch.float32)
                y = node(x0) if not ins else node(*[z[n] for n in ins])
                z[L["name"]] = y
                shapes[L["name"]] = tuple(y.shape[1:])
        self.layer_shapes = shapes
        self.layers = nn.ModuleList(mods)
        self.path = path
        self.input_data = input_data  # numpy (batch, *input_shape) or None
        self.target = target
        self._tap = None  # set by capture_relevance
        self.eval()

    def layer(self, name):
        return self.nodes[self._index[name]]

    def named_layers(self):
        return list(zip(self.layer_names, self.nodes))

    def forward(self, x, return_all=False, key_padding_mask=None):
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError("input of shape %s, the fixture's input layer %r wants (N, %s)"
                             % (tuple(x.shape), self.layer_names[0],
                                ", ".join(map(str, self.input_shape))))
        self._kpm.mask = (key_padding_mask if key_padding_mask is not None
                          else self.key_padding_mask)
        outs = collections.OrderedDict()
        for name, ins, node in zip(self.layer_names, self.layer_inputs, self.nodes):
            outs[name] = node(x) if not ins else node(*[outs[n] for n in ins])
        if self._tap is not None:
            self._tap(outs)
        return outs if return_all else outs[self.layer_names[-1]]

    def forward_all(self, x):
        return self.forward(x, return_all=True)


def fixture_to_module(path, peer=None):
    """Loads a fixture file as a FixtureModule (its /data/input is kept as
    `.input_data`, the targets as `.target`).  peer="zennit" / "captum"
    makes the Add layers the module that library attaches its rule to."""
    fx = read_fixture(path)
    return FixtureModule(fx["layers"], fx["input"], fx["target"], path=path, peer=peer,
                         key_padding_mask=fx["key_padding_mask"])


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

_SDT = h5py.string_dtype("utf-8")


def _sarr(v):
    return np.array(list(v), dtype=_SDT)


def _ds(g, name, arr):
    arr = np.ascontiguousarray(arr)
    g.create_dataset(name, data=arr, chunks=arr.shape if arr.ndim else None,
                     fletcher32=True, track_times=False)


def _check_name(name, what):
    if not isinstance(name, str) or not name or "/" in name or len(name.encode()) > NAME_MAX:
        raise ValueError("%s %r: names are 1 to %d bytes without '/'" % (what, name, NAME_MAX))


def _rule_attrs(g, r, kind=None, lname=""):
    """Writes one rule entry with every attribute (as the C writer does)."""
    r = dict(r)
    rule = r.pop("rule", None)
    if rule not in RULES:
        raise ValueError("rule of layer %r: unknown rule %r (known: %s)"
                         % (lname, rule, ", ".join(RULES)))
    stab = r.pop("stabilizer", "sign0_pos")
    if stab not in STABILIZERS:
        raise ValueError("rule of layer %r: unknown stabilizer %r (known: %s)"
                         % (lname, stab, ", ".join(STABILIZERS)))
    flags = list(r.pop("flags", []))
    for fl in flags:
        if fl not in FLAGS:
            raise ValueError("rule of layer %r: unknown flag %r (known: %s)"
                             % (lname, fl, ", ".join(FLAGS)))
    if kind is not None and "bn_canonize" not in flags and not _rule_allowed(rule, kind):
        raise ValueError("rule of layer %r: rule %r does not apply to a %s layer"
                         % (lname, rule, kind))
    dflt_eps = np.float32(0) if rule in ("lrp0", "pass", "wta", "identity") else EPS_DEFAULT
    vals = {"eps": dflt_eps, "gamma": 0.25, "alpha": 1.0, "beta": 0.0, "low": 0.0, "high": 1.0}
    for k in list(vals):
        if k in r:
            v = r.pop(k)
            if isinstance(v, float) and float(np.float32(v)) != v:
                # A Python float: its binary32 rounding is what both C
                # backends use; say so by storing float32.
                v = np.float32(v)
            vals[k] = v
    bias = int(r.pop("bias", 1))
    if r:
        raise ValueError("rule of layer %r: unknown rule attributes %s" % (lname, sorted(r)))
    g.attrs["rule"] = rule
    g.attrs["stabilizer"] = stab
    for k, v in vals.items():
        g.attrs[k] = np.float32(v)
    g.attrs["bias"] = np.int32(bias)
    g.attrs["flags"] = _sarr(flags)


def _rule_allowed(rule, kind):
    if kind in ("Dense", "Conv2D"):
        return rule not in ("pass", "wta")
    if kind in ("AvgPool2D", "GlobalAvgPool"):
        return rule in ("lrp0", "epsilon")
    if kind == "Add":
        return rule in ("lrp0", "epsilon", "alphabeta")
    if kind == "BatchNorm":  # pass: Zennit without canonizer, Captum's IdentityRule
        return rule in ("lrp0", "epsilon", "alphabeta", "pass")
    if kind == "MaxPool2D":  # lrp0 / epsilon: Captum's EpsilonRule on a max-pool
        return rule in ("wta", "lrp0", "epsilon")
    if kind == "LayerNorm":
        return rule in ("ln_linear", "ln_fine", "identity")
    if kind in ("RMSNorm", "GELU", "SiLU", "Tanh"):
        return rule == "identity"
    if kind in ("Embedding", "Position"):
        return rule in ("lrp0", "epsilon", "pass")
    if kind == "Softmax":
        return rule == "taylor"
    if kind == "Mul":
        return rule == "uniform"
    if kind == "MultiHeadAttention":
        return rule in ("attnlrp", "cplrp")
    if kind == "AttnScores":
        return rule == "uniform"
    if kind == "AttnSoftmax":
        return rule == "taylor"
    if kind == "AttnContext":
        return rule in ("uniform", "cplrp")
    return rule == "pass"


def _write_rules(parent, layers, rules):
    g = parent.create_group("rules", track_order=False)
    names = [L["name"] for L in layers]
    unknown = sorted(set(rules) - set(names))
    if unknown:
        raise ValueError("rules for layers that do not exist: %s" % ", ".join(unknown))
    for i, L in enumerate(layers):
        if L["name"] in rules and rules[L["name"]] is not None:
            _rule_attrs(g.create_group(entry_name(i, L["name"])), rules[L["name"]],
                        L["kind"], L["name"])


def _open_new(path):
    return h5py.File(path, "w", libver=("v110", "v110"), track_order=False)


def _tmp_beside(path):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=os.path.basename(path) + ".tmp.")
    os.close(fd)
    return tmp


def find_cli():
    """The lrp-oracle binary: $LRP_ORACLE, else None."""
    p = os.environ.get("LRP_ORACLE")
    return p if p and os.access(p, os.X_OK) else None


def verify_with_cli(path, cli=None):
    """Runs `lrp-oracle info PATH`; raises FixtureError with its message
    unless it exits 0.  Returns its stdout.  cli=None uses $LRP_ORACLE."""
    cli = cli or find_cli()
    if not cli:
        raise FixtureError("no lrp-oracle binary given (pass cli= or set $LRP_ORACLE)")
    p = subprocess.run([cli, "info", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if p.returncode != 0:
        raise FixtureError("lrp-oracle info refused the file (exit %d): %s"
                           % (p.returncode, p.stderr.strip() or p.stdout.strip()))
    return p.stdout


def _file_mode(path):
    """The mode a file written at path gets, as the C writer (core/safeout.c)
    gives it: an existing file keeps its permission bits, a new one gets
    0666 less the umask (mkstemp's temporary file is 0600)."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        um = os.umask(0)
        os.umask(um)
        return 0o666 & ~um


def _finish(tmp, path, cli):
    """Verifies tmp with the CLI (when one is known) and renames it over path."""
    try:
        if cli or find_cli():
            verify_with_cli(tmp, cli)
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_STAGE_X = "\0x"  # attention_stage_layers' name for the attention's input (the exporter's)


def attention_stage_layers(base, x, L):
    """The layer dicts (read_fixture's form) of MultiHeadAttention L (its
    parameters and attributes) reading the layer named x, as its stages
    (docs/FORMAT.md "AttnScores, AttnSoftmax, AttnContext"): Dense BASE_q,
    BASE_k, BASE_v (the rows of in_proj_weight in that order), AttnScores
    BASE_scores, AttnSoftmax BASE_probs (the masks), AttnContext
    BASE_context and the output projection Dense BASE, so that the layers
    reading the attention still read BASE."""
    Fd = int(np.asarray(L["in_proj_weight"]).shape[1])
    h, hb = int(L["heads"]), int(L.get("has_bias", 0))
    W = L["in_proj_weight"]
    out = []
    for i, nm in enumerate("qkv"):
        D = {"name": base + "_" + nm, "kind": "Dense", "inputs": [x], "units": Fd, "has_bias": hb,
             "weight": W[i * Fd:(i + 1) * Fd].copy()}
        if hb:
            D["bias"] = L["in_proj_bias"][i * Fd:(i + 1) * Fd].copy()
        out.append(D)
    out.append({"name": base + "_scores", "kind": "AttnScores",
                "inputs": [base + "_q", base + "_k"], "heads": h, "scale": L["scale"]})
    out.append({"name": base + "_probs", "kind": "AttnSoftmax", "inputs": [base + "_scores"],
                "causal": int(L.get("causal", 0)),
                "use_padding_mask": int(L.get("use_padding_mask", 0)),
                "mask_value": L.get("mask_value", np.float32("-inf"))})
    out.append({"name": base + "_context", "kind": "AttnContext",
                "inputs": [base + "_probs", base + "_v"]})
    D = {"name": base, "kind": "Dense", "inputs": [base + "_context"], "units": Fd,
         "has_bias": hb, "weight": L["out_proj_weight"]}
    if hb:
        D["bias"] = L["out_proj_bias"]
    out.append(D)
    return out


def attention_as_stages(src, dst, cli=None, overwrite=False):
    """Writes dst: the fixture src with each MultiHeadAttention layer written
    as its stages (attention_stage_layers), so that `lrp-oracle` judges
    every stage's tensor (docs/TRANSFORMERS.md 12.7).  Everything else is
    copied: the other layers, their rules, the input data, targets,
    key_padding_mask, relevance_out, description, composite and seed.  The
    stages' rules follow the attention's stated rule (docs/SPEC.md 3.8: the
    four Dense layers epsilon and AttnScores uniform at its eps and
    convention, AttnSoftmax taylor, AttnContext uniform, cplrp for a cplrp
    attention), which gives the attention's relevance exactly; a fixture
    without rules keeps none.  Traces are not copied (they hold no stage's
    relevance).  Refuses to replace an existing dst unless overwrite."""
    fx = read_fixture(src)
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError("%s: exists (attention_as_stages writes a new file; "
                              "overwrite=True replaces it)" % dst)
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ValueError("%s: the source itself" % dst)
    layers, rules = [], {}
    names = set(L["name"] for L in fx["layers"])
    n_attn = 0
    for L in fx["layers"]:
        r = fx["rules"].get(L["name"])
        if L["kind"] != "MultiHeadAttention":
            layers.append(L)
            if r is not None:
                rules[L["name"]] = r
            continue
        n_attn += 1
        specs = attention_stage_layers(L["name"], L["inputs"][0], L)
        clash = sorted(set(D["name"] for D in specs[:-1]) & names)
        if clash:
            raise ValueError("%s: layer %r: its stages' names are taken: %s"
                             % (src, L["name"], ", ".join(clash)))
        layers += specs
        if r is None:
            continue
        if r.get("rule") not in ("attnlrp", "cplrp"):
            raise ValueError("%s: layer %r: rule %r has no stages"
                             % (src, L["name"], r.get("rule")))
        st = {k: r[k] for k in ("eps", "stabilizer") if k in r}
        for D in specs:
            rule = {"Dense": "epsilon", "AttnScores": "uniform", "AttnSoftmax": "taylor",
                    "AttnContext": "cplrp" if r["rule"] == "cplrp" else "uniform"}[D["kind"]]
            rules[D["name"]] = dict(st, rule=rule) if rule != "taylor" else {"rule": rule}
    if not n_attn:
        raise ValueError("%s: no MultiHeadAttention layer to write as stages" % src)
    a = fx["attrs"]
    return write_fixture(dst, layers, fx["input"], target=fx["target"],
                         relevance_out=fx["relevance_out"], rules=rules or None,
                         description=str(a.get("description", "")) + " (attention as stages)",
                         composite=str(a.get("composite", "")), seed=int(a.get("seed", 0)),
                         cli=cli, key_padding_mask=fx["key_padding_mask"])


def write_fixture(path, layers, input, target=None, relevance_out=None, rules=None,
                  description="", composite="", seed=0, cli=None, key_padding_mask=None):
    """Writes a fixture from layer dicts (the form read_fixture returns:
    name, kind, inputs, geometry attributes, float32 parameter arrays),
    input data (batch, *input_shape) and optional per-sample target class
    indices.  rules: {layer name: {"rule": ..., "eps": ..., ...}} or None
    (then the C defaults apply).  Atomic: temp file, optional `lrp-oracle
    info` check (cli= or $LRP_ORACLE), rename.
    A token Input (layer dict with "dtype": "token", shape [T]) takes
    integer ids (batch, T) as `input` and writes them to /data/tokens;
    key_padding_mask (batch, T), 1 / True = masked, goes to
    /data/key_padding_mask (for MultiHeadAttention with use_padding_mask)."""
    x = np.asarray(input)
    tokens = bool(layers) and layers[0].get("dtype") == "token"
    if tokens and not np.issubdtype(x.dtype, np.integer):
        raise ValueError("a token Input takes integer ids (got %s)" % x.dtype)
    if not tokens and x.dtype != np.float32:
        raise ValueError("input data must be float32 (got %s): values are never rounded "
                         "silently" % x.dtype)
    kpm = None
    if key_padding_mask is not None:
        kpm = np.asarray(key_padding_mask)
        if kpm.ndim != 2 or kpm.shape[0] != x.shape[0] or not np.isin(kpm, (0, 1)).all():
            raise ValueError("key_padding_mask must be (batch, T) of 0 / 1 (True = masked), "
                             "got shape %s" % (kpm.shape,))
        kpm = kpm.astype(np.uint8)
    if composite and composite not in COMPOSITES:
        raise ValueError("unknown composite %r (known: %s)" % (composite, ", ".join(COMPOSITES)))
    seen = set()
    for L in layers:
        _check_name(L["name"], "layer name")
        if L["name"] in seen:
            raise ValueError("layer name %r used twice" % L["name"])
        seen.add(L["name"])
        if L["kind"] not in LAYER_KINDS:
            raise ValueError("layer %r: unknown kind %r" % (L["name"], L["kind"]))
    version = 2 if any(L["kind"] in V2_KINDS for L in layers) else FORMAT_VERSION
    tmp = _tmp_beside(path)
    try:
        with _open_new(tmp) as f:
            f.attrs["format"] = FORMAT_MAGIC
            f.attrs["format_version"] = np.int32(version)
            f.attrs["layout"] = "NCHW"
            f.attrs["flatten_order"] = "CHW"
            if version >= 2:
                f.attrs["token_layout"] = "TF"
            f.attrs["batch"] = np.int32(x.shape[0])
            f.attrs["seed"] = np.uint64(seed)
            f.attrs["description"] = description
            f.attrs["composite"] = composite
            net = f.create_group("network")
            net.attrs["order"] = _sarr(L["name"] for L in layers)
            for i, L in enumerate(layers):
                g = net.create_group(entry_name(i, L["name"]))
                g.attrs["name"] = L["name"]
                g.attrs["kind"] = L["kind"]
                g.attrs["inputs"] = _sarr(L.get("inputs", []))
                for k in ("shape", "target_shape", "units"):
                    if k in L:
                        g.attrs[k] = np.asarray(L[k], np.int64)
                for k in ("has_bias", "kernel", "stride", "padding", "dilation", "groups",
                          "count_include_pad", "has_weight"):
                    if k in L:
                        g.attrs[k] = np.asarray(L[k], np.int32)
                if "bn_eps" in L:
                    g.attrs["bn_eps"] = np.float32(L["bn_eps"])
                if "eps" in L:
                    g.attrs["eps"] = np.float32(L["eps"])
                if "approximate" in L:
                    g.attrs["approximate"] = L["approximate"]
                for k, ty in _V2_ATTRS:
                    if k in L:
                        g.attrs[k] = ty(L[k])
                if L.get("dtype"):
                    g.attrs["dtype"] = L["dtype"]
                for p in _PARAMS:
                    if p in L and L[p] is not None:
                        a = np.asarray(L[p])
                        if a.dtype != np.float32:
                            raise ValueError("layer %r: parameter %r is %s, must be float32"
                                             % (L["name"], p, a.dtype))
                        _ds(g, p, a)
            if rules:
                _write_rules(f, layers, rules)
            d = f.create_group("data")
            _ds(d, "tokens" if tokens else "input", x.astype(np.int64) if tokens else x)
            if kpm is not None:
                _ds(d, "key_padding_mask", kpm)
            if relevance_out is not None:
                _ds(d, "relevance_out", np.asarray(relevance_out, np.float32))
            if target is not None:
                _ds(d, "target", np.asarray(target, np.int32).reshape(x.shape[0]))
    except BaseException:
        os.unlink(tmp)
        raise
    _finish(tmp, path, cli)
    return path


# ---------------------------------------------------------------------------
# Export of a user's torch model (torch.fx)
# ---------------------------------------------------------------------------

class _T:
    """A traced value: the fixture layer that produces it and its per-sample
    shape in the fixture's terms (GlobalAvgPool is rank 1 where PyTorch has
    (C, 1, 1))."""

    def __init__(self, layer, shape, gap=False, tb=False):
        self.layer = layer
        self.shape = tuple(shape)
        self.gap = gap  # rank-1 output of a GlobalAvgPool that PyTorch sees as (C, 1, 1)
        # a token sequence PyTorch holds as (T, batch, F) (x.transpose(0, 1),
        # for nn.MultiheadAttention(batch_first=False)); the fixture's is (T, F)
        self.tb = tb


class _Unused:
    """A value the fixture does not have (MultiheadAttention's weights):
    an error only when something uses it."""

    def __init__(self, what):
        self.what = what


class _KPM:
    """The model's key padding mask argument (export_module's
    key_padding_mask=): becomes /data/key_padding_mask."""


class _Pair:
    """The (output, weights) tuple of an nn.MultiheadAttention: [0] only."""

    def __init__(self, t, what):
        self.t, self.what = t, what


def _is_attention(m):
    """An attention module export_module maps to MultiHeadAttention: a class
    named SelfAttention with q_proj, k_proj, v_proj, out_proj nn.Linear of
    F -> F (this module's SelfAttention, lrp_attn's, a user's own)."""
    return (type(m).__name__ == "SelfAttention"
            and all(isinstance(getattr(m, n, None), nn.Linear)
                    for n in ("q_proj", "k_proj", "v_proj", "out_proj")))


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention from four nn.Linear, as
    users write it (q_proj, k_proj, v_proj, out_proj; softmax(q k^T /
    sqrt(d)) v per head).  forward(x, key_padding_mask=None): x (batch, T,
    F); key_padding_mask (batch, T), True = masked key.  causal=True masks
    keys after the query.  A query with no visible key gets a zero row
    (never NaN).  export_module maps it (and any module of a class named
    SelfAttention with these four Linear and `heads` or `h`) to the
    fixture's MultiHeadAttention, packing q, k, v as PyTorch's in_proj."""

    def __init__(self, dim, heads, bias=True, causal=False):
        super().__init__()
        if dim % heads:
            raise ValueError("heads %d must divide dim %d" % (heads, dim))
        self.dim, self.heads, self.causal = dim, heads, causal
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x, key_padding_mask=None):
        B, T, Fd = x.shape
        d = Fd // self.heads

        def split(t):
            return t.reshape(B, T, self.heads, d).transpose(1, 2)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        S = torch.matmul(q, k.transpose(-1, -2)) * float(np.float32(1.0 / np.sqrt(d)))
        mask = None
        if key_padding_mask is not None:
            mask = key_padding_mask.to(torch.bool)[:, None, None, :].expand(B, 1, T, T)
        if self.causal:
            c = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), 1)[None, None]
            mask = c.expand(B, 1, T, T) if mask is None else (mask | c)
        if mask is None:
            A = torch.softmax(S, -1)
        else:
            full = mask.all(-1, keepdim=True)
            A = torch.softmax(S.masked_fill(mask, float("-inf")).masked_fill(full, 0.0), -1)
            A = A.masked_fill(mask, 0.0)
        O = torch.matmul(A, v).transpose(1, 2).reshape(B, T, Fd)
        return self.out_proj(O)


class _BatchDim:
    """x.size(0) / x.shape[0] in the traced graph (for view(x.size(0), -1))."""


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_out(n, p0, p1, k, d, s):
    return (n + p0 + p1 - (d * (k - 1) + 1)) // s + 1


class _Exporter:
    SUPPORTED = ("Linear (on (F) or (T, F)), LayerNorm, RMSNorm (a class of that name), GELU, "
                 "SiLU, Tanh, MultiheadAttention (self-attention), SelfAttention (a class of "
                 "that name with q/k/v/out_proj), Embedding (token ids), Softmax(dim=-1), "
                 "x * y, x + parameter (positions), x[:, i] (token pooling), "
                 "Conv2d, BatchNorm1d/2d, ReLU, MaxPool2d, AvgPool2d, "
                 "AdaptiveAvgPool2d (1, or dividing the input), Flatten, Dropout, Identity, "
                 "ZeroPad2d (before Conv2d), "
                 "+ / torch.add, torch.cat(dim=1), torch.flatten(x, 1), x.view(x.size(0), -1), "
                 "F.relu")

    def __init__(self, model, input_name, was_training=False, with_kpm=False,
                 attention="layer"):
        if attention not in ("layer", "stages"):
            raise ValueError("attention must be 'layer' or 'stages', not %r" % (attention,))
        self.stages = attention == "stages"
        self.model = model
        self.was_training = was_training
        self.with_kpm = with_kpm
        self.kpm_used = False
        self.layers = []
        self.names = set()
        self.input_name = input_name
        self.uses = collections.Counter()
        # origins[i]: how layer i shows at run time, for capture_relevance
        # on the user's model: ("module", path, call index), ("op", kind,
        # index among tensor operations of that kind), or None (a layer the
        # export adds: the Input, the (C,1,1) view of a global pool)
        self.origins = []
        self._origin = None
        self._ops = collections.Counter()

    # -- helpers --
    def unique(self, base):
        base = base or "layer"
        if len(base.encode()) > NAME_MAX:
            base = base[-NAME_MAX:]
        n, k = base, 1
        while n in self.names:
            suffix = "_%d" % k
            n = base[:NAME_MAX - len(suffix)] + suffix
            k += 1
        self.names.add(n)
        return n

    def add(self, base, kind, inputs, shape, **kw):
        L = {"name": self.unique(base), "kind": kind, "inputs": [t.layer for t in inputs]}
        L.update(kw)
        self.layers.append(L)
        o = self._origin
        if o == "op":
            k = {"Flatten": "shape", "Reshape": "shape"}.get(kind, kind)
            o = ("op", k, self._ops[k])
            self._ops[k] += 1
        self.origins.append(o)
        return _T(L["name"], shape)

    def rank3(self, t, where):
        """A rank-3 view of t: a GlobalAvgPool output gets a Reshape (C,1,1)."""
        if len(t.shape) == 3:
            return t
        if t.gap:
            if not hasattr(t, "chw"):
                saved, self._origin = self._origin, None
                t.chw = self.add(t.layer + "_chw", "Reshape", [t], (t.shape[0], 1, 1),
                                 target_shape=[t.shape[0], 1, 1])
                self._origin = saved
            return t.chw
        raise UnsupportedModuleError("%s needs a (C, H, W) input, got per-sample shape %s"
                                     % (where, t.shape))

    def unsupported(self, node, what):
        raise UnsupportedModuleError(
            "cannot export %s (graph node %r): no fixture layer for it. Supported: %s"
            % (what, node.name, self.SUPPORTED))

    @staticmethod
    def params32(mod_path, name, t):
        if t.dtype != torch.float32:
            raise UnsupportedModuleError(
                "module '%s': parameter %s is %s; fixtures hold float32 only (call model.float())"
                % (mod_path, name, t.dtype))
        return t.detach().cpu().numpy().astype(np.float32, copy=True)

    # -- modules --
    def module(self, node, mod, args, pads, kwargs=None):
        kwargs = kwargs or {}
        path = node.target
        cls = type(mod)
        what = "module '%s' (%s.%s)" % (path, cls.__module__, cls.__name__)
        self.uses[path] += 1
        base = path if self.uses[path] == 1 else "%s_%d" % (path, self.uses[path] - 1)
        x = args[0] if args else None
        if not self.traced(args) and not self.traced(kwargs):
            return mod(*args, **kwargs)  # on constants only: a constant
        if not isinstance(x, _T):
            self.unsupported(node, what + " with a non-tensor input")
        if isinstance(mod, nn.Linear):
            if len(x.shape) not in (1, 2):
                raise UnsupportedModuleError(
                    "%s: Linear applied to per-sample shape %s; the fixture's Dense takes a "
                    "flat (F) input or a token sequence (T, F) (add nn.Flatten before it)"
                    % (what, x.shape))
            L = {"units": mod.out_features, "has_bias": int(mod.bias is not None),
                 "weight": self.params32(path, "weight", mod.weight)}
            if mod.bias is not None:
                L["bias"] = self.params32(path, "bias", mod.bias)
            # on (T, F): the last axis, row by row (docs/TRANSFORMERS.md)
            return self.add(base, "Dense", [x], tuple(x.shape[:-1]) + (mod.out_features,), **L)
        if isinstance(mod, nn.LayerNorm) or type(mod).__name__ == "RMSNorm":
            if len(x.shape) not in (1, 2):
                raise UnsupportedModuleError("%s: per-sample shape %s (a norm over the last "
                                             "axis of (F) or (T, F))" % (what, x.shape))
            Fd = x.shape[-1]
            if isinstance(mod, nn.LayerNorm):
                if tuple(mod.normalized_shape) != (Fd,):
                    raise UnsupportedModuleError("%s: normalized_shape %s (only the last axis, %d)"
                                                 % (what, tuple(mod.normalized_shape), Fd))
                aff = mod.elementwise_affine
                L = {"eps": np.float32(mod.eps), "has_weight": int(aff), "has_bias": int(aff)}
                if aff:
                    L["weight"] = self.params32(path, "weight", mod.weight)
                    L["bias"] = self.params32(path, "bias", mod.bias)
                return self.add(base, "LayerNorm", [x], x.shape, **L)
            w = getattr(mod, "weight", None)
            if not hasattr(mod, "eps") or (w is not None and tuple(w.shape) != (Fd,)):
                raise UnsupportedModuleError("%s: an RMSNorm needs `eps` and a `weight` of %d "
                                             "(or None)" % (what, Fd))
            L = {"eps": np.float32(mod.eps), "has_weight": int(w is not None)}
            if w is not None:
                L["weight"] = self.params32(path, "weight", w)
            return self.add(base, "RMSNorm", [x], x.shape, **L)
        if isinstance(mod, nn.MultiheadAttention):
            return _Pair(self.mha(node, mod, path, what, base, args, kwargs), what)
        if _is_attention(mod):
            return self.self_attention(node, mod, path, what, base, args, kwargs)
        if isinstance(mod, nn.Embedding):
            return self.embedding(mod, path, what, base, x)
        if isinstance(x, _T) and x.tb:
            raise UnsupportedModuleError("%s: applied to a (T, batch, F) tensor; only "
                                         "MultiheadAttention(batch_first=False) takes one "
                                         "(transpose back first)" % what)
        if isinstance(mod, nn.Softmax):
            return self.softmax(node, what, x, mod.dim, base=base)
        if isinstance(mod, nn.GELU):
            return self.add(base, "GELU", [x], x.shape, approximate=mod.approximate)
        if isinstance(mod, nn.SiLU):
            return self.add(base, "SiLU", [x], x.shape)
        if isinstance(mod, nn.Tanh):
            return self.add(base, "Tanh", [x], x.shape)
        if isinstance(mod, nn.Conv2d):
            x = self.rank3(x, what)
            if mod.padding_mode != "zeros":
                raise UnsupportedModuleError("%s: padding_mode %r (only zero padding)"
                                             % (what, mod.padding_mode))
            if isinstance(mod, nn.ConvTranspose2d) or getattr(mod, "transposed", False):
                self.unsupported(node, what)
            kh, kw = _pair(mod.kernel_size)
            dh, dw = _pair(mod.dilation)
            sh, sw = _pair(mod.stride)
            if isinstance(mod.padding, str):
                if mod.padding == "valid":
                    pad = [0, 0, 0, 0]
                else:  # 'same': PyTorch puts the odd cell at the end
                    th, tw = dh * (kh - 1), dw * (kw - 1)
                    pad = [th // 2, th - th // 2, tw // 2, tw - tw // 2]
            else:
                ph, pw = _pair(mod.padding)
                pad = [ph, ph, pw, pw]
            pad = [a + b for a, b in zip(pad, pads)]
            C, H, W = x.shape
            ho = _conv_out(H, pad[0], pad[1], kh, dh, sh)
            wo = _conv_out(W, pad[2], pad[3], kw, dw, sw)
            L = {"units": mod.out_channels, "has_bias": int(mod.bias is not None),
                 "kernel": [kh, kw], "stride": [sh, sw], "padding": pad,
                 "dilation": [dh, dw], "groups": mod.groups,
                 "weight": self.params32(path, "weight", mod.weight)}
            if mod.bias is not None:
                L["bias"] = self.params32(path, "bias", mod.bias)
            return self.add(base, "Conv2D", [x], (mod.out_channels, ho, wo), **L)
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if isinstance(mod, nn.BatchNorm2d):
                x = self.rank3(x, what)
            if not mod.track_running_stats or mod.running_mean is None:
                raise UnsupportedModuleError("%s: BatchNorm without running statistics "
                                             "(track_running_stats=False) has no inference form"
                                             % what)
            C = mod.num_features
            L = {"bn_eps": np.float32(mod.eps),
                 "mean": self.params32(path, "running_mean", mod.running_mean),
                 "var": self.params32(path, "running_var", mod.running_var)}
            if mod.affine:
                L["gamma"] = self.params32(path, "weight", mod.weight)
                L["beta"] = self.params32(path, "bias", mod.bias)
            else:
                L["gamma"] = np.ones(C, np.float32)
                L["beta"] = np.zeros(C, np.float32)
            return self.add(base, "BatchNorm", [x], x.shape, **L)
        if isinstance(mod, nn.ReLU):
            return self.add(base, "ReLU", [x], x.shape)
        if type(mod) in (nn.Dropout, nn.Dropout2d):
            return self.add(base, "Dropout", [x], x.shape)
        if isinstance(mod, nn.Identity):
            return x
        if isinstance(mod, nn.Flatten):
            if mod.start_dim != 1 or mod.end_dim != -1:
                raise UnsupportedModuleError("%s: Flatten(start_dim=%d, end_dim=%d); only "
                                             "start_dim=1, end_dim=-1" % (what, mod.start_dim,
                                                                          mod.end_dim))
            return self.flatten(base, x)
        if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            x = self.rank3(x, what)
            if mod.ceil_mode:
                raise UnsupportedModuleError("%s: ceil_mode=True (the format uses floor)" % what)
            kh, kw = _pair(mod.kernel_size)
            sh, sw = _pair(mod.stride if mod.stride is not None else mod.kernel_size)
            ph, pw = _pair(mod.padding)
            pad = [ph, ph, pw, pw]
            C, H, W = x.shape
            shape = (C, _conv_out(H, ph, ph, kh, 1, sh), _conv_out(W, pw, pw, kw, 1, sw))
            L = {"kernel": [kh, kw], "stride": [sh, sw], "padding": pad}
            if isinstance(mod, nn.MaxPool2d):
                if _pair(mod.dilation) != (1, 1) or mod.return_indices:
                    raise UnsupportedModuleError("%s: dilation or return_indices" % what)
                return self.add(base, "MaxPool2D", [x], shape, **L)
            if mod.divisor_override is not None:
                raise UnsupportedModuleError("%s: divisor_override" % what)
            return self.add(base, "AvgPool2D", [x], shape,
                            count_include_pad=int(mod.count_include_pad), **L)
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            x = self.rank3(x, what)
            C, H, W = x.shape
            oh, ow = _pair(mod.output_size)
            oh, ow = (H if oh is None else oh), (W if ow is None else ow)
            if (oh, ow) != (1, 1):
                # torchvision's VGG pools to (7, 7): with an input of H x W
                # divisible by the output, adaptive pooling has uniform
                # windows, i.e. an AvgPool2D (at 224 it is the identity, x/1)
                if H % oh or W % ow:
                    raise UnsupportedModuleError(
                        "%s: output_size %s does not divide the input %dx%d (adaptive windows "
                        "of unequal size have no fixture layer)" % (what, mod.output_size, H, W))
                kh, kw = H // oh, W // ow
                return self.add(base, "AvgPool2D", [x], (C, oh, ow), kernel=[kh, kw],
                                stride=[kh, kw], padding=[0, 0, 0, 0], count_include_pad=1)
            t = self.add(base, "GlobalAvgPool", [x], (x.shape[0],))
            t.gap = True
            return t
        self.unsupported(node, what)

    # -- the attention kinds --
    def tokens_in(self, x, what):
        if not isinstance(x, _T) or len(x.shape) != 2:
            raise UnsupportedModuleError("%s: needs a token sequence (batch, T, F), got "
                                         "per-sample shape %s" % (what, getattr(x, "shape", x)))

    def mask_attrs(self, what, kpm, attn_mask, T, causal=False):
        """causal, use_padding_mask, mask_value from PyTorch's mask arguments."""
        attrs = {"causal": int(bool(causal)), "use_padding_mask": 0,
                 "mask_value": np.float32("-inf")}
        if kpm is not None:
            if not isinstance(kpm, _KPM):
                raise UnsupportedModuleError(
                    "%s: key_padding_mask must be the model's own mask argument (pass it to "
                    "export_module as key_padding_mask=), not a tensor computed in forward" % what)
            attrs["use_padding_mask"] = 1
            self.kpm_used = True
        if attn_mask is None:
            return attrs
        if isinstance(attn_mask, (_T, _KPM)) or not torch.is_tensor(attn_mask):
            raise UnsupportedModuleError("%s: attn_mask must be a constant (T, T) tensor" % what)
        m = attn_mask.detach()
        causal_pat = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        if tuple(m.shape) != (T, T):
            raise UnsupportedModuleError("%s: attn_mask of shape %s; only a (T, T) = (%d, %d) "
                                         "causal mask is supported" % (what, tuple(m.shape), T, T))
        if m.dtype == torch.bool:
            masked, value = m, float("-inf")
        elif m.is_floating_point():
            masked = m != 0
            vals = torch.unique(m[masked])
            if vals.numel() > 1 or (vals.numel() == 1 and float(vals[0]) > 0):
                raise UnsupportedModuleError("%s: a float attn_mask must be 0 (kept) and one "
                                             "negative value or -inf (masked)" % what)
            value = float(vals[0]) if vals.numel() else float("-inf")
        else:
            raise UnsupportedModuleError("%s: attn_mask of dtype %s (bool or float)"
                                         % (what, m.dtype))
        if not masked.any():
            return attrs
        if not torch.equal(masked, causal_pat):
            raise UnsupportedModuleError("%s: attn_mask is not the causal pattern (key > query "
                                         "masked); general masks have no fixture form" % what)
        attrs["causal"] = 1
        attrs["mask_value"] = np.float32(value)
        if attrs["use_padding_mask"] and value != float("-inf"):
            raise UnsupportedModuleError("%s: a finite causal mask with a key padding mask "
                                         "(PyTorch would mix -inf and finite values)" % what)
        return attrs

    def mha(self, node, mod, path, what, base, args, kwargs):
        names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
                 "average_attn_weights")
        a = dict(zip(names, args))
        a.update(kwargs)
        q, k, v = a.get("query"), a.get("key"), a.get("value")
        if not mod._qkv_same_embed_dim:
            raise UnsupportedModuleError("%s: kdim / vdim != embed_dim (separate q, k, v "
                                         "projections of other widths)" % what)
        if mod.bias_k is not None:
            raise UnsupportedModuleError("%s: add_bias_kv=True" % what)
        if mod.add_zero_attn:
            raise UnsupportedModuleError("%s: add_zero_attn=True" % what)
        if not (isinstance(q, _T) and q is k and k is v):
            raise UnsupportedModuleError("%s: cross-attention (query, key, value not the same "
                                         "tensor); only self-attention exports" % what)
        if mod.dropout > 0 and self.was_training:
            raise UnsupportedModuleError("%s: dropout %g in training mode (the fixture is the "
                                         "inference forward: call model.eval())"
                                         % (what, mod.dropout))
        if q.tb != (not mod.batch_first):
            raise UnsupportedModuleError(
                "%s: batch_first=%s on a %s tensor" % (what, mod.batch_first,
                                                       "(T, batch, F)" if q.tb else
                                                       "(batch, T, F)"))
        self.tokens_in(q, what)
        T, Fd = q.shape
        attrs = self.mask_attrs(what, a.get("key_padding_mask"), a.get("attn_mask"), T)
        bias = mod.in_proj_bias is not None
        if bias != (mod.out_proj.bias is not None):
            raise UnsupportedModuleError("%s: bias on only one of in_proj / out_proj" % what)
        L = {"heads": mod.num_heads, "scale": np.float32(1.0 / np.sqrt(Fd // mod.num_heads)),
             "has_bias": int(bias),
             "in_proj_weight": self.params32(path, "in_proj_weight", mod.in_proj_weight),
             "out_proj_weight": self.params32(path, "out_proj.weight", mod.out_proj.weight)}
        if bias:
            L["in_proj_bias"] = self.params32(path, "in_proj_bias", mod.in_proj_bias)
            L["out_proj_bias"] = self.params32(path, "out_proj.bias", mod.out_proj.bias)
        L.update(attrs)
        t = self.attention_layer(base, q, L)
        t.tb = q.tb
        return t

    def attention_layer(self, base, x, L):
        """A MultiHeadAttention layer of parameters L on x, or with
        attention="stages" the same attention as its stages
        (attention_stage_layers: Dense BASE_q, BASE_k, BASE_v, AttnScores
        BASE_scores, AttnSoftmax BASE_probs, AttnContext BASE_context and the
        output projection, Dense BASE, the layer the module's output maps
        to)."""
        if not self.stages:
            return self.add(base, "MultiHeadAttention", [x], x.shape, **L)
        T, Fd = x.shape
        h = int(L["heads"])
        shape = {"Dense": (T, Fd), "AttnScores": (h, T, T), "AttnSoftmax": (h, T, T),
                 "AttnContext": (T, Fd)}
        saved, self._origin = self._origin, None  # the stages have no module of their own
        made = {_STAGE_X: x}
        specs = attention_stage_layers(base, _STAGE_X, L)
        for D in specs:
            D = dict(D)
            name, kind, ins = D.pop("name"), D.pop("kind"), D.pop("inputs")
            if name == base:
                self._origin = saved  # the output projection: the module's output
            made[name] = self.add(name, kind, [made[i] for i in ins], shape[kind], **D)
        return made[base]

    def self_attention(self, node, mod, path, what, base, args, kwargs):
        x = args[0] if args else None
        kpm = args[1] if len(args) > 1 else kwargs.get("key_padding_mask")
        extra = set(kwargs) - {"key_padding_mask"}
        if extra or len(args) > 2:
            raise UnsupportedModuleError("%s: arguments %s (only x and key_padding_mask)"
                                         % (what, sorted(extra) or "beyond the second"))
        self.tokens_in(x, what)
        if x.tb:
            raise UnsupportedModuleError("%s: a (T, batch, F) input" % what)
        T, Fd = x.shape
        heads = getattr(mod, "heads", getattr(mod, "h", None))
        if not isinstance(heads, int) or heads < 1 or Fd % heads:
            raise UnsupportedModuleError("%s: needs an int attribute `heads` (or `h`) dividing "
                                         "the width %d" % (what, Fd))
        lins = [mod.q_proj, mod.k_proj, mod.v_proj, mod.out_proj]
        if any((l.in_features, l.out_features) != (Fd, Fd) for l in lins):
            raise UnsupportedModuleError("%s: q/k/v/out_proj must all be Linear(%d, %d)"
                                         % (what, Fd, Fd))
        nb = [l.bias is not None for l in lins]
        if len(set(nb)) != 1:
            raise UnsupportedModuleError("%s: bias on some projections only" % what)
        attrs = self.mask_attrs(what, kpm, None, T, causal=bool(getattr(mod, "causal", False)))
        w = [self.params32(path, n + ".weight", l.weight)
             for n, l in zip(("q_proj", "k_proj", "v_proj", "out_proj"), lins)]
        L = {"heads": heads, "scale": np.float32(1.0 / np.sqrt(Fd // heads)),
             "has_bias": int(nb[0]), "in_proj_weight": np.concatenate(w[:3], 0),
             "out_proj_weight": w[3]}
        if nb[0]:
            b = [self.params32(path, n + ".bias", l.bias)
                 for n, l in zip(("q_proj", "k_proj", "v_proj", "out_proj"), lins)]
            L["in_proj_bias"] = np.concatenate(b[:3], 0)
            L["out_proj_bias"] = b[3]
        L.update(attrs)
        return self.attention_layer(base, x, L)

    def embedding(self, mod, path, what, base, x):
        inp = self.layers[0]
        if not isinstance(x, _T) or x.layer != inp["name"] or inp.get("dtype") != "token":
            raise UnsupportedModuleError("%s: an Embedding must read the model's input, given "
                                         "as integer token ids (batch, T)" % what)
        if mod.max_norm is not None:
            raise UnsupportedModuleError("%s: max_norm (the lookup renormalises rows)" % what)
        w = self.params32(path, "weight", mod.weight)
        return self.add(base, "Embedding", [x], (x.shape[0], w.shape[1]), vocab=w.shape[0],
                        features=w.shape[1], weight=w)

    def softmax(self, node, what, x, dim, dtype=None, base=None):
        if dtype is not None:
            self.unsupported(node, what + " with dtype=")
        r = len(x.shape)
        if dim not in (-1, r):
            raise UnsupportedModuleError("%s: softmax over dim %r; only the last axis (dim=-1)"
                                         % (what, dim))
        return self.add(base or node.name, "Softmax", [x], x.shape)

    def select(self, node, x, idx):
        """x[:, i] / x[:, i, :] on a token sequence: SelectToken."""
        if not isinstance(idx, tuple):
            idx = (idx,)
        full = slice(None)
        if (len(x.shape) == 2 and len(idx) in (2, 3) and idx[0] == full
                and isinstance(idx[1], int) and all(i == full for i in idx[2:])):
            T = x.shape[0]
            i = idx[1] + T if idx[1] < 0 else idx[1]
            if 0 <= i < T:
                return self.add(node.name, "SelectToken", [x], (x.shape[1],), index=i)
        self.unsupported(node, "indexing %r (only x[:, i] on a (batch, T, F) sequence)" % (idx,))

    def flatten(self, base, x):
        n = int(np.prod(x.shape))
        return self.add(base, "Flatten", [x], (n,))

    # -- functions and methods --
    def add_op(self, node, args):
        cs = [a for a in args if torch.is_tensor(a)]
        if len(args) == 2 and len(cs) == 1 and any(isinstance(a, _T) for a in args):
            return self.position(node, [a for a in args if isinstance(a, _T)][0], cs[0])
        ts = [a for a in args if isinstance(a, _T)]
        if len(ts) != len(args) or len(ts) < 2:
            self.unsupported(node, "an addition with a constant")
        if len(set(len(t.shape) for t in ts)) > 1:
            ts = [self.rank3(t, "Add") for t in ts]
        # A sum of sums is one Add layer per binary +, as PyTorch computes it.
        return self.add(node.name, "Add", ts, ts[0].shape)

    def position(self, node, x, c):
        """x + a constant (T, F) table (a learned positional parameter)."""
        if x.tb or len(x.shape) != 2:
            self.unsupported(node, "an addition of a constant (only a (T, F) table to a "
                             "(batch, T, F) token sequence: positions)")
        t = c.detach()
        if t.dim() == 3 and t.shape[0] == 1:
            t = t[0]
        if tuple(t.shape) != tuple(x.shape):
            self.unsupported(node, "an addition of a constant of shape %s to per-sample %s "
                             "(positions: a (T, F) or (1, T, F) table)"
                             % (tuple(c.shape), x.shape))
        tab = self.params32(node.name, "position table", t)
        return self.add(node.name, "Position", [x], x.shape, max_len=x.shape[0], table=tab)

    def mul_op(self, node, args):
        if len(args) != 2 or not all(isinstance(a, _T) for a in args):
            self.unsupported(node, "a product with a constant (only x * y of two tensors)")
        a, b = args
        if a.shape != b.shape or a.tb or b.tb:
            self.unsupported(node, "a product of shapes %s and %s (same shape only)"
                             % (a.shape, b.shape))
        return self.add(node.name, "Mul", [a, b], a.shape)

    @staticmethod
    def traced(v):
        """Whether v (possibly nested) holds a traced value."""
        if isinstance(v, (_T, _KPM, _BatchDim, _Pair, _Unused)):
            return True
        if isinstance(v, tuple) and v[:1] == ("shape",):
            return True
        if isinstance(v, (list, tuple)):
            return any(_Exporter.traced(a) for a in v)
        if isinstance(v, dict):
            return any(_Exporter.traced(a) for a in v.values())
        return False

    def function(self, node, fn, args, kwargs):
        name = getattr(fn, "__name__", repr(fn))
        if not self.traced(args) and not self.traced(kwargs):
            # constants built in forward (a causal mask: torch.triu(torch.full(..)))
            return fn(*args, **kwargs)
        if fn is operator.getitem and isinstance(args[0], _Pair):
            if args[1] == 0:
                return args[0].t
            # the weights: fine while unused (`y, _ = attn(x, x, x)`)
            return _Unused("the attention weights of %s" % args[0].what)
        if fn is operator.getitem and isinstance(args[0], _T):
            return self.select(node, args[0], args[1])
        if fn in (operator.mul, torch.mul):
            return self.mul_op(node, args)
        if fn in (torch.softmax, F.softmax):
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            return self.softmax(node, "function %s" % name, args[0], dim, kwargs.get("dtype"))
        if fn in (torch.tanh, F.tanh):
            return self.add(node.name, "Tanh", [args[0]], args[0].shape)
        if fn is F.gelu:
            return self.add(node.name, "GELU", [args[0]], args[0].shape,
                            approximate=kwargs.get("approximate", "none"))
        if fn is F.silu:
            return self.add(node.name, "SiLU", [args[0]], args[0].shape)
        if fn is torch.transpose:
            return self.transpose(node, args[0], list(args[1:]) + list(kwargs.values()))
        if fn in (operator.add, operator.iadd, torch.add):
            if kwargs.get("alpha", 1) != 1:
                self.unsupported(node, "torch.add with alpha")
            return self.add_op(node, args)
        if fn in (F.relu, torch.relu):
            return self.add(node.name, "ReLU", [args[0]], args[0].shape)
        if fn is torch.flatten:
            sd = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            ed = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
            if sd != 1 or ed != -1:
                self.unsupported(node, "torch.flatten with start_dim=%s, end_dim=%s" % (sd, ed))
            return self.flatten(node.name, args[0])
        if fn is torch.cat:
            ts = args[0]
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            if dim != 1 or not all(isinstance(t, _T) for t in ts):
                self.unsupported(node, "torch.cat along dim %s (only channels, dim=1)" % dim)
            ts = [self.rank3(t, "Concatenate") if any(len(u.shape) == 3 for u in ts) else t
                  for t in ts]
            shape = (sum(t.shape[0] for t in ts),) + tuple(ts[0].shape[1:])
            return self.add(node.name, "Concatenate", list(ts), shape)
        if fn is getattr and isinstance(args[0], _T) and args[1] == "shape":
            return ("shape", args[0])
        if fn is operator.getitem and isinstance(args[0], tuple) and args[0][:1] == ("shape",):
            return self.dim_of(node, args[0][1], args[1])
        if fn is F.dropout:
            return self.add(node.name, "Dropout", [args[0]], args[0].shape)
        self.unsupported(node, "function %s" % name)

    def dim_of(self, node, x, dim):
        """x.shape[dim] / x.size(dim): the batch, else the per-sample size."""
        full = ((x.shape[0], "batch") + tuple(x.shape[1:])) if x.tb else \
            (("batch",) + tuple(x.shape))
        if isinstance(dim, int) and -len(full) <= dim < len(full):
            v = full[dim]
            return _BatchDim() if v == "batch" else v
        self.unsupported(node, "x.size(%r)" % (dim,))

    def transpose(self, node, x, dims):
        """x.transpose(0, 1) of a token sequence: PyTorch's (T, batch, F)."""
        if (isinstance(x, _T) and len(x.shape) == 2 and len(dims) == 2
                and sorted(d % 3 for d in dims) == [0, 1]):
            return _T(x.layer, x.shape, tb=not x.tb)
        self.unsupported(node, "transpose%s (only (batch, T, F) <-> (T, batch, F))"
                         % (tuple(dims),))

    def method(self, node, meth, args, kwargs):
        x = args[0]
        if not self.traced(args) and not self.traced(kwargs):
            return getattr(x, meth)(*args[1:], **kwargs)
        if meth == "size" and isinstance(x, _T):
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if dim is None:
                self.unsupported(node, "x.size() without a dim")
            return self.dim_of(node, x, dim)
        if not isinstance(x, _T):
            self.unsupported(node, "method .%s on a non-tensor" % meth)
        if meth in ("transpose", "swapaxes", "swapdims"):
            return self.transpose(node, x, list(args[1:]) + list(kwargs.values()))
        if meth == "permute":
            dims = list(args[1:])
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = list(dims[0])
            if [d % 3 for d in dims] == [1, 0, 2]:
                return self.transpose(node, x, [0, 1])
            self.unsupported(node, "x.permute%s" % (tuple(dims),))
        if x.tb:
            self.unsupported(node, "method .%s on a (T, batch, F) tensor (transpose back "
                             "first)" % meth)
        if meth == "softmax":
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            return self.softmax(node, "x.softmax", x, dim, kwargs.get("dtype"))
        if meth in ("mul", "__mul__"):
            return self.mul_op(node, args)
        if meth == "tanh":
            return self.add(node.name, "Tanh", [x], x.shape)
        if meth in ("relu", "relu_"):
            return self.add(node.name, "ReLU", [x], x.shape)
        if meth in ("add", "add_", "__add__", "__iadd__"):
            return self.add_op(node, args)
        if meth == "flatten":
            sd = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            ed = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
            if sd != 1 or ed != -1:
                self.unsupported(node, "x.flatten(%s, %s)" % (sd, ed))
            return self.flatten(node.name, x)
        if meth in ("view", "reshape"):
            dims = list(args[1:])
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = list(dims[0])
            if dims and isinstance(dims[0], _BatchDim):
                rest = dims[1:]
                n = int(np.prod(x.shape))
                if rest == [-1] or rest == [n]:
                    return self.flatten(node.name, x)
                if all(isinstance(d, int) and d > 0 for d in rest) and int(np.prod(rest)) == n:
                    return self.add(node.name, "Reshape", [x], tuple(rest),
                                    target_shape=list(rest))
            self.unsupported(node, "x.%s(%s) (use x.view(x.size(0), -1) or explicit per-sample "
                             "dims after x.size(0))" % (meth, dims))
        if meth == "contiguous":
            return x
        self.unsupported(node, "method .%s" % meth)

    def run(self, example_input):
        import torch.fx

        class Proxy(torch.fx.Proxy):
            # `a, b = proxy` (MultiheadAttention's tuple, `B, T, F =
            # x.shape`): torch 1.13's Proxy.__iter__ finds the unpacking
            # instruction at f_lasti // 2, which is wrong from Python 3.11
            # on (inline caches); find it by its offset instead
            def __iter__(self):
                import dis
                import inspect
                frame = inspect.currentframe().f_back
                for inst in dis.get_instructions(frame.f_code):
                    if inst.offset == frame.f_lasti:
                        if inst.opname == "UNPACK_SEQUENCE":
                            return (self[i] for i in range(inst.argval))
                        break
                return super().__iter__()

        class Tracer(torch.fx.Tracer):
            def proxy(self, node):
                return Proxy(node, self)

            # an RMSNorm (any class of that name: torch 1.13 has none) is
            # one layer, not traced into its pow / mean / rsqrt
            def is_leaf_module(self, m, qualname):
                return (type(m).__name__ == "RMSNorm" or _is_attention(m)
                        or super().is_leaf_module(m, qualname))

        # forward's parameters after the input: the key padding mask (when
        # given) stays an argument, the others are fixed at their defaults
        import inspect
        concrete = {}
        try:
            params = list(inspect.signature(self.model.forward).parameters.values())
        except (TypeError, ValueError):
            params = []
        for i, prm in enumerate(params[1:], 1):
            if i == 1 and self.with_kpm:
                continue
            if prm.kind in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD):
                continue
            if prm.default is prm.empty:
                raise UnsupportedModuleError(
                    "the model's forward takes a required argument %r besides the input%s"
                    % (prm.name, "" if self.with_kpm else " (a key padding mask: pass "
                       "key_padding_mask= to export_module)"))
            concrete[prm.name] = prm.default
        try:
            gm = torch.fx.GraphModule(self.model, Tracer().trace(self.model,
                                                                 concrete_args=concrete or None))
        except Exception as e:  # data-dependent control flow, ...
            raise UnsupportedModuleError(
                "torch.fx cannot trace the model (%s: %s); export supports models whose "
                "forward is a fixed graph of: %s" % (type(e).__name__, e, self.SUPPORTED))
        mods = dict(gm.named_modules())
        env = {}
        # ZeroPad2d folds into the Conv2d that is its only user.
        pad_of = {}
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        nfixed = len(concrete)  # placeholders of arguments fixed at their defaults
        if len(placeholders) - nfixed != (2 if self.with_kpm else 1):
            raise UnsupportedModuleError(
                "the model takes %d inputs; a fixture has one Input%s"
                % (len(placeholders) - nfixed, " and the key padding mask" if self.with_kpm else
                   " (a key padding mask as the second: pass key_padding_mask= to export)"))
        x = example_input
        self.names.add(self.input_name)
        shape = tuple(x.shape[1:])
        tokens = not torch.is_floating_point(x)
        if tokens and len(shape) != 1:
            raise UnsupportedModuleError("integer input of per-sample shape %s: token ids are "
                                         "(batch, T)" % (shape,))
        if len(shape) not in (1, 2, 3):
            raise UnsupportedModuleError("input of per-sample shape %s: fixtures take (F), "
                                         "(T, F) or (C, H, W)" % (shape,))
        L0 = {"name": self.input_name, "kind": "Input", "inputs": [], "shape": list(shape)}
        if tokens:
            L0["dtype"] = "token"
        self.layers.append(L0)
        self.origins.append(None)
        out_t = None
        for node in gm.graph.nodes:
            def val(a):
                return torch.fx.node.map_arg(a, lambda n: env[n])
            if node.op == "placeholder":
                if node is placeholders[0]:
                    env[node] = _T(self.input_name, shape)
                elif node is placeholders[1] and self.with_kpm:
                    env[node] = _KPM()
                else:  # an argument fixed at its default (concrete_args)
                    env[node] = node.args[0] if node.args else None
            elif node.op == "get_attr":
                # a parameter or buffer used in forward: a constant (positions,
                # a mask buffer); whether it may stand there is its user's call
                t = gm
                for part in node.target.split("."):
                    t = getattr(t, part)
                env[node] = t
            elif node.op == "call_module":
                mod = mods[node.target]
                args = val(node.args)
                if isinstance(mod, nn.ZeroPad2d):
                    l, r, t, b = (mod.padding if isinstance(mod.padding, tuple)
                                  else (mod.padding,) * 4)
                    users = list(node.users)
                    if (len(users) != 1 or users[0].op != "call_module"
                            or not isinstance(mods[users[0].target], nn.Conv2d)
                            or min(l, r, t, b) < 0):
                        raise UnsupportedModuleError(
                            "module '%s' (ZeroPad2d): only supported when its single user is a "
                            "Conv2d (it becomes the conv's explicit padding)" % node.target)
                    pad_of[users[0]] = [t, b, l, r]
                    env[node] = self.rank3(args[0], "ZeroPad2d")
                    continue
                self._origin = ("module", node.target, self.uses[node.target])
                env[node] = self.module(node, mod, args, pad_of.get(node, [0, 0, 0, 0]),
                                        val(node.kwargs))
            elif node.op == "call_function":
                self._origin = "op"
                env[node] = self.function(node, node.target, val(node.args), val(node.kwargs))
            elif node.op == "call_method":
                self._origin = "op"
                env[node] = self.method(node, node.target, val(node.args), val(node.kwargs))
            elif node.op == "output":
                out_t = val(node.args[0])
        if isinstance(out_t, _Pair):
            out_t = out_t.t
        if isinstance(out_t, _Unused):
            raise UnsupportedModuleError("the model returns %s: the fixture has no such tensor"
                                         % out_t.what)
        if not isinstance(out_t, _T) or out_t.tb:
            raise UnsupportedModuleError("the model must return one (batch-first) tensor")
        if self.with_kpm and not self.kpm_used:
            raise UnsupportedModuleError("key_padding_mask given, but no attention uses it")
        if out_t.layer != self.layers[-1]["name"] or out_t.layer == self.input_name:
            # The format's output is the last layer: reorder is not ours to do.
            raise UnsupportedModuleError("the model's output (%r) is not its last operation"
                                         % out_t.layer)
        used = set(n for L in self.layers for n in L["inputs"])
        dead = [L["name"] for L in self.layers[:-1] if L["name"] not in used]
        if dead:
            raise UnsupportedModuleError("layers whose output is unused (a fixture has one "
                                         "output): %s" % ", ".join(dead))
        return self.layers


def module_to_layers(model, example_input, input_name="input", key_padding_mask=None,
                     was_training=False, attention="layer"):
    """The fixture layer list (dicts as read_fixture returns) of a model.
    key_padding_mask: not None when the model takes one as its second
    argument (its value is not used here).  attention: "layer" (each
    attention one MultiHeadAttention) or "stages" (as export_module)."""
    return _Exporter(model, input_name, was_training,
                     key_padding_mask is not None, attention).run(example_input)


def export_module(model, example_input, path, target=None, input_name="input",
                  description="", composite="", rules=None, relevance_out=None, cli=None,
                  check=True, atol_scale=2 ** -16, key_padding_mask=None, attention="layer"):
    """Exports `model` (evaluated in eval mode) into a fixture at `path`,
    with `example_input` (float32, (batch, ...)) as /data/input and
    `target` (default: the arg-max class per sample) as /data/target.

    Supported: whatever torch.fx traces into Linear, Conv2d, BatchNorm1d/2d,
    ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, Dropout,
    Identity, ZeroPad2d before a Conv2d, +, torch.cat(dim=1), flatten/view
    -- i.e. nn.Sequential stacks, torchvision-style VGG (features,
    avgpool, classifier) and ResNet BasicBlocks -- and the transformer
    layers: LayerNorm, RMSNorm, GELU, SiLU, Tanh, nn.MultiheadAttention
    (self-attention; batch_first True, or False between x.transpose(0, 1)
    and back; a causal attn_mask as a bool or 0 / -inf (or one finite
    value) float tensor; key_padding_mask), SelfAttention (this module's, or
    any class of that name with q/k/v/out_proj Linear), nn.Embedding on
    integer token ids (example_input (batch, T) int: /data/tokens),
    Softmax(dim=-1) / torch.softmax / F.softmax, x * y (Mul), x + a (T, F)
    parameter (Position), x[:, i] (SelectToken).  Anything else raises
    UnsupportedModuleError naming the module path and class.
    key_padding_mask: (batch, T), True = masked, passed to the model as its
    second argument and written to /data/key_padding_mask.
    attention="stages" writes each attention as its stages (Dense q, k, v,
    AttnScores, AttnSoftmax, AttnContext, Dense out; docs/FORMAT.md), so
    that a trace holds, and the oracle judges, every stage on its own; the
    default "layer" writes one MultiHeadAttention.

    With check=True the written file is loaded back (fixture_to_module) and
    its output compared with the model's; a difference above
    atol_scale * max|output| raises ExportError and leaves `path` as it was.
    With cli= (or $LRP_ORACLE) the file must also pass `lrp-oracle info`.
    Returns the layer list."""
    x = torch.as_tensor(example_input)
    if x.dtype != torch.float32 and x.is_floating_point():
        raise ValueError("example_input must be float32, or integer token ids (got %s)"
                         % x.dtype)
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError("example_input must be float32, or integer token ids (got %s)"
                         % x.dtype)
    kpm = None
    if key_padding_mask is not None:
        kpm = torch.as_tensor(key_padding_mask)
        if kpm.is_floating_point():
            # PyTorch's float form: 0 kept, -inf masked
            if not bool(((kpm == 0) | (kpm == float("-inf"))).all()):
                raise ValueError("a float key_padding_mask must hold 0 (kept) and -inf (masked)")
            kpm = kpm == float("-inf")
        kpm = kpm.to(torch.bool)
    margs = (x,) if kpm is None else (x, kpm)
    for what, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for pname, t in named:
            if t.is_floating_point() and t.dtype != torch.float32:
                mod_path, _, leaf = pname.rpartition(".")
                raise UnsupportedModuleError(
                    "module '%s': %s %s is %s; fixtures hold float32 only (call model.float())"
                    % (mod_path, what, leaf, t.dtype))
    was_training = model.training
    model.eval()
    # torch 1.13's inference fast path of nn.MultiheadAttention (eval, no
    # grad) fails without biases (qkv_bias None); with the graph enabled
    # it takes the plain path
    mha = any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    try:
        with (torch.enable_grad() if mha else torch.no_grad()):
            y = model(*margs).detach()
        layers = module_to_layers(model, x, input_name, kpm, was_training, attention)
    finally:
        model.train(was_training)
    if target is None:
        target = y.reshape(y.shape[0], -1).argmax(1).numpy()
    tmp = _tmp_beside(path)
    try:
        write_fixture(tmp, layers, x.detach().numpy(), target=target, rules=rules,
                      relevance_out=relevance_out, description=description,
                      composite=composite, cli=cli,
                      key_padding_mask=None if kpm is None else kpm.numpy())
        if check:
            m = fixture_to_module(tmp)
            with torch.no_grad():
                y2 = m(x)
            y1 = y.reshape(y2.shape)
            err = float((y1 - y2).abs().max())
            scale = float(y1.abs().max())
            if not err <= atol_scale * max(scale, 1e-30):
                raise ExportError("re-imported fixture differs from the model: max |diff| %g "
                                  "at output scale %g" % (err, scale))
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return layers


# ---------------------------------------------------------------------------
# Relevance capture and traces
# ---------------------------------------------------------------------------
#
# Where the relevance of a tensor is, for each peer:
#   Zennit  relevance *is* the gradient: rule hooks on each module replace
#           the gradient by the relevance, so the gradient arriving at a
#           layer's output is its relevance (seeded with what the user passes
#           as attr_output: the output value at the target gives ours, a
#           one-hot gives ours / output).
#   Captum  rule layers turn the gradient into relevance in a hook on their
#           *input* tensor (grad * input) and back in a hook on their output
#           (grad / (output + eps)); ReLU/Dropout pass it unchanged.  So the
#           gradient of a tensor after every consumer's hooks ran is its
#           relevance, seeded 1 at the target (Captum multiplies only the
#           final attribution by the output).
# Both are read by one mechanism: a gradient hook on each layer's output
# tensor, registered when the model's forward has *finished*, i.e. after
# every hook a peer registered during that forward, so it sees the gradient
# as it leaves the last consumer's hook.  seed="one" multiplies by the
# output value at the target (per sample: sum(output * output gradient)).

_OP_KINDS = {"add": "Add", "add_": "Add", "__add__": "Add", "__iadd__": "Add",
             "__radd__": "Add", "cat": "Concatenate", "concat": "Concatenate",
             "flatten": "shape", "view": "shape", "reshape": "shape",
             "relu": "ReLU", "relu_": "ReLU", "dropout": "Dropout"}
_ADDER_CLASSES = ("Sum", "Addition_Module")  # zennit.layer.Sum, captum's Addition_Module


class _GradTap:
    """Gradient hooks on a set of named tensors, registered last."""

    def __init__(self):
        self.grads = {}
        self.tensors = {}
        self.handles = []
        self.gen = 0

    def arm(self, named):
        """named: {layer: tensor} of the forward that just finished."""
        self.gen += 1
        gen = self.gen
        self.grads = {}
        self.tensors = collections.OrderedDict(named)
        for name, t in named.items():
            if isinstance(t, torch.Tensor) and t.requires_grad:
                if t.is_leaf:
                    t.retain_grad()

                def hook(g, _n=name, _gen=gen):
                    if _gen == self.gen:  # a later forward replaced this one
                        self.grads[_n] = self.grads[_n] + g if _n in self.grads else g
                    return None
                self.handles.append(t.register_hook(hook))

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


class _ModelTap:
    """Runs on a user's own model: maps module calls (by module path and
    call count, so a ReLU module called twice is two layers) and tensor
    operations (+, torch.cat, flatten/view/reshape, F.relu, by kind and
    order) to the layers export_module made of it, during every forward of
    the model, and arms a _GradTap at the end of that forward."""

    def __init__(self, model, layers, origins, tap):
        self.model = model
        self.names = {id(m): p for p, m in model.named_modules()}
        self.by_origin = {o: L["name"] for L, o in zip(layers, origins) if o is not None}
        self.input_name = layers[0]["name"]
        self.tap = tap
        self.handles = [model.register_forward_pre_hook(self.pre),
                        model.register_forward_hook(self.post)]
        self.inner = []
        self.mode = None

    def pre(self, model, args):
        self.out = collections.OrderedDict()
        # the input as a view (bitwise equal): a hook on a leaf tensor does
        # not fire under torch.autograd.grad, on a view it does
        x = args[0].view_as(args[0])
        self.out[self.input_name] = x
        self.calls = collections.Counter()
        self.ops = collections.Counter()
        self.depth = 0
        # registered now, i.e. after the peer's hooks: they see its outputs
        for m in self.model.modules():
            if m is not self.model and not list(m.children()):
                self.inner.append(m.register_forward_pre_hook(self.mpre))
                self.inner.append(m.register_forward_hook(self.mpost))
        tapper = self

        class _Ops(torch.overrides.TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                kind = _OP_KINDS.get(getattr(func, "__name__", ""))
                if kind and tapper.depth == 0 and isinstance(out, torch.Tensor):
                    tapper.event(("op", kind, tapper.ops[kind]), out)
                    tapper.ops[kind] += 1
                return out
        self.mode = _Ops()
        self.mode.__enter__()
        return (x,) + tuple(args[1:])

    def event(self, origin, out):
        name = self.by_origin.get(origin)
        if name is not None:
            self.out[name] = out

    def mpre(self, m, args):
        self.depth += 1

    def mpost(self, m, args, out):
        self.depth -= 1
        if self.depth:
            return None
        if type(m).__name__ in _ADDER_CLASSES:
            self.event(("op", "Add", self.ops["Add"]), out)
            self.ops["Add"] += 1
            return None
        path = self.names.get(id(m), "")
        self.event(("module", path, self.calls[path]), out)
        self.calls[path] += 1
        return None

    def post(self, model, args, out):
        self.close()
        self.tap.arm(self.out)

    def close(self):
        if self.mode is not None:
            self.mode.__exit__(None, None, None)
            self.mode = None
        for h in self.inner:
            h.remove()
        self.inner = []

    def remove(self):
        self.close()
        for h in self.handles:
            h.remove()


def capture_relevance(module, input, lrp_fn, formulation="grad", layers=None, seed="output",
                      input_name="input"):
    """Runs an LRP and collects the relevance at every layer's output.

    module: a FixtureModule (fixture_to_module) or the user's own model (the
      one export_module wrote the fixture from: its layers are found again
      by module path and call, and by the order of +, torch.cat, flatten,
      view and F.relu, so functional adds, modules called twice and the
      input are all captured; input_name as given to export_module).
    lrp_fn(module, x): runs the forward through `module` on x (a leaf that
      requires grad) and the backward of the LRP (a Zennit attributor, a
      Captum LRP(module).attribute(x, target), or your own hooks).
    formulation: "grad"          relevance = the gradient at the tensor after
                                 all hooks (Zennit, Captum, relevance-as-gradient
                                 code in general)
                 "grad_x_input"  relevance = tensor * gradient
    seed: "output"  the LRP started from the output value at the target (ours)
          "one"     it started from 1 at the target (Captum always; Zennit with
                    a one-hot attr_output): every layer is multiplied by the
                    output value at the target, per sample
    layers: deprecated, ignored for a FixtureModule.
    Returns {layer name: float32 numpy array (batch, *layer output shape)} in
    execution order; the Input layer's entry is the input relevance.  Layers
    whose output got no gradient are left out (a trace may omit layers)."""
    if formulation not in ("grad", "grad_x_input"):
        raise ValueError("formulation must be 'grad' or 'grad_x_input'")
    if seed not in ("output", "one"):
        raise ValueError("seed must be 'output' or 'one'")
    x = torch.as_tensor(input, dtype=torch.float32).detach().clone().requires_grad_(True)
    tap = _GradTap()
    user = None
    shapes = None
    if isinstance(module, FixtureModule):
        order = list(module.layer_names)
        module._tap = tap.arm
    else:
        ex = _Exporter(module, input_name)
        was_training = module.training
        module.eval()
        try:
            lays = ex.run(x.detach())
        finally:
            module.train(was_training)
        order = [L["name"] for L in lays]
        # the fixture's per-sample shapes (a global pool is (C), not (C, 1, 1))
        shapes = FixtureModule(lays).layer_shapes
        user = _ModelTap(module, lays, ex.origins, tap)
    try:
        lrp_fn(module, x)
    finally:
        if user is not None:
            user.remove()
        else:
            module._tap = None
        tap.remove()
    grads = tap.grads
    if x.grad is not None and order[0] not in grads:
        grads[order[0]] = x.grad
    scale = None
    if seed == "one":
        last = order[-1]
        if last not in grads:
            raise ValueError("seed='one': the output layer got no gradient")
        y, g = tap.tensors[last].detach(), grads[last]
        scale = (y * g).reshape(y.shape[0], -1).sum(1)
    res = collections.OrderedDict()
    for name in order:
        g = grads.get(name)
        if g is None:
            continue
        r = g if formulation == "grad" else tap.tensors[name].detach() * g
        if scale is not None:
            r = r * scale.reshape((-1,) + (1,) * (r.dim() - 1))
        if shapes is not None:
            r = r.reshape((r.shape[0],) + tuple(shapes[name]))
        res[name] = r.detach().cpu().numpy().astype(np.float32, copy=True)
    return res


def epsilon_rules(path_or_layers, eps=EPS_DEFAULT, stabilizer="sign0_pos", maxpool="wta"):
    """Rules {layer name: rule dict} for 'epsilon everywhere it applies':
    Dense, Conv2D, BatchNorm, Add, AvgPool2D, GlobalAvgPool get epsilon
    (eps, stabilizer), MaxPool2D winner-take-all (maxpool="epsilon": the
    epsilon rule there too, as Captum does), the rest pass."""
    layers = (read_fixture(path_or_layers)["layers"] if isinstance(path_or_layers, str)
              else path_or_layers)
    res = {}
    for L in layers:
        k = L["kind"]
        if k in ("Dense", "Conv2D", "BatchNorm", "Add", "AvgPool2D", "GlobalAvgPool"):
            res[L["name"]] = {"rule": "epsilon", "eps": np.float32(eps), "stabilizer": stabilizer}
        elif k == "MaxPool2D" and maxpool == "epsilon":
            res[L["name"]] = {"rule": "epsilon", "eps": np.float32(eps), "stabilizer": stabilizer}
        elif k == "MaxPool2D":
            res[L["name"]] = {"rule": maxpool}
        else:
            res[L["name"]] = {"rule": "pass"}
    return res


def _layer_shapes(fx):
    m = FixtureModule(fx["layers"])
    with torch.no_grad():
        outs = m(torch.from_numpy(fx["input"]), return_all=True)
    return {n: tuple(t.shape) for n, t in outs.items()}


_DIGEST_K = 0x9E3779B97F4A7C15


def fixture_digest(path, chunk_words=1 << 22):
    """(size, digest) of a fixture file as a trace file records them
    (docs/FORMAT.md "Trace files"): the bytes as little-endian 64-bit words
    w_i, the last zero-padded; digest = sum_i w_i (2i + 1) K mod 2^64."""
    size = os.path.getsize(path)
    h = np.uint64(0)
    i0 = 0
    with open(path, "rb") as f, np.errstate(over="ignore"):
        while True:
            b = f.read(8 * chunk_words)
            if not b:
                break
            if len(b) % 8:
                b += bytes(8 - len(b) % 8)
            w = np.frombuffer(b, dtype="<u8").astype(np.uint64)
            k = np.arange(i0, i0 + len(w), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
            h = np.uint64(h + np.sum(w * k, dtype=np.uint64))
            i0 += len(w)
    with np.errstate(over="ignore"):
        return size, int(np.uint64(h) * np.uint64(_DIGEST_K))


def _fixture_ref(fixture, out):
    """The fixture's name as a trace file at `out` stores it: its base name
    when both are in one directory (the pair can move together), else its
    absolute path."""
    fa = os.path.realpath(fixture)
    od = os.path.realpath(os.path.dirname(os.path.abspath(out)))
    return os.path.basename(fa) if os.path.dirname(fa) == od else fa


def write_trace(path, source, relevances, producer, profile="", composite="", rules=None,
                notes="", precision=24, relevance_lo=None, overwrite=False, cli=None,
                activations=None, out=None):
    """Adds trace `source` to the fixture at `path`: /traces/<source> with
    provenance attributes (producer, precision, notes, profile, composite),
    optional rules ({layer: rule dict}, see epsilon_rules; layers without
    one mean "as /rules"), and relevance datasets (batch, *layer shape)
    float32 keyed by layer name (missing layers = not traced).
    relevance_lo: optional low parts (value = hi + lo).
    activations: optional forward activations your code computed, float32
    keyed by layer name (e.g. module.forward_all(x) of fixture_to_module):
    with them, `compare` judges every layer's step on exactly the inputs
    your code used (the sharpest verdict, docs/ORACLE.md).  The file is
    copied, changed, checked (`lrp-oracle info` when cli= or $LRP_ORACLE is
    given) and renamed back; an existing trace of that source is an error
    unless overwrite=True.
    out: write a trace file OUT instead (docs/FORMAT.md "Trace files"): the
    trace alone, naming the fixture at `path` by name, size and digest;
    nothing of the fixture is copied or changed (for big models: adding a
    trace to a 528 MB VGG-16 fixture copied it whole).  `lrp-oracle compare
    OUT --source NAME` reads it as the fixture with the trace; a fixture
    changed afterwards is refused.  The fixture must not hold a trace of
    the same source.  Returns the path written."""
    _check_name(source, "trace source")
    if len(producer.encode()) > 127:
        raise ValueError("producer: at most 127 bytes")
    if len(notes.encode()) > 255:
        raise ValueError("notes: at most 255 bytes")
    _check_name(profile, "profile") if profile else None
    if composite and composite not in COMPOSITES:
        raise ValueError("unknown composite %r (known: %s; '' for an explicit rule list)"
                         % (composite, ", ".join(COMPOSITES)))
    if composite and not rules:
        # the attribute is provenance only: the reference is computed from
        # the trace's rules, so a composite without them would be judged
        # against the fixture's /rules (LRP-0 where it has none)
        raise ValueError("composite=%r is only a label; pass rules= with what your library "
                         "applied per layer (lrp_peers.zennit_rules / captum_rules read them "
                         "from a Zennit composite or a Captum model)" % composite)
    fx = read_fixture(path)
    names = [L["name"] for L in fx["layers"]]
    index = {n: i for i, n in enumerate(names)}
    shapes = _layer_shapes(fx)
    if source in fx["traces"] and (out is not None or not overwrite):
        raise FixtureError("%s: /traces/%s: trace exists (%s)"
                           % (path, source, "a trace file beside it would be ambiguous"
                              if out is not None else "pass overwrite=True to replace it"))

    def checked(rel, what):
        out = {}
        for n, a in rel.items():
            if n not in index:
                raise ValueError("%s for %r: no such layer (layers: %s)"
                                 % (what, n, ", ".join(names)))
            a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
            if a.dtype != np.float32:
                raise ValueError("%s for %r is %s; traces are float32 (what the code under "
                                 "test computed), convert explicitly" % (what, n, a.dtype))
            if tuple(a.shape) != shapes[n]:
                raise ValueError("%s for %r has shape %s, the layer's output is %s (batch-major)"
                                 % (what, n, tuple(a.shape), shapes[n]))
            out[n] = a
        return out

    rel = checked(relevances, "relevance")
    lo = checked(relevance_lo or {}, "relevance_lo")
    act = checked(activations or {}, "activation")
    for n in lo:
        if n not in rel:
            raise ValueError("relevance_lo for %r without relevance" % n)
    dest = path if out is None else out
    if out is not None and os.path.exists(out) and os.path.samefile(out, path):
        raise ValueError("out is the fixture itself: %s" % out)
    tmp = _tmp_beside(dest)
    try:
        if out is None:
            shutil.copyfile(path, tmp)
            try:
                f = h5py.File(tmp, "a", libver=("v110", "v110"))
            except (OSError, ValueError):
                f = h5py.File(tmp, "a")
        else:
            size, digest = fixture_digest(path)
            f = h5py.File(tmp, "w", libver=("v110", "v110"))
            f.attrs["format"] = "lrp-oracle-trace"
            f.attrs["format_version"] = np.int32(1)
            f.attrs["fixture"] = _fixture_ref(path, out)
            f.attrs["fixture_size"] = np.int64(size)
            f.attrs["fixture_digest"] = np.uint64(digest)
        with f:
            tr = f.require_group("traces")
            if source in tr:
                del tr[source]
            g = tr.create_group(source)
            g.attrs["producer"] = producer
            g.attrs["precision"] = np.int32(precision)
            g.attrs["notes"] = notes
            g.attrs["profile"] = profile
            g.attrs["composite"] = composite
            if rules:
                _write_rules(g, fx["layers"], rules)
            for grp, dd in (("relevance", rel), ("relevance_lo", lo), ("activation", act)):
                if dd:
                    rg = g.create_group(grp)
                    for n, a in dd.items():
                        _ds(rg, entry_name(index[n], n), a)
    except BaseException:
        os.unlink(tmp)
        raise
    _finish(tmp, dest, cli)
    return dest
