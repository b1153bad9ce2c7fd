"""`PruneSpec`: what to remove from a teacher UNet, in the teacher's indices (see the package docstring).

Separate because it is pure data (hashable, JSON round-trip, no torch): recipes, search traces, latency
tables and robust training all pass specs around without touching a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgediff.errors import RecipeError


@dataclass(frozen=True)
class PruneSpec:
    """What to remove from a teacher UNet, in the teacher's indices (see the module docstring)."""

    remove_down: tuple[tuple[int, int], ...] = ()
    remove_up: tuple[tuple[int, int], ...] = ()
    drop_attention_down: tuple[int, ...] = ()
    drop_attention_up: tuple[int, ...] = ()
    drop_mid: bool = False
    drop_inner_stages: int = 0

    def __post_init__(self) -> None:
        # Canonical order so that equal specs compare and hash equal whatever order they were built in.
        object.__setattr__(self, "remove_down", tuple(sorted(set(map(tuple, self.remove_down)))))
        object.__setattr__(self, "remove_up", tuple(sorted(set(map(tuple, self.remove_up)))))
        object.__setattr__(self, "drop_attention_down", tuple(sorted(set(self.drop_attention_down))))
        object.__setattr__(self, "drop_attention_up", tuple(sorted(set(self.drop_attention_up))))

    def merged(self, other: "PruneSpec") -> "PruneSpec":
        """Both specs' removals together."""
        return PruneSpec(
            remove_down=self.remove_down + other.remove_down,
            remove_up=self.remove_up + other.remove_up,
            drop_attention_down=self.drop_attention_down + other.drop_attention_down,
            drop_attention_up=self.drop_attention_up + other.drop_attention_up,
            drop_mid=self.drop_mid or other.drop_mid,
            drop_inner_stages=max(self.drop_inner_stages, other.drop_inner_stages),
        )

    def is_empty(self) -> bool:
        return self == PruneSpec()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("remove_down", "remove_up"):
            data[key] = [list(p) for p in data[key]]
        for key in ("drop_attention_down", "drop_attention_up"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PruneSpec":
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise RecipeError(
                f"unknown prune field(s) {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(
            remove_down=tuple(tuple(p) for p in data.get("remove_down", ())),
            remove_up=tuple(tuple(p) for p in data.get("remove_up", ())),
            drop_attention_down=tuple(data.get("drop_attention_down", ())),
            drop_attention_up=tuple(data.get("drop_attention_up", ())),
            drop_mid=bool(data.get("drop_mid", False)),
            drop_inner_stages=int(data.get("drop_inner_stages", 0)),
        )

    def describe(self) -> list[str]:
        """One human line per removal, e.g. 'down_blocks.1 pair 1'."""
        lines = [f"down_blocks.{s} pair {d}" for s, d in self.remove_down]
        lines += [f"up_blocks.{b} pair {d}" for b, d in self.remove_up]
        lines += [f"down_blocks.{s} attention" for s in self.drop_attention_down]
        lines += [f"up_blocks.{b} attention" for b in self.drop_attention_up]
        if self.drop_mid:
            lines.append("mid_block")
        if self.drop_inner_stages:
            lines.append(f"{self.drop_inner_stages} innermost stage(s)")
        return lines
