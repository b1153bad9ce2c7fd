import os
import sys
from pathlib import Path

import pytest

# tests import helpers as `tests.tiny`; make the repo root importable however pytest is invoked.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two test processes on two cores: one torch/OpenMP thread each, or they oversubscribe the CPU and every
    # torch op slows down many times over (subprocesses the tests start inherit this too)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: OpenMP spinning across 2 threads costs 10-40x; use one.
    Test modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def every_manifest_follows_the_schema():
    """Every manifest.json the suite writes is read back with a strict JSON parser (NaN / Infinity are errors, as in
    Kotlin's org.json, Swift's JSONDecoder and JavaScript) and validated against the published schema."""
    import json

    import jsonschema

    from edgediff import contract

    validator = jsonschema.Draft202012Validator(json.loads(contract.SCHEMA_FILE.read_text()))
    original = contract.Manifest.write

    def write_and_check(self, bundle_dir):
        path = original(self, bundle_dir)
        document = contract.read_strict_json(path)
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, f"{path} breaks the bundle schema: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
        return path

    contract.Manifest.write = write_and_check
    yield
    contract.Manifest.write = original


def pytest_terminal_summary(terminalreporter):
    """Echo what tests recorded as `junit_figures` / `junit_summary` properties (the Kotlin core's measured
    figures and its plain `N passed, N failed` JUnit line) to the terminal: under pytest-xdist a worker's own
    output never reaches it, but its reports' properties do."""
    seen = set()
    lines = {"junit_figures": [], "junit_summary": []}
    for reports in terminalreporter.stats.values():
        for rep in reports:
            for name, value in getattr(rep, "user_properties", ()):
                if name in lines and (rep.nodeid, name) not in seen:
                    seen.add((rep.nodeid, name))
                    lines[name].append(str(value))
    for line in lines["junit_figures"] + lines["junit_summary"]:
        terminalreporter.write_line(line)
