(function () {
  "use strict";
  // Progressive enhancement: without this script the table keeps its server-side order.
  function key(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) return null;
    var raw = cell.getAttribute("data-value");
    if (numeric) {
      var value = parseFloat(raw === null ? "" : raw);
      return isNaN(value) ? null : value;
    }
    var text = (raw === null ? cell.textContent : raw).trim().toLowerCase();
    return text === "" ? null : text;
  }
  function sortBy(table, th) {
    var index = th.cellIndex;
    var numeric = th.getAttribute("data-sort") === "num";
    var current = th.getAttribute("aria-sort");
    var descending = current ? current === "ascending" : th.hasAttribute("data-desc-first");
    Array.prototype.forEach.call(th.parentNode.cells, function (cell) {
      cell.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    table.classList.toggle("flat", !th.hasAttribute("data-group-order"));
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, index, numeric);
      var y = key(b, index, numeric);
      var tie = parseInt(a.getAttribute("data-order"), 10) - parseInt(b.getAttribute("data-order"), 10);
      if (x === null || y === null) return x === y ? tie : x === null ? 1 : -1;
      var order = x === y ? 0 : x > y ? 1 : -1;
      return (descending ? -order : order) || tie;
    });
    rows.forEach(function (row) {
      body.appendChild(row);
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (!th.hasAttribute("data-sort")) return;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", function () {
        sortBy(table, th);
      });
    });
    table.classList.add("js-sortable");
  });
})();
