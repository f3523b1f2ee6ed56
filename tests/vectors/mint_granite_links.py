"""Mint secure_link download-link vectors with the REAL granite-assets library.

Run with the peers venv (tests/peers/requirements.txt):

    .peers/venv/bin/python tests/vectors/mint_granite_links.py          # rewrites granite-links.json
    .peers/venv/bin/python tests/vectors/mint_granite_links.py --live   # fresh links as JSON on stdout

Every link comes out of granite's public API, exactly as an application would
call it: ``LocalNginxAssetRepositoryConfig`` -> ``build_asset_repository`` ->
``repo.build_download_url(key, ttl_seconds)``. Nothing here computes a token.
granite only signs a private asset that exists on disk, so each key is first
written as an empty file under a temporary ``storage_path/private/``.

Fields of a vector:

- ``url``: what ``build_download_url`` returned (granite puts the key in raw,
  not percent-encoded).
- ``request_target``: what an HTTP client sends for that ``url`` in its request
  line, i.e. what nginx sees as ``$request_uri`` and passes to assetgate as
  ``X-Original-URI``. Computed by Python ``requests``
  (``requests.Request("GET", url).prepare().path_url``: ``requote_uri`` encodes a
  space as ``%20``, non-ASCII as UTF-8 ``%XX``, keeps ``/``, ``~`` and the
  sub-delims ``!$&'()*+,;=``); urllib3's ``parse_url(url).request_uri`` is checked
  to agree, and the script stops if it does not.
- ``uri``: nginx's ``$uri`` for that request, which is the path granite signed
  (``urlsplit(url).path``; checked equal to granite's own ``_uri_path``).
- ``md5``, ``expires``: the raw argument values from ``url``.
- ``secret``: ``newest`` or ``older`` (the two secrets in ``secrets``: a gate that
  lists both must accept both, i.e. secret rotation).
- ``expect``: ``valid`` or ``expired``.

Expiry: granite computes ``expires = int(time.time()) + ttl`` (module
``granite_assets.repositories.local_nginx``, which does ``import time``).

- ``valid`` vectors use a TTL of 50 years (``LONG_TTL``), so the stored file stays
  valid until about 2076.
- ``expired`` vectors are made two ways. (1) A negative ``ttl_seconds``: granite
  0.1.7 does not validate the TTL, so ``build_download_url(key, -3600)`` signs a
  link that expired an hour before it was minted. (2) The library's clock is
  controlled: ``local_nginx.time`` is replaced, only for that call, by an object
  whose ``time()`` returns 1_000_000_000 (2001-09-09), and the library's default
  TTL (``secure_link_ttl_seconds`` = 3600) is used, so ``expires`` = 1000003600.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import types
import urllib.parse
from pathlib import Path
from unittest import mock

import requests
import urllib3.util
from granite_assets import LocalNginxAssetRepositoryConfig, build_asset_repository
from granite_assets.repositories import local_nginx

HERE = Path(__file__).resolve().parent
OUT = HERE / "granite-links.json"

# Fixed test secrets for the stored vectors (>= 16 bytes, assetgate's minimum).
SECRETS = {
    "newest": "granite-vectors-newest-7f3c9a1e",
    "older": "granite-vectors-older-2b8d4e60",
}

LONG_TTL = 50 * 365 * 86400 + 12 * 86400  # 50 years, leap days included
FIXED_CLOCK = 1_000_000_000  # 2001-09-09T01:46:40Z

BASE_URLS = [
    "https://media.example.com/assets",  # path prefix: uri = /assets/private/...
    "https://media.example.com/assets/",  # same, trailing slash (granite strips it)
    "https://media.example.com",  # no path: uri = /private/...
    "http://localhost:8080/",  # no path, trailing slash, port
    "https://cdn.example.com/static/media",  # two-segment prefix
]

KEYS = [
    "report.pdf",
    "invoices/inv-001.pdf",
    "a/b/c/d/deep.txt",
    "0b7e4c1a-3f2d-4e8a-9c61-5d0f2b7a9e13/0b7e4c1a-3f2d-4e8a-9c61-5d0f2b7a9e13.pdf",
    "reports/Q1 2026/summary final.pdf",
    "photos/été 2026/plage.jpg",
    "写真/東京 タワー.png",
    "docs/日本語.txt",
    "emoji/🎉 party.gif",
    "math/a+b=c.txt",
    "home/~user/notes.txt",
    "misc/f(1).txt",
    "quotes/it's here.txt",
    "alerts/wow!.txt",
    "mixed/ü+~(x)'y!z 名.bin",
]

# Few keys for the live mode: spaces, non-ASCII, sub-delims.
LIVE_KEYS = [
    "invoices/inv-001.pdf",
    "reports/Q1 2026/summary final.pdf",
    "photos/été 2026/plage.jpg",
    "写真/東京 タワー.png",
    "mixed/ü+~(x)'y!z 名.bin",
]


def request_target(url: str) -> str:
    """What ``requests`` sends in the request line for ``url``."""
    target = requests.Request("GET", url).prepare().path_url
    other = urllib3.util.parse_url(url).request_uri
    if target != other:
        raise SystemExit(f"requests and urllib3 disagree on {url!r}: {target!r} vs {other!r}")
    return target


class Minter:
    """One granite repository per (base_url, secret), files created on demand."""

    def __init__(self, storage: Path, secrets: dict[str, str]) -> None:
        self.storage = storage
        self.secrets = secrets
        self.repos: dict[tuple[str, str], object] = {}

    def repo(self, base_url: str, secret_name: str):
        k = (base_url, secret_name)
        if k not in self.repos:
            cfg = LocalNginxAssetRepositoryConfig(
                storage_path=str(self.storage),
                base_url=base_url,
                secure_link_secret=self.secrets[secret_name],
            )
            self.repos[k] = build_asset_repository(cfg)
        return self.repos[k]

    def mint(
        self,
        key: str,
        base_url: str,
        secret_name: str,
        expect: str,
        ttl: int | None,
        clock: int | None = None,
    ) -> dict:
        path = self.storage / "private" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        repo = self.repo(base_url, secret_name)
        ctx = (
            mock.patch.object(local_nginx, "time", types.SimpleNamespace(time=lambda: float(clock)))
            if clock is not None
            else contextlib.nullcontext()
        )
        with ctx:
            url = repo.build_download_url(key, ttl_seconds=ttl).url
        parts = urllib.parse.urlsplit(url)
        args = dict(a.split("=", 1) for a in parts.query.split("&"))
        if list(args) != ["md5", "expires"]:
            raise SystemExit(f"unexpected query from granite: {url!r}")
        uri = parts.path
        if uri != repo._uri_path("private", key):
            raise SystemExit(f"url path {uri!r} is not what granite signed")
        return {
            "key": key,
            "base_url": base_url,
            "url": url,
            "request_target": request_target(url),
            "uri": uri,
            "md5": args["md5"],
            "expires": int(args["expires"]),
            "secret": secret_name,
            "expect": expect,
        }


def stored_vectors(m: Minter) -> list[dict]:
    out = []
    for secret_name in ("newest", "older"):
        for base_url in BASE_URLS:
            for key in KEYS:
                out.append(m.mint(key, base_url, secret_name, "valid", LONG_TTL))
        # expired, way (1): negative TTL
        for key in KEYS:
            out.append(m.mint(key, BASE_URLS[0], secret_name, "expired", -3600))
        # expired, way (2): the library's clock pinned in 2001, default TTL
        for key in KEYS[:6]:
            out.append(m.mint(key, BASE_URLS[2], secret_name, "expired", None, clock=FIXED_CLOCK))
    return out


def live_vectors(m: Minter) -> list[dict]:
    out = []
    for secret_name in ("newest", "older"):
        for base_url in (BASE_URLS[0], BASE_URLS[2]):
            for key in LIVE_KEYS:
                # ttl_seconds=None: granite's default secure_link_ttl_seconds (3600 s)
                out.append(m.mint(key, base_url, secret_name, "valid", None))
        out.append(m.mint(LIVE_KEYS[2], BASE_URLS[0], secret_name, "expired", -60))
    return out


def document(secrets: dict[str, str], vectors: list[dict]) -> dict:
    return {
        "generator": "granite-assets",
        "version": importlib.metadata.version("granite-assets"),
        "python": platform.python_version(),
        "request_target_by": "requests {} PreparedRequest.path_url (urllib3 {} parse_url agrees)".format(
            importlib.metadata.version("requests"), importlib.metadata.version("urllib3")
        ),
        "generated_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "secrets": secrets,
        "vectors": vectors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--live",
        action="store_true",
        help="print freshly minted links (default TTL) as JSON on stdout; secrets from "
        "GRANITE_SECRET_NEWEST and GRANITE_SECRET_OLDER",
    )
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="granite-vectors-") as tmp:
        if opts.live:
            secrets = {
                "newest": os.environ["GRANITE_SECRET_NEWEST"],
                "older": os.environ["GRANITE_SECRET_OLDER"],
            }
            doc = document(secrets, live_vectors(Minter(Path(tmp), secrets)))
            json.dump(doc, sys.stdout, ensure_ascii=True, indent=1)
            sys.stdout.write("\n")
            return
        doc = document(SECRETS, stored_vectors(Minter(Path(tmp), SECRETS)))
    OUT.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for v in doc["vectors"]:
        counts[f"{v['secret']}/{v['expect']}"] = counts.get(f"{v['secret']}/{v['expect']}", 0) + 1
    print(f"wrote {OUT.name}: {len(doc['vectors'])} vectors {counts} (granite-assets {doc['version']})")


if __name__ == "__main__":
    main()
