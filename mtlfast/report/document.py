"""A tiny report document: headings, paragraphs, tables, images, code; rendered to Markdown and to one
self-contained HTML file (images embedded as base64 ``data:`` URIs, no external files or scripts)."""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

__all__ = ["Report", "fmt"]


def fmt(v, digits=3):
    """Format a cell: floats with ``digits`` decimals, NaN/None as an en dash."""
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}f}"
    return str(v)


_INLINE = [
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"(?<![*\w])\*([^*]+)\*(?!\w)"), r"<em>\1</em>"),
]


def _inline_html(text):
    t = html.escape(text, quote=False)
    for rx, rep in _INLINE:
        t = rx.sub(rep, t)
    return t


class Report:
    """Collects blocks; ``to_markdown()`` and ``to_html(base_dir)`` render them."""

    def __init__(self, title):
        self.title = title
        self.blocks = []

    def heading(self, text, level=2):
        self.blocks.append(("h", level, text))

    def paragraph(self, text):
        self.blocks.append(("p", text))

    def bullets(self, items):
        self.blocks.append(("ul", list(items)))

    def table(self, headers, rows, digits=3):
        self.blocks.append(("table", list(headers), [[fmt(c, digits) for c in r] for r in rows]))

    def image(self, filename, alt):
        self.blocks.append(("img", str(filename), alt))

    def code(self, text):
        self.blocks.append(("code", text))

    # ------------------------------------------------------------------------------------------------
    def to_markdown(self):
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                out += ["#" * b[1] + " " + b[2], ""]
            elif kind == "p":
                out += [b[1], ""]
            elif kind == "ul":
                out += [f"- {it}" for it in b[1]] + [""]
            elif kind == "table":
                headers, rows = b[1], b[2]
                out.append("| " + " | ".join(headers) + " |")
                out.append("|" + "|".join("---" for _ in headers) + "|")
                for r in rows:
                    out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
                out.append("")
            elif kind == "img":
                out += [f"![{b[2]}]({b[1]})", ""]
            elif kind == "code":
                out += ["```", b[1].rstrip("\n"), "```", ""]
        return "\n".join(out)

    def to_html(self, base_dir):
        base_dir = Path(base_dir)
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                body.append(f"<h{b[1]}>{_inline_html(b[2])}</h{b[1]}>")
            elif kind == "p":
                body.append(f"<p>{_inline_html(b[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b[1]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{_inline_html(h)}</th>" for h in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in r) + "</tr>"
                               for r in b[2])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "img":
                p = base_dir / b[1]
                if p.exists():
                    data = base64.b64encode(p.read_bytes()).decode("ascii")
                    body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                                f"<figcaption>{_inline_html(b[2])}</figcaption></figure>")
                else:
                    body.append(f"<p><em>(figure {html.escape(b[1])} missing)</em></p>")
            elif kind == "code":
                body.append(f"<pre>{html.escape(b[1])}</pre>")
        css = (
            "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;"
            "padding:0 1em;line-height:1.45;color:#222}"
            "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
            "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f2f2f2}"
            "tr:nth-child(even) td{background:#fafafa}img{max-width:100%}figure{margin:1em 0}"
            "figcaption{font-size:0.85em;color:#555}pre{background:#f6f6f6;padding:0.6em;overflow:auto}"
            "code{background:#f3f3f3;padding:0 3px}"
        )
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{css}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")

    def write(self, out_dir, stem="report", html_too=True):
        """Write ``<stem>.md`` (and ``<stem>.html``) into ``out_dir``; returns the Markdown path."""
        out_dir = Path(out_dir)
        md = out_dir / f"{stem}.md"
        md.write_text(self.to_markdown())
        if html_too:
            (out_dir / f"{stem}.html").write_text(self.to_html(out_dir))
        return md
