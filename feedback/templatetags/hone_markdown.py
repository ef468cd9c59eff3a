from django import template
from django.utils.safestring import SafeString, mark_safe

from feedback.rendering import markdown_to_html

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    """Render untrusted markdown; the output is sanitized (see feedback.rendering)."""
    return mark_safe(markdown_to_html(text))  # noqa: S308 (sanitized by nh3 above)
