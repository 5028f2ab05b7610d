"""run_lxt.py -- runs the real LXT (LRP-eXplains-Transformers) rules over
lrp-oracle's transformer fixtures and judges the traces.

    PYTHONPATH=LXT /usr/bin/python3 tools/python/peers/run_lxt.py \
        build/lrp-oracle OUTDIR [fixture.h5 ...]

LXT is a checkout of github.com/rachtibat/LRP-eXplains-Transformers (its
root, the directory holding lxt/; LXT_COMMIT=... names the commit when the
checkout has no .git).  Not run by CI (CI cannot reach LXT).

LXT 2.x ("efficient" mode) computes LRP as gradient x input: it replaces the
forward of a few module classes so that the plain gradient becomes the LRP
relevance, and leaves Linear layers alone (plain gradient: LRP-0 with the
bias absorbing).  Its package __init__ (lxt/efficient/__init__.py) imports
the HuggingFace `transformers` models it patches, which Debian does not
package; this script therefore loads LXT's own lxt/efficient/rules.py and
lxt/efficient/patches.py by path, without that __init__, and runs them
unchanged.  Two runs a fixture:

  lxt-cp        LXT's map for torchvision's ViT (lxt/efficient/models/
                vit_torch.py, cp_LRP): nn.GELU -> non_linear_forward
                (identity rule), nn.LayerNorm -> layer_norm_forward (sigma
                detached), nn.MultiheadAttention -> cp_multi_head_attention_
                forward (query and key detached: CP-LRP).  Applied with LXT's
                own patch_method to the torch classes, exactly as
                monkey_patch(vision_transformer) does.  The fixture's
                MultiHeadAttention layers run as nn.MultiheadAttention (with
                the fixture's weights; its scale must be 1 / sqrt(d)).
  lxt-attnlrp   AttnLRP as LXT's HuggingFace patches apply it, with LXT's
                rule functions on the fixture's own layers: identity_rule_
                implicit on GELU / SiLU / Tanh (mlp_forward, gated_mlp_forward),
                divide_gradient(., 2) after a Mul (gated_mlp_forward),
                rms_norm_forward's stop_gradient on RMSNorm, layer_norm_forward
                on LayerNorm, and in the attention divide_gradient(q, 4),
                divide_gradient(k, 4), divide_gradient(v, 2) before the scores
                (wrap_attention_forward).
  lxt-explicit  LXT's explicit mode (lxt/explicit/functional.py, relevance
                passed as the gradient): linear_epsilon (eps 1e-6) on Dense,
                add2 (eps 1e-8) on Add, layer_norm (eps 1e-6) on LayerNorm,
                rms_norm_identity, softmax (Taylor), mul2 (uniform), every
                denominator stabilized as d + eps (our convention
                `positive`).  The identity rule on GELU / SiLU / tanh is a
                three-line Function of ours: lxt/explicit/rules.py, which has
                LXT's, imports torch.func (torch >= 2.0; Debian has 1.13).
                Not run on fixtures with MultiHeadAttention (LXT's explicit
                attention uses eps 1e-6 on the projections and 1e-8 on the
                products; our attnlrp has one eps) or Position.

Each fixture with a MultiHeadAttention is also run as stages
(lrp_torch.attention_as_stages, written as OUTDIR/NAME_stages.h5).
An attention written as stages (Dense q, k, v, AttnScores, AttnSoftmax,
AttnContext, Dense out: lrp_torch.export_module(..., attention="stages"))
runs under LXT's own HuggingFace attention wrappers, wrap_attention_forward
(lxt-attnlrp) and cp_wrap_attention_forward (lxt-cp), put around each stage
(staged_attention), and every stage's tensor is in the trace: under AttnLRP
the scores' and the weights' gradient x input halved (LXT moves A's half of
the uniform split onto q and k; DEFERRED_HALF), under CP-LRP q, k, S and A
written as the zeros LXT's detach gives them (staged_relevance).

Each trace states the rules LXT applied in our terms (docs/SPEC.md 3.7, 3.8):
Dense, Conv2D, Add, Position lrp0 with eps 0; LayerNorm ln_linear eps 0;
GELU / SiLU / Tanh identity with eps 1e-10 and the convention `positive`
(LXT's identity multiplies the output's gradient by f(x) / (x + 1e-10), so
R_x = R_y x / (x + 1e-10): what our identity with an eps computes; before it
was stated as the plain identity and the oracle saw the difference where |x|
is small, docs/PEERS.md "LXT"); Softmax taylor; Mul uniform;
MultiHeadAttention cplrp or attnlrp with eps 0; AttnScores uniform eps 0,
AttnSoftmax taylor, AttnContext uniform (cplrp under lxt-cp) eps 0; RMSNorm
identity.  Prints one line per run: verdict and the layers that are not PASS.
"""
import collections
import importlib.util
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import lrp_torch as lt  # noqa: E402
sys.path.insert(0, HERE)
import run_peers  # noqa: E402  (its compare and fixture_files)

# the transformer fixtures of `lrp-oracle gen` (those that exist are run)
DEFAULT = ("tokmlp", "attn1", "attn_parts", "attn_saturated", "attn_padded", "embed1", "gate1",
           "bert_tiny", "vit_tiny", "decoder1")


def load_lxt():
    """LXT's rules.py and patches.py as modules lxt.efficient.rules /
    lxt.efficient.patches, without running lxt/efficient/__init__.py."""
    root = None
    for p in sys.path:
        if os.path.isfile(os.path.join(p, "lxt", "efficient", "patches.py")):
            root = p
            break
    if root is None:
        raise SystemExit("run_lxt.py: LXT not found: put the root of a checkout of "
                         "github.com/rachtibat/LRP-eXplains-Transformers on PYTHONPATH")
    for name, rel in (("lxt", "lxt"), ("lxt.efficient", os.path.join("lxt", "efficient"))):
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [os.path.join(root, rel)]
            sys.modules[name] = m
    if "lxt.explicit" not in sys.modules:
        m = types.ModuleType("lxt.explicit")
        m.__path__ = [os.path.join(root, "lxt", "explicit")]
        sys.modules["lxt.explicit"] = m
    mods = {}
    for pkg, name in (("efficient", "rules"), ("efficient", "patches"),
                      ("explicit", "functional")):
        full = "lxt.%s.%s" % (pkg, name)
        spec = importlib.util.spec_from_file_location(
            full, os.path.join(root, "lxt", pkg, name + ".py"))
        m = importlib.util.module_from_spec(spec)
        sys.modules[full] = m
        spec.loader.exec_module(m)
        mods[name] = m
    rev = os.environ.get("LXT_COMMIT") or subprocess.run(
        ["git", "-C", root, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, universal_newlines=True).stdout.strip()
    return mods["rules"], mods["patches"], mods["functional"], rev or "unknown"


class TorchMHA(nn.Module):
    """A fixture MultiHeadAttention as torch's nn.MultiheadAttention
    (batch_first), the class LXT's cp_LRP map patches."""

    def __init__(self, L, holder):
        super().__init__()
        W = L["in_proj_weight"]
        Fd = W.shape[1]
        h = int(L["heads"])
        bias = bool(L.get("has_bias", 0))
        d = Fd // h
        if np.float32(L["scale"]) != np.float32(1.0 / np.sqrt(d)):
            raise ValueError("layer %r: scale %r is not 1/sqrt(%d): nn.MultiheadAttention "
                             "cannot compute it" % (L["name"], float(L["scale"]), d))
        if np.float32(L.get("mask_value", np.float32("-inf"))) != np.float32("-inf"):
            raise ValueError("layer %r: a finite mask value" % L["name"])
        self.mha = nn.MultiheadAttention(Fd, h, bias=bias, batch_first=True)
        with torch.no_grad():
            self.mha.in_proj_weight.copy_(torch.as_tensor(W))
            self.mha.out_proj.weight.copy_(torch.as_tensor(L["out_proj_weight"]))
            if bias:
                self.mha.in_proj_bias.copy_(torch.as_tensor(L["in_proj_bias"]))
                self.mha.out_proj.bias.copy_(torch.as_tensor(L["out_proj_bias"]))
        self.causal = bool(L.get("causal", 0))
        self.padding = bool(L.get("use_padding_mask", 0))
        self.holder = holder

    def forward(self, x):
        T = x.shape[1]
        am = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if self.causal else None
        kpm = None
        if self.padding and self.holder.mask is not None:
            kpm = torch.as_tensor(self.holder.mask).to(torch.bool)
        return self.mha(x, x, x, attn_mask=am, key_padding_mask=kpm, need_weights=False)[0]


def lxt_attention(patches, fa):
    """The fixture's attention (lrp_torch.FixtureAttention) with its core
    (scores, softmax, context on the heads' q, k, v) under LXT's own
    wrap_attention_forward, as LXT patches a HuggingFace attention function
    (its factors on q, k, v: 4, 4, 2)."""
    def core(module, q, k, v):
        S = torch.matmul(q, k.transpose(-1, -2)) * fa.scale
        A = fa.probs(S, fa.mask(q.shape[0], q.shape[2], q.device))
        return torch.matmul(A, v)
    wrapped = patches.wrap_attention_forward(core)

    def fwd(x):
        B, T, Fd = x.shape
        q, k, v, _ = fa.scores(x)
        O = wrapped(None, q, k, v).transpose(1, 2).reshape(B, T, Fd)
        return fa.out_proj(O)
    return fwd


# kinds LXT's cp_LRP map leaves to the plain gradient, which none of our
# rules is (the plain gradient through a SiLU, a tanh, a product or an
# RMSNorm): a fixture with one of them is not run under lxt-cp
CP_UNPATCHED = ("SiLU", "Tanh", "Mul", "RMSNorm")


def cp_obstacle(layers):
    """Why lxt-cp cannot run on these layers (None when it can)."""
    kinds = [L["kind"] for L in layers]
    bad = sorted(set(kinds) & set(CP_UNPATCHED))
    if bad:
        return "plain gradient on %s: no rule of ours" % ", ".join(bad)
    for L in layers:
        if L["kind"] != "MultiHeadAttention":
            continue
        d = L["in_proj_weight"].shape[1] // int(L["heads"])
        if np.float32(L["scale"]) != np.float32(1.0 / np.sqrt(d)):
            return "%s: scale %g, nn.MultiheadAttention has 1/sqrt(%d)" % (
                L["name"], float(L["scale"]), d)
        if np.float32(L.get("mask_value", np.float32("-inf"))) != np.float32("-inf"):
            return "%s: a finite mask value, nn.MultiheadAttention has -inf" % L["name"]
    return None


class _Identity(torch.autograd.Function):
    """LXT explicit's identity rule (relevance in, the same relevance out)."""

    @staticmethod
    def forward(ctx, f, x):
        return f(x)

    @staticmethod
    def backward(ctx, r):
        return None, r


def explicit_obstacle(layers):
    bad = sorted(set(L["kind"] for L in layers) & {"MultiHeadAttention", "Position",
                                                     "AttnScores", "AttnContext"})
    if bad:
        return "%s: not expressible with one eps" % ", ".join(bad)
    for L in layers:
        if L["kind"] == "Add" and len(L.get("inputs", [])) != 2:
            return "%s: add2 takes two inputs" % L["name"]
    return None


def build_explicit(path, lf):
    m = lt.fixture_to_module(path)
    fx = lt.read_fixture(path)
    for L in fx["layers"]:
        node, k, mod = m.layer(L["name"]), L["kind"], m.layer(L["name"]).module
        if k == "Dense":
            node._fn = (lambda mod: lambda x: lf.linear_epsilon(x, mod.weight, mod.bias,
                                                                epsilon=1e-6))(mod)
        elif k == "Add":
            node._fn = lambda a, b: lf.add2(a, b, epsilon=1e-8)
        elif k == "LayerNorm":
            node._fn = (lambda mod: lambda x: lf.layer_norm(x, mod.weight, mod.bias,
                                                            mod.eps))(mod)
        elif k == "RMSNorm":
            node._fn = (lambda mod: lambda x: lf.rms_norm_identity(x, mod.weight,
                                                                   mod.eps))(mod)
        elif k in ("GELU", "SiLU", "Tanh"):
            node._fn = (lambda f: lambda x: _Identity.apply(f, x))(mod)
        elif k == "Softmax":
            node._fn = lambda x: lf.softmax(x, -1)
        elif k == "Mul":
            node._fn = lambda a, b: lf.mul2(a, b)
        elif k == "Embedding":
            e = mod or next(mm for mm in m.layers if isinstance(mm, nn.Embedding))
            node._fn = (lambda e: lambda x: e(x.long()).detach().requires_grad_(True))(e)
    return m, fx


def explicit_rules(layers):
    pos = {"stabilizer": "positive"}
    res = {}
    for L in layers:
        k = L["kind"]
        if k == "Dense":
            res[L["name"]] = dict(pos, rule="epsilon", eps=np.float32(1e-6))
        elif k == "Add":
            res[L["name"]] = dict(pos, rule="epsilon", eps=np.float32(1e-8))
        elif k == "LayerNorm":
            res[L["name"]] = dict(pos, rule="ln_linear", eps=np.float32(1e-6))
        elif k in ("GELU", "SiLU", "Tanh", "RMSNorm"):
            res[L["name"]] = {"rule": "identity"}
        elif k == "Softmax":
            res[L["name"]] = {"rule": "taylor"}
        elif k == "Mul":
            res[L["name"]] = {"rule": "uniform"}
    return res


def build(path, mode, rules, patches):
    m = lt.fixture_to_module(path)
    fx = lt.read_fixture(path)
    for L in fx["layers"]:
        node = m.layer(L["name"])
        k = L["kind"]
        if k == "Embedding":
            # LXT's usage: the embeddings are the leaf that requires grad
            # (model(inputs_embeds=embeds.requires_grad_()))
            e = node.module or next(mm for mm in m.layers if isinstance(mm, nn.Embedding))
            node._fn = (lambda e: lambda x: e(x.long()).detach().requires_grad_(True))(e)
        elif k == "MultiHeadAttention":
            if mode == "lxt-cp":
                t = TorchMHA(L, m._kpm)
                node._fn, node.module = t, t.mha
            else:
                node._fn = lxt_attention(patches, node.module)
        elif k in ("AttnScores", "AttnContext"):
            node._fn = staged_attention(patches, mode, k, node._fn)
        elif mode == "lxt-attnlrp" and k in ("GELU", "SiLU", "Tanh"):
            f = node.module
            node._fn = (lambda f: lambda x: rules.identity_rule_implicit(f.forward, x))(f)
        elif mode == "lxt-attnlrp" and k == "Mul":
            node._fn = lambda a, b: rules.divide_gradient(a * b, 2)
        elif mode == "lxt-attnlrp" and k == "RMSNorm":
            mod = node.module
            shim = types.SimpleNamespace(variance_epsilon=float(mod.eps), weight=mod.weight)
            node._fn = (lambda s: lambda x: patches.rms_norm_forward(s, x))(shim)
        elif mode == "lxt-attnlrp" and k == "LayerNorm":
            node._fn = (lambda mod: lambda x: patches.layer_norm_forward(mod, x))(node.module)
    return m, fx


def staged_attention(patches, mode, kind, stage):
    """A stage of an attention written as stages (docs/FORMAT.md: AttnScores
    S = scale q k^T, AttnContext O = A v) under LXT's own attention wrapper:
    wrap_attention_forward (AttnLRP: q, k divided by 4, v by 2) or
    cp_wrap_attention_forward (CP-LRP: q and k stop the gradient), the
    functions LXT puts around every HuggingFace attention function.  The
    wrapper takes (module, query, key, value); a stage uses two of them, so
    the tensor it does not use is passed in the unused slots (its treated
    copy reaches no output: no gradient flows through it)."""
    wrap = (patches.cp_wrap_attention_forward if mode == "lxt-cp"
            else patches.wrap_attention_forward)
    if kind == "AttnScores":
        inner = wrap(lambda module, q, k, v: stage(q, k))
        return lambda q, k: inner(None, q, k, k)
    return lambda A, v: wrap(lambda module, q, k, vv: stage(A, vv))(None, v, v, v)


# LXT's AttnLRP factors (wrap_attention_forward): the product O = A v splits
# its relevance in halves (the uniform rule), the scores' q k^T again; LXT
# puts v's half on v and A's half, with the scores' half, on q and k (4 =
# 2 x 2: the softmax and the scale are linear in the gradient, so the factor
# may move below them).  Gradient x input at S and at A is therefore twice
# the relevance those tensors hold under AttnLRP: the capture divides it by
# this (exactly: a power of two).  Not applied, the trace fails at both
# (tests/python/test_peer_capture.py test_lxt_like_staged_attention).
DEFERRED_HALF = ("AttnScores", "AttnSoftmax")


def staged_relevance(R, layers, mode, acts):
    """The captured gradient x input of a staged attention as relevance.
    AttnLRP: S and A halved (DEFERRED_HALF).  CP-LRP: LXT's stop_gradient
    detaches q and k, so they, S and A (computed from constants) get no
    gradient, and in LXT's gradient x input framework no relevance: zeros,
    written so that the oracle judges them and the attention's input (our
    cplrp gives them no relevance either, all of O's going to v; had LXT
    sent relevance through them, the zeros would fail).  A gradient that
    reaches them anyway is not CP-LRP relevance: replaced by the zeros."""
    zero = set()
    for L in layers:
        n = L["name"]
        if mode == "lxt-cp" and L["kind"] == "AttnScores":
            zero.update(L["inputs"][:2])
            zero.add(n)
        elif mode == "lxt-cp" and L["kind"] == "AttnSoftmax":
            zero.add(n)
        elif L["kind"] in DEFERRED_HALF and n in R:
            R[n] = (R[n] * np.float32(0.5)).astype(np.float32)
    for n in zero:
        R[n] = np.zeros_like(acts[n], dtype=np.float32)
    order = [L["name"] for L in layers]
    return collections.OrderedDict((n, R[n]) for n in order if n in R)


def stated_rules(layers, mode):
    res = {}
    for L in layers:
        k = L["kind"]
        if k in ("Dense", "Conv2D", "Add", "Position"):
            res[L["name"]] = {"rule": "lrp0", "eps": np.float32(0)}
        elif k == "LayerNorm":
            res[L["name"]] = {"rule": "ln_linear", "eps": np.float32(0)}
        elif k in ("GELU", "SiLU", "Tanh"):
            # identity_rule_implicit: the gradient times f(x) / (x + 1e-10)
            res[L["name"]] = {"rule": "identity", "eps": np.float32(1e-10),
                              "stabilizer": "positive"}
        elif k == "RMSNorm":
            res[L["name"]] = {"rule": "identity"}
        elif k == "Softmax":
            res[L["name"]] = {"rule": "taylor"}
        elif k == "Mul":
            res[L["name"]] = {"rule": "uniform"}
        elif k == "MultiHeadAttention":
            res[L["name"]] = {"rule": "cplrp" if mode == "lxt-cp" else "attnlrp",
                              "eps": np.float32(0)}
        elif k == "AttnScores":  # eps 0 stated: the kind's default is 1e-6
            res[L["name"]] = {"rule": "uniform", "eps": np.float32(0)}
        elif k == "AttnSoftmax":
            res[L["name"]] = {"rule": "taylor"}
        elif k == "AttnContext":
            res[L["name"]] = {"rule": "cplrp" if mode == "lxt-cp" else "uniform",
                              "eps": np.float32(0)}
    return res


def patch_cp(patches):
    """monkey_patch(vision_transformer) with LXT's cp_LRP map, by hand: the
    same three patch_method calls (lxt/efficient/models/vit_torch.py)."""
    from functools import partial
    cp = {
        nn.GELU: partial(patches.patch_method, patches.non_linear_forward, keep_original=True),
        nn.LayerNorm: partial(patches.patch_method, patches.layer_norm_forward),
        nn.MultiheadAttention: partial(patches.patch_method,
                                       patches.cp_multi_head_attention_forward,
                                       keep_original=True),
    }
    saved = {c: c.forward for c in cp}
    for c, p in cp.items():
        p(c)
    return saved


def unpatch(saved):
    for c, f in saved.items():
        c.forward = f
        if hasattr(c, "original_forward"):
            del c.original_forward


def write_lxt_trace(path, mode, rules, patches, lf, rev):
    """Runs LXT's `mode` on the fixture at path (a copy: the trace is written
    into it) and writes the trace, the rules it states and the activations;
    returns the trace's source name.  lxt-cp expects patch_cp's patches in
    place."""
    if mode == "lxt-explicit":
        m, fx = build_explicit(path, lf)
        stated = explicit_rules(fx["layers"])
    else:
        m, fx = build(path, mode, rules, patches)
        stated = stated_rules(fx["layers"], mode)
    tgt = torch.as_tensor(np.asarray(m.target if m.target is not None else
                                     [0] * m.input_data.shape[0]))
    explicit = mode == "lxt-explicit"

    def lrp(mod, x):
        y = mod(x)
        sel = y[torch.arange(y.shape[0]), tgt]
        # explicit mode passes relevance: seeded with the output value;
        # efficient mode passes the gradient: seeded with 1
        sel.backward(sel.detach() if explicit else torch.ones_like(sel))

    R = lt.capture_relevance(m, m.input_data, lrp,
                             formulation="grad" if explicit else "grad_x_input",
                             seed="output")
    with torch.no_grad():
        acts = {k: v.detach().numpy().astype(np.float32)
                for k, v in m.forward_all(torch.as_tensor(m.input_data)).items()
                if torch.is_floating_point(v)}
    if not explicit:
        R = staged_relevance(R, fx["layers"], mode, acts)
    emb = [L["name"] for L in fx["layers"] if L["kind"] == "Embedding"]
    if emb and emb[0] in R:
        # relevance per token, as LXT reports it: the embedding's relevance
        # summed over the features, in float32
        inp = fx["layers"][0]["name"]
        R[inp] = R[emb[0]].sum(-1, dtype=np.float32)
        R.move_to_end(inp, last=False)
    src_name = mode.replace("-", "_")
    lt.write_trace(path, src_name, R, producer="lxt " + rev, rules=stated, activations=acts,
                   notes="LXT %s (tools/python/peers/run_lxt.py)" % mode, overwrite=True)
    return src_name


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    cli, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    files = []
    for src in run_peers.fixture_files(cli, outdir, sys.argv[3:], DEFAULT):
        files.append(src)
        # each fixture with a MultiHeadAttention also as stages
        # (lrp_torch.attention_as_stages): every stage's tensor judged
        try:
            kinds = [L["kind"] for L in lt.read_fixture(src)["layers"]]
        except lt.FixtureError:
            continue
        if "MultiHeadAttention" in kinds:
            st = os.path.join(outdir, os.path.basename(src)[:-3] + "_stages.h5")
            lt.attention_as_stages(src, st, cli=cli, overwrite=True)
            files.append(st)
    rules, patches, lf, rev = load_lxt()
    print("LXT %s, torch %s" % (rev, torch.__version__))
    print("%-16s %-12s %-16s %s" % ("fixture", "run", "verdict", "non-PASS layers"))
    for src in files:
        base = os.path.basename(src)[:-3]
        for mode in ("lxt-cp", "lxt-attnlrp", "lxt-explicit"):
            try:
                lays = lt.read_fixture(src)["layers"]
            except lt.FixtureError as e:
                print("%-16s %-12s %-16s %s" % (base, mode, "not run", e))
                continue
            why = (cp_obstacle(lays) if mode == "lxt-cp" else
                   explicit_obstacle(lays) if mode == "lxt-explicit" else None)
            if why:
                print("%-16s %-12s %-16s %s" % (base, mode, "not run", why))
                continue
            path = os.path.join(outdir, "%s.%s.h5" % (base, mode))
            shutil.copyfile(src, path)
            saved = patch_cp(patches) if mode == "lxt-cp" else {}
            try:
                src_name = write_lxt_trace(path, mode, rules, patches, lf, rev)
                _, verdict, bad = run_peers.compare(cli, path, src_name, outdir)
            except Exception as e:  # a peer failure is a result, not a crash
                verdict, bad = "PEER ERROR", "%s: %s" % (type(e).__name__, e)
            finally:
                unpatch(saved)
            print("%-16s %-12s %-16s %s" % (base, mode, verdict, bad))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
