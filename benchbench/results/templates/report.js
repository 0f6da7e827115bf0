// benchbench report: sortable data tables and row filters. No network, no libraries.
// Contract: tables of class "data" (id "t-NAME"), header cells with data-key, numeric cells with
// data-value (the raw number), a header's links (its definition, "a.def") not sorting; search inputs of class "table-filter" with data-for = a table's id.
(function () {
  "use strict";
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) return { num: NaN, text: "" };
    var raw = cell.getAttribute("data-value");
    var num = raw === null || raw === "" ? NaN : Number(raw);
    return { num: num, text: cell.textContent.trim() };
  }

  function compare(a, b) {
    var an = !isNaN(a.num), bn = !isNaN(b.num);
    if (an && bn) return a.num - b.num;
    if (an !== bn) return an ? -1 : 1; // numbers before empty / text cells
    return collator.compare(a.text, b.text);
  }

  function sortBy(table, th) {
    var body = table.tBodies[0];
    if (!body) return;
    var index = th.cellIndex;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return { row: row, key: cellKey(row, index), i: i };
    });
    rows.sort(function (x, y) {
      var c = compare(x.key, y.key);
      return (ascending ? c : -c) || x.i - y.i; // stable
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
    Array.prototype.forEach.call(table.querySelectorAll("thead th"), function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function filter(input) {
    var table = document.getElementById(input.getAttribute("data-for"));
    if (!table) return;
    var needle = input.value.trim().toLowerCase();
    Array.prototype.forEach.call(table.tBodies, function (body) {
      Array.prototype.forEach.call(body.rows, function (row) {
        row.hidden = needle !== "" && row.textContent.toLowerCase().indexOf(needle) === -1;
      });
    });
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("table.data"), function (table) {
      Array.prototype.forEach.call(table.querySelectorAll("thead th"), function (th) {
        th.tabIndex = 0;
        th.title = th.title || "Sort by this column";
        // a click or key on a link in the header (its definition) follows the link: no sort
        th.addEventListener("click", function (e) {
          if (e.target.closest && e.target.closest("a")) return;
          sortBy(table, th);
        });
        th.addEventListener("keydown", function (e) {
          if (e.target !== th) return;
          if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); }
        });
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("input.table-filter"), function (input) {
      input.addEventListener("input", function () { filter(input); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
