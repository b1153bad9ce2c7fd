"""Android phones over adb: a temporary work folder under /data/local/tmp, push, run, pull, device facts.

`adb push`/`adb pull` move files over the sync protocol (paths are not seen by a shell), but `adb shell` joins
its arguments into one string for the device's shell, so every remote argument is quoted with shlex.quote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from edgediff.errors import DeviceError, ParseError
from edgediff.profile.parsers.android_dumpsys import ThermalState, parse_getprop, parse_thermalservice
from edgediff.profile.remote import RemoteResult, remote_join, shell_line

DEVICE_PROPS = {
    "manufacturer": "ro.product.manufacturer", "model": "ro.product.model", "device": "ro.product.device",
    "soc_manufacturer": "ro.soc.manufacturer", "soc_model": "ro.soc.model", "board_platform": "ro.board.platform",
    "hardware": "ro.hardware", "android": "ro.build.version.release", "sdk": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi", "build": "ro.build.fingerprint",
}


def adb_binary() -> str:
    """$ADB, else `adb` on PATH."""
    found = os.environ.get("ADB") or shutil.which("adb")
    if not found:
        raise DeviceError("no adb client on this machine: install Android platform-tools (Debian/Ubuntu: "
                          "apt-get install adb) or set ADB=/path/to/adb")
    return found


class AdbSession:
    """One device (by serial, or the only one attached) plus a work folder; use as a context manager."""

    def __init__(self, serial: str = "", *, remote_dir: str = "/data/local/tmp", adb: str | None = None,
                 command_timeout_s: float = 120.0):
        self.serial = serial
        self.remote_dir = remote_dir or "/data/local/tmp"
        self._adb = adb
        self.command_timeout_s = command_timeout_s
        self.workdir = ""
        self.description = f"adb {serial or '(only device)'}"

    # ---------------------------------------------------------------------------------------------- commands
    def adb_command(self, *args: str) -> list[str]:
        adb = self._adb or adb_binary()
        return [adb, *(["-s", self.serial] if self.serial else []), *args]

    def shell_command(self, args: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> list[str]:
        """`adb [-s S] shell <one quoted line>`: the device shell sees exactly `args`."""
        return self.adb_command("shell", shell_line(args, cwd=cwd, env=env))

    def _call(self, cmd: list[str], timeout: float, what: str) -> RemoteResult:
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise DeviceError(f"cannot run {cmd[0]!r}: install Android platform-tools or set ADB") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.description}: {what} did not finish within {timeout:g} s") from None
        result = RemoteResult(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
        problem = _adb_problem(result.stderr + result.stdout)
        if problem and done.returncode != 0:
            raise DeviceError(f"{self.description}: {what}: {problem}")
        return result

    # ---------------------------------------------------------------------------------------------- session
    def __enter__(self) -> "AdbSession":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_device(self) -> None:
        result = self._call(self.adb_command("get-state"), self.command_timeout_s, "checking the device")
        state = result.stdout.strip()
        if result.returncode != 0 or state != "device":
            raise DeviceError(f"{self.description}: device state is {state or 'unknown'!r}: "
                              f"{_adb_problem(result.stderr) or result.stderr.strip() or 'not ready'}")

    def open(self) -> str:
        self.check_device()
        result = self.run(["mktemp", "-d", f"{self.remote_dir.rstrip('/')}/edgediff.XXXXXX"],
                          timeout=self.command_timeout_s)
        workdir = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        if not workdir.startswith("/"):
            raise DeviceError(f"{self.description}: could not create a work folder under {self.remote_dir}")
        self.workdir = workdir
        return workdir

    def close(self) -> None:
        if not self.workdir:
            return
        try:
            self.run(["rm", "-rf", "--", self.workdir], timeout=self.command_timeout_s, check=False)
        except DeviceError as exc:
            raise DeviceError(f"{exc}; the work folder {self.workdir} may be left on the device "
                              f"(remove it with: adb shell rm -rf {self.workdir})") from None
        finally:
            self.workdir = ""

    # ---------------------------------------------------------------------------------------------- operations
    def run(self, args: list[str], *, timeout: float, cwd: str | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> RemoteResult:
        result = self._call(self.shell_command(args, cwd, env), timeout, f"`{' '.join(args)[:80]}`")
        if check and result.returncode != 0:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:]) or "no message"
            raise DeviceError(f"{self.description}: `{' '.join(args)[:80]}` failed ({result.returncode}): {tail}")
        return result

    def push(self, local: Path, name: str, timeout: float | None = None) -> str:
        remote = remote_join(self.workdir, name)
        size = Path(local).stat().st_size
        self._call(self.adb_command("push", str(local), remote), timeout or max(120.0, size / 5e6),
                   f"pushing {Path(local).name}")
        got = self.run(["wc", "-c", remote], timeout=self.command_timeout_s).stdout.split()
        if not got or got[0] != str(size):
            raise DeviceError(f"{self.description}: {name} arrived with {got[0] if got else '?'} bytes, "
                              f"expected {size}")
        return remote

    def fetch(self, remote: str, local: Path, timeout: float | None = None) -> Path:
        result = self._call(self.adb_command("pull", remote, str(local)), timeout or 300.0, f"pulling {remote}")
        if result.returncode != 0 or not Path(local).exists():
            raise DeviceError(f"{self.description}: pulling {remote} failed: {result.stderr.strip()}")
        return Path(local)

    def exists(self, remote: str) -> bool:
        return self.run(["test", "-e", remote], timeout=self.command_timeout_s, check=False).returncode == 0

    # ---------------------------------------------------------------------------------------------- facts
    def device_info(self) -> dict[str, str]:
        props = parse_getprop(self.run(["getprop"], timeout=self.command_timeout_s).stdout)
        return {key: props[prop] for key, prop in DEVICE_PROPS.items() if props.get(prop)}

    def thermal(self) -> ThermalState | None:
        """Current HAL temperatures (None when the device has no thermal HAL to ask)."""
        result = self.run(["dumpsys", "thermalservice"], timeout=self.command_timeout_s, check=False)
        try:
            return parse_thermalservice(result.stdout)
        except ParseError:
            return None


def _adb_problem(text: str) -> str | None:
    """A teaching message for adb's well-known failures."""
    low = text.lower()
    if "no devices/emulators found" in low:
        return ("no device attached: connect the phone by USB with USB debugging on (Settings > Developer "
                "options) and check `adb devices`")
    if "not found" in low and "device '" in low:
        return "that serial is not attached; `adb devices` lists the serials (set reach.serial in the target)"
    if "unauthorized" in low:
        return "the device has not authorised this computer: accept the USB debugging prompt on the phone"
    if "offline" in low:
        return "the device is offline: reconnect the cable or run `adb reconnect`"
    if "more than one device" in low:
        return "several devices are attached: set reach.serial in the target to the one to use"
    if "cannot connect to daemon" in low or "failed to start daemon" in low:
        return "the adb server could not start (is another adb version running? try `adb kill-server`)"
    return None
