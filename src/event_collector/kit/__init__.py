"""Shared plumbing: settings, database, errors, HTTP helpers, logging, metrics."""
