// turtles live pages: every few seconds, fetch this page again and put the
// new contents of each element marked data-refresh (by id) in place of the old,
// so that new tasks, states and bots appear without a reload. The page reads
// the same without this script. Focus stays where it was when the element
// that held it is still there; the swapped regions are not announced (a
// table read aloud every few seconds helps no one), the page's status line
// says when it was last updated.
(function () {
  "use strict";
  var body = document.body;
  var regions = document.querySelectorAll("[data-refresh][id]");
  if (!regions.length || !window.fetch || !window.DOMParser) return;
  var every = Number(new URLSearchParams(location.search).get("poll") || body.dataset.poll || 5000);
  var status = document.getElementById("live-status");
  var updates = 0;

  // where is a way to find the focused element again in the new content.
  function where(el) {
    if (!el || el === body) return null;
    if (el.id) return "#" + CSS.escape(el.id);
    var href = el.getAttribute && el.getAttribute("href");
    if (href) return el.tagName.toLowerCase() + '[href="' + CSS.escape(href) + '"]';
    return null;
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var changed = false;
    regions.forEach(function (old) {
      var fresh = doc.getElementById(old.id);
      if (!fresh || fresh.innerHTML === old.innerHTML) return;
      var focused = old.contains(document.activeElement) ? where(document.activeElement) : null;
      old.innerHTML = fresh.innerHTML;
      changed = true;
      if (focused) {
        var again = old.querySelector(focused);
        if (again) again.focus();
      }
    });
    return changed;
  }

  function tick() {
    fetch(location.href, { headers: { "Accept": "text/html" }, cache: "no-cache", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) throw new Error(r.status);
        return r.text();
      })
      .then(function (html) {
        if (swap(html)) body.dataset.updates = ++updates;
        body.dataset.polls = Number(body.dataset.polls || 0) + 1;
        if (status) status.textContent = "Live: updated at " + new Date().toLocaleTimeString() + ".";
      })
      .catch(function () {
        if (status) status.textContent = "Live updates paused: the server did not answer; trying again.";
      })
      .then(function () { setTimeout(tick, every); });
  }
  if (status) status.textContent = "Live: this page updates by itself every " + Math.round(every / 1000) + " s.";
  setTimeout(tick, every);
})();
