"""torch_lrp.py -- an independent PyTorch autograd LRP of a fixture, for the
false-alarm count of the mutation benchmark (bench/mutants.py).

lrp(path, rules, dtype) runs the fixture's network (tools/python/lrp_torch.py
FixtureModule) forward in `dtype` and the LRP backward layer by layer with
the rules given ({layer index: rule attrs as in /traces/<s>/rules}), the way
PyTorch LRP libraries do it: each linear layer's relevance is
a * grad(z, a, R / stab(z)) with the rule's modified inputs and weights.
Returns [relevance per layer] (numpy, dtype), with with_acts also the forward
activations it used, or raises Unsupported with the reason.  Written from docs/SPEC.md's rule table as docs/ORACLE.md and
core/ruletab.c state it; not derived from the C code.

Supported: Input, ReLU, Flatten, Dropout, Reshape (pass); MaxPool2D (wta,
first maximum: PyTorch's max_pool2d gradient); Dense, Conv2D with lrp0,
epsilon, zplus, alphabeta, flat; AvgPool2D and GlobalAvgPool (epsilon);
BatchNorm explicit (epsilon on y = w x + b'); Add (epsilon, proportional);
stabilizers sign0_pos and signbit.  Everything else: Unsupported.
"""
import numpy as np
import torch
import torch.nn.functional as F

import lrp_torch as lt


class Unsupported(Exception):
    pass


def _stab(z, eps, conv):
    if conv == "sign0_pos":
        s = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
    elif conv == "signbit":
        s = torch.where(torch.signbit(z), -torch.ones_like(z), torch.ones_like(z))
    else:
        raise Unsupported("stabilizer %s" % conv)
    return z + eps * s


def _flags(r):
    f = r.get("flags")
    if f is None:
        return []
    return [s.decode() if isinstance(s, bytes) else str(s) for s in np.atleast_1d(f) if len(s)]


def _lin(L, x, w, b):
    if L["kind"] == "Dense":
        return F.linear(x.reshape(x.shape[0], -1), w, b)
    t, bo, l, r = L["padding"]
    return F.conv2d(F.pad(x, (l, r, t, bo)), w, b, tuple(L["stride"]), 0, tuple(L["dilation"]),
                    int(L.get("groups", 1)))


def _part(L, terms, bias, R, eps, conv, empty_zero):
    """sum_t in_t * W_t^T (R / stab(sum_t in_t W_t + bias)); empty_zero: a
    unit whose denominator is exactly 0 passes nothing (alpha-beta)."""
    xs = [x.detach().clone().requires_grad_(True) for x, _ in terms]
    z = 0
    for x, (_, w) in zip(xs, terms):
        z = z + _lin(L, x, w, None)
    if bias is not None:
        z = z + (bias if L["kind"] == "Dense" else bias.view(1, -1, 1, 1))
    zd = z.detach()
    s = R.reshape(zd.shape) / _stab(zd, eps, conv)
    if empty_zero:
        s = torch.where(zd == 0, torch.zeros_like(s), s)
    gs = torch.autograd.grad(z, xs, s)
    out = 0
    for x, g in zip(xs, gs):
        out = out + x.detach() * g
    return out


def _linear_rule(L, r, a, R, dt):
    rule = r.get("rule")
    eps = float(np.float32(r.get("eps", 0)))
    conv = r.get("stabilizer", "sign0_pos")
    use_b = int(r.get("bias", 1)) and L.get("has_bias") and "bias" in L
    if set(_flags(r)) - {"wta_split_ties"}:
        raise Unsupported("flags %s" % _flags(r))
    W = torch.as_tensor(L["weight"], dtype=dt)
    b = torch.as_tensor(L["bias"], dtype=dt) if use_b else None
    pos = lambda t: t.clamp(min=0)
    neg = lambda t: t.clamp(max=0)
    if rule in ("lrp0", "epsilon"):
        return _part(L, [(a, W)], b, R, eps, conv, False)
    if rule in ("zplus", "alphabeta"):
        al = 1.0 if rule == "zplus" else float(r.get("alpha", 1))
        be = 0.0 if rule == "zplus" else float(r.get("beta", 0))
        out = al * _part(L, [(pos(a), pos(W)), (neg(a), neg(W))],
                         pos(b) if b is not None else None, R, eps, conv, True)
        if be != 0:
            out = out - be * _part(L, [(pos(a), neg(W)), (neg(a), pos(W))],
                                   neg(b) if b is not None else None, R, eps, conv, True)
        return out
    if rule == "flat":
        return _part(L, [(torch.ones_like(a), torch.ones_like(W))], None, R, eps, conv, False)
    raise Unsupported("rule %s on %s" % (rule, L["kind"]))


def lrp(path, rules, dtype=torch.float32, with_acts=False):
    fx = lt.read_fixture(path)
    layers = fx["layers"]
    names = [L["name"] for L in layers]
    idx = {n: i for i, n in enumerate(names)}
    m = lt.FixtureModule(layers).to(dtype)
    x = torch.as_tensor(fx["input"], dtype=dtype)
    with torch.no_grad():
        acts = list(m(x, return_all=True).values())
    n = len(layers)
    out = acts[-1]
    if fx["relevance_out"] is not None:
        R0 = torch.as_tensor(fx["relevance_out"], dtype=dtype)
    else:
        if fx["target"] is None:
            raise Unsupported("no target and no relevance_out")
        R0 = torch.zeros_like(out)
        for s, t in enumerate(fx["target"]):
            R0.reshape(out.shape[0], -1)[s, int(t)] = out.reshape(out.shape[0], -1)[s, int(t)]
    rel = [None] * n
    acc = [torch.zeros_like(a) for a in acts]
    acc[-1] = R0
    for i in range(n - 1, -1, -1):
        L = layers[i]
        R = acc[i]
        rel[i] = R
        if i == 0:
            break
        r = rules.get(i, {})
        rule = r.get("rule", "pass")
        ins = [idx[s] for s in L["inputs"]]
        k = L["kind"]
        a = acts[ins[0]]
        if k in ("ReLU", "Flatten", "Dropout", "Reshape") and rule == "pass":
            acc[ins[0]] = acc[ins[0]] + R.reshape(a.shape)
        elif k == "MaxPool2D" and rule == "wta":
            if "wta_split_ties" in _flags(r):
                raise Unsupported("wta_split_ties")
            xa = a.detach().clone().requires_grad_(True)
            z = m.nodes[i](xa)
            (g,) = torch.autograd.grad(z, xa, R)
            acc[ins[0]] = acc[ins[0]] + g
        elif k in ("Dense", "Conv2D"):
            acc[ins[0]] = acc[ins[0]] + _linear_rule(L, r, a, R, dtype).reshape(a.shape)
        elif k in ("AvgPool2D", "GlobalAvgPool", "BatchNorm", "Add") and rule in ("epsilon", "lrp0"):
            if _flags(r):
                raise Unsupported("flags %s on %s" % (_flags(r), k))
            eps = float(np.float32(r.get("eps", 0)))
            conv = r.get("stabilizer", "sign0_pos")
            if k == "Add":
                z = sum(acts[j] for j in ins)
                s = R / _stab(z, eps, conv)
                for j in ins:
                    acc[j] = acc[j] + acts[j] * s
                continue
            if k == "BatchNorm":
                w = torch.as_tensor(L["gamma"], dtype=dtype) / torch.sqrt(
                    torch.as_tensor(L["var"], dtype=dtype) + torch.as_tensor(L["bn_eps"], dtype=dtype))
                bb = torch.as_tensor(L["beta"], dtype=dtype) - torch.as_tensor(L["mean"], dtype=dtype) * w
                wz = a * w.view(1, -1, 1, 1) if a.dim() == 4 else a * w
                z = wz + ((bb.view(1, -1, 1, 1) if a.dim() == 4 else bb) if int(r.get("bias", 1)) else 0)
                acc[ins[0]] = acc[ins[0]] + wz * (R / _stab(z, eps, conv))
                continue
            xa = a.detach().clone().requires_grad_(True)
            z = m.nodes[i](xa)
            (g,) = torch.autograd.grad(z, xa, R.reshape(z.shape) / _stab(z.detach(), eps, conv))
            acc[ins[0]] = acc[ins[0]] + xa.detach() * g
        else:
            raise Unsupported("%s with rule %s" % (k, rule))
    npdt = np.float32 if dtype == torch.float32 else np.float64
    rel = [t.detach().numpy().astype(npdt) for t in rel]
    if with_acts:
        return rel, [a.detach().numpy().astype(npdt) for a in acts]
    return rel
