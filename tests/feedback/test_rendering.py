"""Model output rendered as markdown, with every piece of HTML in it inert."""

from __future__ import annotations

import pytest

from feedback.rendering import markdown_to_html


@pytest.mark.parametrize(
    ("source", "html"),
    [
        ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
        (
            "hi <img src=x onerror=alert(2)> there",
            "<p>hi &lt;img src=x onerror=alert(2)&gt; there</p>",
        ),
        (
            '<div onclick="x">\n\nblock\n</div>',
            '<p>&lt;div onclick="x"&gt;</p>\n<p>block\n&lt;/div&gt;</p>',
        ),
        ("[x](javascript:alert(1))", '<p><a rel="noopener noreferrer nofollow">x</a></p>'),
        ("![tracker](http://evil.example/t.png)", "<p></p>"),
        (
            '```python\nx = "<b>" & 1\n```',
            '<pre><code class="language-python">x = "&lt;b&gt;" &amp; 1\n</code></pre>',
        ),
        ("**bold** and `code`", "<p><strong>bold</strong> and <code>code</code></p>"),
        ("1. one\n2. two", "<ol>\n<li>one</li>\n<li>two</li>\n</ol>"),
        (
            "[docs](https://example.org)",
            '<p><a href="https://example.org" rel="noopener noreferrer nofollow">docs</a></p>',
        ),
        ("", ""),
    ],
)
def test_markdown_to_html(source, html):
    assert markdown_to_html(source) == html
