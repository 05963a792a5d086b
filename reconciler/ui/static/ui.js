// Live updates for the Capstan web UI: on each store change (server-sent events from
// /ui/events), fetch this page again and replace its <main>. No framework, no build step.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.hasAttribute("data-live") || !window.EventSource) {
    return;
  }
  var busy = false;
  var again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.pathname + window.location.search, {
      headers: { "X-Capstan-Partial": "1" },
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      if (response.redirected || response.status === 401) {
        window.location.assign("/ui/login");
        return null;
      }
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html !== null && html !== undefined) {
        // Keep open <details> open across the swap.
        var open = Array.prototype.map.call(
          main.querySelectorAll("details[open] summary"), function (s) { return s.textContent; });
        main.innerHTML = html;
        Array.prototype.forEach.call(main.querySelectorAll("details summary"), function (s) {
          if (open.indexOf(s.textContent) >= 0) { s.parentNode.open = true; }
        });
        main.setAttribute("data-updated", String(Date.now()));
      }
    }).catch(function () { /* the next event tries again */ }).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }
  var source = new EventSource("/ui/events");
  source.addEventListener("change", refresh);
})();
