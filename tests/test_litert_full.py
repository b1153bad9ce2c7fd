"""Full-size litert checks (slow: run under the heavy lock, e.g.
`flock /tmp/edgediff-heavy.lock python -m pytest -m slow tests/test_litert_full.py`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SD15 = SHARED / "architectures" / "stable-diffusion-v1-5"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (SHARED / "weights" / "taef2_decoder.pth").exists(), reason="shared/weights missing")
def test_taef2_decoder_round_trip_fp32_and_int8(tmp_path):
    """Real photos through encoder -> decoder: the fp32 file matches PyTorch, int8 stays close."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "taef2_litert.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    psnr = json.loads((tmp_path / "results.json").read_text())["psnr_db"]
    for name, reference in psnr["pytorch"].items():
        assert abs(psnr["fp32"][name] - reference) < 0.05, name
        assert psnr["int8_weights"][name] > reference - 1.0, name
        assert psnr["int8_full"][name] > reference - 4.0, name


@pytest.mark.skipif(not SD15.exists(), reason="shared SD 1.5 architecture missing")
def test_sd15_unet_fp32_chunks_fit_android_and_the_memory_budget(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "litert_unet.py"), str(SD15), "--precisions",
                           "fp32", "--no-pytorch", "--runs", "1", "--warmup", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads((tmp_path / "results.json").read_text())
    assert "error" not in result, result.get("error")
    assert result["max_file_bytes"] < 2 * 1024**3
    assert result["peak_rss_convert_mb"] < 12 * 1024
    assert result["parity"]["psnr_db"] > 40
