"""Hone's public REST API under /api/: see docs/api.md and the schema at /api/schema/."""
