"""`edgediff eval` on the committed default model (diffusers path) and, in the slow suite, on a bundle."""

from __future__ import annotations

import json
import shutil

import pytest

from edgediff.cli import main
from edgediff.errors import ModelLoadError, RecipeError
from edgediff.evaluate import DEFAULT_MODEL, EvalSettings, evaluate, prompt_set


def test_prompt_set_is_fixed_and_seeded():
    a = prompt_set(EvalSettings(prompts=20, seed=0))
    assert a == prompt_set(EvalSettings(prompts=20, seed=0))
    assert a != prompt_set(EvalSettings(prompts=20, seed=1))
    assert len({seed for _, seed in a}) == 20


def test_eval_command_writes_json(tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["eval", str(DEFAULT_MODEL), "--steps", "8", "--prompts", "12", "--seed", "3", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert 0.0 <= data["prompt_accuracy"] <= 1.0 and data["frechet_distance"] >= 0.0
    assert data["settings"]["steps"] == 8 and data["settings"]["prompts"] == 12 and data["settings"]["seed"] == 3
    assert data["kind"] == "diffusers" and "prompt_accuracy" in capsys.readouterr().out
    # Same settings, same images, same numbers.
    again, _ = evaluate(DEFAULT_MODEL, EvalSettings(steps=8, prompts=12, seed=3), progress=False)
    assert again.prompt_accuracy == data["prompt_accuracy"]
    assert again.frechet_distance == pytest.approx(data["frechet_distance"], rel=1e-6)



def test_eval_is_a_function_of_the_seeds_with_a_renoising_sampler():
    """LCM re-noises between steps: that noise must come from the image seeds, not torch's global RNG."""
    student = DEFAULT_MODEL.parent / "shapes-sd-lcm4"
    settings = EvalSettings(steps=4, guidance=5.0, prompts=6, seed=0)
    _, first = evaluate(student, settings, progress=False, keep_images=True)
    _, second = evaluate(student, settings, progress=False, keep_images=True)
    assert first is not None and (first == second).all()


def test_eval_rejects_bad_input(tmp_path):
    with pytest.raises(ModelLoadError):
        evaluate(tmp_path / "missing", EvalSettings(prompts=4))
    with pytest.raises(RecipeError):
        evaluate(DEFAULT_MODEL, EvalSettings(prompts=1))
    shutil.copytree(DEFAULT_MODEL / "judge", tmp_path / "judge")
    with pytest.raises(ModelLoadError):
        evaluate(tmp_path, EvalSettings(prompts=4))  # a folder without a pipeline in it


@pytest.mark.slow
def test_eval_bundle_matches_pytorch(tmp_path):
    """Convert the default model to an onnxruntime bundle and evaluate it through the torch-free runtime."""
    pytest.importorskip("onnxruntime")
    code = main(["convert", str(DEFAULT_MODEL), "--target", "onnxruntime", "--output", str(tmp_path / "out"), "--no-profile"])
    assert code == 0
    bundles = [p.parent for p in (tmp_path / "out").rglob("manifest.json")]
    assert bundles, "convert wrote no bundle"
    settings = EvalSettings(steps=8, prompts=16, seed=0)
    torch_result, _ = evaluate(DEFAULT_MODEL, settings, progress=False)
    bundle_result, _ = evaluate(bundles[0], settings, judge_dir=DEFAULT_MODEL / "judge", progress=False)
    assert bundle_result.kind == "bundle"
    assert abs(bundle_result.prompt_accuracy - torch_result.prompt_accuracy) <= 1 / 16 + 1e-9
