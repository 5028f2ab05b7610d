"""lrp_attn.py -- AttnLRP and CP-LRP relevance of a small transformer, computed
two independent ways (groundwork for issue 17, part 2; docs/TRANSFORMERS.md
states the mathematics this file implements).

1. `explain(model, x, target, rule)`: PyTorch autograd, the way LXT's
   efficient mode does it.  The network runs forward with a few operations
   whose *backward* is modified; the output logit at `target` is
   back-propagated with seed 1, and the relevance of any tensor h is
   h * dL/dh ("gradient x input").  Modifications per rule:

       operation                 attnlrp                      cplrp
       LayerNorm / RMSNorm       1/sigma detached             1/sigma detached
       GELU, SiLU, tanh          identity rule: grad * f(x)/x  same
       S = scale * Q K^T         gradient at S halved          (no gradient arrives)
       A = softmax(S + mask)     plain gradient (Taylor rule)  A detached
       O = A V                   gradient at O halved          plain (A constant)
       Linear, Conv2d, +, embed  plain gradient (LRP-0; biases absorb)

   Works in float32 and float64 (the model's dtype).

2. `direct_lrp(model, x, target, rule)`: numpy float64, no autograd: the
   forward pass, then each layer's rule written as explicit relevance
   arithmetic (contributions z, divisions by the layer output), returning the
   relevance of every tensor and the absorbed relevance of every layer, so
   that `sum R_in + absorbed = sum R_out` can be audited layer by layer.
   Meant for tiny cases (it forms (tokens x tokens x width) contribution
   arrays).

The model is `TinyTransformer`: standard modules only (nn.Embedding, nn.Conv2d
patch embedding, nn.Linear, nn.LayerNorm or the RMSNorm below, nn.GELU /
nn.SiLU / nn.Tanh, residual +), a plain scaled-dot-product attention module
`SelfAttention` (`SelfAttention.from_mha` copies an nn.MultiheadAttention),
pre-LN (ViT) or post-LN (BERT) blocks, CLS pooling with an optional BERT
pooler (Linear + tanh).

Masks: `key_padding_mask` (batch, tokens) bool, True = masked (the
nn.MultiheadAttention convention) and/or `causal=True`.  Masked scores are
filled with `mask_value` (default -inf).  `safe_softmax=True` (default)
defines a fully masked row as all zeros (no key to attend to) and never
multiplies a -inf by anything; `safe_softmax=False` is the naive
`softmax(masked_fill(S, -inf))`, which is NaN on a fully masked row
(-inf - (-inf) in the max subtraction) -- kept for the tests that show where.

Run with Debian's /usr/bin/python3 (torch 1.13, numpy).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

RULES = ("attnlrp", "cplrp", None)
ACT_D0 = {"gelu": 0.5, "silu": 0.5, "tanh": 1.0}   # f'(0): the limit of f(x)/x at 0


# --------------------------------------------------------------------------
# Modified backward functions (the LXT mechanism, written afresh)

class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by a
    constant.  With factor 1/2 after a bilinear product this is AttnLRP's
    uniform rule (each of the two factors gets half of every term)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.factor, None


def divide_gradient(x, n):
    return _ScaleGrad.apply(x, 1.0 / n)


class _IdentityRule(torch.autograd.Function):
    """y = f(x) forward; backward g_x = g_y * f(x)/x, so that
    x * g_x = f(x) * g_y: the relevance passes unchanged (identity rule).

    act_eps None: the exact ratio, f'(0) where x == 0.  act_eps a number:
    LXT's f(x) / (x + act_eps) (unsigned, 1e-10 in LXT), which is a
    division by zero at x == -act_eps and, in float16, at x == 0 (1e-10
    rounds to 0 there)."""

    @staticmethod
    def forward(ctx, x, fn, d0, act_eps):
        y = fn(x)
        if act_eps is None:
            zero = x == 0
            ratio = torch.where(zero, torch.full_like(x, d0), y / torch.where(zero, torch.ones_like(x), x))
        else:
            ratio = y / (x + act_eps)
        ctx.save_for_backward(ratio)
        return y

    @staticmethod
    def backward(ctx, g):
        (ratio,) = ctx.saved_tensors
        return g * ratio, None, None, None


class _EpsScale(torch.autograd.Function):
    """Identity forward on a linear layer's output z; backward multiplies the
    gradient by z / stab(z), stab(z) = z + eps (z >= 0, both zeros) or
    z - eps (z < 0): the epsilon rule (sign0_pos) in gradient x input form.
    The stabilizer absorbs R_z * eps / |stab(z)|."""

    @staticmethod
    def forward(ctx, z, eps):
        stab = torch.where(z >= 0, z + eps, z - eps)
        ctx.save_for_backward(z / stab)
        return z.view_as(z)

    @staticmethod
    def backward(ctx, g):
        (f,) = ctx.saved_tensors
        return g * f, None


# --------------------------------------------------------------------------
# The model

class RMSNorm(nn.Module):
    """y = w * x / sqrt(mean(x^2) + eps) over the last axis (torch 1.13 has
    no nn.RMSNorm; this is LLaMA's / Qwen2's definition)."""

    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def norm_forward(mod, x, rule):
    """LayerNorm / RMSNorm; under a rule the normalising factor is detached
    (identity rule on the division), which makes the layer linear in x."""
    if isinstance(mod, nn.LayerNorm):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)      # biased, as nn.LayerNorm
        sigma = torch.sqrt(var + mod.eps)
        if rule is not None:
            sigma = sigma.detach()
        y = (x - mu) / sigma
        if mod.weight is not None:
            y = y * mod.weight
        if mod.bias is not None:
            y = y + mod.bias
        return y
    if isinstance(mod, RMSNorm):
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + mod.eps)
        if rule is not None:
            r = r.detach()
        return mod.weight * (x * r)
    raise TypeError("not a norm: %r" % type(mod))


def act_name(mod):
    for cls, name in ((nn.GELU, "gelu"), (nn.SiLU, "silu"), (nn.Tanh, "tanh")):
        if isinstance(mod, cls):
            return name
    raise TypeError("unsupported activation %r" % type(mod))


def act_forward(mod, x, rule, act_eps=None):
    if rule is None:
        return mod(x)
    return _IdentityRule.apply(x, mod, ACT_D0[act_name(mod)], act_eps)


def build_mask(B, T, key_padding_mask=None, causal=False, device=None):
    """(B, 1, T, T) bool, True = masked; None when nothing is masked."""
    m = None
    if key_padding_mask is not None:
        m = key_padding_mask.to(torch.bool)[:, None, None, :].expand(B, 1, T, T)
    if causal:
        c = torch.triu(torch.ones(T, T, dtype=torch.bool, device=device), 1)[None, None]
        m = c.expand(B, 1, T, T) if m is None else (m | c)
    return m


def masked_softmax(S, mask, mask_value=float("-inf"), safe=True):
    """softmax over the last axis of S with masked entries set to mask_value.
    safe: a fully masked row gives all zeros and no -inf enters the
    arithmetic (masked entries are zeroed after the softmax, which also
    gives them a zero gradient); otherwise the naive masked_fill + softmax."""
    if mask is None:
        return torch.softmax(S, -1)
    x = S.masked_fill(mask, mask_value)
    if not safe:
        return torch.softmax(x, -1)
    full = mask.all(-1, keepdim=True)
    x = torch.where(full, torch.zeros_like(x), x)
    return torch.softmax(x, -1).masked_fill(mask, 0.0)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention from four nn.Linear."""

    def __init__(self, d, heads, bias=True):
        super().__init__()
        assert d % heads == 0
        self.d, self.h = d, heads
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = nn.Linear(d, d, bias=bias)
        self.v_proj = nn.Linear(d, d, bias=bias)
        self.out_proj = nn.Linear(d, d, bias=bias)

    @classmethod
    def from_mha(cls, mha):
        """Same weights as an nn.MultiheadAttention(d, h, batch_first=True)
        with packed in_proj (kdim = vdim = d)."""
        d, h = mha.embed_dim, mha.num_heads
        a = cls(d, h, bias=mha.in_proj_bias is not None)
        a = a.to(mha.in_proj_weight.dtype)
        with torch.no_grad():
            for i, lin in enumerate((a.q_proj, a.k_proj, a.v_proj)):
                lin.weight.copy_(mha.in_proj_weight[i * d:(i + 1) * d])
                if lin.bias is not None:
                    lin.bias.copy_(mha.in_proj_bias[i * d:(i + 1) * d])
            a.out_proj.weight.copy_(mha.out_proj.weight)
            if a.out_proj.bias is not None:
                a.out_proj.bias.copy_(mha.out_proj.bias)
        return a

    def split(self, t):
        B, T, _ = t.shape
        return t.view(B, T, self.h, self.d // self.h).transpose(1, 2)

    def forward(self, x, mask=None, rule=None, lin=None, tape=None, tag="", mask_value=float("-inf"),
                safe_softmax=True):
        lin = lin or (lambda m, t, name: m(t))
        B, T, _ = x.shape
        q = lin(self.q_proj, x, tag + "q")
        k = lin(self.k_proj, x, tag + "k")
        v = lin(self.v_proj, x, tag + "v")
        qh, kh, vh = self.split(q), self.split(k), self.split(v)
        S = torch.matmul(qh, kh.transpose(-1, -2)) * (1.0 / math.sqrt(self.d // self.h))
        if rule == "attnlrp":
            S = divide_gradient(S, 2)
        _rec(tape, tag + "scores", S)
        A = masked_softmax(S, mask, mask_value, safe_softmax)
        if rule == "cplrp":
            # attention weights are constants; LXT detaches the query and key
            # inputs instead, which sends the same (zero) gradient to Q and K
            A = A.detach()
        _rec(tape, tag + "probs", A)
        O = torch.matmul(A, vh)
        if rule == "attnlrp":
            O = divide_gradient(O, 2)
        _rec(tape, tag + "context", O)
        O = O.transpose(1, 2).reshape(B, T, self.d)
        return lin(self.out_proj, O, tag + "attn_out")


class Block(nn.Module):
    def __init__(self, d, heads, ffn, act="gelu", norm="layer", prenorm=True, ln_eps=1e-5):
        super().__init__()
        mk = (lambda: nn.LayerNorm(d, eps=ln_eps)) if norm == "layer" else (lambda: RMSNorm(d, eps=ln_eps))
        self.ln1, self.ln2 = mk(), mk()
        self.attn = SelfAttention(d, heads)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.act = {"gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}[act]()
        self.prenorm = prenorm


class TinyTransformer(nn.Module):
    """kind 'text': token ids (B, T) -> nn.Embedding + learned positions;
    kind 'vit': images (B, C, H, W) -> Conv2d patch embedding (kernel =
    stride = patch), a CLS token prepended, learned positions.
    Output: logits (B, classes) read from token 0 after the final norm
    (pre-LN) and the optional pooler (Linear + tanh)."""

    def __init__(self, kind="text", vocab=50, max_len=16, image=(3, 8, 8), patch=4, d=16, heads=2,
                 layers=2, ffn=32, classes=3, act="gelu", norm="layer", prenorm=True, pooler=False,
                 ln_eps=1e-5):
        super().__init__()
        self.kind, self.prenorm = kind, prenorm
        if kind == "text":
            self.embed = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(max_len, d)
        else:
            C, H, W = image
            self.patch = nn.Conv2d(C, d, patch, stride=patch)
            n = (H // patch) * (W // patch) + 1
            self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.5)
            self.pos = nn.Embedding(n, d)
        self.blocks = nn.ModuleList(Block(d, heads, ffn, act, norm, prenorm, ln_eps) for _ in range(layers))
        self.final_norm = (nn.LayerNorm(d, eps=ln_eps) if norm == "layer" else RMSNorm(d, eps=ln_eps)) \
            if prenorm else None
        self.pooler = nn.Linear(d, d) if pooler else None
        self.pool_act = nn.Tanh() if pooler else None
        self.head = nn.Linear(d, classes)

    # ----------------------------------------------------------------------
    def forward(self, x, key_padding_mask=None, causal=False, rule=None, tape=None, lin_eps=0.0,
                act_eps=None, mask_value=float("-inf"), safe_softmax=True):
        """Plain forward when rule is None (bit-identical values to the
        rules' forwards, which only change gradients).  tape: a dict that
        receives the named intermediate tensors (gradients retained)."""
        if rule not in RULES:
            raise ValueError("rule %r" % (rule,))

        def lin(m, t, name):
            z = m(t)
            if rule is not None and lin_eps:
                z = _EpsScale.apply(z, lin_eps)
            _rec(tape, name, z)
            return z

        if self.kind == "text":
            B, T = x.shape
            e = _leaf(self.embed(x), tape)
            _rec(tape, "embed", e)
            p = self.pos(torch.arange(T, device=x.device))[None].expand(B, T, -1)
        else:
            x = _rec(tape, "pixels", x)
            pt = lin(self.patch, x, "patch")                         # (B, d, h, w)
            B = x.shape[0]
            pt = pt.flatten(2).transpose(1, 2)                       # (B, tokens, d)
            e = torch.cat([self.cls.expand(B, 1, -1), pt], 1)
            T = e.shape[1]
            p = self.pos(torch.arange(T, device=x.device))[None].expand(B, T, -1)
            if key_padding_mask is not None and key_padding_mask.shape[1] == T - 1:
                key_padding_mask = F.pad(key_padding_mask, (1, 0))
        p = _leaf(p, tape)
        _rec(tape, "position", p)
        h = _rec(tape, "h0", e + p)
        mask = build_mask(B, T, key_padding_mask, causal, x.device)
        for i, blk in enumerate(self.blocks):
            tg = "b%d." % i
            kw = dict(mask=mask, rule=rule, lin=lin, tape=tape, tag=tg, mask_value=mask_value,
                      safe_softmax=safe_softmax)
            if blk.prenorm:
                a = blk.attn(_rec(tape, tg + "ln1", norm_forward(blk.ln1, h, rule)), **kw)
                h = _rec(tape, tg + "res1", h + a)
                u = _rec(tape, tg + "ln2", norm_forward(blk.ln2, h, rule))
                u = _rec(tape, tg + "act", act_forward(blk.act, lin(blk.fc1, u, tg + "fc1"), rule, act_eps))
                h = _rec(tape, tg + "res2", h + lin(blk.fc2, u, tg + "fc2"))
            else:
                a = blk.attn(h, **kw)
                h = _rec(tape, tg + "res1", h + a)
                h = _rec(tape, tg + "ln1", norm_forward(blk.ln1, h, rule))
                u = _rec(tape, tg + "act", act_forward(blk.act, lin(blk.fc1, h, tg + "fc1"), rule, act_eps))
                h = _rec(tape, tg + "res2", h + lin(blk.fc2, u, tg + "fc2"))
                h = _rec(tape, tg + "ln2", norm_forward(blk.ln2, h, rule))
        if self.final_norm is not None:
            h = _rec(tape, "final_norm", norm_forward(self.final_norm, h, rule))
        c = _rec(tape, "cls", h[:, 0])
        if self.pooler is not None:
            c = _rec(tape, "pool_act", act_forward(self.pool_act, lin(self.pooler, c, "pooler"), rule, act_eps))
        return lin(self.head, c, "logits")


def _leaf(t, tape):
    """With a tape and parameters frozen (explain), an embedding output is a
    leaf that needs a gradient: the relevance is read there."""
    if tape is not None and not t.requires_grad:
        return t.detach().requires_grad_(True)
    return t


class Tape(dict):
    """Named intermediate tensors; keep: the names to record (None: all)."""

    def __init__(self, keep=None):
        super().__init__()
        self.keep = keep


def _rec(tape, name, t):
    if tape is not None and t.requires_grad and (getattr(tape, "keep", None) is None or name in tape.keep):
        t.retain_grad()
        tape[name] = t
    return t


def make_model(seed=0, dtype=torch.float64, **kw):
    """A TinyTransformer with deterministic random weights (LayerNorm
    weights and biases drawn too, so that they are not the identity)."""
    g = torch.Generator().manual_seed(seed)
    m = TinyTransformer(**kw)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("weight") and p.dim() == 1:          # norm gains
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(fan_in, 1)))
    return m.to(dtype).eval()


# --------------------------------------------------------------------------
# Autograd relevance

def explain(model, x, target=None, rule="attnlrp", key_padding_mask=None, causal=False, lin_eps=0.0,
            act_eps=None, mask_value=float("-inf"), safe_softmax=True, record=True):
    """Gradient x input relevance under `rule`.  Returns a dict:
    'logits' (B, classes) numpy, 'target', 'R' {tensor name: h * grad h}
    numpy, 'grad' {name: grad} numpy, and for text models 'tokens'
    (B, T): the relevance per token (embedding relevance summed over
    features; the positional share is not a token's).  The seed is the
    target logit itself (gradient 1), as lrp-oracle seeds relevance.
    record=False keeps only the input's relevance (embed / pixels): no
    retained intermediate gradients, for timing."""
    tape = Tape(None if record else {"embed", "pixels", "logits"})
    params = list(model.parameters())
    dt = params[0].dtype
    if torch.is_floating_point(x):
        x = x.to(dt).detach().requires_grad_(True)
    frozen = [p.requires_grad for p in params]
    try:
        for p in params:                 # no parameter gradients: relevance only
            p.requires_grad_(False)
        logits = model(x, key_padding_mask=key_padding_mask, causal=causal, rule=rule, tape=tape,
                       lin_eps=lin_eps, act_eps=act_eps, mask_value=mask_value, safe_softmax=safe_softmax)
        B = logits.shape[0]
        if target is None:
            target = logits.detach().argmax(1)
        target = torch.as_tensor(target).reshape(-1).expand(B)
        seed = torch.zeros_like(logits)
        seed[torch.arange(B), target] = 1.0
        logits.backward(seed)
    finally:
        for p, r in zip(params, frozen):
            p.requires_grad_(r)
    R = {k: (t * t.grad).detach().numpy() for k, t in tape.items() if t.grad is not None}
    G = {k: t.grad.detach().numpy() for k, t in tape.items() if t.grad is not None}
    out = {"logits": logits.detach().numpy(), "target": target.numpy(), "R": R, "grad": G}
    if "embed" in R:
        out["tokens"] = R["embed"].sum(-1)
    return out


# --------------------------------------------------------------------------
# Direct numpy float64 implementation (explicit relevance, no autograd)

def _np(t):
    return None if t is None else t.detach().to(torch.float64).numpy()


def _gelu(x):
    from math import erf
    return 0.5 * x * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))


_ACT_NP = {"gelu": _gelu, "silu": lambda x: x / (1.0 + np.exp(-x)), "tanh": np.tanh}


def _stab(z, eps):
    return z if eps == 0 else np.where(z >= 0, z + eps, z - eps)


def direct_lrp(model, x, target=None, rule="attnlrp", key_padding_mask=None, causal=False, lin_eps=0.0,
               safe=True, mask_value=-np.inf):
    """Explicit per-layer LRP in numpy float64 for the same TinyTransformer.
    Returns {'logits', 'R': {name: relevance}, 'absorbed': {layer: {kind:
    (B,) totals}}, 'audit': {layer: (sum_in, absorbed, sum_out)}}.
    safe=False forms the softmax rule's relevance at the *masked* logits
    (x = S + mask), the naive way: -inf * 0 = NaN at every masked score."""
    assert rule in ("attnlrp", "cplrp")
    m = model
    P = {k: _np(v) for k, v in m.named_parameters()}
    A = {}            # forward activations
    ab = {}           # absorbed relevance per layer and kind, per sample
    audit = {}

    def linear(name, W, b, t):
        z = t @ W.T + (0 if b is None else b)
        A[name] = z
        return z

    # ---------------- forward
    if m.kind == "text":
        ids = np.asarray(x)
        B, T = ids.shape
        e = P["embed.weight"][ids]
    else:
        px = _np(x) if torch.is_tensor(x) else np.asarray(x, np.float64)
        A["pixels"] = px
        B, C, H, W = px.shape
        k = m.patch.kernel_size[0]
        patches = px.reshape(B, C, H // k, k, W // k, k).transpose(0, 2, 4, 1, 3, 5).reshape(B, -1, C * k * k)
        Wp = P["patch.weight"].reshape(P["patch.weight"].shape[0], -1)
        pt = linear("patch", Wp, P["patch.bias"], patches)
        e = np.concatenate([np.broadcast_to(P["cls"], (B, 1, P["cls"].shape[-1])), pt], 1)
        T = e.shape[1]
        if key_padding_mask is not None and np.asarray(key_padding_mask).shape[1] == T - 1:
            key_padding_mask = np.pad(np.asarray(key_padding_mask), ((0, 0), (1, 0)))
    p = np.broadcast_to(P["pos.weight"][:T], e.shape)
    A["embed"], A["position"] = e, p
    h = e + p
    A["h0"] = h
    mask = None
    if key_padding_mask is not None:
        mask = np.broadcast_to(np.asarray(key_padding_mask, bool)[:, None, None, :], (B, 1, T, T))
    if causal:
        c = np.triu(np.ones((T, T), bool), 1)[None, None]
        mask = c if mask is None else (mask | c)
    if mask is not None:
        mask = np.broadcast_to(mask, (B, 1, T, T))

    def norm(name, mod, prefix, t):
        if isinstance(mod, nn.LayerNorm):
            mu = t.mean(-1, keepdims=True)
            sig = np.sqrt(((t - mu) ** 2).mean(-1, keepdims=True) + mod.eps)
            y = (t - mu) / sig * P[prefix + ".weight"] + P[prefix + ".bias"]
        else:
            sig = np.sqrt((t ** 2).mean(-1, keepdims=True) + mod.eps)
            y = t / sig * P[prefix + ".weight"]
        A[name], A[name + ".sigma"], A[name + ".in"] = y, sig, t
        return y

    def attn(tag, pre, t):
        d, nh = m.blocks[0].attn.d, m.blocks[0].attn.h
        dh = d // nh
        q = linear(tag + "q", P[pre + "q_proj.weight"], P[pre + "q_proj.bias"], t)
        k = linear(tag + "k", P[pre + "k_proj.weight"], P[pre + "k_proj.bias"], t)
        v = linear(tag + "v", P[pre + "v_proj.weight"], P[pre + "v_proj.bias"], t)
        sp = lambda u: u.reshape(B, T, nh, dh).transpose(0, 2, 1, 3)
        qh, kh, vh = sp(q), sp(k), sp(v)
        S = np.einsum("bhjd,bhkd->bhjk", qh, kh) / math.sqrt(dh)
        if mask is None:
            X = S
            Pm = np.exp(S - S.max(-1, keepdims=True))
            Pm /= Pm.sum(-1, keepdims=True)
        else:
            X = np.where(mask, mask_value, S)
            full = mask.all(-1, keepdims=True)
            Xs = np.where(full | mask, -np.inf, X)
            mx = np.where(full, 0.0, Xs.max(-1, keepdims=True, initial=-np.inf))
            ex = np.where(mask, 0.0, np.exp(np.where(mask, 0.0, Xs - mx)))
            den = ex.sum(-1, keepdims=True)
            Pm = np.where(full, 0.0, ex / np.where(full, 1.0, den))
        O = np.einsum("bhjk,bhkd->bhjd", Pm, vh)
        A.update({tag + "qh": qh, tag + "kh": kh, tag + "vh": vh, tag + "scores": S, tag + "logits_masked": X,
                  tag + "probs": Pm, tag + "context": O})
        return linear(tag + "attn_out", P[pre + "out_proj.weight"], P[pre + "out_proj.bias"],
                      O.transpose(0, 2, 1, 3).reshape(B, T, d))

    def act(name, mod, t):
        y = _ACT_NP[act_name(mod)](t)
        A[name] = y
        return y

    for i, blk in enumerate(m.blocks):
        tg, pre = "b%d." % i, "blocks.%d." % i
        A[tg + "in"] = h
        if blk.prenorm:
            a = attn(tg, pre + "attn.", norm(tg + "ln1", blk.ln1, pre + "ln1", h))
            h = h + a
            A[tg + "res1"] = h
            u = norm(tg + "ln2", blk.ln2, pre + "ln2", h)
            u = act(tg + "act", blk.act, linear(tg + "fc1", P[pre + "fc1.weight"], P[pre + "fc1.bias"], u))
            h = h + linear(tg + "fc2", P[pre + "fc2.weight"], P[pre + "fc2.bias"], u)
            A[tg + "res2"] = h
        else:
            a = attn(tg, pre + "attn.", h)
            h = h + a
            A[tg + "res1"] = h
            h = norm(tg + "ln1", blk.ln1, pre + "ln1", h)
            u = act(tg + "act", blk.act, linear(tg + "fc1", P[pre + "fc1.weight"], P[pre + "fc1.bias"], h))
            h = h + linear(tg + "fc2", P[pre + "fc2.weight"], P[pre + "fc2.bias"], u)
            A[tg + "res2"] = h
            h = norm(tg + "ln2", blk.ln2, pre + "ln2", h)
    if m.final_norm is not None:
        h = norm("final_norm", m.final_norm, "final_norm", h)
    c = h[:, 0]
    A["cls"] = c
    if m.pooler is not None:
        c = act("pool_act", m.pool_act, linear("pooler", P["pooler.weight"], P["pooler.bias"], c))
    logits = linear("logits", P["head.weight"], P["head.bias"], c)

    # ---------------- backward
    R = {}
    tgt = logits.argmax(1) if target is None else np.broadcast_to(np.asarray(target).reshape(-1), (B,))
    Rz = np.zeros_like(logits)
    Rz[np.arange(B), tgt] = logits[np.arange(B), tgt]
    R["logits"] = Rz

    def put(layer, kind, val):
        ab.setdefault(layer, {})
        ab[layer][kind] = ab[layer].get(kind, 0.0) + val

    def tot(r):
        return r.reshape(r.shape[0], -1).sum(1)

    def lin_back(name, W, b, t, Rout):
        """epsilon rule (sign0_pos) on z = t W^T + b: R_t = t * ((R/stab(z)) W)."""
        z = A[name]
        s = Rout / _stab(z, lin_eps)
        Rin = t * (s @ W)
        put(name, "bias", tot(s * (0 if b is None else np.broadcast_to(b, z.shape))))
        put(name, "stabilizer", tot(s * (_stab(z, lin_eps) - z)))
        audit[name] = (tot(Rin), sum(ab[name].values()), tot(Rout))
        return Rin

    def add_back(name, parts, Rout):
        """proportional split of y = sum(parts) (LRP-0 on the addition)."""
        y = sum(parts)
        s = Rout / y
        outs = [u * s for u in parts]
        audit[name] = (sum(tot(np.broadcast_to(o, Rout.shape)) for o in outs), np.zeros(B), tot(Rout))
        return outs

    def norm_back(name, mod, prefix, Rout):
        """identity rule on 1/sigma: the frozen-sigma layer is linear,
        y_k = sum_i M_ki x_i + b_k with M = diag(w / sigma)(I - 11^T / N)
        for LayerNorm (diag(w / sigma) for RMSNorm); LRP-0 on it."""
        t, sig, y = A[name + ".in"], A[name + ".sigma"], A[name]
        N = t.shape[-1]
        w = P[prefix + ".weight"]
        s = Rout / y
        if isinstance(mod, nn.LayerNorm):
            Mx = (w / sig)[..., :, None] * (np.eye(N) - 1.0 / N) * t[..., None, :]   # [.., k, i] = M_ki x_i
            Rin = np.einsum("...ki,...k->...i", Mx, s)
            put(name, "bias", tot(s * P[prefix + ".bias"]))
        else:
            Rin = (w / sig) * t * s
            put(name, "bias", np.zeros(B))
        audit[name] = (tot(Rin), sum(ab[name].values()), tot(Rout))
        return Rin

    def attn_back(tag, pre, t, Rout):
        d, nh = m.blocks[0].attn.d, m.blocks[0].attn.h
        dh = d // nh
        Ro = lin_back(tag + "attn_out", P[pre + "out_proj.weight"], P[pre + "out_proj.bias"],
                      A[tag + "context"].transpose(0, 2, 1, 3).reshape(B, T, d), Rout)
        Ro = Ro.reshape(B, T, nh, dh).transpose(0, 2, 1, 3)
        R[tag + "context"] = Ro
        Pm, vh, qh, kh, S = (A[tag + u] for u in ("probs", "vh", "qh", "kh", "scores"))
        O = A[tag + "context"]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(O == 0, 0.0, Ro / np.where(O == 0, 1.0, O))
        if rule == "attnlrp":
            # uniform rule: each term A_jk V_kp gets R_jp A_jk V_kp / O_jp, half to each factor
            zt = np.einsum("bhjk,bhkp->bhjkp", Pm, vh) * s[:, :, :, None, :]
            RA = 0.5 * zt.sum(-1)
            RV = 0.5 * zt.sum(2)
        else:
            RA = np.zeros_like(Pm)
            # CP-LRP: A is a constant, O = A V is linear in V (LRP-0 on it)
            RV = np.einsum("bhjk,bhkp,bhjp->bhkp", Pm, vh, s)
        audit[tag + "context"] = (tot(RA) + tot(RV), np.zeros(B), tot(Ro))
        R[tag + "probs"] = RA
        if rule == "attnlrp":
            # softmax, Taylor rule at the logits with the bias term:
            # R_x = x (R_A - A sum_k R_A); the relevance at the pre-mask score
            # S is S (R_A - A sum R_A); the mask's share and the softmax's
            # bias term are absorbed.
            g = RA - Pm * RA.sum(-1, keepdims=True)
            if safe:
                RS = S * g
            else:
                with np.errstate(invalid="ignore"):
                    RS = A[tag + "logits_masked"] * g       # -inf * 0 = NaN at masked scores
            put(tag + "softmax", "softmax_bias", tot(RA) - tot(S * g))
            audit[tag + "softmax"] = (tot(RS), ab[tag + "softmax"]["softmax_bias"], tot(RA))
            R[tag + "scores"] = RS
            # bilinear S = c Q K^T, uniform rule
            with np.errstate(divide="ignore", invalid="ignore"):
                sS = np.where(S == 0, 0.0, RS / np.where(S == 0, 1.0, S))
            zt = np.einsum("bhjd,bhkd->bhjkd", qh, kh) / math.sqrt(dh) * sS[..., None]
            RQ = 0.5 * zt.sum(3)
            RK = 0.5 * zt.sum(2)
            audit[tag + "scores"] = (tot(RQ) + tot(RK), np.zeros(B), tot(RS))
        else:
            RQ = np.zeros_like(qh)
            RK = np.zeros_like(kh)
        mg = lambda u: u.transpose(0, 2, 1, 3).reshape(B, T, d)
        R[tag + "q"], R[tag + "k"], R[tag + "v"] = mg(RQ), mg(RK), mg(RV)
        Rt = 0
        for nm in ("q", "k", "v"):
            Rt = Rt + lin_back(tag + nm, P[pre + nm + "_proj.weight"], P[pre + nm + "_proj.bias"], t, R[tag + nm])
        return Rt

    r = Rz
    if m.pooler is not None:
        r = lin_back("logits", P["head.weight"], P["head.bias"], A["pool_act"], r)
        R["pool_act"] = R["pooler"] = r                      # identity rule through tanh
        r = lin_back("pooler", P["pooler.weight"], P["pooler.bias"], A["cls"], r)
    else:
        r = lin_back("logits", P["head.weight"], P["head.bias"], A["cls"], r)
    R["cls"] = r
    rh = np.zeros((B, T, r.shape[-1]))
    rh[:, 0] = r
    if m.final_norm is not None:
        R["final_norm"] = rh
        rh = norm_back("final_norm", m.final_norm, "final_norm", rh)
    for i in reversed(range(len(m.blocks))):
        blk, tg, pre = m.blocks[i], "b%d." % i, "blocks.%d." % i
        if blk.prenorm:
            R[tg + "res2"] = rh
            r_h, r_f = add_back(tg + "res2", [A[tg + "res1"], A[tg + "fc2"]], rh)
            R[tg + "fc2"] = r_f
            r_u = lin_back(tg + "fc2", P[pre + "fc2.weight"], P[pre + "fc2.bias"], A[tg + "act"], r_f)
            R[tg + "act"] = R[tg + "fc1"] = r_u                        # identity rule
            r_u = lin_back(tg + "fc1", P[pre + "fc1.weight"], P[pre + "fc1.bias"], A[tg + "ln2"], r_u)
            R[tg + "ln2"] = r_u
            r_h = r_h + norm_back(tg + "ln2", blk.ln2, pre + "ln2", r_u)
            R[tg + "res1"] = r_h
            r_x, r_a = add_back(tg + "res1", [A[tg + "in"], A[tg + "attn_out"]], r_h)
            R[tg + "attn_out"] = r_a
            r_l = attn_back(tg, pre + "attn.", A[tg + "ln1"], r_a)
            R[tg + "ln1"] = r_l
            rh = r_x + norm_back(tg + "ln1", blk.ln1, pre + "ln1", r_l)
        else:
            R[tg + "ln2"] = rh
            r = norm_back(tg + "ln2", blk.ln2, pre + "ln2", rh)
            R[tg + "res2"] = r
            r_h, r_f = add_back(tg + "res2", [A[tg + "ln1"], A[tg + "fc2"]], r)
            R[tg + "fc2"] = r_f
            r_u = lin_back(tg + "fc2", P[pre + "fc2.weight"], P[pre + "fc2.bias"], A[tg + "act"], r_f)
            R[tg + "act"] = R[tg + "fc1"] = r_u
            r_h = r_h + lin_back(tg + "fc1", P[pre + "fc1.weight"], P[pre + "fc1.bias"], A[tg + "ln1"], r_u)
            R[tg + "ln1"] = r_h
            r = norm_back(tg + "ln1", blk.ln1, pre + "ln1", r_h)
            R[tg + "res1"] = r
            r_x, r_a = add_back(tg + "res1", [A[tg + "in"], A[tg + "attn_out"]], r)
            R[tg + "attn_out"] = r_a
            rh = r_x + attn_back(tg, pre + "attn.", A[tg + "in"], r_a)
    R["h0"] = rh
    r_e, r_p = add_back("h0", [A["embed"], A["position"]], rh)
    R["embed"], R["position"] = r_e, r_p
    if m.kind == "text":
        R["tokens"] = r_e.sum(-1)
    else:
        put("h0", "cls_token", tot(r_e[:, :1]))
        rp = r_e[:, 1:]
        k = m.patch.kernel_size[0]
        R["patch"] = rp.transpose(0, 2, 1).reshape(B, rp.shape[-1], H // k, W // k)   # conv layout
        Wp = P["patch.weight"].reshape(P["patch.weight"].shape[0], -1)
        rpx = lin_back("patch", Wp, P["patch.bias"], patches, rp)
        R["pixels"] = rpx.reshape(B, H // k, W // k, C, k, k).transpose(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)
    return {"logits": logits, "target": tgt, "R": R, "absorbed": ab, "audit": audit, "acts": A}
