"""Where commands write: checked up front, written so that nothing half-done ever looks complete.

- `check_output` refuses, before any work, an output that is a file where a folder is wanted (or the reverse),
  sits under a kernel pseudo-filesystem (/proc, /sys), or lies on a read-only or (nearly) full filesystem.
- `staged_output` builds a folder in a hidden `.NAME.partial-PID-TIME` beside it and renames it into place only
  when complete; a run that was killed (SIGKILL, power loss) leaves that folder behind, and the next run into the
  same place removes it once its PID is gone, saying so on stderr.
- `atomic_file` does the same for one file (an image, a JSON record).

Torch-free: `generate`, `bundle-golden` and the Jetson runner use it too.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from edgediff.errors import EdgediffError, RecipeError

PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"))
MIN_FREE_BYTES = 1 << 20  # below this nothing we write fits (a 512x512 PNG is ~0.5 MB)
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:partial-(?P<pid>\d+)-(?P<time>\d+)(?:\.\w+)?|old-(?P<old_pid>\d+))$")

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def check_output(path: Path, kind: str = "folder", need_bytes: int = MIN_FREE_BYTES, flag: str = "--output") -> Path:
    """Refuse an output location that cannot work, naming the flag and the reason; `kind` is "folder" or "file"."""
    path = Path(path).expanduser()
    absolute = Path(os.path.abspath(path))
    for pseudo in PSEUDO_FILESYSTEMS:
        if absolute == pseudo or pseudo in absolute.parents:
            raise RecipeError(f"{flag} {path} is under {pseudo}, a kernel pseudo-filesystem; write to a folder on disk")
    if path.exists() or path.is_symlink():
        if kind == "folder" and not path.is_dir():
            raise RecipeError(f"{flag} {path} is a file, not a folder; give a folder (or remove the file)")
        if kind == "file" and path.is_dir():
            raise RecipeError(f"{flag} {path} is a folder; give a file name")
    existing = path if kind == "folder" and path.is_dir() else absolute.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RecipeError(f"{flag} {path}: {existing} is a file, so no folder can be created inside it")
    try:
        stats = os.statvfs(existing)
    except OSError as exc:
        raise RecipeError(f"{flag} {path}: cannot inspect {existing} ({exc.strerror})") from None
    if stats.f_flag & os.ST_RDONLY:
        raise RecipeError(f"{flag} {path} is on a read-only filesystem ({existing}); write somewhere else")
    if not os.access(existing, os.W_OK | os.X_OK) or (os.geteuid() == 0 and not _mode_writable(existing)):
        raise RecipeError(f"{flag} {path}: {existing} is read-only (no write permission); write somewhere else")
    free = stats.f_bavail * stats.f_frsize
    if free < need_bytes:
        raise RecipeError(f"{flag} {path}: only {free / 1e6:.1f} MB free on the filesystem of {existing}, and this "
                          f"needs about {max(need_bytes, MIN_FREE_BYTES) / 1e6:.0f} MB; free some space or write "
                          "elsewhere")
    return path


def _mode_writable(folder: Path) -> bool:
    """root passes every permission check, but a folder nobody may write to (mode 0555) was made read-only on
    purpose: honour it."""
    return bool(folder.stat().st_mode & 0o222)


# ---- leftovers of killed runs ------------------------------------------------------------------------------------


def pid_alive(pid: int, since: float | None = None) -> bool:
    """Whether process `pid` still runs (and, given `since`, is the same process: started no later than that)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state == "Z":  # exited, not yet reaped by its parent
        return False
    return since is None or started is None or started <= since + 1


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """(state, start time in Unix seconds) from /proc, or None where there is no /proc (macOS)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def clean_leftovers(final_dir: Path, log: Log = _stderr) -> list[Path]:
    """Remove `.NAME.partial-PID-TIME` / `.NAME.old-PID` folders beside `final_dir` whose run is gone."""
    final_dir = Path(final_dir)
    if not final_dir.parent.is_dir():
        return []
    removed = []
    for entry in sorted(final_dir.parent.iterdir()):
        match = _LEFTOVER.match(entry.name)
        if not match or match["name"] != final_dir.name or entry.is_symlink():
            continue
        pid = int(match["pid"] or match["old_pid"])
        if pid_alive(pid, float(match["time"]) if match["time"] else None):
            continue  # a run still writing there
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        removed.append(entry)
        log(f"note: removed {entry}, left by an interrupted run (pid {pid} is no longer running)")
    return removed


# ---- staged writing ------------------------------------------------------------------------------------------------


@contextmanager
def staged_output(final_dir: Path, log: Log = _stderr) -> Iterator[Path]:
    """Yield a staging folder beside `final_dir`; on success it replaces `final_dir`, on failure it is removed.

    A run that fails verification keeps its files for inspection, but under `<name>.failed`, never `<name>`.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(final_dir, log)
    staging = final_dir.parent / f".{final_dir.name}.partial-{os.getpid()}-{int(time.time())}"
    staging.mkdir()
    try:
        yield staging
    except EdgediffError as exc:
        if getattr(exc, "keep_output", False):
            failed = final_dir.parent / f"{final_dir.name}.failed"
            shutil.rmtree(failed, ignore_errors=True)
            staging.rename(failed)
            exc.args = (f"{exc.args[0]} (artifacts and report kept in {failed})",)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if final_dir.exists():
        old = final_dir.parent / f".{final_dir.name}.old-{os.getpid()}"
        final_dir.rename(old)
    staging.rename(final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside `path`; it becomes `path` only if the block completes. A device or
    pipe (/dev/stdout, a fifo) is written directly: it cannot be replaced, and must not be."""
    path = Path(path)
    direct = path.exists() and not path.is_file()
    tmp = path if direct else path.with_name(f".{path.name}.partial-{os.getpid()}-{int(time.time())}{path.suffix}")
    if not direct:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(path)
    try:
        yield tmp
        if not direct:
            tmp.replace(path)
    except OSError as exc:  # name the file the user gave, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        if not direct:
            tmp.unlink(missing_ok=True)
