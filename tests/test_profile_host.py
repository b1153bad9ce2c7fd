"""Host profiling reports each worker's own memory, not what it inherited from the process that started it."""

import subprocess
import sys

from edgediff.profile.host import peak_rss_mb


def test_worker_peak_rss_is_its_own_not_the_parents():
    ballast = bytearray(400 * 2**20)  # the parent peaks above 400 MB (ru_maxrss would hand this to the child)
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])  # touch every page so it is resident
    assert peak_rss_mb() > 400
    child = subprocess.run([sys.executable, "-c", "from edgediff.profile.host import peak_rss_mb; print(peak_rss_mb())"],
                           capture_output=True, text=True, timeout=120, check=True)
    assert float(child.stdout.strip()) < 200, child.stdout
    del ballast
