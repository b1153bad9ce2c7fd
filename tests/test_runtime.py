"""The torch-free runtime on real converted bundles: images match diffusers, the CLI, golden files, chunked
components, checksum failures, the Jetson runner (one prompt and the HTTP endpoint) and the no-torch guarantee.

The bundle is converted once per module with `edgediff convert --target onnxruntime`, from the default model
(models/shapes-sd, a real trained pipeline) when its folder exists, else from a tiny random-weight Stable
Diffusion pipeline built in code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from edgediff.errors import ModelLoadError  # noqa: E402
from edgediff.contract import Manifest  # noqa: E402
from edgediff.runtime import BundlePipeline  # noqa: E402
from edgediff.runtime.golden import read_tensor  # noqa: E402
from edgediff.runtime.pipeline import guidance_scale_embedding, initial_noise  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = Path("/work/shared/architectures/stable-diffusion-v1-5/tokenizer")
DEFAULT_MODEL = REPO / "models" / "shapes-sd"
PROMPT = "a large red circle on a blue background, top left"
MIN_PSNR_DB = 30.0


def make_tiny_pipeline(folder: Path, lcm: bool = False) -> Path:
    """A random-weight SD pipeline small enough to export in seconds, with the real SD 1.5 tokenizer files."""
    from diffusers import AutoencoderKL, LCMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8, time_cond_proj_dim=32 if lcm else None,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32, 32, 32), latent_channels=4, sample_size=64, norm_num_groups=8, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, vocab_size=49408,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=32,
    ))
    sched_dir = Path("/work/shared/architectures/stable-diffusion-v1-5/scheduler")
    scheduler = (LCMScheduler if lcm else PNDMScheduler).from_pretrained(sched_dir)
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(str(TOKENIZER)),
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    # transformers 5 saves tokenizer.json only; bundles (and devices) use the classic vocab/merges files
    shutil.rmtree(folder / "tokenizer")
    shutil.copytree(TOKENIZER, folder / "tokenizer")
    return folder


def convert(model: Path, output: Path, target: str = "onnxruntime", *extra: str) -> Path:
    from edgediff.cli import main

    code = main([
        "convert", str(model), "--target", target, "--output", str(output), "--no-profile",
        "--set", "verify.samples=1", "--set", "verify.end_to_end=false", *extra,
    ])
    assert code == 0, f"edgediff convert failed with exit code {code}"
    return output / target


def load_reference(model: Path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_image(model, prompt: str, seed: int, steps: int, guidance: float, latent_shape, height: int,
                    width: int, scheduler: str | None = None, negative_prompt: str = "") -> np.ndarray:
    """The reference: diffusers' own pipeline (a folder or a loaded pipeline), fed the runtime's numpy initial
    noise (it scales by init_noise_sigma itself)."""
    pipe = load_reference(model) if isinstance(model, Path) else model
    original = pipe.scheduler
    if scheduler:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(original.config)
    noise = initial_noise(seed, latent_shape)
    out = pipe(prompt, negative_prompt=negative_prompt or None, num_inference_steps=steps, guidance_scale=guidance,
               latents=torch.from_numpy(noise), height=height, width=width, output_type="np").images[0]
    pipe.scheduler = original
    return (out * 255).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def default_model_present() -> bool:
    return (DEFAULT_MODEL / "model_index.json").exists()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model folder, onnxruntime bundle): the default model if trained, else a tiny random pipeline."""
    root = tmp_path_factory.mktemp("runtime")
    if default_model_present():  # converted once per run, shared with the Kotlin core's test data
        from tests.shared_bundle import default_ort_bundle

        return DEFAULT_MODEL, default_ort_bundle(tmp_path_factory, DEFAULT_MODEL)
    model = make_tiny_pipeline(root / "tiny-sd")
    return model, convert(model, root / "bundle")


@pytest.fixture(scope="module")
def reference(tiny):
    # one torch thread: the tiny reference is latency-bound, and extra threads only spin on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_reference(tiny[0])
    torch.set_num_threads(threads)


# ---- images match diffusers ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler, steps", [(None, None), ("EulerDiscreteScheduler", 8), ("DPMSolverMultistepScheduler", 8),
                                              ("DDIMScheduler", 8)])
def test_image_matches_diffusers(tiny, reference, scheduler, steps):
    _, bundle = tiny
    pipe = BundlePipeline.load(bundle)
    result = pipe.generate(PROMPT, seed=3, steps=steps, scheduler=scheduler, negative_prompt="blurry")
    p = pipe.manifest.pipeline
    expected = diffusers_image(reference, PROMPT, 3, result.steps, result.guidance, pipe.latent_shape, p["height"],
                               p["width"], scheduler, negative_prompt="blurry")
    assert result.image.shape == expected.shape == (p["height"], p["width"], 3)
    value = psnr(result.image, expected)
    print(f"\n{result.scheduler} {result.steps} steps: PSNR {value:.1f} dB vs diffusers; {result.timings.describe()}")
    assert value >= MIN_PSNR_DB


def test_defaults_timings_and_seed_convention(tiny):
    _, bundle = tiny
    pipe = BundlePipeline.load(bundle)
    image = pipe("a cat", seed=5)
    assert image.dtype == np.uint8 and image.ndim == 3
    timings = pipe.last_timings
    manifest_steps = pipe.manifest.scheduler["num_inference_steps"]
    assert len(timings.unet_step_ms) == len(pipe.manifest.scheduler["tables"]["steps"]) >= manifest_steps
    assert timings.total_ms >= timings.unet_ms > 0 and timings.vae_decoder_ms > 0 and timings.text_encoder_ms > 0
    again = pipe.generate("a cat", seed=5, keep_intermediates=True)
    np.testing.assert_array_equal(image, again.image)
    expected = np.random.default_rng(5).standard_normal(pipe.latent_shape, dtype=np.float32)
    np.testing.assert_array_equal(again.intermediates["initial_noise"], expected)
    assert not np.array_equal(image, pipe("a cat", seed=6))


def test_guidance_embedding_matches_diffusers():
    from diffusers import StableDiffusionPipeline

    for w, dim in [(7.5 - 1, 256), (0.0, 32), (2.0, 33)]:
        ref = StableDiffusionPipeline.get_guidance_scale_embedding(None, torch.tensor([w]), embedding_dim=dim)
        # arguments reach ~7e3 rad, where one float32 ulp of the argument is ~5e-4: torch's float32 exp/sin may
        # land an ulp away from ours (float64 evaluation rounded once), depending on the CPU's vector kernels
        np.testing.assert_allclose(guidance_scale_embedding(w, dim), ref.numpy(), rtol=0, atol=1e-3)


# ---- bundle integrity -----------------------------------------------------------------------------------


def test_checksums_and_missing_files(tiny, tmp_path):
    _, bundle = tiny
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    unet = copy / manifest["components"]["unet"]["file"]
    data = bytearray(unet.read_bytes())
    data[len(data) // 2] ^= 0xFF
    unet.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        Manifest.read(copy)
    Manifest.read(copy, verify_checksums=False)  # same size: only the hash catches it
    unet.unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        Manifest.read(copy)


def _split_unet(bundle: Path, out: Path) -> None:
    """Rewrite `out` (a copy of bundle) so its UNet is two ONNX files chained by an intermediate tensor."""
    import onnx
    from onnx.utils import extract_model

    from edgediff.contract import sha256_file

    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["components"]["unet"]
    src = bundle / entry["file"]
    graph = onnx.load(str(src)).graph
    input_names = [i["name"] for i in entry["inputs"]]
    produced = [o for node in graph.node for o in node.output]
    cut = produced[len(produced) // 2]
    first, second = out / "unet_part0.onnx", out / "unet_part1.onnx"
    extract_model(str(src), str(first), input_names, [cut])
    extract_model(str(src), str(second), input_names + [cut], [entry["outputs"][0]["name"]])
    needed = {i.name for i in onnx.load(str(second)).graph.input}
    import onnxruntime as ort

    feeds = {i["name"]: np.zeros(i["shape"], dtype=i["dtype"]) for i in entry["inputs"]}
    cut_value = ort.InferenceSession(str(first)).run([cut], feeds)[0]
    cut_spec = {"name": cut, "shape": list(cut_value.shape), "dtype": str(cut_value.dtype)}
    entry["chunks"] = [
        {"file": first.name, "sha256": sha256_file(first), "bytes": first.stat().st_size,
         "inputs": entry["inputs"], "outputs": [cut_spec]},
        {"file": second.name, "sha256": sha256_file(second), "bytes": second.stat().st_size,
         "inputs": [i for i in entry["inputs"] if i["name"] in needed] + [cut_spec], "outputs": entry["outputs"]},
    ]
    (out / entry["file"]).unlink()
    entry["file"] = first.name
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def test_chunked_unet_gives_the_same_image(tiny, tmp_path):
    _, bundle = tiny
    chunked = tmp_path / "chunked"
    shutil.copytree(bundle, chunked)
    _split_unet(bundle, chunked)
    whole = BundlePipeline.load(bundle).generate(PROMPT, seed=1, steps=6, keep_intermediates=True)
    parts_pipe = BundlePipeline.load(chunked)
    assert len(parts_pipe.manifest.component("unet").chunks) == 2
    parts = parts_pipe.generate(PROMPT, seed=1, steps=6, keep_intermediates=True)
    np.testing.assert_allclose(parts.intermediates["final_latents"], whole.intermediates["final_latents"], atol=1e-5)
    assert psnr(parts.image, whole.image) >= 60


# ---- commands -------------------------------------------------------------------------------------------


def test_generate_command_single_and_batch(tiny, tmp_path, capsys):
    from edgediff.cli import main

    _, bundle = tiny
    out = tmp_path / "one.png"
    assert main(["generate", str(bundle), "--prompt", PROMPT, "--output", str(out), "--seed", "3", "--steps", "5",
                 "--guidance", "5", "--quiet"]) == 0
    from PIL import Image

    image = np.asarray(Image.open(out))
    expected = BundlePipeline.load(bundle)(PROMPT, seed=3, steps=5, guidance=5.0)
    np.testing.assert_array_equal(image, expected)
    printed = capsys.readouterr().out
    calls = len(BundlePipeline.load(bundle).scheduler(5).steps)  # PNDM: one more UNet call than steps
    assert f"unet {calls} calls" in printed and "vae decoder" in printed

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# comment\na red circle\n\na blue square\n")
    folder, timings = tmp_path / "batch", tmp_path / "timings.json"
    assert main(["generate", str(bundle.parent), "--prompts-file", str(prompts), "--output", str(folder),
                 "--steps", "3", "--quiet", "--timings-json", str(timings), "--scheduler", "euler"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["0000.png", "0001.png"]
    records = json.loads(timings.read_text())
    assert [r["seed"] for r in records] == [0, 1] and all(len(r["unet_step_ms"]) == 3 for r in records)
    assert records[0]["scheduler"] == "EulerDiscreteScheduler"

    assert main(["generate", str(bundle), "--output", str(out)]) == 2  # neither --prompt nor --prompts-file
    assert "exactly one of" in capsys.readouterr().err


def test_bundle_golden(tiny, tmp_path):
    from edgediff.cli import main

    _, bundle = tiny
    out = tmp_path / "golden"
    assert main(["bundle-golden", str(bundle), "--output", str(out), "--seed", "7", "--steps", "4"]) == 0
    golden = json.loads((out / "golden.json").read_text())
    reference = transformers.CLIPTokenizer.from_pretrained(str(TOKENIZER))
    assert golden["tokens"]["input_ids"] == reference(golden["prompt"], padding="max_length", max_length=77,
                                                      truncation=True).input_ids
    for case in golden["tokens"]["cases"]:
        assert case["ids"] == reference(case["text"], padding="max_length", max_length=77, truncation=True).input_ids
    tensors = golden["tensors"]
    noise = read_tensor(out, tensors["initial_noise"])
    np.testing.assert_array_equal(noise, np.random.default_rng(7).standard_normal(noise.shape, dtype=np.float32))
    steps = [k for k in tensors if k.startswith("latents_after_step_")]
    tables = json.loads((out / "scheduler_tables.json").read_text())
    assert len(steps) == len(tables["steps"])
    np.testing.assert_array_equal(read_tensor(out, tensors[steps[-1]]), read_tensor(out, tensors["final_latents"]))
    # the golden run is reproducible by a fresh runtime (what an app does, stage by stage)
    pipe = BundlePipeline.load(bundle)
    embeds = pipe.encode(np.array([golden["tokens"]["input_ids"]], dtype=np.int64))
    np.testing.assert_allclose(embeds, read_tensor(out, tensors["prompt_embeds"]), atol=1e-6)
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(out / "image.png")), pipe(golden["prompt"], seed=7, steps=4))


# ---- no torch on the runtime path -----------------------------------------------------------------------

_BLOCK_TORCH = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "diffusers", "transformers", "torchvision", "accelerate"):
            raise ImportError("blocked on the runtime path: " + name)
        return None
sys.meta_path.insert(0, _Block())
"""


def _run_without_torch(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", _BLOCK_TORCH + code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_runtime_runs_where_torch_cannot_be_imported(tiny, tmp_path):
    _, bundle = tiny
    code = f"""
import argparse, sys
from pathlib import Path
from edgediff.runtime import BundlePipeline
from edgediff.runtime.golden import write_golden
import edgediff.commands.generate as generate
pipe = BundlePipeline.load({str(bundle)!r})
image = pipe({PROMPT!r}, seed=3, steps=4)
assert image.shape[2] == 3
write_golden(pipe, Path("golden"), steps=2)
parser = argparse.ArgumentParser(); sub = parser.add_subparsers()
generate.register(sub)
args = parser.parse_args(["generate", {str(bundle)!r}, "--prompt", "a cat", "--output", "cat.png", "--steps", "3", "-q"])
assert args.func(args) == 0
heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers", "transformers")]
assert not heavy, heavy
print("ok")
"""
    result = _run_without_torch(code, tmp_path)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
    assert (tmp_path / "cat.png").exists() and (tmp_path / "golden" / "golden.json").exists()


def test_cli_generate_runs_where_torch_cannot_be_imported(tiny, tmp_path):
    """`edgediff generate` through the CLI: every registered command must import torch lazily (in run(), not
    at import or register time), or the CLI cannot start on a device without PyTorch."""
    _, bundle = tiny
    code = f"""
import argparse, importlib, sys
from edgediff.cli import COMMAND_MODULES, main
heavy = []
for name in COMMAND_MODULES:
    try:
        importlib.import_module(name).register(argparse.ArgumentParser().add_subparsers())
    except ImportError as exc:
        heavy.append(f"{{name}} ({{exc}})")
if heavy:
    sys.exit("command modules import torch/diffusers/transformers at import or register time: " + "; ".join(heavy))
sys.exit(main(["generate", {str(bundle)!r}, "--prompt", "a cat", "--output", "cat.png", "--steps", "2", "-q"]))
"""
    result = _run_without_torch(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


# ---- the Jetson runner ----------------------------------------------------------------------------------

RUNNER = REPO / "apps" / "jetson" / "runner.py"


def test_jetson_runner_one_prompt_without_torch(tiny, tmp_path):
    _, bundle = tiny
    code = f"""
import sys
sys.argv = ["runner.py", {str(bundle)!r}, "--prompt", {PROMPT!r}, "--output", "out.png", "--steps", "4",
            "--scheduler", "euler", "--provider", "cpu", "--timings-json", "t.json"]
sys.path.insert(0, {str(RUNNER.parent)!r})
import runner
sys.exit(runner.main())
"""
    result = _run_without_torch(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "per-step unet latency" in result.stderr and "step   4/4" in result.stderr
    assert "CPUExecutionProvider" in result.stderr
    record = json.loads((tmp_path / "t.json").read_text())
    assert len(record["unet_step_ms"]) == 4
    from PIL import Image

    expected = BundlePipeline.load(bundle)(PROMPT, seed=0, steps=4, scheduler="euler")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)


def test_jetson_runner_prompt_loop(tiny, tmp_path):
    _, bundle = tiny
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(bundle), "--loop", "--output-dir", "imgs", "--steps", "2", "--seed", "5",
         "--provider", "cpu", "--quiet"],
        cwd=tmp_path, input="a red circle\n\na blue star\n", capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "imgs").iterdir()) == ["0000.png", "0001.png"]
    from PIL import Image

    expected = BundlePipeline.load(bundle)("a blue star", seed=6, steps=2)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "imgs" / "0001.png")), expected)


def test_jetson_runner_http_endpoint(tiny, tmp_path):
    _, bundle = tiny
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), str(bundle), "--serve", "--host", "127.0.0.1", "--port", "0",
         "--max-requests", "1", "--provider", "cpu", "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 300
        line = ""
        while time.time() < deadline and "serving on" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"runner exited: {proc.stderr.read()[-3000:]}")
        url = line.split("serving on ")[1].split()[0]
        health = json.loads(urllib.request.urlopen(url + "/health", timeout=60).read())
        assert health["status"] == "ok" and health["backend"] == "onnxruntime"
        body = json.dumps({"prompt": PROMPT, "seed": 2, "steps": 3}).encode()
        request = urllib.request.Request(url + "/generate", data=body, headers={"Content-Type": "application/json"})
        response = urllib.request.urlopen(request, timeout=300)
        assert response.headers["Content-Type"] == "image/png"
        timings = json.loads(response.headers["X-Edgediff-Timings"])
        assert timings["unet_calls"] == len(BundlePipeline.load(bundle).scheduler(3).steps)
        png = response.read()
        assert proc.wait(timeout=60) == 0  # --max-requests 1: it stops by itself
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    from io import BytesIO

    from PIL import Image

    expected = BundlePipeline.load(bundle)(PROMPT, seed=2, steps=3)
    np.testing.assert_array_equal(np.asarray(Image.open(BytesIO(png))), expected)


# ---- the default model ----------------------------------------------------------------------------------


@pytest.mark.skipif(not default_model_present(),
                    reason="models/shapes-sd is not trained yet (edgediff train-default writes it)")
def test_default_model_image_matches_diffusers(tiny, reference):
    """The issue's acceptance check: `edgediff generate` on the default model's onnxruntime bundle, at the
    manifest's scheduler, steps and guidance, against diffusers' pipeline at the same seed."""
    model, bundle = tiny
    assert model == DEFAULT_MODEL
    out = bundle.parent.parent / "default.png"
    from edgediff.cli import main
    from PIL import Image

    assert main(["generate", str(bundle), "--prompt", PROMPT, "--seed", "0", "--output", str(out), "-q"]) == 0
    pipe = BundlePipeline.load(bundle)
    p, sched = pipe.manifest.pipeline, pipe.manifest.scheduler
    expected = diffusers_image(reference, PROMPT, 0, sched["num_inference_steps"], p["guidance"]["scale"],
                               pipe.latent_shape, p["height"], p["width"])
    value = psnr(np.asarray(Image.open(out)), expected)
    print(f"\nshapes-sd onnxruntime: PSNR {value:.2f} dB vs diffusers ({sched['class_name']}, "
          f"{sched['num_inference_steps']} steps, guidance {p['guidance']['scale']})")
    assert value >= MIN_PSNR_DB


# ---- an LCM student: embedded guidance and noise injected between steps --------------------------------


@pytest.mark.slow
def test_lcm_pipeline_matches_diffusers(tmp_path):
    from unittest import mock

    model = make_tiny_pipeline(tmp_path / "tiny-lcm", lcm=True)
    bundle = convert(model, tmp_path / "bundle", "onnxruntime", "--set", "pipeline.num_inference_steps=4")
    pipe = BundlePipeline.load(bundle)
    assert "timestep_cond" in [t.name for t in pipe.manifest.component("unet").inputs]
    result = pipe.generate(PROMPT, seed=4, guidance=3.0)
    rng = np.random.default_rng(4)
    initial_noise(rng, pipe.latent_shape)  # the initial latent; then one float32 draw per noisy step, as the runtime does

    def same_noise(shape, **kwargs):
        return torch.from_numpy(rng.standard_normal(pipe.latent_shape, dtype=np.float32))

    p = pipe.manifest.pipeline
    with mock.patch("diffusers.schedulers.scheduling_lcm.randn_tensor", same_noise):
        reference = diffusers_image(model, PROMPT, 4, result.steps, 3.0, pipe.latent_shape, p["height"], p["width"])
    assert psnr(result.image, reference) >= MIN_PSNR_DB


def test_coreml_bundle_explains_it_needs_macos(tmp_path):
    """Loading a Core ML bundle off macOS fails with BackendUnavailable before touching the model files."""
    import platform

    from edgediff.contract import tree_sha256
    from edgediff.errors import BackendUnavailable

    if platform.system() == "Darwin":
        pytest.skip("on macOS Core ML bundles do run")
    shutil.copytree(TOKENIZER, tmp_path / "tokenizer")
    components = {}
    for name, inputs, outputs in [
        ("text_encoder", [("input_ids", [1, 77], "int32")], [("last_hidden_state", [1, 77, 32], "float32")]),
        ("unet", [("sample", [2, 4, 8, 8], "float32"), ("timestep", [2], "float32"),
                  ("encoder_hidden_states", [2, 77, 32], "float32")], [("noise_pred", [2, 4, 8, 8], "float32")]),
        ("vae_decoder", [("latent", [1, 4, 8, 8], "float32")], [("image", [1, 3, 64, 64], "float32")]),
    ]:
        package = tmp_path / f"{name}.mlpackage"
        package.mkdir()
        (package / "Manifest.json").write_text("{}")
        components[name] = {
            "file": package.name, "sha256": tree_sha256(package),
            "inputs": [dict(name=n, shape=s, dtype=d) for n, s, d in inputs],
            "outputs": [dict(name=n, shape=s, dtype=d) for n, s, d in outputs],
        }
    manifest = {
        "format": "edgediff-bundle/1", "backend": "coreml", "precision": "fp16", "components": components,
        "pipeline": {"height": 64, "width": 64, "latent_shape": [1, 4, 8, 8], "vae_scaling_factor": 0.18215,
                     "guidance": {"scale": 7.5, "batched_cfg": True},
                     "scheduler": {"class_name": "EulerDiscreteScheduler", "config": {}, "num_inference_steps": 4}},
        "tokenizer": {"vocab": "tokenizer/vocab.json", "merges": "tokenizer/merges.txt", "max_length": 77},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackendUnavailable, match="macOS"):
        BundlePipeline.load(tmp_path)


@pytest.mark.slow
def test_litert_bundle_matches_diffusers(tmp_path):
    """The same parity on a LiteRT bundle (int32 input_ids in the .tflite, XNNPACK interpreter)."""
    pytest.importorskip("ai_edge_litert")
    model = make_tiny_pipeline(tmp_path / "tiny-sd")
    bundle = convert(model, tmp_path / "bundle", "litert", "--set", "pipeline.num_inference_steps=10")
    pipe = BundlePipeline.load(bundle)
    assert pipe.manifest.backend == "litert"
    result = pipe.generate(PROMPT, seed=3)
    p = pipe.manifest.pipeline
    expected = diffusers_image(model, PROMPT, 3, result.steps, result.guidance, pipe.latent_shape, p["height"], p["width"])
    value = psnr(result.image, expected)
    print(f"\nlitert {result.steps} steps: PSNR {value:.1f} dB vs diffusers; {result.timings.describe()}")
    assert value >= MIN_PSNR_DB
