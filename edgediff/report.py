"""report.md: what was converted, how well it matches PyTorch, and how fast it runs, for a person to read.

It reads the stages' records as written (manifest.json, precision_plan.json, profile records), never a stage's
internals, and draws the plots (latency per component, int8 sensitivity per component).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.contract import PrecisionPlan
from edgediff.profile.chart import latency_chart
from edgediff.profile.record import ProfileRecord


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _fmt(value: Any, spec: str = ".1f", unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value == float("inf"):
        return "∞ (identical)"
    return f"{value:{spec}}{unit}"


def _db_of(record: dict[str, Any], key: str = "psnr_db") -> Any:
    """A PSNR from a strict-JSON record: null with a reason beside it means infinite (identical outputs)."""
    value = record.get(key)
    if value is None and "identical" in str(record.get(f"{key}_reason", "")):
        return float("inf")
    return value


def component_rows(manifest: dict[str, Any], records: list[ProfileRecord]) -> list[list[str]]:
    """One row per component: size, parity and latency (shared by report.md and the CLI summary)."""
    backend = manifest["backend"]
    timed = {(r.component, r.backend): r for r in records}
    rows = []
    for name, entry in manifest["components"].items():
        v = entry.get("verify", {})
        rec = timed.get((name, backend))
        torch_rec = timed.get((name, "pytorch"))
        status = v.get("status", "?")
        if status == "skipped":
            status = f"skipped ({v.get('reason', '')})"
        rows.append([
            name, _mb(entry["bytes"]) + (f" ({len(entry['chunks'])} chunks)" if entry.get("chunks") else ""),
            _fmt(_db_of(v), ".1f"), _fmt(v.get("cosine"), ".6f"), _fmt(v.get("max_abs_error"), ".2e"),
            status,
            _fmt(rec.median_ms if rec else None, ".1f"), _fmt(rec.p90_ms if rec else None, ".1f"),
            _fmt(torch_rec.median_ms if torch_rec else None, ".1f"),
            _fmt(rec.extra.get("ratio_to_pytorch") if rec else None, ".2f", "×"),
            _fmt(rec.peak_memory_mb if rec else None, ".0f"),
        ])
    return rows


HEADERS = ["component", "size", "PSNR dB", "cosine", "max abs err", "verify", "median ms", "p90 ms",
           "PyTorch ms", "ratio", "peak RSS MB"]


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def write_report(bundle_dir: Path, manifest: dict[str, Any], records: list[ProfileRecord]) -> Path:
    src = manifest.get("source", {})
    lines = [
        f"# edgediff report: {manifest['backend']} ({manifest['precision']})",
        "",
        f"- source: `{src.get('model')}` ({src.get('kind')}{', random weights' if src.get('random_weights') else ''})",
        f"- edgediff {manifest.get('edgediff_version') or '–'}; backend version: "
        f"{manifest.get('backend_version') or '–'}; created {manifest.get('created')}",
    ]
    if src.get("note"):
        lines.append(f"- note: {src['note']}")
    single = src.get("single_file")
    if single:
        lines.append(f"- single-file checkpoint: {single.get('title', single.get('family'))}; prediction type "
                     f"{single.get('prediction_type')} (from {single.get('prediction_from')})")
    for lora in src.get("loras", []):
        lines.append(f"- LoRA `{lora.get('file')}` at strength {lora.get('strength')} (sha256 "
                     f"{str(lora.get('sha256'))[:12]}…), fused before lowering")
    pipe = manifest.get("pipeline")
    if pipe:
        sched = pipe["scheduler"]
        lines.append(f"- pipeline: {pipe['height']}×{pipe['width']}, latent {pipe['latent_shape']}, "
                     f"{sched['class_name']} × {sched['num_inference_steps']} steps, guidance "
                     f"{pipe['guidance']['scale']} ({'batched CFG' if pipe['guidance']['batched_cfg'] else 'no CFG batch'})")
    lines += ["", "## Components", "",
              "Parity is the worst of the seeded samples (PSNR peak = range of the PyTorch output). "
              "Latency: medians on this host, backend and PyTorch eager measured in the same run.", "",
              markdown_table(HEADERS, component_rows(manifest, records)), ""]
    if records:
        latency_chart(records, Path(bundle_dir) / "latency.png",
                      title=f"{manifest['backend']} vs PyTorch eager on this host (median, p90 whisker)")
        lines += ["![latency per component](latency.png)", ""]
    e2e = manifest.get("verify", {}).get("end_to_end", {})
    if e2e:
        lines += ["## End to end", ""]
        if e2e.get("status") == "skipped":
            lines.append(f"Skipped: {e2e.get('reason')}.")
        else:
            lines.append(f"Prompt \"{e2e['prompt']}\", seed {e2e['seed']}, {e2e['steps']} steps, guidance "
                         f"{e2e['guidance_scale']}: image PSNR artifacts vs PyTorch **{_fmt(_db_of(e2e), '.2f')} dB** "
                         f"(gate {e2e['min_psnr_db']} dB): {e2e['status']}.")
            if e2e.get("image"):
                lines += ["", f"![PyTorch (left) vs {manifest['backend']} (right)]({e2e['image']})"]
        lines.append("")
    sizes = manifest.get("verify", {}).get("sizes") or {}
    if sizes:  # a bundle with several sizes: the verify stage ran at each one (edgediff/verify_sizes.py)
        lines += ["## Per size", "", markdown_table(
            ["size (WxH)", *[f"{c} PSNR dB" for c in manifest["components"]], "end to end"],
            [[size, *[_fmt(_db_of(record["components"].get(c, {})), ".1f") for c in manifest["components"]],
              f"{_fmt(_db_of(record.get('end_to_end', {})), '.2f')} ({record.get('end_to_end', {}).get('status')})"]
             for size, record in sizes.items()]), ""]
    from edgediff import quality  # here: report is read by commands that never verify

    lines += quality.report_lines(manifest)
    if manifest.get("precision_plan"):
        lines += plan_section(manifest["precision_plan"], Path(bundle_dir))
    for name, entry in manifest["components"].items():
        structural = entry.get("verify", {}).get("structural")
        if structural:
            lines += [f"## Structural checks: {name}", "", "```", _plain(structural), "```", ""]
    op_records = [r for r in records if r.ops]
    if op_records:
        lines += ["## Top ops by time", ""]
        for r in op_records:
            lines += [f"**{r.component}** ({r.tool}, {r.runs} runs)", "",
                      markdown_table(["op", "ms/run", "%", "count"],
                                     [[o.name, f"{o.ms:.2f}", _fmt(o.percent, ".1f"), _fmt(o.count, "d")]
                                      for o in r.ops[:10]]), ""]
    memory = manifest.get("memory")
    if memory:
        lines += ["## Memory", "", f"Peak RSS per component ({memory.get('method', '')}), measured on "
                  f"{memory.get('measured_on', 'this host')}:", "",
                  markdown_table(["component", "peak MB"], [[k, f"{v:,.0f}"] for k, v in memory["components"].items()]),
                  "", f"All components resident: **{memory['peak_mb']:,.0f} MB**."]
        if memory.get("target"):
            lines.append(f"Target {memory['target']} (budget {memory['budget_mb']:,.0f} MB): **{memory['plan']}**."
                         + (f" {memory['note']}." if memory.get("note") else ""))
        lines.append("")
    timings = manifest.get("timings_s")
    if timings:
        lines += ["## Stage times", "", markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()]), ""]
    path = Path(bundle_dir) / "report.md"
    path.write_text("\n".join(lines))
    return path


def _plain(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


def plan_section(entry: dict[str, Any], bundle_dir: Path, top: int = 15) -> list[str]:
    """Markdown for report.md: per component the plan's figures, its decisions, the most sensitive units and a
    sensitivity plot (drawn here from precision_plan.json)."""
    path = Path(bundle_dir) / entry.get("file", "precision_plan.json")
    document = json.loads(path.read_text()) if path.is_file() else {"components": {}}
    lines = ["## int8 precision plan", "",
             "Simulated in PyTorch with fake quantization on held-out calibration samples (output PSNR vs float; "
             "the artifacts' own parity is in the Components table). *naive* = every layer int8, calibrated at "
             f"one timestep; *all int8* = every layer int8 with the full calibration. Full plan: `{path.name}`.", ""]
    rows = []
    for name, summary in entry.get("components", {}).items():
        c = summary["counts"]
        rows.append([name, summary.get("realised", "plan"), f"{summary['target_psnr_db']:g}",
                     _db(summary["psnr_db"]), _db(summary["all_int8_psnr_db"]), _db(summary["naive_psnr_db"]),
                     f"{c['int8']} / {c['int8_weights']} / {c['float']}",
                     f"{100 * summary['float_weight_fraction']:.1f}%"])
    lines += [markdown_table(["component", "realised", "target dB", "plan dB", "all int8 dB", "naive dB",
                              "int8 / int8 weights / float", "float weights"], rows), ""]
    for name, plan in document["components"].items():
        cal = plan.get("calibration", {})
        lines += [f"**{name}**: calibration {cal.get('ranges_samples')} samples ({cal.get('source')}; "
                  f"{len(cal.get('timesteps') or [])} timesteps, {len(cal.get('prompts') or [])} prompts, guidance "
                  f"{cal.get('guidance_scales')}), evaluated on {cal.get('eval_samples')} held-out samples.", ""]
        if plan.get("realised", "plan") == "plan (weights only)":  # every unit with weights is int8 or float
            kept = [layer for layer in plan["layers"] if layer["mode"] == "float" and layer["weight_params"]]
            lines += ["Weight-only plan (the backend compresses weights; activations stay float): "
                      + (("weights kept float: " + ", ".join(f"`{layer['name']}`" for layer in kept)) if kept
                         else "every layer's weights are int8."), ""]
        else:
            kept = [layer for layer in plan["layers"] if layer["mode"] != "int8"]
            if kept:
                lines += ["Kept above int8: " + ", ".join(f"`{layer['name']}` ({layer['mode']})" for layer in kept), ""]
        search = plan.get("search") or {}
        if search.get("kind") == "blocks":  # slim/plan_search.py: units measured alone only in refined blocks
            refined = ", ".join(f"`{b}`" for b in search.get("refined_blocks", [])) or "none"
            lines += [f"Block search: {search.get('blocks')} blocks measured, {plan.get('evaluations')} simulated "
                      f"forwards; units measured one by one in: {refined}. A unit in another block shows its "
                      "block's figure (in *measured as*).", ""]
        lines += [markdown_table(["rank", "layer", "kind", "PSNR if only it is int8", "measured as", "decision"],
                                 [[str(i + 1), f"`{layer['name']}`", layer["kind"],
                                   _db(layer["sensitivity_psnr_db"]),
                                   "itself" if layer.get("group", layer["name"]) == layer["name"]
                                   else f"block `{layer['group']}`", layer["mode"]]
                                  for i, layer in enumerate(plan["layers"][:top])]), ""]
        plot = plot_sensitivity(PrecisionPlan.from_dict(plan), Path(bundle_dir) / f"precision_{name}.png")
        if plot:
            lines += [f"![{name} sensitivity]({plot.name})", ""]
    return lines


def _db(value: Any) -> str:
    return "∞" if value == "inf" else f"{float(value):.2f}"


def plot_sensitivity(plan: PrecisionPlan, path: Path, top: int = 40) -> Path | None:
    """Bar chart of the most sensitive units (output PSNR with only that unit int8), coloured by decision."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    layers = [layer for layer in plan.layers if math.isfinite(layer.sensitivity_psnr_db)][:top]
    if not layers:
        return None
    colours = {"float": "#d62728", "int8_weights": "#ff7f0e", "int8": "#2ca02c"}
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(layers) + 1.6))
    y = np.arange(len(layers))
    ax.barh(y, [layer.sensitivity_psnr_db for layer in layers], color=[colours[layer.mode] for layer in layers])
    ax.axvline(plan.target_psnr_db, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(y, [f"{layer.name} ({layer.kind})" for layer in layers], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{plan.component} output PSNR (dB) with only this unit int8")
    ax.set_title(f"{plan.component}: most sensitive units (red float, orange int8 weights, green int8)\n"
                 f"dashed = target {plan.target_psnr_db:g} dB", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
