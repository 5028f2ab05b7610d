"""lrp_peers -- one call to judge Zennit's or Captum's LRP on your own model.

    import lrp_peers
    report = lrp_peers.validate(model, x, composite, "model.h5")        # Zennit
    report = lrp_peers.validate(model, x, captum.attr.LRP(model), "model.h5")  # Captum
    assert report.ok, report.text

In a pytest suite, `lrp_peers.assert_valid(...)` does the same and fails the
test with the oracle's table.  Steps (each is a function of lrp_torch):

  1. export_module: the model, the input and the target into a fixture;
  2. the peer's own call on *your* model object (Zennit: a Gradient
     attributor with your composite, seeded with the output value at the
     target; Captum: attribute(x, target), seeded with 1 and rescaled);
     capture_relevance collects every layer's relevance from that run;
  3. the trace's /rules state what the peer applied, read from the peer's
     configuration: the rule the composite's module map gives each module
     (Zennit), the module's `rule` or Captum's default (Captum), BatchNorm
     canonization where a merging canonizer is given and the format allows
     it (docs/PEERS.md);
  4. `lrp-oracle compare`, whose JSON report is returned.

Neither peer is imported by this module unless you pass its object.
"""
import json
import os
import subprocess
import tempfile

import numpy as np
import torch

import lrp_torch as lt

__all__ = ["validate", "assert_valid", "Report", "zennit_rules", "captum_rules"]

_PASS_KINDS = ("Input", "ReLU", "Flatten", "Reshape", "Dropout", "Concatenate")


class Report(dict):
    """The oracle's JSON report of the run (docs/VALIDATING.md), plus
    `ok` (every layer PASS or ILL-CONDITIONED), `verdict`, `text` (the
    table as printed), `path` (the fixture with the trace) and `returncode`."""

    @property
    def ok(self):
        return bool(self.get("ok"))

    @property
    def verdict(self):
        return self.get("verdict", "?")


# -- what the peer applied, per fixture layer --------------------------------

def _freevars(hook):
    """Constructor arguments Zennit keeps only in closures, by name."""
    out = {}
    fns = [getattr(hook, "gradient_mapper", None), getattr(hook, "reducer", None)]
    fns += list(getattr(hook, "input_modifiers", []) or [])
    fns += [getattr(p, "modifier", None) for p in getattr(hook, "param_modifiers", []) or []]
    for f in fns:
        code = getattr(f, "__code__", None)
        if code is None:
            continue
        for n, c in zip(code.co_freevars, f.__closure__ or ()):
            try:
                out.setdefault(n, c.cell_contents)
            except ValueError:
                pass
    return out


def _zennit_rule(hook, where):
    name = type(hook).__name__
    if name == "Pass":
        return {"rule": "pass"}
    v = _freevars(hook)
    st = v.get("stabilizer_fn")
    eps = getattr(st, "epsilon", st)
    if not isinstance(eps, (int, float)):
        raise ValueError("%s: Zennit rule %s: cannot read its stabilizer" % (where, name))
    r = {"eps": np.float32(eps), "stabilizer": "sign0_pos"}
    zp = [getattr(p, "zero_params", None) for p in getattr(hook, "param_modifiers", []) or []]
    zp = zp[0] if zp else None
    if zp and "bias" in (zp if isinstance(zp, (list, tuple)) else [zp]):
        r["bias"] = 0
    if name in ("Epsilon", "Norm"):
        r["rule"] = "epsilon"
    elif name == "ZPlus":
        r["rule"] = "zplus"
    elif name == "AlphaBeta":
        r.update(rule="alphabeta", alpha=np.float32(v["alpha"]), beta=np.float32(v["beta"]))
    elif name == "Gamma":
        r.update(rule="gamma", gamma=np.float32(v["gamma"]),
                 flags=["gamma_generalized", "zennit_gamma_drop0"])
    elif name == "Flat":
        r["rule"] = "flat"
        r.pop("bias", None)
    elif name == "WSquare":
        r["rule"] = "wsquare"
    elif name == "ZBox":
        lo, hi = v.get("low"), v.get("high")
        if not all(isinstance(t, (int, float)) for t in (lo, hi)):
            raise ValueError("%s: ZBox with tensor bounds: pass rules= yourself" % where)
        r.update(rule="zbox", low=np.float32(lo), high=np.float32(hi))
    elif name == "Pass":
        return {"rule": "pass"}
    else:
        raise ValueError("%s: Zennit rule %s has no lrp-oracle equivalent (pass rules=)"
                         % (where, name))
    return r


def _merging(canonizers):
    out = False
    for c in canonizers or []:
        if type(c).__name__ in ("SequentialMergeBatchNorm", "NamedMergeBatchNorm",
                                "MergeBatchNorm"):
            out = True
        out = out or _merging(getattr(c, "canonizers", None))
    return out


def _bn_rules(layers, rules, hooks_bn):
    """bn_canonize where the format allows the merge, else the BN's own."""
    users = {}
    for L in layers:
        for n in L["inputs"]:
            users[n] = users.get(n, 0) + 1
    kinds = {L["name"]: L["kind"] for L in layers}
    for L in layers:
        if L["kind"] == "BatchNorm":
            src = L["inputs"][0]
            if kinds[src] in ("Conv2D", "Dense") and users[src] == 1:
                rules[L["name"]] = {"rule": "lrp0", "flags": ["bn_canonize"]}
            else:
                rules[L["name"]] = hooks_bn(L["name"])
    return rules


def zennit_rules(model, layers, origins, composite):
    """{layer: rule dict} of what `composite` applies to `model`'s modules."""
    from zennit.layer import Sum
    mods = dict(model.named_modules())
    ctx = {}
    hooks = {}
    for name, m in model.named_modules():  # the order Composite.register uses
        hooks[name] = composite.module_map(ctx, name, m)
    sum_hook = composite.module_map({}, "canonizer_sum", Sum())
    rules = {}
    for L, o in zip(layers, origins):
        n, k = L["name"], L["kind"]
        where = "layer %r" % n
        if k in _PASS_KINDS:
            rules[n] = {"rule": "pass"}
        elif k == "MaxPool2D":
            rules[n] = {"rule": "wta"}  # Zennit routes by the gradient
        elif k == "Add":
            if sum_hook is None:
                raise ValueError("%s: the composite has no rule for zennit.layer.Sum" % where)
            rules[n] = _zennit_rule(sum_hook, where)
        else:
            h = hooks.get(o[1]) if o and o[0] == "module" else None
            if h is None:
                raise ValueError(
                    "%s (%s, module %r): the composite assigns no rule, so Zennit passes the "
                    "plain gradient, which no LRP rule states; add it to the composite or pass "
                    "rules=" % (where, k, o[1] if o else None))
            rules[n] = _zennit_rule(h, where)
    if _merging(getattr(composite, "canonizers", None)):
        rules = _bn_rules(layers, rules, lambda n: rules[n])
    return rules


def _captum_rule(rule, kind, where):
    name = type(rule).__name__
    if name == "IdentityRule":
        return {"rule": "pass"}
    if kind == "MaxPool2D":
        # Every Captum rule on a max-pool is its epsilon rule: the hooks of
        # PropagationRule divide by y + sign0_pos eps at the output and
        # multiply by the input at the input, and _manipulate_weights finds
        # no weight or bias there (GammaRule, Alpha1_Beta0_Rule included)
        return {"rule": "epsilon", "eps": np.float32(getattr(rule, "STABILITY_FACTOR", 1e-9))}
    if name == "EpsilonRule":
        return {"rule": "epsilon", "eps": np.float32(rule.STABILITY_FACTOR)}
    r = {"eps": np.float32(getattr(rule, "STABILITY_FACTOR", 1e-9))}
    if getattr(rule, "set_bias_to_zero", False):
        r["bias"] = 0
    if name == "GammaRule":
        # Captum keeps the full bias b in the denominator (not b + gamma b+)
        r.update(rule="gamma", gamma=np.float32(rule.gamma), flags=["captum_gamma_fullbias"])
    elif name == "Alpha1_Beta0_Rule":
        r.update(rule="alphabeta", alpha=np.float32(1), beta=np.float32(0), flags=["captum_a1b0"])
    else:
        raise ValueError("%s: Captum rule %s has no lrp-oracle equivalent (pass rules=)"
                         % (where, name))
    return r


def captum_rules(model, layers, origins):
    """{layer: rule dict} of what captum.attr.LRP applies: each module's own
    `rule` attribute, else Captum's default (EpsilonRule(1e-9))."""
    from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES
    mods = dict(model.named_modules())
    rules = {}
    for L, o in zip(layers, origins):
        n, k = L["name"], L["kind"]
        if k in _PASS_KINDS:
            rules[n] = {"rule": "pass"}
            continue
        m = mods.get(o[1]) if o and o[0] == "module" else None
        rule = getattr(m, "rule", None) if m is not None else None
        if rule is None and m is not None and type(m) in SUPPORTED_LAYERS_WITH_RULES:
            rule = SUPPORTED_LAYERS_WITH_RULES[type(m)]()
        if rule is None:
            # a functional + (or a module Captum has no rule for): Captum lets
            # the gradient through; stated as its default epsilon, so the
            # verdict shows what that costs (docs/PEERS.md)
            from captum.attr._utils.lrp_rules import EpsilonRule
            rule = EpsilonRule()
        rules[n] = _captum_rule(rule, k, "layer %r" % n)
    return rules


# -- the one call -----------------------------------------------------------

def _peer_of(obj):
    mod = type(obj).__module__ or ""
    if mod.startswith("zennit"):
        return "zennit"
    if mod.startswith("captum"):
        return "captum"
    raise ValueError("attributor: a Zennit composite or a captum.attr.LRP object, got %s.%s"
                     % (mod, type(obj).__name__))


def validate(model, x, attributor, path, target=None, cli=None, source=None, rules=None,
             input_name="input", extra_args=()):
    """Exports `model` with input `x` to the fixture `path` (replaced if it
    exists: it is the oracle's working file), runs the peer, writes its trace
    and returns the oracle's Report.

    attributor: a Zennit Composite (run through zennit.attribution.Gradient)
      or a captum.attr.LRP object built on `model`.
    target: class per sample (default: the arg-max).
    rules: {layer: rule dict} to state yourself (default: read from the
      peer's configuration, see zennit_rules / captum_rules).
    extra_args: more `lrp-oracle compare` options (e.g. ["--strict"]).
    cli: the lrp-oracle binary (default $LRP_ORACLE)."""
    peer = _peer_of(attributor)
    cli = cli or lt.find_cli()
    if not cli:
        raise FileNotFoundError("lrp-oracle not found: pass cli= or set $LRP_ORACLE")
    x = torch.as_tensor(x, dtype=torch.float32)
    ex_layers = lt.export_module(model, x, path, target=target, input_name=input_name, cli=cli)
    fx = lt.read_fixture(path)
    tgt = torch.as_tensor(fx["target"]).long()
    ex = lt._Exporter(model, input_name)
    was_training = model.training
    model.eval()
    try:
        ex.run(x)
    finally:
        model.train(was_training)
    model.eval()
    if peer == "zennit":
        import zennit
        from zennit.attribution import Gradient

        def lrp(mod, xx):
            def seed(out):  # the output value at the target, as the oracle seeds
                s = torch.zeros_like(out)
                idx = torch.arange(out.shape[0])
                s[idx, tgt] = out.detach()[idx, tgt]
                return s
            with Gradient(model=mod, composite=attributor) as attr:
                attr(xx, seed)
        R = lt.capture_relevance(model, x, lrp, formulation="grad", seed="output",
                                 input_name=input_name)
        stated = rules or zennit_rules(model, ex.layers, ex.origins, attributor)
        producer = "zennit %s" % getattr(zennit, "__version__", "")
    else:
        import captum

        def lrp(mod, xx):
            attributor.attribute(xx, target=tgt)
        R = lt.capture_relevance(model, x, lrp, formulation="grad", seed="one",
                                 input_name=input_name)
        stated = rules or captum_rules(model, ex.layers, ex.origins)
        producer = "captum %s" % getattr(captum, "__version__", "")
    source = source or peer
    lt.write_trace(path, source, R, producer=producer.strip(), rules=stated, overwrite=True,
                   cli=cli)
    fd, js = tempfile.mkstemp(suffix=".json", prefix="lrp_peers.")
    os.close(fd)
    os.unlink(js)  # compare writes it (it never overwrites a file)
    try:
        r = subprocess.run([cli, "compare", path, "--source", source, "--json", js,
                            "--no-color"] + list(extra_args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
        if r.returncode == 2 or not os.path.exists(js):
            raise RuntimeError("lrp-oracle compare %s: %s" % (path, r.stderr.strip()))
        with open(js) as f:
            j = json.load(f)
    finally:
        if os.path.exists(js):
            os.unlink(js)
    rep = Report(j["runs"][0])
    rep["text"] = r.stdout
    rep["path"] = path
    rep["returncode"] = r.returncode
    rep["rules"] = stated
    return rep


def assert_valid(model, x, attributor, path, **kw):
    """validate(), raising AssertionError with the oracle's table unless
    every layer is PASS or ILL-CONDITIONED: one line in a pytest test."""
    rep = validate(model, x, attributor, path, **kw)
    if not rep.ok:
        raise AssertionError("lrp-oracle: %s\n%s" % (rep.verdict, rep["text"]))
    return rep
