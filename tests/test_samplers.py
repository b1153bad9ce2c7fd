"""The samplers A1111 / ComfyUI users pick, in the torch-free tables, step for step against diffusers.

Euler Ancestral, DPM++ 2M SDE (Karras), UniPC, TCD, Heun, DEIS: each runs a whole trajectory on random model
outputs with the same injected noise on both sides (see `tests.test_schedulers.trajectory_error`), and an
end-to-end case converts a tiny model folder whose scheduler_config.json names the sampler and checks the
bundle's image against diffusers' pipeline at the same seed and noise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from edgediff.errors import UnsupportedError  # noqa: E402
from edgediff.runtime.schedulers import TableScheduler, resolve_class_name, scheduler_tables  # noqa: E402
from edgediff.runtime.schedulers.config import DEFAULTS, PRESETS, preset_overrides  # noqa: E402
from tests.test_schedulers import SD, assert_matches  # noqa: E402

PROMPT = "a large red circle on a blue background, top left"
# diffusers' DEIS takes np.log of 0-d torch tensors, which numpy 2 warns about thousands of times
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")

SPACINGS = ["linspace", "leading", "trailing"]
ZERO_SNR = {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}
LINEAR = {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}
COSINE = {"beta_schedule": "squaredcos_cap_v2"}


# ---- Euler Ancestral ("Euler a") -------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_euler_ancestral_matches_diffusers(prediction_type, spacing, steps):
    assert_matches("EulerAncestralDiscreteScheduler", dict(SD, prediction_type=prediction_type, timestep_spacing=spacing), steps)


@pytest.mark.parametrize("extra", [ZERO_SNR, LINEAR, COSINE], ids=["zero-snr", "linear", "cosine"])
def test_euler_ancestral_config_variants(extra):
    assert_matches("EulerAncestralDiscreteScheduler", dict(SD, **extra), 10)


def test_euler_ancestral_injects_noise_on_every_step_but_the_last():
    sched = TableScheduler(scheduler_tables("euler_a", SD, 6))
    assert sched.class_name == "EulerAncestralDiscreteScheduler" and sched.needs_noise
    assert [sched.step_needs_noise(i) for i in range(6)] == [True] * 5 + [False]
    with pytest.raises(UnsupportedError, match="prediction_type 'sample'"):
        scheduler_tables("EulerAncestralDiscreteScheduler", dict(SD, prediction_type="sample"), 4)


# ---- DPM++ 2M SDE and DPM++ 2M SDE Karras ------------------------------------------------------------------

SDE = {"algorithm_type": "sde-dpmsolver++"}


@pytest.mark.parametrize("karras", [False, True], ids=["plain", "karras"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_dpm_2m_sde_matches_diffusers(karras, prediction_type, spacing, steps):
    config = dict(SD, **SDE, use_karras_sigmas=karras, prediction_type=prediction_type, timestep_spacing=spacing)
    assert_matches("DPMSolverMultistepScheduler", config, steps)


@pytest.mark.parametrize(
    "extra",
    [
        {"solver_type": "heun"},
        {"solver_order": 1},
        {"euler_at_final": True},
        {"final_sigmas_type": "sigma_min", "lower_order_final": False},  # ends on sigma_min twice: an identity step
        dict(ZERO_SNR),  # 20 steps; at 25 diffusers' own Karras timesteps repeat 999 and it skips a step
        dict(LINEAR),
    ],
    ids=["heun", "order1", "euler-at-final", "sigma-min", "zero-snr", "linear"],
)
def test_dpm_2m_sde_karras_variants(extra):
    assert_matches("DPMSolverMultistepScheduler", dict(SD, **SDE, use_karras_sigmas=True, **extra), 20)


def test_dpm_2m_sde_draws_noise_until_the_last_step():
    sched = TableScheduler(scheduler_tables("DPMSolverMultistepScheduler", dict(SD, **SDE, use_karras_sigmas=True), 8))
    assert [sched.step_needs_noise(i) for i in range(8)] == [True] * 7 + [False]
    with pytest.raises(UnsupportedError, match="third-order"):
        scheduler_tables("DPMSolverMultistepScheduler", dict(SD, **SDE, solver_order=3), 8)
    with pytest.raises(UnsupportedError, match="sde-dpmsolver'"):
        scheduler_tables("DPMSolverMultistepScheduler", dict(SD, algorithm_type="sde-dpmsolver"), 8)


# ---- UniPC ---------------------------------------------------------------------------------------------------


def unipc_limit(ref, x_ref):
    """diffusers' last UniPC step to sigma 0, as the limit of its formula: bh1 and noise prediction compute
    -inf * 0 = nan there; the limit is the x0 prediction (what bh2 with data prediction returns)."""
    if float(ref.sigmas[-1]) != 0.0 or (ref.config.solver_type == "bh2" and ref.predict_x0):
        assert torch.isfinite(x_ref).all()
        return x_ref
    assert not torch.isfinite(x_ref).all()  # still diffusers' behaviour? then this stand-in is needed
    m0 = ref.model_outputs[-1]
    if ref.predict_x0:
        return m0
    sigma = float(ref.sigmas[-2])
    alpha = 1.0 / (sigma * sigma + 1) ** 0.5
    return (ref.last_sample - sigma * alpha * m0) / alpha


@pytest.mark.parametrize("solver_type", ["bh2", "bh1"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_unipc_matches_diffusers(solver_type, prediction_type, spacing, steps):
    config = dict(SD, solver_type=solver_type, prediction_type=prediction_type, timestep_spacing=spacing)
    final = unipc_limit if solver_type == "bh1" else None
    assert_matches("UniPCMultistepScheduler", config, steps, final_reference=final)


@pytest.mark.parametrize(
    "extra, steps",
    [
        ({"solver_order": 1}, 10),
        ({"solver_order": 3}, 20),
        ({"solver_order": 3, "solver_type": "bh1", "final_sigmas_type": "sigma_min"}, 20),
        ({"solver_order": 3, "lower_order_final": False, "final_sigmas_type": "sigma_min"}, 20),
        ({"predict_x0": False}, 20),
        ({"predict_x0": False, "solver_type": "bh1", "final_sigmas_type": "sigma_min"}, 20),
        ({"predict_x0": False, "prediction_type": "v_prediction", "solver_order": 3}, 20),
        ({"prediction_type": "sample"}, 10),
        ({"use_karras_sigmas": True}, 20),
        ({"use_karras_sigmas": True, "final_sigmas_type": "sigma_min"}, 20),  # the last step is the identity
        ({"use_karras_sigmas": True, "solver_type": "bh1", "final_sigmas_type": "sigma_min", "solver_order": 3}, 20),
        ({"disable_corrector": [0, 3]}, 10),
        ({"solver_type": "midpoint"}, 10),  # diffusers maps it to bh2
        (dict(ZERO_SNR), 10),
        (dict(LINEAR), 10),
        (dict(COSINE), 10),
    ],
)
def test_unipc_config_variants(extra, steps):
    # third order: diffusers' float32 coefficients (differences of phi functions, a 3x3 solve) put its own
    # trajectory 1e-5 (relative) off its float64 run; ours agrees with that run to 3e-6
    assert_matches("UniPCMultistepScheduler", dict(SD, **extra), steps, final_reference=unipc_limit,
                   float64_reference=extra.get("solver_order") == 3)


@pytest.mark.parametrize(
    "extra, option",
    [
        ({"thresholding": True}, "thresholding"),
        ({"use_flow_sigmas": True}, "use_flow_sigmas"),
        ({"use_exponential_sigmas": True}, "use_exponential_sigmas"),
        ({"solver_type": "bh3"}, "solver_type"),
        ({"solver_order": 4}, "solver_order"),
        ({"lower_order_final": False}, "lower_order_final"),
        ({"prediction_type": "flow_prediction"}, "prediction_type"),
        ({"final_sigmas_type": "denoise_to_zero"}, "final_sigmas_type"),
    ],
)
def test_unipc_refuses_what_it_cannot_run(extra, option):
    with pytest.raises(UnsupportedError, match=option):
        scheduler_tables("UniPCMultistepScheduler", dict(SD, **extra), 10)


# ---- TCD (few-step LoRAs) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_tcd_matches_diffusers(prediction_type, gamma, steps):
    """gamma is our config key for what diffusers passes to TCDScheduler.step as `eta`."""
    config = dict(SD, prediction_type=prediction_type, gamma=gamma)
    assert_matches("TCDScheduler", config, steps, step_kwargs={"eta": gamma})


@pytest.mark.parametrize(
    "extra", [{"original_inference_steps": 20}, LINEAR, COSINE, ZERO_SNR, {"set_alpha_to_one": False}],
    ids=["original-20", "linear", "cosine", "zero-snr", "alpha-not-one"],
)
def test_tcd_config_variants(extra):
    assert_matches("TCDScheduler", dict(SD, **extra), 6)  # no gamma in the config: 0.3 on both sides


def test_tcd_noise_and_refusals():
    sched = TableScheduler(scheduler_tables("tcd", SD, 4))
    assert [sched.step_needs_noise(i) for i in range(4)] == [True, True, True, False]
    assert not TableScheduler(scheduler_tables("tcd", dict(SD, gamma=0.0), 4)).needs_noise
    with pytest.raises(UnsupportedError, match="gamma"):
        scheduler_tables("TCDScheduler", dict(SD, gamma=1.5), 4)
    with pytest.raises(UnsupportedError, match="original_inference_steps"):
        scheduler_tables("TCDScheduler", SD, 51)


# ---- Heun (two UNet calls per step) ------------------------------------------------------------------------
# diffusers' float32 Heun takes its second derivative as (x' - x0') / sigma_next, which cancels badly once
# sigma_next is small: 7.4e-4 off its own float64 run at |x| ~ 84 (2 steps). Ours takes it from the model
# output directly and stays within 5e-6 of that float64 run, so Heun is compared with diffusers in float64.


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 2, 4, 25])
def test_heun_matches_diffusers(prediction_type, spacing, steps):
    config = dict(SD, prediction_type=prediction_type, timestep_spacing=spacing)
    assert_matches("HeunDiscreteScheduler", config, steps, float64_reference=True)


@pytest.mark.parametrize("extra", [{}, LINEAR, COSINE, {"prediction_type": "v_prediction"}], ids=["sd", "linear", "cosine", "v"])
@pytest.mark.parametrize("steps", [4, 25])
def test_heun_karras_matches_diffusers(extra, steps):
    assert_matches("HeunDiscreteScheduler", dict(SD, use_karras_sigmas=True, **extra), steps, float64_reference=True)


def test_heun_calls_the_unet_twice_per_step_but_the_last():
    tables = scheduler_tables("heun", SD, 10)
    assert len(tables["steps"]) == 19 and tables["history_size"] == 1 and not tables["needs_noise"]
    assert [row["base"] for row in tables["steps"][:4]] == ["sample", "saved", "sample", "saved"]
    with pytest.raises(UnsupportedError, match="clip_sample"):
        scheduler_tables("HeunDiscreteScheduler", dict(SD, clip_sample=True), 10)
    with pytest.raises(UnsupportedError, match="beta_schedule 'exp'"):
        scheduler_tables("HeunDiscreteScheduler", dict(SD, beta_schedule="exp"), 10)


# ---- DEIS ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_deis_matches_diffusers(prediction_type, spacing, steps):
    assert_matches("DEISMultistepScheduler", dict(SD, prediction_type=prediction_type, timestep_spacing=spacing), steps)


@pytest.mark.parametrize(
    "extra",
    [
        {"use_karras_sigmas": True},  # ends on sigma_min twice: the last step is the identity
        {"solver_order": 1},
        {"solver_order": 3},
        {"solver_order": 3, "use_karras_sigmas": True},
        {"lower_order_final": False},
        {"algorithm_type": "dpmsolver++", "solver_type": "midpoint"},  # diffusers maps both to DEIS
        LINEAR,
        COSINE,
    ],
)
@pytest.mark.parametrize("steps", [4, 20])
def test_deis_config_variants(extra, steps):
    # third order in float32 drifts 8.6e-6 (relative) off diffusers' float64 run by itself; ours stays within 2e-6
    assert_matches("DEISMultistepScheduler", dict(SD, **extra), steps, float64_reference=extra.get("solver_order") == 3)


def test_deis_refusals():
    with pytest.raises(UnsupportedError, match="algorithm_type"):
        scheduler_tables("DEISMultistepScheduler", dict(SD, algorithm_type="sde-dpmsolver++"), 10)
    with pytest.raises(UnsupportedError, match="solver_order"):
        scheduler_tables("deis", dict(SD, solver_order=4), 10)
    with pytest.raises(UnsupportedError, match="thresholding"):
        scheduler_tables("deis", dict(SD, thresholding=True), 10)


# ---- end to end: a model folder that names the sampler converts and generates like diffusers ----------------

E2E_STEPS = 6
FOLDER_SCHEDULERS = {
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm-2m-sde-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
}


@pytest.fixture(scope="module", params=sorted(FOLDER_SCHEDULERS))
def sampler_bundle(request, tmp_path_factory):
    """(model folder, onnxruntime bundle) converted from a tiny SD folder whose scheduler_config.json names the
    sampler, written by diffusers' own save_pretrained as a community model folder would have it."""
    from tests.test_runtime import convert, make_tiny_pipeline

    class_name, extra = FOLDER_SCHEDULERS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    model = make_tiny_pipeline(root / "model")
    config_file = model / "scheduler" / "scheduler_config.json"
    config = dict(json.loads(config_file.read_text()), **extra)
    getattr(diffusers, class_name).from_config(config).save_pretrained(model / "scheduler")
    index = json.loads((model / "model_index.json").read_text())
    (model / "model_index.json").write_text(json.dumps(dict(index, scheduler=["diffusers", class_name])))
    assert json.loads(config_file.read_text())["_class_name"] == class_name
    return model, convert(model, root / "bundle", "onnxruntime", "--set", f"pipeline.num_inference_steps={E2E_STEPS}")


def diffusers_run(model, class_name: str | None, seed: int, steps: int, guidance: float, latent_shape, size, noisy_steps: int,
                  eta: float = 0.0):
    """diffusers' StableDiffusionPipeline from the folder at the runtime's seed convention: the same initial latent,
    and the runtime's per-step draws (one per noisy step, in order, after the initial one) wherever the scheduler
    module asks `randn_tensor` for noise. Returns (uint8 image, latents after every step)."""
    import sys
    from unittest import mock

    from tests.test_runtime import load_reference

    pipe = load_reference(model)
    if class_name:  # a class, an alias or a preset, as `edgediff generate --scheduler` takes it
        preset = preset_overrides(class_name)
        pipe.scheduler = getattr(diffusers, resolve_class_name(class_name)).from_config(pipe.scheduler.config, **preset)
    rng = np.random.default_rng(seed)
    initial = rng.standard_normal(latent_shape, dtype=np.float32)
    draws = [rng.standard_normal(latent_shape, dtype=np.float32) for _ in range(noisy_steps)]
    draws.append(np.zeros(latent_shape, np.float32))  # diffusers also draws on the last step and multiplies it by 0

    def next_draw(*args, **kwargs):
        return torch.from_numpy(draws.pop(0))

    per_step = []

    def keep(pipeline, i, t, tensors):
        per_step.append(tensors["latents"].numpy().copy())
        return tensors

    module = sys.modules[type(pipe.scheduler).__module__]
    with mock.patch.object(module, "randn_tensor", next_draw, create=True):
        out = pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, latents=torch.from_numpy(initial),
                   height=size[0], width=size[1], eta=eta, output_type="np", callback_on_step_end=keep).images[0]
    return (out * 255).round().astype(np.uint8), per_step


STOCHASTIC = {None, "EulerAncestralDiscreteScheduler", "TCDScheduler", "dpm++2m-sde-karras"}  # both folders' own are


@pytest.mark.parametrize("override", [None, "EulerAncestralDiscreteScheduler", "UniPCMultistepScheduler", "TCDScheduler",
                                      "HeunDiscreteScheduler", "DEISMultistepScheduler", "dpm++2m-sde-karras",
                                      "dpm++2m-karras"])
def test_bundle_generates_like_diffusers(sampler_bundle, override):
    """The bundle's own scheduler (from the folder), and the other samplers by `scheduler=` as `edgediff generate
    --scheduler` passes it; every step's latents and the image against diffusers at the same seed and noise."""
    from edgediff.runtime import BundlePipeline
    from tests.test_runtime import MIN_PSNR_DB, psnr

    model, bundle = sampler_bundle
    pipe = BundlePipeline.load(bundle)
    sched = pipe.manifest.scheduler
    assert "tables_error" not in sched and sched["tables"]["class_name"] == sched["class_name"]
    if override == "DEISMultistepScheduler" and sched["config"].get("algorithm_type") == "sde-dpmsolver++":
        with pytest.raises(NotImplementedError):  # diffusers refuses this config for DEIS too
            diffusers.DEISMultistepScheduler.from_config(sched["config"])
        with pytest.raises(UnsupportedError, match="algorithm_type 'sde-dpmsolver[+][+]'"):
            pipe.generate(PROMPT, seed=7, scheduler=override)
        return
    result = pipe.generate(PROMPT, seed=7, scheduler=override, keep_intermediates=True)
    tables = pipe.scheduler(result.steps, override)
    noisy = sum(tables.step_needs_noise(i) for i in range(len(tables)))
    # the ancestral / SDE / TCD samplers inject noise on all steps but the last; the others are deterministic
    # (a preset never reuses the manifest's tables: dpm++2m-karras on the SDE folder must not draw noise)
    assert noisy == (len(tables) - 1 if override in STOCHASTIC else 0)
    assert result.scheduler == (override.lower() if preset_overrides(override) else tables.class_name)
    p = pipe.manifest.pipeline
    gamma = DEFAULTS["TCDScheduler"]["gamma"] if override == "TCDScheduler" else 0.0  # the pipeline's eta
    image, latents = diffusers_run(model, override, 7, result.steps, result.guidance, pipe.latent_shape,
                                   (p["height"], p["width"]), noisy, eta=gamma)
    ours = result.intermediates["latents_per_step"]
    assert len(ours) == len(latents) == len(tables)  # Heun: 2 * E2E_STEPS - 1 UNet calls
    worst = max(float(np.abs(a - b).max() / max(1.0, np.abs(b).max())) for a, b in zip(ours, latents))
    value = psnr(result.image, image)
    print(f"\n{result.scheduler} {result.steps} steps: latents max rel diff {worst:.1e}, PSNR {value:.1f} dB vs diffusers")
    assert worst <= 2e-5  # measured 1e-6..2e-6: the ONNX UNet against torch
    assert value >= MIN_PSNR_DB


# ---- names: aliases, presets and the CLI ------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_are_their_class_with_their_keys(preset):
    class_name, keys = PRESETS[preset]
    bundle_config = dict(SD, algorithm_type="dpmsolver++", use_karras_sigmas=False)  # what the preset must override
    tables = scheduler_tables(preset, bundle_config, 12)
    expected = scheduler_tables(class_name, dict(bundle_config, **keys), 12)
    assert tables.pop("sampler") == preset and tables == expected
    assert TableScheduler(scheduler_tables(preset.upper(), bundle_config, 12)).name == preset


def test_generate_offers_every_name():
    from edgediff.cli import build_parser
    from edgediff.runtime.schedulers.config import ALIASES

    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "generate" in a.choices).choices["generate"]
    help_text = " ".join(next(a for a in sub._actions if a.dest == "scheduler").help.split())
    missing = [name for name in [*ALIASES, *PRESETS] if name not in help_text and name not in ("euler-ancestral", "dpmsolver++")]
    assert not missing, f"--scheduler help does not mention {missing}"
    assert parser.parse_args(["generate", "bundle", "--scheduler", "dpm++2m-sde-karras"]).scheduler == "dpm++2m-sde-karras"
    with pytest.raises(UnsupportedError, match="dpm[+][+]2m-sde-karras"):  # the refusal lists what exists
        resolve_class_name("KDPM2AncestralDiscreteScheduler")
