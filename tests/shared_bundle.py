"""One tiny ONNX Runtime bundle per test run, shared by the test files that only read it (or copy it first).

Under `pytest -n 2 --dist loadfile` each worker is its own process, so a session-scoped fixture still converts once
per worker and once per file that builds its own: the bundle lives in the run's common temporary folder instead,
converted by the first worker that asks (a file lock makes the other wait) and read by every other one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Every setting a test file relies on: profile.json with 2 timed runs (test_spine), 2 denoising steps, 1 verify sample.
CONVERT_ARGS = ("--target", "onnxruntime", "--set", "profile.runs=2", "--set", "verify.samples=1",
                "--set", "pipeline.num_inference_steps=2")


def _run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def tiny_ort_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pipeline (tests/tiny.py) converted once for ONNX Runtime; callers must not modify it (copy first)."""
    from filelock import FileLock

    from edgediff.cli import main
    from tests.tiny import compact_unet_config, write_tiny_pipeline

    root = _run_root(tmp_path_factory) / "shared-tiny-ort"
    bundle = root / "out" / "onnxruntime"
    with FileLock(str(root) + ".lock"):
        if not (bundle / "manifest.json").is_file():
            # the compact UNet: every SD block type, a third of the 4-level tiny UNet's ONNX export time
            model = write_tiny_pipeline(root / "tiny-sd", unet_config=compact_unet_config())
            assert main(["convert", str(model), *CONVERT_ARGS, "--output", str(root / "out")]) == 0
    return bundle


# How test_runtime converts the default model and how apps/android/tools/prepare_test_data.py does: the same bundle.
DEFAULT_ARGS = ("--target", "onnxruntime", "--no-profile", "--set", "verify.samples=1", "--set",
                "verify.end_to_end=false")


def default_ort_bundle(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Path:
    """The default model (models/shapes-sd) converted once per run for ONNX Runtime, shared by the runtime tests
    and the Kotlin core's test data; callers must not modify it (copy first)."""
    from filelock import FileLock

    from edgediff.cli import main

    root = _run_root(tmp_path_factory) / "shared-default-ort"
    bundle = root / "out" / "onnxruntime"
    with FileLock(str(root) + ".lock"):
        if not (bundle / "manifest.json").is_file():
            assert main(["convert", str(model), *DEFAULT_ARGS, "--output", str(root / "out")]) == 0
    return bundle
