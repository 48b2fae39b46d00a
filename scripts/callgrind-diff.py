#!/usr/bin/env python3
"""callgrind-diff compares two runs of scripts/bench-instructions.sh (OUT=dir)
function by function: instructions per message spent in each function itself
(self cost, from callgrind_annotate) and calls per message, old and new, largest
changes first.

    scripts/callgrind-diff.py OLD_DIR NEW_DIR [BENCH] [ROWS]

BENCH is QoS0PathExact (default) or QoS1PathExact; ROWS (default 40) how many
rows of increases and of decreases to print. Per message means the difference
between the N1 and N2 runs divided by N2 - N1, as bench-instructions does.

Inclusive costs are not used: callgrind follows calls and returns, and Go's
goroutine switches (one stack to another) make its inclusive figures and
caller attribution unreliable; self costs and call counts are exact.
--callers FUNC_REGEX prints who calls the matching functions in NEW_DIR's N2
run, with counts.
"""

import collections
import glob
import os
import re
import subprocess
import sys


def runs(d, bench):
    """The two .out files of bench in d, by message count, and that count."""
    found = []
    for f in glob.glob(os.path.join(d, bench + "-*.out")):
        m = re.search(r"-(\d+)\.out$", f)
        if m:
            found.append((int(m.group(1)), f))
    found.sort()
    if len(found) != 2:
        sys.exit(f"callgrind-diff: want two {bench}-N.out files in {d}, found {len(found)}")
    return found


def self_costs(f):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", f],
                         capture_output=True, text=True, check=True).stdout
    d = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+\S+?:(.*?)(?:\s+\[.*\])?$", line)
        if m:
            d[re.sub(r"'\d+$", "", m.group(2))] += int(m.group(1).replace(",", ""))
    return d


def calls(f):
    """Calls per callee, and per callee per caller."""
    names, total = {}, collections.Counter()
    by = collections.defaultdict(collections.Counter)
    cur = cfn = None

    def name(s):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?", s)
        if m:
            if m.group(2):
                names[m.group(1)] = m.group(2)
            s = names.get(m.group(1), "?")
        return re.sub(r"'\d+$", "", s)

    with open(f) as fh:
        for line in fh:
            if line.startswith("fn="):
                cur = name(line[3:].strip())
            elif line.startswith("cfn="):
                cfn = name(line[4:].strip())
            elif line.startswith("calls="):
                n = int(line[6:].split()[0])
                total[cfn] += n
                by[cfn][cur] += n
    return total, by


def per_message(d, bench, load):
    (n1, f1), (n2, f2) = runs(d, bench)
    a, b = load(f1), load(f2)
    if isinstance(a, tuple):
        a, b = a[0], b[0]
    return {k: (b[k] - a[k]) / (n2 - n1) for k in set(a) | set(b)}


def main():
    args = sys.argv[1:]
    if len(args) >= 3 and args[0] == "--callers":
        pat, d = args[1], args[2]
        bench = args[3] if len(args) > 3 else "QoS0PathExact"
        (_, _), (n2, f2) = runs(d, bench)
        total, by = calls(f2)
        for fn in sorted(total):
            if re.search(pat, fn):
                print(f"{total[fn] / n2:8.2f}/msg  {fn}")
                for caller, n in by[fn].most_common(8):
                    print(f"    {n / n2:8.2f}  {caller}")
        return
    if len(args) < 2:
        sys.exit(__doc__)
    old, new = args[0], args[1]
    bench = args[2] if len(args) > 2 else "QoS0PathExact"
    rows = int(args[3]) if len(args) > 3 else 40
    so, sn = per_message(old, bench, self_costs), per_message(new, bench, self_costs)
    co, cn = per_message(old, bench, calls), per_message(new, bench, calls)
    print(f"{bench}: {sum(so.values()):.0f} -> {sum(sn.values()):.0f} instructions/message")
    print(f"{'change':>8} {'old':>8} {'new':>8} {'calls old':>9} {'new':>6}  function (self instructions/message)")
    diff = sorted(((sn.get(k, 0) - so.get(k, 0), k) for k in set(so) | set(sn)))
    shown = diff[-rows:][::-1] + [None] + diff[:rows]
    for r in shown:
        if r is None:
            print("...")
            continue
        k = r[1]
        if abs(r[0]) < 1:
            continue
        print(f"{r[0]:8.0f} {so.get(k, 0):8.0f} {sn.get(k, 0):8.0f} {co.get(k, 0):9.2f} {cn.get(k, 0):6.2f}  {k[:110]}")


if __name__ == "__main__":
    main()
