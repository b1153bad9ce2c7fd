"""Bar chart of component latency across devices (and backends), for the report."""

from __future__ import annotations

from pathlib import Path

from edgediff.profile.record import ProfileRecord


def _value(r: ProfileRecord) -> tuple[float | None, bool]:
    """(latency ms, is_median): the median, or the mean when the tool reports no median (drawn hatched)."""
    if r.median_ms is not None:
        return r.median_ms, True
    return r.mean_ms, False


def _series(r: ProfileRecord) -> str:
    units = r.settings.get("compute_units")
    return f"{r.device} · {r.backend}" + (f" ({units})" if units else "")


def latency_chart(records: list[ProfileRecord], path: Path, title: str = "Latency per component") -> Path:
    """Grouped bars: one group per component, one bar per device/backend; p90 as an error whisker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in records if _value(r)[0] is not None]
    if not usable:
        raise ValueError("no records with a median or mean latency to chart")
    components = list(dict.fromkeys(r.component for r in usable))
    series = list(dict.fromkeys(_series(r) for r in usable))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(components) * max(1, len(series)) ** 0.5), 4.5))
    any_mean = False
    for i, name in enumerate(series):
        for j, comp in enumerate(components):
            match = [r for r in usable if r.component == comp and _series(r) == name]
            if not match:
                continue
            r = match[-1]
            value, is_median = _value(r)
            if value is None:  # neither a median nor a mean: nothing to draw
                continue
            any_mean |= not is_median
            upper = (r.p90_ms - value) if (is_median and r.p90_ms is not None and r.p90_ms >= value) else 0.0
            ax.bar(j + (i - (len(series) - 1) / 2) * width, value, width * 0.95, color=f"C{i % 10}",
                   hatch=None if is_median else "//", edgecolor="black" if not is_median else None,
                   yerr=[[0.0], [upper]] if upper else None, capsize=3, label=name)
            ax.annotate(f"{value:.3g}", (j + (i - (len(series) - 1) / 2) * width, value), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(components)), components)
    ax.set_ylabel("latency (ms), median; whisker = p90")
    ax.set_title(title + ("\n(hatched: mean, the tool reports no median)" if any_mean else ""))
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def latency_table(records: list[ProfileRecord]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the device-comparison table (median, or mean marked with *)."""

    def ms(v: float | None) -> str:
        return f"{v:.2f}" if v is not None else "–"

    header = ["component", "device", "backend", "precision", "tool", "median ms", "p90 ms", "init ms", "peak MB", "runs"]
    rows = []
    for r in records:
        value, is_median = _value(r)
        rows.append([r.component, r.device, r.backend, r.precision, r.tool,
                     ms(value) + ("" if is_median or value is None else "*"), ms(r.p90_ms), ms(r.init_ms),
                     f"{r.peak_memory_mb:.0f}" if r.peak_memory_mb is not None else "–",
                     str(r.runs) if r.runs is not None else "–"])
    return header, rows
