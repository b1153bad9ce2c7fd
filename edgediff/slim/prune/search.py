"""The latency-driven greedy search over removal units (SnapFusion-style) and its trace and plot.

Separate from `search_run`: the algorithm takes quality and latency as plain functions, so it runs (and is
tested) without a model, a latency table or a judge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from edgediff.slim.prune.spec import PruneSpec
from edgediff.slim.prune.units import spec_error


@dataclass
class SearchStep:
    """One accepted move of the search, with the architecture's estimated latency and measured quality."""

    step: int
    action: str  # "start", "remove", "re-add", "swap"
    unit: list[str]
    removed: list[str]
    latency_ms: float
    quality: float
    score: float | None = None  # quality lost per millisecond saved (remove), or gained (re-add / swap)


@dataclass
class SearchResult:
    spec: PruneSpec
    trace: list[SearchStep]
    budget_ms: float
    reached: bool
    evaluations: int

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "removed": self.spec.describe(), "budget_ms": self.budget_ms,
                "reached": self.reached, "evaluations": self.evaluations,
                "trace": [asdict(s) for s in self.trace]}


def greedy_search(config: Any, units: list[PruneSpec], quality: Any, latency: Any, budget_ms: float,
                  swap_rounds: int = 1, progress: bool = True, allowed: Any = None) -> SearchResult:
    """SnapFusion-style architecture evolution on a fixed set of weights.

    Remove, one at a time, the unit with the least quality lost per millisecond saved (`quality(spec)`:
    higher is better; `latency(spec)`: estimated ms) until the estimate is within `budget_ms`. Then give
    back what the budget allows: re-add any removed unit whose return keeps the budget and raises quality,
    and try swaps (one removed unit back, one other out) that keep the budget and raise quality.
    `allowed(spec)` (optional) rules architectures out, e.g. `keeps_text_path`.
    """
    cache: dict[PruneSpec, float] = {}

    def q(spec: PruneSpec) -> float:
        if spec not in cache:
            cache[spec] = float(quality(spec))
        return cache[spec]

    def build(chosen: list[PruneSpec]) -> PruneSpec | None:
        spec = PruneSpec()
        for unit in chosen:
            spec = spec.merged(unit)
        if spec_error(config, spec) is not None or (allowed is not None and not allowed(spec)):
            return None
        return spec

    chosen: list[PruneSpec] = []
    spec = PruneSpec()
    trace = [SearchStep(0, "start", [], [], latency(spec), q(spec))]
    bar = tqdm(desc="search", disable=not progress, unit="move")
    while latency(spec) > budget_ms:
        best = None
        for unit in units:
            if unit in chosen:
                continue
            candidate = build(chosen + [unit])
            if candidate is None or candidate == spec:
                continue
            saved = latency(spec) - latency(candidate)
            if saved <= 0:
                continue
            score = (q(spec) - q(candidate)) / saved
            if best is None or (score, -saved) < best[:2]:  # ties: the bigger saving (fewer removals)
                best = (score, -saved, unit, candidate)
        if best is None:
            break
        score, _, unit, spec = best
        chosen.append(unit)
        trace.append(SearchStep(len(trace), "remove", unit.describe(), spec.describe(), latency(spec), q(spec), score))
        bar.update(1)

    reached = latency(spec) <= budget_ms
    improved = reached
    while improved:
        improved = False
        best = None
        for unit in chosen:  # re-add: one removal undone, budget still met
            rest = [u for u in chosen if u != unit]
            candidate = build(rest)
            if candidate is not None and latency(candidate) <= budget_ms and q(candidate) > q(spec):
                if best is None or q(candidate) > best[0]:
                    best = (q(candidate), "re-add", unit, rest, candidate)
        if best is None and swap_rounds > 0:
            swap_rounds -= 1
            for back in chosen:
                for out in units:
                    if out in chosen:
                        continue
                    pick = [u for u in chosen if u != back] + [out]
                    candidate = build(pick)
                    if candidate is not None and latency(candidate) <= budget_ms and q(candidate) > q(spec):
                        if best is None or q(candidate) > best[0]:
                            best = (q(candidate), "swap", back, pick, candidate)
        if best is not None:
            gain, action, unit, chosen, new_spec = best
            trace.append(SearchStep(len(trace), action, unit.describe(), new_spec.describe(), latency(new_spec),
                                    gain, gain - q(spec)))
            spec, improved = new_spec, True
            bar.update(1)
    bar.close()
    return SearchResult(spec=spec, trace=trace, budget_ms=budget_ms, reached=reached, evaluations=len(cache))


def plot_search(result: SearchResult, path: Path, teacher_ms: float, quality_label: str) -> Path:
    """Quality against estimated UNet latency for every accepted move (matplotlib, no display needed)."""
    # Imported here: the backend must be chosen before pyplot loads, and only for this plot (not for
    # every importer of the package).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [s.latency_ms for s in result.trace]
    ys = [s.quality for s in result.trace]
    ax.plot(xs, ys, "-o", color="tab:blue", markersize=4)
    for s in result.trace:
        label = "teacher" if s.action == "start" else f"{s.step}: {s.action} " + ", ".join(s.unit)
        ax.annotate(label, (s.latency_ms, s.quality), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axvline(result.budget_ms, color="tab:red", linestyle="--",
               label=f"budget {result.budget_ms:.1f} ms ({result.budget_ms / teacher_ms:.2f} x teacher)")
    ax.set_xlabel("estimated UNet latency (ms)")
    ax.set_ylabel(quality_label)
    ax.set_title("latency-driven block removal")
    ax.invert_xaxis()
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)
