#!/usr/bin/env python3
"""Self instructions per source line (and per function) of a callgrind
output file, or the difference between two of them divided by a count:

    callgrind_lines.py BIG.out [SMALL.out EVENTS] [--by line|function|file] [--top N]

With two files, prints (BIG - SMALL) / EVENTS per row: the cost per event
of a workload run at two lengths, without its setup. Inlined code is
charged to the line it came from (the `fi=`/`fe=` records), so a loop that
inlines everything into one function still shows where its cost is.
"""

import argparse
import collections
import os
import re

NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def parse(path):
    """Self cost (Ir) keyed by (function, file, line)."""
    names = {"fl": {}, "fn": {}}
    costs = collections.Counter()
    fn = fl = fi = "?"
    line = 0
    skip_next = False

    def name_of(kind, value):
        m = NAMED.match(value)
        if not m:
            return value
        ident, name = m.group(1), m.group(2)
        table = names[kind]
        if name is not None:
            table[ident] = name
        return table.get(ident, "?")

    with open(path) as f:
        for raw in f:
            raw = raw.rstrip("\n")
            if not raw or raw[0] == "#":
                continue
            head = raw[0]
            if head.isdigit() or head in "+-*":
                parts = raw.split()
                pos = parts[0]
                if pos == "*":
                    new_line = line
                elif pos[0] in "+-":
                    new_line = line + int(pos)
                else:
                    new_line = int(pos)
                line = new_line
                if skip_next:
                    skip_next = False
                    continue
                if len(parts) > 1:
                    costs[(fn, fi, line)] += int(parts[1])
                continue
            key, _, value = raw.partition("=")
            if key == "fl":
                fl = fi = name_of("fl", value)
            elif key in ("fi", "fe"):
                fi = name_of("fl", value)
            elif key == "fn":
                fn = name_of("fn", value)
                fi = fl
            elif key in ("cfl", "cfi"):
                name_of("fl", value)
            elif key == "cfn":
                name_of("fn", value)
            elif key == "calls":
                skip_next = True
    return costs


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/"
SHORTEN = [
    (re.compile(r"^/rustc/[0-9a-f]+/library/"), "std:"),
    (re.compile(r"^.*/registry/src/[^/]+/"), ""),
    (re.compile(r"^.*/examples/\.\./"), ""),
    (re.compile("^" + re.escape(ROOT)), ""),
]


def shorten(path):
    """A source path without the toolchain's, registry's or checkout's prefix."""
    for pattern, replacement in SHORTEN:
        path = pattern.sub(replacement, path)
    return path


def group(costs, by):
    out = collections.Counter()
    for (fn, fi, line), cost in costs.items():
        fi = shorten(fi)
        if by == "line":
            out[f"{fi}:{line}  [{fn}]"] += cost
        elif by == "file":
            out[fi] += cost
        else:
            out[fn] += cost
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("big")
    parser.add_argument("small", nargs="?")
    parser.add_argument("events", nargs="?", type=int)
    parser.add_argument("--by", choices=["line", "function", "file"], default="function")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    big = group(parse(args.big), args.by)
    if args.small:
        small = group(parse(args.small), args.by)
        rows = {k: (big[k] - small.get(k, 0)) / args.events for k in big}
    else:
        rows = dict(big)
    total = sum(rows.values())
    ranked = sorted(rows.items(), key=lambda kv: -abs(kv[1]))[: args.top]
    for key, value in ranked:
        print(f"{value:10.1f}  {key}")
    print(f"{total:10.1f}  TOTAL")


if __name__ == "__main__":
    main()
