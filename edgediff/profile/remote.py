"""What the device profilers need from a connection (adb or ssh): a temporary work folder on the device, pushing
files into it, running a command there, fetching files back. Commands are argument lists; both adb and ssh join
remote arguments into one string for the device's shell, so every argument is quoted with shlex.quote."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass
class RemoteResult:
    returncode: int
    stdout: str
    stderr: str


class RemoteSession(Protocol):
    """A connection with a temporary work folder that lives as long as the session."""

    workdir: str
    description: str

    def push(self, local: Path, name: str, timeout: float | None = None) -> str:
        """Copy a local file into the work folder under `name`; returns its remote path."""

    def run(self, args: list[str], *, timeout: float, cwd: str | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> RemoteResult:
        """Run an argument list on the device."""

    def fetch(self, remote: str, local: Path, timeout: float | None = None) -> Path:
        """Copy a remote file to a local path."""

    def exists(self, remote: str) -> bool:
        """Whether a remote path exists."""


def remote_join(remote_dir: str, name: str) -> str:
    """A path inside a remote (POSIX) folder."""
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"not a plain file name: {name!r}")
    return f"{remote_dir.rstrip('/')}/{name}"


def shell_line(args: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> str:
    """One POSIX shell command line for the device: `cd DIR && env K=V prog args...`, every piece quoted."""
    if not args:
        raise ValueError("empty command")
    words = list(args)
    if env:
        words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
    line = shlex.join(words)
    if cwd:
        line = f"cd {shlex.quote(cwd)} && {line}"
    return line
