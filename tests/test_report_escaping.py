"""Text from outside (what a server sent back, an app's name) shows as it is in both reports.

report.md is read by Markdown viewers, many of which pass raw HTML through; report.html is read
by a browser. A value a misbehaving server sent must show there, never format the page or run.
These tests read the Markdown as a CommonMark viewer with GitHub's tables does (markdown-it-py),
so "shows as it is" is judged by a real parser, not by the escaping code itself.
"""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from harness.report.render import _inline
from harness.report.text import literal
from tests.test_report import make_doc, make_entry, render

VIEWER = MarkdownIt("commonmark").enable(["table", "strikethrough"])

#: Text as a table cell or a sentence holds it: one line, no control characters, and no
#: whitespace at either end (a viewer trims a cell).
one_line = (
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1)
    .map(str.strip)
    .filter(bool)
)

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "![x](http://127.0.0.1/x.png)",
    "*emphasis* and **strong** and _under_ and ~~struck~~",
    "`code` and ``more``",
    "a | b | c",
    "&lt;escaped&gt; &#60; &amp;",
    "back\\slash \\* \\\\",
    "<http://127.0.0.1/autolink>",
]


def _cell(text: str) -> str:
    """What a viewer shows for ``text`` as the one cell of a table body, as HTML."""
    out = VIEWER.render(f"| h |\n| --- |\n| {text} |\n")
    return re.search(r"<td>(.*)</td>", out, re.S)[1]  # type: ignore[index]


def _shown(rendered: str) -> str:
    assert "<" not in rendered, rendered  # no tag at all: nothing formatted, nothing run
    return html.unescape(rendered)


@given(one_line)
def test_literal_text_shows_as_it_is_in_a_markdown_table_cell(text: str) -> None:
    assert _shown(_cell(literal(text))) == text


@given(one_line)
def test_literal_text_shows_as_it_is_in_a_markdown_sentence(text: str) -> None:
    assert _shown(VIEWER.renderInline(literal(text))) == text


@given(one_line)
def test_literal_text_shows_as_it_is_in_the_html_report(text: str) -> None:
    assert _shown(_inline(literal(text))) == text


def test_plain_figures_and_names_are_not_escaped() -> None:
    for text in ("sleep_ms", ">= 2x", "< 1 µs", '["a", "b"]', "harness.apps.core_app:app"):
        assert literal(text) == text


def test_hostile_evidence_shows_as_sent_in_both_reports() -> None:
    entries = []
    for seen in HOSTILE:
        entry = make_entry("gunicorn-gthread", backend="shared-global", leaks=1)
        entry["evidence"][0]["seen"] = seen
        entries.append(entry)
    md, page = render(make_doc(entries))
    viewed = VIEWER.render(md)
    for seen in HOSTILE:
        as_json = html.escape(f'"{seen.replace(chr(92), chr(92) * 2)}"', quote=False)
        assert as_json in viewed.replace("&quot;", '"'), seen
        assert as_json in page.replace("&quot;", '"').replace("&#x27;", "'"), seen
    for tag in ("<script", "<img", "<a ", "<em>", "<strong>a", "<s>", "<code>&lt;"):
        assert tag not in viewed.split("<h2>Leaks</h2>", 1)[1], tag
    assert "<script" not in page and "<img" not in page


def test_a_targets_server_header_and_app_name_show_as_sent() -> None:
    import dataclasses

    from harness.exercised import Exercised
    from harness.report import render_reports
    from harness.results import ServerInfo
    from tests.test_report import load_run

    run = load_run(make_doc([make_entry("gunicorn-gthread")]))
    url, server, app = "http://127.0.0.1:8080", "<img src=x onerror=alert(1)> *x*", "[a](b)_c_"
    seen = Exercised((7,), 2, 2, 10, 1.5, True, True, False, False)
    effective = {"target": url, "server": server}
    cell = dataclasses.replace(run.cells[0], server=ServerInfo(effective), exercised=seen, app=app)
    reports = render_reports(run.replace(cells=(cell,)))
    viewed = VIEWER.render(reports["report.md"])
    assert f"{url} (Server: {html.escape(server, quote=False)}, app {app}, pids 7)" in viewed
    assert "<img src=x" not in viewed and "<img src=x" not in reports["report.html"]


def test_an_apps_own_observe_names_show_as_sent_in_the_verdict() -> None:
    # The verdict listed them as they were: "state my_<script>alert(1)</script>`user`" showed
    # "my_`user`" in a viewer that drops the tag, with a code span of the backticks.
    entries = []
    for name in HOSTILE:
        entry = make_entry("gunicorn-gthread", leaks=1)
        entry["evidence"][0]["name"] = name
        entry["observed"] = ["request", name]
        entries.append(entry)
    md, page = render(make_doc(entries))
    verdict = VIEWER.render(md.split("Each figure is", 1)[0])
    for name in HOSTILE:
        assert verdict.count(f"<code>{html.escape(name, quote=False)}</code>") == 2, name
        assert page.count(f"<code>{html.escape(name)}</code>") == 2, name
    assert "<script" not in verdict and "<img" not in verdict and "<em>" not in verdict
