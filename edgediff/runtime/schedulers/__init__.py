"""Diffusion schedulers as precomputed tables, stepped with plain numpy (no torch, no diffusers).

Every scheduler we support is linear in the latent and the model output at each step (except an optional
clip of the predicted clean sample), so `scheduler_tables()` reduces diffusers' per-class logic to a list of
per-step coefficients. A device then only needs multiply-adds to run any of them; `TableScheduler` is that
device algorithm in numpy, and it is what `edgediff generate` uses too, so the tables are tested end to end.

The stepping rule, for step i with coefficients from `tables["steps"][i]`:

    model_input = x * input_scale                      # fed to the UNet at `timestep`
    base        = saved if base == "saved" else x      # PNDM's second step restarts from an earlier latent
    saved       = x                 (if save_sample)
    d           = convert[0] * base + convert[1] * m   # m: the (guided) model output; d is what history keeps
    c           = combine[0] * d + combine[1] * history[-1] + combine[2] * history[-2] + ...
    history.append(d)               (if push; keep the last `history_size`)
    x0          = clip(x0[0] * base + x0[1] * m, -clip_range, clip_range)   (only if the table has x0)
    x           = update[0] * base + update[1] * c + update[2] * x0 + update[3] * noise

`noise` is a fresh standard-normal draw, only needed where update[3] != 0 (LCM, TCD, Euler ancestral, SDE
solvers). Samplers that call the model more than once per step (PNDM's warm-up, Heun) have one row per call;
UniPC's corrector folds into its rows (see `unipc`).

Layout: `coefficients` (one table row), `config` (diffusers' defaults, the accepted names and presets),
`noise_schedule` (betas, alphas and sigma math the families share), one file per scheduler family
(`ddim`, `euler` with Euler ancestral, `heun`, `dpm_solver`, `unipc`, `deis`, `lcm`, `tcd`, `pndm`), `tables`
(`scheduler_tables`) and `table_scheduler` (`TableScheduler`). Everything here is numpy only: the runtime
must not need torch.
"""

from edgediff.runtime.schedulers.config import resolve_class_name
from edgediff.runtime.schedulers.table_scheduler import TableScheduler
from edgediff.runtime.schedulers.tables import scheduler_tables

__all__ = ["TableScheduler", "resolve_class_name", "scheduler_tables"]
