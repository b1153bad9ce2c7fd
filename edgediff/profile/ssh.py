"""Linux boards (Jetson and others) over OpenSSH.

The remote work folder's life is bound to one "guardian" connection: a remote shell that creates the folder with
mktemp, prints its path, then waits for its stdin to close and removes the folder. When the session ends normally
edgediff closes that stdin; when the connection drops, sshd closes it. Either way the folder goes. Commands run
under a small wrapper that also watches its stdin, so a benchmark whose connection is lost (or which edgediff
stops after a timeout) is terminated on the board instead of running on unseen.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from edgediff.errors import DeviceError
from edgediff.profile.remote import RemoteResult, remote_join

# `cd` to $1 (if given), then run the rest ("$@", e.g. `env K=V prog args`, which execs prog, so $pid is the
# benchmark itself) with stdin detached; a watcher holds the connection's stdin and stops the command when it
# closes (connection dropped, or edgediff gave up on it).
_WRAPPER = (
    'd=$1; shift; if [ -n "$d" ]; then cd -- "$d" || exit 96; fi; '
    'exec 3<&0; "$@" </dev/null 3<&- & pid=$!; '
    '( cat <&3 >/dev/null 2>&1; kill -TERM "$pid" 2>/dev/null; sleep 2; kill -KILL "$pid" 2>/dev/null ) '
    '>/dev/null 2>&1 & '
    'exec 3<&- 0</dev/null; wait "$pid"'
)
# Creates the work folder, prints it, and removes it when stdin closes (normal end or dropped connection).
_GUARDIAN = (
    'p=${1:-${TMPDIR:-/tmp}}; d=$(mktemp -d "$p/edgediff.XXXXXX") || exit 97; '
    'printf "%s\\n" "$d"; cat >/dev/null; rm -rf -- "$d"'
)
_CONNECTION_LOST = 255  # ssh's own exit status for connection errors


class SshSession:
    """One ssh connection setting plus a remote work folder; use as a context manager."""

    def __init__(self, host: str, *, user: str = "", port: int = 22, identity_file: str = "",
                 options: tuple[str, ...] = (), connect_timeout_s: float = 10.0, remote_dir: str = "",
                 ssh_binary: str = "ssh"):
        self.host, self.user, self.port = host, user, port
        self.identity_file = os.path.expanduser(identity_file) if identity_file else ""
        self.options = tuple(options)
        self.connect_timeout_s = connect_timeout_s
        self.remote_dir = remote_dir
        self.ssh_binary = ssh_binary
        self.workdir = ""
        self.description = f"{user + '@' if user else ''}{host}:{port}"
        self._guardian: subprocess.Popen | None = None
        self._guardian_err: Path | None = None

    # ---------------------------------------------------------------------------------------------- commands
    def ssh_command(self, remote_line: str) -> list[str]:
        """The local argument list that runs one (already quoted) remote shell line."""
        if shutil.which(self.ssh_binary) is None:
            raise DeviceError(f"no `{self.ssh_binary}` client on this machine; install OpenSSH (openssh-client)")
        cmd = [self.ssh_binary, "-T", "-p", str(self.port),
               "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(round(self.connect_timeout_s)))}",
               "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if self.identity_file:
            cmd += ["-i", self.identity_file, "-o", "IdentitiesOnly=yes"]
        for opt in self.options:
            cmd += ["-o", opt]
        dest = f"{self.user}@{self.host}" if self.user else self.host
        if dest.startswith("-"):
            raise DeviceError(f"refusing ssh destination {dest!r} (looks like an option)")
        return [*cmd, "--", dest, remote_line]

    def _fail(self, what: str, stderr: str, returncode: int) -> DeviceError:
        tail = " | ".join(stderr.strip().splitlines()[-3:]) or "no message"
        if returncode == _CONNECTION_LOST:
            return DeviceError(f"ssh {self.description}: {what}: connection failed or dropped ({tail}); check that "
                               f"the board is on, reachable and accepts your key (ssh -p {self.port} "
                               f"{self.user + '@' if self.user else ''}{self.host} true)")
        return DeviceError(f"ssh {self.description}: {what} failed with exit status {returncode}: {tail}")

    def _communicate(self, cmd: list[str], timeout: float, what: str, stdin_file=None) -> tuple[int, bytes, str]:
        """Run a local ssh process; its stdin stays open (or is the given file) until it ends, so the remote
        watchdog only fires when the connection really goes away."""
        read_end, write_end = (None, None) if stdin_file is not None else os.pipe()
        try:
            proc = subprocess.Popen(cmd, stdin=stdin_file if stdin_file is not None else read_end,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        finally:
            if read_end is not None:
                os.close(read_end)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise DeviceError(f"ssh {self.description}: {what} did not finish within {timeout:g} s; stopped it "
                              f"(the board-side process is terminated when its connection closes)") from None
        finally:
            if write_end is not None:
                os.close(write_end)
        return proc.returncode, out, err.decode(errors="replace")

    # ---------------------------------------------------------------------------------------------- session
    def __enter__(self) -> "SshSession":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> str:
        """Start the guardian connection and return the remote work folder it created."""
        line = shlex.join(["sh", "-c", _GUARDIAN, "edgediff-guard", self.remote_dir])
        fd, err_path = tempfile.mkstemp(prefix="edgediff-ssh-", suffix=".err")
        self._guardian_err = Path(err_path)
        try:
            self._guardian = subprocess.Popen(self.ssh_command(line), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=fd)
        finally:
            os.close(fd)
        deadline = time.monotonic() + self.connect_timeout_s + 20
        buf = b""
        answer = self._guardian.stdout
        assert answer is not None  # stdout=PIPE
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([answer], [], [], max(0.0, left))
            if not ready:
                self._abort_guardian()
                raise DeviceError(f"ssh {self.description}: no answer within {self.connect_timeout_s + 20:g} s while "
                                  "creating the remote work folder")
            chunk = os.read(answer.fileno(), 4096)
            if not chunk:
                rc = self._guardian.wait(timeout=10)
                err = self._guardian_err.read_text(errors="replace")
                self._abort_guardian()
                raise self._fail("creating the remote work folder", err, rc)
            buf += chunk
        self.workdir = buf.split(b"\n", 1)[0].decode()
        if not self.workdir.startswith("/"):
            self._abort_guardian()
            raise DeviceError(f"ssh {self.description}: unexpected work folder {self.workdir!r}")
        return self.workdir

    def _abort_guardian(self) -> None:
        if self._guardian is not None:
            if self._guardian.poll() is None:
                self._guardian.kill()
            self._guardian.wait()
            for stream in (self._guardian.stdin, self._guardian.stdout):
                if stream:
                    stream.close()
            self._guardian = None
        if self._guardian_err is not None:
            self._guardian_err.unlink(missing_ok=True)
            self._guardian_err = None

    def close(self) -> None:
        """Remove the remote work folder (directly, and via the guardian) and end the guardian connection."""
        if self._guardian is None:
            return
        try:
            if self.workdir and self._guardian.poll() is None:
                try:
                    self.run(["rm", "-rf", "--", self.workdir], timeout=30, check=False)
                except DeviceError:
                    pass  # the guardian removes it when its stdin closes below
            if self._guardian.stdin:
                self._guardian.stdin.close()
            try:
                self._guardian.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        finally:
            self._abort_guardian()
            self.workdir = ""

    def _alive(self) -> None:
        if self._guardian is None or not self.workdir:
            raise DeviceError("the ssh session is not open")
        if self._guardian.poll() is not None:
            raise self._fail("session", self._guardian_err.read_text(errors="replace") if self._guardian_err else "",
                             self._guardian.returncode)

    # ---------------------------------------------------------------------------------------------- operations
    def run(self, args: list[str], *, timeout: float, cwd: str | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> RemoteResult:
        """Run an argument list on the board under the watchdog wrapper."""
        self._alive()
        words = ["env", *(f"{k}={v}" for k, v in env.items()), *args] if env else list(args)
        line = shlex.join(["sh", "-c", _WRAPPER, "edgediff-run", cwd or "", *words])
        rc, out, err = self._communicate(self.ssh_command(line), timeout, f"`{shlex.join(args)[:80]}`")
        result = RemoteResult(rc, out.decode(errors="replace"), err)
        if rc == _CONNECTION_LOST or (check and rc != 0):
            raise self._fail(f"`{shlex.join(args)[:80]}`", result.stderr or result.stdout, rc)
        return result

    def push(self, local: Path, name: str, timeout: float | None = None) -> str:
        """Stream a file into the work folder (`cat > path` on the board), then check its size."""
        self._alive()
        remote = remote_join(self.workdir, name)
        size = Path(local).stat().st_size
        timeout = timeout or max(60.0, size / 5e6)  # at least 5 MB/s
        line = shlex.join(["sh", "-c", 'cat > "$1"', "edgediff-push", remote])
        with open(local, "rb") as fh:
            rc, _, err = self._communicate(self.ssh_command(line), timeout, f"pushing {Path(local).name}", stdin_file=fh)
        if rc != 0:
            raise self._fail(f"pushing {Path(local).name}", err, rc)
        got = self.run(["wc", "-c", remote], timeout=60).stdout.split()
        if not got or got[0] != str(size):
            raise DeviceError(f"ssh {self.description}: {name} arrived with {got[0] if got else '?'} bytes, "
                              f"expected {size}; the transfer was cut")
        return remote

    def fetch(self, remote: str, local: Path, timeout: float | None = None) -> Path:
        """Copy a board file to `local` (written whole or not at all)."""
        self._alive()
        local = Path(local)
        tmp = local.with_name(local.name + ".part")
        line = shlex.join(["cat", "--", remote])
        try:
            rc, out, err = self._communicate(self.ssh_command(line), timeout or 300.0, f"fetching {remote}")
            if rc != 0:
                raise self._fail(f"fetching {remote}", err, rc)
            tmp.write_bytes(out)
            tmp.replace(local)
        finally:
            tmp.unlink(missing_ok=True)
        return local

    def exists(self, remote: str) -> bool:
        return self.run(["test", "-e", remote], timeout=60, check=False).returncode == 0
