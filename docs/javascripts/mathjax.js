// MathJax 3 for the whole site (loaded next, from the site itself: docs/_hooks/mathjax.py).
// Markdown pages: pymdownx.arithmatex (generic) wraps math in \( \) / \[ \] inside elements of
// class "arithmatex". Tutorial pages (executed notebooks, rendered by mkdocs-jupyter) keep their
// $ / $$ math inside "jp-RenderedMarkdown" cells, in their <p>, <li>, ... children. A heading's
// math also lands, as raw \( \) text, in the navigation's "md-ellipsis" labels (table of
// contents).
//
// MathJax decides per element, and an element inherits "ignored" from its parent:
//   ignored = (parent ignored || class matches ignoreHtmlClass) && !(class matches processHtmlClass)
// ".+" ignores every element that has a class, so the page as a whole (md-container, ...) and
// a literal $ in prose are left alone; the classes below switch processing back on, and their
// class-less children (a notebook's <p>) stay processed. A pattern that also matches the empty
// class (".*|", mkdocs-material's recipe, fine for arithmatex alone) would ignore those children
// again: no formula rendered on any tutorial page.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: ".+",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown|md-ellipsis"
  }
};
document$.subscribe(() => {
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
