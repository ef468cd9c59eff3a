"""URL converters. `id`: a database id, at most 18 digits, so that a crafted number never
overflows a 64-bit column (SQLite raises, PostgreSQL refuses); a longer one is a plain 404."""


class IdConverter:
    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
