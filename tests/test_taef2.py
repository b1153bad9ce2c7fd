"""TAEF2 modules against the real trained weights and real photos (PyTorch only, no conversion)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgediff.nets.taef2 import LATENT_CHANNELS, TAEF2Decoder, TAEF2Encoder, image_tensor, load_taef2, psnr

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "weights"
IMAGES = sorted((SHARED / "images").glob("*.jpg"))

needs_weights = pytest.mark.skipif(not (WEIGHTS / "taef2_decoder.pth").exists(), reason="shared/weights missing")


def test_shapes_with_random_weights():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        z = TAEF2Encoder()(x)
        y = TAEF2Decoder()(z)
    assert z.shape == (1, LATENT_CHANNELS, 8, 12)
    assert y.shape == x.shape


@needs_weights
def test_state_dicts_load_strictly():
    for part in ("encoder", "decoder"):
        module = load_taef2(part, WEIGHTS / f"taef2_{part}.pth")
        assert not module.training
        assert sum(p.numel() for p in module.parameters()) > 1_000_000


@needs_weights
@pytest.mark.skipif(not IMAGES, reason="shared/images missing")
def test_round_trip_reconstructs_real_photos():
    """A wrong layer order or activation gives noise (< 12 dB); the trained autoencoder gives 19.9-28.2 dB on the
    four shared photos at width 128 (the screenshot's small text is the hardest), 23.6 dB on average."""
    encoder = load_taef2("encoder", WEIGHTS / "taef2_encoder.pth")
    decoder = load_taef2("decoder", WEIGHTS / "taef2_decoder.pth")
    scores = {}
    for path in IMAGES:
        x = image_tensor(path, width=128)
        with torch.no_grad():
            y = decoder(encoder(x))
        scores[path.name] = psnr(x.numpy(), y.numpy())
    assert min(scores.values()) > 17.0, scores
    assert sum(scores.values()) / len(scores) > 21.0, scores


def test_image_tensor_crop(tmp_path):
    from PIL import Image

    Image.new("RGB", (640, 400), (255, 0, 0)).save(tmp_path / "red.png")
    x = image_tensor(tmp_path / "red.png", width=512, height=192)
    assert x.shape == (1, 3, 192, 512)
    assert float(x[0, 0].mean()) == pytest.approx(1.0) and float(x[0, 1:].max()) == 0.0
    with pytest.raises(ValueError, match="cannot crop"):
        image_tensor(tmp_path / "red.png", width=512, height=400)
