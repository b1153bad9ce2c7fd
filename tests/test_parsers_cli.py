"""`edgediff profile --import FILE --tool T` and `edgediff profile BUNDLE --target NAME` through the CLI."""

from __future__ import annotations

import json

from edgediff.cli import main
from tests.test_parsers import FIXTURES, pytestmark  # noqa: F401  (skip when fixtures are missing)
from tests.test_ssh_profile import LITERT_BENCHMARK, make_bundle, target_file


def test_import_prints_json_writes_json_and_chart(tmp_path, capsys):
    out, png = tmp_path / "records.json", tmp_path / "chart.png"
    rc = main(["profile", "--import", str(FIXTURES / "trtexec_8.6.1_perf_summary_p90_95_99.txt"), "--tool", "trtexec",
               "--component", "unet", "--device", "jetson", "--precision", "fp16", "--json", str(out),
               "--chart", str(png)])
    assert rc == 0
    printed = capsys.readouterr().out
    records = json.loads(printed[: printed.rindex("]") + 1])
    assert records[0]["median_ms"] == 29.2732 and records[0]["p90_ms"] == 29.739
    assert records[0]["component"] == "unet" and records[0]["device"] == "jetson" and records[0]["precision"] == "fp16"
    assert json.loads(out.read_text()) == records
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_import_app_report_and_benchmark_model(tmp_path, capsys):
    rc = main(["profile", "--import", str(FIXTURES / "tflite_benchmark_model_cros_selected_lines.txt"),
               "--tool", "benchmark_model"])
    assert rc == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["mean_ms"] for r in records] == [56.2658, 35.1349] and records[0]["median_ms"] is None


def test_import_errors_are_clear(capsys):
    assert main(["profile", "--import", str(FIXTURES / "trtexec_trace_details_10x.txt"), "--tool", "trtexec"]) == 2
    assert "only trace averages" in capsys.readouterr().err
    assert main(["profile", "--import", str(FIXTURES / "README.md"), "--tool", "nope"]) == 2
    assert "unknown tool 'nope'" in capsys.readouterr().err
    assert main(["profile", "--import", str(FIXTURES / "README.md")]) == 2
    assert "--import needs --tool" in capsys.readouterr().err


def test_target_app_asks_for_the_report(tmp_path, capsys):
    assert main(["profile", str(tmp_path), "--target", "iphone-15-pro"]) == 2
    assert "--import report.json --tool app" in capsys.readouterr().err


def test_target_local_litert_through_cli(tmp_path, capsys):
    if not LITERT_BENCHMARK.exists():
        import pytest

        pytest.skip("needs litert-benchmark")
    bundle = make_bundle(tmp_path)
    target = target_file(tmp_path, 'method = "local"')
    out = tmp_path / "r.json"
    assert main(["profile", str(bundle), "--target", str(target), "--runs", "4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "vae_decoder" in text and "litert-benchmark" in text
    (rec,) = json.loads(out.read_text())
    assert rec["runs"] == 4 and rec["median_ms"] > 0 and rec["device"] == "board"
