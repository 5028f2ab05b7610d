"""run_peers.py -- runs the real Zennit and Captum over lrp-oracle fixtures.

    PYTHONPATH=ZENNIT/src:CAPTUM /usr/bin/python3 tools/python/peers/run_peers.py \
        build/lrp-oracle OUTDIR [fixture.h5 ...]

Not run by CI (CI cannot reach the peers; tests/python/test_peer_capture.py
checks the same capture conventions on plain-torch implementations).  For
each fixture (default: every fixture `lrp-oracle gen` writes) it copies the
file to OUTDIR, runs

  zennit-eps    zennit Gradient attributor, a LayerMapComposite: Epsilon(1e-6)
                on Linear/Conv2d, Norm on Sum and average pools, Pass on
                BatchNorm and activations (no canonizer)
  zennit-plus   zennit's EpsilonPlus composite (ZPlus on convolutions)
  zennit-canon  the same with zennit's SequentialMergeBatchNorm canonizer; the
                trace states bn_canonize where the format allows the merge
                (the BN's input is a conv/dense read by nothing else) and
                pass on the other BatchNorms (Zennit's map for them)
  captum        captum.attr.LRP with its default rules (EpsilonRule(1e-9) on
                Linear, Conv2d, BatchNorm2d, pools, Addition_Module; the trace
                states epsilon 1e-9 on the max-pools too)

RUN_PEERS=captum,zennit-eps (say) runs only those peers.

on the fixture's standard-module network (lrp_torch.fixture_to_module with
peer=...), captures every layer's relevance, writes a trace whose /rules
state what the peer applied, runs `lrp-oracle compare` and prints one line
per run: verdict, worst layer, and whether the captured input relevance is
bitwise the peer's own attribution.  Peer errors are reported, not hidden.
"""
import json
import os
import shutil
import subprocess
import sys
import traceback

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import lrp_torch as lt  # noqa: E402

RATIO_KINDS = ("Dense", "Conv2D")
NORM_KINDS = ("Add", "AvgPool2D", "GlobalAvgPool")


def rules_for(layers, linear, norm, bn, conv=None, maxpool=None):
    """{layer: rule dict}: `linear` on Dense (and Conv2D unless conv is
    given), `norm` on Add / average pools, `bn` on BatchNorm, `maxpool`
    (default wta) on max-pools, pass elsewhere."""
    res = {}
    for L in layers:
        k = L["kind"]
        if k == "Conv2D" and conv is not None:
            res[L["name"]] = dict(conv)
        elif k in RATIO_KINDS:
            res[L["name"]] = dict(linear)
        elif k in NORM_KINDS:
            res[L["name"]] = dict(norm)
        elif k == "BatchNorm":
            res[L["name"]] = dict(bn)
        elif k == "MaxPool2D":
            res[L["name"]] = dict(maxpool or {"rule": "wta"})
        else:
            res[L["name"]] = {"rule": "pass"}
    return res


def _onehot_out(m):
    tgt = torch.as_tensor(m.target)

    def seed(out):  # the output value at the target: our seed
        s = torch.zeros_like(out)
        idx = torch.arange(out.shape[0])
        s[idx, tgt] = out.detach()[idx, tgt]
        return s
    return seed


def canon_bn_rules(layers, rules):
    """bn_canonize where the format allows it, pass elsewhere."""
    import lrp_peers
    return lrp_peers._bn_rules(layers, rules, lambda name: {"rule": "pass"})


def run_zennit(path, composite_name):
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import LayerMapComposite, EpsilonPlus
    from zennit.layer import Sum
    from zennit.rules import Epsilon, Norm, Pass
    from zennit.types import Activation, AvgPool, BatchNorm, Convolution, Linear
    m = lt.fixture_to_module(path, peer="zennit")
    fx = lt.read_fixture(path)
    eps = 1e-6
    if composite_name == "zennit-eps":
        comp = LayerMapComposite([(Activation, Pass()), (Sum, Norm()), (AvgPool, Norm()),
                                  (BatchNorm, Pass()), (Convolution, Epsilon(eps)),
                                  (Linear, Epsilon(eps))])
        rules = rules_for(fx["layers"], {"rule": "epsilon", "eps": np.float32(eps)},
                          {"rule": "epsilon", "eps": np.float32(eps)}, {"rule": "pass"})
    else:
        canon = [SequentialMergeBatchNorm()] if composite_name == "zennit-canon" else []
        comp = EpsilonPlus(epsilon=eps, canonizers=canon)
        rules = rules_for(fx["layers"], {"rule": "epsilon", "eps": np.float32(eps)},
                          {"rule": "epsilon", "eps": np.float32(eps)}, {"rule": "pass"},
                          conv={"rule": "zplus", "eps": np.float32(eps)})
        if canon:
            rules = canon_bn_rules(fx["layers"], rules)
    own = {}

    def lrp(mod, x):
        with Gradient(model=mod, composite=comp) as attributor:
            out, rel = attributor(x, _onehot_out(mod))
        own["input"] = rel.detach().numpy()

    R = lt.capture_relevance(m, m.input_data, lrp, formulation="grad", seed="output")
    return R, rules, own["input"]


def run_captum(path):
    from captum.attr import LRP
    m = lt.fixture_to_module(path, peer="captum")
    fx = lt.read_fixture(path)
    e = {"rule": "epsilon", "eps": np.float32(1e-9)}
    # max-pools too: Captum's EpsilonRule there gives the winner a R / (a + eps)
    # (captum/attr/_core/lrp.py SUPPORTED_LAYERS_WITH_RULES; docs/PEERS.md)
    rules = rules_for(fx["layers"], e, e, e, maxpool=e)
    own = {}

    def lrp(mod, x):
        a = LRP(mod).attribute(x, target=torch.as_tensor(mod.target))
        own["input"] = a.detach().numpy()

    R = lt.capture_relevance(m, m.input_data, lrp, formulation="grad", seed="one")
    return R, rules, own["input"]


def compare(cli, path, source, outdir):
    js = os.path.join(outdir, "%s.%s.json" % (os.path.basename(path)[:-3], source))
    if os.path.exists(js):
        os.unlink(js)
    r = subprocess.run([cli, "compare", path, "--source", source, "--json", js, "--no-color"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    verdict, worst = "?", ""
    if os.path.exists(js):
        with open(js) as f:
            j = json.load(f)
        run = j["runs"][0] if "runs" in j else j
        verdict = run.get("verdict", "?")
        bad = [(L.get("name", "?"), L.get("verdict"))
               for L in run.get("layers", []) if L.get("verdict") not in ("PASS", "ILL-CONDITIONED")]
        worst = ", ".join("%s %s" % b for b in bad[:3])
    else:
        verdict = "ERROR: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    return r.returncode, verdict, worst


def fixture_files(cli, outdir, files, names=None):
    """The files given, else the fixtures `lrp-oracle gen` writes into
    OUTDIR/gen: every one, or those of `names` that exist (in that order)."""
    if files:
        return files
    gen = os.path.join(outdir, "gen")
    os.makedirs(gen, exist_ok=True)
    subprocess.run([cli, "gen", "--out", gen], check=True, stdout=subprocess.DEVNULL)
    if names is None:
        return sorted(os.path.join(gen, f) for f in os.listdir(gen) if f.endswith(".h5"))
    return [os.path.join(gen, n + ".h5") for n in names
            if os.path.exists(os.path.join(gen, n + ".h5"))]


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    cli, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    files = fixture_files(cli, outdir, sys.argv[3:])
    peers = ("zennit-eps", "zennit-plus", "zennit-canon", "captum")
    if os.environ.get("RUN_PEERS"):
        want = os.environ["RUN_PEERS"].split(",")
        bad = sorted(set(want) - set(peers))
        if bad:
            sys.stderr.write("RUN_PEERS: unknown peer(s) %s (known: %s)\n"
                             % (", ".join(bad), ", ".join(peers)))
            return 2
        peers = tuple(p for p in peers if p in want)
    print("%-16s %-12s %-16s %-8s %s" % ("fixture", "peer", "verdict", "own==cap", "non-PASS layers"))
    for src in files:
        base = os.path.basename(src)
        for peer in peers:
            path = os.path.join(outdir, "%s.%s.h5" % (base[:-3], peer))
            shutil.copyfile(src, path)
            try:
                if peer == "captum":
                    R, rules, own = run_captum(path)
                    producer = "captum"
                else:
                    R, rules, own = run_zennit(path, peer)
                    producer = "zennit"
                first = next(iter(R))
                same = "yes" if (first in R and own.shape == R[first].shape and
                                 np.array_equal(own.view(np.uint32), R[first].view(np.uint32))) \
                    else "NO"
                lt.write_trace(path, peer.replace("-", "_"), R, producer=producer, rules=rules,
                               overwrite=True)
                rc, verdict, worst = compare(cli, path, peer.replace("-", "_"), outdir)
            except Exception as e:  # a peer refusing the network is a result too
                verdict, worst, same = "PEER-ERROR", "%s: %s" % (type(e).__name__, str(e)[:90]), "-"
                if os.environ.get("RUN_PEERS_DEBUG"):
                    traceback.print_exc()
            print("%-16s %-12s %-16s %-8s %s" % (base[:-3], peer, verdict, same, worst), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
