"""The diff as one self-contained HTML page: the matched traversal grids side by side (pure).

Every string an explainer wrote (explanations, and anything else read from explanations.json) is
escaped with :func:`html.escape`; a Content-Security-Policy like report.html's forbids scripts
and every load except the embedded images.
"""

from __future__ import annotations

import base64
import html

from lexflow import names
from lexflow.diff.match import STATUS_TITLES, Match
from lexflow.diff.result import DiffResult

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}img{image-rendering:pixelated;max-width:100%}
.same{background:#eef8ee}.changed{background:#fff6e0}.lost{background:#fde8e8}
.new{background:#e8f0fd}.unclear{color:#777}.warn{color:#a60}
"""
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'")


def _grid(png: bytes | None, label: str) -> str:
    if not png:
        return f"<i>no grid for {html.escape(label)}</i>"
    b64 = base64.b64encode(png).decode()
    return f"<img alt='traversal of {html.escape(label)}' src='data:image/png;base64,{b64}'>"


def _text(text: str | None) -> str:
    return html.escape(text) if text else f"<i>{html.escape(names.NO_CLEAR_EXPLANATION)}</i>"


def _cell(result: DiffResult, m: Match, side: str, grids: dict[int, bytes]) -> str:
    index = m.a if side == "a" else m.b
    if index is None and m.nearest is not None and m.status == ("new" if side == "a" else "lost"):
        index = m.nearest  # the unexplained latent the matching paired it with
    if index is None:
        return "<td>-</td>"
    s = result.a if side == "a" else result.b
    label = s.label(index) or str(index)
    certainty = s.certainty(index)
    cert = "-" if certainty is None else f"{certainty:.2f}"
    return (f"<td><b>latent {html.escape(label)}</b> · certainty {cert}<br>"
            f"{_text(s.explanation(index))}<br>{_grid(grids.get(index), label)}</td>")


def diff_html(result: DiffResult, grids_a: dict[int, bytes], grids_b: dict[int, bytes]) -> str:
    """The page; ``grids_a``/``grids_b`` map latent index -> traversal grid PNG."""
    e = html.escape
    c = result.counts()
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        f"<title>lexflow diff: {e(result.a.uri)} vs {e(result.b.uri)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Meanings across versions</h1>",
        f"<p>A <code>{e(result.a.uri)}</code> ({e(result.a.model_uri)}, run "
        f"<code>{e(result.a.run_id)}</code>, explainer <code>{e(result.a.explainer)}</code>)<br>"
        f"B <code>{e(result.b.uri)}</code> ({e(result.b.model_uri)}, run "
        f"<code>{e(result.b.run_id)}</code>, explainer <code>{e(result.b.explainer)}</code>)</p>",
        f"<p><b>since {e(result.against)}: {e(result.summary())}</b> · "
        + " · ".join(f"{n} {e(STATUS_TITLES[s])}" for s, n in c.items())
        + f"</p><p>Similarity from {e(', '.join(result.components))}; same meaning at "
        f"&ge; {result.same_threshold}, a match at &ge; {result.match_threshold}.</p>",
    ]
    out.extend(f"<p class='warn'>Warning: {e(w)}</p>" for w in result.warnings)
    out.append("<table><tr><th>status</th><th>similarity</th><th>A</th><th>B</th></tr>")
    for m in result.matches:
        sim = "-" if m.similarity is None else f"{m.similarity:.2f}"
        comps = ", ".join(f"{e(k)} {v:.2f}" for k, v in m.components.items())
        title = STATUS_TITLES[m.status] + (" (reversed)" if m.reversed else "")
        out.append(f"<tr class='{e(m.status)}'><td>{e(title)}</td><td>{sim}<br><small>{comps}"
                   f"</small></td>{_cell(result, m, 'a', grids_a)}{_cell(result, m, 'b', grids_b)}"
                   "</tr>")
    out.append("</table></body></html>")
    return "\n".join(out)
