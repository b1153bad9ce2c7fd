"""The numpy table-driven schedulers step exactly like diffusers' (the reference may use torch; the runtime may not).

Each case runs a whole trajectory on random model outputs: the same initial noise, the same model output
and (for LCM / SDE / ancestral samplers) the same injected noise at every step, comparing the scaled model
input and the new latent after every step. Random model outputs drive latents to magnitudes of 40-100, where
float32 itself resolves only ~1e-5: diffusers' own float32 trajectory differs from a float64 run of the same
code by 1e-5..5e-5 there. So each step's error is measured relative to the largest latent that step reads
or writes: max|ours - diffusers| / max(1, max|x_in|, max|x_out|) <= 1e-5 (measured: <= 1e-6 for the main
classes; Euler on a zero-terminal-SNR schedule, whose first latent is ~1e4, is compared with diffusers run in float64)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from edgediff.errors import UnsupportedError  # noqa: E402
from edgediff.runtime.schedulers import TableScheduler, scheduler_tables  # noqa: E402

ARCHITECTURES = Path("/work/shared/architectures")
SD = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False, "skip_prk_steps": True,
}
TOLERANCE = 1e-5
SHAPE = (1, 4, 8, 8)


def trajectory_error(class_name: str, config: dict, steps: int, seed: int = 0, step_kwargs: dict | None = None,
                     per_step: list | None = None, final_reference=None,
                     float64_reference: bool = False) -> tuple[float, float, float]:
    """(max abs error, peak |latent|, max relative step error) over a whole trajectory; the reference runs from the config, ours from
    the JSON-serialised tables only (what a device receives).

    Every step draws one standard-normal array; ours receives it only where its table injects noise, and
    diffusers receives the same array wherever its scheduler module calls `randn_tensor` (or as
    `variance_noise` for the DPM solvers), so a noise term on one side only shows up as a mismatch.
    A step's error is relative to the largest latent it reads or writes: float32 resolves ~1e-7 of that, and
    a zero-terminal-SNR schedule starts at sigma 4096 (|x| ~ 1e4), where diffusers' own float32 step is
    off by ~7e-4 from the exact value (ours, from float64 coefficients, by ~3e-6).
    `per_step`, when given, collects each step's max error. Both sides must stay finite; where diffusers
    itself returns nan on the last step, `final_reference(ref, x_ref)` gives the value to compare with instead.
    `float64_reference` runs diffusers in float64 (sigmas, latents, model outputs; ours stays float32), for
    solvers whose own float32 arithmetic is off by more than the tolerance (UniPC order 3, Heun)."""
    ref = getattr(diffusers, class_name).from_config(config)
    ref.set_timesteps(steps)
    precision = torch.float64 if float64_reference else torch.float32
    if float64_reference:
        ref.sigmas = ref.sigmas.double()
    tables = json.loads(json.dumps(scheduler_tables(class_name, config, steps)))
    ours = TableScheduler(tables)
    # diffusers derives these in float32 (1 - alphas_cumprod loses digits near t=0); ours are float64.
    np.testing.assert_allclose(ours.timesteps, ref.timesteps.numpy().astype(np.float64), rtol=1e-5, atol=1e-3)
    assert math.isclose(ours.init_noise_sigma, float(ref.init_noise_sigma), rel_tol=1e-4)
    rng = np.random.default_rng(seed)
    noise0 = rng.standard_normal(SHAPE).astype(np.float32)
    x_ref = torch.from_numpy(noise0).to(precision) * ref.init_noise_sigma
    x_ours = (noise0 * ours.init_noise_sigma).astype(np.float32)
    module = sys.modules[type(ref).__module__]
    worst = peak = relative = 0.0
    for i, t in enumerate(ref.timesteps):
        scale_in = float(np.abs(x_ref.numpy()).max())
        in_ref = ref.scale_model_input(x_ref, t).numpy()
        in_ours = ours.scale_model_input(x_ours, i)
        step_worst = float(np.abs(in_ref - in_ours).max())
        model_output = rng.standard_normal(SHAPE).astype(np.float32)
        injected = rng.standard_normal(SHAPE).astype(np.float32)
        draw = torch.from_numpy(injected).to(precision)
        kwargs = dict(step_kwargs or {})
        if class_name == "DPMSolverMultistepScheduler":
            kwargs["variance_noise"] = draw
        with mock.patch.object(module, "randn_tensor", lambda *a, _draw=draw, **k: _draw, create=True):
            x_ref = ref.step(torch.from_numpy(model_output).to(precision), t, x_ref, **kwargs).prev_sample
        if final_reference is not None and i == len(ref.timesteps) - 1:
            x_ref = final_reference(ref, x_ref)
        assert torch.isfinite(x_ref).all(), f"diffusers' {class_name} is not finite after step {i}"
        x_ours = ours.step(model_output, i, x_ours, noise=injected if ours.step_needs_noise(i) else None)
        assert x_ours.dtype == np.float32 and np.isfinite(x_ours).all()
        step_worst = max(step_worst, float(np.abs(x_ref.numpy() - x_ours).max()))
        if per_step is not None:
            per_step.append(step_worst)
        scale_out = float(np.abs(x_ref.numpy()).max())
        worst = max(worst, step_worst)
        peak = max(peak, scale_out)
        relative = max(relative, step_worst / max(1.0, scale_in, scale_out))
    return worst, peak, relative


def assert_matches(class_name: str, config: dict, steps: int, step_kwargs: dict | None = None, **options) -> float:
    """Assert the relative trajectory error is within TOLERANCE; return it (options: see trajectory_error)."""
    worst, peak, relative = trajectory_error(class_name, config, steps, step_kwargs=step_kwargs, **options)
    assert relative <= TOLERANCE, f"{class_name} {config} {steps} steps: max error {worst:.2e} at peak {peak:.1f}"
    return relative


MAIN = ["DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler"]


@pytest.mark.parametrize("class_name", MAIN)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_matches_diffusers(class_name, prediction_type, spacing, steps):
    assert_matches(class_name, dict(SD, prediction_type=prediction_type, timestep_spacing=spacing), steps)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("steps", [1, 4, 8])
def test_lcm_matches_diffusers_with_injected_noise(prediction_type, steps):
    assert_matches("LCMScheduler", dict(SD, prediction_type=prediction_type), steps)


@pytest.mark.parametrize(
    "class_name, extra, steps",
    [
        ("DDIMScheduler", {"clip_sample": True}, 10),
        ("DDIMScheduler", {"set_alpha_to_one": True, "steps_offset": 0}, 10),
        ("DDIMScheduler", {"prediction_type": "sample", "clip_sample": True}, 10),
        ("DDIMScheduler", {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}, 10),
        ("DDIMScheduler", {"beta_schedule": "squaredcos_cap_v2"}, 10),
        ("DDIMScheduler", {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}, 10),
        ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, 10),
        ("EulerDiscreteScheduler", {"final_sigmas_type": "sigma_min"}, 10),
        ("EulerDiscreteScheduler", {"timestep_type": "continuous", "prediction_type": "v_prediction"}, 10),
        ("EulerDiscreteScheduler", {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}, 10),
        ("DPMSolverMultistepScheduler", {"solver_order": 3}, 20),
        ("DPMSolverMultistepScheduler", {"solver_order": 1}, 10),
        ("DPMSolverMultistepScheduler", {"solver_type": "heun"}, 10),
        ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, 10),
        ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun"}, 20),
        ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, 20),
        ("DPMSolverMultistepScheduler", {"final_sigmas_type": "sigma_min", "lower_order_final": False}, 20),
        ("DPMSolverMultistepScheduler", {"euler_at_final": True}, 20),
        ("DPMSolverMultistepScheduler", {"lambda_min_clipped": -5.1}, 20),
        ("LCMScheduler", {"clip_sample": True, "prediction_type": "v_prediction"}, 4),
        ("LCMScheduler", {"original_inference_steps": 20}, 8),
        ("PNDMScheduler", {"set_alpha_to_one": True}, 50),
        ("PNDMScheduler", {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}, 2),
    ],
)
def test_config_variants_match_diffusers(class_name, extra, steps):
    # Euler on a zero-terminal-SNR schedule starts at sigma 4096: diffusers' own float32 step there is off by
    # ~1e-5 of the latent (machine-dependent rounding), so the reference runs in float64, as for UniPC and Heun.
    exact = class_name == "EulerDiscreteScheduler" and bool(extra.get("rescale_betas_zero_snr"))
    assert_matches(class_name, dict(SD, **extra), steps, float64_reference=exact)


@pytest.mark.parametrize("arch", ["stable-diffusion-v1-5", "stable-diffusion-2-1-base"])
@pytest.mark.parametrize("class_name", MAIN + ["LCMScheduler"])
def test_shared_architecture_configs(arch, class_name):
    """The configs real models ship with (PNDM configs loaded into other classes, as `from_config` does)."""
    config = json.loads((ARCHITECTURES / arch / "scheduler" / "scheduler_config.json").read_text())
    assert_matches(class_name, config, 20)


def test_tables_are_json_and_self_describing():
    tables = scheduler_tables("DPMSolverMultistepScheduler", dict(SD, lambda_min_clipped=-math.inf), 20)
    text = json.dumps(tables, allow_nan=False)  # strict JSON: no inf/nan for device parsers
    data = json.loads(text)
    assert data["class_name"] == "DPMSolverMultistepScheduler"
    assert len(data["timesteps"]) == len(data["steps"]) == 20
    assert data["history_size"] == 1
    pndm = scheduler_tables("PNDMScheduler", dict(SD, skip_prk_steps=True), 20)
    assert len(pndm["steps"]) == 21  # PLMS evaluates the UNet once more than num_inference_steps
    assert pndm["steps"][1]["base"] == "saved"


def test_aliases_and_teaching_errors():
    assert scheduler_tables("euler", SD, 5)["class_name"] == "EulerDiscreteScheduler"
    with pytest.raises(UnsupportedError, match="use one of"):
        scheduler_tables("KDPM2DiscreteScheduler", SD, 5)
    with pytest.raises(UnsupportedError, match="skip_prk_steps"):
        scheduler_tables("PNDMScheduler", dict(SD, skip_prk_steps=False), 5)
    with pytest.raises(UnsupportedError, match="thresholding"):
        scheduler_tables("DDIMScheduler", dict(SD, thresholding=True), 5)
    with pytest.raises(UnsupportedError, match="original_inference_steps"):
        scheduler_tables("LCMScheduler", SD, 80)
    sched = TableScheduler(scheduler_tables("LCMScheduler", SD, 4))
    with pytest.raises(UnsupportedError, match="noise"):
        sched.step(np.zeros(SHAPE, np.float32), 0, np.zeros(SHAPE, np.float32))
