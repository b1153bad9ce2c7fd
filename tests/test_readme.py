"""The README and the checked-in recipes, as a new user meets them: every TOML snippet in the README parses as a
recipe, every recipe under recipes/ resolves with `--dry-run` from any folder, and what `--dry-run` prints is the
recipe a bundle records."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import tomllib

from edgediff.cli import main
from edgediff.recipe import Recipe, build_section, load_recipe, set_field

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))
SHARED = ROOT.parent / "shared"


def _toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(_toml_blocks())))
def test_every_readme_recipe_snippet_is_a_valid_recipe(index):
    block = _toml_blocks()[index]
    data = tomllib.loads(block if "version" in block else "version = 1\n" + block)
    build_section(Recipe, data, "")  # unknown keys and wrong types raise RecipeError


def test_the_readme_set_examples_work():
    recipe = Recipe()
    set_field(recipe, "verify.samples", "5")
    set_field(recipe, "backend.options.threads", "2")
    assert recipe.verify.samples == 5 and recipe.backend.options == {"threads": 2}


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_checked_in_recipes_dry_run_from_another_folder(path, tmp_path, capsys, monkeypatch):
    if "../shared" in path.read_text() and not SHARED.exists():
        pytest.skip("needs ../shared beside the repository (as CI lays it out)")
    monkeypatch.chdir(ROOT if "../shared" in path.read_text() else tmp_path)
    assert main(["convert", "--recipe", str(path), "--dry-run"]) == 0
    resolved = tomllib.loads(capsys.readouterr().out)
    assert resolved["backend"]["precision"] in ("fp32", "fp16", "int8")
    assert Path(resolved["model"]["source"]).is_absolute()
    if resolved["backend"]["precision"] == "int8":  # the added step is shown resolved
        (step,) = [s for s in resolved["slim"]["steps"] if s["kind"] == "quantize"]
        assert step["options"]["num_inference_steps"] > 0 and step["options"]["scheduler"]


def test_dry_run_prints_what_the_bundle_records(tmp_path, capsys):
    """--dry-run's output, fed back as a recipe, resolves to itself (nothing is added at run time)."""
    assert main(["convert", "--precision", "int8", "--dry-run"]) == 0
    first = capsys.readouterr().out
    saved = tmp_path / "resolved.toml"
    saved.write_text(first)
    assert main(["convert", "--recipe", str(saved), "--dry-run"]) == 0
    assert capsys.readouterr().out == first
    assert load_recipe(saved).slim.steps[0].kind == "quantize"


def test_readme_install_and_test_commands_match_ci():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = re.search(r"python -m pytest [^\n`]*", README).group(0)
    assert test_command in ci
    assert '-e ".[all]"' in README and '-e ".[all]"' in ci
    assert os.access(ROOT / ".ci" / "run", os.R_OK)
