"""`edgediff targets`: list the device targets a recipe or `edgediff profile --target` can name."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("targets", help="list device targets (targets/*.toml)",
                       description="List the device targets found in $EDGEDIFF_TARGETS, ./targets and the "
                                   "repository's targets/ folder, with backend, precision and how each is reached.")
    p.add_argument("name", nargs="?", help="show one target in full")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from edgediff.targets import list_targets, load_target

    if args.name:
        target = load_target(args.name)
        print(f"{target.name}: {target.description}")
        print(f"  file: {target.path}")
        print(f"  {target.platform}, {target.summary()}")
        if target.memory_budget_mb:
            print(f"  memory budget: {target.memory_budget_mb} MB")
        for section in ("reach", "benchmark"):
            values = {k: v for k, v in dataclasses.asdict(getattr(target, section)).items() if v not in ("", (), {}, None)}
            print(f"  [{section}] " + ", ".join(f"{k}={v}" for k, v in values.items()))
        return 0
    targets = list_targets()
    if not targets:
        print("no targets found (add .toml files under targets/ or set EDGEDIFF_TARGETS)")
        return 0
    width = max(len(t.name) for t in targets)
    for t in targets:
        budget = f", budget {t.memory_budget_mb} MB" if t.memory_budget_mb else ""
        print(f"{t.name:<{width}}  {t.platform:<7}  {t.summary()}{budget}")
        if t.description:
            print(f"{'':<{width}}  {t.description}")
    return 0
