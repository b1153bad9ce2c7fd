"""`edgediff --version`, and the version in what edgediff writes for people and tools to read later."""

from __future__ import annotations

import json


from edgediff import __version__
from edgediff.cli import main


def test_version_flag(capsys):
    assert main(["--version"]) == 0  # argparse's exit goes through the one exit path
    assert capsys.readouterr().out.strip() == f"edgediff {__version__}"


def test_report_names_the_version(tmp_path):
    from edgediff.report import write_report

    manifest = {"backend": "onnxruntime", "precision": "fp32", "edgediff_version": __version__, "created": "now",
                "source": {"model": "m", "kind": "unet"}, "components": {}, "verify": {}}
    text = write_report(tmp_path, manifest, []).read_text()
    assert f"- edgediff {__version__};" in text


def test_profile_records_carry_the_version_on_disk(tmp_path):
    from edgediff.profile.record import ProfileRecord, read_records, write_records

    record = ProfileRecord("unet", "onnxruntime", "fp32", "host", "timer", 1.5)
    write_records([record], tmp_path / "profile.json")
    assert json.loads((tmp_path / "profile.json").read_text())[0]["edgediff_version"] == __version__
    assert read_records(tmp_path / "profile.json") == [record]


def test_eval_results_carry_the_version():
    from edgediff.evaluate import EvalResult, EvalSettings

    result = EvalResult("m", "bundle", 0.5, 1.0, {}, EvalSettings(), "DDIMScheduler", 1.0, "judge")
    assert result.to_json()["edgediff_version"] == __version__
