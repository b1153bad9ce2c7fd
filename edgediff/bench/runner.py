"""Run a suite's rows: one conversion and one timing subprocess per row, each under the heavy lock, resumable.

Memory: each conversion runs in its own subprocess; a sampler thread sums the resident memory of that process and
all its descendants every 0.1 s (psutil) — the "process tree peak" — and os.wait4 gives the largest single
process's own peak (the kernel's ru_maxrss). Short spikes between two samples can be missed by the first; the
second is exact but counts one process only, so both are recorded.

Resumption: a row's conversion and timing results are written (rows/<key>/convert.json, timing.json, row.json) as
each completes; a rerun skips a finished phase (ok, failed or skipped with the same settings) unless --force.
The lock is taken per row (its conversion and its timing), so a long suite never holds the machine for more than
one row, and a row's timing follows its conversion without another wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from edgediff.bench import anchors
from edgediff.bench.machine import LoadSampler
from edgediff.bench.rows import RowSpec
from edgediff.contract import strict_json_value

DONE = ("ok", "failed", "skipped")


@dataclass
class ChildResult:
    returncode: int
    wall_s: float
    peak_tree_rss_mb: float
    peak_process_rss_mb: float
    load_average_1min: dict[str, float]
    result: dict[str, Any] | None
    error: str = ""


@dataclass
class RunOptions:
    output: Path
    work: Path
    lock: Path | None = Path("/tmp/edgediff-heavy.lock")
    force: bool = False
    keep_artifacts: bool = False
    optimum_python: str | None = None
    timeout_s: float = 4 * 3600
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))


@contextlib.contextmanager
def heavy_lock(path: Path | None, log: Callable[[str], None]) -> Iterator[None]:
    """flock on the shared lock file (the machine's other heavy jobs take the same one); None = no lock."""
    if path is None:
        yield
        return
    with open(path, "a") as handle:
        start = time.perf_counter()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for the heavy lock {path} ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
            log(f"got the lock after {time.perf_counter() - start:.0f} s")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_child(cmd: list[str], log_path: Path, timeout_s: float, env: dict[str, str] | None = None) -> ChildResult:
    """Run one worker, sampling its process tree's memory; parse its `RESULT {json}` line."""
    import psutil

    log_path.parent.mkdir(parents=True, exist_ok=True)
    peak = [0.0]
    stop = threading.Event()
    with open(log_path, "w") as log, LoadSampler() as load:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

        def sample() -> None:
            try:
                root = psutil.Process(child.pid)
            except psutil.NoSuchProcess:
                return
            while not stop.is_set():
                total = 0
                try:
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    return
                for proc in procs:
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        total += proc.memory_info().rss
                peak[0] = max(peak[0], total / 2**20)
                stop.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        deadline = start + timeout_s
        status, usage = 0, None
        try:
            while True:  # wait4 for the child's own rusage (ru_maxrss); poll so the timeout can act
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    child.kill()
                    pid, status, usage = os.wait4(child.pid, 0)
                    break
                time.sleep(0.2)
        finally:
            stop.set()
            sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
    text = log_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1][len("RESULT "):]) if lines and child.returncode == 0 else None
    error = "" if result is not None else _last_error(text, child.returncode, wall >= timeout_s)
    maxrss_mb = (usage.ru_maxrss / 1024.0) if usage else 0.0  # Linux: kilobytes
    # The tree's sum is at least its largest process: a spike between two samples is caught by ru_maxrss.
    tree = max(peak[0], maxrss_mb)
    return ChildResult(child.returncode, wall, round(tree, 1), round(maxrss_mb, 1), load.summary(), result, error)


def _last_error(text: str, code: int, timed_out: bool) -> str:
    if timed_out:
        return "timed out"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line.split(":")[0]]
    tail = (errors or lines or ["no output"])[-1]
    return f"exit {code}: {tail[:400]}"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(strict_json_value(value), indent=1))
    tmp.replace(path)  # a killed run never leaves half a JSON


def _finished(record: dict[str, Any] | None, row: RowSpec) -> bool:
    return record is not None and record.get("status") in DONE and record.get("settings") == row.settings.to_dict()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(anchors.ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _files_on_disk(folder: Path) -> dict[str, int]:
    return {str(f.relative_to(folder)): f.stat().st_size for f in sorted(folder.rglob("*")) if f.is_file()}


def convert_phase(row: RowSpec, row_dir: Path, work: Path, options: RunOptions) -> dict[str, Any]:
    spec_file = row_dir / "spec.json"
    base = {"settings": row.settings.to_dict(), "converter": row.converter, "model": row.model.key}
    python, cmd = sys.executable, []
    if row.converter == "optimum-onnxruntime":
        found, why = anchors.optimum_python(options.optimum_python)
        if found is None:
            return base | {"status": "skipped", "reason": why}
        python = found
        weights = options.work / "weights" / row.model.key
        if not (weights / "config.json").exists():
            options.log(f"{row.key}: writing the UNet as a diffusers folder for Optimum ({weights})")
            saved = run_child([sys.executable, "-m", "edgediff.bench.convert_worker", "--row", str(spec_file),
                               "--out", str(weights), "--save-weights"], row_dir / "weights.log",
                              options.timeout_s, _env())
            if saved.result is None:
                return base | {"status": "failed", "reason": f"writing the weights folder: {saved.error}"}
        cmd = [python, anchors.optimum_worker_path(), "--unet-folder", str(weights), "--out", str(work)]
    else:
        cmd = [python, "-m", "edgediff.bench.convert_worker", "--row", str(spec_file), "--out", str(work)]
    shutil.rmtree(work, ignore_errors=True)
    options.log(f"{row.key}: converting")
    child = run_child(cmd, row_dir / "convert.log", options.timeout_s, _env())
    record = base | {"wall_s": round(child.wall_s, 2), "peak_tree_rss_mb": child.peak_tree_rss_mb,
                     "peak_process_rss_mb": child.peak_process_rss_mb, "load_average_1min": child.load_average_1min,
                     "memory_method": "process tree: psutil RSS sum every 0.1 s; process: os.wait4 ru_maxrss"}
    if child.result is None:
        return record | {"status": "failed", "reason": child.error}
    files = _files_on_disk(work)
    return record | child.result | {"status": "ok", "files_on_disk": files,
                                    "artifact_bytes": sum(files.values())}


def timing_phase(row: RowSpec, row_dir: Path, work: Path, options: RunOptions) -> dict[str, Any]:
    base = {"settings": row.settings.to_dict()}
    if row.backend == "coreml":
        from edgediff.backends.base import get_backend

        runnable, why = get_backend("coreml").can_run_here()
        if not runnable:
            return base | {"status": "skipped", "reason": why}
    cmd = [sys.executable, "-m", "edgediff.bench.time_worker", "--row", str(row_dir / "spec.json"),
           "--convert", str(row_dir / "convert.json"), "--out", str(work)]
    options.log(f"{row.key}: timing")
    child = run_child(cmd, row_dir / "timing.log", options.timeout_s, _env())
    record = base | {"wall_s": round(child.wall_s, 2), "load_average_1min_row": child.load_average_1min}
    if child.result is None:
        return record | {"status": "failed", "reason": child.error}
    return record | child.result | {"status": "ok"}


def run_row(row: RowSpec, options: RunOptions, fingerprint: str) -> dict[str, Any]:
    """Both phases of one row (each skipped when already finished) under one hold of the heavy lock, then
    row.json. A finished row does not take the lock at all."""
    row_dir = options.output / "rows" / row.key
    convert = _read(row_dir / "convert.json")
    timing = _read(row_dir / "timing.json")
    if options.force or not (_finished(convert, row) and _finished(timing, row)):
        with heavy_lock(options.lock, options.log):
            return _run_row(row, options, fingerprint)
    return _run_row(row, options, fingerprint)


def _run_row(row: RowSpec, options: RunOptions, fingerprint: str) -> dict[str, Any]:
    row_dir = options.output / "rows" / row.key
    work = options.work / row.key
    _write(row_dir / "spec.json", {"model": row.model.key, "converter": row.converter,
                                   "settings": row.settings.to_dict()})
    convert = _read(row_dir / "convert.json")
    timing = _read(row_dir / "timing.json")
    artifacts_there = bool(convert) and all((work / f).exists() for f in (convert or {}).get("files_on_disk", {}))
    timing_due = options.force or not _finished(timing, row)
    if options.force or not _finished(convert, row) or (timing_due and convert.get("status") == "ok"  # type: ignore[union-attr]
                                                         and not artifacts_there):
        convert = convert_phase(row, row_dir, work, options)
        _write(row_dir / "convert.json", convert)
        timing = None
    assert convert is not None
    ran = timing is None or options.force
    if convert["status"] != "ok":
        timing = {"settings": row.settings.to_dict(), "status": "skipped",
                  "reason": f"conversion {convert['status']}: {convert.get('reason', '')}"}
    elif timing is None or timing_due:
        timing = timing_phase(row, row_dir, work, options)
        ran = True
    existing = _read(row_dir / "row.json")
    if not ran and existing:  # nothing was redone: keep the row as it was recorded
        return existing
    _write(row_dir / "timing.json", timing)
    record = {"key": row.key, "model": row.model.key, "model_title": row.model.title, "converter": row.converter,
              "backend": row.backend, "kind": row.kind, "settings": row.settings.to_dict(),
              "machine_fingerprint": fingerprint, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "convert": convert, "timing": timing}
    _write(row_dir / "row.json", record)
    if timing.get("status") in ("ok", "skipped") and not options.keep_artifacts:  # a failed timing keeps them
        shutil.rmtree(work, ignore_errors=True)  # sizes are recorded; full-size artifacts are gigabytes each
    return record


def load_rows(output: Path) -> list[dict[str, Any]]:
    """Every finished row under output/rows (from this run and earlier suites into the same folder)."""
    rows = []
    for path in sorted((output / "rows").glob("*/row.json")):
        record = _read(path)
        if record:
            rows.append(record)
    return rows
