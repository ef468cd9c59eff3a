"""OpenAPI generation: every operation documents Hone's one error body."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ErrorItemSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="What is wrong: a field, 'file', or 'detail'.")
    message = serializers.CharField()
    line = serializers.IntegerField(
        required=False, help_text="Imports only: the line (or list item) of the file, 0 = file."
    )


class ErrorSerializer(serializers.Serializer):
    errors = ErrorItemSerializer(many=True)


ERROR_CODES = {
    "400": "Invalid input; every problem is listed.",
    "403": "Not signed in, or your role in this project does not allow this.",
    "404": "No such object in a project you belong to.",
    "405": "Method not allowed.",
    "415": "The body's media type is not accepted or the body cannot be parsed.",
    "409": "Conflicts with the current state (e.g. an iteration is already running).",
    "413": "The request body is larger than the endpoint accepts.",
    "429": "Too many requests.",
}


class HoneAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in ERROR_CODES.items():
            if code not in responses:
                response = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                response["description"] = description
                responses[code] = response
        return responses
