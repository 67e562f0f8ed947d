// A running CSV import's page: polls the job's progress and updates the bar in place;
// when the job stops running, the page reloads to show its result. A static file, not
// an inline script, so the Content-Security-Policy can refuse every inline script.
(function () {
  "use strict";
  var bar = document.getElementById("import-progress");
  if (!bar) {
    return;
  }
  var label = document.getElementById("import-progress-label");
  var hint = document.getElementById("import-progress-hint");
  function poll() {
    fetch(bar.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (d) {
        if (!d.running) { window.location.reload(); return; }
        bar.max = d.total || 1;
        bar.value = d.done;
        label.textContent = d.label + ": " + Math.floor(100 * d.done / (d.total || 1)) + "%";
        hint.textContent = d.hint;
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 500);
})();
