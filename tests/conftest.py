import os
import sys
from pathlib import Path

# tests import helpers as `tests.tiny`; make the repo root importable however pytest is invoked.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two test processes on two cores: one torch/OpenMP thread each, or they oversubscribe the CPU and every
    # torch op slows down many times over (subprocesses the tests start inherit this too)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
