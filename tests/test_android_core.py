"""The Android app's Kotlin core (apps/android/core), built and tested on the JVM from the README's test command.

The fixture converts the bundles the Kotlin tests run (the default model for ONNX Runtime and LiteRT, both
students for ONNX Runtime) into a temporary folder while the Kotlin compiler builds :core and its tests; then
apps/android/core/jvm-test.sh runs the JUnit suite against the checked-in golden files (apps/golden/) and those
bundles, through the ONNX Runtime and LiteRT C libraries of this Python environment's wheels. The JUnit summary
is reported as a plain `junit: N passed, N failed, N skipped` line. On CI (CI=true) a missing tool fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "apps" / "android" / "core" / "jvm-test.sh"
PREPARE = REPO / "apps" / "android" / "tools" / "prepare_test_data.py"
ON_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
MISSING_TOOL = 3  # jvm-test.sh's exit code when a tool is missing


def _unavailable(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"{reason} (CI must build and run the Kotlin core: run .ci/system-deps.sh)")
    pytest.skip(reason)


def _env(test_data: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO))
    if test_data is not None:
        env["EDGEDIFF_TESTDATA"] = str(test_data)
    return env


@pytest.fixture(scope="module")
def android_test_data(tmp_path_factory):
    """Bundles + numpy noise for the Kotlin tests, converted while :core compiles; yields (folder, seconds)."""
    import shutil

    from tests.shared_bundle import default_ort_bundle

    out = tmp_path_factory.mktemp("android-core")
    start = time.perf_counter()
    build = subprocess.Popen([str(SCRIPT), "--build-only"], env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    # the default model's ONNX Runtime bundle is the run's shared one (test_runtime converts it the same way):
    # prepare_test_data --reuse keeps it and converts the others
    shutil.copytree(default_ort_bundle(tmp_path_factory, REPO / "models" / "shapes-sd"),
                    out / "bundles" / "shapes-sd" / "onnxruntime")
    prepare = subprocess.run([sys.executable, str(PREPARE), str(out), "--reuse"], env=_env(), capture_output=True,
                             text=True)
    build_log, _ = build.communicate()
    if build.returncode == MISSING_TOOL:
        _unavailable(build_log.strip().splitlines()[-1])
    assert build.returncode == 0, f"building :core failed:\n{build_log[-6000:]}"
    assert prepare.returncode == 0, f"preparing the test bundles failed:\n{prepare.stderr[-6000:]}"
    timings = [line for line in prepare.stderr.splitlines() if line.startswith("prepare:")]
    yield out, time.perf_counter() - start, timings


def test_kotlin_core_junit(android_test_data, record_property):
    out, prepare_s, timings = android_test_data
    start = time.perf_counter()
    done = subprocess.run([str(SCRIPT)], env=_env(out), capture_output=True, text=True, timeout=600)
    run_s = time.perf_counter() - start
    log = done.stdout + done.stderr
    if done.returncode == MISSING_TOOL:
        _unavailable(log.strip().splitlines()[-1])
    summary = next((line for line in reversed(done.stdout.splitlines()) if " passed, " in line), "")
    record_property("junit_summary", f"junit: {summary}")
    figures = [line for line in done.stdout.splitlines()
               if line.startswith(("noise:", "scheduler ", "timestep_cond ")) or line.endswith(" dB")]
    record_property("junit_figures", "\n".join(figures + timings + [
        f"android core: build + bundles {prepare_s:.0f} s, JUnit run {run_s:.0f} s"]))
    print(summary)
    assert done.returncode == 0, f"Kotlin core tests failed ({summary}):\n{log[-12000:]}"
    assert summary and " 0 failed" in summary and not summary.startswith("0 passed"), summary
    if ON_CI:
        assert summary.endswith(" 0 skipped"), f"on CI no Kotlin test may skip: {summary}"


def test_app_benchmark_report_imports(android_test_data):
    """The report the Kotlin benchmark wrote is one `edgediff profile --import --tool app` accepts."""
    from edgediff.profile.parsers.app_report import parse_app_report, to_records

    out, _, _ = android_test_data
    report = out / "benchmark" / "app-report.json"
    if not report.is_file():
        pytest.fail("the Kotlin benchmark test wrote no report (test_kotlin_core_junit must run first in this module)")
    records = to_records(parse_app_report(report.read_text()))
    by_component = {r.component: r for r in records}
    assert set(by_component) == {"text_encoder", "unet", "vae_decoder", "pipeline"}
    assert by_component["unet"].runs == 12 and by_component["unet"].median_ms > 0
    assert json.loads(report.read_text())["bundle"]["backend"] == "onnxruntime"


def _copy_bundle(src: Path, dst: Path, edit) -> Path:
    """A copy of bundle `src` whose manifest `edit` changed (model files untouched, so checksums still hold)."""
    import shutil

    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    edit(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_bundle_for_android_lays_out_and_refuses(android_test_data, tmp_path, capsys):
    """`edgediff bundle --app android`: a checked copy with golden files; a refusal names component and reason."""
    from edgediff.cli import main
    from edgediff.contract import Manifest

    out, _, _ = android_test_data
    bundle = out / "bundles" / "shapes-sd-step4" / "onnxruntime"
    assets = tmp_path / "assets"
    assert main(["bundle", str(bundle), "--app", "android", "--output", str(assets), "--name", "step4"]) == 0
    laid = assets / "bundles" / "step4"
    assert Manifest.read(laid).backend == "onnxruntime"  # every sha256 of the copy checked
    assert (laid / "golden" / "golden.json").is_file() and (laid / "tokenizer" / "vocab.json").is_file()
    assert "total" in capsys.readouterr().out

    def drop_unet(m):
        del m["components"]["unet"]

    def fp16_input(m):
        m["components"]["unet"]["inputs"][0]["dtype"] = "float16"

    def no_tables(m):
        m["pipeline"]["scheduler"].pop("tables")

    def coreml(m):
        m["backend"] = "coreml"

    cases = ((drop_unet, "component unet: missing"), (fp16_input, "component unet: tensor sample is float16"),
             (no_tables, "no scheduler tables"), (coreml, "ios app"))
    for i, (edit, expected) in enumerate(cases):
        bad = _copy_bundle(bundle, tmp_path / f"bad{i}", edit)
        assert main(["bundle", str(bad), "--app", "android", "--output", str(assets), "--name", f"bad{i}"]) == 2
        err = capsys.readouterr().err
        assert expected in err.lower(), err
        assert not (assets / "bundles" / f"bad{i}").exists()
