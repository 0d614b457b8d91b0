"""Applying events to the read model: the ingest hook (``hook``), the payload decoding
(``payloads``), the rules (``rules``) and the repositories they run against."""
