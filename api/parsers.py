"""The API's JSON parser (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES). A module of its own: DRF
imports it while defining APIView, so it may not import DRF's views."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from feedback.imports import json_loads


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, refusing with a 400 what feedback.imports.json_loads refuses: NaN,
    Infinity and numbers past a float (DRF lets 1e400 through as infinity), and nesting past
    MAX_JSON_DEPTH (deep enough, DRF's parser ends in a RecursionError: a 500)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json_loads(stream.read().decode(encoding))
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from None
