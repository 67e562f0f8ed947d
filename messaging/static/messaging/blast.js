// The blast page's live progress: polls the progress endpoint every few seconds and
// updates the bar and the counts in place. When the blast's status changes, the page
// reloads once, so its status text and buttons are the server's; a final blast is not
// polled at all.
(function () {
  "use strict";

  function start() {
    var box = document.getElementById("blast-progress");
    if (!box || box.dataset.final === "true") {
      return;
    }
    var url = box.dataset.progressUrl;
    var shownStatus = box.dataset.status;
    var every = 1000 * (parseInt(box.dataset.pollSeconds, 10) || 3);
    var bar = document.getElementById("blast-bar");
    var percent = document.getElementById("blast-percent");
    var eta = document.getElementById("blast-eta");

    function setText(selector, value) {
      var el = box.querySelector(selector);
      if (el) {
        el.textContent = String(value);
      }
    }

    function show(data) {
      bar.max = data.total || 1;
      bar.value = data.handled;
      bar.setAttribute("aria-valuetext", data.handled + " of " + data.total + " recipients handled");
      bar.textContent = data.percent + "%";
      percent.textContent = data.percent + "%";
      setText('[data-field="handled"]', data.handled);
      setText('[data-field="total"]', data.total);
      setText('[data-field="eta"]', data.eta || "");
      eta.hidden = !data.eta;
      Object.keys(data.counts).forEach(function (key) {
        setText('[data-count="' + key + '"]', data.counts[key]);
      });
    }

    function poll() {
      if (document.hidden) {
        window.setTimeout(poll, every);
        return;
      }
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (response) {
          if (!response.ok) {
            throw new Error("progress " + response.status);
          }
          return response.json();
        })
        .then(function (data) {
          show(data);
          if (data.status !== shownStatus) {
            window.location.reload();
            return;
          }
          if (!data.final) {
            window.setTimeout(poll, every);
          }
        })
        .catch(function () {
          // A dropped connection or a restart: try again, less often.
          window.setTimeout(poll, every * 3);
        });
    }

    window.setTimeout(poll, every);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
