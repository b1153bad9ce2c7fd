"""What lets the full SDXL architecture convert within 20 GB and with every file under 2 GB, on tiny models:

- two-phase verify: every PyTorch reference is computed first, the PyTorch weights are released, and only then
  do the artifacts' sessions open, one at a time, with the same results as the one-phase check;
- ONNX external data in several shards (each listed and checksummed in the manifest), and a model whose
  external data points outside its folder, or at a file the manifest does not list, is refused;
- an SDXL text encoder split into chunks of transformer layers (text_encoder_2 is 2.8 GB in fp32, over the
  flatbuffer limit), chained exactly in PyTorch and run by LiteRT in verify and in the torch-free runtime.
"""

from __future__ import annotations

import json
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from edgediff import orchestrator, phases, quality, verify, verify_stage  # noqa: E402
from edgediff.cli import main  # noqa: E402
from edgediff.contract import Artifact, Manifest  # noqa: E402
from edgediff.errors import ModelLoadError  # noqa: E402
from edgediff.plan import resolve  # noqa: E402
from edgediff.recipe import Recipe  # noqa: E402
from edgediff.runtime.onnx_external import external_locations  # noqa: E402
from edgediff.runtime.sessions import open_session  # noqa: E402
from tests.sdxl_tiny import write_tiny_sdxl  # noqa: E402
from tests.tiny import compact_unet_config, write_tiny_pipeline  # noqa: E402

SHARD_BYTES = 700_000  # the compact tiny UNet's 3.2 MB of weights in five files or so


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    """The tiny pipeline with the compact UNet (every SD block type, a third of the 4-level UNet's export time):
    what is checked here (when sessions open, shards) does not grow with the UNet."""
    return write_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd", unet_config=compact_unet_config())


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory) -> Path:
    return write_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl-turbo", turbo=True)


def _plan(folder: Path, **options):
    recipe = Recipe()
    recipe.model.source = str(folder)
    recipe.backend.name = "onnxruntime"
    recipe.backend.options = dict(options)
    recipe.verify.samples = 2
    recipe.pipeline.num_inference_steps = 3
    recipe.profile.enabled = False
    return resolve(recipe)


def _holding(modules) -> list[str]:
    return [type(m).__name__ for m in modules if any(t.device.type != "meta" for t in [*m.parameters(),
                                                                                       *m.buffers()])]


# ---- two-phase verify -------------------------------------------------------------------------------------------


def test_sessions_open_only_after_the_pytorch_weights_are_released(tiny_sd, tmp_path, monkeypatch):
    """The whole convert: a session opening while any module of the plan still holds a tensor, or while another
    session is still alive, fails the test; every check still runs and passes."""
    plan = _plan(tiny_sd)
    modules = phases.torch_modules(plan.model, plan.components)
    assert len(modules) >= 4 and not any(_holding([m]) == [] for m in modules)  # all hold weights at first
    opened: list[str] = []
    alive: list[weakref.ref] = []

    def guarded(artifact, backend, options=None):
        held = _holding(modules)
        assert not held, f"session for {artifact.component} opened while PyTorch still holds {held}"
        still_open = [r() for r in alive if r() is not None]
        assert not still_open, f"session for {artifact.component} opened beside {len(still_open)} open session(s)"
        session = open_session(artifact, backend, options)
        opened.append(artifact.component)
        alive.append(weakref.ref(session))
        return session

    monkeypatch.setattr(verify, "open_session", guarded)
    monkeypatch.setattr(phases, "open_session", guarded)
    final = orchestrator.convert(plan, tmp_path)
    manifest = json.loads((final / "manifest.json").read_text())
    assert all(c["verify"]["status"] == "passed" for c in manifest["components"].values())
    assert manifest["verify"]["end_to_end"]["status"] == "passed"
    assert manifest["guidance_check"]["status"] == "passed"
    # per component, then the end-to-end image's three, then the guidance check's UNet
    assert opened == ["text_encoder", "unet", "vae_decoder", "text_encoder", "unet", "vae_decoder", "unet"]


def test_two_phase_results_equal_the_one_phase_check(tiny_sd, tmp_path):
    """The same artifacts checked the old way (PyTorch and session side by side) and in two phases give the same
    figures, to the bit; afterwards the plan's modules hold no weights."""
    before = _plan(tiny_sd)
    artifacts = {c.name: before.backend.lower(c, before.options, before.precision, tmp_path)
                 for c in before.components}
    options, runnable = before.backend.session_options(before.options), (True, "")
    settings = verify.end_to_end_settings(before.recipe, before.precision)
    old = verify.verify_artifacts(before.components, artifacts, "onnxruntime", options, before.limits, 2)
    old_e2e = verify.end_to_end(before.model, before.components, artifacts, "onnxruntime", options, settings)
    old_guidance = quality.guidance_check(before.model, before.components, artifacts, "onnxruntime", options,
                                          before.recipe.verify.min_guidance_ratio, before.precision)

    plan = _plan(tiny_sd)
    checked = verify_stage.run(plan, artifacts, options, runnable)
    assert [(r.component, r.status, r.metrics, r.per_output) for r in checked.results] == \
        [(r.component, r.status, r.metrics, r.per_output) for r in old]
    old_e2e.pop("images")
    new_images = checked.end_to_end.pop("images")
    assert checked.end_to_end == old_e2e and old_e2e["status"] == "passed" and new_images["artifact"].size
    assert checked.guidance == old_guidance and old_guidance["status"] == "passed"
    unique = {id(p): p for m in phases.torch_modules(before.model, before.components) for p in m.parameters()}
    weights = sum(p.numel() * 4 for p in unique.values())
    assert checked.released_bytes >= weights > 0
    assert _holding(phases.torch_modules(plan.model, plan.components)) == []
    with pytest.raises((RuntimeError, NotImplementedError, TypeError)):  # a released module cannot silently compute
        plan.components[0].run_torch(plan.components[0].example_inputs(0))


def test_a_lowered_component_releases_only_what_no_later_component_shares():
    """The VAE's decoder and encoder components wrap one module: lowering the decoder first must leave the
    encoder's weights (and a shared layer's) in place, and release the rest."""
    from types import SimpleNamespace

    shared, own = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    first = SimpleNamespace(module=torch.nn.Sequential(own, shared))
    later = SimpleNamespace(module=torch.nn.Sequential(shared, torch.nn.ReLU()))
    released = phases.release_component(first, [later])
    assert released == sum(t.numel() * 4 for t in own.parameters())
    assert own.weight.device.type == "meta" and shared.weight.device.type == "cpu"
    assert phases.release_component(later, []) == sum(t.numel() * 4 for t in shared.parameters())
    assert shared.weight.device.type == "meta"


# ---- ONNX external data in shards ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sharded_bundle(tiny_sd, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sharded")
    assert main(["convert", str(tiny_sd), "--target", "onnxruntime", "--output", str(out), "--no-profile",
                 "--components", "unet", "--set", f"backend.options.shard_bytes={SHARD_BYTES}",
                 "--set", "verify.samples=1"]) == 0
    return out / "onnxruntime"


def test_external_weights_are_written_in_shards_under_the_limit(sharded_bundle):
    import onnx

    entry = json.loads((sharded_bundle / "manifest.json").read_text())["components"]["unet"]
    assert entry["verify"]["status"] == "passed"  # the runtime opened and ran the sharded model
    shards = entry["extra_files"]
    assert len(shards) >= 3, shards
    model = onnx.load(str(sharded_bundle / entry["file"]), load_external_data=False)
    largest_tensor = max(int(np.prod(t.dims)) * 4 for t in model.graph.initializer)
    for shard in shards:
        size = (sharded_bundle / shard["file"]).stat().st_size
        assert size == shard["bytes"] and len(shard["sha256"]) == 64
        assert size <= max(SHARD_BYTES, largest_tensor), (shard["file"], size)
    expected = sorted({e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"})
    assert sorted(external_locations((sharded_bundle / entry["file"]).read_bytes())) == expected
    assert sorted(s["file"] for s in shards) == expected


def test_every_shard_is_checksummed(sharded_bundle, tmp_path):
    copy = shutil.copytree(sharded_bundle, tmp_path / "copy")
    Manifest.read(copy)  # intact: passes
    shard = json.loads((copy / "manifest.json").read_text())["components"]["unet"]["extra_files"][-1]["file"]
    data = bytearray((copy / shard).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / shard).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        Manifest.read(copy)


@pytest.mark.parametrize("location, message", [("../outside.data", "outside the bundle folder"),
                                               ("/etc/hostname", "not a relative path"),
                                               ("unlisted.data", "does not list")])
def test_a_shard_location_outside_the_bundle_is_refused(sharded_bundle, tmp_path, location, message):
    """A hostile model file (checksummed or not) cannot make ONNX Runtime read a file outside the bundle, or one
    no checksum covers: the session refuses it before ONNX Runtime sees it."""
    import onnx

    copy = shutil.copytree(sharded_bundle, tmp_path / "bundle")
    (tmp_path / "outside.data").write_bytes(b"\0" * 4096)
    shutil.copy2(copy / json.loads((copy / "manifest.json").read_text())["components"]["unet"]["extra_files"][0]
                 ["file"], copy / "unlisted.data")
    manifest = Manifest.read(copy)
    unet = manifest.component("unet")
    model = onnx.load(str(unet.path), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.external_data)
    next(e for e in tensor.external_data if e.key == "location").value = location
    unet.path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match=message):
        open_session(unet, "onnxruntime")


def _model_with_side_file(folder: Path) -> Path:
    """A one-node ONNX model whose weight lives in `side.data` next to it."""
    import onnx
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(1, 4096), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4096])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4096])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="side.data", size_threshold=0)
    return path


@pytest.mark.parametrize("listed, refused", [([], True), (["side.data"], False)])
def test_an_artifact_listing_no_side_files_may_read_none(tmp_path, listed, refused):
    """Only listed side files carry a checksum, so a model whose artifact lists none may not read one, even from
    inside its folder; the same model with the file listed opens (the check is not simply always failing)."""
    from edgediff.contract import TensorSpec

    path = _model_with_side_file(tmp_path)
    artifact = Artifact("unet", path, (TensorSpec("x", (1, 4096)),), (TensorSpec("y", (1, 4096)),),
                        extra_files=[tmp_path / f for f in listed])
    if refused:
        with pytest.raises(ModelLoadError, match="does not list"):
            open_session(artifact, "onnxruntime")
    else:
        session = open_session(artifact, "onnxruntime")
        out = session.run({"x": np.ones((1, 4096), np.float32)})
        assert float(next(iter(out.values()))[0, 1]) == 2.0


def test_a_truncated_model_file_is_a_typed_error(tmp_path):
    from edgediff.contract import TensorSpec

    (tmp_path / "m.onnx").write_bytes(b"\x3a\xff\xff\xff\x0f")  # graph field claiming 4 GB
    artifact = Artifact("unet", tmp_path / "m.onnx", (TensorSpec("x", (1,)),), (TensorSpec("y", (1,)),))
    with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
        open_session(artifact, "onnxruntime")


# ---- SDXL text encoders in chunks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [10**9, 60_000, 1])
def test_split_text_encoders_chain_to_the_same_outputs(tiny_sdxl, budget):
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model
    from edgediff.model.split import run_chunks
    from edgediff.model.split_text import split_text_encoder

    model = load_model(str(tiny_sdxl))
    for component in build_components(model, ["text_encoder", "text_encoder_2"], ComponentShapes(64, 64)):
        chunks = split_text_encoder(component, budget)
        te = component.module.text_encoder
        layers = len(getattr(te, "text_model", te).encoder.layers)
        assert len(chunks) == (1 if budget == 10**9 else layers)
        assert chunks[0].input_names == ("input_ids",)
        inputs = component.example_inputs(3)
        ref = component.run_torch(inputs)
        with torch.no_grad():
            got = run_chunks(chunks, {k: torch.from_numpy(v) for k, v in inputs.items()})
        assert set(got) == set(ref)
        for key in ref:
            np.testing.assert_array_equal(got[key].numpy(), ref[key])


def test_litert_sdxl_with_chunked_text_encoders_matches_diffusers(tmp_path_factory):
    """text_encoder_2 over a forced max_chunk_bytes: converted in chunks (text_encoder, under it, whole, in the same
    bundle), each component verified against PyTorch, the image end to end too, and the torch-free runtime's image
    against diffusers. The run's one tiny SDXL-Turbo LiteRT conversion, shared with test_sdxl."""
    pytest.importorskip("litert_torch")
    from edgediff.runtime import BundlePipeline
    from tests.shared_bundle import sdxl_turbo_litert_bundle
    from tests.test_sdxl import MIN_PSNR_DB, PROMPT, psnr, reference_image

    tiny_sdxl, bundle, budget = sdxl_turbo_litert_bundle(tmp_path_factory)
    sizes = {p.parent.name: p.stat().st_size for p in tiny_sdxl.glob("*/*.safetensors")}
    assert sizes["unet"] < budget < sizes["text_encoder_2"]  # the UNet stays whole; text_encoder_2 (6.4 MB) splits
    manifest = json.loads((bundle / "manifest.json").read_text())
    components = manifest["components"]
    assert len(components["text_encoder_2"]["chunks"]) >= 2 and "chunks" not in components["text_encoder"]
    assert "chunks" not in components["unet"]
    assert all(c["verify"]["status"] == "passed" for c in components.values())
    assert manifest["verify"]["end_to_end"]["status"] == "passed"
    pipe = BundlePipeline.load(bundle)
    got = pipe.generate(PROMPT, seed=5, steps=2).image
    ref = reference_image(tiny_sdxl, 5, 2, 0.0, None, pipe.latent_shape, noisy_steps=1)
    assert psnr(got, ref) >= MIN_PSNR_DB, psnr(got, ref)
