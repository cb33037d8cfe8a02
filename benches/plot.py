#!/usr/bin/env python3
"""Draw BENCHMARKS.md's plots and ratio tables from runs of the benches: no dependencies.

    benches/report.sh [RUNS]     # runs the benches RUNS times (default 3), then this

or by hand, for one run:

    cargo bench --bench echo                              # criterion: target/criterion
    cargo bench --bench latency | tee target/latency.txt  # p50/p99 table
    python3 benches/plot.py                               # -> benches/plots/*.svg

With `--runs DIR` it reads every `DIR/run-*/` (each a `criterion/` tree and a
`latency.txt`) and reports the median over the runs, with each ratio's range.

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


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2


def ratio_cell(ratios):
    """'1.02 (0.97–1.05)': the median ratio over the runs, then the range."""
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}"
    return f"{median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"


def combine_throughput(runs):
    """Median msgs/s per point and server over runs, and each run's ratio to raw_mio."""
    medians, ratios = {}, {}
    for point in sorted({p for run in runs for p in run}):
        rows = [run[point] for run in runs if point in run]
        kinds = {k for row in rows for k in row}
        medians[point] = {k: median([row[k] for row in rows if k in row]) for k in kinds}
        ratios[point] = {
            k: [row[k] / row[REFERENCE] for row in rows if k in row and REFERENCE in row]
            for k in kinds
        }
    return medians, ratios


def markdown_throughput(medians, ratios):
    kinds = [k for k in ORDER if any(k in v for v in medians.values())]
    lines = [
        "| connections × size | " + " | ".join(kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
    ]
    for (size, connections) in sorted(medians):
        cells = []
        for kind in kinds:
            if kind not in medians[(size, connections)]:
                cells.append("–")
                continue
            value = human(round(medians[(size, connections)][kind], -2))
            kind_ratios = ratios[(size, connections)].get(kind)
            cells.append(f"{value}, {ratio_cell(kind_ratios)}" if kind_ratios else value)
        lines.append(f"| {connections} × {size_name(size)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def combine_latency(runs):
    """Median p50/p99 per (size, server) over runs, and each run's p50 and p99 ratios."""
    table, ratios = {}, {}
    keys = []
    for run in runs:
        for size, kind, _, _ in run:
            if (size, kind) not in keys:
                keys.append((size, kind))
    for size, kind in keys:
        samples = [(r[2], r[3]) for run in runs for r in run if (r[0], r[1]) == (size, kind)]
        table[(size, kind)] = (median([a for a, _ in samples]), median([b for _, b in samples]))
        per_run = []
        for run in runs:
            row = {(r[0], r[1]): (r[2], r[3]) for r in run}
            if (size, kind) in row and (size, REFERENCE) in row:
                mine, mio = row[(size, kind)], row[(size, REFERENCE)]
                per_run.append((mine[0] / mio[0], mine[1] / mio[1]))
        ratios[(size, kind)] = per_run
    rows = [(size, kind, p50, p99) for (size, kind), (p50, p99) in table.items()]
    return rows, ratios


def markdown_latency(rows, ratios):
    kinds = [k for k in ORDER if any(r[1] == k for r in rows)]
    sizes = []
    for size, _, _, _ in rows:
        if size not in sizes:
            sizes.append(size)
    table = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    lines = [
        "| size | " + " | ".join(f"{k} p50 / p99" for k in kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
    ]
    for size in sizes:
        cells = []
        for kind in kinds:
            if (size, kind) not in table:
                cells.append("–")
                continue
            p50, p99 = table[(size, kind)]
            cell = f"{p50:.1f} / {p99:.1f} µs"
            per_run = ratios.get((size, kind))
            if per_run and kind != REFERENCE:
                cell += (
                    f"; ×{ratio_cell([a for a, _ in per_run])}"
                    f" / ×{ratio_cell([b for _, b in per_run])}"
                )
            cells.append(cell)
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--criterion", default="target/criterion")
    parser.add_argument("--latency", default="target/latency.txt")
    parser.add_argument("--runs", help="a directory of run-*/ (criterion/, latency.txt)")
    parser.add_argument("--out", default="benches/plots")
    args = parser.parse_args()
    if args.runs:
        run_dirs = sorted(
            os.path.join(args.runs, d) for d in os.listdir(args.runs) if d.startswith("run-")
        )
        criterion_dirs = [os.path.join(d, "criterion") for d in run_dirs]
        latency_files = [os.path.join(d, "latency.txt") for d in run_dirs]
    else:
        criterion_dirs, latency_files = [args.criterion], [args.latency]
    os.makedirs(args.out, exist_ok=True)
    wrote = []
    throughput_runs = [r for r in (read_criterion(d) for d in criterion_dirs) if r]
    if throughput_runs:
        medians, ratios = combine_throughput(throughput_runs)
        for size in sorted({s for (s, _) in medians}):
            path = os.path.join(args.out, f"throughput-{size_name(size)}.svg")
            with open(path, "w") as f:
                f.write(throughput_plot(medians, size))
            wrote.append(path)
        print(
            f"Echo throughput, msgs/s, median of {len(throughput_runs)} run(s); "
            "ratio to raw_mio in the same run, median (range):\n"
        )
        print(markdown_throughput(medians, ratios) + "\n")
    else:
        print("no echo results: run `cargo bench --bench echo`", file=sys.stderr)
    latency_runs = [read_latency(f) for f in latency_files if os.path.exists(f)]
    latency_runs = [r for r in latency_runs if r]
    if latency_runs:
        rows, ratios = combine_latency(latency_runs)
        path = os.path.join(args.out, "latency.svg")
        with open(path, "w") as f:
            f.write(latency_plot(rows))
        wrote.append(path)
        print(
            f"Round trip, one connection, median of {len(latency_runs)} run(s); "
            "p50 / p99, and their ratios to raw_mio, median (range):\n"
        )
        print(markdown_latency(rows, ratios) + "\n")
    else:
        print(
            "no latency table: run `cargo bench --bench latency | tee target/latency.txt`",
            file=sys.stderr,
        )
    if not wrote:
        sys.exit(1)
    for path in wrote:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
