"""Hostile input, part 5: the two readers of untrusted text under property-based fuzzing (hypothesis). Whatever the
mutated manifest.json or recipe TOML, `Manifest.read` (and the pipeline-section check generate runs next) and
`load_recipe` / `set_field` either succeed or raise their typed error (an EdgediffError): never anything else.

Seeds are real documents (the tiny bundle's manifest, the repository's recipes); mutations replace, delete, insert
and re-type values anywhere in the tree, or damage the bytes. The runs are derandomised (the same examples every
run, so CI is stable); EDGEDIFF_FUZZ_EXAMPLES raises the count and EDGEDIFF_FUZZ_RANDOM=1 explores new ones."""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgediff.contract import Manifest
from edgediff.errors import EdgediffError
from edgediff.recipe import Recipe, load_recipe, set_field
from edgediff.runtime.pipeline import check_pipeline_section
from tests.hostile.support import ROOT

EXAMPLES = int(os.environ.get("EDGEDIFF_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("EDGEDIFF_FUZZ_RANDOM") != "1",
                database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])

NASTY = ["../../../etc/passwd", "/etc/passwd", "", "\x00", "a" * 300, "tokenizer/../../x", "x/" * 40, ".", "..",
         "edgediff-bundle/9", "edgediff-bundle/1", "onnxruntime", "fp16", "\x1b[31mred", -1, 0, 2**64, 1e308,
         math.nan, math.inf, -math.inf, [], {}, None, True, "0" * 64, [1, 4, 8, 8]]
LEAF = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12)
        | st.sampled_from(NASTY))
JSON = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=10)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, prefix + (i,))
    return found


@st.composite
def mutated(draw, seed: Any, values=JSON) -> Any:
    """`seed` with 1-3 edits anywhere: replace a value, delete it, insert a sibling, wrap it in a list."""
    doc = copy.deepcopy(seed)
    values = values.map(copy.deepcopy)  # a drawn [] or {} from NASTY must not be edited in place by a later step
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = draw(values)
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key, op = path[-1], draw(st.sampled_from(["replace", "delete", "insert", "wrap"]))
        if op == "replace":
            parent[key] = draw(values)
        elif op == "delete":
            del parent[key]
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10) | st.sampled_from(sorted(map(str, parent))))] = draw(values)
        else:
            parent.insert(key, draw(values))
    return doc


@st.composite
def damaged(draw, text: bytes) -> bytes:
    """`text` cut, or with a few bytes replaced or inserted (non-UTF-8 and non-JSON on the way)."""
    data = bytearray(text)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["cut", "flip", "insert"]))
        if op == "cut":
            del data[at:]
        elif op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


# ---- the manifest reader ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest_seeds(tiny_bundle, tmp_path_factory) -> tuple[Path, list[dict[str, Any]]]:
    """The tiny bundle's real manifest over small stand-in files (the reader checks sizes and sha256, not the
    models), as-is and with its unet split into two chunks."""
    root = tmp_path_factory.mktemp("fuzz-bundle")
    seed = json.loads((tiny_bundle / "manifest.json").read_text())

    def stand_in(name: str) -> dict[str, Any]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode() * 3)
        return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}

    for entry in seed["components"].values():
        entry.update(stand_in(entry["file"]))
    for name, entry in seed.get("files", {}).items():
        entry.update(stand_in(name))
    chunked = copy.deepcopy(seed)
    unet = chunked["components"]["unet"]
    unet["chunks"] = [dict(unet, file=f"unet_{i}.onnx", **stand_in(f"unet_{i}.onnx")) for i in range(2)]
    return root, [seed, chunked]


def _read_as_generate_does(root: Path) -> None:
    try:
        manifest = Manifest.read(root)
        if manifest.pipeline is not None:
            check_pipeline_section(manifest)
    except EdgediffError:
        pass


@FUZZ
@given(data=st.data())
def test_fuzz_the_manifest_reader_on_mutated_documents(manifest_seeds, data):
    root, seeds = manifest_seeds
    document = data.draw(st.sampled_from(seeds).flatmap(mutated))
    (root / "manifest.json").write_text(json.dumps(document, allow_nan=True))
    _read_as_generate_does(root)


@FUZZ
@given(data=st.data())
def test_fuzz_the_manifest_reader_on_damaged_bytes(manifest_seeds, data):
    root, seeds = manifest_seeds
    (root / "manifest.json").write_bytes(data.draw(damaged(json.dumps(seeds[0]).encode())))
    _read_as_generate_does(root)


# ---- the recipe reader ------------------------------------------------------------------------------------------

TOML_LEAF = (st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12)
             | st.datetimes(min_value=datetime.datetime(1900, 1, 1)) | st.sampled_from([n for n in NASTY if n is not None]))
TOML = st.recursive(TOML_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=4), max_leaves=10)
RECIPE_SEEDS = [__import__("tomllib").loads(p.read_text()) for p in sorted((ROOT / "recipes").glob("*.toml"))]


def _toml(value: Any) -> str:
    """TOML for any value the strategies make: every key quoted, tables inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)} = {_toml(v)}" for k, v in value.items()) + " }"


def _document(data: Any) -> str:
    if not isinstance(data, dict):
        return f"x = {_toml(data)}\n"
    return "".join(f"{json.dumps(str(k), ensure_ascii=False)} = {_toml(v)}\n" for k, v in data.items())


def _load(path: Path) -> None:
    try:
        assert isinstance(load_recipe(path), Recipe)
    except EdgediffError:
        pass


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-recipe") / "recipe.toml"


@FUZZ
@given(document=st.sampled_from(RECIPE_SEEDS).flatmap(lambda seed: mutated(seed, TOML)))
def test_fuzz_the_recipe_reader_on_mutated_recipes(recipe_path, document):
    recipe_path.write_text(_document(document), encoding="utf-8")
    _load(recipe_path)


@FUZZ
@given(data=damaged((ROOT / "recipes" / "default-int8.toml").read_bytes()))
def test_fuzz_the_recipe_reader_on_damaged_bytes(recipe_path, data):
    recipe_path.write_bytes(data)
    _load(recipe_path)


SECTIONS = ["model", "pipeline", "slim", "backend", "verify", "profile", "version", "__class__", ""]
FIELDS = ["source", "height", "width", "components", "guidance_scale", "num_inference_steps", "scheduler", "steps",
          "options", "options.threads", "options.a.b", "inputs", "samples", "seed", "runs", "precision", "name", ""]


@FUZZ
@given(section=st.sampled_from(SECTIONS) | st.text(max_size=8), key=st.sampled_from(FIELDS) | st.text(max_size=8),
       raw=TOML.map(_toml) | st.text(max_size=20))
def test_fuzz_set_overrides(section, key, raw):
    """`--set SECTION.KEY=VALUE` is CLI input: any key and any value is applied or refused with a RecipeError."""
    try:
        set_field(Recipe(), f"{section}.{key}", raw)
    except EdgediffError:
        pass


# ---- the model-folder door --------------------------------------------------------------------------------------

CONFIGS = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
           "scheduler/scheduler_config.json", "edgediff.json"]


@pytest.fixture(scope="module")
def model_copy(tiny_folder, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """The tiny pipeline (its tokenizer left out: it is checked by the corpus, and parsing it costs time)."""
    import shutil

    folder = tmp_path_factory.mktemp("fuzz-model") / "tiny"
    shutil.copytree(tiny_folder, folder, ignore=shutil.ignore_patterns("tokenizer"))
    (folder / "edgediff.json").write_text(json.dumps({"steps": 4, "guidance": 5.0, "batched_cfg": True}))
    return folder, {name: json.loads((folder / name).read_text()) for name in CONFIGS}


@FUZZ
@given(data=st.data())
def test_fuzz_the_model_folder_door(model_copy, data):
    """Any edit to any config: `resolve_recipe` (what --dry-run and convert run first) succeeds or raises a typed
    error, before torch."""
    from edgediff.plan import resolve_recipe

    folder, originals = model_copy
    name = data.draw(st.sampled_from(CONFIGS))
    (folder / name).write_text(json.dumps(data.draw(mutated(originals[name])), allow_nan=True))
    recipe = Recipe()
    recipe.model.source = str(folder)
    try:
        resolve_recipe(recipe)
    except EdgediffError:
        pass
    finally:
        (folder / name).write_text(json.dumps(originals[name]))
