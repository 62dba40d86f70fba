// Click a column header of a sortable table to sort by it; click again to reverse.
// Numbers sort as numbers ("1.2e-08", "0.970"); "–", "NaN" and empty cells go last.
(function () {
  function key(cell) {
    var text = (cell.getAttribute("data-sort") || cell.textContent).trim();
    var number = Number(text.replace(/^only\s.*/, "").split(" ").pop());
    if (text === "" || text === "–" || text === "NaN") return {blank: true};
    if (text !== "" && isFinite(number) && /^[-+]?[\d.]/.test(text.split(" ").pop())) return {n: number};
    if (text === "inf") return {n: Infinity};
    return {s: text.toLowerCase()};
  }
  function compare(a, b) {
    if (a.blank || b.blank) return (a.blank ? 1 : 0) - (b.blank ? 1 : 0);
    if (a.n !== undefined && b.n !== undefined) return a.n - b.n;
    if (a.n !== undefined) return -1;
    if (b.n !== undefined) return 1;
    return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.querySelectorAll("thead th");
    headers.forEach(function (th, col) {
      th.setAttribute("tabindex", "0");
      function sort() {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows = rows.map(function (row, i) { return {row: row, key: key(row.cells[col]), i: i}; });
        rows.sort(function (a, b) {
          var c = compare(a.key, b.key);
          if (a.key.blank || b.key.blank) return c || a.i - b.i;  // blanks last either way
          return (ascending ? c : -c) || a.i - b.i;
        });
        rows.forEach(function (r) { body.appendChild(r.row); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sort(); });
    });
  });
})();
