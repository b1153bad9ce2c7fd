"""Full-size Core ML checks (pytest -m slow): the real SD 1.5 / SD 2.1-base UNets with seeded random weights.

In PyTorch: the split-einsum rewrite and the two-chunk split reproduce the diffusers UNet at 512x512.
With coremltools: the SD 1.5 UNet converts in Apple's Swift layout as two 6-bit palettized chunks whose structural
checks pass. Heavy runs take /tmp/edgediff-heavy.lock so two never overlap on the shared machine.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.tiny import SD15, SD21  # noqa: E402

pytestmark = pytest.mark.slow
HEAVY_LOCK = Path("/tmp/edgediff-heavy.lock")


@contextmanager
def heavy_lock():
    with open(HEAVY_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def full_unet(folder: Path):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    config = json.loads((folder / "unet" / "config.json").read_text())
    return UNet2DConditionModel.from_config(config).eval().requires_grad_(False)


@pytest.mark.parametrize("folder", [SD15, SD21], ids=["sd15", "sd21-base"])
def test_full_size_rewrite_and_chunks_equal_diffusers_unet(folder):
    from edgediff.backends.coreml.attention import rewrite_attention
    from edgediff.model.split import run_chunks, split_unet
    from edgediff.verify import compare

    with heavy_lock():
        unet = full_unet(folder)
        g = torch.Generator().manual_seed(0)
        size = unet.config.sample_size
        sample = torch.randn(2, 4, size, size, generator=g)
        t = torch.tensor([981.0, 981.0])
        context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
        with torch.no_grad():
            reference = unet(sample, t, context).sample.numpy()
            rebuilt, report = rewrite_attention(unet, "split_einsum")
            assert report.transformer_blocks == 16 and not report.kept
            rewritten = rebuilt(sample, t, context.transpose(1, 2).unsqueeze(2)).sample.numpy()
            chunks = split_unet(rebuilt, 2, granularity="layer")
            chained = run_chunks(chunks, {"sample": sample, "timestep": t, "encoder_hidden_states": context})
        assert compare(reference, rewritten).psnr_db > 80
        assert compare(reference, chained["noise_pred"].numpy()).psnr_db > 80
        sizes = [c.weight_bytes for c in chunks]
        assert max(sizes) / sum(sizes) < 0.53  # layer cut points: SD 1.5 / 2.1 split 52/48


def test_full_size_sd15_unet_converts_chunked_6bit_in_swift_layout(tmp_path):
    pytest.importorskip("coremltools")
    from edgediff.backends.coreml import CoreMLBackend, CoreMLOptions, inspect_package
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import LoadedModel

    with heavy_lock():
        model = LoadedModel(source=str(SD15), kind="unet", unet=full_unet(SD15), random_weights=True)
        (unet,) = build_components(model, ["unet"], ComponentShapes(512, 512))
        options = CoreMLOptions(swift_layout=True, chunk_unet=2, palettize_bits=6, kmeans_workers=2)
        backend = CoreMLBackend()
        artifact = backend.lower(unet, options, "fp16", tmp_path)
        result = backend.structural_check(artifact, options, "fp16")
    assert result["status"] == "passed"
    assert [c.path.name for c in artifact.chunks] == ["UnetChunk1.mlpackage", "UnetChunk2.mlpackage"]
    total = sum(inspect_package(c.path).weight_file_bytes for c in artifact.chunks)
    params = sum(p.numel() for p in model.unet.parameters())
    assert total < 0.42 * params * 2  # 6-bit LUTs instead of fp16
