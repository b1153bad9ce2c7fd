"""The shared Accelerate training loop: runs, logs, checkpoints and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")

from edgediff.slim.training import LoopSettings, checkpoint_dirs, make_accelerator, run_loop, step_generator


def _train(out: Path, max_steps: int) -> tuple[torch.nn.Module, object]:
    settings = LoopSettings(output_dir=out, max_steps=max_steps, seed=3, checkpoint_every=4, log_every=2, cpu=True)
    accelerator = make_accelerator(settings)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt = accelerator.prepare(model, opt)
    target = torch.tensor([[1.0, -2.0, 0.5, 3.0]])

    def step(i: int) -> dict[str, float]:
        gen = step_generator(settings.seed, accelerator.process_index, i)
        x = torch.randn(16, 4, generator=gen)
        loss = ((model(x) - x @ target.T) ** 2).mean()
        opt.zero_grad()
        accelerator.backward(loss)
        opt.step()
        return {"loss": float(loss.detach())}

    result = run_loop(accelerator, settings, step)
    return accelerator.unwrap_model(model), result


def test_loop_resumes_to_the_same_weights(tmp_path: Path) -> None:
    straight, res = _train(tmp_path / "a", 10)
    assert res.start_step == 0 and res.final_step == 10
    assert res.last_metrics["loss"] < 5.0
    _train(tmp_path / "b", 6)  # interrupted run: stops at 6 (checkpoint at 4 and a final one at 6)
    assert [p.name for p in checkpoint_dirs(tmp_path / "b")] == ["step_0000004", "step_0000006"]
    resumed, res_b = _train(tmp_path / "b", 10)
    assert res_b.start_step == 6 and res_b.final_step == 10
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)
    lines = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6, 8, 10]


def test_step_generator_differs_per_process_and_step() -> None:
    draws = {(p, s): torch.randn(3, generator=step_generator(0, p, s)) for p in (0, 1) for s in (0, 1)}
    assert not torch.equal(draws[(0, 0)], draws[(1, 0)])
    assert not torch.equal(draws[(0, 0)], draws[(0, 1)])
    assert torch.equal(draws[(0, 0)], torch.randn(3, generator=step_generator(0, 0, 0)))


def test_time_budget_stops_early_and_checkpoints(tmp_path: Path) -> None:
    settings = LoopSettings(output_dir=tmp_path, max_steps=1000, checkpoint_every=500, max_seconds=0.0, cpu=True)
    accelerator = make_accelerator(settings)
    result = run_loop(accelerator, settings, lambda i: {"i": float(i)})
    assert result.final_step == 1
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_0000001"]
