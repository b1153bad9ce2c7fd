"""Write apps/golden/noise/noise.json: numpy's float32 standard normals the app cores must reproduce bit for bit.

    PYTHONPATH=. python apps/golden/noise/make_noise_golden.py

Why not the raw draws: a million float32 per seed is 4 MB; 99.3% of them come straight off the ziggurat's fast
path (one multiply, nothing to get wrong once the tables match). What can drift is the rare slow path, and above
all its tail (|x| > r = 3.654, about one draw in 4,000), which goes through `log1pf`: glibc's float algorithm,
not the float64 result rounded once. So per seed the file keeps every tail draw (index and bits), the number of
wedge draws, the sha256 of the whole stream (little-endian float32) and the first raw PCG64 outputs; plus the
sha256 of glibc's `log1pf` over every input numpy can pass it (-k * 2^-24, k < 2^24), so a port of log1pf is
checked exhaustively, not just on the inputs these seeds happen to reach.

The draws come from numpy itself (`default_rng(seed).standard_normal(n, dtype=float32)`); this script walks the
same PCG64 words through a Python mirror of numpy's `random_standard_normal_f` only to find out which draws took
the slow path, and checks the mirror against numpy on every fast and wedge draw.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import math
import platform
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("noise.json")
COUNT = 1_000_000
# Seeds of every size SeedSequence treats differently (zero, one word, two words, the largest int64), and 5,
# whose draw 18974 is a tail draw where log1pf and a once-rounded float64 log1p disagree.
SEEDS = (0, 1, 5, 42, 123456789, 2**32 + 7, 2**63 - 1)
RAW_HEAD = 8


def ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy's ki_float / wi_float / fi_float from Marsaglia & Tsang's recurrence (as Noise.kt derives them)."""
    r, v, m1 = 3.6541528853610088, 4.92867323399e-3, float(1 << 23)
    ki, wi, fi = [0] * 256, [0.0] * 256, [0.0] * 256
    dn = tn = r
    q = v / math.exp(-0.5 * dn * dn)
    ki[0], wi[0], wi[255] = int(math.floor(dn / q * m1 + 0.5)), q / m1, dn / m1
    fi[0], fi[255] = 1.0, math.exp(-0.5 * dn * dn)
    for i in range(254, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + math.exp(-0.5 * dn * dn)))
        ki[i + 1] = int(math.floor(dn / tn * m1 + 0.5))
        tn = dn
        fi[i], wi[i] = math.exp(-0.5 * dn * dn), dn / m1
    return np.array(ki, np.uint32), np.array(wi, np.float32), np.array(fi, np.float32)


def libm_log1pf():
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    fn = libm.log1pf
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


def uint32_words(seed: int, n_words: int) -> np.ndarray:
    """numpy's next_uint32 stream: each 64-bit PCG64 output gives its low half, then its high half."""
    raw = np.random.default_rng(seed).bit_generator.random_raw((n_words + 1) // 2).astype("<u8")
    return raw.view("<u4")[:n_words]


def classify(seed: int, values: np.ndarray, log1pf) -> tuple[list[int], int]:
    """Indices of the tail draws and the number of wedge draws, checked against numpy's own values."""
    ki, wi, fi = ziggurat_tables()
    inv_r, r_f = np.float32(0.27366123732975827), np.float32(3.6541528853610088)
    words = uint32_words(seed, 2 * len(values) + 10_000)
    idx_all = words & 0xFF
    fast = ((words >> 9) & 0x7FFFFF) < ki[idx_all]
    slow_positions = np.flatnonzero(~fast)
    expected_fast = (((words >> 9) & 0x7FFFFF).astype(np.float32) * wi[idx_all])
    expected_fast = np.where((words >> 8) & 1 == 1, -expected_fast, expected_fast)

    def next_float(p: int) -> np.float32:
        return np.float32(int(words[p]) >> 8) * np.float32(1.0 / 16777216.0)

    tails, wedges, p, d = [], 0, 0, 0
    n = len(values)
    while d < n:
        k = int(np.searchsorted(slow_positions, p))
        q = int(slow_positions[k]) if k < len(slow_positions) else len(words)
        run = min(q - p, n - d)
        if run:  # fast draws: one word each
            assert np.array_equal(values[d:d + run].view(np.uint32), expected_fast[p:p + run].view(np.uint32)), \
                f"seed {seed}: fast draws {d}..{d + run} differ from the mirror"
        d, p = d + run, p + run
        if d >= n:
            break
        kind = None
        while True:  # numpy's random_standard_normal_f from a slow word on
            r = int(words[p]); p += 1
            idx, rabs = r & 0xFF, (r >> 9) & 0x7FFFFF
            x = np.float32(rabs) * wi[idx]
            if (r >> 8) & 1:
                x = -x
            if rabs < ki[idx]:
                break
            if idx == 0:
                while True:
                    xx = -inv_r * np.float32(log1pf(float(-next_float(p)))); p += 1
                    yy = -np.float32(log1pf(float(-next_float(p)))); p += 1
                    if yy + yy > xx * xx:
                        break
                kind, x = "tail", (-(r_f + xx) if (rabs >> 8) & 1 else r_f + xx)
                break
            f = (fi[idx - 1] - fi[idx]) * next_float(p) + fi[idx]; p += 1
            if float(f) < math.exp(-0.5 * float(x) * float(x)):
                kind = "wedge"
                break
        if kind == "tail":
            tails.append(d)
        else:
            wedges += kind == "wedge"
        assert np.float32(x).view(np.uint32) == values[d:d + 1].view(np.uint32)[0], f"seed {seed} draw {d}: mirror desync"
        d += 1
    return tails, wedges


def log1pf_all_inputs_sha256(log1pf) -> str:
    """sha256 of log1pf(-k * 2^-24) for k = 0 .. 2^24 - 1, little-endian float32 (every input next_float gives)."""
    inputs = -(np.arange(1 << 24, dtype=np.float64) * 2.0**-24)
    out = np.fromiter((log1pf(v) for v in inputs.tolist()), dtype=np.float32, count=len(inputs))
    return hashlib.sha256(out.astype("<f4").tobytes()).hexdigest()


def main() -> None:
    log1pf = libm_log1pf()
    seeds = []
    for seed in SEEDS:
        values = np.random.default_rng(seed).standard_normal(COUNT, dtype=np.float32)
        tails, wedges = classify(seed, values, log1pf)
        seeds.append({
            "seed": str(seed), "count": COUNT,
            "sha256": hashlib.sha256(values.astype("<f4").tobytes()).hexdigest(),
            "raw_uint64_head": [str(int(v)) for v in np.random.default_rng(seed).bit_generator.random_raw(RAW_HEAD)],
            "wedge_draws": wedges,
            "tail_draws": [[i, f"{int(values[i:i + 1].view(np.uint32)[0]):08x}"] for i in tails],
        })
        print(f"seed {seed}: {len(tails)} tail draws, {wedges} wedge draws")
    document = {
        "format": "edgediff-noise-golden/1",
        "made_with": f"numpy {np.__version__}, {platform.libc_ver()[0]} {platform.libc_ver()[1]} log1pf",
        "convention": "np.random.default_rng(seed).standard_normal(count, dtype=np.float32); sha256 of the "
                      "little-endian float32 stream; tail_draws: [index, float32 bits as hex] of every draw beyond "
                      "the ziggurat's r (the ones that go through log1pf)",
        "log1pf_inputs": "-k * 2^-24 for k in 0 .. 2^24 - 1, in that order",
        "log1pf_sha256": log1pf_all_inputs_sha256(log1pf),
        "seeds": seeds,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
