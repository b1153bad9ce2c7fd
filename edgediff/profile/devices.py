"""Profile a bundle on a target device with the vendor's own benchmark tool, and turn its output into records.

`profile_on_target(bundle_dir, target)` runs every component; `profile_artifact(session, target, files, ...)`
times any single model file (a component, a chunk, or an arbitrary sub-model such as one UNet block for
latency-aware pruning). Android goes over adb, Linux boards over ssh, this machine through a local session
with the same interface; the host target uses the host profiler, iPhones come in through the app's report.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from edgediff.contract import MANIFEST_FILE, Artifact, Manifest
from edgediff.errors import BackendUnavailable, DeviceError, RecipeError, UnsupportedError
from edgediff.profile.adb import AdbSession
from edgediff.profile.host import peak_rss_mb, profile_bundle
from edgediff.profile.parsers import litert_benchmark, ort_perf_test, ort_profile, tegrastats, tflite_benchmark, trtexec
from edgediff.profile.parsers._common import summarize_ms
from edgediff.profile.record import ProfileRecord
from edgediff.profile.remote import RemoteResult, RemoteSession, remote_join
from edgediff.profile.ssh import SshSession
from edgediff.targets import Benchmark, Target

# --------------------------------------------------------------------------------------------- command lines


def benchmark_model_args(binary: str, model: str, bench: Benchmark, precision: str, runs: int, warmup: int,
                         max_secs: float) -> list[str]:
    """TFLite/LiteRT benchmark_model: exactly `runs` timed runs after `warmup` (min_secs=0 so time does not add
    runs), the delegate the target names, fp16 allowed only for fp16 targets."""
    args = [binary, f"--graph={model}", f"--warmup_runs={warmup}", "--warmup_min_secs=0",
            f"--num_runs={runs}", "--min_secs=0", f"--max_secs={max_secs:g}"]
    if bench.threads:
        args.append(f"--num_threads={bench.threads}")
    fp16 = "true" if precision == "fp16" else "false"
    delegate = bench.delegate or "xnnpack"
    if delegate == "gpu":
        args += ["--use_gpu=true", f"--gpu_precision_loss_allowed={fp16}"]
    elif delegate == "nnapi":
        args += ["--use_nnapi=true", f"--nnapi_allow_fp16={fp16}"]
    elif delegate == "xnnpack":
        args.append("--use_xnnpack=true")
    elif delegate == "cpu":
        args.append("--use_xnnpack=false")
    else:
        raise RecipeError(f"benchmark_model delegate {delegate!r} is not one of xnnpack, gpu, nnapi, cpu")
    if bench.op_profiling:
        args.append("--enable_op_profiling=true")
    args.append("--report_peak_memory_footprint=true")
    return args + list(bench.extra_args)


def ort_perf_test_args(binary: str, model: str, bench: Benchmark, runs: int, profile_prefix: str | None) -> list[str]:
    """onnxruntime_perf_test: `runs` repetitions (-m times -r N) on the target's provider, latency statistics on
    (-s), generated inputs (-I), and the ORT profiler when op profiling is asked for."""
    args = [binary, "-e", bench.delegate or "cpu", "-m", "times", "-r", str(runs), "-s", "-I"]
    if bench.threads:
        args += ["-x", str(bench.threads)]
    if profile_prefix:
        args += ["-p", profile_prefix]
    return args + list(bench.extra_args) + [model]


def trtexec_args(binary: str, onnx: str, bench: Benchmark, precision: str, runs: int, engine: str,
                 profile_json: str | None) -> list[str]:
    """trtexec: build an engine at the target precision, then at least `runs` iterations with no minimum
    duration, reporting the 90th percentile; per-layer times in a separate profiling run."""
    args = [binary, f"--onnx={onnx}", f"--saveEngine={engine}", f"--warmUp={bench.warmup}", f"--iterations={runs}",
            "--duration=0", "--percentile=90"]
    if precision == "fp16":
        args.append("--fp16")
    elif precision == "int8":
        args += ["--int8", "--fp16"]  # QDQ int8 with fp16 where a layer has no int8 kernel
    if profile_json:
        args += ["--dumpProfile", "--separateProfileRun", f"--exportProfile={profile_json}"]
    return args + list(bench.extra_args)


def litert_benchmark_args(binary: str, model: str, bench: Benchmark, runs: int, warmup: int,
                          result_json: str) -> list[str]:
    args = [binary, "--model", model, "--num_runs", str(runs), "--warmup_runs", str(warmup),
            "--result_json", result_json]
    if bench.threads:
        args += ["--num_threads", str(bench.threads)]
    if bench.delegate == "gpu":
        args.append("--use_gpu")
    elif bench.delegate == "npu":
        args.append("--use_npu")
    return args + list(bench.extra_args)


# Runs tegrastats beside the benchmark ("$@"), stops it afterwards, and forwards a TERM to both.
_TEGRA_SAMPLER = (
    'log=$1; shift; tegrastats --interval 500 >"$log" 2>/dev/null & tp=$!; "$@" & cp=$!; '
    "trap 'kill \"$cp\" \"$tp\" 2>/dev/null; exit 143' TERM INT HUP; "
    'wait "$cp"; rc=$?; kill "$tp" 2>/dev/null; wait "$tp" 2>/dev/null; exit $rc'
)

# --------------------------------------------------------------------------------------------- local session


class LocalSession:
    """The RemoteSession interface on this machine (a temporary folder and subprocesses)."""

    description = "this machine"

    def __init__(self) -> None:
        self.workdir = ""

    def __enter__(self) -> "LocalSession":
        self.workdir = tempfile.mkdtemp(prefix="edgediff.")
        return self

    def __exit__(self, *exc) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""

    def push(self, local: Path, name: str, timeout: float | None = None) -> str:
        dest = remote_join(self.workdir, name)
        shutil.copyfile(local, dest)
        return dest

    def run(self, args: list[str], *, timeout: float, cwd: str | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> RemoteResult:
        try:
            done = subprocess.run(args, capture_output=True, timeout=timeout, cwd=cwd or None,
                                  env={**os.environ, **env} if env else None, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise DeviceError(f"cannot run {args[0]!r}: not found on this machine") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"`{shlex.join(args)[:80]}` did not finish within {timeout:g} s; stopped it") from None
        result = RemoteResult(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
        if check and done.returncode != 0:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:]) or "no message"
            raise DeviceError(f"`{shlex.join(args)[:80]}` failed ({done.returncode}): {tail}")
        return result

    def fetch(self, remote: str, local: Path, timeout: float | None = None) -> Path:
        shutil.copyfile(remote, local)
        return Path(local)

    def exists(self, remote: str) -> bool:
        return Path(remote).exists()


@contextmanager
def open_session(target: Target) -> Iterator[RemoteSession]:
    """The connection a target describes, with its work folder removed on exit."""
    reach = target.reach
    session: RemoteSession
    if reach.method == "adb":
        session = AdbSession(reach.serial, remote_dir=reach.remote_dir or "/data/local/tmp")
    elif reach.method == "ssh":
        session = SshSession(reach.host, user=reach.user, port=reach.port, identity_file=reach.identity_file,
                             options=reach.ssh_options, connect_timeout_s=reach.connect_timeout_s,
                             remote_dir=reach.remote_dir)
    elif reach.method == "local":
        session = LocalSession()
    else:
        raise UnsupportedError(f"target {target.name!r} is reached through {reach.method!r}, not a connection")
    with session:
        yield session


# --------------------------------------------------------------------------------------------- device facts


def device_info(session: RemoteSession, target: Target) -> dict[str, object]:
    """Model, SoC and OS of the device, as far as it tells."""
    if hasattr(session, "device_info"):
        return dict(session.device_info())
    info: dict[str, object] = {}
    probes = {"uname": ["uname", "-srm"], "model": ["cat", "/proc/device-tree/model"],
              "l4t": ["cat", "/etc/nv_tegra_release"]}
    for key, args in probes.items():
        try:
            result = session.run(args, timeout=30, check=False)
        except DeviceError:
            continue
        text = result.stdout.replace("\x00", "").strip()
        if result.returncode == 0 and text:
            info[key] = text.splitlines()[0]
    return info


def _temperature(session: RemoteSession) -> float | None:
    thermal = getattr(session, "thermal", None)
    if thermal is None:
        return None
    state = thermal()
    return state.max_c() if state else None


def cool_down(session: RemoteSession, bench: Benchmark, log: Callable[[str], None]) -> dict[str, object]:
    """Sleep `cooldown_s`, then wait (bounded) until the hottest sensor is below `max_start_temp_c`."""
    if bench.cooldown_s > 0:
        time.sleep(bench.cooldown_s)
    temp = _temperature(session)
    waited = 0.0
    if bench.max_start_temp_c is not None and temp is not None:
        deadline = time.monotonic() + bench.cooldown_timeout_s
        while temp is not None and temp > bench.max_start_temp_c and time.monotonic() < deadline:
            log(f"  cooling down: {temp:.1f} C > {bench.max_start_temp_c:.1f} C")
            time.sleep(5)
            waited += 5
            temp = _temperature(session)
    return {"start_temp_c": temp, "cooldown_waited_s": waited}


# --------------------------------------------------------------------------------------------- one artifact


def profile_artifact(session: RemoteSession, target: Target, files: list[Path], *, component: str,
                     runs: int | None = None, warmup: int | None = None, binary: str | None = None,
                     log: Callable[[str], None] = print) -> ProfileRecord:
    """Time one model file (its external-data files listed after it) on the target's tool; any sub-model works."""
    bench = target.benchmark
    runs = runs or bench.runs
    warmup = bench.warmup if warmup is None else warmup
    binary = binary or target.binary()
    tool = bench.tool
    model = files[0]
    for extra in files[1:]:
        session.push(extra, extra.name)
    remote_model = session.push(model, model.name)
    before = cool_down(session, bench, log)
    out_dir = session.workdir
    sampler = tool == "trtexec" and _has(session, "tegrastats")
    tegra_log = remote_join(out_dir, f"{model.stem}.tegrastats.log")
    profile_file: str | None = None

    if tool == "benchmark_model":
        args = benchmark_model_args(binary, remote_model, bench, target.precision, runs, warmup, bench.timeout_s)
    elif tool == "onnxruntime_perf_test":
        profile_file = remote_join(out_dir, f"{model.stem}.ortprofile") if bench.op_profiling else None
        args = ort_perf_test_args(binary, remote_model, bench, runs, profile_file)
    elif tool == "trtexec":
        profile_file = remote_join(out_dir, f"{model.stem}.layers.json") if bench.op_profiling else None
        args = trtexec_args(binary, remote_model, bench, target.precision, runs,
                            remote_join(out_dir, f"{model.stem}.engine"), profile_file)
    elif tool == "litert-benchmark":
        profile_file = remote_join(out_dir, f"{model.stem}.result.json")
        args = litert_benchmark_args(binary, remote_model, bench, runs, warmup, profile_file)
    else:
        raise UnsupportedError(f"tool {tool!r} does not time single files on a connection")
    command = ["sh", "-c", _TEGRA_SAMPLER, "edgediff-sample", tegra_log, *args] if sampler else args
    log(f"  {component}: {shlex.join(args)[:160]}")
    started = time.time()
    result = session.run(command, timeout=bench.timeout_s, cwd=out_dir, env=dict(bench.env) or None, check=False)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        raise DeviceError(f"{tool} on {target.name} failed for {component} (exit {result.returncode}): {tail}")
    after_temp = _temperature(session)
    meta: dict[str, Any] = {"component": component, "precision": target.precision, "device": target.name}

    with tempfile.TemporaryDirectory(prefix="edgediff-fetch-") as tmp:
        if tool == "benchmark_model":
            parsed = tflite_benchmark.parse_benchmark_model(result.stdout + "\n" + result.stderr)
            complete = [r for r in parsed if r.complete]
            if not complete:
                raise DeviceError(f"benchmark_model printed no timing summary for {component}: "
                                  f"{(result.stderr or result.stdout).strip()[-300:]}")
            record = tflite_benchmark.to_record(complete[-1], backend=target.backend, **meta)
        elif tool == "onnxruntime_perf_test":
            record = ort_perf_test.to_record(ort_perf_test.parse_perf_test(result.stdout), backend=target.backend,
                                             warmup=1, **meta)  # the tool always runs one warm-up inference
            if profile_file:
                name = _find(session, out_dir, Path(profile_file).name)
                if name:
                    local = session.fetch(remote_join(out_dir, name), Path(tmp) / "profile.json")
                    record.ops = ort_profile.op_table(ort_profile.parse_ort_profile(local.read_text()))
        elif tool == "trtexec":
            log_text = result.stdout + "\n" + result.stderr
            record = trtexec.to_record(trtexec.parse_trtexec_log(log_text), backend="tensorrt", **meta)
            record.settings["artifact_backend"] = target.backend
            if profile_file and session.exists(profile_file):
                local = session.fetch(profile_file, Path(tmp) / "layers.json")
                record.ops = trtexec.layer_ops(trtexec.parse_export_profile(local.read_text()).layers)
            if sampler and session.exists(tegra_log):
                local = session.fetch(tegra_log, Path(tmp) / "tegra.log")
                samples = tegrastats.parse_tegrastats(local.read_text())
                if samples.samples:
                    record.extra["tegrastats"] = samples.summary()
        else:  # litert-benchmark: its result file is always requested (set above)
            assert profile_file is not None
            local = session.fetch(profile_file, Path(tmp) / "result.json")
            parsed_json = litert_benchmark.parse_result_json(local.read_text())
            parsed_json.log = litert_benchmark.parse_log(result.stderr)
            record = litert_benchmark.to_record(parsed_json, backend=target.backend, **meta)

    record.settings.update({"target": target.name, "tool_args": args[1:], "threads": bench.threads,
                            "delegate": bench.delegate or None, "requested_runs": runs, "requested_warmup": warmup})
    record.extra.update({"started_unix": started, "thermal": {**before, "end_temp_c": after_temp},
                         "artifact": model.name, "artifact_bytes": sum(f.stat().st_size for f in files)})
    session.run(["rm", "-f", "--", remote_model, *(remote_join(out_dir, f.name) for f in files[1:])],
                timeout=120, check=False)
    return record


def _has(session: RemoteSession, program: str) -> bool:
    try:
        return session.run(["sh", "-c", 'command -v "$1" >/dev/null', "edgediff-has", program],
                           timeout=30, check=False).returncode == 0
    except DeviceError:
        return False


def _find(session: RemoteSession, folder: str, prefix: str) -> str | None:
    listing = session.run(["ls", "-1", folder], timeout=60, check=False).stdout.splitlines()
    matches = sorted(n for n in listing if n.startswith(prefix) and n.endswith(".json"))
    return matches[-1] if matches else None


# --------------------------------------------------------------------------------------------- whole bundle


def resolve_bundle(bundle_dir: Path, target: Target, verify_checksums: bool = True) -> tuple[Path, Manifest]:
    """Accept DIR/<backend>/ or DIR (then the target's backend subfolder). The one manifest reader checks that
    every file stays inside the bundle and matches its sha256 before anything is sent to a device."""
    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / MANIFEST_FILE).exists() and (bundle_dir / target.backend / MANIFEST_FILE).exists():
        bundle_dir = bundle_dir / target.backend
    manifest = Manifest.read(bundle_dir, verify_checksums=verify_checksums)
    if manifest.backend != target.backend:
        raise RecipeError(f"{bundle_dir} holds {manifest.backend} artifacts but target {target.name!r} measures "
                          f"{target.backend}; convert for {target.backend} or pick another target")
    return bundle_dir, manifest


def component_files(name: str, artifact: Artifact) -> list[tuple[str, list[Path]]]:
    """(label, [model file, its external-data files]) per component, one per chunk for chunked components."""
    parts = artifact.parts
    out = []
    for i, part in enumerate(parts):
        label = name if len(parts) == 1 else f"{name}[{i}]"
        files = [part.path, *part.extra_files]
        for f in files:
            if f.is_dir():
                raise UnsupportedError(f"{f.name} is a folder (a Core ML package): time it with a macOS target or "
                                       "through the iOS app")
        out.append((label, files))
    return out


def profile_on_target(bundle_dir: Path, target: Target, runs: int | None = None, warmup: int | None = None,
                      components: list[str] | None = None,
                      log: Callable[[str], None] = print, verify_checksums: bool = True) -> list[ProfileRecord]:
    """Measure every component of a bundle on the target; one record per component (and chunk)."""
    method, tool = target.reach.method, target.benchmark.tool
    if method == "app":
        raise UnsupportedError(
            f"{target.name} is measured by the edgediff app: open the bundle in the app, run its benchmark screen, "
            "export the report, then `edgediff profile --import report.json --tool app`")
    if tool == "host":
        bundle_dir, _ = resolve_bundle(bundle_dir, target, verify_checksums)
        host = profile_bundle(bundle_dir, runs=runs or target.benchmark.runs,
                              warmup=target.benchmark.warmup if warmup is None else warmup,
                              compare_pytorch=False, components=components, log=log,
                              verify_checksums=verify_checksums)
        for r in host:
            r.settings["target"] = target.name
        return host
    if tool == "coreml":
        return profile_coreml(bundle_dir, target, runs, warmup, components, log, verify_checksums)
    bundle_dir, manifest = resolve_bundle(bundle_dir, target, verify_checksums)
    names = components or list(manifest.components)
    unknown = sorted(set(names) - set(manifest.components))
    if unknown:
        raise RecipeError(f"no component(s) {', '.join(unknown)} in {bundle_dir}; it has "
                          f"{', '.join(manifest.components)}")
    jobs = [job for n in names for job in component_files(n, manifest.components[n])]
    binary = target.binary()
    records: list[ProfileRecord] = []
    with open_session(target) as session:
        info = device_info(session, target)
        log(f"profiling on {target.name} ({session.description}): {info.get('model', '')}")
        tool_binary = binary
        if method == "adb" and target.benchmark.push_binary:
            local = Path(binary)
            if not local.is_file():
                raise RecipeError(f"benchmark binary {local} not found on this machine (target {target.name}: "
                                  "`binary` is a host path that edgediff pushes to the device)")
            tool_binary = session.push(local, local.name)
            session.run(["chmod", "755", tool_binary], timeout=60)

        for label, files in tqdm(jobs, desc=f"profile {target.name}", unit="model"):
            record = profile_artifact(session, target, files, component=label, runs=runs, warmup=warmup,
                                      binary=tool_binary, log=log)
            record.extra["device_info"] = info
            records.append(record)
    return records


# --------------------------------------------------------------------------------------------- Core ML (macOS)

_UNITS = {"all": "ALL", "cpuOnly": "CPU_ONLY", "cpuAndGPU": "CPU_AND_GPU", "cpuAndNeuralEngine": "CPU_AND_NE"}


def profile_coreml(bundle_dir: Path, target: Target, runs: int | None, warmup: int | None,
                   components: list[str] | None, log: Callable[[str], None],
                   verify_checksums: bool = True) -> list[ProfileRecord]:
    """Time each Core ML package through coremltools for each compute-unit setting of the target."""
    if platform.system() != "Darwin":
        raise BackendUnavailable("Core ML predictions need macOS: run this target on a Mac, or measure on the "
                                 "iPhone through the app")
    import coremltools as ct

    bundle_dir, manifest = resolve_bundle(bundle_dir, target, verify_checksums)
    runs = runs or target.benchmark.runs
    warmup = target.benchmark.warmup if warmup is None else warmup
    rng = np.random.default_rng(0)
    records = []
    for name in components or list(manifest.components):
        artifact = manifest.component(name)
        inputs = {s.name: _random(rng, s.shape, s.dtype) for s in artifact.inputs}
        for unit in target.benchmark.compute_units or ("all",):
            start = time.perf_counter()
            model = ct.models.MLModel(str(artifact.path), compute_units=getattr(ct.ComputeUnit, _UNITS[unit]))
            init_ms = (time.perf_counter() - start) * 1e3
            start = time.perf_counter()
            model.predict(inputs)
            first_ms = (time.perf_counter() - start) * 1e3
            for _ in range(max(warmup - 1, 0)):
                model.predict(inputs)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                model.predict(inputs)
                times.append((time.perf_counter() - start) * 1e3)
            stats = summarize_ms(times)
            log(f"  {name} [{unit}]: median {stats.median:.2f} ms")
            records.append(ProfileRecord(
                component=name, backend="coreml", precision=target.precision, device=target.name, tool="coremltools",
                tool_version=ct.__version__, settings={"compute_units": unit, "target": target.name}, warmup=warmup,
                runs=stats.count, median_ms=stats.median, p90_ms=stats.p90, mean_ms=stats.mean, min_ms=stats.min,
                max_ms=stats.max, init_ms=init_ms, first_inference_ms=first_ms,
                extra={"process_max_rss_mb": peak_rss_mb()}))
    return records


def _random(rng: np.random.Generator, shape: tuple[int | str, ...], dtype: str) -> np.ndarray:
    if not all(isinstance(d, int) for d in shape):
        raise UnsupportedError(f"cannot make a random input of shape {shape}: a dimension is symbolic; "
                               "profile a bundle converted at fixed sizes")
    dims = [int(d) for d in shape]
    if str(dtype).startswith("int"):
        return rng.integers(0, 1000, size=dims).astype(dtype)
    return rng.standard_normal(dims).astype(dtype)


__all__ = ["profile_on_target", "profile_artifact", "open_session", "LocalSession", "benchmark_model_args",
           "ort_perf_test_args", "trtexec_args", "litert_benchmark_args"]
