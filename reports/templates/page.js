// The one script of every imaudit page (report, index, compare): tabs, sortable tables, the gallery's
// filters and enlarged view, the index's filters. No network, no libraries; values are read from data-
// attributes and text, never parsed as HTML. Without it every panel and image is simply shown.
(function () {
  "use strict";
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  // --- tabs: [data-tabs=G] buttons switch panels [data-panel-of=G] -------------------------------
  $$("[data-tabs]").forEach(function (bar) {
    var group = bar.getAttribute("data-tabs");
    var buttons = $$("button[data-tab]", bar);
    var panels = $$('[data-panel-of="' + group + '"]');
    function show(id) {
      buttons.forEach(function (b) { b.setAttribute("aria-selected", String(b.getAttribute("data-panel") === id)); });
      panels.forEach(function (p) { p.hidden = p.id !== id; });
    }
    buttons.forEach(function (b) { b.addEventListener("click", function () { show(b.getAttribute("data-panel")); }); });
    if (buttons.length) show(buttons[0].getAttribute("data-panel"));
  });

  // --- sortable tables: click a header to sort by that column (numbers by data-sort) --------------
  $$("table.sortable").forEach(function (table) {
    var body = table.tBodies[0];
    if (!body) return;
    $$("thead th", table).forEach(function (th, col) {
      if (!th.textContent.trim()) return;
      th.classList.add("sort");
      th.setAttribute("tabindex", "0");
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        $$("thead th", table).forEach(function (o) { o.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var rows = $$("tr", body).filter(function (tr) { return tr.parentNode === body; });
        function key(tr) {
          var cell = tr.cells[col];
          if (!cell) return "";
          var s = cell.getAttribute("data-sort");
          return s === null ? cell.textContent.trim().toLowerCase() : (s === "" ? NaN : parseFloat(s));
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          if (typeof x === "number" && isNaN(x)) return 1;
          if (typeof y === "number" && isNaN(y)) return -1;
          var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
          return asc ? c : -c;
        });
        rows.forEach(function (tr) { body.appendChild(tr); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sort(); });
    });
  });

  // --- gallery: filter by class / result, choose the map, show all, enlarge ---------------------
  var gallery = document.querySelector("[data-gallery]");
  if (gallery) {
    var tiles = $$("figure.tile", gallery);
    var filters = {};
    $$("[data-gallery-filters] select").forEach(function (s) { filters[s.getAttribute("data-filter")] = s; });
    var count = document.querySelector("[data-gallery-count]");
    var moreBox = document.querySelector(".show-all");
    var first = parseInt(gallery.getAttribute("data-first") || "24", 10);
    var all = false;
    var apply = function () {
      var cls = filters["class"] ? filters["class"].value : "";
      var ok = filters.correct ? filters.correct.value : "";
      var method = filters.method ? filters.method.value : "";
      var matching = 0, shown = 0;
      tiles.forEach(function (t) {
        var match = (!cls || t.getAttribute("data-label") === cls || t.getAttribute("data-pred") === cls) &&
          (!ok || t.getAttribute("data-correct") === ok);
        if (match) matching += 1;
        var visible = match && (all || matching <= first);
        t.hidden = !visible;
        if (visible) shown += 1;
        if (method) $$(".ov", t).forEach(function (o) { o.hidden = o.getAttribute("data-method") !== method; });
      });
      if (count) count.textContent = shown + " of " + matching + " matching images shown (" + tiles.length + " in the gallery)";
      if (moreBox) moreBox.hidden = shown >= matching;
    };
    Object.keys(filters).forEach(function (k) { filters[k].addEventListener("change", function () { all = false; apply(); }); });
    var more = document.querySelector("[data-gallery-more]");
    if (more) more.addEventListener("click", function () { all = true; apply(); });
    apply();

    // Links elsewhere in the report: data-gallery-class="X" filters the gallery to class X.
    $$("a[data-gallery-class]").forEach(function (a) {
      a.addEventListener("click", function () {
        if (filters["class"]) filters["class"].value = a.getAttribute("data-gallery-class");
        if (filters.correct) filters.correct.value = "";
        all = false;
        apply();
      });
    });
    // A link to one image (#img-...) shows its tile even when filters or the first-N limit hid it.
    var reveal = function () {
      var id = decodeURIComponent(location.hash.slice(1));
      var t = id && document.getElementById(id);
      if (t && t.classList.contains("tile") && t.hidden) {
        Object.keys(filters).forEach(function (k) { if (k !== "method") filters[k].value = ""; });
        all = true;
        apply();
        t.scrollIntoView();
      }
    };
    window.addEventListener("hashchange", reveal);
    reveal();

    // Enlarged view: the image and every method's map, with the caption.
    var box = document.getElementById("lightbox");
    var open = function (t) {
      if (!box || typeof box.showModal !== "function") return;
      var body = box.querySelector(".lb-body");
      while (body.firstChild) body.removeChild(body.firstChild);
      var grid = document.createElement("div");
      grid.className = "lb-grid";
      // The image and every method's map; a method that did not explain this image says so.
      $$("img, .noimg", t).forEach(function (el) {
        var fig = document.createElement("figure");
        var shown;
        if (el.tagName === "IMG") {
          shown = document.createElement("img");
          shown.src = el.getAttribute("src");
          shown.alt = el.alt;
        } else {
          shown = document.createElement("span");
          shown.className = "noimg small";
          shown.textContent = el.textContent;
        }
        var cap = document.createElement("figcaption");
        cap.textContent = el.classList.contains("orig") ? "image" : (el.getAttribute("data-method") || "image");
        fig.appendChild(shown);
        fig.appendChild(cap);
        grid.appendChild(fig);
      });
      body.appendChild(grid);
      var caption = t.querySelector("figcaption");
      if (caption) body.appendChild(caption.cloneNode(true));
      box.showModal();
    };
    tiles.forEach(function (t) {
      t.addEventListener("click", function (e) { if (!e.target.closest("a")) open(t); });
      t.addEventListener("keydown", function (e) { if (e.key === "Enter") open(t); });
    });
    if (box) box.addEventListener("click", function (e) { if (e.target === box) box.close(); });
  }

  // --- index: filter rows by model, verdict and review --------------------------------------------
  var table = document.getElementById("audit-table");
  if (table) {
    var sel = $$("[data-index-filter]");
    var shownCount = document.getElementById("f-count");
    var applyIndex = function () {
      var rows = $$("tbody tr[data-verdict]", table), shown = 0;
      rows.forEach(function (tr) {
        var ok = sel.every(function (s) { return !s.value || tr.getAttribute("data-" + s.getAttribute("data-index-filter")) === s.value; });
        tr.hidden = !ok;
        if (ok) shown += 1;
      });
      if (shownCount) shownCount.textContent = shown + " of " + rows.length + " shown";
    };
    sel.forEach(function (s) { s.addEventListener("change", applyIndex); });
    applyIndex();
  }
})();
