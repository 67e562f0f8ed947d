// Compose: keep the pre-flight panel up to date as the manager types, insert
// placeholders at the cursor, and swap look-alike characters. The server renders the
// panel; this only asks for it and puts it in place.
(function () {
  "use strict";
  const form = document.getElementById("compose-form");
  if (!form) return;
  const panel = document.getElementById("preflight-panel");
  const body = form.querySelector("textarea[name=body]");
  const url = form.dataset.preflightUrl;
  let timer = null;
  let asked = 0;

  function refresh() {
    const mine = ++asked;
    const data = new FormData(form);
    fetch(url, {
      method: "POST",
      body: data,
      headers: { "X-Requested-With": "fetch" },
      credentials: "same-origin",
    })
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((answer) => {
        // An older answer arriving late must not replace a newer one.
        if (mine === asked) panel.innerHTML = answer.html;
      })
      .catch(() => {
        if (mine === asked) {
          panel.innerHTML = '<p class="errornote">The panel could not be updated; the confirm step will still check everything.</p>';
        }
      });
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }

  form.addEventListener("input", soon);
  form.addEventListener("change", soon);

  form.querySelectorAll(".placeholder-insert").forEach((button) => {
    button.addEventListener("click", () => {
      const text = button.dataset.insert;
      const start = body.selectionStart ?? body.value.length;
      const end = body.selectionEnd ?? body.value.length;
      body.setRangeText(text, start, end, "end");
      body.focus();
      body.dispatchEvent(new Event("input", { bubbles: true }));
    });
  });

  panel.addEventListener("click", (event) => {
    const button = event.target.closest("[data-replace]");
    if (!button) return;
    const table = JSON.parse(button.dataset.replace);
    body.value = Array.from(body.value, (ch) => (ch in table ? table[ch] : ch)).join("");
    body.focus();
    body.dispatchEvent(new Event("input", { bubbles: true }));
  });
})();

// "When": show the date field for "Later" and the reminder choice for "Before an
// event"; without this script both simply stay visible.
(function () {
  "use strict";
  const form = document.getElementById("compose-form");
  if (!form) return;
  const later = form.querySelector(".compose-when-later");
  const reminder = form.querySelector(".compose-when-reminder");
  function show() {
    const chosen = form.querySelector("input[name=when]:checked");
    const value = chosen ? chosen.value : "now";
    if (later) later.hidden = value !== "later";
    if (reminder) reminder.hidden = value !== "reminder";
  }
  form.querySelectorAll("input[name=when]").forEach((radio) => radio.addEventListener("change", show));
  show();
})();
