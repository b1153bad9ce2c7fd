"""Distillation maths and the student folder, on a tiny randomly initialised SD pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")
diffusers = pytest.importorskip("diffusers")

from tests.distill_tiny import save_tiny_teacher, tokenizer_dir  # noqa: E402

from edgediff.slim import distill as D  # noqa: E402

pytestmark = pytest.mark.skipif(not tokenizer_dir().is_dir(), reason="needs the CLIP tokenizer files in shared/architectures")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny-sd")


def test_guidance_embedding_matches_diffusers() -> None:
    from diffusers import StableDiffusionPipeline

    w = torch.tensor([0.0, 1.5, 7.0])
    for dim in (256, 33):
        ref = StableDiffusionPipeline.get_guidance_scale_embedding(None, w, embedding_dim=dim)
        # float32 arguments up to ~7e3 rad: an ulp of the argument (~5e-4) may separate two torch op orders
        torch.testing.assert_close(D.guidance_embedding(w, dim), ref, rtol=0, atol=1e-3)


def test_boundary_scalings_match_lcm_scheduler() -> None:
    from diffusers import LCMScheduler

    sched = LCMScheduler()
    t = torch.tensor([0, 19, 499, 999])
    c_skip, c_out = D.boundary_scalings(t, 10.0)
    for i, ti in enumerate(t.tolist()):
        ref_skip, ref_out = sched.get_scalings_for_boundary_condition_discrete(ti)
        assert c_skip[i].item() == pytest.approx(ref_skip, rel=1e-5)
        assert c_out[i].item() == pytest.approx(ref_out, rel=1e-5)
    assert c_skip[0] == 1.0 and c_out[0] == 0.0  # the boundary: f(x, 0) = x


def test_cosine_learning_rate_depends_on_the_step_only(tmp_path: Path) -> None:
    def rate(schedule: str, step: int, max_steps: int = 100) -> float:
        settings = D.DistillSettings(teacher=tmp_path, output=tmp_path, run_dir=tmp_path, learning_rate=2e-4,
                                     lr_schedule=schedule, max_steps=max_steps)
        return D.learning_rate_at(settings, step)

    assert rate("constant", 0) == rate("constant", 99) == 2e-4
    assert rate("cosine", 0) == pytest.approx(2e-4) and rate("cosine", 50) == pytest.approx(1e-4)
    assert rate("cosine", 100) == pytest.approx(0.0, abs=1e-12) and rate("cosine", 150) == pytest.approx(0.0, abs=1e-12)
    assert rate("cosine", 25) > rate("cosine", 26)
    with pytest.raises(D.RecipeError, match="lr_schedule"):
        rate("linear", 0)


def test_ddim_x0_target_lands_on_the_goal() -> None:
    g = torch.Generator().manual_seed(0)
    x_t, x_end = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    a_t, a_end = torch.tensor([0.05, 0.3, 0.6]), torch.tensor([0.3, 0.7, 1.0])
    x0 = D.ddim_x0_target(x_t, x_end, a_t, a_end)
    _, eps = D.split_prediction((x_t - a_t.sqrt().view(-1, 1, 1, 1) * x0) / (1 - a_t).sqrt().view(-1, 1, 1, 1), x_t, a_t, "epsilon")
    torch.testing.assert_close(D.ddim_step(x0, eps, a_end), x_end, atol=1e-4, rtol=1e-4)


def test_student_starts_equal_to_teacher_and_lora_fuses_exactly(teacher: Path) -> None:
    pipe = D.load_teacher(teacher)
    student = D.make_student_unet(pipe.unet, 64).eval()
    assert student.config.time_cond_proj_dim == 64
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 32, generator=g)
    t = torch.tensor([999, 10])
    cond = D.guidance_embedding(torch.tensor([6.5, 0.0]), 64)
    with torch.no_grad():
        ref = pipe.unet(x, t, encoder_hidden_states=text).sample
        torch.testing.assert_close(student(x, t, encoder_hidden_states=text, timestep_cond=cond).sample, ref)
        lora = D.make_student_unet(pipe.unet, None).eval()
        wrapped = D.add_lora(lora, rank=4)
        assert wrapped > 0 and not any(p.requires_grad for n, p in lora.named_parameters() if "lora_" not in n)
        for m in lora.modules():
            if isinstance(m, D.LoRALinear):
                torch.nn.init.normal_(m.lora_up.weight, std=0.05)
        before = lora(x, t, encoder_hidden_states=text).sample
        assert not torch.allclose(before, ref)
        assert D.fuse_lora(lora) == wrapped
        assert not any(isinstance(m, D.LoRALinear) for m in lora.modules())
        torch.testing.assert_close(lora(x, t, encoder_hidden_states=text).sample, before, atol=1e-5, rtol=1e-4)


def test_step_loss_is_zero_when_student_equals_one_teacher_step(teacher: Path) -> None:
    """With one teacher step per student step, no guidance and the student initialised from the teacher,
    the student's DDIM step is the teacher's: the distillation target must be met exactly."""
    pipe = D.load_teacher(teacher)
    settings = D.DistillSettings(teacher=teacher, output=teacher, run_dir=teacher, method="step", steps=4, teacher_steps=4,
                                 guided_fraction=0.0, guidance_embedding_dim=64)
    student = D.make_student_unet(pipe.unet, 64).eval()
    sched = D.Schedule.from_scheduler(pipe.scheduler)
    grid = D.student_timesteps(dict(pipe.scheduler.config), 4)
    assert grid[0].tolist() == [999, 749, 499, 249] and grid[1].tolist() == [749, 499, 249, -1]
    g = torch.Generator().manual_seed(2)
    x0, text = torch.randn(6, 4, 8, 8, generator=g), torch.randn(6, 77, 32, generator=g)
    empty = torch.randn(1, 77, 32, generator=g).expand(6, -1, -1)
    _, parts = D.step_distill_loss(student, pipe.unet, sched, settings, grid, x0, text, empty, g)
    assert parts["distill"] < 1e-8
    assert parts["denoise"] > 0.0


def test_step_rollout_inputs_are_the_students_own_sampler_states(teacher: Path) -> None:
    """Rollout batches start from pure noise and take the student's first k steps exactly as its DDIM sampler does;
    with one teacher step per student step and the student equal to the teacher the target is then met exactly,
    and the denoising term (no known noise for a rolled-out input) is left out."""
    from diffusers import DDIMScheduler

    pipe = D.load_teacher(teacher)
    settings = D.DistillSettings(teacher=teacher, output=teacher, run_dir=teacher, method="step", steps=4, teacher_steps=4,
                                 guided_fraction=0.0, guidance_embedding_dim=64, rollout_fraction=1.0)
    student = D.make_student_unet(pipe.unet, 64).eval()
    sched = D.Schedule.from_scheduler(pipe.scheduler)
    ts, nxt = D.student_timesteps(dict(pipe.scheduler.config), 4)
    g = torch.Generator().manual_seed(3)
    x0, text = torch.randn(6, 4, 8, 8, generator=g), torch.randn(6, 77, 32, generator=g)
    empty = torch.randn(1, 77, 32, generator=g).expand(6, -1, -1)
    _, parts = D.step_distill_loss(student, pipe.unet, sched, settings, (ts, nxt), x0, text, empty, g)
    assert parts["distill"] < 1e-8 and parts["denoise"] == 0.0

    noise = torch.randn(6, 4, 8, 8, generator=g)
    cond = D.guidance_embedding(torch.zeros(6), 64)
    rolled = D.student_rollout(student, sched, ts, nxt, 2, noise, text, cond)
    sampler = DDIMScheduler.from_config(D.step_scheduler_config(dict(pipe.scheduler.config)))
    sampler.set_timesteps(4)
    x = noise
    with torch.no_grad():
        for t in sampler.timesteps[:2]:
            out = student(x, t, encoder_hidden_states=text, timestep_cond=cond).sample
            x = sampler.step(out, t, x).prev_sample
    torch.testing.assert_close(rolled, x, atol=1e-5, rtol=1e-4)


def test_consistency_student_folder_samples_without_a_guidance_batch(teacher: Path, tmp_path: Path) -> None:
    from diffusers import LCMScheduler, StableDiffusionPipeline

    out = tmp_path / "student"
    settings = D.DistillSettings(teacher=teacher, output=out, run_dir=tmp_path / "run", max_steps=3, batch_size=2,
                                 cache_size=8, checkpoint_every=2, guidance=6.0, guidance_embedding_dim=64, cpu=True)
    result = D.distill(settings)
    assert result.loop.final_step == 3 and result.replicas_identical and result.num_processes == 1
    defaults = json.loads((out / "edgediff.json").read_text())
    assert defaults["format"] == "edgediff-model/1"
    assert (out / "tokenizer" / "vocab.json").is_file() and (out / "tokenizer" / "merges.txt").is_file()
    assert (defaults["steps"], defaults["guidance"], defaults["batched_cfg"], defaults["scheduler"]) == (4, 6.0, False, "LCMScheduler")
    from edgediff.commands.eval import model_defaults

    assert model_defaults(out) == (4, 6.0)  # `edgediff eval STUDENT` samples it as recorded
    row = torch.tensor(defaults["guidance_embedding"]["timestep_cond"])
    torch.testing.assert_close(row, D.guidance_embedding(torch.tensor([5.0]), 64)[0])

    pipe = StableDiffusionPipeline.from_pretrained(str(out), safety_checker=None, requires_safety_checker=False)
    assert isinstance(pipe.scheduler, LCMScheduler) and pipe.unet.config.time_cond_proj_dim == 64
    student_weights = D.parameter_digest(pipe.unet)
    assert student_weights != D.parameter_digest(D.make_student_unet(D.load_teacher(teacher).unet, 64))  # it trained
    calls: list[tuple[int, bool]] = []
    pipe.unet.register_forward_hook(lambda m, args, kwargs, out: calls.append((args[0].shape[0], kwargs.get("timestep_cond") is not None)), with_kwargs=True)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a small red circle on a blue background, in the center", num_inference_steps=defaults["steps"],
                 guidance_scale=defaults["guidance"], output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3)
    assert calls == [(1, True)] * 4  # one UNet call per step, batch 1, guidance through timestep_cond


def test_recipe_distill_step_swaps_in_the_student(teacher: Path, tmp_path: Path) -> None:
    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model
    from edgediff.recipe import SlimStep
    from edgediff.slim.steps import apply_slim_steps

    model = load_model(str(teacher))
    before = build_components(model, ["text_encoder", "unet", "vae_decoder"], ComponentShapes(64, 64, batched_cfg=True))
    assert before[1].inputs[0].shape[0] == 2
    options = {"method": "consistency", "steps": 2, "max_steps": 2, "batch_size": 2, "cache_size": 4, "guidance": 5.0,
               "guidance_embedding_dim": 32, "output": str(tmp_path / "student"), "run_dir": str(tmp_path / "run"), "cpu": True}
    after = apply_slim_steps([SlimStep(kind="distill", options=options)], model, before)
    unet = after[1]
    assert [s.name for s in unet.inputs] == ["sample", "timestep", "encoder_hidden_states", "timestep_cond"]
    assert unet.inputs[0].shape == (1, 4, 8, 8) and unet.inputs[3].shape == (1, 32)
    assert model.scheduler_class == "LCMScheduler" and model.defaults["steps"] == 2 and model.defaults["batched_cfg"] is False
    digest = D.parameter_digest(model.unet)
    again = load_model(str(teacher))
    apply_slim_steps([SlimStep(kind="distill", options=options)], again, before)  # current student: reused, not retrained
    assert D.parameter_digest(again.unet) == digest
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final_step"] == 2
    with pytest.raises(D.RecipeError, match="unknown distill option"):
        D.settings_from_options(teacher, {"stepz": 4})


def test_end_to_end_sampling_of_an_lcm_student_is_reproducible(teacher: Path) -> None:
    """LCM re-noises between steps: two runs of the same loop (PyTorch vs. artifact in convert's end-to-end
    check) must draw the same noise, or identical models would look like a parity failure."""
    from diffusers import LCMScheduler

    from edgediff.model import sampling

    pipe = D.load_teacher(teacher)
    unet = D.make_student_unet(pipe.unet, 32).eval()
    torch.nn.init.normal_(unet.time_embedding.cond_proj.weight, std=0.1)
    settings = D.DistillSettings(teacher=teacher, output=teacher, run_dir=teacher, guidance_embedding_dim=32)
    config = D.lcm_scheduler_config(dict(pipe.scheduler.config), settings)

    def text(inputs):
        with torch.no_grad():
            return {"last_hidden_state": pipe.text_encoder(torch.from_numpy(inputs["input_ids"]))[0].numpy()}

    def net(inputs):
        with torch.no_grad():
            t = {k: torch.from_numpy(v) for k, v in inputs.items()}
            return {"noise_pred": unet(t["sample"], t["timestep"], encoder_hidden_states=t["encoder_hidden_states"],
                                       timestep_cond=t["timestep_cond"]).sample.numpy()}

    def decode(inputs):
        return {"image": inputs["latent"][:, :3].repeat(8, axis=2).repeat(8, axis=3)}

    ids = pipe.tokenizer(["a red circle", ""], padding="max_length", max_length=77, return_tensors="np").input_ids.astype("int64")
    run = lambda: sampling.generate(  # noqa: E731
        text, net, decode, input_ids=ids[:1], uncond_ids=ids[1:], scheduler=LCMScheduler.from_config(config),
        settings=sampling.SamplingSettings("a red circle", 3, 4, 6.0), latent_shape=(1, 4, 8, 8),
        scaling_factor=1.0, unet_batch=1, time_cond_dim=32)
    first = run()
    torch.randn(10)  # the global RNG moves between the two runs, as it does in a real process
    assert (run() == first).all()


def test_lcm_lora_student_is_fused_and_has_no_guidance_input(teacher: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "lora"
    settings = D.DistillSettings(teacher=teacher, output=out, run_dir=tmp_path / "run", max_steps=2, batch_size=2,
                                 cache_size=4, lora_rank=4, guidance=5.0, learning_rate=1e-2, cpu=True)
    D.distill(settings)
    defaults = json.loads((out / "edgediff.json").read_text())
    assert defaults["guidance"] == 1.0 and defaults["batched_cfg"] is False and defaults["guidance_embedding"] is None
    assert defaults["distillation"]["method"] == "consistency+lora" and defaults["distillation"]["distilled_guidance"] == 5.0
    pipe = StableDiffusionPipeline.from_pretrained(str(out), safety_checker=None, requires_safety_checker=False)
    assert pipe.unet.config.time_cond_proj_dim is None
    teacher_unet = D.load_teacher(teacher).unet
    assert set(pipe.unet.state_dict()) == set(teacher_unet.state_dict())  # plain teacher layout: LoRA fused away
    changed = [k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, teacher_unet.state_dict()[k])]
    assert changed and all(any(t in k for t in ("attn", "proj_in", "proj_out", "ff.net")) for k in changed)


def test_shipped_four_step_student_records_its_sampler() -> None:
    """models/shapes-sd-step4 is what `edgediff eval` / `convert` pick up by name: 4 DDIM steps (trailing), guidance
    5 fed to the UNet as timestep_cond, no unconditional batch; the teacher's tokenizer files are all there."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from edgediff.commands.eval import model_defaults

    folder = Path(__file__).resolve().parents[1] / "models" / "shapes-sd-step4"
    defaults = D.read_model_defaults(folder)
    assert (defaults["steps"], defaults["guidance"], defaults["batched_cfg"], defaults["scheduler"]) == \
        (4, 5.0, False, "DDIMScheduler")
    assert defaults["distillation"]["method"] == "step" and defaults["distillation"]["rollout_fraction"] == 0.5
    assert model_defaults(folder) == (4, 5.0)
    assert (folder / "tokenizer" / "vocab.json").is_file() and (folder / "tokenizer" / "merges.txt").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.scheduler.config.timestep_spacing == "trailing"
    assert pipe.unet.config.time_cond_proj_dim == defaults["guidance_embedding"]["dim"] == 256
    row = torch.tensor(defaults["guidance_embedding"]["timestep_cond"])
    torch.testing.assert_close(row, D.guidance_embedding(torch.tensor([4.0]), 256)[0], rtol=0, atol=1e-3)


def test_distillation_trains_on_a_folder_of_the_users_images(teacher: Path, tmp_path: Path) -> None:
    """The training data interface: a folder with metadata.jsonl instead of the shapes task."""
    from PIL import Image

    from edgediff.errors import ModelLoadError
    from edgediff.slim.data import ImageFolderData, training_data

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        lines.append(json.dumps({"file_name": f"img{i}.png", "text": f"a photo number {i}"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    data = training_data(str(folder), seed=0, size=64)
    images, captions = data.batch(0, 3)
    assert images.shape == (3, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert captions == ["a photo number 0", "a photo number 1", "a photo number 2"]

    settings = D.DistillSettings(teacher=teacher, output=tmp_path / "student", run_dir=tmp_path / "run", max_steps=2,
                                 batch_size=2, cache_size=8, checkpoint_every=2, guidance=6.0,
                                 guidance_embedding_dim=64, cpu=True, data=str(folder))
    assert D.distill(settings).loop.final_step == 2
    assert list((tmp_path / "run").glob(f"latents_{data.name}_8.pt"))  # the user's images were encoded

    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "../outside.png", "text": "x"}) + "\n")
    with pytest.raises(ModelLoadError, match="outside"):
        ImageFolderData(folder, 64)
