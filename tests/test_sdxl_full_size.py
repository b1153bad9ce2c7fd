"""The full SDXL base architecture (2.6B-parameter UNet, both text encoders) with seeded random weights, built from
the configs shipped in edgediff/model/configs/sdxl/, converted per backend in a child process whose peak RSS
(the process tree's, from getrusage of the children) must stay below 20 GB.

Slow: run one at a time under the shared lock, e.g. `flock /tmp/edgediff-heavy.lock python -m pytest -m slow
tests/test_sdxl_full_size.py -k onnxruntime -q --timeout=14400`.

Measured once (2026-12-03, load ~1.1, shared 2-core / 24 GB machine; the UNet alone, `--components unet`, in a
20 GB memory cgroup): loading the whole random-weight pipeline takes the process to 13.6 GB; lowering the UNet to
ONNX took 2 min 2 s (unet.onnx 6.5 MB + unet.onnx.data 10.27 GB, one file); the verify stage then opened the
ONNX Runtime session beside the resident PyTorch pipeline and the process was killed at the 20 GB cap (max RSS
20.1 GB, 3 min 35 s wall). So test_onnxruntime_converts_within_memory fails today: verify needs the PyTorch
pipeline released (or the text encoders not loaded for a UNet-only run) before the session opens.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sdxl_tiny import write_full_size_configs

pytestmark = pytest.mark.slow
PEAK_LIMIT_GB = 20.0
TWO_GB = 2**31


def _convert(folder: Path, out: Path, target: str, *extra: str) -> tuple[float, float]:
    """Run `edgediff convert` in a child; returns (peak RSS of the largest child in GB, wall seconds)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "edgediff.cli", "convert", str(folder), "--random-weights", "--target", target,
         "--output", str(out), "--no-profile", "--set", "verify.samples=1", "--set", "pipeline.num_inference_steps=2",
         *extra], capture_output=True, text=True)
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    print(f"{target}: peak RSS {peak_gb:.1f} GB, {wall / 60:.1f} min")
    return peak_gb, wall


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory) -> Path:
    return write_full_size_configs(tmp_path_factory.mktemp("sdxl-full") / "stable-diffusion-xl-base-1.0")


def _files(bundle: Path) -> list[Path]:
    return [p for p in bundle.rglob("*") if p.is_file()]


def test_onnxruntime_converts_within_memory(sdxl_folder, tmp_path):
    peak, _ = _convert(sdxl_folder, tmp_path, "onnxruntime", "--set", "verify.end_to_end=false")
    manifest = json.loads((tmp_path / "onnxruntime" / "manifest.json").read_text())
    assert all(c["verify"]["status"] == "passed" for c in manifest["components"].values())
    assert manifest["components"]["unet"]["extra_files"]  # 10 GB of fp32 weights: external data
    assert max(p.stat().st_size for p in (tmp_path / "onnxruntime").glob("*.onnx")) < TWO_GB  # protobuf's limit
    assert peak < PEAK_LIMIT_GB


@pytest.mark.xfail(strict=True, reason="not done: the ONNX Runtime backend writes each model's external weights "
                   "to one .data file (SDXL's UNet: ~10 GB); sharding them into files under 2 GB is left to do")
def test_onnxruntime_every_file_under_2gb(sdxl_folder, tmp_path):
    _convert(sdxl_folder, tmp_path, "onnxruntime", "--set", "verify.end_to_end=false", "--components", "unet")
    assert max(p.stat().st_size for p in _files(tmp_path / "onnxruntime")) < TWO_GB


@pytest.mark.xfail(strict=True, reason="not done: text_encoder_2 (OpenCLIP bigG, 2.8 GB of fp32 weights) is over "
                   "LiteRT's max_chunk_bytes and only UNets are split into chunks so far")
def test_litert_converts_in_chunks_under_2gb(sdxl_folder, tmp_path):
    peak, _ = _convert(sdxl_folder, tmp_path, "litert", "--set", "verify.end_to_end=false")
    manifest = json.loads((tmp_path / "litert" / "manifest.json").read_text())
    assert len(manifest["components"]["unet"]["chunks"]) > 1
    assert max(p.stat().st_size for p in _files(tmp_path / "litert")) < TWO_GB
    assert peak < PEAK_LIMIT_GB


def test_coreml_converts_chunked(sdxl_folder, tmp_path):
    peak, _ = _convert(sdxl_folder, tmp_path, "coreml", "--set", "pipeline.guidance_scale=0")
    manifest = json.loads((tmp_path / "coreml" / "manifest.json").read_text())
    unet = manifest["components"]["unet"]
    assert len(unet["chunks"]) >= 2 and unet["verify"]["structural"]["passed"]
    assert peak < PEAK_LIMIT_GB
