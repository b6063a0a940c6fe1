// MathJax 3 for the whole site. Markdown pages: pymdownx.arithmatex (generic) wraps math in
// \( \) / \[ \] inside elements of class "arithmatex". Tutorial pages (executed notebooks,
// rendered by mkdocs-jupyter) keep their $ / $$ math inside "jp-RenderedMarkdown" cells.
// Everything else is left alone (ignoreHtmlClass matches every element).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown"
  }
};
document$.subscribe(() => {
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
