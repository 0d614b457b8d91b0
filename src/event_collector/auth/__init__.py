"""Tenants, OAuth2 clients, token issuance and verification."""
