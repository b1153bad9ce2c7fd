"""Prepare what the Kotlin :core tests need beyond the checked-in golden files, into one folder.

    python apps/android/tools/prepare_test_data.py OUT [--reuse]

OUT/bundles/<model>/<backend>/   bundles converted from the repo's models: shapes-sd (onnxruntime and litert),
                                 shapes-sd-step4 and shapes-sd-lcm4 (onnxruntime), and shapes-sd-step4-sizes:
                                 shapes-sd-step4 with three sizes (SIZES) for onnxruntime and litert
OUT/golden-litert/<model>/       `edgediff bundle-golden` of the litert bundles (the Python runtime on LiteRT)
OUT/noise/                       numpy's float32 standard normals and raw PCG64 draws for several seeds

All conversions run in this one process (torch is imported once). `--reuse` keeps bundles already in OUT.
Then run apps/android/core/jvm-test.sh with EDGEDIFF_TESTDATA=OUT.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BUNDLES = (("shapes-sd", "onnxruntime"), ("shapes-sd", "litert"), ("shapes-sd-step4", "onnxruntime"),
           ("shapes-sd-lcm4", "onnxruntime"), ("shapes-sd-step4-sizes", "onnxruntime"),
           ("shapes-sd-step4-sizes", "litert"))
# A bundle with several sizes: the student (4 steps keep its golden files small) at its own size and two more;
# its onnxruntime golden files are checked in (apps/golden/shapes-sd-step4-sizes, regenerate.sh).
SIZED = {"shapes-sd-step4-sizes": ("shapes-sd-step4", ("64x64", "96x64", "64x96"))}
# Seeds of every size SeedSequence treats differently: zero, one 32-bit word, two words, the largest int64.
NOISE_SEEDS = ((0, 1_000_000), (1, 100_000), (42, 100_000), (123456789, 100_000), (2**32 + 7, 100_000),
               (2**63 - 1, 100_000))


def convert(model: str, backend: str, out: Path, reuse: bool) -> float:
    from edgediff.cli import main

    target = out / "bundles" / model
    if reuse and (target / backend / "manifest.json").is_file():
        return 0.0
    start = time.perf_counter()
    # the Kotlin tests read the artifacts, never the manifest's verify section: one sample per component, and no
    # end-to-end image comparison (the Python suite verifies these models end to end in its own tests)
    source, sizes = SIZED.get(model, (model, ()))
    code = main(["convert", str(REPO / "models" / source), "--target", backend, "--output", str(target), "--no-profile",
                 "--set", "verify.samples=1", "--set", "verify.end_to_end=false",
                 *[arg for size in sizes for arg in ("--size", size)]])
    if code != 0:
        raise SystemExit(f"converting {model} for {backend} failed (exit {code})")
    return time.perf_counter() - start


def write_noise(out: Path) -> None:
    import numpy as np

    folder = out / "noise"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for seed, count in NOISE_SEEDS:
        values = np.random.default_rng(seed).standard_normal(count, dtype=np.float32)
        name = f"seed_{seed}.f32"
        (folder / name).write_bytes(values.astype("<f4").tobytes())
        raw = np.random.default_rng(seed).bit_generator.random_raw(8)
        entries.append({"seed": str(seed), "count": count, "file": name, "raw_uint64": [str(int(v)) for v in raw]})
    (folder / "index.json").write_text(json.dumps({"numpy": np.__version__, "seeds": entries}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--reuse", action="store_true", help="keep bundles already converted in OUT")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    start = time.perf_counter()
    write_noise(out)
    for model, backend in BUNDLES:
        seconds = convert(model, backend, out, args.reuse)
        print(f"prepare: {model} {backend} {seconds:.1f} s", file=sys.stderr)
    from edgediff.runtime import BundlePipeline
    from edgediff.runtime.golden import write_golden

    for model in ("shapes-sd", "shapes-sd-step4-sizes"):
        golden = out / "golden-litert" / model
        if not (args.reuse and (golden / "golden.json").is_file()):
            write_golden(BundlePipeline.load(out / "bundles" / model / "litert"), golden)
    print(f"prepare: test data in {out} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
