"""Hostile input, part 4: device tools that fail. `edgediff profile BUNDLE --target T.toml` against an adb or ssh
that is missing, has no device, drops the connection, or a benchmark tool that prints garbage: each is exit 2 and
one `error:` line. The fakes are small executables on PATH (the adb one is a working "device" on this machine:
push copies, shell runs `sh -c`), plus the real adb client with no phone attached."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgediff.cli import main
from tests.hostile.support import one_error

FAKE_ADB = f"""#!{sys.executable}
import os, shutil, subprocess, sys
args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
mode = os.environ.get("FAKE_ADB_MODE", "device")
if mode == "no-device":
    sys.exit(print("error: no devices/emulators found", file=sys.stderr) or 1)
if args[0] == "get-state":
    sys.exit(print("device") or 0)
if mode == "dropped" and not (args[0] == "shell" and "mktemp" in args[1]):
    sys.exit(print("error: device offline", file=sys.stderr) or 1)
if args[0] in ("push", "pull"):
    shutil.copyfile(args[1], args[2])
    sys.exit(0)
if args[0] == "shell":
    sys.exit(subprocess.run(["sh", "-c", args[1]]).returncode)
sys.exit(print("adb: unknown command " + args[0], file=sys.stderr) or 1)
"""

FAKE_SSH = f"""#!{sys.executable}
import sys
line = sys.argv[-1]
if "edgediff-guard" in line and "{{mode}}" == "dropped":  # the session opens, then every later command fails
    print("/tmp/edgediff.fake", flush=True)
    sys.stdin.read()
    sys.exit(0)
sys.exit(print("ssh: connect to host board.invalid port 22: Connection refused", file=sys.stderr) or 255)
"""

GARBAGE_TOOL = """#!/bin/sh
echo "Session creation time cost: banana s"
head -c 3000 /dev/urandom
echo
echo "Min Latency: fast"
exit 0
"""


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _adb_target(tmp_path: Path, binary: str, push: bool = True) -> Path:
    device = tmp_path / "device"
    device.mkdir(exist_ok=True)
    path = tmp_path / "phone.toml"
    path.write_text(f"""platform = "android"
backend = "onnxruntime"
precision = "fp32"
[reach]
method = "adb"
remote_dir = {json.dumps(str(device))}
[benchmark]
tool = "onnxruntime_perf_test"
binary = {json.dumps(binary)}
push_binary = {"true" if push else "false"}
runs = 1
warmup = 0
timeout_s = 60
""")
    return path


def _ssh_target(tmp_path: Path) -> Path:
    path = tmp_path / "board.toml"
    path.write_text("""platform = "linux"
backend = "onnxruntime"
precision = "fp32"
[reach]
method = "ssh"
host = "board.invalid"
connect_timeout_s = 2
[benchmark]
tool = "onnxruntime_perf_test"
binary = "/usr/local/bin/onnxruntime_perf_test"
runs = 1
timeout_s = 30
""")
    return path


def _profile(capsys, bundle: Path, target: Path) -> str:
    capsys.readouterr()
    code = main(["profile", str(bundle), "--target", str(target), "--components", "vae_decoder"])
    return one_error(code, capsys.readouterr().err)


@pytest.fixture
def fake_bin(tmp_path, monkeypatch) -> Path:
    """A PATH holding only the fakes and the basic tools a shell needs (no real adb or ssh)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("sh", "mktemp", "rm", "wc", "cat", "chmod", "test", "head", "ls", "echo"):
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    _executable(folder / "getprop", "#!/bin/sh\necho '[ro.product.model]: [Fake Phone]'\n")  # the "device" side
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.delenv("ADB", raising=False)
    return folder


ADB_CASES = [
    ("adb-missing", None, "device", "no adb client"),
    ("no-device", "adb", "no-device", "no device attached"),
    ("connection-dropped", "adb", "dropped", "offline"),
    ("tool-missing-on-host", "adb", "device", "not found on this machine"),
    ("tool-missing-on-device", "adb", "device", "failed"),
    ("garbage-output", "adb", "device", "onnxruntime_perf_test"),
]


@pytest.mark.parametrize("case,adb,mode,words", ADB_CASES, ids=[c[0] for c in ADB_CASES])
def test_an_android_tool_failure_is_one_error_line(tiny_bundle, tmp_path, fake_bin, monkeypatch, capsys,
                                                   case, adb, mode, words):
    if adb:
        _executable(fake_bin / "adb", FAKE_ADB)
    monkeypatch.setenv("FAKE_ADB_MODE", mode)
    tool = _executable(tmp_path / "tools" / "onnxruntime_perf_test", GARBAGE_TOOL)
    binary, push = {"tool-missing-on-host": (str(tmp_path / "nope" / "onnxruntime_perf_test"), True),
                    "tool-missing-on-device": ("/nonexistent/onnxruntime_perf_test", False)}.get(case, (str(tool), True))
    line = _profile(capsys, tiny_bundle, _adb_target(tmp_path, binary, push))
    assert words.lower() in line.lower(), line
    if case == "connection-dropped":  # it cannot be removed over a dead link, and the error says so
        assert "may be left on the device" in line
    else:
        assert not list((tmp_path / "device").iterdir()), "the device work folder was left behind"


@pytest.mark.parametrize("case", ["ssh-missing", "refused", "dropped"])
def test_a_linux_board_failure_is_one_error_line(tiny_bundle, tmp_path, fake_bin, capsys, case):
    if case != "ssh-missing":
        _executable(fake_bin / "ssh", FAKE_SSH.replace("{mode}", case))
    line = _profile(capsys, tiny_bundle, _ssh_target(tmp_path))
    words = {"ssh-missing": "no `ssh` client", "refused": "connection refused",
             "dropped": "connection failed or dropped"}[case]
    assert words.lower() in line.lower(), line


def test_the_real_adb_client_with_no_phone(tiny_bundle, tmp_path, monkeypatch, capsys):
    adb = shutil.which("adb")
    if adb is None:
        pytest.skip("adb is not installed (apt-get install adb)")
    with socket.socket() as s:  # a private server port: never the user's own adb server
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    try:
        line = _profile(capsys, tiny_bundle, _adb_target(tmp_path, str(tmp_path / "perf_test")))
        assert "no device attached" in line or "device state" in line, line
    finally:
        subprocess.run([adb, "kill-server"], capture_output=True, timeout=30,
                       env={**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)})
