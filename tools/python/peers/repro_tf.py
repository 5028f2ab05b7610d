"""repro_tf.py -- subject traces of the two transformer reproductions of
docs/REPRODUCTIONS.md, computed the way the reports' code computes them.

    /usr/bin/python3 tools/python/peers/repro_tf.py CLI lxt29 FIXTURE.h5 OUTDIR
    /usr/bin/python3 tools/python/peers/repro_tf.py CLI xaitf2 FIXTURE.h5 OUTDIR

CLI is the lrp-oracle binary.  Each writes trace files (docs/FORMAT.md "Trace
files") beside a copy of the fixture in OUTDIR; `lrp-oracle compare
OUTDIR/T.h5 --source S` judges them.  The trace file's structure (its
/rules, dataset names and shapes) is taken from `lrp-oracle fast
--trace-only` under the stated rules; the relevance and activation datasets
are then replaced by this script's own numbers.  (lrp_torch.write_trace would
be the usual writer; its read_fixture does not read the attention kinds yet.)

lxt29: LXT's efficient mode (gradient x input, docs/TRANSFORMERS.md 1 and
8.1) on a Qwen2-shaped decoder fixture (dec_silu0), written afresh from
LXT's description, not LXT's code:
  Linear: plain gradient (LRP-0, eps 0); RMSNorm: 1/rms detached, computed
  in float32 as Qwen2's RMSNorm does; SiLU: LXT's identity rule, backward
  g * SiLU(x) / (x + 1e-10) with the ratio formed in the tensor's dtype;
  attention: AttnLRP (gradient halved after Q K^T and after A V, softmax
  untouched, -inf causal mask: masked entries are exactly 0); gate product:
  gradient halved to each factor; residual Add: plain gradient.
Two traces: `lxt-f32` (float32 throughout, torch's own float32 kernels) and
`lxt-f16` (float16 emulated: torch 1.13 has no CPU float16 matmul, so every
op is computed in float32 from float16 operands and its result rounded to
float16 with .half(); the same rounding is applied to every gradient as it
leaves an op -- the arithmetic of a float16 GPU run with float32
accumulation inside a product).  Relevance is read as x * x.grad in the
dtype, per token as the feature sum at the embedding output.

xaitf2: the XAI_Transformers issue #2 rewrite on the vit_stack fixture:
Linear layers with the gamma rule through z_p * (z / z_p).detach(), p-layer
w + gamma w+ and b + gamma b+ (gamma 0.02), LayerNorm
(x - mean) / (std + eps) * weight + bias with torch.std (unbiased) detached,
GELU plain gradient as CP-LRP's code leaves nonlinearities (`xaitf2`), and
the same with the fixture's own LayerNorm (biased variance, eps inside the
root) and the identity rule on GELU (`xaitf2-ln`).  float32.
"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import torch

torch.set_grad_enabled(True)


# --------------------------------------------------------------------------
# the fixture, read directly (the layers these two fixtures use)

def read(path):
    f = h5py.File(path, "r")
    order = [o.decode() for o in f["network"].attrs["order"]]
    layers = {}
    for k, g in f["network"].items():
        a = {n: (v.decode() if isinstance(v, bytes) else v) for n, v in g.attrs.items()}
        a["data"] = {n: np.asarray(d[...]) for n, d in g.items()}
        layers[a["name"]] = a
        a["key"] = k
    data = {n: np.asarray(d[...]) for n, d in f["data"].items()}
    f.close()
    return order, layers, data


# --------------------------------------------------------------------------
# float16 emulation: round a value and, on the way back, its gradient

class _Round(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt):
        ctx.dt = dt
        return x.to(dt).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g.to(ctx.dt).to(g.dtype), None


class _Scale(torch.autograd.Function):
    """identity forward; backward g * factor (AttnLRP's uniform rule in
    gradient form after a bilinear product: each factor gets half)"""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.factor, None


class _Ratio(torch.autograd.Function):
    """identity forward of y; backward g * ratio (a stored tensor)"""

    @staticmethod
    def forward(ctx, x, y, ratio):
        ctx.save_for_backward(ratio)
        return y.view_as(y)

    @staticmethod
    def backward(ctx, g):
        (ratio,) = ctx.saved_tensors
        return g * ratio, None, None


class Arith:
    def __init__(self, dt):
        self.dt = dt  # None: native float32

    def r(self, t):
        return t if self.dt is None else _Round.apply(t, self.dt)

    def rd(self, t):
        """a detached value rounded (a constant of the backward)"""
        return t if self.dt is None else t.to(self.dt).to(t.dtype)


def linear(A, x, W, b=None):
    y = A.r(x @ torch.from_numpy(W).T)
    if b is not None:
        y = A.r(y + torch.from_numpy(b))
    return y


# --------------------------------------------------------------------------
# lxt29

def lxt_forward(order, L, data, A):
    """returns {layer: output tensor (retain_grad)} and the output logits"""
    out = {}
    tok = torch.from_numpy(data["tokens"].astype(np.int64))
    B, T = tok.shape

    def keep(name, t):
        t.retain_grad()
        out[name] = t
        return t

    x = None
    for name in order:
        l = L[name]
        k, d = l["kind"], l["data"]
        ins = [out.get(i.decode() if isinstance(i, bytes) else i) for i in l["inputs"]]
        if k == "Input":
            continue
        if k == "Embedding":
            W = A.r(torch.from_numpy(d["weight"]))  # the table in the dtype
            x = W[tok].detach().requires_grad_(True)
        elif k == "Position":
            x = A.r(ins[0] + A.r(torch.from_numpy(d["table"][:T])))
        elif k == "RMSNorm":
            h = ins[0]  # Qwen2RMSNorm: float32 inside, r detached
            var = h.detach().pow(2).mean(-1, keepdim=True)
            inv = torch.rsqrt(var + float(np.float32(l["eps"])))
            n = A.r(h * inv)  # hidden.to(input_dtype)
            x = A.r(n * A.r(torch.from_numpy(d["weight"])))
        elif k == "MultiHeadAttention":
            h = ins[0]
            F = h.shape[-1]
            H = int(l["heads"])
            dh = F // H
            Wi, bi = d["in_proj_weight"], d["in_proj_bias"]
            q = linear(A, h, Wi[:F], bi[:F])
            kk = linear(A, h, Wi[F:2 * F], bi[F:2 * F])
            v = linear(A, h, Wi[2 * F:], bi[2 * F:])
            sp = lambda t: t.view(B, T, H, dh).transpose(1, 2)
            S = A.r(torch.matmul(sp(q), sp(kk).transpose(-1, -2)))
            S = A.r(S * float(np.float32(l["scale"])))
            S = _Scale.apply(S, 0.5)
            mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if int(l["causal"]) else None
            if mask is not None:
                S = S.masked_fill(mask, float("-inf"))
            P = A.r(torch.softmax(S, -1))
            if mask is not None:
                P = P.masked_fill(mask, 0.0)
            O = A.r(torch.matmul(P, sp(v)))
            O = _Scale.apply(O, 0.5)
            O = O.transpose(1, 2).reshape(B, T, F)
            x = linear(A, O, d["out_proj_weight"], d["out_proj_bias"])
        elif k == "Add":
            x = A.r(ins[0] + ins[1])
        elif k == "Dense":
            x = linear(A, ins[0], d["weight"], d.get("bias"))
        elif k == "SiLU":
            g = ins[0]
            y = A.r(torch.nn.functional.silu(g))
            # LXT identity_rule_implicit: f(x) / (x + 1e-10) in the dtype
            den = A.rd(g.detach() + 1e-10)
            ratio = A.rd(y.detach() / den)
            x = _Ratio.apply(g, y, ratio)
        elif k == "Mul":
            a, c = _Scale.apply(ins[0], 0.5), _Scale.apply(ins[1], 0.5)
            x = A.r(a * c)
        elif k == "SelectToken":
            x = ins[0][:, int(l["index"])]
        else:
            raise SystemExit("lxt29: layer kind %s is not emulated" % k)
        keep(name, x)
    return out, x


def lxt29(cli, fixture, outdir):
    order, L, data = read(fixture)
    res = {}
    for src, dt in (("lxt-f32", None), ("lxt-f16", torch.float16)):
        A = Arith(dt)
        acts, logits = lxt_forward(order, L, data, A)
        tgt = torch.from_numpy(data["target"].astype(np.int64))
        logits.gather(1, tgt[:, None]).sum().backward()
        rel, act = {}, {}
        for name in order[1:]:
            t = acts[name]
            R = t.detach() * t.grad
            R = A.rd(R)
            rel[name] = R.numpy().astype(np.float32)
            act[name] = t.detach().numpy().astype(np.float32)
        # relevance per token: the feature sum at the embedding output, in the dtype
        emb = [n for n in order if L[n]["kind"] == "Embedding"][0]
        rel[order[0]] = A.rd(torch.from_numpy(rel[emb]).sum(-1)).numpy().astype(np.float32)
        # the seed: the target logit's value (R = logit * 1) at the output
        res[src] = (rel, act)
        notes = ("LXT efficient-mode rules emulated (repro_tf.py); %s"
                 % ("float16: every op and gradient rounded with .half()" if dt else "float32"))
        write(cli, fixture, outdir, src, rel, act, ["--composite", "AttnLRP", "--eps", "0"],
              producer="repro_tf.py lxt29 (LXT efficient mode, written afresh)",
              precision=11 if dt else 24, notes=notes, composite="AttnLRP")
    return res


# --------------------------------------------------------------------------
# xaitf2

def xai_forward(order, L, data, variant, gamma=0.02):
    out = {}
    x0 = torch.from_numpy(data["input"]).requires_grad_(True)

    def keep(name, t):
        t.retain_grad()
        out[name] = t
        return t

    keep(order[0], x0)
    for name in order[1:]:
        l = L[name]
        k, d = l["kind"], l["data"]
        ins = [out.get(i.decode() if isinstance(i, bytes) else i) for i in l["inputs"]]
        h = ins[0]
        if k == "LayerNorm":
            mu = h.mean(-1, keepdim=True)
            if variant == "reporter":
                sd = h.std(-1, keepdim=True).detach()  # unbiased, eps outside
                y = (h - mu) / (sd + float(np.float32(l["eps"])))
            else:
                var = (h - mu).detach().pow(2).mean(-1, keepdim=True)
                y = (h - mu) / torch.sqrt(var + float(np.float32(l["eps"])))
            x = y * torch.from_numpy(d["weight"]) + torch.from_numpy(d["bias"])
        elif k == "Dense":
            W, b = torch.from_numpy(d["weight"]), torch.from_numpy(d["bias"])
            z = h @ W.T + b
            Wp, bp = W + gamma * W.clamp(min=0), b + gamma * b.clamp(min=0)
            zp = h @ Wp.T + bp
            x = zp * (z / zp).detach()
        elif k == "GELU":
            y = torch.nn.functional.gelu(h)
            if variant == "reporter":
                x = y  # CP-LRP's code: nonlinearities by the plain gradient
            else:
                x = _Ratio.apply(h, y, (y / h).detach())
        elif k == "Add":
            x = ins[0] + ins[1]
        elif k == "SelectToken":
            x = h[:, int(l["index"])]
        else:
            raise SystemExit("xaitf2: layer kind %s is not emulated" % k)
        keep(name, x)
    return out, x


def xaitf2(cli, fixture, outdir):
    order, L, data = read(fixture)
    res = {}
    for src, variant in (("xaitf2", "reporter"), ("xaitf2-ln", "fixture")):
        acts, logits = xai_forward(order, L, data, variant)
        tgt = torch.from_numpy(data["target"].astype(np.int64))
        logits.gather(1, tgt[:, None]).sum().backward()
        rel = {n: (acts[n].detach() * acts[n].grad).numpy().astype(np.float32) for n in order}
        act = {n: acts[n].detach().numpy().astype(np.float32) for n in order}
        res[src] = (rel, act)
        write(cli, fixture, outdir, src, rel, act,
              ["--rule", "gamma", "--gamma", "0.02", "--eps", "0"],
              producer="repro_tf.py xaitf2 (XAI_Transformers #2 rewrite, written afresh)",
              precision=24, notes="gamma 0.02 on w and b via z_p (z/z_p).detach(); LayerNorm %s"
              % ("unbiased std + eps, detached; GELU plain gradient" if variant == "reporter"
                 else "as the fixture's (sigma detached); GELU identity"), composite="")
    return res


# --------------------------------------------------------------------------
# the trace file: structure from `lrp-oracle fast --trace-only`, numbers ours

def write(cli, fixture, outdir, source, rel, act, rule_args, producer, precision, notes,
          composite):
    os.makedirs(outdir, exist_ok=True)
    base = os.path.basename(fixture)
    fx = os.path.join(outdir, base)
    if os.path.abspath(fx) != os.path.abspath(fixture):
        shutil.copyfile(fixture, fx)
    stem = os.path.splitext(base)[0]
    out = os.path.join(outdir, "%s.%s.h5" % (stem, source))
    tmp = out + ".tmp.h5"
    for p in (out, tmp):
        if os.path.exists(p):
            os.unlink(p)
    subprocess.run([cli, "fast"] + rule_args + [fx, "--out", tmp, "--trace-only"], check=True,
                   stdout=subprocess.DEVNULL)
    f = h5py.File(tmp, "r+")
    f.move("traces/fastpath", "traces/" + source)
    t = f["traces/" + source]
    t.attrs["producer"] = np.bytes_(producer)
    t.attrs["precision"] = np.int32(precision)
    t.attrs["notes"] = np.bytes_(notes)
    t.attrs["composite"] = np.bytes_(composite)
    if "relevance_lo" in t:
        del t["relevance_lo"]
    for grp, vals in (("relevance", rel), ("activation", act)):
        for key in list(t[grp].keys()):
            name = key.split("_", 1)[1]
            ds = t[grp][key]
            if name in vals:
                v = np.asarray(vals[name], dtype=np.float32)
                if v.shape != ds.shape:
                    raise SystemExit("%s: %s/%s: shape %s, the trace wants %s"
                                     % (source, grp, name, v.shape, ds.shape))
                ds[...] = v
            elif grp == "relevance":
                raise SystemExit("%s: no relevance for layer %s" % (source, name))
    f.close()
    os.replace(tmp, out)
    subprocess.run([cli, "info", out], check=True, stdout=subprocess.DEVNULL)
    print("wrote %s (source %s)" % (out, source))
    return out


def main(argv):
    if len(argv) != 5 or argv[2] not in ("lxt29", "xaitf2"):
        sys.stderr.write(__doc__)
        return 2
    cli, what, fixture, outdir = argv[1:]
    res = (lxt29 if what == "lxt29" else xaitf2)(cli, fixture, outdir)
    for src, (rel, _) in res.items():
        bad = [n for n, v in rel.items() if not np.isfinite(v).all()]
        print("%s: non-finite relevance at %s" % (src, ", ".join(bad) if bad else "no layer"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
