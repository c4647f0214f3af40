"""Column labels for stacked tables: each body cell gets its header's name, and nothing else moves."""

import re
from html import unescape

from modelbench.reports.cell_labels import label_cells


def labels(html: str) -> list[str | None]:
    found = re.finditer(r'<td(?: [^>]*?data-label="([^"]*)")?[^>]*>', html)
    return [None if m.group(1) is None else unescape(m.group(1)) for m in found]


def test_each_body_cell_is_labelled_by_its_column_and_nothing_else_changes():
    page = """<!doctype html><p>a &amp; b</p>
<table class="t">
  <thead><tr><th scope="col">Hazard</th><th scope="col" class="num">Unsafe &amp; <i>raw</i></th>
  <th scope="col" data-label="Grade bands"><svg><text>½r</text></svg></th></tr></thead>
  <tbody>
    <tr><th scope="row">vcr</th><td class="num">12%</td><td><svg/></td></tr>
    <tr><td>x</td><td data-label="mine">y</td><td colspan="1">z</td></tr>
  </tbody>
</table>"""
    out = label_cells(page)
    assert labels(out) == ["Unsafe & raw", "Grade bands", "Hazard", "mine", "Grade bands"]
    assert 'data-label="Unsafe &amp; raw"' in out  # escaped as an attribute
    assert re.sub(r' data-label="[^"]*"', "", out) == re.sub(r' data-label="[^"]*"', "", page)


def test_spanning_cells_are_left_alone_and_spans_keep_the_columns_in_step():
    page = (
        "<table><thead><tr><th colspan=2>Model</th><th>Unsafe</th><th>n</th></tr></thead><tbody>"
        '<tr><td colspan="2">wide</td><td>1%</td><td>3</td></tr>'
        "<tr><td>a</td><td>b</td><td>2%</td><td>4</td></tr></tbody></table>"
    )
    assert labels(label_cells(page)) == [None, "Unsafe", "n", "Model", None, "Unsafe", "n"]


def test_a_table_inside_a_cell_has_its_own_columns():
    page = (
        "<table><thead><tr><th>Item</th><th>Verdicts</th></tr></thead><tbody><tr><td>i1</td><td>"
        "<table><thead><tr><th>Evaluator</th><th>p</th></tr></thead><tbody><tr><td>ce</td><td>0.9</td></tr>"
        "</tbody></table></td></tr><tr><td>i2</td><td>none</td></tr></tbody></table>"
    )
    assert labels(label_cells(page)) == ["Item", "Verdicts", "Evaluator", "p", "Item", "Verdicts"]


def test_a_page_without_tables_or_headers_comes_back_unchanged():
    for page in ("<p>no tables</p>", "<table><tr><td>1</td></tr></table>", ""):
        assert label_cells(page) == page


def test_line_breaks_other_than_newline_in_cell_text_do_not_shift_the_labels():
    """Model text in a cell may hold \\r, \\x85 or \\u2028; the parser counts lines at \\n alone."""
    for odd in ("\r", "\x85", "\u2028", "\u2029", "\x0c", "\x1e"):
        page = (
            "<table><thead><tr><th>Evaluator</th><th>Note</th></tr></thead><tbody>\n"
            f'<tr><td class="mono">ce</td><td>first{odd}second</td></tr>\n'
            '<tr><td class="mono">refusal</td><td>plain</td></tr>\n</tbody></table>'
        )
        out = label_cells(page)
        assert labels(out) == ["Evaluator", "Note", "Evaluator", "Note"], repr(odd)
        assert re.sub(r' data-label="[^"]*"', "", out) == page
