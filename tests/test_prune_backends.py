"""Pruned UNets (no mid block, per-stage layer counts, fewer stages) lower and verify in every backend.

The fast test uses a tiny pruned UNet; the slow one the BK-SDM presets of the real SD 1.5 UNet (random
weights), run it under `flock /tmp/edgediff-heavy.lock python -m pytest -m slow tests/test_prune_backends.py`.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

from edgediff.backends.base import open_artifact
from edgediff import defaults, verify
from edgediff.backends.base import BACKEND_MODULES, get_backend
from edgediff.errors import BackendUnavailable
from edgediff.model.components import ComponentShapes, build_components
from edgediff.model.load import LoadedModel
from edgediff.slim import prune
from edgediff.slim.prune import PruneSpec

SD15_UNET = Path(__file__).resolve().parents[2] / "shared/architectures/stable-diffusion-v1-5/unet/config.json"
TINY_SPEC = PruneSpec(remove_down=((0, 1), (2, 0)), remove_up=((3, 1), (1, 2)), drop_mid=True)


def _backend(name: str):
    try:
        importlib.import_module(BACKEND_MODULES[name])
    except ImportError:
        pytest.skip(f"backend module {BACKEND_MODULES[name]} is not in this checkout")
    backend = get_backend(name)
    try:
        backend.check_available()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    return backend


def lower_and_verify(backend_name: str, unet, size_px: int, tmp_path: Path) -> None:
    backend = _backend(backend_name)
    model = LoadedModel(source="pruned", kind="unet", unet=unet.eval(), random_weights=True)
    (component,) = build_components(model, ["unet"], ComponentShapes(size_px, size_px))
    options = backend.Options()
    artifact = backend.lower(component, options, "fp32", tmp_path)
    assert [s.shape for s in artifact.outputs] == [s.shape for s in component.outputs]
    runnable, why = backend.can_run_here()
    if not runnable:
        structural = backend.structural_check(artifact, options, "fp32")
        assert structural["passed"], structural
        pytest.skip(f"lowered and structurally checked; numeric parity needs: {why}")
    session = open_artifact(backend, artifact, options)
    limits = verify.Thresholds(defaults.MIN_PSNR_DB["fp32"], defaults.MIN_COSINE["fp32"])
    result = verify.check_component("unet", component.run_torch, session, [component.example_inputs(1)], limits)
    assert result.status == "passed", result.metrics


# ONNX Runtime runs in the default suite; LiteRT and Core ML conversions take minutes of CPU, so their
# pruned-UNet runs are `slow` (their plain-UNet lowering is in the default suite's conformance test).
FAST_BACKENDS = ("onnxruntime",)


@pytest.mark.parametrize("backend_name", [
    name if name in FAST_BACKENDS else pytest.param(name, marks=pytest.mark.slow) for name in sorted(BACKEND_MODULES)
])
def test_tiny_pruned_unet_in_every_backend(backend_name, tmp_path):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    teacher = UNet2DConditionModel(
        sample_size=8, block_out_channels=(8, 16, 16, 16), layers_per_block=2, norm_num_groups=4,
        cross_attention_dim=8, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    student = prune.prune_unet(teacher, TINY_SPEC)
    assert student.mid_block is None and list(student.config.layers_per_block) == [1, 2, 1, 2]
    lower_and_verify(backend_name, student, 64, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not SD15_UNET.exists(), reason="shared/architectures is not beside the repo")
@pytest.mark.parametrize("preset", prune.PRESETS)
@pytest.mark.parametrize("backend_name", sorted(BACKEND_MODULES))
def test_pruned_sd15_presets_in_every_backend(backend_name, preset, tmp_path):
    """Full-size pruned SD 1.5 UNets (random weights) at 256x256 (32x32 latents, batched CFG)."""
    from diffusers import UNet2DConditionModel

    config = json.loads(SD15_UNET.read_text())
    torch.manual_seed(0)
    student = UNet2DConditionModel.from_config(prune.pruned_config(config, prune.preset_spec(config, preset)))
    lower_and_verify(backend_name, student, 256, tmp_path)
