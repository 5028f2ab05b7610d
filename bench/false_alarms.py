#!/usr/bin/python3
"""False-alarm sweep (issue 12): clean float32 traces over fixtures x composites x conventions.

For every fixture of the suite, every composite and every stabilizer
convention, the fast path's own trace (`lrp-oracle fast FIX ARGS --out T`)
is judged with `lrp-oracle compare T --source fastpath`.  A clean float32
trace must never FAIL: exit 0 (PASS / ILL-CONDITIONED) is right; an exit 1 is
listed with its verdict: NONFINITE is a true finding about float32 (the
trace holds NaN/inf where the reference is finite: the float32 forward
overflows, as `overflow` is built to do, or a convention lets float32 divide
0 by 0, as sign0_zero does on an empty alpha-beta part); any other exit 1
is a false alarm candidate and its report is kept.  Exit 2 (refused) is listed as such.

    /usr/bin/python3 bench/false_alarms.py [--cli build/lrp-oracle] [--quick] [--only a,b]

--quick: every fixture x every composite (default convention), and every
fixture x every convention under EpsilonPlus, instead of the full product.
Not a timed test: run by hand or `make false-alarms`.  JSON in
build/false_alarms.json.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSITES = ["EpsilonPlus", "EpsilonPlusFlat", "EpsilonAlpha2Beta1", "EpsilonAlpha2Beta1Flat",
              "EpsilonGammaBox", "SequentialPresetA", "SequentialPresetB"]
CONVENTIONS = ["sign0_pos", "signbit", "sign0_zero", "zero_only", "skip_zero", "positive"]
VERDICT_RE = re.compile(r"^\s*verdict: (\S+(?:-\S+)?)", re.M)


def run(cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def configs(quick):
    if quick:
        out = [["--composite", c] for c in COMPOSITES]
        out += [["--composite", "EpsilonPlus", "--convention", v] for v in CONVENTIONS if v != "sign0_pos"]
        return out
    return [["--composite", c, "--convention", v] for c in COMPOSITES for v in CONVENTIONS]


def extra_for(c):
    # EpsilonGammaBox needs the input box; [-1, 1] holds every fixture input
    return ["--box", "-1,1"] if "EpsilonGammaBox" in c else []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "lrp-oracle"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "false_alarms"))
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "false_alarms.json"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    o = ap.parse_args()
    cli = os.path.abspath(o.cli)
    t0 = time.time()
    if os.path.isdir(o.work):
        shutil.rmtree(o.work)
    fxdir = os.path.join(o.work, "fx")
    os.makedirs(fxdir)
    p = run([cli, "gen", "--out", fxdir])
    if p.returncode:
        sys.exit("gen failed: " + p.stderr)
    fixtures = [l.split()[0] for l in run([cli, "gen", "--list"]).stdout.splitlines() if l.strip()]
    if o.only:
        fixtures = [f for f in fixtures if f in o.only.split(",")]
    rows = []
    for fx in fixtures:
        for c in configs(o.quick):
            args = c + extra_for(c)
            T = os.path.join(o.work, "T.h5")
            if os.path.exists(T):
                os.remove(T)
            f = run([cli, "fast"] + args + [os.path.join(fxdir, fx + ".h5"), "--out", T])
            if f.returncode == 2 and "--box" in args and "--box:" in f.stderr:
                # no layer with scalar z^B bounds (a Dense-first net, or
                # per-pixel bounds in the file): the composite without --box
                args = c
                f = run([cli, "fast"] + args + [os.path.join(fxdir, fx + ".h5"), "--out", T])
            row = {"fixture": fx, "args": " ".join(args)}
            if f.returncode != 0:
                row.update(status="refused", rc=f.returncode, why=f.stderr.strip()[-300:])
                rows.append(row)
                continue
            j = run([cli, "compare", T, "--source", "fastpath"])
            m = VERDICT_RE.search(j.stdout)
            v = m.group(1) if m else "?"
            row.update(rc=j.returncode, verdict=v)
            if j.returncode == 0:
                row["status"] = "ok"
            elif j.returncode == 1 and v == "NONFINITE":
                # the float32 trace holds NaN/inf: a float32 limit when the
                # reference is finite (overflow), never a silent pass
                row["status"] = "nonfinite"
            elif j.returncode == 1:
                row["status"] = "FALSE ALARM?"
                row["report"] = j.stdout[-1500:]
            else:
                row["status"] = "refused"
                row["why"] = j.stderr.strip()[-300:]
            rows.append(row)
        st = [r["status"] for r in rows if r["fixture"] == fx]
        print("%-14s %3d runs: %d ok, %d nonfinite, %d refused, %d FALSE ALARM?" % (
            fx, len(st), st.count("ok"), st.count("nonfinite"), st.count("refused"),
            st.count("FALSE ALARM?")), flush=True)
    n = len(rows)
    fa = [r for r in rows if r["status"] == "FALSE ALARM?"]
    print("%d clean traces judged (%s): %d ok, %d nonfinite, %d refused, %d false alarms; %.0f s" % (
        n, "quick" if o.quick else "full product", sum(r["status"] == "ok" for r in rows),
        sum(r["status"] == "nonfinite" for r in rows), sum(r["status"] == "refused" for r in rows),
        len(fa), time.time() - t0))
    for r in rows:
        if r["status"] in ("nonfinite", "refused"):
            print("  %-9s %-14s %s %s" % (r["status"], r["fixture"], r["args"],
                                          r.get("verdict", "") or r.get("why", "")[:160]))
    for r in fa:
        print("  FALSE ALARM? %s %s: exit %d, %s" % (r["fixture"], r["args"], r["rc"], r["verdict"]))
    os.makedirs(os.path.dirname(os.path.abspath(o.json)), exist_ok=True)
    with open(o.json, "w") as f:
        json.dump({"rows": rows, "seconds": time.time() - t0, "quick": o.quick}, f, indent=1)
    return 1 if fa else 0


if __name__ == "__main__":
    sys.exit(main())
