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


def tiny_ort_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model folder, bundle) of tiny_ort_bundle: for tests that convert the same tiny pipeline another way and
    compare with the shared bundle; callers must modify neither."""
    bundle = tiny_ort_bundle(tmp_path_factory)
    return bundle.parents[1] / "tiny-sd", bundle


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


def _saved_bytes(folder: Path) -> int:
    """Bytes of the tensors in a component folder's safetensors files (their headers not counted)."""
    from safetensors.numpy import load_file

    return sum(a.nbytes for file in folder.glob("*.safetensors") for a in load_file(str(file)).values())


def sdxl_turbo_litert_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """The tiny SDXL-Turbo pipeline (tests/sdxl_tiny.py) converted once per run for LiteRT, as test_sdxl (turbo on
    LiteRT, against diffusers) and test_large_models (a text encoder converted in chunks) both need it: returns
    (model folder, bundle, max_chunk_bytes). The chunk budget lies between the two text encoders' weights, so
    text_encoder_2 (the one that is 2.8 GB at full size) is converted in chunks and text_encoder and the UNet whole:
    one conversion holds both forms. Callers must not modify it (copy first)."""
    from filelock import FileLock

    from edgediff.cli import main
    from tests.sdxl_tiny import write_tiny_sdxl

    root = _run_root(tmp_path_factory) / "shared-sdxl-turbo-litert"
    model, bundle = root / "tiny-sdxl-turbo", root / "out" / "litert"
    with FileLock(str(root) + ".lock"):
        if not (model / "model_index.json").is_file():
            write_tiny_sdxl(model, turbo=True)
        # text_encoder_2 = text_encoder + its 32x32 projection (4 KB): the midpoint splits only the second
        budget = (_saved_bytes(model / "text_encoder") + _saved_bytes(model / "text_encoder_2")) // 2
        if not (bundle / "manifest.json").is_file():
            assert main(["convert", str(model), "--target", "litert", "--output", str(root / "out"), "--no-profile",
                         "--set", "verify.samples=1", "--set", "pipeline.num_inference_steps=2",
                         "--set", "pipeline.guidance_scale=0",
                         "--set", f"backend.options.max_chunk_bytes={budget}"]) == 0
    return model, bundle, budget
