"""End to end over the loopback sshd: a bundle whose artifact has a hostile file name is pushed, timed by a real
benchmark tool on the "board" (LiteRT's litert-benchmark on a real .tflite), parsed into a record, cleaned up.
The same flow also runs through the local session (reach.method = "local")."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from edgediff.profile.devices import profile_on_target
from edgediff.contract import sha256_file
from edgediff.targets import load_target_file
from tests.test_parsers import FIXTURES
from tests.test_ssh import NASTY, _wait_until, processes_with, sshd  # noqa: F401  (fixture)

LITERT_BENCHMARK = Path(sys.executable).with_name("litert-benchmark")
pytestmark = pytest.mark.skipif(not LITERT_BENCHMARK.exists() or not (FIXTURES / "tiny_conv.tflite").exists(),
                                reason="needs ai-edge-litert's litert-benchmark and the tiny_conv.tflite fixture")

NAME = NASTY.replace("\n", "").replace("/", "") + ".tflite"


def make_bundle(root: Path) -> Path:
    bundle = root / "bundle" / "litert"
    bundle.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "tiny_conv.tflite", bundle / NAME)
    manifest = {"format": "edgediff-bundle/1", "backend": "litert", "precision": "fp32",
                "components": {"vae_decoder": {"file": NAME, "sha256": sha256_file(bundle / NAME), "bytes": (bundle / NAME).stat().st_size,
                                               "inputs": [], "outputs": []}}}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle.parent


def target_file(root: Path, reach: str) -> Path:
    path = root / "board.toml"
    path.write_text(f"""\
platform = "linux"
backend = "litert"
precision = "fp32"
[reach]
{reach}
[benchmark]
tool = "litert-benchmark"
binary = {json.dumps(str(LITERT_BENCHMARK))}
threads = 1
warmup = 2
runs = 7
timeout_s = 300
""")
    return path


def check_record(rec, target_name):
    assert rec.component == "vae_decoder" and rec.backend == "litert" and rec.tool == "litert-benchmark"
    assert rec.device == target_name and rec.runs == 7 and rec.warmup == 2
    assert rec.median_ms is not None and 0 < rec.min_ms <= rec.median_ms <= rec.max_ms
    assert rec.init_ms is not None and rec.init_ms > 0
    assert rec.settings["num_threads"] == 1 and "--result_json" in rec.settings["tool_args"]
    assert rec.extra["artifact"] == NAME and rec.extra["log"]["num_runs"] == 7


def test_profile_bundle_over_loopback_ssh(sshd, tmp_path):  # noqa: F811
    bundle = make_bundle(tmp_path)
    (tmp_path / "board").mkdir()
    opts = '["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "KexAlgorithms=curve25519-sha256"]'
    target = load_target_file(target_file(tmp_path, f"""\
method = "ssh"
host = "127.0.0.1"
user = {json.dumps(sshd.user)}
port = {sshd.port}
identity_file = {json.dumps(str(sshd.key))}
ssh_options = {opts}
connect_timeout_s = 5
remote_dir = {json.dumps(str(tmp_path / "board"))}"""))
    logs: list[str] = []
    (rec,) = profile_on_target(bundle, target, log=logs.append)
    check_record(rec, "board")
    assert "uname" in rec.extra["device_info"]
    assert list((tmp_path / "board").iterdir()) == []  # board work folder removed
    # the board-side watchdog (`sh -c ... sleep 2; kill -KILL`) may take up to 2 s to exit after the connection
    # closes; wait for it rather than racing it
    assert _wait_until(lambda: not processes_with("litert-benchmark --model"), 15), "board benchmark survived"


def test_profile_bundle_locally(tmp_path):
    bundle = make_bundle(tmp_path)
    target = load_target_file(target_file(tmp_path, 'method = "local"'))
    (rec,) = profile_on_target(bundle / "litert", target, log=lambda _: None)
    check_record(rec, "board")
