#!/usr/bin/python3
"""Compare the traces of two sets of golden fixtures cell by cell.

usage: golden_zero_diff.py OLD_DIR NEW_DIR [--list]

Every dataset under traces/ (all sources: fastpath, reference, ...) is
compared bit for bit.  A changed cell is "a zero whose sign changed" when
both values are zeros (+0 <-> -0); anything else is reported as a bug and
makes the exit status 1.  --list prints every changed cell as
fixture, dataset, cell, old, new.
"""
import glob
import os
import sys

import h5py
import numpy as np


def datasets(f):
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and name.startswith("traces/"):
            out[name] = obj[()]
    f.visititems(visit)
    return out


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    old_dir, new_dir = sys.argv[1], sys.argv[2]
    listing = "--list" in sys.argv[3:]
    bad = 0
    total = 0
    for newp in sorted(glob.glob(os.path.join(new_dir, "*.h5"))):
        fx = os.path.basename(newp)[:-3]
        oldp = os.path.join(old_dir, os.path.basename(newp))
        if not os.path.exists(oldp):
            print(f"{fx}: new fixture (no old copy)")
            continue
        with h5py.File(oldp, "r") as fo, h5py.File(newp, "r") as fn:
            do, dn = datasets(fo), datasets(fn)
        if set(do) != set(dn):
            print(f"{fx}: datasets differ: {sorted(set(do) ^ set(dn))}")
            bad += 1
        nz = 0
        for name in sorted(set(do) & set(dn)):
            a, b = np.asarray(do[name]), np.asarray(dn[name])
            if a.dtype != b.dtype or a.shape != b.shape:
                print(f"{fx} {name}: dtype/shape changed")
                bad += 1
                continue
            if a.dtype.kind != "f":
                if not np.array_equal(a, b):
                    print(f"{fx} {name}: non-float data changed")
                    bad += 1
                continue
            ua = a.view(np.uint32 if a.dtype.itemsize == 4 else np.uint64)
            ub = b.view(ua.dtype)
            for idx in zip(*np.nonzero(ua != ub)):
                x, y = a[idx], b[idx]
                zero_swap = x == 0 and y == 0
                cell = ",".join(str(int(i)) for i in idx)
                if not zero_swap:
                    print(f"BUG {fx} {name} [{cell}]: {x!r} -> {y!r}")
                    bad += 1
                else:
                    nz += 1
                    if listing:
                        print(f"{fx}\t{name}\t[{cell}]\t{np.signbit(x) and '-0' or '+0'}"
                              f"\t{np.signbit(y) and '-0' or '+0'}")
        total += nz
        print(f"# {fx}: {nz} cells changed, all +0 <-> -0")
    print(f"# total {total} zero-sign changes, {bad} other differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
