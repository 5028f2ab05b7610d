#!/usr/bin/python3
"""bench_bert.py -- the BERT-base speed figure of issue 17: the lrp-oracle fast
path and the MPFR reference on a BERT-base-sized encoder, against a PyTorch
autograd AttnLRP of the same model, all in one run.

    /usr/bin/python3 bench/bench_bert.py [--cli build/lrp-oracle]
        [--work /work/scratch-scale/bert] [--layers 12] [--tokens 128]
        [--threads 2] [--runs 3] [--skip-reference] [--json OUT.json]

Model: tools/python/lrp_attn.TinyTransformer at BERT-base size, exactly as
bench/torch_attnlrp.py builds it (post-LN blocks, width 768, 12 heads, FFN
3072, GELU, LayerNorm eps 1e-12, learned positions, pooler Linear + tanh on
token 0, a Dense head of 2 classes, vocabulary 30522; deterministic random
weights, seed 0; batch 1, token ids from seed 1).  TinyTransformer's forward
takes rule / tape arguments and builds positions from torch.arange, which
torch.fx cannot trace, so `Bert` below is the same network written as users
write it (nn.Embedding, a positional nn.Parameter, lrp_torch.SelfAttention,
nn.LayerNorm, nn.GELU, x[:, 0], nn.Tanh) with TinyTransformer's weights copied
in; lrp_torch.export_module exports it (and checks the re-imported fixture's
output against the model's).

Timed, each as the whole process a user waits for (wall, user + system CPU of
the child, peak RSS of the child, from GNU time):
  fast       lrp-oracle fast FIX --out T --trace-only --composite AttnLRP
  reference  lrp-oracle reference FIX --out R --trace-only --composite AttnLRP
             (MPFR, 128 bits; once, under nice)
  torch      a fresh /usr/bin/python3 process: import torch, build the model,
             one lrp_attn.explain(rule="attnlrp") (the PyTorch autograd
             AttnLRP of bench/torch_attnlrp.py), i.e. what a user of the
             PyTorch route waits for (the model is built from random weights
             where a user would load them); with --runs N, N more explain
             calls in that process and their median (the steady-state figure
             bench/torch_attnlrp.py prints; they add to the process time)
all with --threads threads (torch.set_num_threads, lrp-oracle --threads).
Ratios are against the PyTorch process of the same run.

The rules are comparable, not identical: the CLI runs AttnLRP as
docs/SPEC.md 3.8 states it (eps 1e-6 sign0_pos on the attention's
denominators, LRP-0 on Dense and Add, ln_linear on LayerNorm, identity on
GELU / tanh), the PyTorch baseline LXT's efficient gradient form (no
stabilizer, LayerNorm with sigma detached, i.e. ln_linear unstabilized).
The work done is the same: one forward and one relevance backward.

Big files go to --work (default /work/scratch-scale/bert), never the repo.
Large CLI runs need LRP_SANDBOX_MEM_MB (set to 16384 here unless set).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(HERE, "..", "tools", "python")
sys.path.insert(0, PY)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import lrp_attn as la  # noqa: E402
import lrp_torch as lt  # noqa: E402

VOCAB, D, HEADS, FFN, CLASSES, LN_EPS = 30522, 768, 12, 3072, 2, 1e-12


def base_model(layers):
    """The model of bench/torch_attnlrp.py (same call, same seed)."""
    return la.make_model(seed=0, dtype=torch.float32, kind="text", vocab=VOCAB, max_len=512, d=D,
                         heads=HEADS, layers=layers, ffn=FFN, classes=CLASSES, prenorm=False,
                         pooler=True, ln_eps=LN_EPS)


def token_ids(tokens):
    return torch.randint(0, VOCAB, (1, tokens), generator=torch.Generator().manual_seed(1))


class Block(nn.Module):
    """A post-LN encoder block: h = LN1(h + attn(h)); h = LN2(h + fc2(gelu(fc1(h))))."""

    def __init__(self, blk):
        super().__init__()
        a = blk.attn
        self.attn = lt.SelfAttention(a.d, a.h)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            getattr(self.attn, n).load_state_dict(getattr(a, n).state_dict())
        self.ln1, self.ln2, self.fc1, self.fc2, self.act = blk.ln1, blk.ln2, blk.fc1, blk.fc2, blk.act

    def forward(self, h):
        h = self.ln1(h + self.attn(h))
        return self.ln2(h + self.fc2(self.act(self.fc1(h))))


class Bert(nn.Module):
    """lrp_attn.TinyTransformer(kind="text", prenorm=False, pooler=True)
    written for torch.fx: the same forward on T tokens."""

    def __init__(self, tiny, tokens):
        super().__init__()
        self.embed = tiny.embed
        self.pos = nn.Parameter(tiny.pos.weight[:tokens].detach().clone())
        self.blocks = nn.Sequential(*[Block(b) for b in tiny.blocks])
        self.pooler, self.pool_act, self.head = tiny.pooler, tiny.pool_act, tiny.head

    def forward(self, ids):
        h = self.blocks(self.embed(ids) + self.pos)
        return self.head(self.pool_act(self.pooler(h[:, 0])))


def run_timed(cmd, env=None, nice=0):
    """(wall s, CPU s (user + sys), peak RSS MB, rc, output) of one child,
    measured by GNU time (/usr/bin/time): Linux keeps a process's peak RSS
    across exec, so a child forked straight from this (big) Python would
    report at least our own peak."""
    import tempfile
    fd, tf = tempfile.mkstemp(prefix="bench_bert.time.")
    os.close(fd)
    pre = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", tf]
    if nice:
        pre += ["nice", "-n", str(nice)]
    try:
        p = subprocess.run(pre + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           universal_newlines=True)
        with open(tf) as f:
            last = f.read().strip().splitlines()[-1].split()
    finally:
        os.unlink(tf)
    wall, user, sys_, rss = float(last[0]), float(last[1]), float(last[2]), float(last[3])
    return {"wall_s": wall, "cpu_s": user + sys_, "peak_rss_mb": rss / 1024.0,
            "rc": p.returncode, "stdout": p.stdout[-2000:], "stderr": p.stderr[-2000:]}


TORCH_CHILD = r"""
import sys, time, json, statistics
sys.path.insert(0, %(py)r)
import torch
torch.set_num_threads(%(threads)d)
import lrp_attn as la
sys.path.insert(0, %(here)r)
import bench_bert as bb
m = bb.base_model(%(layers)d)
ids = bb.token_ids(%(tokens)d)
for p in m.parameters():
    p.requires_grad_(False)
t0 = time.perf_counter()
r = la.explain(m, ids, target=0, rule="attnlrp", record=False)
first = time.perf_counter() - t0
ts = []
for _ in range(%(runs)d):
    t0 = time.perf_counter()
    la.explain(m, ids, target=0, rule="attnlrp", record=False)
    ts.append(time.perf_counter() - t0)
print(json.dumps({"first_explain_s": first, "median_explain_s": statistics.median(ts) if ts else None,
                  "token_relevance_sum": float(r["tokens"].sum()), "logit": float(r["logits"][0, 0])}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", default=os.path.join(HERE, "..", "build", "lrp-oracle"))
    ap.add_argument("--work", default="/work/scratch-scale/bert")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=0,
                    help="extra explain calls in the torch child after the first (steady state; "
                    "they add to its process time: keep 0 for the process figure)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep an existing exported fixture in --work (same --layers, --tokens)")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("LRP_SANDBOX_MEM_MB", "16384")
    torch.set_num_threads(args.threads)
    res = {"layers": args.layers, "tokens": args.tokens, "threads": args.threads,
           "torch": torch.__version__, "load_before": os.getloadavg()}

    fix = os.path.join(args.work, "bert_L%d_T%d.h5" % (args.layers, args.tokens))
    t0 = time.perf_counter()
    tiny = base_model(args.layers)
    model = Bert(tiny, args.tokens).eval()
    ids = token_ids(args.tokens)
    with torch.no_grad():
        y_tiny, y = tiny(ids), model(ids)
    res["mirror_max_abs_diff"] = float((y_tiny - y).abs().max())
    if not (args.reuse and os.path.exists(fix)):
        if os.path.exists(fix):
            os.unlink(fix)
        lt.export_module(model, ids, fix, target=[0], cli=args.cli, composite="AttnLRP",
                         description="BERT-base-sized encoder (bench/bench_bert.py), random weights")
        what = "exported"
    else:
        what = "reused"
    res["export_s"] = time.perf_counter() - t0
    res["fixture_mb"] = os.path.getsize(fix) / 2 ** 20
    print("%s %s (%.0f MB; model built%s in %.1f s); mirror vs TinyTransformer max |diff| %.3g"
          % (what, fix, res["fixture_mb"], " and exported" if what == "exported" else "",
             res["export_s"], res["mirror_max_abs_diff"]), flush=True)

    rows = []
    tout = os.path.join(args.work, "fast_L%d.h5" % args.layers)
    rout = os.path.join(args.work, "ref_L%d.h5" % args.layers)
    for p in (tout, rout):
        if os.path.exists(p):
            os.unlink(p)
    child = TORCH_CHILD % {"py": os.path.abspath(PY), "here": HERE, "threads": args.threads,
                           "layers": args.layers, "tokens": args.tokens, "runs": args.runs}
    res["torch"] = run_timed(["/usr/bin/python3", "-c", child], env)
    rows.append(("torch", res["torch"]))
    res["fast"] = run_timed([args.cli, "fast", fix, "--out", tout, "--trace-only", "--composite",
                             "AttnLRP", "--threads", str(args.threads)], env)
    rows.append(("fast", res["fast"]))
    if not args.skip_reference:
        res["reference"] = run_timed([args.cli, "reference", fix, "--out", rout, "--trace-only",
                                      "--composite", "AttnLRP", "--threads", str(args.threads)],
                                     env, nice=10)
        rows.append(("reference", res["reference"]))
    res["load_after"] = os.getloadavg()
    try:
        res["torch_inner"] = json.loads(res["torch"]["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        res["torch_inner"] = None
    base = res["torch"]
    print("BERT-base-sized encoder: %d layers x %d, %d heads, FFN %d, T=%d, batch 1, %d threads, "
          "torch %s" % (args.layers, D, HEADS, FFN, args.tokens, args.threads, torch.__version__))
    print("load average before %.2f %.2f %.2f, after %.2f %.2f %.2f"
          % (tuple(res["load_before"]) + tuple(res["load_after"])))
    print("%-10s %9s %9s %10s %8s %8s %4s" % ("process", "wall s", "CPU s", "peak MB", "wall x",
                                              "CPU x", "rc"))
    for name, r in rows:
        print("%-10s %9.2f %9.2f %10.0f %8.2f %8.2f %4d"
              % (name, r["wall_s"], r["cpu_s"], r["peak_rss_mb"], r["wall_s"] / base["wall_s"],
                 r["cpu_s"] / base["cpu_s"], r["rc"]))
        if r["rc"] != 0:
            print("  %s failed: %s" % (name, r["stderr"].strip()[-500:]))
    if res["torch_inner"]:
        ti = res["torch_inner"]
        print("torch process inside: first explain %.2f s wall%s"
              % (ti["first_explain_s"], ", median of %d more %.2f s" % (args.runs,
                                                                         ti["median_explain_s"])
                 if ti["median_explain_s"] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0 if all(r["rc"] == 0 for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
