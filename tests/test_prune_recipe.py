"""The `prune` recipe step through `edgediff convert`: the bundle's UNet is the pruned one and still verifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgediff.cli import main
from tests.tiny import SD15, write_tiny_pipeline

pytestmark = pytest.mark.skipif(not SD15.is_dir(), reason="shared/architectures is not beside the repo")
onnx = pytest.importorskip("onnx")


def unet_initializers(bundle: Path) -> int:
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = onnx.load(str(bundle / manifest["components"]["unet"]["file"]))
    return sum(int(__import__("numpy").prod(t.dims)) for t in model.graph.initializer)


def convert(model: Path, out: Path, recipe: Path | None) -> Path:
    argv = ["convert", str(model), "--target", "onnxruntime", "--output", str(out), "--no-profile",
            "--components", "unet"]
    code = main(argv + (["--recipe", str(recipe)] if recipe else []))
    assert code == 0, code
    return out / "onnxruntime"


def test_convert_with_a_prune_step_bundles_the_pruned_unet(tmp_path: Path):
    import torch

    torch.set_num_threads(1)
    model = write_tiny_pipeline(tmp_path / "tiny-sd")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[[slim.steps]]\nkind = "prune"\n[slim.steps.options]\npreset = "bk-small"\n')
    pruned = convert(model, tmp_path / "pruned", recipe)

    from edgediff.slim import prune

    config = json.loads((model / "unet" / "config.json").read_text())
    teacher = prune.parameter_count(config)
    expected = prune.parameter_count(prune.pruned_config(config, prune.preset_spec(config, "bk-small")))
    assert expected < 0.8 * teacher
    # the exported graph holds the student's weights, give or take what the exporter folds (< 1% here)
    assert abs(unet_initializers(pruned) - expected) < 0.02 * expected
    manifest = json.loads((pruned / "manifest.json").read_text())
    assert manifest["components"]["unet"]["verify"]["status"] == "passed"


def test_unknown_prune_option_is_a_recipe_error(tmp_path: Path):
    model = write_tiny_pipeline(tmp_path / "tiny-sd")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[[slim.steps]]\nkind = "prune"\n[slim.steps.options]\npreset = "bk-small"\ndrop_mid = true\n')
    code = main(["convert", str(model), "--target", "onnxruntime", "--output", str(tmp_path / "out"),
                 "--no-profile", "--recipe", str(recipe)])
    assert code == 2
