"""Robust training (random block skipping) and BK-SDM recovery on a tiny real SD pipeline, incl. 2 processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")

from tests.distill_tiny import save_tiny_teacher, tokenizer_dir  # noqa: E402

from edgediff.slim import prune  # noqa: E402
from edgediff.slim.prune import PruneSpec  # noqa: E402

pytestmark = [pytest.mark.skipif(not tokenizer_dir().is_dir(), reason="needs the CLIP tokenizer files in shared/architectures"),
              pytest.mark.usefixtures("one_thread")]
REPO = Path(__file__).resolve().parents[1]


def save_prunable_teacher(folder: Path) -> Path:
    """The tiny distillation teacher with a UNet that has two pairs per stage (so pairs can be removed)."""
    from diffusers import UNet2DConditionModel

    save_tiny_teacher(folder)
    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_prunable_teacher(tmp_path_factory.mktemp("teacher") / "tiny-sd")




def test_removal_units_are_each_valid_and_cover_every_kind(teacher: Path):
    config = json.loads((teacher / "unet" / "config.json").read_text())
    units = prune.removal_units(config)
    kinds = {line.split(" ", 1)[1] for u in units for line in u.describe() if " " in line}
    assert {"pair 0", "pair 1", "attention"} <= kinds and PruneSpec(drop_mid=True) in units
    assert all(prune.spec_error(config, u) is None for u in units)
    # Every combination the sampler builds is a valid architecture.
    from edgediff.slim.robust import sample_subnet

    specs = {sample_subnet(config, units, 0, step, 1.0, 0.5) for step in range(40)}
    assert len(specs) > 5 and all(prune.spec_error(config, s) is None for s in specs)


def test_recovery_trains_only_the_student_and_saves_a_loadable_pipeline(teacher: Path, tmp_path: Path):
    from diffusers import StableDiffusionPipeline

    from edgediff.slim.recover import RecoverSettings, recover

    spec = prune.preset_spec(json.loads((teacher / "unet" / "config.json").read_text()), "bk-small")
    settings = RecoverSettings(teacher=teacher, output=tmp_path / "student", run_dir=tmp_path / "run", spec=spec,
                               max_steps=4, batch_size=2, cache_size=8, checkpoint_every=2, log_every=1,
                               learning_rate=1e-3)
    result = recover(settings)
    assert result.loop.final_step == 4 and result.student_parameters < result.teacher_parameters
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(r["kd_feat"] > 0 and r["kd_out"] > 0 for r in logged)
    pipe = StableDiffusionPipeline.from_pretrained(str(tmp_path / "student"), use_safetensors=True)
    assert pipe.unet.config.mid_block_type is None
    record = json.loads((tmp_path / "student" / "unet" / "edgediff_prune.json").read_text())
    assert PruneSpec.from_dict(record["spec"]) == spec and record["recovery"]["train_steps"] == 4
    # the teacher's tokenizer files, byte for byte (the runtime and the apps read vocab.json + merges.txt)
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / "student" / "tokenizer" / name).read_bytes() == (teacher / "tokenizer" / name).read_bytes()
    # The teacher folder is untouched and the student moved away from its surgery initialisation.
    initial = prune.prune_unet(StableDiffusionPipeline.from_pretrained(str(teacher)).unet, spec)
    changed = [k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, initial.state_dict()[k])]
    assert changed


def test_robust_training_keeps_the_architecture_and_updates_skippable_blocks(teacher: Path, tmp_path: Path):
    from diffusers import UNet2DConditionModel

    from edgediff.slim.robust import RobustSettings, robust_train

    settings = RobustSettings(teacher=teacher, output=tmp_path / "robust", run_dir=tmp_path / "run", max_steps=4,
                              subnet_prob=1.0, unit_prob=0.5, batch_size=2, cache_size=8, checkpoint_every=10,
                              log_every=1, learning_rate=1e-3)
    result = robust_train(settings)
    assert result.subnets_seen >= 2
    before = UNet2DConditionModel.from_pretrained(teacher / "unet")
    after = UNet2DConditionModel.from_pretrained(tmp_path / "robust" / "unet")
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
    assert public(after.config) == public(before.config)
    assert any(not torch.equal(v, before.state_dict()[k]) for k, v in after.state_dict().items())


def test_two_cpu_processes_recover_with_identical_replicas(teacher: Path, tmp_path: Path):
    """`accelerate launch` with 2 CPU processes (gloo) runs `edgediff prune --recover`; replicas agree."""
    if torch.cuda.is_available():
        pytest.skip("this test checks the 2-CPU-process case; a visible GPU would be used instead")
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate launcher is not on PATH")
    run_dir, out = tmp_path / "run", tmp_path / "student"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", "edgediff.commands.prune", str(teacher), "--preset", "bk-small", "--recover",
        "--max-steps", "3", "--batch-size", "2", "--cache-size", "8", "--checkpoint-every", "2", "--log-every", "1",
        "--output", str(out), "--run-dir", str(run_dir),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["final_step"] == 3
    assert len(summary["replica_digests"]) == 2 and summary["replicas_identical"], summary["replica_digests"]
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def cli_main(argv: list[str]) -> int:
    """`edgediff prune ...` through the command's own parser (as `accelerate launch -m` runs it)."""
    import argparse

    from edgediff.commands import prune as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)
