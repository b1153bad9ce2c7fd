"""BENCHMARKS.md and its plots from the rows' JSON: readable tables, the load beside every row, anchors from
earlier runs in their own table labelled as such, and how each figure was measured."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgediff.bench.anchors import EARLIER_FIGURES, EARLIER_LATENCY
from edgediff.bench.rows import CONVERTERS, MODELS
from edgediff.bench.targets import targets

COMMAND = "python -m edgediff.bench --suite all"

HOW = """\
How each figure is measured (edgediff/bench/):

- **convert s**: wall time of the conversion call alone (`Backend.lower`, Optimum's `export_models`,
  `litert_torch.convert(...).export`); the conversion subprocess's whole wall time (Python start, imports, building
  the PyTorch UNet) is in the JSON as `convert.wall_s`.
- **peak RSS**: the conversion subprocess and all its descendants, resident memory summed every 0.1 s with psutil
  (`tree`); in brackets the largest single process's own peak from `os.wait4` (`ru_maxrss`). Building the PyTorch UNet
  is part of the process, as it is for a user. Optimum loads the same weights from a diffusers folder.
- **artifact MB**: every file the converter wrote (model, external weights, chunks; not Optimum's config.json),
  summed on disk, with the largest single file (Android maps at most 2 GB per file).
- **load cold / warm**: opening the artifact with edgediff's runtime session (ONNX Runtime graph optimisation at
  ORT_ENABLE_ALL, LiteRT interpreter + XNNPACK); cold = the first session in a fresh process (the OS page cache is
  not dropped), warm = a second session after the first is closed; first call = the first inference on the warm
  session (LiteRT maps the file lazily and XNNPACK packs weights on the first call, so its load is cheap and its
  first call is not).
- **s/step**: median (p90) UNet call, interleaved with PyTorch eager in the same process and the same minutes
  (eager, artifact, artifact, eager, ...), after warm-up; **× eager** = median / eager median of the same row.
  **CPU s/step**: process CPU time per call (all threads). **% of GEMM rate**: the UNet's FLOPs per call (PyTorch's
  FlopCounterMode) / median seconds, divided by the best float32 GEMM rate PyTorch reaches here (torch.mm 1024³,
  best of 1.5 s) measured in the same process just before. It is a measured rate, not the hardware bound: XNNPACK's
  convolution kernels can exceed it (above 100%).
- **PSNR**: artifact output vs PyTorch eager on the same seeded input (peak = reference range).
- **load**: the 1-minute load average, min–max while the row converted / was timed (2 cores: above 2 means the
  row shared the CPUs with other work, and its seconds are slower than a quiet machine's).
"""


def _num(value: Any, fmt: str = ".2f", scale: float = 1.0) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "–"
    return format(value * scale, fmt)


def _load(span: dict[str, Any] | None) -> str:
    if not span:
        return "–"
    return f"{span.get('min', 0):.1f}–{span.get('max', 0):.1f}"


def row_cells(row: dict[str, Any]) -> list[str]:
    c, t = row.get("convert") or {}, row.get("timing") or {}
    ok_c, ok_t = c.get("status") == "ok", t.get("status") == "ok"
    art = t.get("artifact") or {}
    files = {k: v for k, v in (c.get("files_on_disk") or {}).items() if not k.endswith(".json")}
    loads = f"{_load(c.get('load_average_1min'))} / {_load(t.get('load_average_1min_row'))}"
    memory = (f"{_num(c.get('peak_tree_rss_mb'), '.2f', 1 / 1024)} ({_num(c.get('peak_process_rss_mb'), '.2f', 1 / 1024)})"
              if c.get("peak_tree_rss_mb") else "–")
    status = "ok" if ok_c and ok_t else (str(c.get("status")) if not ok_c else f"timing {t.get('status')}")
    return [f"{row['converter']}", status,
            _num(c.get("convert_s"), ".1f") if ok_c else "–", memory,
            (f"{_num(c.get('artifact_bytes'), '.1f', 1e-6)} ({len(files)} files, largest "
             f"{_num(max(files.values()), '.1f', 1e-6)})" if ok_c and files else "–"),
            (f"{_num(t.get('session_load_cold_s'))} / {_num(t.get('session_load_warm_s'))} / "
             f"{_num(t.get('first_run_s'))}" if ok_t else "–"),
            f"{_num(art.get('median_s'), '.3f')} ({_num(art.get('p90_s'), '.3f')})" if ok_t else "–",
            _num(art.get("ratio_to_eager")) if ok_t else "–",
            _num(art.get("cpu_s_per_step"), ".3f") if ok_t else "–",
            _num(art.get("fraction_of_gemm_peak"), ".0f", 100) if ok_t else "–",
            _num((t.get("parity") or {}).get("psnr_db"), ".1f") if ok_t else "–", loads]


HEADER = ["converter", "status", "convert s", "peak RSS GB tree (process)", "artifact MB (files, largest)", "load cold / warm / first call s",
          "s/step median (p90)", "× eager", "CPU s/step", "% of GEMM rate", "PSNR dB", "load convert / timing"]


def _batch(row: dict[str, Any]) -> int:
    return int((row.get("settings") or {}).get("batch", 1))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def write_markdown(path: Path, rows: list[dict[str, Any]], machine: dict[str, Any], command: str,
                   comparison: dict[str, Any] | None, plots: list[str]) -> None:
    lines = ["# edgediff benchmarks", "",
             "Regenerate this file (one row per model × converter, each under the heavy lock, resumable; "
             "`--force` redoes finished rows):", "", "```", COMMAND, "```", "",
             f"This file was written by `{command}`. Every figure below is from the rows in `rows/*/row.json` "
             "(each row's finish time is in its JSON); figures from earlier runs are only in the table labelled "
             "**not from this run**.", "",
             "## Machine", ""]
    lines += _table(["CPU", "flags", "logical CPUs", "memory GB", "fingerprint"],
                    [[machine.get("cpu_model", "?"), " ".join(machine.get("flags", [])),
                      str(machine.get("logical_cpus")), str(machine.get("memory_gb")), machine.get("fingerprint", "")]])
    versions = machine.get("versions", {})
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    for key, model, batch in [(k, m, b) for k, m in MODELS.items() for b in (1, 2)]:
        mine = [r for r in rows if r["model"] == key and _batch(r) == batch]  # one table per model and batch
        if not mine:
            continue
        mine.sort(key=lambda r: list(CONVERTERS).index(r["converter"]) if r["converter"] in CONVERTERS else 99)
        timing: dict[str, Any] = next((r["timing"] for r in mine if (r.get("timing") or {}).get("status") == "ok"), {})
        shapes = timing.get("input_shapes", {}).get("sample")
        settings = mine[0]["settings"]
        lines += [f"## {model.title}" + (f", batch {batch}" if batch != 1 else ""), "",
                  f"UNet input {shapes or '?'}, batch {settings['batch']}, {timing.get('threads', '?')} threads, "
                  f"{settings['runs']} interleaved runs after {settings['warmup']} warm-up; "
                  f"{_num(timing.get('flops_per_step'), '.1f', 1e-9)} GFLOP per call.", ""]
        lines += _table(HEADER, [row_cells(r) for r in mine])
        eager = [(r["converter"], r["timing"]) for r in mine if (r.get("timing") or {}).get("status") == "ok"]
        if eager:
            lines += ["", "PyTorch eager in the same rows (median s/step, CPU s/step, GEMM rate GFLOP/s measured "
                      "in that row): " + "; ".join(
                          f"{name}: {_num(t['eager']['median_s'], '.3f')}, {_num(t['eager']['cpu_s_per_step'], '.3f')}, "
                          f"{_num(t['gemm_peak_gflops'], '.0f')}" for name, t in eager)]
        notes = [f"- {r['converter']}: {(r.get('convert') or {}).get('reason') or (r.get('timing') or {}).get('reason')}"
                 for r in mine if (r.get("convert") or {}).get("status") != "ok"
                 or (r.get("timing") or {}).get("status") != "ok"]
        if notes:
            lines += ["", "Rows without a figure, and why:", "", *notes]
        lines.append("")
    lines += targets(rows)
    lines += ["## Anchors not from this run", "",
              "Measured earlier on this machine class (2-core x86, 24 GB) and given in issue 22; **not from this "
              "run**, kept for the converters this suite does not run here (Apple's converter needs macOS) and for "
              "whole-pipeline scopes the UNet rows above do not cover.", ""]
    lines += _table(["converter (not from this run)", "model", "scope", "wall", "peak GB", "artifact"],
                    [[str(a["converter"]), str(a["model"]), str(a["scope"]), str(a["wall"] or "–"),
                      f"{a['peak_gb']}", str(a["artifact"] or "–")]
                     for a in EARLIER_FIGURES])
    lines += ["", f"Latency, not from this run: {EARLIER_LATENCY}.", ""]
    if comparison is not None:
        lines += ["## Regression check", "",
                  f"Against `{comparison['baseline']}` on this machine (fingerprint {machine.get('fingerprint')}), "
                  f"tolerance {comparison['tolerance']:.0%}:", ""]
        if comparison["findings"]:
            lines += [f"- **{f['key']}**: {f['metric']} {f['baseline']:.4g} → {f['current']:.4g} "
                      f"({f['change']:+.0%})" for f in comparison["findings"]]
        else:
            lines.append("- no row is worse than the baseline by more than the tolerance")
        if comparison["missing"]:
            lines.append(f"- no baseline on this machine for: {', '.join(comparison['missing'])}")
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    lines += [HOW]
    path.write_text("\n".join(lines))


def write_plots(folder: Path, rows: list[dict[str, Any]]) -> list[str]:
    """Latency (s/step, eager beside) and conversion peak memory per converter per model, batch 1; [] without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    rows = [r for r in rows if _batch(r) == 1]  # batch-2 rows are in their own tables, not in the plots
    models = [k for k in MODELS if any(r["model"] == k for r in rows)]
    converters = [c for c in CONVERTERS if any(r["converter"] == c for r in rows)]
    for name, label, pick in (
            ("latency", "UNet s/step (median)",
             lambda r: ((r.get("timing") or {}).get("artifact") or {}).get("median_s")),
            ("memory", "conversion peak RSS, process tree (GB)",
             lambda r: ((r.get("convert") or {}).get("peak_tree_rss_mb") or 0) / 1024 or None)):
        fig, axes = plt.subplots(1, max(len(models), 1), figsize=(4.2 * max(len(models), 1), 3.6), squeeze=False)
        for ax, model in zip(axes[0], models):
            values, eager = [], []
            for c in converters:
                row = next((r for r in rows if r["model"] == model and r["converter"] == c), None)
                values.append((pick(row) if row else None) or 0.0)
                timing = (row or {}).get("timing") or {}
                eager.append(((timing.get("eager") or {}).get("median_s") or 0.0) if name == "latency" else 0.0)
            xs = list(range(len(converters)))
            if name == "latency":
                ax.bar([x - 0.2 for x in xs], values, width=0.4, color="tab:blue", label="artifact")
                ax.bar([x + 0.2 for x in xs], eager, width=0.4, color="none", edgecolor="gray", hatch="//",
                       label="PyTorch eager, same row")
                ax.legend(fontsize=6)
            else:
                ax.bar(xs, values, color="tab:blue")
            ax.set_xticks(xs, converters, rotation=35, ha="right", fontsize=7)
            ax.set_title(MODELS[model].title, fontsize=8)
        axes[0][0].set_ylabel(label, fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=90)
        plt.close(fig)
        written.append(f"plots/{name}.png")
    return written

