#!/usr/bin/env python3
"""Draw BENCHMARKS.md's plots from a run of the benches: no dependencies.

    cargo bench --bench echo                              # criterion: target/criterion
    cargo bench --bench latency | tee target/latency.txt  # p50/p99 table
    python3 benches/plot.py                               # -> benches/plots/*.svg

Writes, side by side for every server the benches run (ioloop, as shipped
and tuned, on IOStream, a raw mio loop, tokio):

- throughput-64B.svg, throughput-16KiB.svg: echoed messages per second
  against connections (criterion's median time per round; one round sends
  one message per connection);
- latency.svg: p50 and p99 round trip per message size, one connection;

and prints the same figures as Markdown tables, with each server's ratio to
the raw mio loop of the same run, for BENCHMARKS.md.
"""

import argparse
import json
import math
import os
import re
import sys

COLORS = {
    "ioloop": "#1f77b4",
    "ioloop_default": "#2ca02c",
    "ioloop_stream": "#9467bd",
    "ioloop_nagle": "#8c564b",
    "raw_mio": "#d62728",
    "tokio": "#ff7f0e",
}
ORDER = list(COLORS)
REFERENCE = "raw_mio"


def color(kind):
    return COLORS.get(kind, "#7f7f7f")


def read_criterion(root):
    """{(size_name, connections): {kind: msgs_per_s}} from target/criterion."""
    results = {}
    pattern = re.compile(r"^echo/(\d+)conn/(\d+)B$")
    for directory, _, files in os.walk(root):
        if "benchmark.json" not in files or os.path.basename(directory) != "new":
            continue
        with open(os.path.join(directory, "benchmark.json")) as f:
            bench = json.load(f)
        match = pattern.match(bench.get("group_id", ""))
        if not match:
            continue
        connections, size = int(match.group(1)), int(match.group(2))
        with open(os.path.join(directory, "estimates.json")) as f:
            estimates = json.load(f)
        nanos = estimates["median"]["point_estimate"]
        kind = bench.get("function_id") or bench.get("value_str")
        results.setdefault((size, connections), {})[kind] = connections / (nanos * 1e-9)
    return results


def read_latency(path):
    """[(size_name, kind, p50_us, p99_us)] from the latency bench's table."""
    rows = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 5 and fields[0] != "size":
                try:
                    rows.append((fields[0], fields[1], float(fields[3]), float(fields[4])))
                except ValueError:
                    continue
    return rows


def size_name(size):
    return f"{size // 1024}KiB" if size >= 1024 and size % 1024 == 0 else f"{size}B"


def svg(width, height, body, title):
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n'
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>\n'
        + "\n".join(body)
        + "\n</svg>\n"
    )


def nice_max(value):
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def human(value):
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def legend(kinds, x, y):
    body = []
    for i, kind in enumerate(kinds):
        body.append(
            f'<rect x="{x}" y="{y + 18 * i - 9}" width="12" height="12" fill="{color(kind)}"/>'
            f'<text x="{x + 18}" y="{y + 18 * i + 1}">{kind}</text>'
        )
    return body


def axes(left, top, plot_w, plot_h, y_max, y_label):
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
        f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" '
        f'text-anchor="middle">{y_label}</text>',
    ]
    for i in range(6):
        value = y_max * i / 5
        y = top + plot_h - plot_h * i / 5
        body.append(
            f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{human(value)}</text>'
        )
    return body


def throughput_plot(results, size):
    points = {k: v for k, v in results.items() if k[0] == size}
    connections = sorted({c for (_, c) in points})
    kinds = [k for k in ORDER if any(k in v for v in points.values())]
    width, height, left, top, plot_w, plot_h = 640, 380, 70, 40, 420, 290
    y_max = nice_max(max(v for row in points.values() for v in row.values()))
    body = axes(left, top, plot_w, plot_h, y_max, "echoed messages / s")
    xs = {c: left + plot_w * (i + 0.5) / len(connections) for i, c in enumerate(connections)}
    for c, x in xs.items():
        body.append(f'<text x="{x}" y="{top + plot_h + 18}" text-anchor="middle">{c}</text>')
    body.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 36}" text-anchor="middle">connections</text>'
    )
    for kind in kinds:
        line = [
            (xs[c], top + plot_h - plot_h * points[(size, c)][kind] / y_max)
            for c in connections
            if kind in points[(size, c)]
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in line)
        body.append(f'<polyline points="{path}" fill="none" stroke="{color(kind)}" stroke-width="2"/>')
        for x, y in line:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color(kind)}"/>')
    body += legend(kinds, left + plot_w + 20, top + 10)
    return svg(width, height, body, f"Echo throughput, {size_name(size)} messages, ping-pong")


def latency_plot(rows):
    sizes = []
    for size, _, _, _ in rows:
        if size not in sizes:
            sizes.append(size)
    kinds = [k for k in ORDER if any(r[1] == k for r in rows) and k != "ioloop_nagle"]
    table = {(r[0], r[1]): (r[2], r[3]) for r in rows if r[1] in kinds}
    width, height, left, top, plot_w, plot_h = 640, 380, 70, 40, 420, 290
    # Log scale: 64 B and 64 KiB round trips differ tenfold, and one noisy
    # p99 must not flatten every other bar.
    low = 10 ** math.floor(math.log10(min(p50 for p50, _ in table.values())))
    high = 10 ** math.ceil(math.log10(max(p99 for _, p99 in table.values())))

    def y_of(value):
        share = (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return top + plot_h - plot_h * share

    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
        f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" '
        f'text-anchor="middle">round trip, µs, log scale (bar: p50, tick: p99)</text>',
    ]
    decade = low
    while decade <= high:
        for step in (1, 2, 5):
            value = decade * step
            if value > high:
                break
            y = y_of(value)
            body.append(
                f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
                f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{human(value)}</text>'
            )
        decade *= 10
    group_w = plot_w / len(sizes)
    bar_w = group_w * 0.8 / len(kinds)
    for i, size in enumerate(sizes):
        x0 = left + group_w * i + group_w * 0.1
        body.append(
            f'<text x="{left + group_w * (i + 0.5)}" y="{top + plot_h + 18}" text-anchor="middle">{size}</text>'
        )
        for j, kind in enumerate(kinds):
            if (size, kind) not in table:
                continue
            p50, p99 = table[(size, kind)]
            x = x0 + bar_w * j
            y50, y99 = y_of(p50), y_of(p99)
            body.append(
                f'<rect x="{x:.1f}" y="{y50:.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{top + plot_h - y50:.1f}" fill="{color(kind)}"/>'
                f'<line x1="{x + bar_w * 0.45:.1f}" y1="{y50:.1f}" '
                f'x2="{x + bar_w * 0.45:.1f}" y2="{y99:.1f}" stroke="black"/>'
                f'<line x1="{x + bar_w * 0.15:.1f}" y1="{y99:.1f}" x2="{x + bar_w * 0.75:.1f}" '
                f'y2="{y99:.1f}" stroke="black" stroke-width="2"/>'
            )
    body += legend(kinds, left + plot_w + 20, top + 10)
    return svg(width, height, body, "Round-trip latency, one connection (p50 and p99)")


def markdown_throughput(results):
    kinds = [k for k in ORDER if any(k in v for v in results.values())]
    lines = [
        "| connections × size | " + " | ".join(kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
    ]
    for (size, connections) in sorted(results):
        row = results[(size, connections)]
        reference = row.get(REFERENCE)
        cells = []
        for kind in kinds:
            if kind not in row:
                cells.append("–")
            elif reference:
                cells.append(f"{human(round(row[kind], -2))} ({row[kind] / reference:.2f})")
            else:
                cells.append(human(round(row[kind], -2)))
        lines.append(f"| {connections} × {size_name(size)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--criterion", default="target/criterion")
    parser.add_argument("--latency", default="target/latency.txt")
    parser.add_argument("--out", default="benches/plots")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    wrote = []
    results = read_criterion(args.criterion)
    if results:
        for size in sorted({s for (s, _) in results}):
            path = os.path.join(args.out, f"throughput-{size_name(size)}.svg")
            with open(path, "w") as f:
                f.write(throughput_plot(results, size))
            wrote.append(path)
        print("Echo throughput, msgs/s (ratio to raw_mio in the same run):\n")
        print(markdown_throughput(results) + "\n")
    else:
        print(f"no echo results under {args.criterion}: run `cargo bench --bench echo`", file=sys.stderr)
    if os.path.exists(args.latency):
        rows = read_latency(args.latency)
        if rows:
            path = os.path.join(args.out, "latency.svg")
            with open(path, "w") as f:
                f.write(latency_plot(rows))
            wrote.append(path)
    else:
        print(
            f"no latency table at {args.latency}: run "
            f"`cargo bench --bench latency | tee {args.latency}`",
            file=sys.stderr,
        )
    if not wrote:
        sys.exit(1)
    for path in wrote:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
