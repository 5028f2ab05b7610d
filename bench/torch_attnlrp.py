"""torch_attnlrp.py -- time PyTorch autograd AttnLRP (and CP-LRP) on a
BERT-base-sized encoder, the baseline that issue 17 asks the reference and
the fast path to be reported against.

    /usr/bin/python3 bench/torch_attnlrp.py [--threads 2] [--runs 3] [--tokens 128] [--layers 12]

Model: tools/python/lrp_attn.TinyTransformer with BERT-base sizes (12
post-LN layers, width 768, 12 heads, FFN 3072, GELU, pooler Linear + tanh,
vocabulary 30522, 2 classes), deterministic random weights (seed 0),
float32, batch 1, random deterministic token ids.  Timed, each the median of
--runs runs after one warm-up run, the rows interleaved round robin:

  forward              plain forward under torch.no_grad()
  forward+gradient     forward with the graph, then the plain backward of the
                       target logit (gradient x input without any rule)
  forward+AttnLRP      lrp_attn.explain(rule="attnlrp", record=False): the
                       modified forward and backward, relevance per token
  forward+CP-LRP       the same with rule="cplrp"

Prints the figures, the load average before and after, and the thread count.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "python"))

import torch  # noqa: E402

import lrp_attn as la  # noqa: E402


def timed(rows, runs):
    """Round robin: one warm-up of each, then `runs` rounds timing every row
    once per round, so that a change of the machine's load during the run
    falls on all rows alike (the first version timed the rows one after the
    other and the load drift made the relative figures meaningless)."""
    for _, fn in rows:
        fn()
    ts = {name: [] for name, _ in rows}
    for _ in range(runs):
        for name, fn in rows:
            t0 = time.perf_counter()
            fn()
            ts[name].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), min(v), max(v)) for k, v in ts.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--layers", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()

    t0 = time.perf_counter()
    model = la.make_model(seed=0, dtype=torch.float32, kind="text", vocab=30522, max_len=512, d=768,
                          heads=12, layers=args.layers, ffn=3072, classes=2, prenorm=False,
                          pooler=True, ln_eps=1e-12)
    build = time.perf_counter() - t0
    ids = torch.randint(0, 30522, (1, args.tokens), generator=torch.Generator().manual_seed(1))
    nparam = sum(p.numel() for p in model.parameters())

    def fwd():
        with torch.no_grad():
            model(ids)

    for p in model.parameters():          # relevance only, as LXT's examples do
        p.requires_grad_(False)

    def fwd_grad():
        tape = la.Tape({"embed"})
        out = model(ids, tape=tape)
        out[0, 0].backward()
        return tape["embed"].grad

    def attnlrp():
        return la.explain(model, ids, target=0, rule="attnlrp", record=False)

    def cplrp():
        return la.explain(model, ids, target=0, rule="cplrp", record=False)

    rows = [("forward", fwd), ("forward+gradient", fwd_grad), ("forward+AttnLRP", attnlrp),
            ("forward+CP-LRP", cplrp)]
    print("torch %s, %d threads, float32, batch 1, %d tokens, %d layers x 768 (12 heads, FFN 3072), "
          "%.1fM parameters (built in %.1f s)" % (torch.__version__, torch.get_num_threads(), args.tokens,
                                                  args.layers, nparam / 1e6, build))
    print("load average before: %.2f %.2f %.2f" % load0)
    print("%-18s %10s %10s %10s   (seconds, %d runs)" % ("", "median", "min", "max", args.runs))
    res = {}
    for name, (med, lo, hi) in timed(rows, args.runs).items():
        res[name] = med
        print("%-18s %10.3f %10.3f %10.3f" % (name, med, lo, hi), flush=True)
    r = attnlrp()
    tok = r["tokens"][0]
    print("AttnLRP / forward: %.2fx; relevance per token finite: %s; sum %.6g of logit %.6g"
          % (res["forward+AttnLRP"] / res["forward"], bool(torch.isfinite(torch.from_numpy(tok)).all()),
             float(tok.sum()), float(r["logits"][0, 0])))
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
