// turtles log viewer: follows a live log (appended in place, or uploaded as
// numbered chunks with an index) by polling, renders ANSI colours, and lists
// per-test results and artifacts. Reads only files under BASE.
(function () {
  "use strict";
  var body = document.body;
  var base = body.dataset.base || "";
  var pre = document.getElementById("log");
  var testsEl = document.getElementById("tests");
  var artEl = document.getElementById("artifacts");
  var statusEl = document.getElementById("status");
  var every = Number(body.dataset.poll || new URLSearchParams(location.search).get("poll") || 2000);
  var have = 0;            // raw bytes of the log rendered so far
  var lineNo = 0;          // lines rendered
  var partial = "";        // text of the unfinished last line
  var partialEl = null;    // its element, replaced when the line grows
  var decoder = new TextDecoder();
  var style = {};          // current ANSI state, carried across lines
  var liveTests = [];      // from TAP lines while the log grows
  var result = null;       // result.json once it exists
  var stableAfterResult = 0;
  var maxLines = 200000;   // beyond this, point to the raw log

  var fg = ["#000", "#c23621", "#25bc24", "#adad27", "#492ee1", "#d338d3", "#33bbc8", "#cbcccd"];
  var bright = ["#818383", "#fc391f", "#31e722", "#eaec23", "#5833ff", "#f935f8", "#14f0f0", "#e9ebeb"];

  function sgr(codes) {
    if (codes.length === 0) codes = [0];
    for (var i = 0; i < codes.length; i++) {
      var c = codes[i];
      if (c === 0) style = {};
      else if (c === 1) style.bold = true;
      else if (c === 2) style.dim = true;
      else if (c === 3) style.italic = true;
      else if (c === 4) style.underline = true;
      else if (c === 22) { delete style.bold; delete style.dim; }
      else if (c === 23) delete style.italic;
      else if (c === 24) delete style.underline;
      else if (c >= 30 && c <= 37) style.fg = fg[c - 30];
      else if (c >= 90 && c <= 97) style.fg = bright[c - 90];
      else if (c === 39) delete style.fg;
      else if (c >= 40 && c <= 47) style.bg = fg[c - 40];
      else if (c >= 100 && c <= 107) style.bg = bright[c - 100];
      else if (c === 49) delete style.bg;
      else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
        var n = codes[i + 2], col = n < 8 ? fg[n] : n < 16 ? bright[n - 8] : null;
        if (col) { if (c === 38) style.fg = col; else style.bg = col; }
        i += 2;
      } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
        var rgb = "rgb(" + codes[i + 2] + "," + codes[i + 3] + "," + codes[i + 4] + ")";
        if (c === 38) style.fg = rgb; else style.bg = rgb;
        i += 4;
      }
    }
  }

  function css() {
    var s = "";
    if (style.fg) s += "color:" + style.fg + ";";
    if (style.bg) s += "background:" + style.bg + ";";
    if (style.bold) s += "font-weight:bold;";
    if (style.dim) s += "opacity:.7;";
    if (style.italic) s += "font-style:italic;";
    if (style.underline) s += "text-decoration:underline;";
    return s;
  }

  // renderLine turns one line into an element with ANSI colours as spans.
  function renderLine(n, text) {
    var el = document.createElement("span");
    el.className = "line";
    el.id = "L" + n;
    var a = document.createElement("a");
    a.className = "ln";
    a.href = "#L" + n;
    a.textContent = n;
    el.appendChild(a);
    var re = /\x1b\[([0-9;?]*)([ -\/]*[@-~])/g, last = 0, m;
    function text_(t) {
      if (!t) return;
      var s = css();
      t = t.replace(/\r/g, "");
      if (!s) { el.appendChild(document.createTextNode(t)); return; }
      var sp = document.createElement("span");
      sp.style.cssText = s;
      sp.textContent = t;
      el.appendChild(sp);
    }
    while ((m = re.exec(text)) !== null) {
      text_(text.slice(last, m.index));
      if (m[2] === "m") sgr(m[1] === "" ? [] : m[1].split(";").map(Number));
      last = re.lastIndex;
    }
    text_(text.slice(last).replace(/\x1b[^\[]?/g, ""));
    el.appendChild(document.createTextNode("\n"));
    return el;
  }

  var tapRe = /^((?: {4})*)(not )?ok\b\s*(\d+)?\s*(?:- )?([^#]*?)\s*(?:#\s*(skip|todo)\S*:?\s*(.*))?$/i;

  function tapLine(n, text) {
    var m = tapRe.exec(text.replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, ""));
    if (!m) return;
    var outcome = m[2] ? "failed" : "passed";
    if (m[5]) outcome = m[5].toLowerCase() === "skip" ? "skipped" : "todo";
    liveTests.push({ name: m[4] || "#" + (m[3] || ""), outcome: outcome, line: n, source: "log" });
    if (!result) renderTests(liveTests, true);
  }

  function addText(t) {
    var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    var lines = (partial + t).split("\n");
    partial = lines.pop();
    if (partialEl) { partialEl.remove(); partialEl = null; }
    var frag = document.createDocumentFragment();
    var saved;
    for (var i = 0; i < lines.length; i++) {
      lineNo++;
      if (lineNo <= maxLines) frag.appendChild(renderLine(lineNo, lines[i]));
      tapLine(lineNo, lines[i]);
    }
    if (lineNo > maxLines && !document.getElementById("toolong")) {
      var note = document.createElement("a");
      note.id = "toolong"; note.href = base + "log";
      note.textContent = "… the log is longer than " + maxLines + " lines: open the raw log\n";
      frag.appendChild(note);
    }
    if (partial) {
      saved = JSON.stringify(style);
      partialEl = renderLine(lineNo + 1, partial);
      style = JSON.parse(saved); // rendered again when the line completes
      frag.appendChild(partialEl);
    }
    pre.appendChild(frag);
    if (atBottom && !location.hash && live()) window.scrollTo(0, document.body.scrollHeight);
  }

  function addBytes(buf) {
    have += buf.byteLength;
    addText(decoder.decode(buf, { stream: true }));
  }

  function live() { return !result || stableAfterResult < 2; }

  function get(path, headers) {
    return fetch(base + path, { cache: "no-store", headers: headers || {} });
  }

  // fetchChunks reads what the chunk index names beyond what we have.
  function fetchChunks(idx) {
    var offs = idx.offsets || [];
    var p = Promise.resolve(true);
    offs.forEach(function (off, i) {
      var end = i + 1 < offs.length ? offs[i + 1] : idx.size;
      if (end <= have) return;
      p = p.then(function (ok) {
        if (!ok) return false;
        var name = "log.chunks/" + String(i + 1).padStart(6, "0");
        return get(name).then(function (r) {
          if (!r.ok) return false; // deleted: the whole log is there now
          return r.arrayBuffer().then(function (b) {
            if (off + b.byteLength > have) addBytes(b.slice(have - off));
            return true;
          });
        });
      });
    });
    return p;
  }

  function fetchLog() {
    return get("log", { Range: "bytes=" + have + "-" }).then(function (r) {
      if (r.status === 206) return r.arrayBuffer().then(addBytes).then(function () { return true; });
      if (r.status === 200) return r.arrayBuffer().then(function (b) {
        if (b.byteLength > have) addBytes(b.slice(have));
        return true;
      });
      return false;
    });
  }

  function renderTests(tests, isLive) {
    if (!testsEl) return;
    var failed = tests.filter(function (t) { return t.outcome === "failed"; });
    var counts = {};
    tests.forEach(function (t) { counts[t.outcome] = (counts[t.outcome] || 0) + 1; });
    testsEl.textContent = "";
    var h = document.createElement("p");
    h.className = "summary";
    h.textContent = tests.length ? Object.keys(counts).map(function (k) { return counts[k] + " " + k; }).join(", ") + (isLive ? " (so far)" : "") : "No per-test results.";
    testsEl.appendChild(h);
    var ul = document.createElement("ul");
    ul.id = "failures";
    failed.forEach(function (t) {
      var li = document.createElement("li");
      li.className = "failed";
      var a = document.createElement("a");
      a.href = t.line ? "#L" + t.line : base + t.source;
      a.textContent = t.name;
      li.appendChild(a);
      if (t.message) li.appendChild(document.createTextNode(" — " + t.message));
      ul.appendChild(li);
    });
    testsEl.appendChild(ul);
    var det = document.createElement("details");
    var sum = document.createElement("summary");
    sum.textContent = "All tests, failed first";
    det.appendChild(sum);
    var tb = document.createElement("table");
    var hr = tb.createTHead().insertRow();
    ["Outcome", "Test", "Duration"].forEach(function (h) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = h;
      hr.appendChild(th);
    });
    var rows = tb.createTBody();
    failed.concat(tests.filter(function (t) { return t.outcome !== "failed"; })).forEach(function (t) {
      var tr = rows.insertRow();
      tr.className = t.outcome;
      tr.insertCell().textContent = t.outcome;
      var c = tr.insertCell(), a = document.createElement("a");
      a.href = t.line ? "#L" + t.line : base + t.source;
      a.textContent = t.name;
      c.appendChild(a);
      tr.insertCell().textContent = t.duration_seconds ? t.duration_seconds.toFixed(3) + " s" : "";
    });
    det.appendChild(tb);
    testsEl.appendChild(det);
  }

  function renderResult(res) {
    var o = res.outcome || {};
    if (statusEl) {
      statusEl.textContent = (o.class || "") + (o.reason ? ": " + o.reason : "");
      statusEl.className = o.class || "";
    }
    renderTests(res.tests || [], false);
    if (artEl) {
      artEl.textContent = "";
      (res.artifacts || []).forEach(function (f) {
        var li = document.createElement("li"), a = document.createElement("a");
        a.href = base + f.name;
        a.textContent = f.name.replace(/^artifacts\//, "");
        li.appendChild(a);
        li.appendChild(document.createTextNode(" (" + f.size + " bytes)"));
        artEl.appendChild(li);
      });
      if (!(res.artifacts || []).length) artEl.textContent = "No artifacts.";
    }
  }

  function poll() {
    var before = have;
    get("log.chunks/index.json").then(function (r) {
      if (r.ok) return r.json().then(fetchChunks).then(function (ok) { return ok ? "chunks" : fetchLog(); });
      return fetchLog();
    }).then(function (how) {
      return get("result.json").then(function (r) {
        if (!r.ok) return;
        return r.json().then(function (res) {
          if (!result) { result = res; renderResult(res); }
          if (how !== "chunks" && have === before) stableAfterResult++;
        });
      });
    }).catch(function () {}).finally(function () {
      body.dataset.lines = lineNo;
      body.dataset.bytes = have;
      if (live()) { body.dataset.state = "live"; setTimeout(poll, every); }
      else {
        body.dataset.state = "done";
        if (partialEl) { partialEl.id = "L" + (lineNo + 1); }
        markTriage(result);
        if (location.hash) { var t = document.getElementById(location.hash.slice(1)); if (t) t.scrollIntoView(); }
      }
    });
  }

  // markTriage highlights the log lines that known-issue patterns matched
  // (result.json's triage: first line and the matched lines), titled with
  // the issue, so that a reader sees why the verdict is what it is.
  function markTriage(res) {
    ((res && res.triage) || []).forEach(function (m) {
      if (m.file !== "log" || !m.line) return;
      var n = Math.max(1, (m.lines || []).length);
      for (var i = 0; i < n; i++) {
        var el = document.getElementById("L" + (m.line + i));
        if (!el) return;
        el.classList.add("triage");
        el.title = "known issue: " + (m.title || m.issue);
      }
    });
  }

  pre.textContent = "";
  if (statusEl) statusEl.textContent = "running";
  poll();
})();
