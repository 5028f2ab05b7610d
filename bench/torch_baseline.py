#!/usr/bin/python3
"""PyTorch baseline for bench/bench_lrp.c: the EpsilonPlusFlat composite
end to end, written the way PyTorch LRP libraries (Zennit, Captum's LRP) do
it -- autograd through each layer with modified parameters, relevance =
input * gradient -- on the same network shapes as bench_lrp.c:

  conv (not first):  z+ : z = conv(a, W.clamp(min=0), b.clamp(min=0));
                     s = R / stab(z); R_in = a * autograd.grad(z, a, s)
                     (a >= 0 after ReLU / max-pool, so Zennit's a- term is 0
                     and is not computed -- as our engine drops it too).
                     --form zennit: Zennit's ZPlus as Zennit runs it (it does
                     not know a >= 0): z1 = conv(a+, W+, b+), z2 = conv(a-, W-),
                     s = R / stab(z1 + z2), R_in = a+ grad(z1) + a- grad(z2):
                     two modified forwards and two gradients per layer.
  first conv:        flat: z = conv(1, 1) ; R_in = grad(z, 1, R / stab(z))
  dense:             epsilon: z = a W^T + b ; R_in = a * grad(z, a, R / stab(z))
  batch norm:        epsilon, explicit (no canonizer): z = bn(a) (eval mode);
                     R_in = a * grad(z, a, R / stab(z))
  residual add:      epsilon split: R_k = v_k * R / stab(sum v)
  global avg pool:   epsilon: R_in = a * grad(z, a, R / stab(z))
  relu:              pass-through;  max-pool: winner-take-all (pool gradient)
  stab(z) = z + eps * (z >= 0 ? 1 : -1), eps = 1e-6 everywhere (the
  composite's default, LRP_STAB_SIGN0_POS)

VGG-16 (13 convs 3x3 + 5 max-pools + fc 4096-4096-1000) and ResNet-50
(torchvision v1.5 shapes, BatchNorm explicit, projection shortcuts) built by
hand with torch.nn, random weights from a fixed seed.  At 112x112 the VGG
features end at 512x3x3 and fc6 takes those 4608 values (as in bench_lrp.c;
no adaptive pooling).  torch.set_num_threads(2) by default.  Prints the
median time of the forward alone and of the full LRP pass (forward +
relevance backward), as RESULT lines read by scripts/bench.sh.

  /usr/bin/python3 bench/torch_baseline.py [--quick] [--reps N] [--threads T]
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


EPS = 1e-6


def stab(z, eps=EPS):
    return z + eps * torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))


def lrp_conv_zplus(a, R, conv):
    a = a.detach().requires_grad_(True)
    b = conv.bias.clamp(min=0) if conv.bias is not None else None
    z = F.conv2d(a, conv.weight.clamp(min=0), b, conv.stride, conv.padding,
                 conv.dilation, conv.groups)
    (g,) = torch.autograd.grad(z, a, R / stab(z))
    return a.detach() * g


def lrp_conv_zplus_zennit(a, R, conv):
    ap = a.detach().clamp(min=0).requires_grad_(True)
    an = a.detach().clamp(max=0).requires_grad_(True)
    b = conv.bias.clamp(min=0) if conv.bias is not None else None
    z1 = F.conv2d(ap, conv.weight.clamp(min=0), b, conv.stride, conv.padding,
                  conv.dilation, conv.groups)
    z2 = F.conv2d(an, conv.weight.clamp(max=0), None, conv.stride, conv.padding,
                  conv.dilation, conv.groups)
    s = R / stab(z1 + z2)
    g1, g2 = torch.autograd.grad((z1, z2), (ap, an), (s, s))
    return ap.detach() * g1 + an.detach() * g2


ZPLUS = {"lean": lrp_conv_zplus, "zennit": lrp_conv_zplus_zennit}
FORM = "lean"


def lrp_conv_zplus_form(a, R, conv):
    return ZPLUS[FORM](a, R, conv)


def lrp_conv_flat(a, R, conv):
    ones = torch.ones_like(a).requires_grad_(True)
    z = F.conv2d(ones, torch.ones_like(conv.weight), None, conv.stride, conv.padding,
                 conv.dilation, conv.groups)
    (g,) = torch.autograd.grad(z, ones, R / stab(z))
    return g


def lrp_linear_eps(a, R, lin):
    a = a.detach().requires_grad_(True)
    z = F.linear(a, lin.weight, lin.bias)
    (g,) = torch.autograd.grad(z, a, R / stab(z))
    return a.detach() * g


def lrp_bn_eps(a, R, bn):
    a = a.detach().requires_grad_(True)
    z = bn(a)
    (g,) = torch.autograd.grad(z, a, R / stab(z))
    return a.detach() * g


def lrp_maxpool(a, R, pool):
    a = a.detach().requires_grad_(True)
    z = pool(a)
    (g,) = torch.autograd.grad(z, a, R)
    return g


def lrp_gap_eps(a, R):
    a = a.detach().requires_grad_(True)
    z = torch.flatten(F.adaptive_avg_pool2d(a, 1), 1)
    (g,) = torch.autograd.grad(z, a, R / stab(z))
    return a.detach() * g


# ---------------------------------------------------------------- VGG-16

VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
           512, 512, 512, "M"]


def make_vgg16(hw):
    layers, c = [], 3
    for v in VGG_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    feats = nn.Sequential(*layers)
    side = hw // 32
    cls = nn.Sequential(nn.Linear(512 * side * side, 4096), nn.ReLU(),
                        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
    return feats, cls


def vgg_forward(net, x):
    feats, cls = net
    return cls(torch.flatten(feats(x), 1))


def vgg_lrp(net, x):
    feats, cls = net
    acts, a = [], x
    with torch.no_grad():
        for m in feats:
            acts.append(a)
            a = m(a)
        pre = a
        a = torch.flatten(a, 1)
        cacts = []
        for m in cls:
            cacts.append(a)
            a = m(a)
    R = a * F.one_hot(a.argmax(1), a.shape[1]).to(a.dtype)
    for m, ai in zip(reversed(cls), reversed(cacts)):
        if isinstance(m, nn.Linear):
            R = lrp_linear_eps(ai, R, m)
    R = R.reshape(pre.shape)
    for i in reversed(range(len(feats))):
        m, ai = feats[i], acts[i]
        if isinstance(m, nn.Conv2d):
            R = lrp_conv_flat(ai, R, m) if i == 0 else lrp_conv_zplus_form(ai, R, m)
        elif isinstance(m, nn.MaxPool2d):
            R = lrp_maxpool(ai, R, m)
    return R


# ---------------------------------------------------------------- ResNet-50

def make_bn(c):
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():  # like the fixture builder: non-trivial statistics
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return bn.eval()


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride, down):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, width, 1, bias=False), make_bn(width)
        self.c2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.b2 = make_bn(width)
        self.c3, self.b3 = nn.Conv2d(width, width * 4, 1, bias=False), make_bn(width * 4)
        self.down = nn.Conv2d(cin, width * 4, 1, stride, bias=False) if down else None
        self.bd = make_bn(width * 4) if down else None

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        h = F.relu(self.b2(self.c2(h)))
        h = self.b3(self.c3(h))
        sk = self.bd(self.down(x)) if self.down is not None else x
        return F.relu(h + sk)

    def lrp(self, x, R):
        with torch.no_grad():
            y1 = self.c1(x)
            h1 = F.relu(self.b1(y1))
            y2 = self.c2(h1)
            h2 = F.relu(self.b2(y2))
            y3 = self.c3(h2)
            h3 = self.b3(y3)
            if self.down is not None:
                yd = self.down(x)
                sk = self.bd(yd)
            else:
                sk = x
            s = R / stab(h3 + sk)
            Rm, Rs = h3 * s, sk * s
        Rm = lrp_bn_eps(y3, Rm, self.b3)
        Rm = lrp_conv_zplus_form(h2, Rm, self.c3)
        Rm = lrp_bn_eps(y2, Rm, self.b2)
        Rm = lrp_conv_zplus_form(h1, Rm, self.c2)
        Rm = lrp_bn_eps(y1, Rm, self.b1)
        Rm = lrp_conv_zplus_form(x, Rm, self.c1)
        if self.down is not None:
            Rs = lrp_bn_eps(yd, Rs, self.bd)
            Rs = lrp_conv_zplus_form(x, Rs, self.down)
        return Rm + Rs


def make_resnet50():
    stem, bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), make_bn(64)
    blocks, cin = [], 64
    for width, n, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(n):
            blocks.append(Bottleneck(cin, width, stride if i == 0 else 1, i == 0))
            cin = width * 4
    fc = nn.Linear(2048, 1000)
    return stem, bn1, nn.ModuleList(blocks), fc


def resnet_forward(net, x):
    stem, bn1, blocks, fc = net
    h = F.max_pool2d(F.relu(bn1(stem(x))), 3, 2, 1)
    for b in blocks:
        h = b(h)
    return fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def resnet_lrp(net, x):
    stem, bn1, blocks, fc = net
    with torch.no_grad():
        y0 = stem(x)
        s = F.relu(bn1(y0))
        h = F.max_pool2d(s, 3, 2, 1)
        ins = []
        for b in blocks:
            ins.append(h)
            h = b(h)
        g = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        out = fc(g)
    R = out * F.one_hot(out.argmax(1), out.shape[1]).to(out.dtype)
    R = lrp_linear_eps(g, R, fc)
    R = lrp_gap_eps(h, R)
    for b, bi in zip(reversed(blocks), reversed(ins)):
        R = b.lrp(bi, R)
    R = lrp_maxpool(s, R, nn.MaxPool2d(3, 2, 1))
    R = lrp_bn_eps(y0, R, bn1)
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
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--case", default=None, help="run only this case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--form", choices=sorted(ZPLUS), default="lean",
                    help="z+ as the lean form (a >= 0 known) or as Zennit runs it")
    args = ap.parse_args()
    global FORM
    FORM = args.form
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {load}")
    vgg, vgg112 = make_vgg16(224), make_vgg16(112)
    res = make_resnet50()
    # parameters never need gradients: autograd tracks the activations only
    for net in (vgg, vgg112, res):
        for m in net:
            for prm in m.parameters():
                prm.requires_grad_(False)
    cases = [("vgg16_224_b1", vgg, vgg_forward, vgg_lrp, 1, 224)]
    if not args.quick:
        cases += [("vgg16_112_b1", vgg112, vgg_forward, vgg_lrp, 1, 112),
                  ("vgg16_224_b8", vgg, vgg_forward, vgg_lrp, 8, 224)]
    cases += [("resnet50_224_b1", res, resnet_forward, resnet_lrp, 1, 224)]
    for name, net, fwd, lrp, b, hw in cases:
        if args.case and name != args.case:
            continue
        x = torch.rand(b, 3, hw, hw) * 2 - 1  # U(-1, 1) like the builder
        reps = args.reps
        with torch.no_grad():
            tf = bench(lambda: fwd(net, x), reps)
        tl = bench(lambda: lrp(net, x), reps)
        R = lrp(net, x)
        print(f"#   {name}: input relevance finite {bool(torch.isfinite(R).all())}, "
              f"sum {float(R.sum()):.6g}")
        tag = "torch" if FORM == "lean" else "torch_" + FORM
        print(f"RESULT {tag} {name} forward_s {tf:.4f} lrp_s {tl:.4f}", flush=True)


if __name__ == "__main__":
    main()
