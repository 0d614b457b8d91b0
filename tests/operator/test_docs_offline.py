"""The documentation pages load everything from the service itself (issue 13 item 3)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

# Quoted URLs in the pages' inline scripts (Swagger UI's `url: '/openapi.json'`,
# `oauth2RedirectUrl`, ReDoc's spec-url attribute is picked up as an attribute below).
_SCRIPT_URL = re.compile(r"""(?:url|oauth2RedirectUrl)['"]?\s*:\s*[^'"]*['"]([^'"]+)['"]""")


class _References(HTMLParser):
    """Every URL a page makes the browser fetch: script src, link href, img src, spec-url, and
    the URLs its inline scripts name."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in ("src", "href", "spec-url"):
                self.urls.append(value)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls.extend(_SCRIPT_URL.findall(data))


@pytest.mark.parametrize(
    ("page", "expected_assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "/openapi.json"}),
        ("/redoc", {"redoc.standalone.js", "/openapi.json"}),
    ],
)
async def test_docs_page_and_every_asset_come_from_the_service(
    client, page: str, expected_assets: set[str]
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    parser = _References()
    parser.feed(response.text)
    urls = set(parser.urls)
    for expected in expected_assets:
        assert any(url.endswith(expected) for url in urls), (expected, urls)
    # Nothing from a CDN or any other host: not in attributes, not in the inline script.
    assert not re.search(r"https?://", response.text), response.text
    assert all(url.startswith("/") for url in urls), urls
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"], url
        if url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css"), url


async def test_swagger_ui_oauth2_redirect_is_served(client) -> None:
    response = await client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "oauth2" in response.text.lower()


async def test_vendored_assets_ship_their_licences(client) -> None:
    for path in ("/docs-assets/swagger-ui/LICENSE", "/docs-assets/redoc/LICENSE"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "License" in response.text or "LICENSE" in response.text
