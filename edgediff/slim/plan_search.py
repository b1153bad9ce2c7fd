"""The int8 plan search: which units stay float so the component's output PSNR meets the target.

Every candidate is scored by a full simulated forward over the held-out samples (edgediff.slim.quantize._Scorer),
so the number of candidates is the cost. Two searches share the same steps (sensitivity of each unit alone at int8,
the fewest most-sensitive units kept float by bisection, then a refinement that takes units back to int8 or int8
weights where the target still holds):

- `layer_search`: the sensitivity of every unit. One forward per unit: 158 for the default model's UNet, most
  of the 641 s its int8 conversion took, although its plan left only a handful of units float.
- `block_search` (the default): units are first grouped into blocks (module subtrees of about sqrt(units) units,
  `partition`); sensitivity is measured per block, the fewest most-sensitive blocks that meet the target are
  found, and only inside those blocks is each unit measured and searched. When everything at int8 already meets
  the target, no unit is measured at all (the blocks' figures are the report's sensitivity). The result meets
  the same target (every plan is scored, never estimated); on a network with one sensitive layer both searches
  keep exactly that layer float (tests/test_plan_search.py).

The functions see only group names and two scoring callbacks, so they are tested without a network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from tqdm import tqdm

# measure(modes): output PSNR with `modes` (group -> mode) and every other group at its most compressed mode.
Measure = Callable[[dict[str, str]], float]
# alone(groups): output PSNR with only these groups at their most compressed mode, everything else float.
Alone = Callable[[list[str]], float]
# options(group): the modes the refinement tries for a float group, best first.
Options = Callable[[str], list[str]]

SEARCHES = ("blocks", "layers")


@dataclass
class SearchResult:
    decided: dict[str, str]  # group -> mode, for the groups not left at the most compressed mode
    psnr: float  # the measured PSNR of that assignment
    sensitivity: dict[str, float]  # group -> PSNR with it (or its block) alone at int8
    measured_as: dict[str, str] = field(default_factory=dict)  # group -> the group or block that figure is for
    blocks: int = 0  # blocks measured (block search)
    refined_blocks: list[str] = field(default_factory=list)  # blocks whose units were measured one by one


def layer_search(groups: list[str], measure: Measure, alone: Alone, options: Options, target: float,
                 all_int8: float, label: str = "") -> SearchResult:
    """Sensitivity of every group, then bisection and refinement over all of them."""
    sensitivity = {g: alone([g]) for g in tqdm(groups, desc=f"sensitivity {label}", unit="unit", leave=False)}
    result = _search(groups, sensitivity, measure, options, target, all_int8, label)
    result.measured_as = {g: g for g in groups}
    return result


def block_search(groups: list[str], block_size: int, measure: Measure, alone: Alone, options: Options,
                 target: float, all_int8: float, label: str = "") -> SearchResult:
    """Sensitivity per block; units measured one by one only inside the blocks the target needs kept float."""
    blocks = partition(groups, block_size)
    block_of = {g: b for b, members in blocks.items() for g in members}
    block_sens = {b: alone(members) for b, members in tqdm(blocks.items(), desc=f"block sensitivity {label}",
                                                           unit="block", leave=False)}
    sensitivity = {g: block_sens[block_of[g]] for g in groups}
    measured_as = dict(block_of)
    if all_int8 >= target:
        return SearchResult({}, all_int8, sensitivity, measured_as, len(blocks))
    order = sorted(blocks, key=lambda b: (block_sens[b], b))

    def blocks_float(k: int) -> float:
        return measure({g: "float" for b in order[:k] for g in blocks[b]})

    known = {len(order): math.inf}  # every unit float is the float model
    kb = _fewest(len(order), blocks_float, target, known, f"block search {label}")
    failing = order[:kb]
    candidates = [g for b in failing for g in blocks[b]]
    for b in failing:
        if len(blocks[b]) == 1:  # the block is one unit: its figure is that unit's
            measured_as[blocks[b][0]] = blocks[b][0]
            continue
        for g in tqdm(blocks[b], desc=f"sensitivity {label} in {b}", unit="unit", leave=False):
            sensitivity[g], measured_as[g] = alone([g]), g
    # Every candidate float is what the block search measured at kb: the bisection starts from it.
    result = _search(candidates, sensitivity, measure, options, target, all_int8, label,
                     known={len(candidates): known[kb]} if kb in known else None)
    result.sensitivity, result.measured_as = sensitivity, measured_as
    result.blocks, result.refined_blocks = len(blocks), list(failing)
    return result


def _search(groups: list[str], sensitivity: dict[str, float], measure: Measure, options: Options, target: float,
            all_int8: float, label: str, known: dict[int, float] | None = None) -> SearchResult:
    """The fewest most-sensitive groups float (bisection), then refinement from the least sensitive one up."""
    order = sorted(groups, key=lambda g: (sensitivity[g], g))  # most sensitive first
    known = dict(known or {len(order): math.inf})

    def floated(k: int) -> float:
        return measure({g: "float" for g in order[:k]})

    k = 0 if all_int8 >= target else _fewest(len(order), floated, target, known, f"plan search {label}")
    decided = {g: "float" for g in order[:k]}
    psnr = known.get(k, all_int8) if k else all_int8
    if k and k not in known:
        psnr = floated(k)
    for group in tqdm(list(reversed(order[:k])), desc=f"plan refine {label}", unit="unit", leave=False):
        for mode in options(group):
            trial = dict(decided) | {group: mode}
            score = measure(trial)
            if score >= target:
                decided, psnr = trial, score
                break
    return SearchResult(decided, psnr, dict(sensitivity))


def _fewest(n: int, score: Callable[[int], float], target: float, known: dict[int, float], desc: str) -> int:
    """Smallest k in [1, n] with score(k) >= target (score(n) is taken to meet it); fills `known`."""
    low, high = 1, n
    with tqdm(desc=desc, unit="eval", leave=False) as bar:
        while low < high:
            mid = (low + high) // 2
            if mid not in known:
                known[mid] = score(mid)
                bar.update()
            if known[mid] >= target:
                high = mid
            else:
                low = mid + 1
    return low


def default_block_size(units: int) -> int:
    """About sqrt(units): a block pass plus one block's units is then about 2 sqrt(units) forwards."""
    return max(2, round(math.sqrt(units)))


def partition(names: list[str], size: int) -> dict[str, list[str]]:
    """Module subtrees of at most `size` units (dotted module paths), neighbours packed together up to `size`.

    Order follows `names` (the order the units ran), so a block is a stretch of the network: a resnet, an
    attention, a run of small layers. Block names are the subtree's path, or "first … last" for a pack."""
    if size < 1:
        raise ValueError("block size must be >= 1")
    blocks: dict[str, list[str]] = {}
    for members in _split(list(names), 0, size):
        name = _block_name(members, names)
        while name in blocks:  # names are unique in practice; never let two blocks share one
            name += "'"
        blocks[name] = members
    return blocks


def _split(members: list[str], depth: int, size: int) -> list[list[str]]:
    if len(members) <= size:
        return [members]
    segments: dict[str, list[str]] = {}
    for name in members:
        parts = name.split(".") if name else []
        key = ".".join(parts[:depth + 1]) if len(parts) > depth else "\0" + name  # the node's own unit
        segments.setdefault(key, []).append(name)
    if len(segments) == 1:  # one child holds everything: go one level down
        return _split(members, depth + 1, size)
    pieces = [piece for segment in segments.values() for piece in _split(segment, depth + 1, size)]
    packed: list[list[str]] = []
    for piece in pieces:
        if packed and len(packed[-1]) + len(piece) <= size:
            packed[-1] = packed[-1] + piece
        else:
            packed.append(list(piece))
    return packed


def _block_name(members: list[str], names: list[str]) -> str:
    """The members' common module path when they are all of that subtree, else "first … last"."""
    if len(members) == 1:
        return members[0]
    common: list[str] = []
    for parts in zip(*[m.split(".") if m else [] for m in members]):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    prefix = ".".join(common)
    subtree = [n for n in names if n == prefix or n.startswith(prefix + ".")] if prefix else list(names)
    if prefix and set(subtree) == set(members):
        return prefix
    return f"{members[0] or '<root>'} … {members[-1] or '<root>'}"
