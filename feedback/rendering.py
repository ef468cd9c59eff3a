"""Markdown for untrusted text (model output, prompts, guidelines), rendered server-side.

Raw HTML in the source is never passed through: Python-Markdown's raw-HTML processors are
removed, so `<script>` or `<img onerror=...>` come out as escaped text, visible and inert.
The HTML produced is then cleaned by nh3 against a short allow-list (no images, no
attributes but `href`/`title` on links and `class` on code, http(s)/mailto links only) as a
second, independent line of defence.

`text_diff` shows reviewers what an edit or a correction changed.
"""

from __future__ import annotations

import difflib
import re

import markdown
import nh3

ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}}
URL_SCHEMES = {"http", "https", "mailto"}


def _converter() -> markdown.Markdown:
    md = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists"], output_format="html")
    md.preprocessors.deregister("html_block")  # block-level raw HTML
    md.inlinePatterns.deregister("html")  # inline raw HTML
    return md


def markdown_to_html(text: str) -> str:
    """Safe HTML for `text`. Model output is untrusted: nothing in it can run or load."""
    html = _converter().convert(text or "")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )


# Words, runs of white space and single other characters: a diff at this grain shows what a
# person changed in a sentence without breaking words apart.
_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def text_diff(before: str, after: str) -> list[tuple[str, str]]:
    """What changed from `before` to `after`, as (op, text) segments in order: "equal",
    "delete" (only in before) or "insert" (only in after). Plain text: a template escapes it
    as it shows it (<del>, <ins>)."""
    old, new = _TOKENS.findall(before or ""), _TOKENS.findall(after or "")
    segments: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            segments.append(("delete", "".join(old[i1:i2])))
        if op in ("insert", "replace"):
            segments.append(("insert", "".join(new[j1:j2])))
        if op == "equal":
            segments.append(("equal", "".join(old[i1:i2])))
    return segments
