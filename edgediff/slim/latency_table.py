"""Latency table for the removable blocks of a UNet, measured on a target (SnapFusion's lookup table).

Every ResNet, transformer (attention) block and the mid block of the UNet becomes its own fixed-shape
component, with the exact inputs it sees inside the UNet at the recipe's shapes (captured by hooks during one
forward pass of the whole UNet). Each is lowered by the target's backend (`Backend.lower`, the same path as
whole components), loaded (`Backend.load`) and timed; the whole UNet is timed the same way so the table says
how much of the UNet it covers. Timing is interleaved (round-robin over blocks, `rounds` times) so that a
change of machine load hits every block alike, and each block's figure is the median of all its runs.

A removal's latency saving is the sum of its blocks' figures: a valid removal (see `edgediff.slim.prune.units.removal_units`)
leaves every surviving block's input shapes unchanged, so the other blocks cost what they cost before.
`engine="pytorch"` times the eager modules instead (no lowering): quick, and what the tests use.
Device targets (adb/ssh/app) are not timed here yet: give them a table measured elsewhere (`--latency-table`).

Two things made block sums mislead on a small UNet (reports/prune: the blocks added up to 7% of the UNet):
a wall clock on a loaded machine inflates a long whole-UNet run far more than ~1 ms blocks (it is
descheduled many times), and what is not in a block (time embedding, conv in/out, samplers, glue ops, the
runtime's per-node overhead) is never priced. Hence:
- `clock="cpu"` (default) times CPU time of this process (`time.process_time`) with one runtime thread, which
  other processes' load barely changes; `clock="wall"` is elapsed time, right on an idle or dedicated device.
- `method="ablation"` prices each removal unit by the whole UNet with that unit removed, lowered and timed
  interleaved with the full UNet: saving = full - ablated. It covers everything a removal takes away
  (samplers and glue included) and also prices `drop_inner_stages`. A spec's saving is the sum of the
  savings of the table's units it contains (additivity is checked afterwards by timing the chosen student).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edgediff.errors import RecipeError, UnsupportedError
from edgediff.profile.host import host_name
from edgediff.profile.lowered import lowered_runners
from edgediff.slim.prune.layout import ATTENTION_BLOCK_TYPES, down_layer_counts, plan_layout, up_layer_counts
from edgediff.slim.prune.spec import PruneSpec
from edgediff.slim.prune.surgery import prune_unet
from edgediff.slim.prune.units import removal_units
from edgediff.targets import load_target

TABLE_FORMAT = "edgediff-latency-table/1"


@dataclass
class LatencyTable:
    """Median milliseconds per UNet block on one target/backend, plus the whole UNet's."""

    target: str
    backend: str
    precision: str
    device: str
    shapes: dict[str, list[int]]
    blocks: dict[str, float]
    unet_ms: float | None = None
    runs_per_block: int = 0
    load_average: list[float] = field(default_factory=list)
    format: str = TABLE_FORMAT
    clock: str = "wall"  # "cpu": process CPU time; "wall": elapsed time
    threads: int = 0  # runtime threads used for timing (0: the runtime's default)
    method: str = "blocks"  # "blocks": per-block figures; "ablation": whole UNet minus each unit
    units: dict[str, float] = field(default_factory=dict)  # ablation: unit key -> ms saved

    @property
    def coverage(self) -> float | None:
        """Share of the whole UNet's time that the priced blocks (or units) account for."""
        priced = self.units if self.method == "ablation" else self.blocks
        return sum(priced.values()) / self.unet_ms if self.unet_ms else None

    def saving_ms(self, config: Any, spec: PruneSpec) -> float:
        """Milliseconds a removal saves: the sum of its blocks' medians (or of its units' ablation savings)."""
        if self.method == "ablation":
            return sum(self.units[key] for key in contained_units(config, spec, self.units))
        missing = [m for m in removed_modules(config, spec) if m not in self.blocks]
        if missing:
            raise RecipeError(f"the latency table has no figure for {missing}; re-measure it for this UNet")
        return sum(self.blocks[m] for m in removed_modules(config, spec))

    def estimate_ms(self, config: Any, spec: PruneSpec) -> float:
        """Estimated UNet latency after a removal (whole UNet minus the saving)."""
        if self.unet_ms is None:
            raise RecipeError("the latency table has no whole-UNet figure")
        return self.unet_ms - self.saving_ms(config, spec)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "LatencyTable":
        data = json.loads(Path(path).read_text())
        if data.get("format") != TABLE_FORMAT:
            raise RecipeError(f"{path} is not an edgediff latency table (format {data.get('format')!r})")
        return cls(**data)


def unit_key(unit: PruneSpec) -> str:
    """A removal unit as a table key: its canonical JSON."""
    return json.dumps(unit.to_dict(), sort_keys=True)


def _parts(spec: PruneSpec) -> set[tuple]:
    """The elementary removals of a spec, so that overlapping units (two depth choices of one pair) count once."""
    parts: set[tuple] = {("down", *p) for p in spec.remove_down} | {("up", *p) for p in spec.remove_up}
    parts |= {("attention_down", s) for s in spec.drop_attention_down}
    parts |= {("attention_up", b) for b in spec.drop_attention_up}
    parts |= {("mid",)} if spec.drop_mid else set()
    return parts | {("inner", k) for k in range(1, spec.drop_inner_stages + 1)}


def contained_units(config: Any, spec: PruneSpec, keys: Any) -> list[str]:
    """The table units (by key) that make up `spec`, none overlapping; refuses a spec they cannot make up."""
    units = {key: PruneSpec.from_dict(json.loads(key)) for key in keys}
    inside, taken, rebuilt = [], set(), PruneSpec()
    for key, unit in sorted(units.items(), key=lambda item: (-len(_parts(item[1])), item[0])):  # biggest first
        if spec.merged(unit) == spec and not _parts(unit) & taken:
            inside.append(key)
            taken |= _parts(unit)
            rebuilt = rebuilt.merged(unit)
    if rebuilt != spec:
        raise RecipeError(f"the ablation latency table has no units that make up {spec.describe()}; "
                          "re-measure it with this removal among its units")
    return inside


def removed_modules(config: Any, spec: PruneSpec) -> list[str]:
    """The teacher's module names a spec removes (pairs, attention of a stage, the mid block)."""
    if spec.drop_inner_stages:
        raise UnsupportedError("block figures cannot price drop_inner_stages (its samplers and glue are in no block); "
                               "measure the table with method='ablation'")
    cfg = dict(config)
    layout = plan_layout(cfg, spec)
    names: list[str] = []
    down_counts, up_counts = down_layer_counts(cfg), up_layer_counts(cfg)
    for kind, plans, counts, types in (("down_blocks", layout.down, down_counts, cfg["down_block_types"]),
                                       ("up_blocks", layout.up, up_counts, cfg["up_block_types"])):
        for plan in plans:
            i = plan.teacher_index
            has_attention = types[i] in ATTENTION_BLOCK_TYPES
            for d in range(counts[i]):
                if d not in plan.resnets:
                    names.append(f"{kind}.{i}.resnets.{d}")
                if has_attention and (plan.attentions is None or d not in plan.attentions):
                    names.append(f"{kind}.{i}.attentions.{d}")
    if cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn") is not None and not layout.mid:
        names.append("mid_block")
    return names


def timed_modules(unet: Any) -> list[str]:
    """Every block the table prices, in forward order."""
    names = []
    for kind in ("down_blocks", "up_blocks"):
        for i, block in enumerate(getattr(unet, kind)):
            for d in range(len(block.resnets)):
                names.append(f"{kind}.{i}.resnets.{d}")
                if getattr(block, "attentions", None) is not None:
                    names.append(f"{kind}.{i}.attentions.{d}")
        if kind == "down_blocks" and unet.mid_block is not None:
            names.append("mid_block")
    return names


class _BlockCall(torch.nn.Module):
    """One block as a component: positional tensor inputs, one tensor output."""

    def __init__(self, module: torch.nn.Module, kind: str):
        super().__init__()
        self.module, self.kind = module, kind

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        if self.kind == "resnet":
            return self.module(tensors[0], tensors[1])
        if self.kind == "attention":
            return self.module(tensors[0], encoder_hidden_states=tensors[1], return_dict=False)[0]
        if len(tensors) == 3:  # mid block with cross-attention
            return self.module(tensors[0], tensors[1], encoder_hidden_states=tensors[2])
        return self.module(tensors[0], tensors[1])


def capture_block_inputs(unet: Any, args: tuple, names: list[str]) -> dict[str, tuple[torch.Tensor, ...]]:
    """The tensors each named block receives during one forward pass of the whole UNet."""
    modules = dict(unet.named_modules())
    captured: dict[str, tuple[torch.Tensor, ...]] = {}

    def hook(name: str) -> Callable:
        def grab(_module, inputs, kwargs):
            if ".resnets." in name:
                captured[name] = (inputs[0], inputs[1] if len(inputs) > 1 else kwargs["temb"])
            elif ".attentions." in name:
                captured[name] = (inputs[0], kwargs["encoder_hidden_states"])
            else:
                temb = inputs[1] if len(inputs) > 1 else kwargs.get("temb")
                ehs = kwargs.get("encoder_hidden_states")
                captured[name] = (inputs[0], temb) if ehs is None or not getattr(
                    modules[name], "has_cross_attention", False) else (inputs[0], temb, ehs)
        return grab

    handles = [modules[n].register_forward_pre_hook(hook(n), with_kwargs=True) for n in names]
    try:
        with torch.no_grad():
            unet(*args[:2], encoder_hidden_states=args[2], return_dict=False)
    finally:
        for h in handles:
            h.remove()
    return {n: tuple(t.detach().clone() for t in captured[n]) for n in names}


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}


def _time_rounds(runners: dict[str, Callable[[], Any]], runs: int, rounds: int, warmup: int,
                 progress: bool, clock: str = "wall") -> dict[str, list[float]]:
    from tqdm.auto import tqdm

    if clock not in CLOCKS:
        raise RecipeError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    now = CLOCKS[clock]
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {n: [] for n in runners}
    bar = tqdm(total=rounds * len(runners), desc="latency table", disable=not progress)
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(runs):
                start = now()
                run()
                times[name].append((now() - start) * 1000.0)
            bar.update(1)
    bar.close()
    return times


UNET_INPUTS = ("sample", "timestep", "encoder_hidden_states")


def measure_table(unet: Any, example_args: tuple, target: str = "host-cpu", engine: str = "backend",
                  backend_name: str | None = None, precision: str = "fp32", runs: int = 3, rounds: int = 10,
                  warmup: int = 1, modules: list[str] | None = None, work_dir: Path | None = None,
                  progress: bool = True, method: str = "ablation", units: list[PruneSpec] | None = None,
                  clock: str = "cpu", threads: int = 1) -> LatencyTable:
    """Time the removable parts and the whole UNet on this machine (see the module docstring).

    `example_args` = (sample, timestep, encoder_hidden_states) at the recipe's shapes (batch 2 for batched
    classifier-free guidance). `engine="backend"` lowers with the target's backend, `engine="pytorch"` times
    eager modules. `method="blocks"` times every block (or `modules`) alone; `method="ablation"` times the
    whole UNet without each of `units` (default: `prune.removal_units`). `threads` runtime threads (0: the
    runtime's default), `clock` "cpu" or "wall".
    """
    if method not in ("blocks", "ablation"):
        raise RecipeError(f"method must be 'blocks' or 'ablation', got {method!r}")
    if clock not in CLOCKS:
        raise RecipeError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    unet = unet.eval()
    # name -> (module, example tensors, input names, output shape)
    items: dict[str, tuple[torch.nn.Module, tuple[torch.Tensor, ...], tuple[str, ...]]] = {}
    if method == "blocks":
        names = modules or timed_modules(unet)
        inputs = capture_block_inputs(unet, example_args, names)
        all_modules = dict(unet.named_modules())
        for name in names:
            kind = _kind(name)
            input_names = ("hidden_states", "encoder_hidden_states") if kind == "attention" else (
                ("hidden_states", "temb", "encoder_hidden_states")[: len(inputs[name])])
            items[name] = (_BlockCall(all_modules[name], kind).eval(), inputs[name], input_names)
    else:
        units = removal_units(dict(unet.config)) if units is None else units
        for unit in units:
            items[unit_key(unit)] = (_WholeUNet(prune_unet(unet, unit).eval()).eval(), example_args, UNET_INPUTS)
    items["__unet__"] = (_WholeUNet(unet).eval(), example_args, UNET_INPUTS)

    runners: dict[str, Callable[[], Any]] = {}
    version = torch.__version__
    torch_threads = torch.get_num_threads()
    if engine == "pytorch":
        backend_name = "pytorch"
        if threads:
            torch.set_num_threads(threads)
        runners = {name: _torch_runner(module, tensors) for name, (module, tensors, _) in items.items()}
    elif engine == "backend":
        if backend_name is None:
            spec = load_target(target)
            if spec.reach.method != "local":
                raise UnsupportedError(
                    f"target {target!r} is reached by {spec.reach.method}; latency tables are measured on "
                    "this machine only for now: measure on a local target or pass a saved table")
            backend_name, precision = spec.backend, spec.precision
        lowered = lowered_runners(items, backend_name, precision, threads, work_dir, progress)
        runners, version = lowered.runners, lowered.version
    else:
        raise RecipeError(f"engine must be 'backend' or 'pytorch', got {engine!r}")

    load_before = os.getloadavg()[0]
    try:
        times = _time_rounds(runners, runs, rounds, warmup, progress, clock)
    finally:
        torch.set_num_threads(torch_threads)
    unet_ms = float(np.median(times.pop("__unet__")))
    medians = {n: float(np.median(t)) for n, t in times.items()}
    return LatencyTable(
        target=target, backend=backend_name, precision=precision, device=f"{host_name()} ({version})",
        shapes={"sample": list(example_args[0].shape), "encoder_hidden_states": list(example_args[2].shape)},
        blocks=medians if method == "blocks" else {}, unet_ms=unet_ms, runs_per_block=runs * rounds,
        load_average=[round(load_before, 2), round(os.getloadavg()[0], 2)], clock=clock, threads=threads,
        method=method, units={k: unet_ms - v for k, v in medians.items()} if method == "ablation" else {},
    )


def _kind(name: str) -> str:
    return "resnet" if ".resnets." in name else "attention" if ".attentions." in name else "mid"


class _WholeUNet(torch.nn.Module):
    def __init__(self, unet: Any):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


def _torch_runner(module: torch.nn.Module, tensors: tuple[torch.Tensor, ...]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            return module(*tensors)
    return run


def example_unet_args(unet: Any, height_latent: int | None = None, batch: int = 2, text_length: int = 77,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sample, timestep, encoder_hidden_states) at the UNet's native latent size, batch 2 (batched CFG)."""
    cfg = unet.config
    size = height_latent or (cfg.sample_size[0] if isinstance(cfg.sample_size, (list, tuple)) else cfg.sample_size)
    dim = cfg.cross_attention_dim[0] if isinstance(cfg.cross_attention_dim, (list, tuple)) else cfg.cross_attention_dim
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, cfg.in_channels, size, size, generator=g), torch.full((batch,), 500.0),
            torch.randn(batch, text_length, dim, generator=g))
