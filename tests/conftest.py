import os
import sys
from pathlib import Path

# tests import helpers as `tests.tiny`; make the repo root importable however pytest is invoked.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")
