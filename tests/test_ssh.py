"""The ssh path against a real OpenSSH server that the test starts on loopback (key auth, the current user).

Covers: push / run / fetch / cleanup, a file name full of shell metacharacters round-tripped through the remote
shell, a refused and a silent server, a command timeout, and a server killed mid-run (clear DeviceError, nothing
left behind on either side). Everything is bounded in time."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgediff.errors import DeviceError
from edgediff.profile.ssh import SshSession

SSHD = Path("/usr/sbin/sshd")
NASTY = "we ird $(touch PWNED) `touch PWNED2`; rm -rf ~ 'q' \"dq\" & | * ? [a] \\ #h\tTAB\nNL.bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """All processes below `pid`, found through /proc (sshd forks one process per connection)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class Sshd:
    port: int
    key: Path
    user: str
    proc: subprocess.Popen
    log: Path

    def session(self, **kw) -> SshSession:
        # a classic key exchange keeps each loopback connection fast on a busy 2-core machine
        opts = ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "KexAlgorithms=curve25519-sha256")
        return SshSession("127.0.0.1", user=self.user, port=self.port, identity_file=str(self.key), options=opts,
                          connect_timeout_s=kw.pop("connect_timeout_s", 5), **kw)

    def kill_connections(self, include_master: bool = False) -> None:
        """Drop every live connection by killing the per-connection sshd processes (not the user's shells)."""
        victims = [p for p in _descendants(self.proc.pid) if _comm(p).startswith("sshd")]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if include_master and self.proc.poll() is None:
            self.proc.kill()


@pytest.fixture
def sshd(tmp_path_factory):
    if not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server/client not installed: run .ci/system-deps.sh (apt-get install openssh-server)")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        pytest.skip("sshd as root needs /run/sshd: run .ci/system-deps.sh")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgediff-test", "-f", str(d / name)],
                       check=True, timeout=30)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    user = getpass.getuser()
    port = _free_port()
    config = d / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host'}
AuthorizedKeysFile {d / 'authorized_keys'}
PidFile {d / 'sshd.pid'}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers {user}
MaxStartups 50:30:100
MaxSessions 50
LogLevel ERROR
""")
    check = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        pytest.skip(f"sshd rejects the test configuration here: {check.stderr.strip()}")
    log = d / "sshd.log"
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(log, "wb"), start_new_session=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {log.read_text()}")
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("sshd did not start listening within 15 s")
    server = Sshd(port, d / "client", user, proc, log)
    try:
        yield server
    finally:
        server.kill_connections(include_master=True)
        proc.wait(timeout=10)


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_push_run_fetch_cleanup_with_nasty_name(sshd, tmp_path):
    local = tmp_path / NASTY
    payload = os.urandom(300_000) + b"\n'\"$x`\n"
    local.write_bytes(payload)
    home = Path.home()
    with sshd.session() as s:
        workdir = s.workdir
        assert Path(workdir).is_dir() and Path(workdir).name.startswith("edgediff.")
        remote = s.push(local, NASTY)
        assert Path(remote).read_bytes() == payload  # loopback: the "board" is this machine
        assert s.exists(remote) and not s.exists(remote + "-nope")
        # a "benchmark command" on the board that reads the pushed file and writes a result next to it
        script = ("import hashlib, json, sys; data = open(sys.argv[1], 'rb').read(); "
                  "json.dump({'bytes': len(data), 'sha': hashlib.sha256(data).hexdigest()}, open(sys.argv[2], 'w'))")
        out_name = NASTY + ".json"
        r = s.run([sys.executable, "-c", script, remote, out_name], cwd=workdir, env={"EDGEDIFF_X": "a b;$c"},
                  timeout=60)
        assert r.returncode == 0
        echo = s.run(["printf", "%s|", NASTY, "$HOME", "*"], timeout=30)
        assert echo.stdout == f"{NASTY}|$HOME|*|"  # no expansion, no word splitting
        env = s.run(["sh", "-c", 'printf %s "$EDGEDIFF_X"'], env={"EDGEDIFF_X": "a b;$c"}, timeout=30)
        assert env.stdout == "a b;$c"
        fetched = s.fetch(f"{workdir}/{out_name}", tmp_path / "result.json")
        import hashlib
        import json
        assert json.loads(fetched.read_text()) == {"bytes": len(payload), "sha": hashlib.sha256(payload).hexdigest()}
        binary = s.fetch(remote, tmp_path / "back.bin")
        assert binary.read_bytes() == payload
    assert not Path(workdir).exists()
    assert s.workdir == ""
    for marker in ("PWNED", "PWNED2"):
        assert not (home / marker).exists() and not Path(marker).exists() and not (Path("/") / marker).exists()
    assert not list(tmp_path.glob("*.part"))


def test_remote_command_failure_is_a_device_error(sshd):
    with sshd.session() as s:
        with pytest.raises(DeviceError, match="exit status 3"):
            s.run(["sh", "-c", "echo oops >&2; exit 3"], timeout=30)
        assert s.run(["sh", "-c", "exit 3"], timeout=30, check=False).returncode == 3


def test_refused_port_gives_clear_error_and_leaves_nothing(sshd, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # edgediff's local temporary files land here
    closed = SshSession("127.0.0.1", user=sshd.user, port=_free_port(), identity_file=str(sshd.key),
                        options=("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"), connect_timeout_s=1)
    start = time.monotonic()
    with pytest.raises(DeviceError, match="connection failed or dropped.*refused"):
        closed.open()
    assert time.monotonic() - start < 15
    assert list(tmp_path.iterdir()) == []


def test_silent_server_times_out(sshd):
    """A port that accepts TCP but never speaks SSH: ConnectTimeout bounds the handshake."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        s = SshSession("127.0.0.1", user=sshd.user, port=port, identity_file=str(sshd.key),
                       options=("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"), connect_timeout_s=1)
        start = time.monotonic()
        with pytest.raises(DeviceError, match="connection failed or dropped"):
            s.open()
        assert time.monotonic() - start < 20


def test_command_timeout_stops_the_remote_process(sshd):
    marker = "37.125"
    with sshd.session() as s:
        workdir = s.workdir
        start = time.monotonic()
        with pytest.raises(DeviceError, match="did not finish within 2 s"):
            s.run(["sleep", marker], timeout=2)
        assert time.monotonic() - start < 20
        assert _wait_until(lambda: not processes_with(f"sleep {marker}"), 30), "remote sleep survived the timeout"
        assert s.run(["true"], timeout=30).returncode == 0  # the session is still usable
    assert not Path(workdir).exists()


def test_server_killed_mid_run_clear_error_and_cleanup(sshd, tmp_path):
    marker = "41.375"
    s = sshd.session()
    s.open()
    workdir = s.workdir
    s.push(Path(__file__), "artifact.py")
    errors: list[BaseException] = []

    def bench():
        try:
            s.run(["sleep", marker], timeout=60)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    worker = threading.Thread(target=bench)
    worker.start()
    # the board-side process (under sshd), not the local ssh client whose command line carries the same words
    assert _wait_until(lambda: bool(set(processes_with(f"sleep {marker}")) & set(_descendants(sshd.proc.pid))), 40)
    sshd.kill_connections(include_master=True)
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DeviceError)
    assert "connection failed or dropped" in str(errors[0])
    # board side: the benchmark is stopped and the work folder removed, though edgediff could not ask for it
    assert _wait_until(lambda: not processes_with(f"sleep {marker}"), 30), "remote benchmark survived"
    assert _wait_until(lambda: not Path(workdir).exists(), 30), "remote work folder survived"
    # local side: closing after the drop is quick, quiet and leaves no temporary files
    start = time.monotonic()
    s.close()
    assert time.monotonic() - start < 45
    assert s._guardian is None and s._guardian_err is None
    with pytest.raises(DeviceError, match="not open"):
        s.run(["true"], timeout=5)
