#!/usr/bin/python3
"""compare_reports.py -- do two oracle reports say the same thing?

    compare_reports.py [--rel TOL] A B

A and B are two reports of the same run (text: stdout of check/compare
with "exit N" appended by bench/identical_reports.sh; or the --json file).
Everything that is not a number must be equal: verdicts, exit codes, layer
names, counts' keys, the order of the lines.  Numbers must agree to a
relative TOL (default 1e-12), except:

  - the JSON field "seconds" (the run's wall time) is ignored;
  - integers in JSON (cell counts, cell indices) must be equal;
  - a number printed in the text report (3 significant digits) may differ
    by one unit of its last printed digit: a value within TOL of a rounding
    boundary prints either way.  Such differences are listed as "last
    digit", and the JSON (full precision) decides.

Prints the differences and exits 1 if any is beyond these rules, else 0.
Used for changes that may move numbers by a rounding (the order of a
binary64 sum) but must not move a verdict.
"""
import json
import re
import sys

NUM = re.compile(r'^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?$')


def close(a, b, rel):
    if a == b:
        return True
    if a != a and b != b:  # NaN
        return True
    return abs(a - b) <= rel * max(abs(a), abs(b))


def last_digit_unit(tok):
    """one unit of the last printed digit of a decimal token"""
    t = tok.rstrip('%')
    m = re.match(r'^[-+]?(\d*)\.?(\d*)([eE]([-+]?\d+))?$', t)
    if not m:
        return 0.0
    frac = m.group(2) or ''
    exp = int(m.group(4)) if m.group(4) else 0
    return 10.0 ** (exp - len(frac))


def cmp_text(a, b, rel, out):
    la, lb = a.splitlines(), b.splitlines()
    if len(la) != len(lb):
        out.append('text: %d lines against %d' % (len(la), len(lb)))
        return False
    ok = True
    for n, (x, y) in enumerate(zip(la, lb), 1):
        if x == y:
            continue
        tx, ty = x.split(), y.split()
        if len(tx) != len(ty):
            out.append('line %d differs:\n  %s\n  %s' % (n, x, y))
            ok = False
            continue
        for p, q in zip(tx, ty):
            if p == q:
                continue
            # tokens may carry punctuation around a number: "(max", "0.0188,"
            pp, qq = p.strip('(),;:'), q.strip('(),;:')
            if p.replace(pp, '') == q.replace(qq, '') and NUM.match(pp) and NUM.match(qq):
                va, vb = float(pp.rstrip('%')), float(qq.rstrip('%'))
                if close(va, vb, rel):
                    continue
                unit = max(last_digit_unit(pp), last_digit_unit(qq))
                if abs(va - vb) <= unit * 1.000001:
                    out.append('line %d: last digit %s / %s' % (n, pp, qq))
                    continue
            out.append('line %d differs (%s / %s):\n  %s\n  %s' % (n, p, q, x, y))
            ok = False
    return ok


def cmp_json(a, b, rel, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a.keys()) != list(b.keys()):
            out.append('%s: keys differ' % path)
            return False
        ok = True
        for k in a:
            if k == 'seconds':
                continue
            ok &= cmp_json(a[k], b[k], rel, path + '.' + k, out)
        return ok
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append('%s: %d items against %d' % (path, len(a), len(b)))
            return False
        ok = True
        for i, (x, y) in enumerate(zip(a, b)):
            ok &= cmp_json(x, y, rel, '%s[%d]' % (path, i), out)
        return ok
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or a is None:
        if a != b:
            out.append('%s: %r / %r' % (path, a, b))
            return False
        return True
    if isinstance(a, int) and isinstance(b, int):
        if a != b:
            out.append('%s: %d / %d' % (path, a, b))
            return False
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if not close(float(a), float(b), rel):
            out.append('%s: %r / %r (relative %.3g)' %
                       (path, a, b, abs(a - b) / max(abs(a), abs(b))))
            return False
        return True
    out.append('%s: %r / %r' % (path, a, b))
    return False


def main(argv):
    rel = 1e-12
    args = argv[1:]
    if len(args) >= 2 and args[0] == '--rel':
        rel = float(args[1])
        args = args[2:]
    if len(args) != 2:
        sys.stderr.write('usage: compare_reports.py [--rel TOL] A B\n')
        return 2
    out = []
    with open(args[0]) as f:
        ta = f.read()
    with open(args[1]) as f:
        tb = f.read()
    if args[0].endswith('.json'):
        try:
            ja, jb = json.loads(ta), json.loads(tb)
        except ValueError as e:
            print('not JSON: %s' % e)
            return 1
        ok = cmp_json(ja, jb, rel, '', out)
    else:
        ok = cmp_text(ta, tb, rel, out)
    for line in out:
        print(line)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
