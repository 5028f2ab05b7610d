#!/usr/bin/python3
"""False-alarm sweep (issue 12): clean float32 traces over fixtures x composites x conventions.

For every fixture of the suite, every composite and every stabilizer
convention, the fast path's own trace (`lrp-oracle fast FIX ARGS --out T`)
is judged with `lrp-oracle compare T --source fastpath`.  A clean float32
trace must never FAIL: exit 0 (PASS / ILL-CONDITIONED) is right; an exit 1 is
listed with its verdict: NONFINITE is a true finding about float32 only when
the report's first non-finite value has a cause that the reference confirms
(the reference is finite on that layer: the float32 forward overflows, as
`overflow` is built to do; or the reference marks the cell undefined too: a
convention lets float32 divide 0 by 0, as sign0_zero does); any other exit 1
is a false alarm candidate and its report is kept.  Exit 2 (refused) is listed as such.

Alpha-beta on Add and BatchNorm, which only a fixture's rules can assign, is
swept too: every fixture with such layers is copied with alpha 2, beta 1 on
them, and judged under its own rules with every convention (--quick: the
default convention only).

    /usr/bin/python3 bench/false_alarms.py [--cli build/lrp-oracle] [--quick] [--no-act] [--only a,b]

--no-act: the traces are judged without their forward activations (as a
peer that writes relevance only): the local bounds then carry the forward
error of the layers below, and an ill-conditioned tensor whose cells are
grossly off the reference is SUSPECT; this sweep is where that rule must not
fire on a clean trace.

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
              "EpsilonGammaBox", "SequentialPresetA", "SequentialPresetB",
              # the transformer composites (docs/TRANSFORMERS.md); on a
              # network without attention kinds they are LRP-0 everywhere
              "AttnLRP", "CPLRP"]
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


def _finite(x):
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def nonfinite_is_true(json_path, row):
    """A NONFINITE verdict on a clean trace is a true finding only when the
    report says why, and the reason holds in the reference: either the
    reference marks the cell undefined as well (a convention's 0/0: no
    effective stabilizer on a zero denominator), or the reference is finite
    on the layer where float32 first went non-finite (overflow, division by
    a tiny denominator).  Anything else is listed as a false-alarm
    candidate.  The reason is kept in the row."""
    try:
        with open(json_path) as f:
            r = json.load(f)["runs"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return False
    fn = r.get("first_nonfinite") or {}
    cause = fn.get("cause", "")
    row["cause"] = cause[:200]
    if "the reference marks it undefined" in cause:
        row["why_true"] = "undefined in the reference too (0/0 under the convention)"
        return True
    for L in r.get("layers", []):
        if L.get("name") == fn.get("layer"):
            mm = L.get("minmax") or {}
            if _finite(mm.get("ref_min")) and _finite(mm.get("ref_max")):
                row["why_true"] = "reference finite at '%s' (%s)" % (fn["layer"], cause[:80])
                return True
    return False


def ab_on_add_bn(src, dst):
    """A copy of fixture src with alpha 2, beta 1 assigned by the file to
    every Add and BatchNorm layer (the command line only assigns lrp0 /
    epsilon there; docs/SPEC.md 3.3, 3.5), other rules as the file has them.
    Returns False when the fixture has no such layer."""
    import h5py
    import numpy as np
    shutil.copyfile(src, dst)
    n = 0
    with h5py.File(dst, "r+") as f:
        for name, g in f["network"].items():
            kind = g.attrs["kind"]
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind not in ("Add", "BatchNorm"):
                continue
            r = f["rules"].require_group(name)
            r.attrs["rule"] = np.bytes_("alphabeta")
            r.attrs["alpha"] = np.float32(2.0)
            r.attrs["beta"] = np.float32(1.0)
            r.attrs["eps"] = np.float32(1e-6)
            n += 1
        if "traces" in f:
            del f["traces"]
    if not n:
        os.remove(dst)
    return n > 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "lrp-oracle"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "false_alarms"))
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "false_alarms.json"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--no-act", action="store_true",
                    help="judge the traces without their activations")
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
        cfgs = configs(o.quick)
        # alpha-beta on Add / BatchNorm, which only a file assigns: under
        # the file's own rules, and with each convention (full product)
        abfile = os.path.join(fxdir, fx + "__ab_add_bn.h5")
        if ab_on_add_bn(os.path.join(fxdir, fx + ".h5"), abfile):
            cfgs = cfgs + [["@ab_add_bn"]] + ([] if o.quick else [
                ["@ab_add_bn", "--convention", v] for v in CONVENTIONS if v != "sign0_pos"])
        for c in cfgs:
            src = os.path.join(fxdir, fx + ".h5")
            if c[0] == "@ab_add_bn":
                src, c = abfile, c[1:]
            args = c + extra_for(c)
            T = os.path.join(o.work, "T.h5")
            if os.path.exists(T):
                os.remove(T)
            f = run([cli, "fast"] + args + [src, "--out", T])
            if f.returncode == 2 and "--box" in args and "--box:" in f.stderr:
                # no layer with scalar z^B bounds (a Dense-first net, or
                # per-pixel bounds in the file): the composite without --box
                args = c
                f = run([cli, "fast"] + args + [src, "--out", T])
            row = {"fixture": fx, "args": ("alpha2beta1 on Add/BatchNorm by the file " if
                                           src == abfile else "") + " ".join(args)}
            if f.returncode != 0:
                row.update(status="refused", rc=f.returncode, why=f.stderr.strip()[-300:])
                rows.append(row)
                continue
            if o.no_act:
                import h5py
                with h5py.File(T, "r+") as h:
                    del h["traces/fastpath/activation"]
            J = os.path.join(o.work, "T.json")
            if os.path.exists(J):
                os.remove(J)
            j = run([cli, "compare", T, "--source", "fastpath", "--json", J])
            m = VERDICT_RE.search(j.stdout)
            v = m.group(1) if m else "?"
            row.update(rc=j.returncode, verdict=v)
            if j.returncode == 0:
                row["status"] = "ok"
            elif j.returncode == 1 and v == "NONFINITE" and nonfinite_is_true(J, row):
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
    print("%d clean traces judged (%s%s): %d ok, %d nonfinite, %d refused, %d false alarms; %.0f s" % (
        n, "quick" if o.quick else "full product", ", without activations" if o.no_act else "",
        sum(r["status"] == "ok" for r in rows),
        sum(r["status"] == "nonfinite" for r in rows), sum(r["status"] == "refused" for r in rows),
        len(fa), time.time() - t0))
    for r in rows:
        if r["status"] in ("nonfinite", "refused"):
            print("  %-9s %-14s %s %s %s" % (r["status"], r["fixture"], r["args"],
                                             r.get("verdict", "") or r.get("why", "")[:160],
                                             r.get("why_true", "")))
    for r in fa:
        print("  FALSE ALARM? %s %s: exit %d, %s" % (r["fixture"], r["args"], r["rc"], r["verdict"]))
    os.makedirs(os.path.dirname(os.path.abspath(o.json)), exist_ok=True)
    with open(o.json, "w") as f:
        json.dump({"rows": rows, "seconds": time.time() - t0, "quick": o.quick,
                   "no_act": o.no_act}, f, indent=1)
    return 1 if fa else 0


if __name__ == "__main__":
    sys.exit(main())
