"""The benchmark suite (edgediff.bench): the default model's ONNX Runtime row end to end with tiny settings, its
resumption, and the regression guard. No timing is asserted: only that each figure was really measured (parity
computed against PyTorch, sizes equal to the files on disk, one sample per run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgediff.bench import compare as guard
from edgediff.bench.__main__ import main
from edgediff.bench.rows import Settings, plan_rows
from edgediff.errors import RecipeError

ROW = "default__edgediff-onnxruntime__b1"


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One real run of the default-model ONNX Runtime row (no lock: the test run holds the machine's)."""
    root = tmp_path_factory.mktemp("bench")
    args = ["--suite", "default", "--backends", "edgediff-onnxruntime", "--runs", "2", "--warmup", "1", "--no-lock",
            "--output", str(root / "out"), "--work", str(root / "work"), "--keep-artifacts",
            "--baseline", str(root / "baseline.json"), "--record-baseline"]
    assert main(args) == 0
    return root, args


def test_default_onnxruntime_row_measures_every_figure(bench_run):
    root, _ = bench_run
    row = json.loads((root / "out" / "rows" / ROW / "row.json").read_text())
    convert, timing = row["convert"], row["timing"]
    assert convert["status"] == "ok" and timing["status"] == "ok", (convert.get("reason"), timing.get("reason"))
    work = root / "work" / ROW
    on_disk = {str(f.relative_to(work)): f.stat().st_size for f in work.rglob("*") if f.is_file()}
    assert convert["files_on_disk"] == on_disk and convert["artifact_bytes"] == sum(on_disk.values()) > 0
    assert convert["artifact"]["file"] == "unet.onnx" and (work / "unet.onnx").stat().st_size > 1_000_000
    assert convert["peak_tree_rss_mb"] >= convert["peak_process_rss_mb"] > 100  # torch alone is more than that
    assert 0 < convert["convert_s"] < convert["wall_s"]
    assert timing["parity"]["psnr_db"] is None or timing["parity"]["psnr_db"] > 60  # fp32 ONNX vs eager
    assert timing["parity"]["cosine"] > 0.9999
    for engine in ("artifact", "eager"):
        stats = timing[engine]
        assert len(stats["wall_s"]) == len(stats["cpu_s"]) == 2 and stats["calls_per_sample"] >= 1
        assert 0 < stats["median_s"] <= stats["p90_s"] and stats["cpu_s_per_step"] > 0
        assert 0 < stats["fraction_of_gemm_peak"] < 1.5
    assert timing["flops_per_step"] > 1e6 and timing["gemm_peak_gflops"] > 0
    assert timing["session_load_cold_s"] > 0 and timing["session_load_warm_s"] > 0
    assert timing["input_shapes"]["sample"][0] == 1
    markdown = (root / "out" / "BENCHMARKS.md").read_text()
    assert "| edgediff-onnxruntime | ok |" in markdown and "not from this run" in markdown
    assert f"{timing['parity']['psnr_db']:.1f}" in markdown or timing["parity"]["psnr_db"] is None
    assert (root / "out" / "plots" / "latency.png").stat().st_size > 0


def test_a_rerun_skips_finished_rows(bench_run):
    root, args = bench_run
    convert_json = root / "out" / "rows" / ROW / "convert.json"
    timing_json = root / "out" / "rows" / ROW / "timing.json"
    before = (convert_json.read_text(), timing_json.read_text())
    assert main([a for a in args if a != "--record-baseline"] + ["--compare"]) == 0  # the same machine: no finding
    assert (convert_json.read_text(), timing_json.read_text()) == before


def test_compare_flags_a_row_more_than_20_percent_worse(bench_run):
    root, args = bench_run
    baseline = json.loads((root / "baseline.json").read_text())
    (machine,) = baseline["machines"].values()
    figures = machine["rows"][ROW]["figures"]
    assert set(figures) >= {"convert_wall_s", "peak_tree_rss_mb", "artifact_bytes", "median_s"}
    figures["artifact_bytes"] = figures["artifact_bytes"] / 1.5  # the recorded run was 1.5x smaller
    worse = root / "worse-baseline.json"  # a copy: the other tests keep the recorded one
    worse.write_text(json.dumps(baseline))
    rerun = [a for a in args if a != "--record-baseline"]
    rerun[rerun.index("--baseline") + 1] = str(worse)
    assert main(rerun + ["--compare"]) == 1
    assert "artifact_bytes" in (root / "out" / "BENCHMARKS.md").read_text()


def _row(key: str, **figures: float) -> dict:
    convert = {"status": "ok", "wall_s": figures.get("wall", 10.0), "peak_tree_rss_mb": figures.get("rss", 1000.0),
               "artifact_bytes": figures.get("bytes", 1e6)}
    timing = {"status": "ok", "artifact": {"median_s": figures.get("median", 1.0), "ratio_to_eager": 0.8}}
    return {"key": key, "settings": {"batch": 1}, "convert": convert, "timing": timing}


def test_compare_logic_tolerance_machine_and_settings():
    base = guard.record([_row("a"), _row("b"), _row("c")], {"version": 1, "machines": {}},
                        {"fingerprint": "m1", "cpu_model": "x", "flags": [], "logical_cpus": 2, "memory_gb": 24})
    current = [_row("a", median=1.19, rss=900.0),  # within 20%: not flagged; smaller is never flagged
               _row("b", median=1.25, wall=13.0),  # 25% slower step and 30% slower conversion
               dict(_row("c", bytes=5e6), settings={"batch": 2}),  # other settings: no baseline, not a pass
               _row("d")]
    findings, missing = guard.compare(current, base, "m1")
    assert sorted((f.key, f.metric) for f in findings) == [("b", "convert_wall_s"), ("b", "median_s")]
    assert missing == ["c", "d"]
    assert guard.compare(current, base, "another-machine") == ([], ["a", "b", "c", "d"])
    failed = dict(_row("a"), timing={"status": "failed", "reason": "x"})
    assert "median_s" not in guard.figures(failed) and "convert_wall_s" in guard.figures(failed)


def test_plan_rows_filters_and_refuses_bad_input():
    keys = [r.key for r in plan_rows("default", ["onnxruntime"], Settings())]
    assert keys == ["default__edgediff-onnxruntime__b1", "default__optimum-onnxruntime__b1"]
    assert len(plan_rows("all", None, Settings())) == 20
    with pytest.raises(RecipeError, match="valid"):
        plan_rows("default", ["tensorrt"], Settings())
    with pytest.raises(RecipeError, match="suite"):
        plan_rows("sd3", None, Settings())
    with pytest.raises(RecipeError):
        plan_rows("default", None, Settings(batch=3))


def test_a_corrupt_baseline_is_a_one_line_error(tmp_path: Path, capsys):
    bad = tmp_path / "baseline.json"
    bad.write_text("{not json")
    with pytest.raises(RecipeError, match="record-baseline"):
        guard.read_baseline(bad)


def _sd15_row(converter: str, batch: int, ratio: float, peak_mb: float) -> dict:
    settings = Settings(batch=batch).to_dict()
    return {"key": f"sd15__{converter}__b{batch}", "model": "sd15", "converter": converter, "settings": settings,
            "backend": "onnxruntime", "kind": "edgediff",
            "convert": {"status": "ok", "settings": settings, "convert_s": 30.0, "wall_s": 55.0,
                        "peak_tree_rss_mb": peak_mb, "peak_process_rss_mb": peak_mb,
                        "load_average_1min": {"min": 1.0, "max": 1.2}},
            "timing": {"status": "ok", "settings": settings, "load_average_1min_row": {"min": 2.0, "max": 3.0},
                       "artifact": {"median_s": 5.0 * ratio, "ratio_to_eager": ratio}, "gemm_peak_gflops": 150.0,
                       "eager": {"median_s": 5.0, "cpu_s_per_step": 9.0}}}


def test_batch_two_rows_get_their_own_table_and_target_line(tmp_path: Path):
    """Report logic only (synthetic rows): a batch-2 row neither hides nor replaces the batch-1 row, and the
    targets section computes each gap from the rows it is given."""
    from edgediff.bench.report import write_markdown
    from edgediff.bench.targets import targets

    rows = [_sd15_row("edgediff-onnxruntime", 1, 0.77, 4096.0), _sd15_row("edgediff-onnxruntime", 2, 0.63, 5120.0)]
    lines = "\n".join(targets(rows))
    assert "batch 1: edgediff 0.770×" in lines and "needs 9.1% less time" in lines
    assert "batch 2: edgediff 0.630×" in lines and "**met**, 10.0% under" in lines
    assert "**loaded (> 2.5)**" in lines  # the timing load above 2.5 is flagged
    assert "4.00 GB peak" in lines and "4.80 GB under 8.80 GB" in lines  # batch-1 row against the 8.8 GB anchor
    out = tmp_path / "BENCHMARKS.md"
    write_markdown(out, rows, {"fingerprint": "x"}, "test", None, [])
    text = out.read_text()
    assert "## SD 1.5 UNet (random weights)\n" in text and "## SD 1.5 UNet (random weights), batch 2\n" in text
