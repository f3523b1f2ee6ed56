"""Chart of a benchmark run: throughput and latency percentiles.

    python benches/chart.py benches/results/results.json benches/results/chart.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401

PCTS = ["p50_ms", "p75_ms", "p90_ms", "p99_ms"]


def main() -> None:
    res = json.load(open(sys.argv[1]))
    d = res["downloads"]["median"]
    base = "c0" in d
    dl = [("(a) native\nsecure_link", d["a"]), ("(b) auth_request\n→ nginx 204", d["b"])]
    if base:
        dl.append(("(c) assetgate\nbefore", d["c0"]))
    dl.append(("(c) assetgate" + ("\nafter" if base else ""), d["c"]))
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    colors = ["#8c8c8c", "#4c72b0", "#dd8452", "#55a868", "#8172b3"]

    def bars(ax, items, title, ylabel):
        names = [n for n, _ in items]
        vals = [v["rps"] for _, v in items]
        b = ax.bar(names, vals, color=colors[: len(items)] if len(items) > 2 else ["#c44e52", "#55a868"])
        ax.bar_label(b, labels=[f"{v:,.0f}" for v in vals], fontsize=9)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, max(vals) * 1.15)
        ax.tick_params(axis="x", labelsize=9)

    def lat(ax, items, title, pcts=PCTS):
        width = 0.8 / len(items)
        xs = range(len(pcts))
        for i, (n, v) in enumerate(items):
            ax.bar([x + i * width for x in xs], [v[p] for p in pcts], width, label=n.replace("\n", " "))
        ax.set_xticks([x + width * (len(items) - 1) / 2 for x in xs])
        ax.set_xticklabels([p.split("_")[0] for p in pcts])
        ax.set_yscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(
            matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}" if f"{y:g}".lstrip("0.")[:1] in ("2", "5") else "")
        )
        ax.tick_params(axis="y", which="minor", labelsize=7)
        top = max(v[p] for _, v in items for p in pcts)
        ax.set_ylim(top=top * 4)
        ax.set_ylabel("latency, ms (log scale)")
        ax.set_title(title)
        ax.legend(fontsize=8, loc="upper left", ncol=2)
        ax.grid(axis="y", which="both", alpha=0.3)

    r = res["downloads"]["ratios"]
    bars(axes[0][0], dl, f"Downloads, 1 KiB private file: req/s (median)\n(c)/(b) = {r['c_over_b']:.3f}, "
         f"(c)/(a) = {r['c_over_a']:.3f}", "requests/s")
    u = res["uploads"]
    ax = axes[0][1]
    names = [("fastapi", "FastAPI ref."), ("floor", "nginx answering {}\n(floor)")]
    if base:
        names.append(("base", "assetgate\nbefore"))
    names.append(("new", "assetgate" + ("\nafter" if base else "")))
    if "hyper1" in u["isolated"]["median"]:
        names.insert(2, ("hyper1", "hyper answering {}\n(stack floor, isolated only)"))
    modes = [("shared", "shared cores"), ("isolated", "server on 1 CPU,\nwrk on the other")]
    width = 0.8 / len(names)
    for i, (key, label) in enumerate(names):
        vals = []
        for mode, _ in modes:
            m = u[mode]
            k = {"fastapi": m["fastapi"], "floor": m["floor"]}.get(key, key)
            vals.append(m["median"][k]["rps"] if k in m["median"] else 0)
        b = ax.bar([x + i * width for x in range(len(modes))], vals, width, label=label.replace("\n", " "),
                   color=colors[i % len(colors)])
        ax.bar_label(b, labels=[f"{v / 1000:,.1f}k" if v else "" for v in vals], fontsize=7)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(modes))])
    ax.set_xticklabels([m for _, m in modes])
    ax.set_ylabel("decisions/s")
    ax.set_ylim(0, max(m["median"][k]["rps"] for m in (u["shared"], u["isolated"]) for k in m["median"]) * 1.45)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    rs, ri = u["shared"]["ratios"], u["isolated"]["ratios"]
    ax.set_title(f"Upload creation: tusd pre-create decisions/s (median)\nassetgate / FastAPI = "
                 f"{rs['new_over_fastapi']:.1f}× shared, {ri['new_over_fastapi']:.1f}× isolated "
                 f"(floor: {rs['floor_over_fastapi']:.1f}×, {ri['floor_over_fastapi']:.1f}×)", fontsize=10)
    lat(axes[1][0], dl, "Downloads: latency percentiles at full load (wrk)")
    h = u["half_load"]
    items = [("nginx answering {} (floor)", h["median"]["floor1"])]
    if base:
        items.append(("assetgate before", h["median"]["base"]))
    items.append(("assetgate" + (" after" if base else ""), h["median"]["new"]))
    lat(axes[1][1], items, f"Upload creation at {h['target_rps']:,.0f}/s (half the isolated max),\n"
        "constant rate (oha, latency-corrected)", pcts=PCTS + ["p99.9_ms"])
    p = res["params"]
    fig.suptitle(
        f"assetgate benchmarks — {res['date_utc']} — {res['machine']['cpu'].get('CPU(s)', '?')} vCPU "
        f"{res['machine']['cpu'].get('Model name', '')}\nwrk -t{p['threads']} (isolated uploads: -t1 on the other CPU), {p['rounds']} interleaved "
        f"rounds × {p['duration']:g} s, medians; loopback, shared machine",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=100)


if __name__ == "__main__":
    main()
