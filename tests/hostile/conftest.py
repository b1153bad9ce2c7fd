"""The hostile-input corpus (issue 16): one tiny real model and one bundle of it for the whole session; each case
works on a copy. Areas: test_inputs (model folders, recipes, CLI values), test_bundles (tampered and malicious
bundles, output locations), test_signals (SIGINT / SIGTERM / SIGKILL and leftovers), test_devices (adb / ssh
failures), test_fuzz (the manifest and recipe readers under hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.support import CONVERT_FAST, run_cli


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """A real tiny diffusers pipeline folder (built once; cases copy it)."""
    from tests.tiny import write_tiny_pipeline

    return write_tiny_pipeline(tmp_path_factory.mktemp("hostile-model") / "tiny")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_folder, tmp_path_factory) -> Path:
    """A real ONNX Runtime bundle of the tiny pipeline, converted once (cases copy it)."""
    out = tmp_path_factory.mktemp("hostile-bundle")
    done = run_cli(["convert", str(tiny_folder), "--target", "onnxruntime", "-o", str(out), *CONVERT_FAST])
    assert done.returncode == 0, done.stderr[-2000:]
    return out / "onnxruntime"
