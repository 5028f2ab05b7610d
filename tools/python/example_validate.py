#!/usr/bin/python3
"""Validate an LRP implementation with lrp-oracle, end to end (docs/VALIDATING.md).

    /usr/bin/python3 tools/python/example_validate.py build/lrp-oracle OUT_DIR

1. export a PyTorch model into a fixture (the network, its weights, one input);
2. run "your" LRP on it -- here a compact LRP-epsilon written the way PyTorch
   LRP libraries do it (modified backward through autograd) -- capturing the
   relevance at every layer with hooks;
3. write that relevance into the fixture as a trace, with its rules;
4. `lrp-oracle compare` judges it against the MPFR reference.
Replace step 2 by your library's call.  Exit status: compare's (0 = within
the tolerance table).
"""
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lrp_torch as lt  # noqa: E402


def build_model():
    """The model under test: a small CNN with BatchNorm (any supported
    torch.nn model works: see tools/python/README.md)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10))
    with torch.no_grad():  # non-trivial BatchNorm statistics
        bn = model[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


EPS = np.float32(1e-6)


class EpsilonLayer(torch.autograd.Function):
    """Your LRP-epsilon, as PyTorch libraries write it: the forward is the
    layer's own; the backward maps relevance R to a * grad(z . R / stab(z)),
    stab(z) = z + eps * (1 if z >= 0 else -1)."""

    @staticmethod
    def forward(ctx, fn, *xs):
        ctx.fn = fn
        ctx.save_for_backward(*xs)
        with torch.no_grad():
            return fn(*xs)

    @staticmethod
    def backward(ctx, R):
        xs = [x.detach().requires_grad_(True) for x in ctx.saved_tensors]
        with torch.enable_grad():
            z = ctx.fn(*xs)
            stab = z + EPS * torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
            grads = torch.autograd.grad(z, xs, (R / stab).detach())
        return (None,) + tuple(x.detach() * g for x, g in zip(xs, grads))


class PassReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.relu(x)

    @staticmethod
    def backward(ctx, R):
        return R


def my_lrp(module, x):
    """Runs LRP-epsilon through the fixture's module: relevance flows as the
    autograd "gradient" (capture_relevance's formulation "grad")."""
    for name, layer in module.named_layers():
        if layer.kind in ("Dense", "Conv2D", "BatchNorm", "Add", "AvgPool2D", "GlobalAvgPool"):
            layer.forward = (lambda *xs, _f=layer.forward: EpsilonLayer.apply(_f, *xs))
        elif layer.kind == "ReLU":
            layer.forward = PassReLU.apply
    y = module(x)
    seed = torch.zeros_like(y)  # start: the target logit
    idx = torch.arange(y.shape[0])
    target = torch.as_tensor(module.target)
    seed[idx, target] = y.detach()[idx, target]
    y.backward(seed)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    cli, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "mymodel.h5")

    # 1. export: the fixture holds the network, its weights and one input
    torch.manual_seed(1)  # a fixed input: the run is reproducible
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    lt.export_module(build_model(), x, path, cli=cli)

    # 2. your LRP, on the fixture's own module, every layer's relevance captured
    m = lt.fixture_to_module(path)
    R = lt.capture_relevance(m, m.input_data, my_lrp, formulation="grad")

    # 3. the trace, with the rules your implementation used
    lt.write_trace(path, "mylrp", R, producer="example_validate.py (LRP-epsilon via autograd)",
                   profile="zennit", rules=lt.epsilon_rules(path, eps=EPS, stabilizer="sign0_pos"),
                   cli=cli)

    # 4. the verdict
    r = subprocess.run([cli, "compare", path, "--source", "mylrp",
                        "--json", os.path.join(out, "verdict.json")])
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
