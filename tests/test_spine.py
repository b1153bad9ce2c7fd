"""The spine end to end on a tiny real pipeline: convert -> manifest/report -> verify -> profile, and the
error paths (one `error:` line, exit 2, nothing half-written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgediff.backends.base import open_artifact
from edgediff.cli import main
from tests.shared_bundle import tiny_ort_bundle
from tests.tiny import compact_unet_config, write_tiny_pipeline


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    return write_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def ort_bundle(tmp_path_factory) -> Path:
    """The run's shared tiny bundle (tests/shared_bundle.py): profiled with 2 runs, 2 denoising steps."""
    return tiny_ort_bundle(tmp_path_factory)


def _no_partial_left(out: Path) -> None:
    leftovers = [p.name for p in out.iterdir()] if out.exists() else []
    assert not [n for n in leftovers if n == "onnxruntime" or ".partial" in n], leftovers


def test_manifest_contract(ort_bundle):
    manifest = json.loads((ort_bundle / "manifest.json").read_text())
    assert manifest["format"] == "edgediff-bundle/2"
    assert manifest["backend"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert set(manifest["components"]) == {"text_encoder", "unet", "vae_decoder"}
    for name, entry in manifest["components"].items():
        assert (ort_bundle / entry["file"]).stat().st_size > 0
        assert len(entry["sha256"]) == 64 and entry["bytes"] > 0
        assert entry["inputs"] and entry["outputs"]
        assert entry["verify"]["status"] == "passed" and entry["verify"]["psnr_db"] > 60, (name, entry["verify"])
    unet = manifest["components"]["unet"]
    assert [i["name"] for i in unet["inputs"]] == ["sample", "timestep", "encoder_hidden_states"]
    assert unet["inputs"][0]["shape"] == [2, 4, 8, 8]  # batch 2 for classifier-free guidance
    pipe = manifest["pipeline"]
    assert pipe["height"] == pipe["width"] == 64 and pipe["latent_shape"] == [1, 4, 8, 8]
    assert pipe["vae_scaling_factor"] == pytest.approx(0.18215)
    assert pipe["guidance"]["batched_cfg"] is True and pipe["scheduler"]["num_inference_steps"] == 2
    e2e = manifest["verify"]["end_to_end"]
    assert e2e["status"] == "passed" and e2e["psnr_db"] >= 30
    assert (ort_bundle / "tokenizer" / "vocab.json").exists()
    report = (ort_bundle / "report.md").read_text()
    assert "| unet |" in report and "End to end" in report
    records = json.loads((ort_bundle / "profile.json").read_text())
    engines = {(r["component"], r["backend"]) for r in records}
    assert manifest["memory"]["peak_mb"] > 0 and set(manifest["memory"]["components"]) == set(manifest["components"])
    assert ("unet", "onnxruntime") in engines and ("unet", "pytorch") in engines
    ort_unet = next(r for r in records if r["component"] == "unet" and r["backend"] == "onnxruntime")
    assert ort_unet["median_ms"] > 0 and ort_unet["peak_memory_mb"] > 0 and "ratio_to_pytorch" in ort_unet["extra"]
    assert ort_unet["ops"], "ORT's op profiler should report the top ops"


def test_verify_command_rechecks_and_detects_tampering(ort_bundle, tmp_path, capsys):
    assert main(["verify", str(ort_bundle), "--samples", "1"]) == 0
    copy = tmp_path / "bundle"
    shutil.copytree(ort_bundle, copy)
    onnx_file = copy / "vae_decoder.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-100])
    capsys.readouterr()
    assert main(["verify", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "sha256" in err[0]


def test_profile_command_writes_json(ort_bundle, tmp_path):
    out = tmp_path / "p.json"
    assert main(["profile", str(ort_bundle), "--runs", "2", "--components", "vae_decoder", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert {r["backend"] for r in records} == {"onnxruntime", "pytorch"}
    assert all(r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] for r in records)


def test_parity_failure_exits_1_and_keeps_nothing_that_looks_complete(tiny_pipeline, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["convert", str(tiny_pipeline), "--output", str(out), "--components", "vae_decoder",
                 "--no-profile", "--set", "verify.min_psnr_db=1000", "--set", "verify.end_to_end=false"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error: verification failed: vae_decoder: PSNR" in err
    _no_partial_left(out)
    assert (out / "onnxruntime.failed" / "report.md").exists()


def test_dry_run_prints_resolved_recipe(tiny_pipeline, tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text('version = 1\n[pipeline]\nheight = 256\n[verify]\nsamples = 4\n')
    assert main(["convert", str(tiny_pipeline), "--recipe", str(recipe), "--width", "128", "--dry-run",
                 "--output", str(tmp_path / "o")]) == 0
    import tomllib

    printed = capsys.readouterr().out
    resolved = tomllib.loads(printed)
    assert resolved["pipeline"]["height"] == 256 and resolved["pipeline"]["width"] == 128  # file, then flag
    assert resolved["verify"]["samples"] == 4
    # defaults resolved from the model folder's configs, without loading weights
    assert resolved["model"]["source"] == str(tiny_pipeline)
    assert resolved["pipeline"]["scheduler"] == "PNDMScheduler" and resolved["backend"]["precision"] == "fp32"
    assert resolved["pipeline"]["num_inference_steps"] == 25
    assert not (tmp_path / "o").exists()
    # the printed recipe is itself a valid recipe
    again = tmp_path / "again.toml"
    again.write_text(printed)
    assert main(["convert", "--recipe", str(again), "--dry-run"]) == 0
    assert capsys.readouterr().out == printed


def test_native_resolution_of_the_full_size_architectures(capsys):
    from tests.tiny import SD15, SD21

    for folder in (SD15, SD21):
        assert main(["convert", str(folder), "--random-weights", "--dry-run"]) == 0
        resolved = __import__("tomllib").loads(capsys.readouterr().out)
        assert resolved["pipeline"]["height"] == resolved["pipeline"]["width"] == 512


def _error_line(capsys) -> str:
    """The contract: exactly one `error:` line on stderr, no traceback (notes such as 'random weights' may precede)."""
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note: ")]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_missing_folder(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "not found" in _error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_configs_without_weights(tmp_path, capsys):
    folder = write_tiny_pipeline(tmp_path / "noweights", weights=False)
    assert main(["convert", str(folder), "--output", str(tmp_path / "o"), "--no-profile"]) == 2
    line = _error_line(capsys)
    assert "no weights" in line and "--random-weights" in line
    _no_partial_left(tmp_path / "o")


def test_truncated_safetensors(tiny_pipeline, tmp_path, capsys):
    folder = tmp_path / "truncated"
    shutil.copytree(tiny_pipeline, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert main(["convert", str(folder), "--output", str(tmp_path / "o"), "--no-profile"]) == 2
    assert "truncated" in _error_line(capsys)
    _no_partial_left(tmp_path / "o")


def test_unknown_recipe_key(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text("version = 1\n[verify]\nmin_psnr = 30\n")
    assert main(["convert", "--recipe", str(recipe), "--output", str(tmp_path / "o")]) == 2
    line = _error_line(capsys)
    assert "min_psnr" in line and "min_psnr_db" in line  # names the bad key and lists the valid ones


def test_unknown_backend_option(tiny_pipeline, capsys):
    assert main(["convert", str(tiny_pipeline), "--set", "backend.options={ threadz = 2 }", "--dry-run"]) == 2
    assert "threadz" in _error_line(capsys)


def test_component_the_backend_cannot_export(tmp_path, capsys):
    code = main(["convert", "--module", "tests.nets:DataDependent", "--random-weights", "--set", 'model.inputs=[{name="x", shape=[4]}]',
                 "--output", str(tmp_path / "o"), "--no-profile"])
    assert code == 2
    line = _error_line(capsys)
    assert "cannot export component 'datadependent'" in line
    _no_partial_left(tmp_path / "o")


def test_custom_network_without_weights_needs_the_explicit_flag(tmp_path, capsys):
    assert main(["convert", "--module", "tests.nets:DataDependent", "--output", str(tmp_path / "o")]) == 2
    assert "--random-weights" in _error_line(capsys)


@pytest.mark.parametrize("family", ["sd21", "bk-sdm-small"])
def test_unet_families_lower_with_parity(family, tmp_path):
    """SD 2.x (per-block head dims, linear projections) and BK-SDM (no mid block), at tiny widths."""
    from edgediff.backends import get_backend
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model
    from edgediff.verify import compare

    # two levels of one layer keep each family's rules (SD 2.x head dims and linear projections, BK-SDM's missing
    # mid block) at a third of the 4-level tiny UNet's export time
    folder = write_tiny_pipeline(tmp_path / family, family=family, unet_config=compact_unet_config(family))
    model = load_model(folder)
    if family == "bk-sdm-small":
        assert model.unet.mid_block is None
    else:
        assert model.unet.config.use_linear_projection and isinstance(model.unet.config.attention_head_dim, list)
    (unet,) = build_components(model, ["unet"], ComponentShapes(64, 64))
    backend = get_backend("onnxruntime")
    artifact = backend.lower(unet, backend.Options(), "fp32", tmp_path)
    run = open_artifact(backend, artifact, backend.Options())
    inputs = unet.example_inputs(3)
    assert compare(unet.run_torch(inputs)["noise_pred"], run(inputs)["noise_pred"]).psnr_db > 60


def test_precision_defaults_to_the_backends_native_one():
    """No --precision: Core ML converts at its native fp16 (the issue's default), the others at fp32."""
    from edgediff.plan import resolve_recipe
    from edgediff.recipe import Recipe

    for backend, expected in (("coreml", "fp16"), ("onnxruntime", "fp32"), ("litert", "fp32")):
        recipe = Recipe()
        recipe.backend.name = backend
        assert resolve_recipe(recipe).backend.precision == expected, backend


def test_folder_with_one_component_loads_it_and_many_need_model_index(tmp_path):
    """bk-sdm-small ships `unet/` alone: the folder loads as that UNet; several components need model_index.json."""
    from edgediff.errors import ModelLoadError
    from edgediff.model.load import load_model

    pipeline = write_tiny_pipeline(tmp_path / "full")
    only_unet = tmp_path / "bk-like"
    shutil.copytree(pipeline / "unet", only_unet / "unet")
    model = load_model(only_unet)
    assert model.unet is not None and model.text_encoder is None
    (pipeline / "model_index.json").unlink()
    with pytest.raises(ModelLoadError, match="component folders .*text_encoder.*unet"):
        load_model(pipeline)
