"""Column labels on every table cell, so that a table can stack into cards on a phone.

On a narrow screen (see `styles.css`, the `max-width: 640px` block) a table row becomes a card and
each cell a line, headed by its column's name: a 25-column leaderboard cannot fit 390 px side by
side, but it reads well as cards. The cell needs that name as a `data-label` attribute, and
writing it by hand beside every `<td>` of every template would drift from the headers. So the
rendered page is read once: each table's header row gives the names, and each body cell of one
column gets its column's name, inserted into its start tag. Nothing else in the page changes (the
insertions are made at offsets into the original text), a page with no tables comes back as it
went in, and only the tables are read (a run page is mostly answers behind disclosures).

A header cell may carry its own `data-label` (when its visible text is a drawing, say); a cell
that already has one, or spans several columns, is left as it is.
"""

import re
from html import escape, unescape
from html.parser import HTMLParser


class _Table:
    __slots__ = ("headers", "in_head", "head_row", "head_span", "cell_text", "cell_label", "column")

    def __init__(self) -> None:
        self.headers: list[str] = []  # the last header row's names, one per column
        self.in_head = False
        self.head_row: list[str] | None = None  # the header row being read
        self.head_span = 1  # the columns the header cell being read spans
        self.cell_text: list[str] | None = None  # the text of the header cell being read
        self.cell_label: str | None = None
        self.column = 0  # the next body cell's column in the current row


class _CellLabeller(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        # HTMLParser counts lines at "\n" alone (str.splitlines also breaks at \r, \x85, \u2028,
        # ...), and model text in a cell may hold any of them.
        self.line_starts = [0, *(match.end() for match in re.finditer("\n", text))]
        self.tables: list[_Table] = []
        self.insertions: list[tuple[int, str]] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(_Table())
            return
        if not self.tables:
            return
        table = self.tables[-1]
        if tag == "thead":
            table.in_head = True
        elif tag == "tr":
            table.column = 0
            if table.in_head:
                table.head_row = []
        elif tag in ("td", "th"):
            attributes = dict(attrs)
            span = _span(attributes.get("colspan"))
            if table.in_head:
                table.cell_text = []
                table.cell_label = attributes.get("data-label")
                table.head_span = span
                if table.head_row is not None:
                    table.head_row.extend([""] * span)
                return
            column = table.column
            table.column += span
            if tag == "td" and span == 1 and "data-label" not in attributes and column < len(table.headers):
                label = table.headers[column]
                if label:
                    raw = self.get_starttag_text() or ""
                    end = self._offset() + len(raw) - (2 if raw.endswith("/>") else 1)
                    self.insertions.append((end, f' data-label="{escape(label, quote=True)}"'))

    def handle_endtag(self, tag: str) -> None:
        if not self.tables:
            return
        table = self.tables[-1]
        if tag == "table":
            self.tables.pop()
        elif tag == "thead":
            table.in_head = False
        elif tag in ("td", "th") and table.in_head and table.cell_text is not None:
            name = table.cell_label
            if name is None:
                name = " ".join("".join(table.cell_text).split())
            if table.head_row:
                # the cell's first column carries the name (a spanning header names its first column)
                table.head_row[len(table.head_row) - table.head_span] = name
            table.cell_text = None
        elif tag == "tr" and table.in_head and table.head_row is not None:
            table.headers = table.head_row
            table.head_row = None

    def handle_data(self, data: str) -> None:
        if self.tables and self.tables[-1].cell_text is not None:
            self.tables[-1].cell_text.append(data)

    def handle_entityref(self, name: str) -> None:
        self.handle_data(unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.handle_data(unescape(f"&#{name};"))


def _span(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


_TABLE_TAG = re.compile(r"<(/?)table\b", re.IGNORECASE)


def outer_tables(html: str) -> list[tuple[int, int]]:
    """(start, end) of each outermost `<table>...</table>` in the page. Model output is escaped
    (`&lt;table`), so a literal tag is always one of ours; only these slices need reading. (Our
    templates put no `<table` in a comment or a script, which this does not look inside.)"""
    spans, depth, start = [], 0, 0
    for match in _TABLE_TAG.finditer(html):
        if not match.group(1):
            if depth == 0:
                start = match.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                close = html.find(">", match.end())
                spans.append((start, len(html) if close < 0 else close + 1))
    return spans


def label_cells(html: str) -> str:
    """The page with each body cell labelled by its column header (see the module's docstring)."""
    insertions: list[tuple[int, str]] = []
    for start, end in outer_tables(html):
        labeller = _CellLabeller(html[start:end])
        labeller.feed(html[start:end])
        labeller.close()
        insertions.extend((start + offset, text) for offset, text in labeller.insertions)
    if not insertions:
        return html
    parts, last = [], 0
    for offset, text in sorted(insertions):
        parts.append(html[last:offset])
        parts.append(text)
        last = offset
    parts.append(html[last:])
    return "".join(parts)
