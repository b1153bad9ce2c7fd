"""`accelerate launch` with 2 CPU processes runs the distill command data-parallel and the replicas agree.

accelerate's `--cpu` launcher starts one process unless MPI is installed; its torchrun launcher
(`--multi_gpu`) starts N processes, and with no GPU visible our Accelerator is built with cpu=True, which
makes them a MULTI_CPU (gloo) group. The same command uses the GPUs on a machine that has them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")

from tests.distill_tiny import save_tiny_teacher, tokenizer_dir  # noqa: E402


@pytest.mark.skipif(not tokenizer_dir().is_dir(), reason="needs the CLIP tokenizer files in shared/architectures")
@pytest.mark.parametrize("method", ["step"])
def test_two_cpu_processes_keep_identical_replicas(tmp_path: Path, method: str) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test checks the 2-CPU-process case; a visible GPU would be used instead")
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate launcher is not on PATH")
    teacher = save_tiny_teacher(tmp_path / "teacher")
    run_dir, out = tmp_path / "run", tmp_path / "student"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [
        launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", "edgediff.commands.distill", str(teacher), "--method", method,
        "--steps", "2", "--teacher-steps", "4", "--max-steps", "3", "--batch-size", "2", "--cache-size", "8",
        "--checkpoint-every", "2", "--log-every", "1", "--output", str(out), "--run-dir", str(run_dir),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_processes"] == 2
    assert summary["final_step"] == 3
    assert len(summary["replica_digests"]) == 2 and summary["replicas_identical"], summary["replica_digests"]
    assert (out / "edgediff.json").is_file() and (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    logged = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3]  # written once (main process), not once per replica
