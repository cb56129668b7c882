// MathJax 3 settings for pymdownx.arithmatex in "generic" mode. The MathJax script and its
// fonts are served by this site (see mkdocs_hooks.py); the output is CommonHTML, whose
// equations keep their natural size and scroll sideways when wider than the screen
// (docs/stylesheets/extra.css).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex"
  },
  chtml: {
    // the equations live in a scrolling box: never shrink them to fit
    minScale: 1
  }
};

// Material can swap pages without a reload (instant navigation): typeset each new page.
// The first emission is the page MathJax typesets by itself at start-up; typesetting it a
// second time while that runs blanks every equation, so it is skipped.
if (typeof document$ !== "undefined") {
  let first = true;
  document$.subscribe(() => {
    if (first) {
      first = false;
      return;
    }
    if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) {
      return;
    }
    MathJax.startup.promise = MathJax.startup.promise.then(() => {
      MathJax.typesetClear();
      MathJax.texReset();
      if (MathJax.startup.output.clearCache) {
        MathJax.startup.output.clearCache();
      }
      return MathJax.typesetPromise();
    });
  });
}
