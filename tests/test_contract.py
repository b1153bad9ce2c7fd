"""The bundle contract and the walls between stages.

- manifest.json is strict JSON, follows the published schema, and is read back by one typed reader that keeps
  every path inside the bundle and checks every checksum; the previous format version is still read;
- verify and generate run artifacts through the same session code (a broken session fails both);
- the import graph has no circle, slim never imports a backend, profile never imports the orchestrator, backends
  never import each other, the runtime and the contract never import torch;
- the base install (no extras) carries the runtime but not torch.
"""

from __future__ import annotations

import ast
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import tomllib

from edgediff import contract
from edgediff.cli import main
from edgediff.contract import Manifest, read_strict_json, strict_json_value, write_json
from edgediff.errors import ModelLoadError
from tests.shared_bundle import tiny_ort_bundle

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgediff"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The run's shared tiny bundle (tests/shared_bundle.py); tests that edit it work on a copy."""
    return tiny_ort_bundle(tmp_path_factory)


def _copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    return copy


def _edit(folder: Path, change) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ---- strict JSON ---------------------------------------------------------------------------------------------


def test_non_finite_numbers_become_null_with_their_reason(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"psnr_db": float("inf"), "cosine": float("nan"), "ok": np.float32(1.5),
                      "series": [1.0, float("-inf")]})
    data = read_strict_json(path)
    assert data["psnr_db"] is None and "identical" in data["psnr_db_reason"]
    assert data["cosine"] is None and "not a number" in data["cosine_reason"]
    assert data["ok"] == 1.5 and data["series"] == [1.0, None]
    assert "Infinity" not in path.read_text() and "NaN" not in path.read_text()


def test_strict_reader_refuses_nan(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"a": NaN}')
    with pytest.raises(ValueError):
        read_strict_json(path)


def test_bundle_manifest_is_strict_and_follows_the_schema(bundle):
    document = read_strict_json(bundle / "manifest.json")
    jsonschema.Draft202012Validator(json.loads(contract.SCHEMA_FILE.read_text())).validate(document)
    assert document["format"] == contract.BUNDLE_FORMAT and document["edgediff_version"]
    manifest = Manifest.read(bundle)
    assert set(manifest.components) == {"text_encoder", "unet", "vae_decoder"}
    assert manifest.precision == "fp32" and manifest.latent_shape == (1, 4, 8, 8)


def test_the_previous_format_is_still_read(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    _edit(copy, lambda d: (d.update(format="edgediff-bundle/1"), d.pop("edgediff_version")))
    assert Manifest.read(copy).format == "edgediff-bundle/1"


def test_a_future_format_is_refused_by_name(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    _edit(copy, lambda d: d.update(format="edgediff-bundle/9"))
    with pytest.raises(ModelLoadError, match="edgediff-bundle/9"):
        Manifest.read(copy)


# ---- hostile bundles -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "tokenizer/../../x.onnx"])
def test_paths_that_leave_the_bundle_are_refused(bundle, tmp_path, name):
    copy = _copy(bundle, tmp_path)
    _edit(copy, lambda d: d["components"]["unet"].update(file=name))
    with pytest.raises(ModelLoadError, match="outside the bundle|not a relative path"):
        Manifest.read(copy)
    jsonschema_errors = list(jsonschema.Draft202012Validator(json.loads(contract.SCHEMA_FILE.read_text()))
                             .iter_errors(json.loads((copy / "manifest.json").read_text())))
    assert jsonschema_errors, "the schema must refuse it too (the apps validate against it)"


def test_a_symlink_out_of_the_bundle_is_refused(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    outside = tmp_path / "outside.onnx"
    unet_file = json.loads((copy / "manifest.json").read_text())["components"]["unet"]["file"]
    shutil.move(copy / unet_file, outside)
    (copy / unet_file).symlink_to(outside)
    with pytest.raises(ModelLoadError, match="outside the bundle"):
        Manifest.read(copy)


@pytest.mark.parametrize("command", ["verify", "generate", "bundle-golden"])
def test_every_command_refuses_a_tampered_artifact(bundle, tmp_path, capsys, command):
    copy = _copy(bundle, tmp_path)
    unet = copy / json.loads((copy / "manifest.json").read_text())["components"]["unet"]["file"]
    data = bytearray(unet.read_bytes())
    data[len(data) // 2] ^= 0xFF
    unet.write_bytes(bytes(data))
    args = {"verify": ["verify", str(copy)], "generate": ["generate", str(copy), "--prompt", "x", "-o",
                                                         str(tmp_path / "x.png")],
            "bundle-golden": ["bundle-golden", str(copy), "-o", str(tmp_path / "golden")]}[command]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "sha256" in err[0], err
    assert not (tmp_path / "x.png").exists()


# ---- one session path ---------------------------------------------------------------------------------------


def test_verify_and_generate_share_one_session_path(bundle, tmp_path, monkeypatch, capsys):
    """Break the runtime's ONNX Runtime session (outputs slightly off): the parity gate and generate both see it."""
    from edgediff.runtime import sessions
    from edgediff.runtime.pipeline import BundlePipeline

    before = BundlePipeline.load(bundle)("a red circle", seed=1, steps=3)
    real_run = sessions.OnnxRuntimeSession.run

    def broken_run(self, feeds):
        return {k: v + 0.5 for k, v in real_run(self, feeds).items()}

    monkeypatch.setattr(sessions.OnnxRuntimeSession, "run", broken_run)
    after = BundlePipeline.load(bundle)("a red circle", seed=1, steps=3)
    assert np.abs(after.astype(np.float64) - before.astype(np.float64)).mean() > 1.0
    capsys.readouterr()
    assert main(["verify", str(bundle), "--samples", "1"]) == 1
    assert "verification failed" in capsys.readouterr().err


# ---- walls ---------------------------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Every `import` of every module (top level or inside functions), resolved to edgediff modules."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != name and target != "edgediff":
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                group.append(item)
                if item == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_circle():
    assert _cycles(_import_graph()) == []


def test_walls_between_stages():
    graph = _import_graph()
    broken = []
    for module, targets in graph.items():
        for target in targets:
            if module.startswith("edgediff.slim") and target.startswith("edgediff.backends"):
                broken.append(f"{module} -> {target} (slim never imports a backend)")
            if module.startswith("edgediff.profile") and target in ("edgediff.orchestrator",):
                broken.append(f"{module} -> {target} (profile never imports the orchestrator)")
            if module == "edgediff.report" and target.startswith("edgediff.slim"):
                broken.append(f"{module} -> {target} (the report reads stage records)")
            if module.startswith("edgediff.backends.") and target.startswith("edgediff.backends."):
                own = module.split(".")[2].split("_")[0]
                other = target.split(".")[2].split("_")[0]
                if other not in ("base", own) and not (own == "onnxruntime" and other == "onnx"):
                    broken.append(f"{module} -> {target} (backends never import each other)")
    assert broken == []


def test_runtime_and_contract_import_no_torch():
    code = ("import sys, edgediff.contract, edgediff.runtime, edgediff.runtime.golden, edgediff.commands.generate;"
            "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules];"
            "print(','.join(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_generate_runs_where_torch_cannot_be_imported(bundle, tmp_path):
    """What a Jetson or a Raspberry Pi without torch sees: generate works from a bundle."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    for name in ("torch", "diffusers", "transformers"):
        (blocker / f"{name}.py").write_text(f"raise ImportError('no {name} on this device')\n")
    out = tmp_path / "image.png"
    env = {"PYTHONPATH": f"{blocker}:{ROOT}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "edgediff.cli", "generate", str(bundle), "--prompt", "a red circle",
                           "--steps", "2", "-o", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0


def test_base_install_carries_the_runtime_but_not_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for runtime_need in ("numpy", "onnxruntime", "tokenizers", "pillow"):
        assert runtime_need in base
    for heavy in ("torch", "diffusers", "transformers", "onnxscript"):
        assert heavy not in base, f"{heavy} is in the base install"
    assert "torch" in " ".join(project["optional-dependencies"]["convert"])


def test_no_product_file_over_600_lines():
    long = [f"{p.relative_to(ROOT)} ({n})" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600]
    assert long == []


def test_identical_outputs_write_null_psnr_with_reason():
    from edgediff.verify import compare

    metrics = compare(np.ones(4), np.ones(4))
    assert math.isinf(metrics.psnr_db)
    record = strict_json_value({"verify": metrics.to_dict()})
    assert record["verify"]["psnr_db"] is None and "identical" in record["verify"]["psnr_db_reason"]


@pytest.mark.slow
def test_pip_install_without_extras_in_a_fresh_venv_has_no_torch_and_generates(bundle, tmp_path):
    """`pip install .` into a fresh venv (downloads numpy, onnxruntime, tokenizers, pillow, tqdm from the index)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = venv / "bin" / "pip"
    done = subprocess.run([str(pip), "install", "-q", str(ROOT)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    listed = subprocess.run([str(pip), "list"], capture_output=True, text=True, timeout=300).stdout.lower()
    assert "torch" not in listed and "diffusers" not in listed
    out = tmp_path / "image.png"
    done = subprocess.run([str(venv / "bin" / "edgediff"), "generate", str(bundle), "--prompt", "a red circle",
                           "--steps", "2", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.stat().st_size > 0


@pytest.mark.parametrize("budget, plan", [(10_000, "all resident"), (500, "sequential"), (250, "does not fit")])
def test_memory_section_plans_loading_against_the_targets_budget(budget, plan):
    """The apps read `memory`: all components resident, one at a time, or not at all on this device."""
    import dataclasses

    from edgediff.bundle import memory_entry
    from edgediff.profile.record import ProfileRecord
    from edgediff.targets import load_target

    records = [ProfileRecord(name, "onnxruntime", "fp32", "host", "edgediff-host", 1.0, peak_memory_mb=mb)
               for name, mb in (("text_encoder", 300.0), ("unet", 400.0), ("vae_decoder", 200.0))]
    records.append(ProfileRecord("unet", "pytorch", "fp32", "host", "edgediff-host", 1.0, peak_memory_mb=5000.0))
    target = dataclasses.replace(load_target("pixel-8"), memory_budget_mb=budget)
    entry = memory_entry(records, "onnxruntime", target)
    assert entry["peak_mb"] == 900.0 and entry["components"]["unet"] == 400.0  # PyTorch's record is not counted
    assert entry["plan"] == plan and entry["budget_mb"] == budget and entry["target"] == "pixel-8"
    assert ("note" in entry) == (plan != "all resident")
