// The stride-and-padding explorer: plain JavaScript and SVG, served by the site itself.
//
// Every <div class="conv-explorer"> on a page becomes an explorer. The learner sets the
// input size H x W, the kernel KH x KW, the stride (sh, sw) and the padding (ph, pw)
// (and the dilation (dh, dw) when the div has a data-dilation attribute: the geometry
// below already handles it, so showing it is the only step once the convolution has it).
// Two grids are drawn: the padded input xp and the output y (which is also the grid of
// dy). The filter's weights are numbered 1 .. KH*KW in row-major order, as w[p, q].
//
// * Pointing at (hovering, tapping or focusing) an output cell (i, j) marks the cells of
//   xp that y[i, j] reads, each labelled with the weight that multiplies it:
//   xp[i*sh + p*dh, j*sw + q*dw] * w[p, q].
// * Pointing at an input cell x[h, w] marks the dy cells that send it gradient, each
//   labelled with the weight on that path: dx[h, w] = sum over (i, j) of w[p, q] * dy[i, j]
//   with h + ph = i*sh + p*dh and w + pw = j*sw + q*dw. Read as a picture, the labels
//   are the filter rotated by 180 degrees.
//
// tests/test_explorer.py drives this file in headless Chromium and checks the sizes and
// every marked cell against cycnn.conv_output_size and cycnn.conv2d_backward.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var FIELDS = [
    // name, label, default, min, max
    ["H", "H", 5, 1, 16], ["W", "W", 5, 1, 16],
    ["KH", "KH", 3, 1, 7], ["KW", "KW", 3, 1, 7],
    ["sh", "sh", 2, 1, 4], ["sw", "sw", 2, 1, 4],
    ["ph", "ph", 1, 0, 3], ["pw", "pw", 1, 0, 3],
    ["dh", "dh", 1, 1, 3], ["dw", "dw", 1, 1, 3]
  ];

  // ------------------------------------------------------------------ geometry

  // Size of the output along one axis: (n + 2 pad - span) // stride + 1, where span is
  // the extent of the (dilated) kernel; 0 when the kernel does not fit.
  function outputSize(n, k, stride, pad, dilation) {
    var span = (k - 1) * dilation + 1;
    if (span > n + 2 * pad) { return 0; }
    return Math.floor((n + 2 * pad - span) / stride) + 1;
  }

  // The cells of xp read by output (i, j): [{r, c, p, q}], in xp coordinates.
  function windowOf(s, i, j) {
    var cells = [];
    for (var p = 0; p < s.KH; p++) {
      for (var q = 0; q < s.KW; q++) {
        cells.push({ r: i * s.sh + p * s.dh, c: j * s.sw + q * s.dw, p: p, q: q });
      }
    }
    return cells;
  }

  // The dy cells that send gradient to xp[r, c]: [{i, j, p, q}].
  function sendersOf(s, r, c, OH, OW) {
    var cells = [];
    for (var p = 0; p < s.KH; p++) {
      var di = r - p * s.dh;
      if (di < 0 || di % s.sh !== 0 || di / s.sh >= OH) { continue; }
      for (var q = 0; q < s.KW; q++) {
        var dj = c - q * s.dw;
        if (dj < 0 || dj % s.sw !== 0 || dj / s.sw >= OW) { continue; }
        cells.push({ i: di / s.sh, j: dj / s.sw, p: p, q: q });
      }
    }
    return cells;
  }

  function weightNumber(s, p, q) { return p * s.KW + q + 1; }

  // ------------------------------------------------------------------ drawing

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) { node.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function html(name, attrs, parent, text) {
    var node = document.createElement(name);
    for (var k in attrs) { node.setAttribute(k, attrs[k]); }
    if (text !== undefined) { node.textContent = text; }
    if (parent) { parent.appendChild(node); }
    return node;
  }

  var STYLE = [
    ".cx-box{margin:1em 0;padding:.6em .8em;border:1px solid var(--md-default-fg-color--lightest,#ddd);border-radius:.2rem}",
    ".cx-controls{display:flex;flex-wrap:wrap;gap:.3em .9em;align-items:center;font-size:.75rem}",
    ".cx-controls label{white-space:nowrap}",
    ".cx-controls input{width:3.2em;margin-left:.3em;font:inherit;color:inherit;background:transparent;border:1px solid var(--md-default-fg-color--lighter,#999);border-radius:.15rem}",
    ".cx-grids{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start;margin-top:.6em}",
    ".cx-grid figcaption{font-size:.7rem;margin:0 0 .2em}",
    ".cx-grid{margin:0}",
    ".cx-cell{fill:transparent;stroke:var(--md-default-fg-color--light,#777);stroke-width:1;cursor:pointer;outline:none}",
    ".cx-pad{fill:var(--md-default-fg-color--lightest,#eee);stroke-dasharray:3 2}",
    ".cx-hl{fill:rgba(68,138,255,.45)}",
    ".cx-pad.cx-hl{fill:rgba(68,138,255,.22)}",
    ".cx-src{fill:rgba(255,145,0,.6)}",
    ".cx-cell:focus{stroke:var(--md-accent-fg-color,#f50057);stroke-width:2}",
    ".cx-label{fill:var(--md-default-fg-color,#000);pointer-events:none;font-family:var(--md-code-font-family,monospace)}",
    ".cx-text{font-size:.75rem;margin:.5em 0 0;min-height:2.6em}",
    ".cx-formula{font-size:.7rem;margin:.3em 0 0;font-family:var(--md-code-font-family,monospace)}"
  ].join("\n");

  function addStyle() {
    if (document.getElementById("cx-style")) { return; }
    var style = html("style", { id: "cx-style" }, document.head);
    style.textContent = STYLE;
  }

  function setup(root) {
    if (root.getAttribute("data-ready")) { return; }
    root.setAttribute("data-ready", "1");
    root.classList.add("cx-box");
    var withDilation = root.hasAttribute("data-dilation");
    var controls = html("div", { "class": "cx-controls" }, root);
    var inputs = {};
    FIELDS.forEach(function (f) {
      var label = html("label", {}, controls, f[1]);
      var input = html("input", { type: "number", name: f[0], value: f[2], min: f[3],
                                  max: f[4], step: 1, inputmode: "numeric" }, label);
      if ((f[0] === "dh" || f[0] === "dw") && !withDilation) { label.hidden = true; }
      inputs[f[0]] = input;
    });
    var formula = html("div", { "class": "cx-formula", "aria-live": "polite" }, root);
    var grids = html("div", { "class": "cx-grids" }, root);
    var text = html("p", { "class": "cx-text", "aria-live": "polite" }, root);
    var state = null;

    function read() {
      var s = {};
      FIELDS.forEach(function (f) {
        var v = parseInt(inputs[f[0]].value, 10);
        if (isNaN(v)) { v = f[2]; }
        s[f[0]] = Math.min(f[4], Math.max(f[3], v));
      });
      if (!withDilation) { s.dh = 1; s.dw = 1; }
      return s;
    }

    function grid(title, rows, cols, kind, cellSize) {
      var fig = html("figure", { "class": "cx-grid" }, grids);
      html("figcaption", {}, fig, title);
      var svg = el("svg", { width: cols * cellSize + 2, height: rows * cellSize + 2,
                            viewBox: "-1 -1 " + (cols * cellSize + 2) + " " + (rows * cellSize + 2),
                            "data-grid": kind, role: "group", "aria-label": title }, fig);
      var cells = [];
      for (var a = 0; a < rows; a++) {
        cells.push([]);
        for (var b = 0; b < cols; b++) {
          var g = el("g", {}, svg);
          var rect = el("rect", { x: b * cellSize, y: a * cellSize, width: cellSize,
                                  height: cellSize, "class": "cx-cell", tabindex: 0,
                                  "data-a": a, "data-b": b }, g);
          var label = el("text", { x: (b + 0.5) * cellSize, y: (a + 0.5) * cellSize,
                                   "text-anchor": "middle", "dominant-baseline": "central",
                                   "class": "cx-label",
                                   "font-size": Math.max(8, Math.round(cellSize * 0.42)) }, g);
          cells[a].push({ rect: rect, label: label });
        }
      }
      return { svg: svg, cells: cells };
    }

    function clear() {
      [state.x, state.y].forEach(function (g) {
        g.cells.forEach(function (row) {
          row.forEach(function (cell) {
            cell.rect.classList.remove("cx-hl", "cx-src");
            cell.rect.removeAttribute("data-label");
            cell.label.textContent = "";
          });
        });
      });
    }

    function mark(cell, number) {
      cell.rect.classList.add("cx-hl");
      cell.rect.setAttribute("data-label", number);
      cell.label.textContent = number;
    }

    function pointOutput(i, j) {
      var s = state.s;
      clear();
      state.y.cells[i][j].rect.classList.add("cx-src");
      var reads = windowOf(s, i, j);
      reads.forEach(function (t) { mark(state.x.cells[t.r][t.c], weightNumber(s, t.p, t.q)); });
      var inside = reads.filter(function (t) {
        return t.r >= s.ph && t.r < s.ph + s.H && t.c >= s.pw && t.c < s.pw + s.W;
      }).length;
      text.textContent = "y[" + i + ", " + j + "] = b + " + reads.map(function (t) {
        return weightNumber(s, t.p, t.q) + "·xp[" + t.r + ", " + t.c + "]";
      }).join(" + ") + ": the window that starts at row " + (i * s.sh) + ", column " +
        (j * s.sw) + " of xp, " + (reads.length - inside) + " of its cells padding zeros.";
    }

    function pointInput(r, c) {
      var s = state.s;
      clear();
      state.x.cells[r][c].rect.classList.add("cx-src");
      var padded = r < s.ph || r >= s.ph + s.H || c < s.pw || c >= s.pw + s.W;
      var senders = sendersOf(s, r, c, state.OH, state.OW);
      senders.forEach(function (t) { mark(state.y.cells[t.i][t.j], weightNumber(s, t.p, t.q)); });
      var sum = senders.map(function (t) {
        return weightNumber(s, t.p, t.q) + "·dy[" + t.i + ", " + t.j + "]";
      }).join(" + ");
      if (padded) {
        text.textContent = "A padding zero" + (senders.length ? " (dxp = " + sum + ")" : "") +
          ": its gradient is dropped when dxp is cropped back to the shape of x.";
      } else if (!senders.length) {
        text.textContent = "dx[" + (r - s.ph) + ", " + (c - s.pw) + "] = 0: no window reads " +
          "this input, so no dy reaches it.";
      } else {
        text.textContent = "dx[" + (r - s.ph) + ", " + (c - s.pw) + "] = " + sum + ". Read " +
          "as a picture, the weights on dy are the filter rotated by 180 degrees" +
          (s.sh > 1 || s.sw > 1 ? ", with the stride's gaps" : "") + ".";
      }
    }

    function draw() {
      var s = read();
      var OH = outputSize(s.H, s.KH, s.sh, s.ph, s.dh);
      var OW = outputSize(s.W, s.KW, s.sw, s.pw, s.dw);
      var spanH = (s.KH - 1) * s.dh + 1, spanW = (s.KW - 1) * s.dw + 1;
      grids.textContent = "";
      text.textContent = "";
      var kh = s.dh > 1 ? "((KH - 1) dh + 1)" : "KH", kw = s.dw > 1 ? "((KW - 1) dw + 1)" : "KW";
      formula.textContent = "";
      html("div", {}, formula, "OH = (H + 2 ph - " + kh + ") // sh + 1 = (" + s.H + " + " +
           (2 * s.ph) + " - " + spanH + ") // " + s.sh + " + 1 = " + OH);
      html("div", {}, formula, "OW = (W + 2 pw - " + kw + ") // sw + 1 = (" + s.W + " + " +
           (2 * s.pw) + " - " + spanW + ") // " + s.sw + " + 1 = " + OW);
      root.setAttribute("data-oh", OH);
      root.setAttribute("data-ow", OW);
      if (OH < 1 || OW < 1) {
        formula.textContent = "The kernel (" + spanH + "x" + spanW + ") is larger than the " +
          "padded input (" + (s.H + 2 * s.ph) + "x" + (s.W + 2 * s.pw) + "): no output.";
        state = null;
        return;
      }
      var rows = s.H + 2 * s.ph, cols = s.W + 2 * s.pw;
      var width = root.clientWidth || 600;
      var cellSize = Math.max(14, Math.min(34, Math.floor((width - 60) / (cols + OW + s.KW + 2))));
      if (cols * cellSize > width - 20) { cellSize = Math.max(12, Math.floor((width - 20) / cols)); }
      state = { s: s, OH: OH, OW: OW };
      state.x = grid("input xp (" + s.H + "x" + s.W + " plus padding; point at a cell)",
                     rows, cols, "x", cellSize);
      state.y = grid("output y and dy (" + OH + "x" + OW + ")", OH, OW, "y", cellSize);
      var legend = grid("filter w, numbered", s.KH, s.KW, "w", cellSize);
      legend.cells.forEach(function (row, p) {
        row.forEach(function (cell, q) {
          cell.label.textContent = weightNumber(s, p, q);
          cell.rect.removeAttribute("tabindex");
          cell.rect.style.cursor = "default";
        });
      });
      state.x.cells.forEach(function (row, r) {
        row.forEach(function (cell, c) {
          var pad = r < s.ph || r >= s.ph + s.H || c < s.pw || c >= s.pw + s.W;
          if (pad) { cell.rect.classList.add("cx-pad"); }
          cell.rect.setAttribute("data-pad", pad ? "1" : "0");
          cell.rect.setAttribute("aria-label", pad ? "padding zero" :
                                 "x[" + (r - s.ph) + ", " + (c - s.pw) + "]");
          bind(cell.rect, function () { pointInput(r, c); });
        });
      });
      state.y.cells.forEach(function (row, i) {
        row.forEach(function (cell, j) {
          cell.rect.setAttribute("aria-label", "y[" + i + ", " + j + "]");
          bind(cell.rect, function () { pointOutput(i, j); });
        });
      });
    }

    function bind(node, handler) {
      node.addEventListener("mouseenter", handler);
      node.addEventListener("focus", handler);
      node.addEventListener("click", handler);  // taps on a phone
    }

    FIELDS.forEach(function (f) { inputs[f[0]].addEventListener("input", draw); });
    draw();
  }

  function setupAll() {
    var roots = document.querySelectorAll(".conv-explorer");
    if (roots.length) { addStyle(); }
    Array.prototype.forEach.call(roots, setup);
  }

  // for tests and for anyone curious: the geometry, without the page
  window.cycnnExplorer = { outputSize: outputSize, windowOf: windowOf, sendersOf: sendersOf,
                           setupAll: setupAll };

  if (typeof document$ !== "undefined" && document$.subscribe) {
    document$.subscribe(setupAll);  // Material's instant navigation swaps pages in place
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setupAll);
  } else {
    setupAll();
  }
})();
