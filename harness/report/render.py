"""The two renderers of a report tree: GitHub-flavoured Markdown and one self-contained HTML page.

Both are thin: every decision about what the report says is made once, when the sections build
the tree (:mod:`harness.report.sections`); a renderer only chooses markup. The HTML page has
inline CSS and SVG, no script and no URL, and escapes every string with :func:`html.escape`:
evidence holds whatever a misbehaving server sent back, and the page must show it, not run it.
The same tree always renders to the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape, unescape

from harness.report.text import literal
from harness.report.tree import Callout, Figure, Heading, Items, Node, Note, Paragraph, Table

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b;
       background: #f6f7f9; margin: 0; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e1e4e8; }
h3 { font-size: 15px; margin: 20px 0 8px; overflow-wrap: anywhere; }
section { border-radius: 6px; padding: 10px 16px; margin: 12px 0; border-left: 6px solid; }
section p { margin: 4px 0; }
.verdict.ok { background: #eaf6ec; border-color: #2e8540; }
.verdict.leak { background: #fdecea; border-color: #c0392b; }
.verdict.failed { background: #fdecea; border-color: #c0392b; }
.verdict.mutant { background: #eef3fb; border-color: #3569b5; }
.warning { background: #fff6e0; border-color: #d68910; }
.note { color: #5a6472; }
p, li { overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 12.5px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e6e8eb; vertical-align: top;
         white-space: nowrap; }
td.wrap { white-space: normal; overflow-wrap: anywhere; min-width: 9em; }
th { background: #f1f3f5; text-align: left; font-weight: 600; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #fdecea; color: #8e1f14; font-weight: 600; }
tr.warn td { background: #fff6e0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
              font-size: 12px; }
.charts { display: flex; flex-direction: column; gap: 18px; margin: 10px 0 6px; }
.figure { overflow-x: auto; }
.figure > svg { min-width: 760px; }  /* on a phone: scroll a chart whose text stays legible */
.scroll { overflow-x: auto; }
.cards { display: flex; flex-wrap: wrap; gap: 4px 36px; align-items: flex-start; }
.cards > div { max-width: 540px; }
.cards td:last-child { white-space: normal; overflow-wrap: anywhere; min-width: 12em; }
"""


def to_markdown(nodes: Sequence[Node]) -> str:
    """The tree as Markdown; charts are image links to the SVG files written next to it."""
    return "\n".join(_md(nodes)).rstrip() + "\n"


def _md(nodes: Sequence[Node]) -> list[str]:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Heading):
            out += ["#" * node.level + " " + node.text, ""]
        elif isinstance(node, Paragraph):
            out += [node.text, ""]
        elif isinstance(node, Items):
            out += [f"- {item}" for item in node.items] + [""]
        elif isinstance(node, Table):
            out += [*_md_table(node), ""]
        elif isinstance(node, Figure):
            out += [f"![{node.title}]({node.name})", ""]
        elif isinstance(node, Callout):
            inner = _md(node.body)
            while inner and not inner[-1]:
                inner.pop()
            out += [f"> {line}" if line else ">" for line in inner] + [""]
        else:
            out += _md(node.body)
    return out


def _md_table(table: Table) -> list[str]:
    def row(cells: Sequence[str], bold: bool = False) -> str:
        cells = [literal(c) for c in cells]
        return "| " + " | ".join(f"**{c}**" if bold and c else c for c in cells) + " |"

    aligns = ["---:" if a == "r" else "---" for a in table.align]
    bad = table.bad_rows
    return [row(table.headers), row(aligns), *(row(r, i in bad) for i, r in enumerate(table.rows))]


def to_html(nodes: Sequence[Node]) -> str:
    """The tree as one HTML page, titled by its first heading."""
    title = next((n.text for n in nodes if isinstance(n, Heading)), "ctxbench report")
    anchors: dict[str, int] = {}
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>\n"
        + "".join(_html(node, anchors) + "\n" for node in nodes)
        + "</main></body></html>\n"
    )


def _html(node: Node, anchors: dict[str, int]) -> str:
    if isinstance(node, Heading):
        text = _inline(node.text)
        return f'<h{node.level} id="{_anchor(text, anchors)}">{text}</h{node.level}>'
    if isinstance(node, Paragraph):
        return f"<p{_class('note' * isinstance(node, Note))}>{_inline(node.text)}</p>"
    if isinstance(node, Items):
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in node.items) + "</ul>"
    if isinstance(node, Table):
        return _html_table(node)
    if isinstance(node, Figure):
        return f'<div class="figure">{node.svg}</div>'
    body = "".join(_html(child, anchors) for child in node.body)
    tag = "section" if isinstance(node, Callout) else "div"
    return f"<{tag}{_class(node.style)}>{body}</{tag}>"


#: A backslash escape of an ASCII punctuation character (:func:`harness.report.text.literal`),
#: or a code span as CommonMark reads one: a run of backticks, then text up to a run of as many.
#: Whichever starts first wins, as in CommonMark: an escaped backtick opens no code span, and a
#: backslash inside a code span is only a backslash.
_ESCAPE_OR_CODE = re.compile(r"\\([!-/:-@\[-`{-~])|(?<!`)(`+)(.+?)(?<!`)\2(?!`)")


def _inline(text: str) -> str:
    """Escape ``text``, then turn its `code`, **strong** and *emphasis* into HTML; the text of
    a code span is shown as it is (:func:`harness.report.text.code` writes one for any text),
    and so is a character after a backslash (:func:`harness.report.text.literal`)."""
    spans: list[str] = []

    def stash(m: re.Match[str]) -> str:
        if m[1] is not None:
            spans.append(escape(m[1]))
        else:
            body = m[3][1:-1] if m[3][:1] == m[3][-1:] == " " and m[3].strip() else m[3]
            spans.append(f"<code>{escape(body)}</code>")
        return f"\0{len(spans) - 1}\0"

    rv = escape(_ESCAPE_OR_CODE.sub(stash, text.replace("\0", "\ufffd")))
    rv = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", rv)
    rv = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", rv)
    return re.sub("\0(\\d+)\0", lambda m: spans[int(m[1])], rv)


def _anchor(html: str, taken: dict[str, int]) -> str:
    """A heading's id, as GitHub makes one for the same heading of report.md: its text in lower
    case, punctuation dropped, spaces as hyphens, and ``-1``, ``-2`` after a repeat; so
    ``report.html#leaks`` and ``report.md#leaks`` point at the same section."""
    text = unescape(re.sub(r"<[^>]*>", "", html)).lower()
    slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
    n = taken.get(slug, 0)
    taken[slug] = n + 1
    return escape(f"{slug}-{n}" if n else slug)


def _html_table(table: Table) -> str:
    head = "".join(
        f'<th class="{a}">{escape(h)}</th>' for h, a in zip(table.headers, table.align, strict=True)
    )
    rows = []
    for i, row in enumerate(table.rows):
        kind = "bad" if i in table.bad_rows else "warn" if i in table.warn_rows else ""
        cells = "".join(
            f'<td class="{a}{" wrap" * (j in table.wrap)}">{escape(c)}</td>'
            for j, (c, a) in enumerate(zip(row, table.align, strict=True))
        )
        rows.append(f"<tr{_class(kind)}>{cells}</tr>")
    return (
        f'<div class="scroll"><table{_class("mono" * table.mono)}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _class(name: str) -> str:
    return f' class="{name}"' if name else ""
