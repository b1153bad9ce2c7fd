"""report.md: what was converted, how well it matches PyTorch, and how fast it runs, for a person to read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgediff.profile.record import ProfileRecord


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _fmt(value: Any, spec: str = ".1f", unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value == float("inf"):
        return "∞ (identical)"
    return f"{value:{spec}}{unit}"


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
            _fmt(v.get("psnr_db"), ".1f"), _fmt(v.get("cosine"), ".6f"), _fmt(v.get("max_abs_error"), ".2e"),
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
        f"- backend version: {manifest.get('backend_version') or '–'}; created {manifest.get('created')}",
    ]
    if src.get("note"):
        lines.append(f"- note: {src['note']}")
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
        from edgediff.profile.chart import latency_chart

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
                         f"{e2e['guidance_scale']}: image PSNR artifacts vs PyTorch **{_fmt(e2e['psnr_db'], '.2f')} dB** "
                         f"(gate {e2e['min_psnr_db']} dB): {e2e['status']}.")
            if e2e.get("image"):
                lines += ["", f"![PyTorch (left) vs {manifest['backend']} (right)]({e2e['image']})"]
        lines.append("")
    if manifest.get("precision_plan"):
        from edgediff.slim.quantize import report_section

        lines += report_section(manifest["precision_plan"], bundle_dir)
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
    timings = manifest.get("timings_s")
    if timings:
        lines += ["## Stage times", "", markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()]), ""]
    path = Path(bundle_dir) / "report.md"
    path.write_text("\n".join(lines))
    return path


def _plain(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, default=str)
