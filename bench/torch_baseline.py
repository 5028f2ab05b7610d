#!/usr/bin/python3
"""PyTorch baseline for the fast-path benchmark: an EpsilonPlusFlat LRP pass
written the way PyTorch LRP libraries (Zennit, Captum's LRP) do it -- autograd
through the layer with modified parameters, relevance = input * gradient:

  conv (not first):  z = conv(a, W.clamp(min=0)) [no bias]; s = R / stab(z);
                     R_in = a * autograd.grad(z, a, s)        (z+)
  first conv:        flat: z = conv(1, 1) ; R_in = grad(z, 1, R / z)
  dense:             z = a W^T + b ; s = R / stab(z) ; R_in = a * grad  (epsilon)
  relu:              pass-through
  max-pool:          winner-take-all through the pooling gradient
  residual add:      z-rule split (ResNet)
  stab(z) = z + eps * sign(z) (sign(0) = +1), eps = 1e-6 for z+, 0.25 for epsilon

VGG-16 and ResNet-50 are built by hand with torch.nn (torchvision shapes; the
ResNet's BatchNorm is folded into conv weights/biases, as a canonizer would),
random weights from a fixed seed.  torch.set_num_threads(2) by default.
Prints the median time of the forward alone and of the full LRP pass
(forward + relevance backward), as RESULT lines read by scripts/bench.sh.

  /usr/bin/python3 bench/torch_baseline.py [--quick] [--reps N] [--threads T]
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def stab(z, eps):
    return z + eps * torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))


def lrp_conv_zplus(a, R, conv):
    a = a.detach().requires_grad_(True)
    z = F.conv2d(a, conv.weight.clamp(min=0), None, conv.stride, conv.padding,
                 conv.dilation, conv.groups)
    s = R / stab(z, 1e-6)
    (g,) = torch.autograd.grad(z, a, s)
    return a.detach() * g


def lrp_conv_flat(a, R, conv):
    ones = torch.ones_like(a).requires_grad_(True)
    z = F.conv2d(ones, torch.ones_like(conv.weight), None, conv.stride, conv.padding,
                 conv.dilation, conv.groups)
    (g,) = torch.autograd.grad(z, ones, R / stab(z, 1e-6))
    return g


def lrp_linear_eps(a, R, lin, eps=0.25):
    a = a.detach().requires_grad_(True)
    z = F.linear(a, lin.weight, lin.bias)
    (g,) = torch.autograd.grad(z, a, R / stab(z, eps))
    return a.detach() * g


def lrp_maxpool(a, R, pool):
    a = a.detach().requires_grad_(True)
    z = pool(a)
    (g,) = torch.autograd.grad(z, a, R)
    return g


# ---------------------------------------------------------------- VGG-16

VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
           512, 512, 512, "M"]


def make_vgg16():
    layers, c = [], 3
    for v in VGG_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    feats = nn.Sequential(*layers)
    cls = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(),
                        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
    return feats, cls


def vgg_forward(net, x):
    feats, cls = net
    h = feats(x)
    if h.shape[-1] != 7:
        h = F.adaptive_avg_pool2d(h, 7)
    return cls(torch.flatten(h, 1))


def vgg_lrp(net, x):
    feats, cls = net
    acts, a = [], x
    with torch.no_grad():
        for m in feats:
            acts.append(a)
            a = m(a)
        pre_pool = a
        if a.shape[-1] != 7:
            a = F.adaptive_avg_pool2d(a, 7)
        a = torch.flatten(a, 1)
        cacts = []
        for m in cls:
            cacts.append(a)
            a = m(a)
    R = a * F.one_hot(a.argmax(1), a.shape[1]).to(a.dtype)
    for m, ai in zip(reversed(cls), reversed(cacts)):
        if isinstance(m, nn.Linear):
            R = lrp_linear_eps(ai, R, m)
    if pre_pool.shape[-1] != 7:
        pp = pre_pool.detach().requires_grad_(True)
        z = F.adaptive_avg_pool2d(pp, 7)
        (g,) = torch.autograd.grad(z, pp, R.reshape(z.shape) / stab(z, 1e-6))
        R = pp.detach() * g
    else:
        R = R.reshape(pre_pool.shape)
    first = 0
    for i in reversed(range(len(feats))):
        m, ai = feats[i], acts[i]
        if isinstance(m, nn.Conv2d):
            R = lrp_conv_flat(ai, R, m) if i == first else lrp_conv_zplus(ai, R, m)
        elif isinstance(m, nn.MaxPool2d):
            R = lrp_maxpool(ai, R, m)
    return R


# ---------------------------------------------------------------- ResNet-50

class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride, down):
        super().__init__()
        self.c1 = nn.Conv2d(cin, width, 1)
        self.c2 = nn.Conv2d(width, width, 3, stride, 1)
        self.c3 = nn.Conv2d(width, width * 4, 1)
        self.down = nn.Conv2d(cin, width * 4, 1, stride) if down else None

    def forward(self, x):
        h = F.relu(self.c1(x))
        h = F.relu(self.c2(h))
        h = self.c3(h)
        sk = self.down(x) if self.down is not None else x
        return F.relu(h + sk)

    def lrp(self, x, R):
        with torch.no_grad():
            h1 = F.relu(self.c1(x))
            h2 = F.relu(self.c2(h1))
            h3 = self.c3(h2)
            sk = self.down(x) if self.down is not None else x
            tot = stab(h3 + sk, 1e-6)
            Rm, Rs = R * h3 / tot, R * sk / tot
        Rm = lrp_conv_zplus(h2, Rm, self.c3)
        Rm = lrp_conv_zplus(h1, Rm, self.c2)
        Rm = lrp_conv_zplus(x, Rm, self.c1)
        if self.down is not None:
            Rs = lrp_conv_zplus(x, Rs, self.down)
        return Rm + Rs


def make_resnet50():
    stem = nn.Conv2d(3, 64, 7, 2, 3)
    blocks, cin = [], 64
    for width, n, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(n):
            blocks.append(Bottleneck(cin, width, stride if i == 0 else 1, i == 0))
            cin = width * 4
    fc = nn.Linear(2048, 1000)
    return stem, nn.ModuleList(blocks), fc


def resnet_forward(net, x):
    stem, blocks, fc = net
    h = F.max_pool2d(F.relu(stem(x)), 3, 2, 1)
    for b in blocks:
        h = b(h)
    return fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def resnet_lrp(net, x):
    stem, blocks, fc = net
    with torch.no_grad():
        s = F.relu(stem(x))
        h = F.max_pool2d(s, 3, 2, 1)
        ins = []
        for b in blocks:
            ins.append(h)
            h = b(h)
        g = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        out = fc(g)
    R = out * F.one_hot(out.argmax(1), out.shape[1]).to(out.dtype)
    R = lrp_linear_eps(g, R, fc)
    hh = h.detach().requires_grad_(True)
    z = torch.flatten(F.adaptive_avg_pool2d(hh, 1), 1)
    (gr,) = torch.autograd.grad(z, hh, R / stab(z, 1e-6))
    R = hh.detach() * gr
    for b, bi in zip(reversed(blocks), reversed(ins)):
        R = b.lrp(bi, R)
    R = lrp_maxpool(s, R, nn.MaxPool2d(3, 2, 1))
    return lrp_conv_flat(x, R, stem)


def bench(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}")
    vgg = make_vgg16()
    res = make_resnet50()
    cases = [("vgg16_224_b1", vgg, vgg_forward, vgg_lrp, 1, 224)]
    if not args.quick:
        cases += [("vgg16_112_b1", vgg, vgg_forward, vgg_lrp, 1, 112),
                  ("vgg16_224_b8", vgg, vgg_forward, vgg_lrp, 8, 224)]
    cases += [("resnet50_224_b1", res, resnet_forward, resnet_lrp, 1, 224)]
    for name, net, fwd, lrp, b, hw in cases:
        x = torch.rand(b, 3, hw, hw)
        reps = max(1, args.reps // (4 if b > 1 else 1))
        with torch.no_grad():
            tf = bench(lambda: fwd(net, x), reps)
        tl = bench(lambda: lrp(net, x), reps)
        print(f"RESULT torch {name} forward_s {tf:.4f} lrp_s {tl:.4f}", flush=True)


if __name__ == "__main__":
    main()
