"""Rendering a report: one self-contained HTML page and its Markdown twin, from the same blocks.

A report is a title, a subtitle line and a list of blocks (:class:`Heading`, :class:`Paragraph`,
:class:`Prose`, :class:`Table`, :class:`Image`, :class:`Box`); text is Markdown inline (``**bold**``,
```code```), escaped for HTML.  :func:`render_html` embeds images as base64 PNG with inline CSS (no script, no
external resource); :func:`render_markdown` links them as ``NAME.png`` beside it.  :func:`write_report` writes
both, the PNGs and ``numbers.json``.  Any report type (the comparison of ``ddl compare``, a sweep) builds its
blocks and hands them over.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from analysis.io import atomic_write, plain

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:1240px;margin:0 auto;
padding:18px 24px 60px;color:#1d2329;line-height:1.45;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.22em;margin:1.6em 0 .35em;border-bottom:1px solid #dde2e7;
padding-bottom:.2em}.sub{color:#5a6570;margin:0 0 1em}
.verdict{background:#f4f8fc;border-left:4px solid #2d6cb5;padding:.6em 1em;margin:1em 0}
.verdict h2{margin-top:.2em;border:0}
.verdict p{margin:.45em 0}.missing{background:#fff8ec;border-left:4px solid #d48a00;padding:.5em 1em;margin:1em 0}
.missing ul{margin:.3em 0;padding-left:1.2em}.missing li{font-size:.9em}.missing p{margin:.2em 0}
.checks{background:#fdeeee;border-left:4px solid #c0392b;padding:.5em 1em;margin:1em 0}
.checks ul{margin:.3em 0;padding-left:1.2em}.checks li{font-size:.9em}.checks p{margin:.2em 0}
.tablewrap{overflow-x:auto}table{border-collapse:collapse;font-size:.84em;margin:.4em 0 1em}
th,td{border:1px solid #d5dbe1;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#eef2f6}td.l,th.l{text-align:left}tr:nth-child(even) td{background:#fafbfc}
figure{margin:.4em 0 1.2em}figure img{max-width:100%;height:auto;border:1px solid #eceff2}
p.intro{margin:.2em 0 .5em;color:#2e3842}.na{color:#8a5a00;font-style:italic}
code{background:#f1f3f5;padding:0 3px;border-radius:3px;font-size:.92em}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;vertical-align:-.05em}
footer{margin-top:2em;font-size:.85em;color:#5a6570}
"""

# matplotlib's tab10, so that a table's colour swatch matches the group's lines ("C0" … "C9")
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Heading:
    text: str
    level: int = 2
    anchor: str | None = None  # HTML id


@dataclass
class Paragraph:
    """One paragraph; ``style`` "intro" (explanatory), "note" (a caveat: italic) or "" (plain)."""

    text: str
    style: str = ""


@dataclass
class Prose:
    """Paragraphs, where consecutive lines starting with ``"- "`` form a list under the paragraph before them."""

    lines: list[str]


@dataclass
class Cell:
    text: str
    key: str | None = None  # HTML data-key, for readers of the page (and tests)
    left: bool = False  # left-aligned (text) rather than right-aligned (numbers)
    title: str | None = None  # HTML tooltip
    swatch: str | None = None  # a colour square before the text (matplotlib colour "C3" or "#rrggbb")


@dataclass
class Row:
    cells: list[Cell]
    attrs: dict[str, str] = field(default_factory=dict)  # HTML attributes, e.g. {"data-run": path}


@dataclass
class Table:
    header: list[Cell]  # the header cells' ``left`` also sets their columns' alignment in Markdown
    rows: list[Row]
    css_class: str = ""


@dataclass
class Image:
    """A PNG figure: ``NAME.png`` beside the Markdown, embedded in the HTML."""

    name: str
    title: str
    png: bytes


@dataclass
class Box:
    """Blocks shown together in a highlighted box (``css_class`` "verdict", "checks" or "missing"); plain in
    Markdown."""

    css_class: str
    blocks: list[Block]


Block = Heading | Paragraph | Prose | Table | Image | Box


# ---------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------
def inline_html(text: str) -> str:
    """Markdown inline (``**bold**``, ```code```) as escaped HTML."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def color_hex(c: str) -> str:
    """A matplotlib cycle colour ``C<i>`` as hex (other colours unchanged)."""
    m = re.fullmatch(r"C(\d+)", c)
    return TAB10[int(m.group(1)) % 10] if m else c


def _h(s) -> str:
    return html.escape(str(s))


def _cell_html(c: Cell, tag: str) -> str:
    attrs = ' class="l"' if c.left else ""
    if c.title is not None:
        attrs += f' title="{_h(c.title)}"'
    if c.key is not None:
        attrs += f' data-key="{_h(c.key)}"'
    swatch = f'<span class="swatch" style="background:{_h(color_hex(c.swatch))}"></span>' if c.swatch else ""
    return f"<{tag}{attrs}>{swatch}{_h(c.text)}</{tag}>"


def _table_html(t: Table) -> str:
    rows = ["<tr>" + "".join(_cell_html(c, "th") for c in t.header) + "</tr>"]
    for r in t.rows:
        attrs = "".join(f' {k}="{_h(v)}"' for k, v in r.attrs.items())
        rows.append(f"<tr{attrs}>" + "".join(_cell_html(c, "td") for c in r.cells) + "</tr>")
    cls = f' class="{_h(t.css_class)}"' if t.css_class else ""
    return f'<div class="tablewrap"><table{cls}>' + "\n".join(rows) + "</table></div>"


def _prose_html(lines: list[str]) -> str:
    out, items = [], []
    for line in [*lines, ""]:
        if line.startswith("- "):
            items.append(f"<li>{inline_html(line[2:])}</li>")
            continue
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line:
            out.append(f"<p>{inline_html(line)}</p>")
    return "".join(out)


def block_html(b: Block) -> str:
    if isinstance(b, Heading):
        anchor = f' id="{_h(b.anchor)}"' if b.anchor else ""
        return f"<h{b.level}{anchor}>{_h(b.text)}</h{b.level}>"
    if isinstance(b, Paragraph):
        cls = {"intro": ' class="intro"', "note": ' class="na"'}.get(b.style, "")
        return f"<p{cls}>{inline_html(b.text)}</p>"
    if isinstance(b, Prose):
        return _prose_html(b.lines)
    if isinstance(b, Table):
        return _table_html(b)
    if isinstance(b, Image):
        b64 = base64.b64encode(b.png).decode("ascii")
        return f'<figure><img src="data:image/png;base64,{b64}" alt="{_h(b.title)}"></figure>'
    if isinstance(b, Box):
        return f'<section class="{_h(b.css_class)}">' + "".join(block_html(x) for x in b.blocks) + "</section>"
    raise TypeError(f"not a report block: {type(b).__name__}")


def render_html(title: str, subtitle: str, blocks: list[Block], footer: str = "") -> str:
    """The report as one self-contained HTML page."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_h(title)}</h1>",
        f'<p class="sub">{_h(subtitle)}</p>',
        *(block_html(b) for b in blocks),
    ]
    if footer:
        parts.append(f"<footer>{inline_html(footer)}</footer>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------
def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|")


def _prose_md(lines: list[str]) -> list[str]:
    out = []
    for i, line in enumerate(lines):
        list_goes_on = line.startswith("- ") and i + 1 < len(lines) and lines[i + 1].startswith("- ")
        out += [line] if list_goes_on else [line, ""]
    return out


def block_markdown(b: Block) -> list[str]:
    """The block's Markdown lines, ending with a blank line."""
    if isinstance(b, Heading):
        return ["#" * b.level + " " + b.text, ""]
    if isinstance(b, Paragraph):
        return [f"*{b.text}*" if b.style == "note" else b.text, ""]
    if isinstance(b, Prose):
        return _prose_md(b.lines)
    if isinstance(b, Table):
        lines = ["| " + " | ".join(_md_cell(c.text) for c in b.header) + " |",
                 "|" + "".join("---|" if c.left else "---:|" for c in b.header)]  # fmt: skip
        lines += ["| " + " | ".join(_md_cell(c.text) for c in r.cells) + " |" for r in b.rows]
        return [*lines, ""]
    if isinstance(b, Image):
        return [f"![{b.title}]({b.name}.png)", ""]
    if isinstance(b, Box):
        return [line for x in b.blocks for line in block_markdown(x)]
    raise TypeError(f"not a report block: {type(b).__name__}")


def render_markdown(title: str, subtitle: str, blocks: list[Block], footer: str = "") -> str:
    """The report as Markdown; images are linked as ``NAME.png`` (written beside it by :func:`write_report`)."""
    lines = [f"# {title}", "", subtitle, ""]
    for b in blocks:
        lines += block_markdown(b)
    if footer:
        lines += ["---", "", footer, ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------
@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    figures: list[Path]
    numbers: Path


def write_figures(out: Path, figures: list[tuple[str, bytes | None]]) -> list[Path]:
    """``out/NAME.png`` for every figure that has data; a stale PNG of a figure without data is removed (it
    would contradict the new report).  Returns the paths written."""
    written = []
    for name, png in figures:
        p = out / f"{name}.png"
        if png is None:
            p.unlink(missing_ok=True)
        else:
            atomic_write(p, lambda f, d=png: f.write(d))
            written.append(p)
    return written


def write_report(out: str | Path, title: str, subtitle: str, blocks: list[Block],
                 figures: list[tuple[str, bytes | None]], numbers: dict, footer: str = "") -> ReportFiles:  # fmt: skip
    """Write ``report.html``, ``report.md``, the figures' PNGs and ``numbers.json`` (``numbers`` plus the list of
    figures written, JSON-safe: non-finite numbers become ``null``) to ``out``, each file atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = write_figures(out, figures)
    html_path, md_path, js_path = out / "report.html", out / "report.md", out / "numbers.json"
    page = render_html(title, subtitle, blocks, footer)
    atomic_write(html_path, lambda f: f.write(page.encode()))
    text = render_markdown(title, subtitle, blocks, footer)
    atomic_write(md_path, lambda f: f.write(text.encode()))
    doc = json.dumps(plain({**numbers, "figures": [p.name for p in written]}), indent=2)
    atomic_write(js_path, lambda f: f.write(doc.encode()))
    return ReportFiles(html_path, md_path, written, js_path)
