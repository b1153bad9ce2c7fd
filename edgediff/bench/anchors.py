"""The anchors: other converters run in the same suite, and figures measured earlier that this suite cannot rerun.

Optimum (optimum-onnx 0.1.0) pins transformers < 4.58 while edgediff's convert extra needs transformers 5, so it
cannot share edgediff's environment; it runs in its own (`benchmarks/optimum-anchor.txt`), which the runner
finds here. litert-torch is one of edgediff's own dependencies and runs in-process like edgediff's backends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OPTIMUM_SETUP = ("python3 -m venv .venv-optimum && .venv-optimum/bin/pip install \"torch==2.13.0\" && "
                 ".venv-optimum/bin/pip install -r benchmarks/optimum-anchor.txt")

# Figures of converters that do not run here (or did not in this run), measured earlier on this machine class
# (2-core x86, 24 GB) and given in issue 22. They are printed in their own table, labelled "not from this run".
EARLIER_FIGURES = [
    {"converter": "Apple ml-stable-diffusion (Core ML), SPLIT_EINSUM attention", "model": "SD 1.5",
     "scope": "UNet", "wall": "4:34", "peak_gb": 8.9, "artifact": "1.72 GB (fp16)"},
    {"converter": "Apple ml-stable-diffusion (Core ML), ORIGINAL attention", "model": "SD 1.5",
     "scope": "UNet", "wall": "3:16", "peak_gb": 8.5, "artifact": ""},
    {"converter": "Optimum ONNX export, with its output check", "model": "SD 1.5",
     "scope": "whole pipeline", "wall": "5:09", "peak_gb": 11.0, "artifact": ""},
    {"converter": "Optimum ONNX export, no output check", "model": "SD 1.5",
     "scope": "whole pipeline", "wall": "2:36", "peak_gb": 8.8, "artifact": ""},
    {"converter": "litert-torch Stable Diffusion example", "model": "SD 1.5",
     "scope": "three models (CLIP, diffusion, decoder)", "wall": "4:18", "peak_gb": 12.1, "artifact": ""},
    {"converter": "edgediff ONNX Runtime, UNet alone (one verification sample)", "model": "SD 1.5",
     "scope": "UNet", "wall": "", "peak_gb": 9.13, "artifact": ""},
    {"converter": "edgediff LiteRT, UNet alone (one verification sample)", "model": "SD 1.5",
     "scope": "UNet", "wall": "", "peak_gb": 14.3, "artifact": ""},
    {"converter": "edgediff convert (default settings), ONNX Runtime", "model": "SD 1.5",
     "scope": "whole pipeline, verified", "wall": "", "peak_gb": 12.07, "artifact": ""},
]
# int8 latency figures this suite does not measure (its rows are fp32), with where they were recorded. The ratio
# the targets section prints is computed from the two s/step figures, not copied.
EARLIER_INT8: list[dict[str, Any]] = [
    {"what": "ONNX Runtime int8 (static QDQ, every layer) SD 1.5 UNet vs the fp32 file of the same run",
     "int8_s": 10.71, "fp32_s": 23.18, "target": 0.40,
     "conditions": "512x512 batch 2, one thread, 5 interleaved runs, load 2.1-3.1",
     "source": "reports/int8/README.md, section \"Whole SD 1.5 UNet (sessions 3 and 4)\""},
    {"what": "LiteRT int8 (weight-only, every layer) SD 1.5 UNet vs fp32 chunks of the same run",
     "int8_s": 30.74, "fp32_s": 44.87, "target": 0.50,
     "conditions": "512x512 batch 2, 5 runs, load 3.4-5.1",
     "source": "reports/int8/README.md (same section) and reports/litert-sd15/README.md, first table"},
]
EARLIER_LATENCY = ("SD 1.5 UNet 512x512, batch 1, 2 threads, 5 interleaved runs, quiet machine: PyTorch eager "
                   "4.38 s/step, ONNX Runtime on Optimum's export 3.56 s (0.81x), edgediff's ONNX Runtime artifact "
                   "3.26 s (0.74x)")


def optimum_python(given: str | None) -> tuple[str | None, str]:
    """The anchor environment's python: --optimum-python, $EDGEDIFF_OPTIMUM_PYTHON, or .venv-optimum in the
    repository. (None, why) when none exists."""
    for candidate in (given, os.environ.get("EDGEDIFF_OPTIMUM_PYTHON"), str(ROOT / ".venv-optimum" / "bin" / "python")):
        if candidate and Path(candidate).exists():
            return candidate, ""
    return None, (f"Optimum's environment was not found; create it with `{OPTIMUM_SETUP}` or pass --optimum-python "
                  "(optimum-onnx needs transformers < 4.58, so it cannot share edgediff's environment)")


def optimum_worker_path() -> str:
    return str(Path(__file__).with_name("optimum_worker.py"))


def this_python() -> str:
    return sys.executable
