"""Declarative device targets (`targets/*.toml`): which backend and precision suit a device, its memory budget,
how to reach it (adb serial, ssh host, the app's exported report, or this machine) and how to benchmark there.

A target file:

    name = "pixel-8"                      # optional; must equal the file name when given
    description = "Google Pixel 8 (Tensor G3)"
    platform = "android"                  # android | linux | ios | macos | host
    backend = "litert"                    # the bundle backend to measure: onnxruntime | litert | coreml
    precision = "fp16"                    # fp32 | fp16 | int8
    memory_budget_mb = 3000               # what the app may use on this device (optional)

    [reach]
    method = "adb"                        # adb | ssh | app | local
    serial = ""                           # adb: device serial ("" = the only attached device)

    [benchmark]
    tool = "benchmark_model"              # benchmark_model | onnxruntime_perf_test | trtexec | litert-benchmark
                                          # | app | coreml | host
    binary = ""                           # the tool: a host path to push (adb), a path on the board (ssh)
    threads = 4
    delegate = "gpu"                      # benchmark_model: xnnpack|gpu|nnapi|cpu; ORT: its -e provider
    warmup = 5
    runs = 30

Unknown keys are errors that list the valid ones. Targets are searched in $EDGEDIFF_TARGETS (os.pathsep-separated
folders), then ./targets, then the targets/ folder of this repository; a path to a .toml file also works.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgediff.errors import RecipeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PLATFORMS = ("android", "linux", "ios", "macos", "host")
BACKENDS = ("onnxruntime", "litert", "coreml")
PRECISIONS = ("fp32", "fp16", "int8")
METHODS = ("adb", "ssh", "app", "local")
TOOLS = ("benchmark_model", "onnxruntime_perf_test", "trtexec", "litert-benchmark", "app", "coreml", "host")
# which tools can run over which reach method
TOOLS_BY_METHOD = {
    "adb": ("benchmark_model", "onnxruntime_perf_test"),
    "ssh": ("benchmark_model", "onnxruntime_perf_test", "trtexec", "litert-benchmark"),
    "app": ("app",),
    "local": ("benchmark_model", "onnxruntime_perf_test", "trtexec", "litert-benchmark", "coreml", "host"),
}
# the bundle backend each tool consumes
TOOL_BACKENDS = {
    "benchmark_model": ("litert",), "litert-benchmark": ("litert",), "onnxruntime_perf_test": ("onnxruntime",),
    "trtexec": ("onnxruntime",), "coreml": ("coreml",), "app": BACKENDS, "host": BACKENDS,
}
COMPUTE_UNITS = ("all", "cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine")
BINARY_ENV = {  # where the tool's path comes from when the target file leaves `binary` empty
    "benchmark_model": "EDGEDIFF_BENCHMARK_MODEL",
    "onnxruntime_perf_test": "EDGEDIFF_ORT_PERF_TEST",
    "trtexec": "EDGEDIFF_TRTEXEC",
    "litert-benchmark": "EDGEDIFF_LITERT_BENCHMARK",
}
DEFAULT_BINARIES = {"trtexec": "/usr/src/tensorrt/bin/trtexec"}  # JetPack's location on the board


@dataclass(frozen=True)
class Reach:
    """How edgediff gets to the device."""

    method: str
    serial: str = ""  # adb
    host: str = ""  # ssh
    user: str = ""
    port: int = 22
    identity_file: str = ""
    ssh_options: tuple[str, ...] = ()  # extra `-o Key=Value` options
    remote_dir: str = ""  # parent of the temporary work folder (default: /data/local/tmp, or $TMPDIR or /tmp)
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class Benchmark:
    """How to measure there; every value ends up in the records' settings."""

    tool: str
    binary: str = ""
    push_binary: bool = True  # adb: push `binary` from the host (False: it is already on the device)
    threads: int | None = None
    delegate: str = ""
    warmup: int = 3  # warm-up runs (trtexec: milliseconds of warm-up, its --warmUp unit)
    runs: int = 20
    op_profiling: bool = False
    cooldown_s: float = 0.0  # sleep between components so one's heat does not slow the next
    max_start_temp_c: float | None = None  # wait (up to cooldown_timeout_s) until the device is cooler than this
    cooldown_timeout_s: float = 300.0
    timeout_s: float = 3600.0  # per benchmark command
    extra_args: tuple[str, ...] = ()
    compute_units: tuple[str, ...] = ()  # coreml / app: Core ML compute-unit settings to time
    env: dict[str, str] = field(default_factory=dict)  # environment for the tool on the device (LD_LIBRARY_PATH...)


@dataclass(frozen=True)
class Target:
    name: str
    platform: str
    backend: str
    precision: str
    reach: Reach
    benchmark: Benchmark
    description: str = ""
    memory_budget_mb: int | None = None
    path: Path | None = None

    def binary(self) -> str:
        """The tool's path: the target's `binary`, else $EDGEDIFF_<TOOL>, else the tool's usual place."""
        tool = self.benchmark.tool
        value = self.benchmark.binary or os.environ.get(BINARY_ENV.get(tool, ""), "") or DEFAULT_BINARIES.get(tool, "")
        if not value:
            env = BINARY_ENV.get(tool)
            raise RecipeError(
                f"target {self.name!r}: no path for {tool}; nothing is downloaded, so point to your copy: set "
                f"`binary` under [benchmark] in {self.path or 'the target file'}"
                + (f" or export {env}=/path/to/{tool}" if env else ""))
        return os.path.expanduser(value)

    def summary(self) -> str:
        where = {"adb": f"adb {self.reach.serial or '(only device)'}",
                 "ssh": f"ssh {self.reach.user + '@' if self.reach.user else ''}{self.reach.host}:{self.reach.port}",
                 "app": "app report import", "local": "this machine"}[self.reach.method]
        return f"{self.backend}/{self.precision} via {self.benchmark.tool}, {where}"


def _check_keys(table: dict[str, Any], cls: type, where: str, path: Path) -> None:
    valid = {f.name for f in dataclasses.fields(cls)} - {"path"}
    unknown = sorted(set(table) - valid)
    if unknown:
        raise RecipeError(f"{path}: unknown key(s) {', '.join(unknown)} in {where}; valid keys: {', '.join(sorted(valid))}")


def _typed(cls: type, table: dict[str, Any], where: str, path: Path) -> Any:
    """Build a dataclass from a TOML table, checking each value's type against the field's default/annotation."""
    _check_keys(table, cls, where, path)
    kwargs: dict[str, Any] = {}
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for key, value in table.items():
        hint = str(hints[key])
        ok = True
        if hint.startswith("tuple"):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            value = tuple(value) if ok else value
        elif hint.startswith("dict"):
            ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        elif hint == "bool":
            ok = isinstance(value, bool)
        elif hint.startswith("int"):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif hint.startswith("float"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif hint == "str":
            ok = isinstance(value, str)
        if not ok:
            raise RecipeError(f"{path}: {where}.{key} should be {hint}, got {value!r}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise RecipeError(f"{path}: {where}: {exc}") from None


def _choice(value: str, choices: tuple[str, ...], what: str, path: Path) -> None:
    if value not in choices:
        raise RecipeError(f"{path}: {what} must be one of {', '.join(choices)}, got {value!r}")


def parse_target(data: dict[str, Any], path: Path) -> Target:
    """Validate one target table (as read from TOML)."""
    _check_keys(data, Target, "the top level", path)
    for key in ("platform", "backend", "precision", "reach", "benchmark"):
        if key not in data:
            raise RecipeError(f"{path}: missing `{key}`")
    name = data.get("name", path.stem)
    if name != path.stem:
        raise RecipeError(f"{path}: name {name!r} must equal the file name {path.stem!r} (that is how it is found)")
    if not isinstance(data["reach"], dict) or not isinstance(data["benchmark"], dict):
        raise RecipeError(f"{path}: [reach] and [benchmark] must be tables")
    reach = _typed(Reach, data["reach"], "[reach]", path)
    bench = _typed(Benchmark, data["benchmark"], "[benchmark]", path)
    top = {k: v for k, v in data.items() if k not in ("reach", "benchmark", "name")}
    for key in ("platform", "backend", "precision", "description"):
        if key in top and not isinstance(top[key], str):
            raise RecipeError(f"{path}: {key} should be a string, got {top[key]!r}")
    budget = top.get("memory_budget_mb")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0):
        raise RecipeError(f"{path}: memory_budget_mb should be a positive integer, got {budget!r}")
    _choice(top["platform"], PLATFORMS, "platform", path)
    _choice(top["backend"], BACKENDS, "backend", path)
    _choice(top["precision"], PRECISIONS, "precision", path)
    _choice(reach.method, METHODS, "reach.method", path)
    _choice(bench.tool, TOOLS, "benchmark.tool", path)
    if bench.tool not in TOOLS_BY_METHOD[reach.method]:
        raise RecipeError(f"{path}: benchmark.tool {bench.tool!r} cannot run over reach.method {reach.method!r}; "
                          f"with {reach.method} use one of {', '.join(TOOLS_BY_METHOD[reach.method])}")
    if top["backend"] not in TOOL_BACKENDS[bench.tool]:
        raise RecipeError(f"{path}: {bench.tool} measures {'/'.join(TOOL_BACKENDS[bench.tool])} artifacts, "
                          f"not {top['backend']!r}")
    if reach.method == "ssh" and not reach.host:
        raise RecipeError(f"{path}: reach.method = 'ssh' needs reach.host")
    if not 1 <= reach.port <= 65535:
        raise RecipeError(f"{path}: reach.port must be 1..65535, got {reach.port}")
    if bench.runs < 1 or bench.warmup < 0:
        raise RecipeError(f"{path}: benchmark.runs must be >= 1 and warmup >= 0")
    if bench.threads is not None and bench.threads < 1:
        raise RecipeError(f"{path}: benchmark.threads must be >= 1")
    for unit in bench.compute_units:
        _choice(unit, COMPUTE_UNITS, "benchmark.compute_units entries", path)
    return Target(name=name, platform=top["platform"], backend=top["backend"], precision=top["precision"],
                  reach=reach, benchmark=bench, description=top.get("description", ""), memory_budget_mb=budget,
                  path=path)


def search_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("EDGEDIFF_TARGETS", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "targets", Path(__file__).resolve().parents[1] / "targets"]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def load_target_file(path: Path) -> Target:
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise RecipeError(f"cannot read target file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path} is not valid TOML: {exc}") from None
    return parse_target(data, Path(path))


def list_targets() -> list[Target]:
    """Every target found on the search path (the first file of a name wins)."""
    found: dict[str, Target] = {}
    for d in search_dirs():
        for path in sorted(d.glob("*.toml")):
            if path.stem not in found:
                found[path.stem] = load_target_file(path)
    return [found[k] for k in sorted(found)]


def load_target(name: str) -> Target:
    """A target by name (searched as above) or by path to a .toml file."""
    if name.endswith(".toml") or os.sep in name:
        return load_target_file(Path(name))
    for d in search_dirs():
        path = d / f"{name}.toml"
        if path.is_file():
            return load_target_file(path)
    known = sorted({p.stem for d in search_dirs() for p in d.glob("*.toml")})
    raise RecipeError(f"unknown target {name!r}; known targets: {', '.join(known) or 'none'} "
                      f"(see `edgediff targets`; add a file under targets/ for a new device)")
