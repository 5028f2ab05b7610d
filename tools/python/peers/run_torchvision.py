"""run_torchvision.py -- the real peers on a user's own torchvision model.

    PYTHONPATH=ZENNIT/src:CAPTUM /usr/bin/python3 tools/python/peers/run_torchvision.py \
        build/lrp-oracle OUTDIR [resnet18|vgg16] [SIZE]

Random weights with trained-like BatchNorm statistics (gamma ~ 1 +- 0.1,
beta and running mean ~ N(0, 0.1), running var ~ U(0.5, 1.5)), one input of
SIZE x SIZE (default 64; stock VGG-16 needs 224 for its (7, 7) pool).
The model is exported (lrp_torch.export_module), then each peer runs on
the *original* model object as its users run it, and capture_relevance
finds every fixture layer in that run (module calls, functional +,
flatten, input):

  zennit      EpsilonPlus(epsilon=1e-6) with zennit's ResNetCanonizer
              (SequentialMergeBatchNorm + BasicBlock Sum) or VGGCanonizer;
              the trace states zplus/epsilon with bn_canonize, i.e. what
              the canonizer claims to do
  captum      LRP with its default rules (no Addition_Module: the stock
              model's functional +)
"""
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import lrp_torch as lt  # noqa: E402
import run_peers as rp  # noqa: E402


def trained_like(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model.eval()


def main():
    import torchvision
    cli, outdir = sys.argv[1], sys.argv[2]
    arch = sys.argv[3] if len(sys.argv) > 3 else "resnet18"
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    os.makedirs(outdir, exist_ok=True)
    torch.manual_seed(0)
    model = trained_like(getattr(torchvision.models, arch)(weights=None))
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    base = os.path.join(outdir, "%s_%d" % (arch, size))
    layers = lt.export_module(model, x, base + ".h5", cli=cli)
    fx = lt.read_fixture(base + ".h5")
    tgt = torch.as_tensor(fx["target"])
    for peer in ("zennit", "captum"):
        path = "%s.%s.h5" % (base, peer)
        with open(base + ".h5", "rb") as a, open(path, "wb") as b:
            b.write(a.read())
        try:
            if peer == "zennit":
                from zennit.attribution import Gradient
                from zennit.composites import EpsilonPlus
                from zennit.torchvision import ResNetCanonizer, VGGCanonizer
                can = ResNetCanonizer() if arch.startswith("resnet") else VGGCanonizer()
                comp = EpsilonPlus(epsilon=1e-6, canonizers=[can])
                e = {"rule": "epsilon", "eps": np.float32(1e-6)}
                rules = rp.rules_for(layers, e, e, {"rule": "lrp0", "flags": ["bn_canonize"]},
                                     conv={"rule": "zplus", "eps": np.float32(1e-6)})
                for L in layers:  # Zennit merges only BNs right after a linear layer
                    if L["kind"] == "BatchNorm":
                        prev = [P for P in layers if P["name"] == L["inputs"][0]][0]
                        if prev["kind"] not in ("Conv2D", "Dense"):
                            rules[L["name"]] = {"rule": "pass"}

                def lrp(mod, xx):
                    seed = rp._onehot_out(type("T", (), {"target": fx["target"]}))
                    with Gradient(model=mod, composite=comp) as attributor:
                        attributor(xx, seed)
                R = lt.capture_relevance(model, x, lrp, formulation="grad", seed="output")
            else:
                from captum.attr import LRP
                e = {"rule": "epsilon", "eps": np.float32(1e-9)}
                # max-pools too (as run_peers.run_captum): Captum's EpsilonRule
                # gives the winner a R / (a + eps); stated as wta, the exact
                # copy has a layer-total budget of 0 and a correct Captum run
                # FAILs there (VGG-16 224, December 2026: docs/PEERS.md)
                rules = rp.rules_for(layers, e, e, e, maxpool=e)

                def lrp(mod, xx):
                    LRP(mod).attribute(xx, target=tgt)
                R = lt.capture_relevance(model, x, lrp, formulation="grad", seed="one")
            missing = [L["name"] for L in layers if L["name"] not in R]
            lt.write_trace(path, peer, R, producer=peer, rules=rules, overwrite=True)
            rc, verdict, worst = rp.compare(cli, path, peer, outdir)
            print("%s %s: %s (%d/%d layers captured%s) %s" % (
                arch, peer, verdict, len(R), len(layers),
                (", missing " + ", ".join(missing[:5])) if missing else "", worst), flush=True)
        except Exception as ex:
            import traceback
            traceback.print_exc()
            print("%s %s: PEER-ERROR %s: %s" % (arch, peer, type(ex).__name__, ex), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
