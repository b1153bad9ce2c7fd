"""The hostile-input corpus (issue 16): one tiny real model and one bundle of it for the whole session; each case
works on a copy. Areas: test_inputs (model folders, recipes, CLI values), test_bundles (tampered and malicious
bundles, output locations), test_signals (SIGINT / SIGTERM / SIGKILL and leftovers), test_devices (adb / ssh
failures), test_fuzz (the manifest and recipe readers under hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_bundle import tiny_ort_bundle


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """A real tiny diffusers pipeline folder (built once; cases copy it)."""
    from tests.tiny import write_tiny_pipeline

    return write_tiny_pipeline(tmp_path_factory.mktemp("hostile-model") / "tiny")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A real ONNX Runtime bundle of the tiny pipeline, converted once (cases copy it)."""
    return tiny_ort_bundle(tmp_path_factory)  # the run's shared one (tests/shared_bundle.py)
