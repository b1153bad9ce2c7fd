"""The mobile recipe's machinery on a tiny real pipeline: the content-keyed stage cache (a finished recipe rerun
trains and calibrates nothing; a killed distillation continues from its last checkpoint), the tiny decoder
step, and the guidance check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgediff.cli import main
from tests.distill_tiny import save_tiny_teacher, tokenizer_dir

pytestmark = pytest.mark.skipif(not tokenizer_dir().is_dir(), reason="shared/architectures is not beside the repo")
REPO = Path(__file__).resolve().parents[1]

RECIPE = """
[pipeline]
num_inference_steps = 2
scheduler = "DDIMScheduler"
guidance_scale = 5.0
batched_cfg = false

[[slim.steps]]
kind = "prune"
spec = { drop_mid = true }

[[slim.steps]]
kind = "distill"
method = "step"
steps = 2
teacher_steps = 2
guidance_embedding_dim = 32
batch_size = 2
cache_size = 8
max_steps = {max_steps}
checkpoint_every = 1
cpu = true

[[slim.steps]]
kind = "tiny_decoder"
channels = 8
max_steps = 3
batch_size = 2
cache_size = 8
holdout = 4
min_teacher_psnr_db = 0.0

[verify]
samples = 1
end_to_end = false          # the stage cache is what these tests check; verification itself is tested elsewhere
min_cosine = 0.0            # random tiny weights: this test is about the stage cache, not int8 quality
min_psnr_db = 0.0
min_image_psnr_db = 0.0
min_guidance_ratio = 0.0
"""


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("tiny") / "teacher")


def _recipe(folder: Path, max_steps: int) -> Path:
    path = folder / "mobile.toml"
    path.write_text(RECIPE.replace("{max_steps}", str(max_steps)))
    return path


def _convert(model: Path, recipe: Path, out: Path, *extra: str) -> dict:
    code = main(["convert", str(model), "--recipe", str(recipe), "--target", "onnxruntime", "--output", str(out),
                 "--no-profile", *extra])
    assert code == 0, code
    return json.loads((out / "onnxruntime" / "manifest.json").read_text())


def _stages(manifest: dict) -> dict[str, str]:
    return {r["stage"]: r["cache"] for r in manifest["stage_cache"]}


def _entry(cache: Path, kind: str) -> Path:
    (found,) = sorted((cache / "stages").glob(f"{kind}-*"))
    return found


def test_rerunning_a_finished_recipe_trains_and_calibrates_nothing(teacher: Path, tmp_path: Path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("EDGEDIFF_CACHE_DIR", str(tmp_path / "cache"))
    recipe = _recipe(tmp_path, max_steps=2)
    first = _convert(teacher, recipe, tmp_path / "a", "--precision", "int8")
    assert _stages(first) == {"prune": "miss", "distill": "miss", "tiny_decoder": "miss",
                              "quantize calibration": "miss", "quantize plan (text_encoder)": "miss",
                              "quantize plan (unet)": "miss", "quantize plan (vae_decoder)": "miss"}
    run = _entry(tmp_path / "cache", "distill") / "work" / "run"
    log_lines = (run / "log.jsonl").read_text().splitlines()
    decoder_log = (_entry(tmp_path / "cache", "tiny_decoder") / "work" / "run" / "log.jsonl").read_text()
    calibrations = sorted((tmp_path / "cache" / "quantize").iterdir())

    second = _convert(teacher, recipe, tmp_path / "b", "--precision", "int8")
    assert set(_stages(second).values()) == {"hit"}, second["stage_cache"]
    # nothing trained again: the training logs did not grow, no checkpoint or calibration file was added
    assert (run / "log.jsonl").read_text().splitlines() == log_lines
    assert (_entry(tmp_path / "cache", "tiny_decoder") / "work" / "run" / "log.jsonl").read_text() == decoder_log
    assert sorted((tmp_path / "cache" / "quantize").iterdir()) == calibrations
    # the same stages (same keys) were bundled
    assert [r["key"] for r in first["stage_cache"]] == [r["key"] for r in second["stage_cache"]]
    # a changed setting is a new stage, not a stale reuse
    changed = tmp_path / "changed.toml"
    changed.write_text(recipe.read_text().replace("channels = 8", "channels = 4"))
    third = _convert(teacher, changed, tmp_path / "c")
    assert _stages(third)["tiny_decoder"] == "miss" and _stages(third)["distill"] == "hit"


def _student_weights(cache: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(_entry(cache, "distill") / "student" / "unet" / "diffusion_pytorch_model.safetensors"))


# The killed run is stopped once a checkpoint of step 4 or later is on disk: the steps after it are the margin the
# watcher has to see it before the run would finish (a resumable run, not a trained student, is what is checked).
KILLED_MAX_STEPS = 16


def test_a_killed_distillation_continues_from_its_last_checkpoint(teacher: Path, tmp_path: Path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    recipe = _recipe(tmp_path, max_steps=KILLED_MAX_STEPS)
    killed = tmp_path / "killed-cache"
    env = {**os.environ, "EDGEDIFF_CACHE_DIR": str(killed), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "edgediff.cli", "convert", str(teacher), "--recipe", str(recipe), "--target",
            "onnxruntime", "--output", str(tmp_path / "k"), "--no-profile"]
    log = (tmp_path / "killed.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    checkpoints = killed / "stages"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        found = [p for p in checkpoints.glob("distill-*/work/run/checkpoints/step_*") if (p / "edgediff_step.json").is_file()]
        if any(int(p.name.split("_")[1]) >= 4 for p in found):
            break
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-2000:]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    log.close()
    assert proc.returncode == 143, (tmp_path / "killed.log").read_text()[-2000:]
    entry = _entry(killed, "distill")
    assert not (entry / "stage.json").exists()  # not finished: never read as a result
    saved = max(int(p.name.split("_")[1]) for p in (entry / "work" / "run" / "checkpoints").glob("step_*")
                if (p / "edgediff_step.json").is_file())
    assert 4 <= saved < KILLED_MAX_STEPS

    monkeypatch.setenv("EDGEDIFF_CACHE_DIR", str(killed))
    resumed = _convert(teacher, recipe, tmp_path / "r")
    summary = json.loads((entry / "work" / "run" / "summary.json").read_text())
    assert summary["start_step"] == saved and summary["final_step"] == KILLED_MAX_STEPS
    record = next(r for r in resumed["stage_cache"] if r["stage"] == "distill")
    assert record["cache"] == "miss" and record["started_at_step"] == saved

    monkeypatch.setenv("EDGEDIFF_CACHE_DIR", str(tmp_path / "straight-cache"))
    _convert(teacher, recipe, tmp_path / "s")
    a, b = _student_weights(killed), _student_weights(tmp_path / "straight-cache")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-6, err_msg=name)


def test_tiny_decoder_architecture_follows_the_taesd_config(teacher: Path) -> None:
    from edgediff.errors import RecipeError
    from edgediff.slim.tiny_decoder import TinyDecoder, architecture, settings_from_options

    arch = architecture(settings_from_options({"channels": 8}), 4, 3, 4)
    assert arch["num_blocks"] == (3, 3, 3, 1) and arch["block_out_channels"] == (8, 8, 8, 8)
    assert arch["act_fn"] == "relu" and arch["upsample_fn"] == "nearest"
    import torch

    out = TinyDecoder(arch, 0.5)(torch.zeros(1, 4, 8, 8))
    assert out.shape == (1, 3, 64, 64)
    with pytest.raises(RecipeError, match="block counts"):
        architecture(settings_from_options({"blocks": [1, 1]}), 4, 3, 4)
    with pytest.raises(RecipeError, match="unknown tiny_decoder option"):
        settings_from_options({"width": 8})


def test_a_failing_teacher_check_names_the_tiny_decoder(teacher: Path, tmp_path: Path, monkeypatch) -> None:
    from edgediff.errors import QualityError
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model
    from edgediff.slim.tiny_decoder import tiny_decoder_slim_step

    monkeypatch.setenv("EDGEDIFF_CACHE_DIR", str(tmp_path / "cache"))
    model = load_model(str(teacher))
    components = build_components(model, ["vae_decoder"], ComponentShapes(64, 64))
    options = {"channels": 4, "max_steps": 1, "batch_size": 2, "cache_size": 4, "holdout": 4,
               "min_teacher_psnr_db": 200.0}
    with pytest.raises(QualityError, match="tiny_decoder: images .* dB PSNR against the model's own decoder"):
        tiny_decoder_slim_step(model, components, options)


def _weakened(unet, factor: float):
    """A copy of the UNet whose cross-attention outputs are scaled down: the prompt's pull on eps shrinks."""
    import copy

    import torch

    weak = copy.deepcopy(unet)
    with torch.no_grad():
        for name, module in weak.named_modules():
            if name.endswith("attn2.to_out.0"):
                module.weight.mul_(factor)
                module.bias.mul_(factor)
    return weak


def test_guidance_check_catches_a_weakened_conditioning_and_names_the_stage(teacher: Path, tmp_path: Path) -> None:
    import torch

    from edgediff.backends.base import get_backend, options_from_dict
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model
    from edgediff.quality import guidance_check, guidance_failure

    torch.set_num_threads(1)
    model = load_model(str(teacher))
    components = build_components(model, ["text_encoder", "unet"], ComponentShapes(64, 64, batched_cfg=True))
    backend = get_backend("onnxruntime")
    options = options_from_dict(backend.Options, {}, "backend.options")
    (tmp_path / "same").mkdir()
    (tmp_path / "weak").mkdir()
    same = backend.lower(components[1], options, "fp32", tmp_path / "same")
    weak_model = load_model(str(teacher))
    weak_model.unet = _weakened(model.unet, 0.05)
    weak_unet = build_components(weak_model, ["unet"], ComponentShapes(64, 64, batched_cfg=True))[0]
    weak = backend.lower(weak_unet, options, "fp32", tmp_path / "weak")
    session = backend.session_options(options)

    ok = guidance_check(model, components, {"unet": same}, "onnxruntime", session, 0.8, "fp32")
    assert ok["status"] == "passed" and abs(ok["ratio"] - 1) < 1e-3 and ok["cosine"] > 0.999
    bad = guidance_check(model, components, {"unet": weak}, "onnxruntime", session, 0.8, "int8")
    assert bad["status"] == "failed" and bad["ratio"] < 0.8
    (line,) = guidance_failure(bad)
    assert "caused by stage quantize" in line and "onnxruntime" in line
