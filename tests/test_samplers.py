"""The samplers A1111 / ComfyUI users pick, in the torch-free tables, step for step against diffusers.

Euler Ancestral, DPM++ 2M SDE (Karras), UniPC, TCD, Heun, DEIS: each runs a whole trajectory on random model
outputs with the same injected noise on both sides (see `tests.test_schedulers.trajectory_error`), and an
end-to-end case converts a tiny model folder whose scheduler_config.json names the sampler and checks the
bundle's image against diffusers' pipeline at the same seed and noise.
"""

from __future__ import annotations

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("torch")

from edgediff.errors import UnsupportedError  # noqa: E402
from edgediff.runtime.schedulers import TableScheduler, resolve_class_name, scheduler_tables  # noqa: E402
from tests.test_schedulers import SD, assert_matches  # noqa: E402

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
