"""`edgediff bundle BUNDLE --app android|ios --output DIR`: lay a converted bundle into a sample app's layout.

Both apps read `bundles/<name>/` (Android: from its assets, or pushed with adb into its files folder; iOS: from
the app bundle's resources, or Files / Finder file sharing), so the command copies the bundle's manifest, model
files and tokenizer there, adds golden files made by the Python runtime (for the app's self-check; Core ML
bundles need macOS for that), re-reads the copy with every sha256 checked, and prints a size summary. It refuses,
naming the component and the reason, what the app cannot run: another backend, a missing component, a
scheduler without tables, a tensor type or a dynamic shape its sessions do not feed.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import sys
from pathlib import Path

from edgediff.contract import Manifest
from edgediff.errors import UnsupportedError
from edgediff.runtime import BundlePipeline
from edgediff.runtime.golden import write_golden

# The backends each app runs, and where its bundles go.
APP_BACKENDS = {"android": ("litert", "onnxruntime"), "ios": ("coreml",)}
APPS = tuple(APP_BACKENDS)
APP_NAMES = {"android": "Android", "ios": "iOS"}
PIPELINE = ("text_encoder", "unet", "vae_decoder")
# What the apps' sessions feed and read (apps/android/app/.../Sessions.kt, apps/ios/Sources/EdgediffCoreML):
# float32 activations (float16 on Core ML), integer ids.
FEEDABLE = {"litert": {"float32", "int32"}, "onnxruntime": {"float32", "int32", "int64"},
            "coreml": {"float32", "float16", "int32"}}
ASSET_WARN_BYTES = 150 * 2**20  # Play's base APK limit is 200 MB; larger bundles go in with adb push


def register(sub) -> None:
    p = sub.add_parser(
        "bundle",
        help="lay a bundle into a sample app's layout (apps/android, apps/ios)",
        description="Copy BUNDLE into DIR/bundles/NAME/ as the app reads it (assets or adb push), with golden "
        "files for its self-check; refuse what the app cannot run, naming the component and why.",
    )
    p.add_argument("bundle", type=Path, help="bundle folder (DIR/<backend>/ with manifest.json)")
    p.add_argument("--app", required=True, choices=APPS, help="the app to bundle for")
    p.add_argument("--output", "-o", type=Path, required=True,
                   help="folder that receives bundles/NAME/ (e.g. apps/android/app/src/main/assets)")
    p.add_argument("--name", help="bundle name in the app (default: <model>-<backend>)")
    p.add_argument("--backend", help="pick one backend when BUNDLE holds several")
    p.add_argument("--no-golden", action="store_true", help="skip the golden files (the app's self-check then has none)")
    p.set_defaults(func=run)


def check_app_can_run(manifest: Manifest, app: str = "android") -> list[str]:
    """Every reason the app cannot run this bundle (empty: it can)."""
    problems = []
    if manifest.backend not in APP_BACKENDS[app]:
        other = next(a for a, backends in APP_BACKENDS.items() if manifest.backend in backends)
        targets = " or ".join(f"--target {b}" for b in APP_BACKENDS[app])
        return [f"backend {manifest.backend!r}: the {APP_NAMES[app]} app runs {' and '.join(APP_BACKENDS[app])} "
                f"bundles ({manifest.backend} bundles run in the {APP_NAMES[other]} app); convert with {targets}"]
    if manifest.pipeline is None:
        return ["the bundle holds components only: the app needs a text-to-image bundle (convert a full pipeline)"]
    if manifest.pipeline.get("sdxl") is not None:
        return ["SDXL: the app cores do not feed text_encoder_2, text_embeds or time_ids yet (SDXL's added "
                "conditioning); run this bundle with `edgediff generate` (the torch-free runtime)"]
    for name in PIPELINE:
        if name not in manifest.components:
            problems.append(f"component {name}: missing; re-run edgediff convert with --components "
                            "text_encoder,unet,vae_decoder")
    sched = manifest.scheduler
    tables = sched.get("tables")
    if not tables:
        problems.append(f"scheduler {sched.get('class_name')}: the manifest carries no scheduler tables, and the app "
                        "only runs tables; re-create the bundle with this edgediff")
    elif tables.get("format") != "edgediff-scheduler-tables/1":
        problems.append(f"scheduler {sched.get('class_name')}: tables format {tables.get('format')!r} is not "
                        "edgediff-scheduler-tables/1")
    feedable = FEEDABLE[manifest.backend]
    for name, comp in manifest.components.items():
        if name not in PIPELINE:
            continue
        for part in comp.parts:
            for spec in (*part.inputs, *part.outputs):
                dtype = {"float": "float32"}.get(spec.dtype.lower(), spec.dtype.lower())
                if dtype not in feedable:
                    problems.append(f"component {name}: tensor {spec.name} is {spec.dtype}; the app's {manifest.backend} "
                                    f"session feeds {', '.join(sorted(feedable))} (convert with --precision fp32, or keep "
                                    "fp16 weights with float32 inputs and outputs)")
                if manifest.backend == "litert" and any(not isinstance(d, int) or d <= 0 for d in spec.shape):
                    problems.append(f"component {name}: tensor {spec.name} has a dynamic shape {list(spec.shape)}; "
                                    "LiteRT's compiled model needs fixed shapes")
    return problems


def _files(manifest: Manifest) -> list[str]:
    """Every file the manifest names (already checked to be inside the bundle), relative to the bundle folder."""
    rel = [path.relative_to(manifest.root).as_posix() for comp in manifest.components.values() for path in comp.files()]
    rel += [c.path.relative_to(manifest.root).as_posix() for c in manifest.components.values() if c.chunks]
    rel += manifest.side_files  # recipe.toml, the tokenizer files, the int8 plan: checksummed like the models
    return list(dict.fromkeys(rel))


def _default_name(manifest: Manifest) -> str:
    source = str(manifest.source.get("model") or manifest.root.parent.name or "bundle")
    name = f"{Path(source).name}-{manifest.backend}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def run(args: argparse.Namespace) -> int:
    manifest = Manifest.read(args.bundle, backend=args.backend)
    problems = check_app_can_run(manifest, args.app)
    if problems:
        raise UnsupportedError(f"the {APP_NAMES[args.app]} app cannot run {manifest.root}: " + "; ".join(problems))
    name = args.name or _default_name(manifest)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,80}", name) or name in (".", ".."):
        raise UnsupportedError(f"bundle name {name!r}: use letters, digits, '.', '_' and '-' only")
    target = Path(args.output) / "bundles" / name
    staging = target.parent / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        root = manifest.root
        for rel in [*_files(manifest), "manifest.json"]:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            src = root / rel
            shutil.copytree(src, staging / rel) if src.is_dir() else shutil.copy2(src, staging / rel)
        shutil.copytree(root / "tokenizer", staging / "tokenizer", dirs_exist_ok=True)
        Manifest.read(staging)  # the copy, every sha256 checked again
        golden_note = "golden: skipped (--no-golden)"
        if manifest.backend == "coreml" and platform.system() != "Darwin" and not args.no_golden:
            golden_note = ("golden: none (Core ML runs only on macOS; run `edgediff bundle-golden` on a Mac, or the "
                           "app's self-check against the ONNX Runtime golden files of the same model)")
        elif not args.no_golden:
            write_golden(BundlePipeline.load(staging), staging / "golden")
            golden_note = "golden: golden/ (the Python runtime's run of the default prompt, seed 0)"
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    rows = sorted(((p.relative_to(target).as_posix(), p.stat().st_size) for p in target.rglob("*") if p.is_file()),
                  key=lambda r: -r[1])
    total = sum(size for _, size in rows)
    print(f"{args.app} bundle {name} ({manifest.backend}, {manifest.precision}) -> {target}")
    for rel, size in rows[:8]:
        print(f"  {size:>12,d}  {rel}")
    if len(rows) > 8:
        print(f"  {sum(s for _, s in rows[8:]):>12,d}  ({len(rows) - 8} more files)")
    print(f"  total {_size(total)}; {golden_note}")
    if total > ASSET_WARN_BYTES:
        print(f"note: {_size(total)} is large for APK assets; push it instead: adb push {target} "
              f"/sdcard/Android/data/dev.edgediff.app/files/bundles/{name}", file=sys.stderr)
    return 0
