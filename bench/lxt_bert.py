#!/usr/bin/python3
"""lxt_bert.py -- the real LXT's AttnLRP on a BERT-sized encoder, judged cell by cell:
the table of docs/PEERS.md "LXT at BERT width".

    LXT_COMMIT=f043441 PYTHONPATH=LXT /usr/bin/python3 bench/lxt_bert.py
        [--cli build/lrp-oracle] [--work /work/scratch-scale/lxt_bert]
        [--layers 2] [--tokens 128] [--factor 1.05] [--cases clean,input,q,A,O]
        [--json OUT.json]

LXT is a checkout of github.com/rachtibat/LRP-eXplains-Transformers (the directory
holding lxt/), as for tools/python/peers/run_lxt.py; not run by CI.

The model is bench/bert_stages.py's (bench/bench_bert.py's BERT: width 768, 12 heads,
FFN 3072, random weights, seed 0, --layers blocks), exported with
attention="stages" so that the oracle judges each stage of each attention.
run_lxt.py's lxt-attnlrp run (LXT's own rule functions and attention wrapper: identity
rule on GELU and tanh, LayerNorm's sigma detached, q, k, v's gradient divided by 4, 4,
2) writes the trace; `lrp-oracle compare` judges it clean, then damaged as in
bench/bert_stages.py: the relevance of the last block's attention input and of every
layer below it times --factor ("input"), and the last block's queries, attention
weights, context alone ("q", "A", "O").  The clean trace is judged with both
denominator modes.  Printed per run: exit code, verdict, share of cells resolved by
their bounds, the tensors whose local verdict is SUSPECT or FAIL.  Big files go to
--work.  About 8 minutes at 2 blocks.
"""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "python", "peers"))

import bert_stages as bs  # noqa: E402
import run_lxt  # noqa: E402


def main():
    def cases_opt(ap):
        ap.add_argument("--cases", default="clean,input,q,A,O",
                        help="which of clean,input,q,A,O to judge (comma-separated)")
    a, env, cli, ap = bs.parse_args(__doc__, "/work/scratch-scale/lxt_bert", cases_opt)
    rules, patches, lf, rev = run_lxt.load_lxt()
    fix = os.path.join(a.work, "bert_L%d_T%d_stages.h5" % (a.layers, a.tokens))
    if not os.path.exists(fix):
        bs.export(a.layers, a.tokens, fix, "stages", cli)
    trace = os.path.join(a.work, "lxt_attnlrp.h5")
    shutil.copyfile(fix, trace)
    src = run_lxt.write_lxt_trace(trace, "lxt-attnlrp", rules, patches, lf, rev)
    last = "blocks.%d" % (a.layers - 1)
    attn_in = "blocks.%d.ln2" % (a.layers - 2) if a.layers > 1 else "add"
    print("LXT %s: %d blocks, %d tokens, trace %s" % (rev, a.layers, a.tokens, src))
    rows = []
    cases = [("clean", None, False), ("input", attn_in, True), ("q", last + ".attn_q", False),
             ("A", last + ".attn_probs", False), ("O", last + ".attn_context", False)]
    want = a.cases.split(",")
    bad = sorted(set(want) - set(c[0] for c in cases))
    if bad:
        ap.error("unknown case(s): %s" % ", ".join(bad))
    for case, target, below in [c for c in cases if c[0] in want]:
        t = trace
        if target:
            t = os.path.join(a.work, "damaged.h5")
            bs.scaled(trace, t, target, a.factor, below)
        for recomputed in ((False, True) if case == "clean" else (False,)):
            r = bs.judge(cli, t, recomputed, env, a.work, source=src)
            r.update({"case": case, "denominators": "recomputed" if recomputed else "stored"})
            rows.append(r)
            print("%-6s %-10s rc %s  %-16s resolved %7.3f %%  %s" % (
                case, r["denominators"], r["rc"], r.get("verdict", "-"),
                100 * r.get("resolved", 0),
                ", ".join("%s %s %.3g" % (n, v, m or 0) for n, v, m in r.get("flagged", [])[:4])
                or r.get("error", "")), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"lxt": rev, "layers": a.layers, "tokens": a.tokens, "factor": a.factor,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
