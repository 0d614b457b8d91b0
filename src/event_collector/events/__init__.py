"""Collecting entity events: validation, idempotent storage, listing."""
