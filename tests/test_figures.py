"""The docs figures are present, current and used.

docs/figures/make_figures.py makes every figure and records, in docs/figures/figures.json,
a hash of each figure's inputs (its data, rounded, and its drawing code) and a hash of each
image it wrote. These tests recompute the inputs' hash without drawing anything, so they
are fast and do not depend on the matplotlib version: a figure whose numbers or code
changed since its image was made is stale, and the test says which command rebuilds it.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = ROOT / "docs" / "figures"
REBUILD = "python docs/figures/make_figures.py"


def _module():
    sys.path.insert(0, str(FIGURES_DIR))
    spec = importlib.util.spec_from_file_location("cycnn_make_figures",
                                                  FIGURES_DIR / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIG = _module()
MANIFEST = FIG.load_manifest()


@pytest.mark.parametrize("name", sorted(FIG.FIGURES))
def test_figure_is_present_and_current(name):
    assert name in MANIFEST, f"{name} was never made: run {REBUILD} {name}"
    entry = MANIFEST[name]
    for image in FIG.FIGURES[name][2]:
        path = FIGURES_DIR / image
        assert path.is_file(), f"{image} is missing: run {REBUILD} {name}"
        assert FIG.image_hash(path) == entry["images"].get(image), (
            f"{image} is not the image {REBUILD} wrote (edited by hand, or the manifest is "
            f"out of date): run {REBUILD} {name}")
    assert FIG.inputs_hash(name) == entry["inputs"], (
        f"{name} is stale: its data or drawing code changed since it was made; "
        f"run {REBUILD} {name} and commit the result")


def test_the_inputs_hash_sees_a_changed_number():
    """The staleness check can fail: one number of a figure's data changed by 0.1 %
    changes the hash."""
    values = FIG.FIGURES["gradcheck_error"][0]()
    before = FIG.inputs_hash("gradcheck_error", values)
    values["central"][3] *= 1.001
    assert FIG.inputs_hash("gradcheck_error", values) != before


def test_the_inputs_hash_ignores_rounding_noise():
    """... but not the last bits of a sum, which differ between CPUs and BLAS builds."""
    values = FIG.FIGURES["weight_gradient"][0]()
    before = FIG.inputs_hash("weight_gradient", values)
    values["dw"] = values["dw"] * (1 + 1e-13)
    assert FIG.inputs_hash("weight_gradient", values) == before


def test_the_inputs_hash_sees_changed_drawing_code(monkeypatch):
    """A figure's drawing code is part of its inputs: another draw function, another hash."""
    data, _draw, images = FIG.FIGURES["im2col"]
    before = FIG.inputs_hash("im2col")
    monkeypatch.setitem(FIG.FIGURES, "im2col", (data, FIG.conv_matrix_draw, images))
    assert FIG.inputs_hash("im2col") != before


def test_every_image_is_registered_and_used():
    """No orphan image, no page pointing at an image that is not made by the script."""
    made = {image for _, _, images in FIG.FIGURES.values() for image in images}
    on_disk = {p.name for p in FIGURES_DIR.iterdir() if p.suffix in {".png", ".gif", ".svg"}}
    assert on_disk == made, (f"images not made by make_figures.py: {sorted(on_disk - made)}; "
                             f"made but missing: {sorted(made - on_disk)}")
    used = set()
    for page in (ROOT / "docs").glob("*.md"):
        used |= set(re.findall(r"\(figures/([\w.-]+)\)", page.read_text()))
    assert used <= made, f"pages show images no script makes: {sorted(used - made)}"
    assert made <= used, f"images no page shows: {sorted(made - used)}"


def test_at_least_one_animation():
    from PIL import Image

    gifs = [p for p in FIGURES_DIR.glob("*.gif")]
    assert gifs, "no animated figure"
    with Image.open(gifs[0]) as im:
        assert getattr(im, "n_frames", 1) > 1, f"{gifs[0].name} is not animated"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.slow
def test_the_one_command_makes_a_figure(tmp_path):
    """The script runs: it draws a figure into another directory and records it there."""
    pytest.importorskip("matplotlib", reason="matplotlib (a docs extra) draws the figures")
    proc = subprocess.run([sys.executable, str(FIGURES_DIR / "make_figures.py"),
                           "gradcheck_error.png", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "gradcheck_error.png"
    assert out.is_file() and out.stat().st_size > 10_000
    manifest = (tmp_path / "figures.json").read_text()
    assert FIG.inputs_hash("gradcheck_error") in manifest


def test_canonical_data_is_stable():
    a = FIG._canonical({"x": np.array([0.1 + 0.2, -0.0, 1.23456789e-9]), "n": np.int64(3)})
    assert a == {"n": 3, "x": {"shape": [3], "values": [0.3, 0.0, 1.23457e-9]}}
