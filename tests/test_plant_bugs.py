"""scripts/plant_bugs.py still plants what it says: every mutation's text occurs exactly
once in its file, and the tests it runs exist. (Planting them, which rebuilds kernels, is
the script's job, not the suite's; this only keeps the script from going stale when the
code it mutates is rewritten, as twelve of its mutations once did.)"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import plant_bugs  # noqa: E402


@pytest.mark.parametrize("name, path, old, new, tests", plant_bugs.MUTATIONS,
                         ids=[m[0] for m in plant_bugs.MUTATIONS])
def test_mutation_still_applies(name, path, old, new, tests):
    text = (ROOT / path).read_text()
    assert text.count(old) == 1, f"{name}: {old!r} occurs {text.count(old)} times in {path}"
    assert new != old
    for test in tests:
        assert (ROOT / test.split("::")[0]).is_file(), f"{name}: no test file {test}"


def test_mutation_names_are_unique():
    names = [m[0] for m in plant_bugs.MUTATIONS]
    assert len(names) == len(set(names))
