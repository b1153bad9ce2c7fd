"""Full-size real architectures with seeded random weights (no weights can be downloaded here).

Slow: run under the shared lock, `flock /tmp/edgediff-heavy.lock python -m pytest -m slow tests/test_full_size.py
-q --timeout=7200`. Measured for SD 1.5 (reports/full-size/README.md): the convert process peaks at 12.1 GB and,
with a profiling worker alive beside it, the process tree at 18.6 GB; 25 CPU-minutes at one thread.
"""

from __future__ import annotations

import json

import pytest

from edgediff.cli import main
from tests.tiny import BKSDM, SD15, SD21

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("folder", [SD15, SD21], ids=["sd15", "sd21"])
def test_full_size_pipeline_converts_and_verifies_with_onnxruntime(folder, tmp_path):
    code = main(["convert", str(folder), "--random-weights", "--target", "onnxruntime", "--output", str(tmp_path),
                 "--set", "pipeline.num_inference_steps=2", "--set", "profile.runs=3"])
    assert code == 0
    manifest = json.loads((tmp_path / "onnxruntime" / "manifest.json").read_text())
    assert manifest["pipeline"]["height"] == 512 and manifest["pipeline"]["latent_shape"] == [1, 4, 64, 64]
    for name, entry in manifest["components"].items():
        assert entry["verify"]["status"] == "passed", (name, entry["verify"])
    # the UNet's 3.4 GB of fp32 weights cannot live inside one protobuf
    assert manifest["components"]["unet"]["extra_files"]
    assert manifest["verify"]["end_to_end"]["status"] == "passed"


def test_bk_sdm_small_unet_folder_converts(tmp_path):
    """A bare UNet folder (no model_index.json) with no mid block."""
    assert main(["convert", str(BKSDM / "unet"), "--random-weights", "--output", str(tmp_path), "--no-profile"]) == 0
    manifest = json.loads((tmp_path / "onnxruntime" / "manifest.json").read_text())
    assert list(manifest["components"]) == ["unet"]
    assert manifest["components"]["unet"]["verify"]["status"] == "passed"
