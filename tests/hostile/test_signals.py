"""Hostile input, part 3: signals and leftovers, with the CLI as its own process. SIGINT exits 130 and SIGTERM 143,
both removing the staging folder; SIGKILL leaves it, and the next run into the same place removes it (its PID is
gone) and says so. A staging folder whose run is still alive is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgediff.cli import main
from edgediff.outputs import clean_leftovers, pid_alive
from tests.hostile.support import CONVERT_FAST, ROOT, copy_tree, nothing_complete, one_error, run_cli


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "edgediff.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _when_staging_appears(proc: subprocess.Popen, folder: Path, pattern: str, timeout: float = 120,
                          settle: float = 0.5) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(pattern)) if folder.exists() else []
        if found:
            time.sleep(settle)  # inside the work, not at its first line
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before staging (exit {proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {pattern} in {folder} after {timeout} s")


def _interrupt(args: list[str], folder: Path, pattern: str, sig: int, settle: float = 0.5) -> tuple[int, str]:
    proc = _start(args)
    _when_staging_appears(proc, folder, pattern, settle=settle)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


GOLDEN_LONG = ["--steps", "900"]  # near the most PNDM allows (1000 overflows its tables): time to be interrupted


@pytest.mark.parametrize("sig,code,words", [(signal.SIGINT, 130, "interrupted (SIGINT)"),
                                            (signal.SIGTERM, 143, "terminated (SIGTERM)")], ids=["SIGINT", "SIGTERM"])
def test_golden_interrupted_cleans_its_staging_folder(tiny_bundle, tmp_path, sig, code, words):
    bundle = copy_tree(tiny_bundle, tmp_path / "bundle")
    # a fast CPU denoises the compact tiny model's steps quickly: signal soon after staging appears
    rc, err = _interrupt(["bundle-golden", str(bundle), *GOLDEN_LONG], bundle, ".golden.partial-*", sig, settle=0.1)
    one_error(rc, err, expected_code=code, match=words)
    assert not list(bundle.glob(".golden*")) and not (bundle / "golden").exists()


def test_convert_terminated_cleans_its_staging_folder(tiny_folder, tmp_path):
    out = tmp_path / "out"
    rc, err = _interrupt(["convert", str(tiny_folder), "-o", str(out), *CONVERT_FAST], out,
                         ".onnxruntime.partial-*", signal.SIGTERM)
    one_error(rc, err, expected_code=143, match="terminated")
    nothing_complete(out)
    assert not (out / "onnxruntime").exists()


def test_golden_killed_then_rerun_removes_the_leftover(tiny_bundle, tmp_path):
    bundle = copy_tree(tiny_bundle, tmp_path / "bundle")
    proc = _start(["bundle-golden", str(bundle), *GOLDEN_LONG])
    leftover = _when_staging_appears(proc, bundle, ".golden.partial-*")
    proc.kill()
    proc.communicate(timeout=60)
    assert leftover.exists() and not (bundle / "golden").exists()  # SIGKILL cannot clean up: the next run does
    done = run_cli(["bundle-golden", str(bundle), "--steps", "2"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"removed {leftover}" in done.stderr and f"pid {proc.pid}" in done.stderr
    assert not leftover.exists() and (bundle / "golden" / "golden.json").exists()


def test_convert_killed_then_rerun_into_the_same_folder(tiny_folder, tmp_path):
    out = tmp_path / "out"
    quick = ["--components", "vae_decoder", "--set", "verify.end_to_end=false", *CONVERT_FAST]
    proc = _start(["convert", str(tiny_folder), "-o", str(out), *quick])
    leftover = _when_staging_appears(proc, out, ".onnxruntime.partial-*")
    proc.kill()
    proc.communicate(timeout=60)
    assert leftover.exists()
    done = run_cli(["convert", str(tiny_folder), "-o", str(out), *quick])
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"removed {leftover}" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["onnxruntime"]


# ---- which leftovers are removed ------------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def test_only_leftovers_of_finished_runs_are_removed(tmp_path, capsys):
    final = tmp_path / "golden"
    alive, now = os.getppid(), int(time.time())
    kept = tmp_path / f".golden.partial-{alive}-{now}"  # a run still writing (the test runner's parent)
    reused = tmp_path / f".golden.partial-{alive}-1000"  # that PID, but a process started after the folder was made
    dead = tmp_path / f".golden.partial-{_dead_pid()}-{now}"
    old = tmp_path / f".golden.old-{_dead_pid()}"
    other = tmp_path / f".other.partial-{_dead_pid()}-{now}"  # another output's: not ours to touch
    for folder in (kept, reused, dead, old, other):
        folder.mkdir()
        (folder / "half-written.onnx").write_bytes(b"x")
    removed = clean_leftovers(final, log=print)
    assert sorted(removed) == sorted([reused, dead, old])
    assert kept.exists() and other.exists()
    assert capsys.readouterr().out.count("left by an interrupted run") == 3


def test_a_failed_run_cleans_leftovers_before_failing(tiny_folder, tmp_path, capsys):
    """Leftovers go at the door, before the model loads: even a run that then fails removes them."""
    out = tmp_path / "out"
    leftover = out / f".onnxruntime.partial-{_dead_pid()}-{int(time.time())}"
    leftover.mkdir(parents=True)
    folder = copy_tree(tiny_folder, tmp_path / "model")
    for weights in folder.rglob("*.safetensors"):
        weights.unlink()
    capsys.readouterr()
    code = main(["convert", str(folder), "-o", str(out), "--no-profile"])
    err = capsys.readouterr().err
    one_error(code, err, match="no weights")
    assert not leftover.exists() and f"removed {leftover}" in err
