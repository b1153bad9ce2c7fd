"""Single-file checkpoints: each family detected from names and shapes, loaded bit-identical to the equivalent
diffusers folder, converted to the same ONNX Runtime artifacts, offline; files that are no supported model are
refused with what was found."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from edgediff.cli import main
from edgediff.errors import ModelLoadError, UnsupportedError
from edgediff.model.load import load_model
from edgediff.model.single_file import detect, inspect, load_single_file
from tests.ldm_layout import build_modules, family_configs, tiny_checkpoint, to_ldm, write_checkpoint

# (family, inpainting, file format, prediction type): every supported variant, both file formats
VARIANTS = [("sd1", False, ".safetensors", "epsilon"), ("sd1", True, ".ckpt", "epsilon"),
            ("sd2", False, ".safetensors", "epsilon"), ("sd2", False, ".ckpt", "v_prediction"),
            ("sd2", True, ".safetensors", "epsilon")]


def _plain_config(module) -> dict:
    config = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "transformers_version"}


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note: ")]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("family,inpainting,suffix,prediction", VARIANTS)
def test_loads_bit_identical_to_its_diffusers_folder(family, inpainting, suffix, prediction, tmp_path):
    path, folder = tiny_checkpoint(tmp_path, family, inpainting, suffix, prediction)
    single, reference = load_single_file(path), load_model(folder)
    for part in ("text_encoder", "unet", "vae"):
        got, want = getattr(single, part), getattr(reference, part)
        assert _plain_config(got) == _plain_config(want), part
        a, b = got.state_dict(), want.state_dict()
        assert a.keys() == b.keys(), part
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert single.scheduler_config["prediction_type"] == prediction
    assert single.scheduler_class == reference.scheduler_class == "PNDMScheduler"
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):  # SD 2.x pads with "!", SD 1.x does not
        assert (single.tokenizer_dir / name).read_bytes() == (reference.tokenizer_dir / name).read_bytes()
    record = single.details["single_file"]
    assert record["family"] == family and record["variant"] == ("inpainting" if inpainting else "")
    assert record["ignored_tensors"] >= 2  # the scheduler buffer and the EMA counter real files carry


@pytest.mark.parametrize("name,family", [("stable-diffusion-v1-5", "sd1"), ("stable-diffusion-2-1-base", "sd2")])
def test_full_size_configs_come_back_from_shapes_alone(name, family):
    """The real SD 1.5 / 2.1 architectures, built on the meta device (no memory), written in the original layout:
    detection from names and shapes reproduces every value of their diffusers configs."""
    from edgediff.model.tensor_file import TensorFile
    from tests.tiny import SHARED

    folder = SHARED / "architectures" / name
    configs = {p: json.loads((folder / p / "config.json").read_text()) for p in ("unet", "vae", "text_encoder")}
    state = to_ldm(build_modules(configs, device="meta"), family)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    probe = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"  # SD 2.x's v-prediction hint
    found = detect(TensorFile(Path(f"{name}.safetensors"), shapes, _tensors={probe: torch.zeros(shapes[probe])}))
    for part, real in configs.items():
        differ = {k: (found.configs[part].get(k), v) for k, v in real.items()
                  if not k.startswith("_") and found.configs[part].get(k) != v}
        assert not differ, (part, differ)


@pytest.fixture(params=[pytest.param("sd1", marks=pytest.mark.slow), "sd2"])
def bundles(request, tmp_path_factory) -> tuple[str, Path, Path]:
    """(family, bundle of the single file, bundle of the equivalent folder): SD 2.x v-prediction (.ckpt + sidecar
    yaml) in the fast suite; SD 1.x (safetensors) with `-m slow`: its loading is proven bit-identical to its
    folder's above, and the SD 2.x pair proves file and folder convert to the same artifacts. Only the file's
    bundle is verified end to end (the folder's is the reference of a byte comparison)."""
    family = request.param
    suffix, prediction = {"sd1": (".safetensors", "epsilon"), "sd2": (".ckpt", "v_prediction")}[family]
    tmp = tmp_path_factory.mktemp(family)
    path, folder = tiny_checkpoint(tmp, family, False, suffix, prediction)
    for kind, source, extra in (("file", path, ()), ("folder", folder, ("--set", "verify.end_to_end=false"))):
        code = main(["convert", str(source), "--height", "64", "--width", "64", "--no-profile",
                     "--set", "pipeline.num_inference_steps=3", "--set", "verify.samples=1", *extra,
                     "--output", str(tmp / kind)])
        assert code == 0
    return family, tmp / "file" / "onnxruntime", tmp / "folder" / "onnxruntime"


def test_bundle_of_the_file_matches_the_bundle_of_the_folder(bundles):
    import onnxruntime as ort

    from edgediff.contract import Manifest

    family, file_dir, folder_dir = bundles
    file_bundle, folder_bundle = Manifest.read(file_dir), Manifest.read(folder_dir)
    assert file_bundle.components.keys() == folder_bundle.components.keys() == {"text_encoder", "unet", "vae_decoder"}
    assert file_bundle.pipeline == folder_bundle.pipeline
    assert file_bundle.pipeline["prediction_type"] == ("v_prediction" if family == "sd2" else "epsilon")
    assert file_bundle.source["single_file"]["family"] == family
    assert file_bundle.verify["end_to_end"]["status"] == "passed"
    assert f"single-file checkpoint: SD {family[-1]}.x" in (file_dir / "report.md").read_text()
    rng = np.random.default_rng(0)
    for name, artifact in file_bundle.components.items():
        other = folder_bundle.components[name]
        assert artifact.inputs == other.inputs and artifact.outputs == other.outputs
        feeds = {s.name: (rng.integers(0, 49408, s.dims).astype(np.int64) if s.dtype == "int64"
                          else rng.standard_normal(s.dims).astype(np.float32)) for s in artifact.inputs}
        got = ort.InferenceSession(str(artifact.path)).run(None, feeds)
        want = ort.InferenceSession(str(other.path)).run(None, feeds)
        assert all(np.array_equal(g, w) for g, w in zip(got, want)), name


def test_dry_run_takes_defaults_from_the_detected_family(tmp_path, capsys):
    import tomllib

    for family, prediction, size in (("sd1", "epsilon", 512), ("sd2", "v_prediction", 768)):
        path, _ = tiny_checkpoint(tmp_path / family, family, prediction_type=prediction)
        assert main(["convert", str(path), "--dry-run"]) == 0
        resolved = tomllib.loads(capsys.readouterr().out)
        assert resolved["model"]["source"] == str(path)
        assert resolved["pipeline"]["height"] == resolved["pipeline"]["width"] == size
        assert resolved["pipeline"]["scheduler"] == "PNDMScheduler"
        assert resolved["model"]["prediction_type"] == prediction  # pinned, so the bundle's recipe reproduces it


@pytest.fixture(scope="module")
def sd2_state() -> dict:
    return to_ldm(build_modules(family_configs("sd2")), "sd2")


def test_v_prediction_sources_in_order(sd2_state, tmp_path):
    probe = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
    plain = write_checkpoint(sd2_state, tmp_path / "plain.safetensors")
    found = inspect(plain)
    assert found.prediction_type == "epsilon" and found.prediction_from.startswith("heuristic")
    assert found.configs["unet"]["sample_size"] == 64
    spread = dict(sd2_state) | {probe: torch.linspace(-0.5, 0.5, sd2_state[probe].numel())}
    found = inspect(write_checkpoint(spread, tmp_path / "spread.safetensors"))
    assert found.prediction_type == "v_prediction" and found.configs["unet"]["sample_size"] == 96
    marked = write_checkpoint(dict(sd2_state) | {"v_pred": torch.tensor([])}, tmp_path / "marked.safetensors")
    assert inspect(marked).prediction_from == "the file's v_pred marker tensor"
    plain.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: 'v'\n")
    assert inspect(plain).prediction_type == "v_prediction"
    overridden = inspect(plain, "epsilon")  # the recipe wins, and says what it overrode
    assert overridden.prediction_type == "epsilon"
    assert overridden.prediction_from == "recipe (model.prediction_type), overriding v_prediction from plain.yaml " \
                                         "(parameterization: v)"
    assert inspect(plain, "v_prediction").prediction_from == "plain.yaml (parameterization: v); pinned in the recipe"


def test_nothing_is_fetched(tmp_path, monkeypatch):
    path, _ = tiny_checkpoint(tmp_path, "sd2", prediction_type="v_prediction")

    def refuse(*args, **kwargs):
        raise AssertionError("single-file loading tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model = load_single_file(path)
    assert model.unet.config.sample_size == 96 and model.text_encoder.config.num_hidden_layers == 2


# ---- refusals ------------------------------------------------------------------------------------------------------


def _run(path: Path, tmp_path: Path) -> int:
    return main(["convert", str(path), "--output", str(tmp_path / "out"), "--no-profile"])


def test_a_file_of_no_family_lists_what_it_has_and_lacks(sd2_state, tmp_path, capsys):
    vae_only = write_checkpoint({k: v for k, v in sd2_state.items() if k.startswith("first_stage_model.")},
                                tmp_path / "vae.safetensors")
    assert _run(vae_only, tmp_path) == 2
    line = _error_line(capsys)
    assert "matches no supported family" in line and "recognised vae" in line
    assert "missing unet (model.diffusion_model.input_blocks.0.0.weight)" in line and "text_encoder" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("keys,expected", [
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 32)}, "is a LoRA"),
    ({"conv_in.weight": (32, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": (32, 32, 3, 3)}, "diffusers' own"),
    ({"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
      "conditioner.embedders.1.model.positional_embedding": (77, 1280)}, "SDXL checkpoint without its OpenCLIP"),
])
def test_other_kinds_of_file_are_named(keys, expected, tmp_path, capsys):
    path = write_checkpoint({k: torch.zeros(s) for k, s in keys.items()}, tmp_path / "x.safetensors")
    assert _run(path, tmp_path) == 2
    assert expected in _error_line(capsys)


def test_a_tensor_missing_from_the_unet_is_an_error(sd2_state, tmp_path):
    cut = {k: v for k, v in sd2_state.items() if "output_blocks.4.0.out_layers.3.weight" not in k}
    with pytest.raises(ModelLoadError, match=r"\(unet\): the mapped tensors do not fill .*1 missing"):
        load_single_file(write_checkpoint(cut, tmp_path / "cut.safetensors"))


def test_mixed_text_encoder_and_unet_families_are_refused(tmp_path):
    sd1 = to_ldm(build_modules(family_configs("sd1")), "sd1")
    sd2 = to_ldm(build_modules(family_configs("sd2")), "sd2")
    mixed = {k: v for k, v in sd1.items() if not k.startswith("cond_stage_model.")}
    mixed.update({k: v for k, v in sd2.items() if k.startswith("cond_stage_model.")})
    with pytest.raises(ModelLoadError, match="OpenCLIP .* convolutions"):
        inspect(write_checkpoint(mixed, tmp_path / "mixed.safetensors"))


def test_hostile_safetensors_headers_are_refused_before_allocation(tmp_path):
    bomb = tmp_path / "bomb.safetensors"
    bomb.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(ModelLoadError, match="header claims"):
        inspect(bomb)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 16]}}).encode()
    liar = tmp_path / "liar.safetensors"
    liar.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(ModelLoadError, match="claims shape"):
        inspect(liar)


def test_truncated_and_pickled_objects_are_refused(sd2_state, tmp_path, capsys):
    whole = write_checkpoint(sd2_state, tmp_path / "whole.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert _run(cut, tmp_path) == 2
    assert "truncated" in _error_line(capsys)
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": UnsupportedError("not a tensor")}, str(evil))
    assert _run(evil, tmp_path) == 2
    assert "never unpickles" in _error_line(capsys)


def test_prediction_type_is_checked(tmp_path, capsys):
    path, folder = tiny_checkpoint(tmp_path, "sd1")
    assert main(["convert", str(path), "--set", "model.prediction_type=v", "--dry-run"]) == 2
    assert "prediction_type 'v' is unknown" in _error_line(capsys)
    assert main(["convert", str(folder), "--set", "model.prediction_type=epsilon", "--dry-run"]) == 2
    assert "applies to single-file checkpoints" in _error_line(capsys)


def test_folders_of_real_text_encoders_load_too(tmp_path):
    """Real SD folders hold CLIP weights saved by transformers 4 (`text_model.` first); transformers >= 5.6 builds a
    flattened CLIPTextModel. Both the folder loader and the single-file loader accept both."""
    from safetensors.torch import load_file, save_file

    path, folder = tiny_checkpoint(tmp_path, "sd1")
    weights = folder / "text_encoder" / "model.safetensors"
    save_file({"text_model." + k: v for k, v in load_file(str(weights)).items()}, str(weights))
    a, b = load_model(folder).text_encoder.state_dict(), load_single_file(path).text_encoder.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_clip_tensors_without_text_model_prefix(tmp_path):
    """Some SD 1.x files (saved with an older transformers) name CLIP tensors without `text_model.`."""
    from safetensors.torch import load_file

    path, _ = tiny_checkpoint(tmp_path, "sd1")
    state = {k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): v
             for k, v in load_file(str(path)).items()}
    older = write_checkpoint(state, tmp_path / "older.safetensors")
    a, b = load_single_file(path).text_encoder.state_dict(), load_single_file(older).text_encoder.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
