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
