"""What every case of the hostile-input corpus asserts: its exit code, exactly one `error:` line on stderr, no
traceback, no colour codes, and nothing left behind that looks complete; plus helpers to run the CLI as its own
process and to edit (and re-seal) copies of the tiny model and bundle that conftest.py builds once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
CONVERT_FAST = ["--no-profile", "--set", "verify.samples=1", "--set", "pipeline.num_inference_steps=2"]


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: its own process, stderr as it prints it."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgediff.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


def one_error(code: int, err: str, expected_code: int = 2, match: str | None = None) -> str:
    """The contract for a failure: the exit code, exactly one `error:` line (which mentions `match`), no traceback,
    no ANSI colour, no library warning before it. Returns the error line."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert code == expected_code, f"exit {code}, expected {expected_code}; stderr: {err[-1500:]}"
    assert len(errors) == 1, f"expected one error line, got {errors}; stderr: {err[-1500:]}"
    assert "Traceback" not in err and "\x1b" not in errors[0], err[-1500:]
    before = lines[: lines.index(errors[0])]
    assert not [line for line in before if "warning" in line.lower() and not line.startswith("note:")], before
    if match is not None:
        assert match.lower() in errors[0].lower(), errors[0]
    return errors[0]


def nothing_complete(folder: Path) -> None:
    """No staging folder, and nothing under `folder` that a user (or app) would take for a finished result."""
    if not folder.exists():
        return
    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*")] + [folder.name]
    assert not [n for n in names if ".partial" in n or ".old-" in n], names
    assert not [n for n in names if n.endswith(("manifest.json", "golden.json", ".png", ".json"))], names


def copy_tree(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, symlinks=True)
    return dest


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    """Apply `change` (which edits the document in place; its return value is ignored) to a JSON file."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def wrap_json_in_list(path: Path) -> None:
    """The document, as the one item of a list: right syntax, wrong shape."""
    path.write_text(json.dumps([json.loads(path.read_text())]))


def reseal(bundle: Path) -> None:
    """Recompute every size and sha256 in manifest.json: what an attacker who edits files and the manifest does,
    so a case tests the check behind the checksums."""
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())

    def seal(entry: dict[str, Any]) -> None:
        target = bundle / entry["file"]
        if target.is_file():
            entry["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
            entry["bytes"] = target.stat().st_size

    for component in data["components"].values():
        seal(component)
        for chunk in component.get("chunks", []):
            seal(chunk)
    for name, entry in data.get("files", {}).items():
        if (bundle / name).is_file():
            entry.update(sha256=hashlib.sha256((bundle / name).read_bytes()).hexdigest(),
                         bytes=(bundle / name).stat().st_size)
    path.write_text(json.dumps(data))
