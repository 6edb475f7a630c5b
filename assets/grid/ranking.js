"use strict";
(function () {
  var recordError = zoetropeRecordError;
  var table = document.getElementById("ranking");
  var sortSel = document.getElementById("rank-sort");
  var body = table.tBodies[0];
  // The rows in grid order, as the page was built.
  var rows = Array.prototype.slice.call(body.rows);

  function index(row) { return Number(row.getAttribute("data-index")); }
  // A row's score by `by` ("last" or "mean"); null when the cell has none.
  function score(row, by) {
    var v = row.getAttribute("data-" + by);
    return v === null || v === "" ? null : Number(v);
  }
  // Rows in the order `by` asks for: grid order, or by score, highest first,
  // cells without a score last, ties in grid order.
  function ordered(by) {
    var out = rows.slice();
    if (by === "last" || by === "mean") {
      out.sort(function (a, b) {
        var x = score(a, by), y = score(b, by);
        if (x === null || y === null) {
          if (x === null && y === null) { return index(a) - index(b); }
          return x === null ? 1 : -1;
        }
        if (x !== y) { return y - x; }
        return index(a) - index(b);
      });
    }
    return out;
  }
  function sortBy(by) {
    ordered(by).forEach(function (row, i) {
      body.appendChild(row);
      row.cells[0].textContent = String(i + 1);
    });
    sortSel.value = by;
  }
  sortSel.addEventListener("change", function () { sortBy(sortSel.value); });

  // ?selftest=1: sorts by each score and back, checks the order shown, and
  // leaves the table sorted by the last-frame score.
  function shown() { return Array.prototype.slice.call(body.rows); }
  function check(by) {
    var now = shown();
    if (now.length !== rows.length) { return "the table has " + now.length + " rows, expected " + rows.length; }
    for (var i = 0; i < now.length; i++) {
      if (now[i].cells[0].textContent !== String(i + 1)) { return "row " + (i + 1) + " is numbered " + now[i].cells[0].textContent; }
      if (i === 0) { continue; }
      var a = now[i - 1], b = now[i];
      if (by === "grid") {
        if (index(a) >= index(b)) { return "grid order: " + a.getAttribute("data-cell") + " before " + b.getAttribute("data-cell"); }
      } else {
        var x = score(a, by), y = score(b, by);
        var ok = y === null || (x !== null && (x > y || (x === y && index(a) < index(b))));
        if (!ok) { return "by " + by + ": " + a.getAttribute("data-cell") + " (" + x + ") before " + b.getAttribute("data-cell") + " (" + y + ")"; }
      }
    }
    return null;
  }
  function selftest() {
    var out = document.getElementById("ranking-selftest");
    try {
      var steps = ["mean", "grid", "last"];
      for (var i = 0; i < steps.length; i++) {
        sortSel.value = steps[i];
        sortSel.dispatchEvent(new Event("change"));
        var problem = check(steps[i]);
        if (problem !== null) { out.textContent = "RANKING FAIL: " + problem; return; }
      }
      out.textContent = "RANKING OK";
    } catch (e) {
      recordError(e);
      out.textContent = "RANKING FAIL: " + e;
    }
  }
  if (/[?&]selftest=1(&|$)/.test(window.location.search)) { selftest(); }
})();
