"use strict";
(function () {
  var errors = zoetropeErrors;
  var recordError = zoetropeRecordError;
  var data = JSON.parse(document.getElementById("grid-data").textContent);
  var vqSel = document.getElementById("vqgan");
  var peSel = document.getElementById("perceptor");
  var img = document.getElementById("view");
  var placeholder = document.getElementById("placeholder");
  var slider = document.getElementById("frame");
  var frameLabel = document.getElementById("frame-label");
  var playBtn = document.getElementById("play");
  var settingsEl = document.getElementById("settings");
  var infoEl = document.getElementById("cell-info");
  var linksEl = document.getElementById("links");
  var state = { row: 0, col: 0, frame: 1, timer: null };

  function addOptions(sel, names) {
    names.forEach(function (name, i) {
      var o = document.createElement("option");
      o.value = String(i);
      o.textContent = name;
      sel.appendChild(o);
    });
  }
  addOptions(vqSel, data.vqgans);
  addOptions(peSel, data.perceptors);

  function cellAt(row, col) {
    return data.cells[row * data.perceptors.length + col];
  }
  function pad5(n) {
    var s = String(n);
    while (s.length < 5) { s = "0" + s; }
    return s;
  }
  function framePath(cell, k) {
    return cell.name + "/frame_" + pad5(k) + ".png";
  }
  function link(href, text) {
    var a = document.createElement("a");
    a.setAttribute("href", href);
    a.textContent = text;
    return a;
  }

  function show() {
    var cell = cellAt(state.row, state.col);
    vqSel.value = String(state.row);
    peSel.value = String(state.col);
    slider.value = String(state.frame);
    frameLabel.textContent = "frame " + state.frame + " / " + data.frames;
    if (state.frame <= cell.frames_done) {
      var p = framePath(cell, state.frame);
      if (img.getAttribute("src") !== p) { img.setAttribute("src", p); }
      img.hidden = false;
      placeholder.hidden = true;
      if (state.frame < cell.frames_done) {
        new Image().src = framePath(cell, state.frame + 1);
      }
    } else {
      img.hidden = true;
      placeholder.hidden = false;
      placeholder.textContent = cell.frames_done === 0
        ? cell.label + ": not rendered yet"
        : cell.label + ": frame " + state.frame + " not rendered yet (" + cell.frames_done + " of " + data.frames + " done)";
    }
    infoEl.textContent = cell.label + " (" + cell.name + "), " +
      (cell.complete ? "complete" : cell.frames_done + " of " + data.frames + " frames") +
      "; settings from " + cell.settings_source;
    while (linksEl.firstChild) { linksEl.removeChild(linksEl.firstChild); }
    if (cell.video) { linksEl.appendChild(link(cell.video, "cell video")); linksEl.appendChild(document.createTextNode(" ")); }
    if (cell.settings_file) { linksEl.appendChild(link(cell.settings_file, "settings.toml")); linksEl.appendChild(document.createTextNode(" ")); }
    if (cell.metadata_file) { linksEl.appendChild(link(cell.metadata_file, "metadata.json")); }
    settingsEl.textContent = JSON.stringify(cell.settings, null, 2);
  }

  function step(d) {
    var n = data.frames;
    state.frame = ((state.frame - 1 + d) % n + n) % n + 1;
    show();
  }
  function setPlaying(on) {
    if (state.timer !== null) { window.clearInterval(state.timer); state.timer = null; }
    if (on) {
      var ms = Math.max(20, Math.round(1000 / (data.fps > 0 ? data.fps : 12)));
      state.timer = window.setInterval(function () { step(1); }, ms);
    }
    playBtn.innerHTML = on ? "&#10074;&#10074; pause" : "&#9654; play";
  }

  vqSel.addEventListener("change", function () { state.row = Number(vqSel.value); show(); });
  peSel.addEventListener("change", function () { state.col = Number(peSel.value); show(); });
  slider.addEventListener("input", function () { state.frame = Number(slider.value); show(); });
  document.getElementById("prev").addEventListener("click", function () { setPlaying(false); step(-1); });
  document.getElementById("next").addEventListener("click", function () { setPlaying(false); step(1); });
  playBtn.addEventListener("click", function () { setPlaying(state.timer === null); });
  document.addEventListener("keydown", function (e) {
    if (e.target && (e.target.tagName === "SELECT" || e.target.tagName === "INPUT")) { return; }
    if (e.key === "ArrowLeft") { setPlaying(false); step(-1); e.preventDefault(); }
    else if (e.key === "ArrowRight") { setPlaying(false); step(1); e.preventDefault(); }
    else if (e.key === " ") { setPlaying(state.timer === null); e.preventDefault(); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("button.pick"), function (b) {
    b.addEventListener("click", function () {
      state.row = Number(b.getAttribute("data-row"));
      state.col = Number(b.getAttribute("data-col"));
      show();
      window.scrollTo(0, 0);
    });
  });
  img.addEventListener("error", function () {
    recordError("could not load " + img.getAttribute("src"));
  });

  // Start on the first cell that has frames.
  for (var i = 0; i < data.cells.length; i++) {
    if (data.cells[i].frames_done > 0) { state.row = data.cells[i].row; state.col = data.cells[i].col; break; }
  }
  show();

  function selftest() {
    var out = document.getElementById("selftest");
    function finish(msg) {
      if (errors.length > 0 && msg === "SELFTEST OK") { msg = "SELFTEST FAIL: page errors: " + errors.join("; "); }
      out.textContent = msg;
    }
    try {
      var before = img.getAttribute("src");
      var target = null;
      for (var j = data.cells.length - 1; j >= 0; j--) {
        var c = data.cells[j];
        if (c.frames_done >= 1 && (c.row !== state.row || c.col !== state.col)) { target = c; break; }
      }
      if (target === null) { return finish("SELFTEST FAIL: needs two cells with frames"); }
      vqSel.value = String(target.row);
      vqSel.dispatchEvent(new Event("change"));
      peSel.value = String(target.col);
      peSel.dispatchEvent(new Event("change"));
      if (state.row !== target.row || state.col !== target.col) {
        return finish("SELFTEST FAIL: the selectors did not switch to " + target.name);
      }
      document.getElementById("next").click();
      var expected = framePath(target, state.frame);
      var now = img.getAttribute("src");
      if (state.frame > target.frames_done) {
        return finish("SELFTEST FAIL: frame " + state.frame + " of " + target.name + " is not rendered");
      }
      if (now === before) { return finish("SELFTEST FAIL: the image did not change from " + before); }
      if (now !== expected) { return finish("SELFTEST FAIL: showing " + now + ", expected " + expected); }
      var settled = false;
      function loaded() {
        if (settled) { return; }
        settled = true;
        if (img.naturalWidth > 0) { finish("SELFTEST OK"); }
        else { finish("SELFTEST FAIL: " + now + " loaded empty"); }
      }
      function failed() {
        if (settled) { return; }
        settled = true;
        finish("SELFTEST FAIL: could not load " + now);
      }
      img.addEventListener("load", loaded);
      img.addEventListener("error", failed);
      if (img.complete && img.naturalWidth > 0) { loaded(); }
      window.setTimeout(function () {
        if (!settled) { settled = true; finish("SELFTEST FAIL: " + now + " did not load in time"); }
      }, 5000);
    } catch (e) {
      finish("SELFTEST FAIL: " + e);
    }
  }
  if (/[?&]selftest=1(&|$)/.test(window.location.search)) {
    if (document.readyState === "complete") { selftest(); }
    else { window.addEventListener("load", selftest); }
  }
})();
