"""The adb path with the real adb client. No phone is attached here: the tests check the client's real
"no device" answers, the exact command lines edgediff builds, and that a device shell would receive every
argument intact (the joined line is run through a real POSIX shell). Tests that need a phone are `device`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from edgediff.errors import DeviceError
from edgediff.profile.adb import AdbSession
from edgediff.profile.devices import benchmark_model_args, ort_perf_test_args, trtexec_args
from edgediff.targets import Benchmark, load_target

ADB = shutil.which("adb")
NASTY = "my model $(touch PWNED) `id`; rm -rf / 'q' \"dq\" & | * ? \\ #x\tT.tflite"


@pytest.fixture
def adb_server(monkeypatch):
    """A private adb server port for the test, stopped afterwards (never the user's own server)."""
    if ADB is None:
        pytest.skip("adb is not installed: run .ci/system-deps.sh (apt-get install adb)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    yield port
    subprocess.run([ADB, "kill-server"], capture_output=True, timeout=30,
                   env={**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)})


def test_no_device_attached_is_a_clear_error(adb_server):
    with pytest.raises(DeviceError, match="no device attached.*USB debugging"):
        AdbSession("", command_timeout_s=60).open()


def test_unknown_serial_is_a_clear_error(adb_server):
    with pytest.raises(DeviceError, match="serial is not attached"):
        with AdbSession("R5CT0000000", command_timeout_s=60):
            pass


def test_missing_adb_binary():
    with pytest.raises(DeviceError, match="cannot run"):
        AdbSession("", adb="/nonexistent/adb").open()


def test_exact_command_lines():
    s = AdbSession("SER 1", adb="/opt/adb")
    assert s.adb_command("push", "/tmp/a b.tflite", "/data/local/tmp/x/a b.tflite") == [
        "/opt/adb", "-s", "SER 1", "push", "/tmp/a b.tflite", "/data/local/tmp/x/a b.tflite"]
    cmd = s.shell_command(["/data/local/tmp/e.1/benchmark_model", f"--graph=/data/local/tmp/e.1/{NASTY}"],
                          cwd="/data/local/tmp/e.1", env={"LD_LIBRARY_PATH": "/data/local/tmp/e.1"})
    assert cmd[:4] == ["/opt/adb", "-s", "SER 1", "shell"] and len(cmd) == 5
    assert cmd[4] == ("cd /data/local/tmp/e.1 && env LD_LIBRARY_PATH=/data/local/tmp/e.1 "
                      "/data/local/tmp/e.1/benchmark_model '--graph=/data/local/tmp/e.1/my model $(touch PWNED) "
                      "`id`; rm -rf / '\"'\"'q'\"'\"' \"dq\" & | * ? \\ #x\tT.tflite'")
    assert AdbSession("", adb="/opt/adb").adb_command("get-state") == ["/opt/adb", "get-state"]


def test_device_shell_receives_arguments_intact(tmp_path):
    """What adb sends is one line for the device's `sh -c`; run that line through a real POSIX shell with
    printf standing in for the benchmark binary and compare the arguments it received."""
    args = ["printf", "[%s]\\n", NASTY, "$HOME", "*", "a\nb", "--x=y z"]
    line = AdbSession("", adb="adb").shell_command(args, cwd=str(tmp_path))[-1]
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 0
    assert out.stdout == "".join(f"[{a}]\n" for a in args[2:])
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_tool_command_lines():
    bench = Benchmark(tool="benchmark_model", threads=4, delegate="gpu", op_profiling=True, extra_args=("--x=1",))
    assert benchmark_model_args("/d/bm", "/d/m.tflite", bench, "fp16", runs=20, warmup=3, max_secs=3600) == [
        "/d/bm", "--graph=/d/m.tflite", "--warmup_runs=3", "--warmup_min_secs=0", "--num_runs=20", "--min_secs=0",
        "--max_secs=3600", "--num_threads=4", "--use_gpu=true", "--gpu_precision_loss_allowed=true",
        "--enable_op_profiling=true", "--report_peak_memory_footprint=true", "--x=1"]
    nnapi = Benchmark(tool="benchmark_model", delegate="nnapi")
    assert "--nnapi_allow_fp16=false" in benchmark_model_args("b", "m", nnapi, "fp32", 5, 1, 60)
    ort = Benchmark(tool="onnxruntime_perf_test", threads=2, delegate="xnnpack")
    assert ort_perf_test_args("/d/pt", "/d/u.onnx", ort, runs=10, profile_prefix="/d/u.prof") == [
        "/d/pt", "-e", "xnnpack", "-m", "times", "-r", "10", "-s", "-I", "-x", "2", "-p", "/d/u.prof", "/d/u.onnx"]
    trt = Benchmark(tool="trtexec", warmup=500)
    assert trtexec_args("/t", "/d/u.onnx", trt, "int8", runs=50, engine="/d/u.engine", profile_json="/d/l.json") == [
        "/t", "--onnx=/d/u.onnx", "--saveEngine=/d/u.engine", "--warmUp=500", "--iterations=50", "--duration=0",
        "--percentile=90", "--int8", "--fp16", "--dumpProfile", "--separateProfileRun", "--exportProfile=/d/l.json"]


@pytest.mark.device
def test_profile_on_a_real_phone(tmp_path):
    """Needs a phone with USB debugging, EDGEDIFF_BENCHMARK_MODEL and EDGEDIFF_DEVICE_BUNDLE (a litert bundle)."""
    bundle = os.environ.get("EDGEDIFF_DEVICE_BUNDLE")
    if not bundle or not os.environ.get("EDGEDIFF_BENCHMARK_MODEL") or ADB is None:
        pytest.skip("needs an attached Android phone, EDGEDIFF_BENCHMARK_MODEL and EDGEDIFF_DEVICE_BUNDLE")
    from edgediff.profile.devices import profile_on_target

    records = profile_on_target(Path(bundle), load_target("pixel-8"))
    assert records and all(r.mean_ms and r.mean_ms > 0 for r in records)
    assert all("model" in r.extra["device_info"] for r in records)
