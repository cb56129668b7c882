"""The stride-and-padding explorer (docs/javascripts/explorer.js) in headless Chromium.

A harness page holds the explorer element exactly as docs/stride-padding.md writes it,
plus one with the dilation control shown, and the site's explorer.js. Its script drives
the explorer the way a reader does: it types each setting of the sweep into the inputs
(dispatching ``input`` events), points at every output cell and every input cell in turn
(``mouseenter``), and writes down the output size and the cells marked, with their
labels, into the page; Chromium's ``--dump-dom`` hands that back. Everything is then
checked against cycnn itself:

* the output size against :func:`cycnn.conv_output_size`;
* the cells an output (i, j) reads, and the weight on each, against
  :func:`cycnn.conv2d_backward` with a one-hot ``dy`` at (i, j) and filters numbered
  1 .. KH*KW (the gradient of an input is the weight it met in that window);
* the dy cells an input receives gradient from, and the weight on each path, against
  the same one-hot gradients read at that input;
* dilation through :func:`cycnn.dilate` of the numbered filter (a dilated convolution is
  a convolution with the dilated kernel).

Skips, with the reason, when Chromium is not installed.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import cycnn
from conftest import needs_browser

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "docs" / "javascripts" / "explorer.js"
PAGE = ROOT / "docs" / "stride-padding.md"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

needs_chromium = needs_browser(CHROMIUM, "the explorer is not run")

#: (H, W, KH, KW, sh, sw, ph, pw, dh, dw): square and not, strides that divide and do not,
#: padding on one axis, 1x1 and whole-input kernels, a kernel that does not fit, dilation
SWEEP = [
    (5, 5, 3, 3, 2, 2, 1, 1, 1, 1),   # the page's worked example
    (3, 3, 2, 2, 1, 1, 0, 0, 1, 1),   # the first page's example
    (6, 6, 3, 3, 2, 2, 0, 0, 1, 1),   # the pitfall: the last row and column are not read
    (4, 7, 2, 3, 1, 2, 0, 1, 1, 1),
    (7, 5, 3, 2, 3, 1, 2, 0, 1, 1),
    (5, 6, 1, 1, 2, 3, 0, 0, 1, 1),
    (4, 4, 4, 4, 1, 1, 0, 0, 1, 1),
    (4, 4, 3, 3, 1, 1, 3, 3, 1, 1),
    (9, 8, 4, 3, 2, 2, 1, 2, 1, 1),
    (2, 3, 4, 2, 1, 1, 0, 0, 1, 1),   # KH > H + 2 ph: no output
    (7, 7, 3, 3, 1, 1, 0, 0, 2, 2),   # dilation
    (8, 9, 2, 3, 2, 1, 1, 2, 3, 2),
    (5, 5, 3, 3, 1, 1, 0, 0, 3, 3),   # a dilated kernel larger than the input: no output
]
FIELDS = ("H", "W", "KH", "KW", "sh", "sw", "ph", "pw", "dh", "dw")

HARNESS = """<!doctype html>
<html><head><meta charset="utf-8"><title>explorer harness</title></head>
<body style="width: 900px">
<div id="as-on-the-page">{page_div}</div>
<div class="conv-explorer" data-dilation id="with-dilation"></div>
<pre id="results">not run</pre>
<script src="explorer.js"></script>
<script>
document.addEventListener("DOMContentLoaded", function () {{  // after the explorer's own set-up
  var sweep = {sweep};
  var fields = {fields};
  function cells(root, grid) {{
    return Array.prototype.slice.call(root.querySelectorAll('svg[data-grid="' + grid + '"] rect'));
  }}
  function marked(root, grid) {{
    return cells(root, grid).filter(function (r) {{ return r.classList.contains("cx-hl"); }})
      .map(function (r) {{
        return [+r.getAttribute("data-a"), +r.getAttribute("data-b"),
                +r.getAttribute("data-label")];
      }});
  }}
  var out = [];
  try {{
    sweep.forEach(function (setting) {{
      var dilated = setting[8] !== 1 || setting[9] !== 1;
      var root = dilated ? document.getElementById("with-dilation")
                         : document.querySelector("#as-on-the-page .conv-explorer");
      fields.forEach(function (name, k) {{
        var input = root.querySelector('input[name="' + name + '"]');
        input.value = setting[k];
        input.dispatchEvent(new Event("input", {{ bubbles: true }}));
      }});
      var result = {{ setting: setting, oh: +root.getAttribute("data-oh"),
                     ow: +root.getAttribute("data-ow"), y_cells: cells(root, "y").length,
                     dilation_shown: !root.querySelector('input[name="dh"]').parentNode.hidden,
                     reads: [], senders: [] }};
      cells(root, "y").forEach(function (r) {{
        r.dispatchEvent(new MouseEvent("mouseenter"));
        result.reads.push([+r.getAttribute("data-a"), +r.getAttribute("data-b"),
                           marked(root, "x")]);
      }});
      cells(root, "x").forEach(function (r) {{
        r.dispatchEvent(new MouseEvent("mouseenter"));
        result.senders.push([+r.getAttribute("data-a"), +r.getAttribute("data-b"),
                             r.getAttribute("data-pad") === "1", marked(root, "y")]);
      }});
      out.push(result);
    }});
    document.getElementById("results").textContent = JSON.stringify(out);
  }} catch (e) {{
    document.getElementById("results").textContent = "ERROR " + e + "\\n" + e.stack;
  }}
}});
</script>
</body></html>
"""


def page_div() -> str:
    """The explorer element as docs/stride-padding.md has it (there must be one)."""
    found = re.findall(r'^<div class="conv-explorer"[^>]*></div>$', PAGE.read_text(), re.M)
    assert len(found) == 1, f"docs/stride-padding.md should hold one explorer, found {found}"
    return found[0]


def run_harness() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(SCRIPT, tmp / "explorer.js")
        (tmp / "harness.html").write_text(HARNESS.format(
            page_div=page_div(), sweep=json.dumps(SWEEP), fields=json.dumps(FIELDS)),
            encoding="utf-8")
        profile = tmp / "profile"
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-extensions",
             "--allow-file-access-from-files", f"--user-data-dir={profile}",
             "--window-size=1000,800", "--virtual-time-budget=5000", "--dump-dom",
             (tmp / "harness.html").as_uri()],
            capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="results">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"Chromium returned no page:\n{proc.stderr[-2000:]}"
    text = html.unescape(match.group(1))
    assert not text.startswith(("ERROR", "not run")), text
    return json.loads(text)


@pytest.fixture(scope="module")
def results():
    return run_harness()


def expected(setting):
    """Output size, and for every output cell and every padded-input cell the marked
    cells with their weights, all derived from cycnn's functions."""
    H, W, KH, KW, sh, sw, ph, pw, dh, dw = setting
    wnum = np.arange(1.0, KH * KW + 1).reshape(1, 1, KH, KW)  # w[p, q] = p*KW + q + 1
    kernel = cycnn.dilate(wnum, (dh, dw))  # the dilated convolution's kernel
    sizes = []
    for n, k, s, p in ((H, kernel.shape[2], sh, ph), (W, kernel.shape[3], sw, pw)):
        try:
            sizes.append(cycnn.conv_output_size(n, k, s, p))
        except ValueError:  # the kernel does not fit the padded input along this axis
            sizes.append(0)
    OH, OW = sizes
    if 0 in sizes:
        return OH, OW, {}, {}
    HP, WP = H + 2 * ph, W + 2 * pw
    reads, senders = {}, {}
    for i in range(OH):
        for j in range(OW):
            dy = np.zeros((1, 1, OH, OW))
            dy[0, 0, i, j] = 1.0
            # the gradient of the padded input: each cell the window read, with its weight
            dxp = cycnn.conv2d_backward(dy, np.zeros((1, 1, HP, WP)), kernel, (sh, sw), 0)[0]
            # the same through cycnn's own padding, for the cells of x
            dx = cycnn.conv2d_backward(dy, np.zeros((1, 1, H, W)), kernel, (sh, sw),
                                       (ph, pw))[0]
            np.testing.assert_array_equal(dx[0, 0], dxp[0, 0, ph:ph + H, pw:pw + W])
            reads[i, j] = {(int(r), int(c)): int(dxp[0, 0, r, c])
                           for r, c in zip(*np.nonzero(dxp[0, 0]))}
            for (r, c), weight in reads[i, j].items():
                senders.setdefault((r, c), {})[i, j] = weight
    return OH, OW, reads, senders


@needs_chromium
def test_the_output_size_is_cycnns(results):
    assert [r["setting"] for r in results] == [list(s) for s in SWEEP]
    for r in results:
        OH, OW, _, _ = expected(tuple(r["setting"]))
        assert (r["oh"], r["ow"]) == (OH, OW), r["setting"]
        assert r["y_cells"] == OH * OW, r["setting"]
    assert any(r["oh"] * r["ow"] == 0 for r in results)  # the sweep has a kernel too large


@needs_chromium
def test_an_output_cell_marks_the_inputs_it_reads_with_their_weights(results):
    for r in results:
        _, _, reads, _ = expected(tuple(r["setting"]))
        seen = {(i, j): {(a, b): label for a, b, label in cells} for i, j, cells in r["reads"]}
        assert seen == reads, r["setting"]


@needs_chromium
def test_an_input_cell_marks_the_dy_cells_that_send_it_gradient(results):
    for r in results:
        H, W, KH, KW, sh, sw, ph, pw, dh, dw = r["setting"]
        _, _, _, senders = expected(tuple(r["setting"]))
        for a, b, padded, cells in r["senders"]:
            assert padded == (not (ph <= a < ph + H and pw <= b < pw + W)), (r["setting"], a, b)
            got = {(i, j): label for i, j, label in cells}
            assert got == senders.get((a, b), {}), (r["setting"], a, b)


@needs_chromium
def test_the_marked_weights_form_the_rotated_filter(results):
    """Stride 1, an input away from the border: the labels on dy, read as a picture,
    are the numbered filter rotated by 180 degrees (the page's claim)."""
    r = next(x for x in results if x["setting"] == [4, 4, 3, 3, 1, 1, 3, 3, 1, 1])
    KH, KW = 3, 3
    centre = next(cells for a, b, _, cells in r["senders"] if (a, b) == (4, 4))
    picture = np.zeros((KH, KW), int)
    rows = sorted({i for i, _, _ in centre})
    cols = sorted({j for _, j, _ in centre})
    for i, j, label in centre:
        picture[rows.index(i), cols.index(j)] = label
    np.testing.assert_array_equal(picture, cycnn.rotate180(np.arange(1, 10).reshape(3, 3)))


@needs_chromium
def test_dilation_is_shown_only_where_asked(results):
    for r in results:
        assert r["dilation_shown"] == (r["setting"][8:] != [1, 1]), r["setting"]


def test_the_page_and_the_site_carry_the_explorer():
    page_div()
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^\s*-\s*javascripts/explorer\.js\s*$", config, re.M), \
        "mkdocs.yml does not list javascripts/explorer.js under extra_javascript"
