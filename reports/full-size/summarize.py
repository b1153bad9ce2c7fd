"""Turn a finished `edgediff convert` bundle plus its measure.json into the report's markdown rows.

    python reports/full-size/summarize.py /tmp/full/ort/onnxruntime /tmp/full/ort_measure.json

measure.json comes from the wrapper that ran the convert (wall time, peak RSS of the process tree sampled every
0.5 s, load averages); the bundle gives sizes, verify results and the host profile.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarize(bundle: Path, measure: Path | None) -> str:
    manifest = json.loads((bundle / "manifest.json").read_text())
    lines = []
    if measure and measure.exists():
        m = json.loads(measure.read_text())
        lines.append(f"exit {m['rc']}, wall {m['wall_s']:.0f} s, peak RSS (process tree) {m['peak_tree_rss_gb']:.2f} GB, "
                     f"1-min load {m['load_start'][0]:.1f} at start, {max(m['load_samples'] or [0]):.1f} max sampled")
    lines.append(f"stage times (s): {manifest.get('timings_s')}")
    lines += ["", "| component | files | bytes (GB) | PSNR dB (min) | cosine | max abs err | status |",
              "|---|---|---|---|---|---|---|"]
    for name, c in manifest["components"].items():
        v = c["verify"]
        extra = c.get("extra_files", [])
        parts = c.get("chunks") or [{**c, "bytes": c["bytes"] - sum(x["bytes"] for x in extra)}] + extra
        files = ", ".join(f"{x['file']} ({x['bytes'] / 1e9:.3f})" for x in parts)
        lines.append(f"| {name} | {files} | {c['bytes'] / 1e9:.3f} | "
                     f"{v.get('psnr_db')} ({v.get('min_psnr_db')}) | {v.get('cosine')} | {v.get('max_abs_error')} | "
                     f"{v.get('status')} |")
    e2e = manifest["verify"]["end_to_end"]
    lines.append(f"\nend to end: {e2e.get('status')}, image PSNR {e2e.get('psnr_db')} dB "
                 f"(min {e2e.get('min_psnr_db')}), {e2e.get('steps')} steps, guidance {e2e.get('guidance_scale')}")
    profile = bundle / "profile.json"
    if profile.exists():
        records = json.loads(profile.read_text())
        records = records.get("records", records) if isinstance(records, dict) else records
        lines += ["", "| component | engine | median ms | p90 ms | runs | threads | peak RSS MB | load 1-min |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in records:
            lines.append(f"| {r['component']} | {r['backend']} | {r['median_ms']:.0f} | {r['p90_ms']:.0f} | {r['runs']} | "
                         f"{r['settings'].get('threads')} | {r['peak_memory_mb']:.0f} | "
                         f"{r['extra'].get('load_average_1min')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None))
