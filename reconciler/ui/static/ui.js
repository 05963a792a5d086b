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
        // Keep keyboard focus where it was: the same control, counted in document order.
        var controls = "a[href], button, input, select, textarea, summary, [tabindex]";
        var focused = -1;
        if (main.contains(document.activeElement)) {
          focused = Array.prototype.indexOf.call(
            main.querySelectorAll(controls), document.activeElement);
        }
        main.innerHTML = html;
        if (focused >= 0) {
          var target = main.querySelectorAll(controls)[focused];
          if (target) { target.focus(); }
        }
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
  var source = new EventSource("/ui/events?watch=1");
  source.addEventListener("change", refresh);
})();

// Pod logs: "Follow" appends what the agent sends (server-sent events) to the log.
(function () {
  "use strict";
  var button = document.getElementById("follow");
  var log = document.getElementById("log");
  if (!button || !log || !window.EventSource) {
    return;
  }
  var source = null;
  button.addEventListener("click", function () {
    if (source) {
      source.close();
      source = null;
      button.setAttribute("aria-pressed", "false");
      button.textContent = "Follow";
      return;
    }
    source = new EventSource(button.getAttribute("data-stream"));
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Stop following";
    source.addEventListener("log", function (event) {
      log.textContent += event.data + "\n";
      log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("failed", function (event) {
      log.textContent += "[" + event.data + "]\n";
      source.close();
      source = null;
    });
  });
})();
