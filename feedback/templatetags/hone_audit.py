"""How the audit page shows an event's state: compact JSON, the way the API returns it."""

import json

from django import template
from django.core.serializers.json import DjangoJSONEncoder

register = template.Library()


@register.filter
def audit_json(value) -> str:
    """ "-" for no state (nothing before a creation, nothing after a removal)."""
    if value is None:
        return "-"
    return json.dumps(value, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)
