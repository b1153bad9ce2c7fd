"""What machine a row ran on and how busy it was: the facts that make two benchmark tables comparable.

A number without the machine and its load is not comparable: the same SD 1.5 comparison swung from 0.74x to
1.76x eager when another process converted beside it. So every row records the load average while it ran, and
the run records the CPU model, its vector flags and a measured float32 GEMM peak (the ceiling a UNet can reach).
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Flags that change what kernels the runtimes pick (ONNX Runtime's MLAS, XNNPACK, oneDNN for PyTorch).
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")


@dataclass
class Machine:
    """The machine record written beside every run."""

    cpu_model: str
    flags: list[str]
    logical_cpus: int
    physical_cores: int
    memory_gb: float
    system: str
    python: str
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Same CPU model, flags, core count and memory (to the GB) = same machine class for --compare."""
        key = "|".join([self.cpu_model, ",".join(self.flags), str(self.logical_cpus), str(round(self.memory_gb))])
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"fingerprint": self.fingerprint}


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), list[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = value.split()
    except OSError:
        pass
    return model, sorted(f for f in flags if f in INTERESTING_FLAGS)


def describe_machine() -> Machine:
    import psutil

    model, flags = _cpuinfo()
    versions = {}
    for name in ("torch", "onnxruntime", "ai_edge_litert", "litert_torch", "coremltools", "numpy", "diffusers"):
        versions[name] = _version(name)
    return Machine(cpu_model=model, flags=flags, logical_cpus=os.cpu_count() or 1,
                   physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
                   memory_gb=round(psutil.virtual_memory().total / 2**30, 1), system=platform.platform(),
                   python=platform.python_version(), versions=versions)


def _version(module: str) -> str:
    from importlib import metadata

    dist = {"ai_edge_litert": "ai-edge-litert", "litert_torch": "litert-torch"}.get(module, module)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def gemm_peak_gflops(threads: int, size: int = 1024, seconds: float = 1.5) -> float:
    """The best float32 GEMM rate PyTorch reaches here now, at `threads` threads: the denominator of
    'fraction of matmul peak'. Measured in the same process as the timed runs, so load affects both alike."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)
        best = float("inf")
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - start)
        return 2.0 * size**3 / best / 1e9
    finally:
        torch.set_num_threads(previous)


class LoadSampler:
    """Samples the 1-minute load average every `every` seconds while a row runs (a background thread)."""

    def __init__(self, every: float = 5.0):
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            self.samples.append(round(os.getloadavg()[0], 2))
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "LoadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(round(os.getloadavg()[0], 2))

    def summary(self) -> dict[str, float]:
        values = self.samples or [os.getloadavg()[0]]
        return {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 2)}
