"""Hostile input, part 2: tampered and malicious bundles, and output locations. A bundle is untrusted data: nothing
read from it may leave its folder, every checksum is checked (or the opt-out is stated), nothing in it can name
code, and a malformed manifest is one `error:` line, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgediff.cli import main
from tests.hostile.support import ROOT, copy_tree, edit_json, nothing_complete, one_error, reseal


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:
    return copy_tree(tiny_bundle, tmp_path / "bundle")


def _generate(capsys, bundle: Path, tmp_path: Path, *extra: str, code: int = 2) -> str:
    capsys.readouterr()
    out = tmp_path / "image.png"
    result = main(["generate", str(bundle), "-p", "a red circle", "--steps", "2", "-o", str(out), *extra])
    err = capsys.readouterr().err
    if code == 0:
        assert result == 0, err[-2000:]
        return err
    line = one_error(result, err, expected_code=code)
    assert not out.exists()
    return line


def _manifest(change):
    return lambda b: edit_json(b / "manifest.json", change)


def _unet(b: Path) -> Path:
    return b / json.loads((b / "manifest.json").read_text())["components"]["unet"]["file"]


def _link_out(b: Path, relative: str) -> None:
    outside = b.parent / f"outside-{Path(relative).name}"
    shutil.move(b / relative, outside)
    (b / relative).symlink_to(outside)


def _flip(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert old in data and len(old) == len(new)
    path.write_bytes(data.replace(old, new, 1))


# (id, change to a copy of the tiny bundle, words the error line must contain)
BUNDLE_CASES = [
    ("artifact-path-traversal", _manifest(lambda d: d["components"]["unet"].update(file="../../../etc/passwd")),
     "outside the bundle"),
    ("artifact-absolute-path", _manifest(lambda d: d["components"]["unet"].update(file="/etc/passwd")),
     "not a relative path"),
    ("artifact-symlink-out", lambda b: _link_out(b, "unet.onnx"), "outside the bundle"),
    ("extra-file-outside", _manifest(lambda d: d["components"]["unet"].update(
        extra_files=[{"file": "../../x.data", "sha256": "0" * 64, "bytes": 1}])), "outside the bundle"),
    ("chunk-outside", _manifest(lambda d: d["components"]["unet"].update(
        chunks=[dict(d["components"]["unet"], file="../../chunk.onnx")])), "outside the bundle"),
    ("tokenizer-symlink-out", lambda b: _link_out(b, "tokenizer/vocab.json"), "outside the bundle"),
    ("side-file-name-outside", _manifest(lambda d: d["files"].update({"../../../etc/hosts": {"sha256": "0" * 64,
                                                                                            "bytes": 1}})),
     "outside the bundle"),
    ("artifact-altered", lambda b: _flip(_unet(b), b"pytorch", b"pytorcH"), "sha256"),
    ("artifact-truncated", lambda b: _unet(b).write_bytes(_unet(b).read_bytes()[:-10]), "bytes but the manifest says"),
    ("tokenizer-altered", lambda b: _flip(b / "tokenizer/merges.txt", b"#version", b"#VERSION"), "sha256"),
    ("artifact-missing", lambda b: _unet(b).unlink(), "missing from"),
    ("no-components", _manifest(lambda d: d.pop("components")), "'components' must be a non-empty object"),
    ("future-format", _manifest(lambda d: d.update(format="edgediff-bundle/9")), "edgediff-bundle/9"),
    ("unknown-backend", _manifest(lambda d: d.update(backend="tensorrt")), "backend 'tensorrt' is unknown"),
    ("unknown-precision", _manifest(lambda d: d.update(precision="int3")), "precision 'int3' is unknown"),
    ("manifest-nan", lambda b: (b / "manifest.json").write_text('{"format": NaN}'), "not valid JSON"),
    ("manifest-not-utf8", lambda b: (b / "manifest.json").write_bytes(b'{"format": "\xff"}'), "not valid JSON"),
    ("manifest-deep", lambda b: (b / "manifest.json").write_text("[" * 100000 + "]" * 100000), "not valid JSON"),
    ("manifest-list", lambda b: (b / "manifest.json").write_text("[]"), "top level"),
    ("manifest-missing", lambda b: (b / "manifest.json").unlink(), "is not a bundle"),
    ("tensor-dtype", _manifest(lambda d: d["components"]["unet"]["inputs"][0].update(dtype="object")), "dtype"),
    ("tensor-shape-string", _manifest(lambda d: d["components"]["unet"]["inputs"][0].update(shape="big")), "shape"),
    ("latent-shape-disagrees", _manifest(lambda d: d["pipeline"].update(latent_shape=[1, 4, 16, 16])),
     "disagrees with the sample input"),
    ("latent-shape-string", _manifest(lambda d: d["pipeline"].update(latent_shape="x")), "pipeline.latent_shape"),
    ("tables-garbage", _manifest(lambda d: d["pipeline"]["scheduler"].update(
        tables={"format": "edgediff-scheduler-tables/1", "steps": "x"})), "pipeline.scheduler.tables"),
    ("guidance-string", _manifest(lambda d: d["pipeline"]["guidance"].update(scale="high")),
     "pipeline.guidance.scale"),
    ("scheduler-is-code", _manifest(lambda d: d["pipeline"]["scheduler"].update(class_name="os.system")),
     "'os.system' is not supported"),
    ("tokenizer-max-length", _manifest(lambda d: d["tokenizer"].update(max_length=-1)), "tokenizer.max_length"),
    ("no-pipeline-section", _manifest(lambda d: d.pop("pipeline")), "holds components only"),
    # caught by the external-data reader (runtime/onnx_external.py) before any session opens
    ("onnx-garbage-resealed", lambda b: (_unet(b).write_bytes(b"\x08\x07garbage" * 100), reseal(b)),
     "is not a readable ONNX model"),
    ("components-swapped-resealed", lambda b: (shutil.copyfile(b / "vae_decoder.onnx", _unet(b)), reseal(b)),
     "the bundle is inconsistent"),
    ("colour-in-a-name", _manifest(lambda d: d["components"].update(
        {"\x1b[31mred\x1b[0m": d["components"].pop("unet")})), "no unet component"),
]


@pytest.mark.parametrize("case,change,words", BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_a_tampered_bundle_is_one_error_line(bundle, tmp_path, capsys, case, change, words):
    change(bundle)
    line = _generate(capsys, bundle, tmp_path)
    assert words.lower() in line.lower(), line


def test_an_old_bundle_without_files_still_keeps_the_tokenizer_inside(bundle, tmp_path, capsys):
    """A bundle written before `files` existed: tokenizer_config.json is read beside vocab.json, and a link out
    of the bundle there is refused too."""
    edit_json(bundle / "manifest.json", lambda d: d.pop("files"))
    _link_out(bundle, "tokenizer/tokenizer_config.json")
    assert "outside the bundle" in _generate(capsys, bundle, tmp_path)


def test_no_checksums_runs_an_altered_bundle_and_says_so(bundle, tmp_path, capsys):
    _flip(_unet(bundle), b"pytorch", b"pytorcH")
    err = _generate(capsys, bundle, tmp_path, "--no-checksums", code=0)
    assert "note: --no-checksums" in err and (tmp_path / "image.png").stat().st_size > 0
    assert "note: --no-checksums" in _generate(capsys, bundle, tmp_path, "--no-verify-checksums", code=0)


def test_unknown_top_level_fields_are_kept_as_data_and_never_acted_on(bundle, tmp_path, capsys):
    edit_json(bundle / "manifest.json", lambda d: d.update(post_install={"exec": "touch PWNED"}))
    _generate(capsys, bundle, tmp_path, code=0)
    assert not list(Path.cwd().glob("PWNED")) and not (tmp_path / "PWNED").exists()


# ---- the recipe.toml inside a bundle ------------------------------------------------------------------------------


def test_a_recipe_symlinked_out_of_the_bundle_is_refused(bundle, capsys):
    _link_out(bundle, "recipe.toml")
    capsys.readouterr()
    assert "outside the bundle" in one_error(main(["verify", str(bundle)]), capsys.readouterr().err)


def test_an_altered_recipe_fails_its_checksum(bundle, capsys):
    _flip(bundle / "recipe.toml", b"samples = 1", b"samples = 9")
    capsys.readouterr()
    line = one_error(main(["verify", str(bundle)]), capsys.readouterr().err)
    assert "recipe.toml has sha256" in line


def test_a_recipe_that_is_not_toml_even_resealed(bundle, capsys):
    (bundle / "recipe.toml").write_text("version = = 1")
    reseal(bundle)
    capsys.readouterr()
    assert "not valid TOML" in one_error(main(["verify", str(bundle)]), capsys.readouterr().err)


@pytest.mark.parametrize("command", ["verify", "profile"])
def test_a_recipe_naming_code_never_imports_it(bundle, tmp_path, command):
    """The recipe names a module whose import would leave a marker file; even resealed, nothing imports it."""
    marker = tmp_path / "IMPORTED"
    package = tmp_path / "evilpkg"
    package.mkdir()
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\nclass Net: pass\n")
    text = (bundle / "recipe.toml").read_text().replace('module = ""', 'module = "evilpkg:Net"')
    (bundle / "recipe.toml").write_text(text)
    reseal(bundle)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{tmp_path}", "OMP_NUM_THREADS": "1"}
    args = [command, str(bundle)] + (["--runs", "1", "--components", "vae_decoder"] if command == "profile" else [])
    done = subprocess.run([sys.executable, "-m", "edgediff.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    if command == "verify":
        line = one_error(done.returncode, done.stderr)
        assert "--module 'evilpkg:Net'" in line
    else:  # the backend is timed; PyTorch only when the user names the class
        assert done.returncode == 0, done.stderr[-2000:]
        assert "PyTorch is not timed" in done.stdout + done.stderr
    assert not marker.exists()


# ---- every command that reads an artifact checks it --------------------------------------------------------------

@pytest.mark.parametrize("command", ["bundle-golden", "profile", "verify", "runner"])
def test_every_reader_refuses_an_altered_artifact(bundle, tmp_path, command, capsys):
    _flip(_unet(bundle), b"pytorch", b"pytorcH")
    if command == "runner":
        done = subprocess.run([sys.executable, str(ROOT / "apps" / "jetson" / "runner.py"), str(bundle), "--prompt",
                               "x", "--output", str(tmp_path / "o.png")], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        code, err = done.returncode, done.stderr
    else:
        capsys.readouterr()
        code = main([command, str(bundle), *({"bundle-golden": ["-o", str(tmp_path / "golden")],
                                             "profile": ["--runs", "1"]}.get(command, []))])
        err = capsys.readouterr().err
    assert "sha256" in one_error(code, err)
    nothing_complete(tmp_path / "golden")
    assert not (tmp_path / "o.png").exists()


def test_the_runner_takes_the_same_flags_and_errors(bundle, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "apps" / "jetson" / "runner.py"), str(bundle), "--prompt", "x",
                           "--guidance", "nan"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "finite guidance" in one_error(done.returncode, done.stderr)


def test_golden_does_not_write_through_a_link_in_the_bundle(bundle, tmp_path, capsys):
    (tmp_path / "elsewhere").mkdir()
    (bundle / "golden").symlink_to(tmp_path / "elsewhere")
    capsys.readouterr()
    assert "is a symlink" in one_error(main(["bundle-golden", str(bundle), "--steps", "2"]), capsys.readouterr().err)
    assert list((tmp_path / "elsewhere").iterdir()) == []


# ---- output locations ----------------------------------------------------------------------------------------------


def _read_only_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


OUTPUT_CASES = [
    ("convert-into-a-file", lambda t: ["convert", "-o", str(_file(t))], "is a file, not a folder"),
    ("convert-under-a-file", lambda t: ["convert", "-o", str(_file(t) / "sub")], "is a file, so no folder"),
    ("convert-under-proc", lambda t: ["convert", "-o", "/proc/edgediff-out"], "pseudo-filesystem"),
    ("convert-read-only", lambda t: ["convert", "-o", str(_read_only_folder(t) / "out")], "read-only"),
    ("generate-under-proc", lambda t: ["generate", "B", "-p", "x", "-o", "/proc/self/x.png"], "pseudo-filesystem"),
    ("generate-into-a-folder", lambda t: ["generate", "B", "-p", "x", "-o", str(_folder(t, "img.png"))],
     "is a folder"),
    ("generate-read-only", lambda t: ["generate", "B", "-p", "x", "-o", str(_read_only_folder(t) / "x.png")],
     "read-only"),
    ("golden-into-a-file", lambda t: ["bundle-golden", "B", "-o", str(_file(t))], "is a file"),
    ("profile-json-folder", lambda t: ["profile", "B", "--json", str(_folder(t, "p.json"))], "is a folder"),
    ("timings-under-proc", lambda t: ["generate", "B", "-p", "x", "-o", str(t / "i.png"), "--timings-json",
                                      "/proc/t.json"], "--timings-json"),
]


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def _folder(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


@pytest.mark.parametrize("case,argv,words", OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
def test_an_output_that_cannot_work_is_refused_up_front(bundle, tmp_path, capsys, case, argv, words):
    args = [str(bundle) if a == "B" else a for a in argv(tmp_path)]
    capsys.readouterr()
    line = one_error(main(args), capsys.readouterr().err)
    assert words in line, line
    for path in tmp_path.rglob("*"):
        if bundle not in path.parents:
            assert ".partial" not in path.name and not path.is_file() or path.name == "a-file", path


def _tmpfs(mount_point: Path, options: str):
    """A real tmpfs at `mount_point` (needs root and mount rights; skipped elsewhere), unmounted afterwards."""
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True)


@pytest.fixture
def small_filesystem(tmp_path):
    yield from _tmpfs(tmp_path / "small", "size=256k")


@pytest.fixture
def read_only_filesystem(tmp_path):
    yield from _tmpfs(tmp_path / "read-only-mount", "ro,size=64k")


@pytest.mark.parametrize("command", ["generate", "convert", "bundle-golden"])
def test_a_read_only_filesystem_is_refused_up_front(bundle, read_only_filesystem, capsys, command):
    target = read_only_filesystem / "out"
    args = {"generate": ["generate", str(bundle), "-p", "x", "-o", str(target / "x.png")],
            "convert": ["convert", "-o", str(target)],
            "bundle-golden": ["bundle-golden", str(bundle), "-o", str(target)]}[command]
    capsys.readouterr()
    assert "read-only filesystem" in one_error(main(args), capsys.readouterr().err)


@pytest.mark.parametrize("command", ["generate", "convert"])
def test_a_full_disk_is_refused_up_front(bundle, small_filesystem, tmp_path, capsys, command):
    (small_filesystem / "filler").write_bytes(b"\0" * (200 << 10))
    args = (["generate", str(bundle), "-p", "x", "-o", str(small_filesystem / "x.png")] if command == "generate"
            else ["convert", "-o", str(small_filesystem / "out")])
    capsys.readouterr()
    line = one_error(main(args), capsys.readouterr().err)
    assert "MB free" in line
    assert sorted(p.name for p in small_filesystem.iterdir()) == ["filler"]


def test_a_write_that_hits_a_full_device_is_one_error_line(bundle, tmp_path, capsys):
    """/dev/full: every write fails with ENOSPC, after the up-front checks passed."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    capsys.readouterr()
    code = main(["generate", str(bundle), "-p", "x", "--steps", "2", "-o", str(tmp_path / "i.png"),
                 "--timings-json", "/dev/full"])
    assert "No space left on device" in one_error(code, capsys.readouterr().err)
