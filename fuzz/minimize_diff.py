#!/usr/bin/python3
"""minimize_diff.py HARNESS BASE INPUT OUT REGEX [TIMEOUT]

Delta-debugging (ddmin) of a fuzzer finding against the seed it grew
from: starting from BASE (same length as INPUT), find a small set of the
bytes where INPUT differs from BASE that still makes HARNESS print a line
matching REGEX (the sanitizer's error, a frame, "timeout").  Writes the
reduced file to OUT and prints the offsets kept.  A reduced diff against a
valid file says which bytes matter, which size minimization cannot.
"""
import os
import re
import subprocess
import sys
import tempfile


def main():
    harness, base_p, inp_p, out_p, regex = sys.argv[1:6]
    tmo = int(sys.argv[6]) if len(sys.argv) > 6 else 10
    base = open(base_p, "rb").read()
    inp = open(inp_p, "rb").read()
    assert len(base) == len(inp), "BASE and INPUT must have the same length"
    diff = [i for i in range(len(base)) if base[i] != inp[i]]
    pat = re.compile(regex)
    env = dict(os.environ, HDF5_USE_FILE_LOCKING="FALSE",
               LSAN_OPTIONS="suppressions=%s/fuzz/lsan.supp" % os.getcwd())
    fd, tmp = tempfile.mkstemp(suffix=".h5")
    os.close(fd)
    trials = [0]

    def build(keep):
        b = bytearray(base)
        for i in keep:
            b[i] = inp[i]
        return bytes(b)

    def fails(keep):
        trials[0] += 1
        open(tmp, "wb").write(build(keep))
        try:
            r = subprocess.run([harness, "-timeout=%d" % tmo, tmp], capture_output=True,
                               env=env, timeout=tmo * 3 + 30)
            text = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired:
            text = "timeout"
        return bool(pat.search(text))

    if not fails(diff):
        sys.exit("the full input does not reproduce /%s/" % regex)
    n = 2
    cur = diff
    while len(cur) >= 2:
        chunk = max(1, len(cur) // n)
        parts = [cur[i:i + chunk] for i in range(0, len(cur), chunk)]
        reduced = False
        for p in parts:
            if fails(p):
                cur, n, reduced = p, 2, True
                break
        if not reduced:
            for p in parts:
                comp = [x for x in cur if x not in set(p)]
                if comp and fails(comp):
                    cur, n, reduced = comp, max(n - 1, 2), True
                    break
        if not reduced:
            if n >= len(cur):
                break
            n = min(len(cur), n * 2)
    open(out_p, "wb").write(build(cur))
    os.unlink(tmp)
    print("%s: %d of %d differing bytes kept (%d trials): offsets %s" %
          (os.path.basename(inp_p), len(cur), len(diff), trials[0],
           ", ".join("%d:%02x->%02x" % (i, base[i], inp[i]) for i in cur)))


if __name__ == "__main__":
    main()
