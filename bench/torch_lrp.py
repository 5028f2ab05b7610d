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
first maximum: PyTorch's max_pool2d gradient); Dense (on (F) or (T, F)),
Conv2D with lrp0, epsilon, zplus, alphabeta, flat; AvgPool2D and
GlobalAvgPool (epsilon); BatchNorm explicit (epsilon on y = w x + b'); Add
(epsilon, proportional); stabilizers sign0_pos and signbit.

The transformer kinds (docs/SPEC.md 3.7, 3.8), AttnLRP and CP-LRP the way
LXT computes them -- relevance = input x modified gradient -- with the
modified-backward functions of tools/python/lrp_attn.py (_EpsScale: the
epsilon rule at a tensor, divide_gradient: the uniform rule's halving at a
bilinear product, masked_softmax / build_mask: the masks, A = 0 on a row
with no visible key):
  MultiHeadAttention  attnlrp: the input projection, S = c q k^T and O = A v
                      each under _EpsScale (the layer rule's eps, sign0_pos)
                      and halved at S and O; A's plain gradient is the Taylor
                      rule read at the pre-mask scores; the output projection
                      seeded with R / stab(y).  cplrp: A detached, O not
                      halved.
  Softmax (taylor)    R_x = x (R - s sum R), the closed form of x times the
                      softmax's vector-Jacobian product at R / s (which would
                      divide by an underflowed s)
  Mul (uniform)       R / 2 to each factor
  LayerNorm           ln_linear: sigma frozen, x * grad of the linear part at
                      R / stab(y); ln_fine: (w / sigma) x R / stab(y);
                      identity.  RMSNorm, GELU, SiLU, Tanh: identity (the
                      activations with an eps: x R / stab(x), LXT's)
  Embedding           relevance per token: the feature sum
  Position            proportional split with the table (lrp0 / epsilon) or pass
  SelectToken         R to the selected row
  ToTokens            pass: R (T, C) back to (C, H, W), t = h W + w
  ClsToken            pass: rows 1 ... T to the input, row 0 absorbed
Everything else: Unsupported.
"""
import numpy as np
import torch
import torch.nn.functional as F

import lrp_attn as la
import lrp_torch as lt


class Unsupported(Exception):
    pass


def _stab(z, eps, conv):
    if conv == "sign0_pos":
        s = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
    elif conv == "signbit":
        s = torch.where(torch.signbit(z), -torch.ones_like(z), torch.ones_like(z))
    elif conv == "positive":
        s = torch.ones_like(z)
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
        if x.dim() == 3:  # a token sequence (T, F): the last axis, row by row
            return F.linear(x, w, b)
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


def _div(R, den):
    """R / den with an exact-zero denominator passing nothing (the units
    docs/SPEC.md section 4 absorbs as undefined)."""
    zero = den == 0
    return torch.where(zero, torch.zeros_like(R), R / torch.where(zero, torch.ones_like(den), den))


def _eps_rule(r, what):
    eps = float(np.float32(r.get("eps", 0)))
    conv = r.get("stabilizer", "sign0_pos")
    if _flags(r):
        raise Unsupported("flags %s on %s" % (_flags(r), what))
    return eps, conv


def _layernorm(L, r, a, R, dt):
    rule = r.get("rule")
    if rule == "identity":
        return R
    if rule not in ("ln_linear", "ln_fine"):
        raise Unsupported("rule %s on LayerNorm" % rule)
    eps, conv = _eps_rule(r, "LayerNorm")
    Fd = a.shape[-1]
    w = torch.as_tensor(L["weight"], dtype=dt) if L.get("has_weight") else torch.ones(Fd, dtype=dt)
    b = torch.as_tensor(L["bias"], dtype=dt) if L.get("has_bias") else None
    mu = a.mean(-1, keepdim=True)
    sigma = torch.sqrt(((a - mu) ** 2).mean(-1, keepdim=True) + float(np.float32(L["eps"])))
    xa = a.detach().clone().requires_grad_(True)
    lin = (xa - xa.mean(-1, keepdim=True)) / sigma * w     # sigma frozen: linear in x
    y = lin.detach() + (b if (b is not None and int(r.get("bias", 1))) else 0)
    s = _div(R, _stab(y, eps, conv))
    if rule == "ln_fine":
        return a * (w / sigma) * s
    (g,) = torch.autograd.grad(lin, xa, s)
    return a * g


def _attention(L, r, a, R, dt, kpm):
    """One MultiHeadAttention layer's input relevance under attnlrp / cplrp
    (docs/SPEC.md 3.8) in LXT's gradient form, lrp_attn's functions."""
    rule = r.get("rule")
    if rule not in ("attnlrp", "cplrp"):
        raise Unsupported("rule %s on MultiHeadAttention" % rule)
    eps, conv = _eps_rule(r, "MultiHeadAttention")
    if conv != "sign0_pos" or not eps > 0:
        # _EpsScale is sign0_pos; without eps its z / z is 0/0 at z = 0
        raise Unsupported("MultiHeadAttention with stabilizer %s, eps %g" % (conv, eps))
    B, T, Fd = a.shape
    H = int(L["heads"])
    d = Fd // H
    c = float(np.float32(L["scale"]))
    bias = bool(L.get("has_bias")) and int(r.get("bias", 1))
    t = lambda k: torch.as_tensor(L[k], dtype=dt)
    Win, Wout = t("in_proj_weight"), t("out_proj_weight")
    bin_, bout = (t("in_proj_bias"), t("out_proj_bias")) if L.get("has_bias") else (None, None)
    mask = la.build_mask(B, T, torch.as_tensor(kpm) if L.get("use_padding_mask") else None,
                         bool(L.get("causal")))
    mval = float(np.float32(L.get("mask_value", np.float32("-inf"))))
    x = a.detach().clone().requires_grad_(True)
    qkv = la._EpsScale.apply(F.linear(x, Win, bin_), eps)
    q, k, v = (qkv[..., i * Fd:(i + 1) * Fd].reshape(B, T, H, d).transpose(1, 2) for i in range(3))
    S = la._EpsScale.apply(torch.matmul(q, k.transpose(-1, -2)) * c, eps)
    if rule == "attnlrp":
        S = la.divide_gradient(S, 2)
    if mask is not None and mval != float("-inf"):
        A = torch.softmax(S + mask.to(dt) * mval, -1)   # the finite mask: a constant summand
    else:
        A = la.masked_softmax(S, mask)
    if rule == "cplrp":
        A = A.detach()
    O = la._EpsScale.apply(torch.matmul(A, v), eps)
    if rule == "attnlrp":
        O = la.divide_gradient(O, 2)
    O = O.transpose(1, 2).reshape(B, T, Fd)
    y = F.linear(O, Wout, bout if bias else None)
    ys = F.linear(O.detach(), Wout, bout if bias else None)
    (g,) = torch.autograd.grad(y, x, _div(R, _stab(ys, eps, conv)))
    return a * g


def lrp(path, rules, dtype=torch.float32, with_acts=False):
    fx = lt.read_fixture(path)
    layers = fx["layers"]
    names = [L["name"] for L in layers]
    idx = {n: i for i, n in enumerate(names)}
    m = lt.FixtureModule(layers, key_padding_mask=fx["key_padding_mask"]).to(dtype)
    x = torch.as_tensor(fx["input"], dtype=torch.int64 if fx["tokens"] is not None else dtype)
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
    acc = [torch.zeros(a.shape, dtype=dtype) for a in acts]
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
        elif k in ("RMSNorm", "GELU", "SiLU", "Tanh") and rule == "identity":
            if float(np.float32(r.get("eps", 0))) != 0:
                # LXT's implicit identity on an activation: R x / stab(x)
                eps, conv = _eps_rule(r, k)
                acc[ins[0]] = acc[ins[0]] + a * _div(R, _stab(a, eps, conv))
            else:
                acc[ins[0]] = acc[ins[0]] + R
        elif k == "LayerNorm":
            acc[ins[0]] = acc[ins[0]] + _layernorm(L, r, a, R, dtype)
        elif k == "Softmax" and rule == "taylor":
            s = acts[i]
            acc[ins[0]] = acc[ins[0]] + a * (R - s * R.sum(-1, keepdim=True))
        elif k == "Mul" and rule == "uniform":
            for j in ins:
                acc[j] = acc[j] + R / 2
        elif k == "MultiHeadAttention":
            acc[ins[0]] = acc[ins[0]] + _attention(L, r, a, R, dtype, fx["key_padding_mask"])
        elif k == "Embedding" and rule in ("lrp0", "epsilon", "pass"):
            acc[ins[0]] = acc[ins[0]] + R.sum(-1)
        elif k == "Position" and rule == "pass":
            acc[ins[0]] = acc[ins[0]] + R
        elif k == "Position" and rule in ("lrp0", "epsilon"):
            eps, conv = _eps_rule(r, k)
            z = acts[i]
            acc[ins[0]] = acc[ins[0]] + a * _div(R, _stab(z, eps, conv))
        elif k == "ToTokens" and rule == "pass":
            acc[ins[0]] = acc[ins[0]] + R.transpose(1, 2).reshape(a.shape)
        elif k == "ClsToken" and rule == "pass":
            acc[ins[0]] = acc[ins[0]] + R[:, 1:]
        elif k == "SelectToken" and rule == "pass":
            acc[ins[0]][:, int(L["index"])] += R
        else:
            raise Unsupported("%s with rule %s" % (k, rule))
    npdt = np.float32 if dtype == torch.float32 else np.float64
    rel = [t.detach().numpy().astype(npdt) for t in rel]
    if with_acts:
        return rel, [a.detach().numpy().astype(npdt) for a in acts]
    return rel
