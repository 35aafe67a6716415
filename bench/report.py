"""Write the results: results.json, PNG plots (matplotlib, Agg) and benchmarks.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _ms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    return f"{seconds * 1000:.0f} ms"


def _plots(results: dict[str, Any], img: Path) -> dict[str, str]:
    img.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    scale = results.get("scale") or []
    if scale:
        fig, ax = plt.subplots(figsize=(7, 4))
        for run in scale:
            values = sorted(v for vs in run["latency"]["per_backend"].values() for v in vs)
            if values:
                ys = [(i + 1) / len(values) for i in range(len(values))]
                ax.plot([v * 1000 for v in values], ys, label=f"{run['nodes']:,} nodes")
        ax.set_xlabel("ms from the EndpointSlice change to the node's verified result")
        ax.set_ylabel("share of nodes")
        ax.set_title("Repair latency per node (CoreDNS rollout, 2 pods replaced)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(img / "repair_latency.png", dpi=110)
        plt.close(fig)
        made["latency"] = "repair_latency.png"

        fig, ax = plt.subplots(figsize=(7, 4))
        for run in scale:
            series = run.get("write_series", [])
            ax.plot([t for t, _ in series], [c for _, c in series], label=f"{run['nodes']:,} nodes")
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.text(0.5, ax.get_ylim()[1] * 0.9, "rollout starts", fontsize=8)
        ax.set_xlabel("seconds from the start of the rollout")
        ax.set_ylabel("write requests per second")
        hb = scale[0]["steady"]["heartbeat"]
        ax.set_title(f"API writes (heartbeat shortened to {hb:g} s before t=0)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(img / "api_writes.png", dpi=110)
        plt.close(fig)
        made["writes"] = "api_writes.png"

    dns = results.get("dns") or []
    if dns:
        modes = list(dict.fromkeys(r["mode"] for r in dns))
        fig, axes = plt.subplots(1, len(modes), figsize=(11, 4.2), sharey=True)
        if len(modes) == 1:
            axes = [axes]
        for ax, mode in zip(axes, modes, strict=True):
            runs = {r["with_proxymedic"]: r for r in dns if r["mode"] == mode}
            if False not in runs:  # a variant of the policy: without ProxyMedic no policy applies
                from bench.doc import without_run

                runs[False] = without_run(dns, runs[True])
            kinds = list(runs[False]["dns"])
            xs = range(len(kinds))
            for offset, (with_pm, label) in enumerate(((False, "without"), (True, "with ProxyMedic"))):
                if with_pm not in runs:
                    continue
                values = [runs[with_pm]["dns"][k]["failed"] for k in kinds]
                ax.bar([x + (offset - 0.5) * 0.4 for x in xs], values, width=0.4, label=label)
            ax.set_xticks(list(xs))
            ax.set_xticklabels([k.replace(" (", "\n(") for k in kinds], fontsize=7, rotation=20)
            ax.set_title(mode)
            ax.set_yscale("symlog")
            ax.grid(alpha=0.3, axis="y")
        axes[0].set_ylabel("failed DNS queries (all clients of the kind)")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(img / "dns_failures.png", dpi=110)
        plt.close(fig)
        made["dns"] = "dns_failures.png"

    footprint = results.get("footprint")
    if footprint:
        series = footprint["operator"]["rss_series"]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot([t for t, _ in series], [m for _, m in series])
        ax.set_xlabel("seconds since the operator started")
        ax.set_ylabel("RSS (MB)")
        op = footprint["operator"]
        ax.set_title(f"Operator RSS: {op['services']:,} Services, {op['endpoints']:,} endpoints, then churn")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(img / "operator_rss.png", dpi=110)
        plt.close(fig)
        made["rss"] = "operator_rss.png"
    return made


def _rounded(value: Any) -> Any:
    """Floats to 4 decimals (milliseconds and below are noise here), to keep results.json small."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    return value


def write_all(results: dict[str, Any], out: Path) -> None:
    """``out`` is the docs folder: results and plots go to out/benchmarks/, the doc to out/benchmarks.md."""
    folder = out / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(_rounded(results), indent=1, default=str) + "\n")
    plots = _plots(results, folder)
    from bench.doc import render

    (out / "benchmarks.md").write_text(render(results, {k: f"benchmarks/{v}" for k, v in plots.items()}))
    readme = out.parent / "README.md"
    if out.name == "docs" and readme.exists():
        update_readme(readme, results)


def update_readme(readme: Path, results: dict[str, Any]) -> None:
    """Write the summary table into the README's "Benchmarks" section (added before "## Layout")."""
    from bench.doc import summary

    text = readme.read_text()
    section = "\n".join(
        [
            "## Benchmarks",
            "",
            f"Measured on a simulated cluster (the API emulator, modelled nodes, the real operator process "
            f"and the real agent code per node) by `{results['command']}`; the method, the plots and what "
            "the simulation does not capture are in [docs/benchmarks.md](docs/benchmarks.md).",
            "",
            *summary(results),
            "",
            "",
        ]
    )
    if "\n## Benchmarks\n" in text:
        start = text.index("\n## Benchmarks\n") + 1
        end = text.index("\n## Layout\n", start) + 1
    else:
        start = end = text.index("\n## Layout\n") + 1
    readme.write_text(text[:start] + section + text[end:])
