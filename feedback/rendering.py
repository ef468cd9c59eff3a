"""Markdown for untrusted text (model output, prompts, guidelines), rendered server-side.

Raw HTML in the source is never passed through: Python-Markdown's raw-HTML processors are
removed, so `<script>` or `<img onerror=...>` come out as escaped text, visible and inert.
The HTML produced is then cleaned by nh3 against a short allow-list (no images, no
attributes but `href`/`title` on links and `class` on code, http(s)/mailto links only) as a
second, independent line of defence.
"""

from __future__ import annotations

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
