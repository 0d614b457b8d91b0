"""Documentation that stands alone (issue 13 item 5): docs/configuration.md lists every setting,
and the README and docs/ link only to files in the repository."""

from __future__ import annotations

import re
from pathlib import Path

from event_collector.kit.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CONFIGURATION_DOC = REPO / "docs" / "configuration.md"
# Markdown links and images: [text](target) — the target up to a space or the closing paren.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)")


def _documented_settings() -> set[str]:
    """The EC_* names in the first cell of the table rows of docs/configuration.md."""
    names: set[str] = set()
    for line in CONFIGURATION_DOC.read_text().splitlines():
        if line.startswith("| `EC_"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"EC_[A-Z0-9_]+", first_cell))
    return names


def _settings_variables() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def test_configuration_table_lists_every_setting() -> None:
    documented, declared = _documented_settings(), _settings_variables()
    missing = sorted(declared - documented)
    stale = sorted(documented - declared)
    assert not missing, (
        "docs/configuration.md has no row for these settings of kit.settings.Settings; add a "
        "row `| `NAME` | default | meaning |` to the right section for each: " + ", ".join(missing)
    )
    assert not stale, (
        "docs/configuration.md documents settings that kit.settings.Settings does not have "
        "(renamed or removed?): " + ", ".join(stale)
    )


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_docs_link_only_to_files_in_the_repository() -> None:
    broken: list[str] = []
    for document in _markdown_files():
        text = document.read_text()
        for target in _LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # an external URL or an anchor on the same page
            path = (document.parent / target.split("#", 1)[0]).resolve()
            if not path.is_relative_to(REPO) or not path.exists():
                broken.append(f"{document.relative_to(REPO)}: ({target})")
        # Paths named in prose or code spans outside the repository are as unusable as links.
        for outside in re.findall(r"\.\./[\w./-]+", text):
            resolved = (document.parent / outside).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{document.relative_to(REPO)}: {outside}")
    assert not broken, "links or paths to files outside the repository or missing:\n" + "\n".join(
        broken
    )
