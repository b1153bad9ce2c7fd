"""Target files: the shipped ones load, mistakes are errors that say what is valid, lookup order, CLI listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgediff.cli import main
from edgediff.errors import RecipeError
from edgediff.targets import list_targets, load_target, load_target_file

REPO_TARGETS = Path(__file__).resolve().parents[1] / "targets"

MINIMAL = """\
platform = "android"
backend = "litert"
precision = "fp16"
[reach]
method = "adb"
[benchmark]
tool = "benchmark_model"
"""


def write(tmp_path: Path, text: str, name: str = "phone") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_shipped_targets_load():
    names = {t.name for t in list_targets()}
    assert {"host-cpu", "pixel-8", "galaxy-s24", "iphone-15-pro", "jetson-orin-nano", "mac-coreml"} <= names
    pixel = load_target("pixel-8")
    assert (pixel.platform, pixel.backend, pixel.precision, pixel.reach.method) == ("android", "litert", "fp16", "adb")
    assert pixel.benchmark.delegate == "gpu" and pixel.benchmark.threads == 4 and pixel.memory_budget_mb == 2500
    jetson = load_target("jetson-orin-nano")
    assert jetson.reach.method == "ssh" and jetson.benchmark.tool == "trtexec"
    assert jetson.binary() == "/usr/src/tensorrt/bin/trtexec"
    assert load_target("iphone-15-pro").benchmark.compute_units[0] == "cpuAndNeuralEngine"


def test_minimal_defaults(tmp_path):
    t = load_target_file(write(tmp_path, MINIMAL))
    assert t.name == "phone" and t.benchmark.runs == 20 and t.reach.serial == "" and t.memory_budget_mb is None


@pytest.mark.parametrize("extra, where, valid", [
    ("colour = 'red'\n", "the top level", "memory_budget_mb"),
    ("[reach]\nmethod = 'adb'\nserail = 'x'\n", "[reach]", "serial"),
    ("[benchmark]\ntool = 'benchmark_model'\nthread = 4\n", "[benchmark]", "threads"),
])
def test_unknown_keys_list_valid_ones(tmp_path, extra, where, valid):
    text = MINIMAL
    if extra.startswith("[reach]"):
        text = text.replace("[reach]\nmethod = \"adb\"\n", extra)
    elif extra.startswith("[benchmark]"):
        text = text.replace("[benchmark]\ntool = \"benchmark_model\"\n", extra)
    else:
        text = extra + text
    with pytest.raises(RecipeError) as info:
        load_target_file(write(tmp_path, text))
    message = str(info.value)
    assert "unknown key" in message and where in message and valid in message and "valid keys" in message


@pytest.mark.parametrize("change, match", [
    (("precision = \"fp16\"", "precision = \"fp8\""), "precision must be one of"),
    (("method = \"adb\"", "method = \"ssh\"\nhost = \"b\""), None),  # benchmark_model over ssh is allowed
    (("method = \"adb\"", "method = \"ssh\""), "needs reach.host"),
    (("method = \"adb\"", "method = \"app\""), "cannot run over reach.method 'app'"),
    (("backend = \"litert\"", "backend = \"onnxruntime\""), "measures litert artifacts"),
    (("tool = \"benchmark_model\"", "tool = \"benchmark_model\"\nruns = \"many\""), "runs should be int"),
    (("tool = \"benchmark_model\"", "tool = \"benchmark_model\"\nruns = 0"), "runs must be >= 1"),
    (("platform = \"android\"", "platform = \"android\"\nname = \"other\""), "must equal the file name"),
    (("platform = \"android\"", "platform = \"android\"\nmemory_budget_mb = -5"), "positive integer"),
])
def test_invalid_values(tmp_path, change, match):
    text = MINIMAL.replace(*change, 1)
    if match is None:
        load_target_file(write(tmp_path, text))
        return
    with pytest.raises(RecipeError, match=match):
        load_target_file(write(tmp_path, text))


def test_bad_toml_and_missing(tmp_path):
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_target_file(write(tmp_path, "platform = \n"))
    with pytest.raises(RecipeError, match="missing `reach`"):
        load_target_file(write(tmp_path, MINIMAL.split("[reach]")[0]))
    with pytest.raises(RecipeError, match="unknown target 'nope'.*pixel-8"):
        load_target("nope")


def test_binary_from_file_env_or_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEDIFF_BENCHMARK_MODEL", raising=False)
    t = load_target_file(write(tmp_path, MINIMAL))
    with pytest.raises(RecipeError, match="EDGEDIFF_BENCHMARK_MODEL"):
        t.binary()
    monkeypatch.setenv("EDGEDIFF_BENCHMARK_MODEL", "/opt/bm/benchmark_model")
    assert t.binary() == "/opt/bm/benchmark_model"
    t2 = load_target_file(write(tmp_path, MINIMAL.replace('tool = "benchmark_model"',
                                                          'tool = "benchmark_model"\nbinary = "/x/bm"'), "p2"))
    assert t2.binary() == "/x/bm"


def test_search_path_env_first_and_path_lookup(tmp_path, monkeypatch):
    write(tmp_path, MINIMAL.replace("fp16", "int8"), "pixel-8")  # shadows the shipped pixel-8
    monkeypatch.setenv("EDGEDIFF_TARGETS", str(tmp_path))
    assert load_target("pixel-8").precision == "int8"
    assert load_target(str(tmp_path / "pixel-8.toml")).path == tmp_path / "pixel-8.toml"
    assert [t.precision for t in list_targets() if t.name == "pixel-8"] == ["int8"]


def test_cli_lists_targets(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "pixel-8" in out and "jetson-orin-nano" in out and "litert/fp16 via benchmark_model" in out
    assert main(["targets", "jetson-orin-nano"]) == 0
    assert "host=jetson.local" in capsys.readouterr().out
    assert main(["targets", "nope"]) == 2
    assert "unknown target" in capsys.readouterr().err
