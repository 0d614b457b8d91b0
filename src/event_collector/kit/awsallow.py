"""Which SQS queues and SNS topics may be sent to with the server's own AWS credentials.

A subscription without its own ``accessKey`` is sent with the credentials the server runs with
(environment, instance role). Those may reach queues and topics the tenant does not own, so the
operator names the destinations they may be used for in ``EC_AWS_SERVER_CREDENTIALS_ALLOW``
(comma-separated entries); anything else is refused (400 when the subscription is written, and a
failed delivery if a stored one no longer qualifies). Empty (the default) refuses them all.

Entries (each optionally prefixed ``<tenant>=`` to apply to that tenant only):

* ``123456789012``: a 12-digit AWS account id (the queue URL's or topic ARN's account);
* ``arn:...``: an ARN prefix, matched against the topic ARN, or the queue's ARN
  (``arn:aws:sqs:<region>:<account>:<queue>``);
* ``https://...`` / ``http://...``: a queue URL prefix;
* ``*``: any destination (a local AWS stand-in such as moto or LocalStack).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SETTING = "EC_AWS_SERVER_CREDENTIALS_ALLOW"
_ACCOUNT = re.compile(r"^\d{12}$")
_TENANT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True, slots=True)
class _Entry:
    tenant: str | None
    kind: str  # any | account | arn | url
    value: str


def _parse_entry(raw: str) -> _Entry:
    text = raw.strip()
    tenant: str | None = None
    head, sep, rest = text.partition("=")
    if sep and "://" not in head and not head.startswith("arn:"):
        if not _TENANT.match(head.strip()):
            raise ValueError(f"{raw!r}: {head.strip()!r} is not a tenant id")
        tenant, text = head.strip(), rest.strip()
    if text == "*":
        return _Entry(tenant, "any", text)
    if _ACCOUNT.match(text):
        return _Entry(tenant, "account", text)
    if text.startswith("arn:") and len(text.split(":")) >= 3:
        return _Entry(tenant, "arn", text)
    if text.startswith(("https://", "http://")) and urlsplit(text).hostname:
        return _Entry(tenant, "url", text)
    raise ValueError(
        f"{raw!r} is not an allow-list entry: use a 12-digit account id, an ARN prefix "
        "(arn:aws:sqs:... / arn:aws:sns:...), a queue URL prefix (https://...), or *, "
        "each optionally as <tenant>=<entry>"
    )


def parse(entries: Sequence[str]) -> tuple[_Entry, ...]:
    """The entries of the setting; ValueError naming the first bad one."""
    return tuple(_parse_entry(entry) for entry in entries if entry.strip())


@dataclass(frozen=True, slots=True)
class Target:
    """What a destination is, for matching: its URL or ARN, its ARN, its account."""

    address: str
    arn: str | None
    account: str | None


def target_of(destination_type: str, config: Mapping[str, Any]) -> Target:
    if destination_type == "SNS":
        arn = str(config.get("topicArn") or "")
        fields = arn.split(":")
        return Target(arn, arn, fields[4] if len(fields) > 5 else None)
    url = str(config.get("queueUrl") or "")
    try:
        parts = urlsplit(url)
    except ValueError:
        return Target(url, None, None)
    segments = parts.path.strip("/").split("/")
    if len(segments) != 2:
        return Target(url, None, None)
    account, name = segments
    partition = "aws-cn" if (parts.hostname or "").endswith(".cn") else "aws"
    region = str(config.get("region") or "")
    return Target(url, f"arn:{partition}:sqs:{region}:{account}:{name}", account)


class ServerCredentialsPolicy:
    """The operator's allow-list, asked per (tenant, destination)."""

    def __init__(self, entries: Sequence[str]) -> None:
        self._entries = parse(entries)

    def allows(self, tenant: str, destination_type: str, config: Mapping[str, Any]) -> bool:
        target = target_of(destination_type, config)
        for entry in self._entries:
            if entry.tenant is not None and entry.tenant != tenant:
                continue
            if entry.kind == "any":
                return True
            if entry.kind == "account" and target.account == entry.value:
                return True
            if (
                entry.kind == "arn"
                and target.arn is not None
                and target.arn.startswith(entry.value)
            ):
                return True
            if entry.kind == "url" and target.address.startswith(entry.value):
                return True
        return False

    def refusal(self, tenant: str, destination_type: str, config: Mapping[str, Any]) -> str | None:
        """Why this destination may not use the server's credentials, or None (also None when
        the destination has its own keys)."""
        if config.get("accessKey") or self.allows(tenant, destination_type, config):
            return None
        return (
            "the server's own AWS credentials are not allowed for this destination: send "
            f"accessKey and accessSecret (or ask the operator to allow it in {SETTING})"
        )
