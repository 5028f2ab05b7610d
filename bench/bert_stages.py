#!/usr/bin/python3
"""bert_stages.py -- how much of a BERT-sized encoder the oracle's bounds decide, and
which damage they catch: the table of docs/TRANSFORMERS.md 12.7.

    /usr/bin/python3 bench/bert_stages.py [--cli build/lrp-oracle]
        [--work /work/scratch-scale/bert_stages] [--layers 2] [--tokens 128]
        [--factor 1.05] [--json OUT.json]

The model is bench/bench_bert.py's (BERT-base width 768, 12 heads, FFN 3072, random
weights, seed 0), with --layers blocks.  It is exported twice with
lrp_torch.export_module: each attention as one MultiHeadAttention, and as its stages
(attention="stages": Dense q, k, v, AttnScores, AttnSoftmax, AttnContext, Dense out).
`lrp-oracle fast --composite AttnLRP` writes each one's trace.  Then, for each export and
each of the two denominator modes (the default, the subject divides by its stored outputs;
--recomputed-denominators), `lrp-oracle compare` judges:

  clean    the fast path's trace;
  input    the relevance of the last block's attention input and of every layer before
           it multiplied by --factor (so that only that tensor disagrees with the
           layers that compute it from above);
and for the staged export only, one stage's relevance alone multiplied by --factor:
  q, A, O  the last block's queries, attention weights, context.

Printed per run: the exit code, the verdict, the share of cells the bounds resolve
(report's trace_local.resolved / defined), and the tensors whose local verdict is SUSPECT
or FAIL with their largest ratio.  Big files go to --work, never the repository.
Large runs need LRP_SANDBOX_MEM_MB (16384 unless set).  About 15 minutes at 2 blocks.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools", "python"))

import numpy as np  # noqa: E402
import h5py  # noqa: E402


def export(layers, tokens, path, attention, cli):
    import bench_bert as bb
    import lrp_torch as lt
    tiny = bb.base_model(layers)
    model = bb.Bert(tiny, tokens).eval()
    lt.export_module(model, bb.token_ids(tokens), path, target=[0], cli=cli,
                     composite="AttnLRP", attention=attention,
                     description="bench/bert_stages.py, attention=%s" % attention)


def scaled(src, dst, target, factor, below):
    """dst: src with the relevance of layer `target` (and with `below` of every layer
    of lower index) times factor, relevance_lo alike."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        for tname in f["traces"]:
            t = f["traces"][tname]
            names = sorted(t["relevance"].keys())
            idx = [i for i, n in enumerate(names) if n.split("_", 1)[1] == target]
            if not idx:
                raise SystemExit("bert_stages: no layer %r in the trace" % target)
            sel = names[: idx[0] + 1] if below else [names[idx[0]]]
            for grp in ("relevance", "relevance_lo"):
                if grp in t:
                    for n in sel:
                        if n in t[grp]:
                            a = t[grp][n][()]
                            t[grp][n][...] = (a * np.float32(factor)).astype(np.float32)


def judge(cli, trace, recomputed, env, work, source="fastpath"):
    out = os.path.join(work, "judge.json")
    if os.path.exists(out):
        os.unlink(out)
    cmd = [cli, "compare", trace, "--source", source, "--json", out]
    if recomputed:
        cmd.append("--recomputed-denominators")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    res = {"rc": p.returncode}
    try:
        with open(out) as f:
            r = json.load(f)["runs"][0]
    except (OSError, ValueError, KeyError, IndexError):
        res["error"] = (p.stderr or p.stdout)[-500:]
        return res
    tl = r.get("trace_local") or {}
    res["verdict"] = r.get("verdict")
    res["resolved"] = tl.get("resolved", 0) / max(tl.get("defined", 1), 1)
    res["flagged"] = [(L["name"], (L.get("trace_local") or {}).get("verdict"),
                       (L.get("trace_local") or {}).get("gauge_ratio", {}).get("max"))
                      for L in r["layers"]
                      if (L.get("trace_local") or {}).get("verdict") in ("SUSPECT", "FAIL")]
    return res


def parse_args(doc, work, extra=None):
    """The options of this bench and of bench/lxt_bert.py; returns (args, the
    environment for the CLI, the CLI's absolute path), --work created."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--cli", default=os.path.join(HERE, "..", "build", "lrp-oracle"))
    ap.add_argument("--work", default=work)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--factor", type=float, default=1.05)
    ap.add_argument("--json")
    if extra:
        extra(ap)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("LRP_SANDBOX_MEM_MB", "16384")
    return a, env, os.path.abspath(a.cli), ap


def main():
    a, env, cli, _ = parse_args(__doc__, "/work/scratch-scale/bert_stages")
    last = "blocks.%d" % (a.layers - 1)
    # the tensor the last block's attention reads: the previous block's last
    # LayerNorm, or the embedding's Position output for a single block
    attn_in = "blocks.%d.ln2" % (a.layers - 2) if a.layers > 1 else "add"
    rows = []
    for attention in ("layer", "stages"):
        fix = os.path.join(a.work, "bert_L%d_T%d_%s.h5" % (a.layers, a.tokens, attention))
        trace = os.path.join(a.work, "fast_%s.h5" % attention)
        if not os.path.exists(fix):
            export(a.layers, a.tokens, fix, attention, cli)
        if os.path.exists(trace):
            os.unlink(trace)
        subprocess.run([cli, "fast", fix, "--out", trace, "--composite", "AttnLRP"], check=True,
                       env=env, capture_output=True)
        cases = [("clean", None, False), ("input", attn_in, True)]
        if attention == "stages":
            cases += [("q", last + ".attn_q", False), ("A", last + ".attn_probs", False),
                      ("O", last + ".attn_context", False)]
        for case, target, below in cases:
            t = trace
            if target:
                t = os.path.join(a.work, "damaged.h5")
                scaled(trace, t, target, a.factor, below)
            for recomputed in (False, True):
                r = judge(cli, t, recomputed, env, a.work)
                r.update({"attention": attention, "case": case,
                          "denominators": "recomputed" if recomputed else "stored"})
                rows.append(r)
                print("%-7s %-6s %-10s rc %s  %-16s resolved %6.3f %%  %s" % (
                    attention, case, r["denominators"], r["rc"], r.get("verdict", "-"),
                    100 * r.get("resolved", 0),
                    ", ".join("%s %s %.3g" % (n, v, m or 0) for n, v, m in r.get("flagged", [])[:4])
                    or r.get("error", "")), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"layers": a.layers, "tokens": a.tokens, "factor": a.factor, "rows": rows},
                      f, indent=1)


if __name__ == "__main__":
    main()
