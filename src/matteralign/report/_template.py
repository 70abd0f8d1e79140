"""HTML building blocks of the static report: page skeleton, inline CSS, small escaping helpers."""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["CSS", "page", "esc", "tag", "json_block", "kv_table"]

CSS = """
:root { --fg: #1d232b; --muted: #5b6570; --line: #d9dee3; --accent: #1f5f99; --bg-soft: #f5f7f9; }
* { box-sizing: border-box; }
body { font: 15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 80px; }
header.top { border-bottom: 3px solid var(--accent); margin-bottom: 18px; }
h1 { font-size: 28px; margin: 8px 0 4px; } h2 { font-size: 22px; margin: 40px 0 8px; border-bottom: 1px solid var(--line);
padding-bottom: 4px; } h3 { font-size: 16px; margin: 22px 0 6px; color: #2b3440; }
.muted { color: var(--muted); } .small { font-size: 13px; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
nav.toc { background: var(--bg-soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px 18px; }
nav.toc ol { margin: 4px 0; padding-left: 22px; columns: 2; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 10px 0; }
dl.run dt { font-weight: 600; color: #2b3440; } dl.run dd { margin: 0; }
ul.findings { background: #f3f8fc; border-left: 4px solid var(--accent); padding: 10px 14px 10px 32px; margin: 12px 0; }
ul.findings li { margin: 3px 0; }
figure { margin: 16px 0; } figure img { max-width: none; height: auto; border: 1px solid var(--line); }
.figscroll { overflow-x: auto; } figcaption a.full { white-space: nowrap; }
figcaption { font-size: 12px; color: var(--muted); }
.tablewrap { overflow-x: auto; max-height: 520px; overflow-y: auto; border: 1px solid var(--line); margin: 6px 0 2px; }
table.data { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
table.data th, table.data td { border-bottom: 1px solid #eceff2; padding: 3px 8px; text-align: right; white-space: nowrap; }
table.data th { background: var(--bg-soft); position: sticky; top: 0; }
table.data td:first-child, table.data th:first-child { text-align: left; }
pre { background: var(--bg-soft); border: 1px solid var(--line); padding: 10px; overflow-x: auto; font-size: 12.5px; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
.error { background: #fdf0f0; border-left: 4px solid #b3261e; padding: 8px 14px; }
table.kv { border-collapse: collapse; font-size: 13px; } table.kv td { padding: 2px 10px; border-bottom: 1px solid #eceff2;
vertical-align: top; } table.kv td:first-child { font-weight: 600; white-space: nowrap; }
table.glossary { border-collapse: collapse; font-size: 13px; width: 100%; }
table.glossary th, table.glossary td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left;
vertical-align: top; } table.glossary th { background: var(--bg-soft); }
"""


def esc(x: Any) -> str:
    """HTML-escaped text of ``x`` (quotes included)."""
    return html.escape(str(x), quote=True)


def tag(name: str, body: str = "", **attrs: Any) -> str:
    """``<name attrs>body</name>``; attribute values are escaped, ``body`` is inserted as given."""
    a = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None)
    return f"<{name}{a}>{body}</{name}>"


def json_block(obj: Any) -> str:
    """Pretty JSON of ``obj`` in an escaped ``<pre>``."""
    return tag("pre", esc(json.dumps(obj, indent=2, sort_keys=True, default=str)))


def kv_table(d: dict) -> str:
    """A two-column table of ``d`` (values that are containers are shown as JSON)."""
    rows = []
    for k, v in d.items():
        if isinstance(v, (dict, list, tuple)):
            v = json.dumps(v, sort_keys=True, default=str)
        rows.append(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>")
    return f'<table class="kv">{"".join(rows)}</table>'


def page(title: str, body: str) -> str:
    """The complete HTML document."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
        "</body>\n</html>\n"
    )
