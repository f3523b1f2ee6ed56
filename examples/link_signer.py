"""Download links for assets published by assetgate, without the asset tree.

granite-assets' ``build_download_url(key, ttl_seconds)`` decides between a public
URL and a signed private one by looking for the file under ``storage_path`` on the
application's own disk. With the S3 backend (or any deployment where the
application does not share assetgate's disk) there is no such file and granite
raises ``AssetAccessNotSupportedError("... asset not found")``. This module mints
the same links from what the application already knows: the key and the
visibility of the ``upload.finalized`` event (``data.key``, ``data.visibility``).

Byte for byte what granite-assets 0.1.7 returns (``LocalNginxAssetRepository``):

    public:  {base_url.rstrip("/")}/{public_prefix}/{key}
    private: {base_url.rstrip("/")}/{private_prefix}/{key}?md5={token}&expires={expires}
             uri     = urlparse(base_url).path.rstrip("/") + f"/{private_prefix}/{key}"
             token   = base64url_nopad(md5(f"{expires}{uri} {secret}"))
             expires = now + ttl_seconds (default 3600)

``tests/link_signers.rs`` runs this file, ``examples/link_signer.mjs`` and the real
granite-assets on granite's stored vectors and on generated keys and compares the
bytes; ``assetgate verify link`` accepts what it signs.

Like granite, the key goes into ``url`` raw (an HTTP client percent-encodes spaces
and non-ASCII on the wire; nginx decodes them back, so the hash matches). With
``encoded=True`` the path is percent-encoded as a client sends it (byte for byte
``assetgate sign link``): use that form where a raw URL is not safe (HTML, JSON
handed to other tools). Keys nginx would rewrite (empty, leading ``/``, ``//``,
a trailing ``/``, ``.`` or ``..`` segments, control characters) are refused:
no link to them can ever verify, and assetgate never publishes them.

Standard library only (Python 3.8+; run here with 3.11 and 3.12). Copy the file
into the application, or run it:

    python3 link_signer.py --base-url https://media.example.com/assets \\
        --secret-file /run/secrets/link_secret --ttl 600 invoices/inv-001.pdf private

The secret is assetgate's ``[link] secrets`` newest entry (granite's
``secure_link_secret``). Verify the event's signature (Standard Webhooks, see
docs/events.md) before trusting its visibility.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import time
import unicodedata
import urllib.parse

PUBLIC = "public"
PRIVATE = "private"
DEFAULT_TTL_SECONDS = 3600  # granite's secure_link_ttl_seconds

# Bytes a client sends as they are in a path (RFC 3986 pchar minus '%');
# everything else is %XX (uppercase hex), as `assetgate sign link` prints.
_PATH_SAFE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/!$&'()*+,;=:@"
)


class LinkSigner:
    """Mints granite's download links for one ``base_url`` and secret."""

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        public_prefix: str = PUBLIC,
        private_prefix: str = PRIVATE,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
    ) -> None:
        if not secret:
            raise ValueError("the link secret is empty")
        parts = urllib.parse.urlparse(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an absolute http(s) URL: {base_url!r}")
        # granite signs urlparse(base_url).path raw; a query, fragment, ';params'
        # or '%' there would make the signed path differ from nginx's $uri.
        if parts.params or parts.query or parts.fragment or "%" in parts.path:
            raise ValueError(f"base_url must be scheme://host[:port][/path], nothing more: {base_url!r}")
        self._base = base_url.rstrip("/")
        self._base_path = parts.path.rstrip("/")
        self._origin = self._base[: len(self._base) - len(self._base_path)]
        self._secret = secret
        self._prefixes = {PUBLIC: public_prefix, PRIVATE: private_prefix}
        self._ttl = ttl_seconds

    def download_url(
        self,
        key: str,
        visibility: str,
        ttl_seconds: int | None = None,
        *,
        expires: int | None = None,
        encoded: bool = False,
    ) -> str:
        """The link granite's ``build_download_url`` would return for an asset
        stored with ``visibility`` (``"public"`` or ``"private"``).

        ``expires`` (Unix seconds) overrides ``now + ttl_seconds``. Public links
        never expire and carry no signature, as granite's."""
        _check_key(key)
        if visibility not in self._prefixes:
            raise ValueError(f"visibility must be 'public' or 'private', not {visibility!r}")
        path = f"/{self._prefixes[visibility]}/{key}"
        shown = self._base_path + path
        if encoded:
            shown = _encode_path(shown)
        url = self._origin + shown
        if visibility == PUBLIC:
            return url
        if expires is None:
            ttl = self._ttl if ttl_seconds is None else ttl_seconds
            expires = int(time.time()) + ttl
        if not isinstance(expires, int) or isinstance(expires, bool):
            raise ValueError("expires must be an integer")
        token = sign(self._secret, self._base_path + path, expires)
        return f"{url}?md5={token}&expires={expires}"

    def from_event(
        self,
        event: dict,
        ttl_seconds: int | None = None,
        *,
        expires: int | None = None,
        encoded: bool = False,
    ) -> str:
        """The link for the asset of a verified ``upload.finalized`` event
        (the parsed JSON body: ``{"type": ..., "data": {"key", "visibility", ...}}``).
        Any other event (``upload.failed``: nothing was published) is refused."""
        if event.get("type") != "upload.finalized":
            raise ValueError(f"not an upload.finalized event: {event.get('type')!r}")
        data = event["data"]
        return self.download_url(
            data["key"], data["visibility"], ttl_seconds, expires=expires, encoded=encoded
        )


def sign(secret: str, uri: str, expires: int) -> str:
    """nginx ``secure_link_md5 "$secure_link_expires$uri SECRET"``, base64url, no padding."""
    digest = hashlib.md5(f"{expires}{uri} {secret}".encode("utf-8")).digest()  # noqa: S324 (nginx's format)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _encode_path(path: str) -> str:
    return "".join(chr(b) if b in _PATH_SAFE else f"%{b:02X}" for b in path.encode("utf-8"))


def _check_key(key: str) -> None:
    if not key or key.startswith("/"):
        raise ValueError(f"asset key must be non-empty and not start with '/': {key!r}")
    if any(unicodedata.category(c) == "Cc" for c in key):
        raise ValueError("asset key contains a control character")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(
                f"asset key has an empty, '.' or '..' segment (nginx would sign another path): {key!r}"
            )


def _batch() -> int:
    """Test driver: a JSON array of cases on stdin, one result per case on stdout
    (``{"url", "encoded", "event_url"}`` or ``{"error": ...}``). ``event_url``
    comes from ``case["event"]`` through ``from_event``."""
    out = []
    for case in json.load(sys.stdin):
        s = LinkSigner(case["base_url"], case["secret"])
        args = (case["key"], case["visibility"])
        try:
            result = {
                "url": s.download_url(*args, expires=case["expires"]),
                "encoded": s.download_url(*args, expires=case["expires"], encoded=True),
            }
        except ValueError as e:
            result = {"error": str(e)}
        try:
            result["event_url"] = s.from_event(case["event"], expires=case["expires"])
        except ValueError as e:
            result["event_error"] = str(e)
        out.append(result)
    json.dump(out, sys.stdout, ensure_ascii=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Mint a granite download link without the asset tree.")
    ap.add_argument("--batch", action="store_true", help="test driver: JSON cases on stdin")
    ap.add_argument("--base-url", help="granite's base_url, e.g. https://media.example.com/assets")
    ap.add_argument("--secret-file", help="file holding the link secret (first line)")
    ap.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime in seconds")
    ap.add_argument("--expires", type=int, help="absolute expiry, Unix seconds")
    ap.add_argument("--encoded", action="store_true", help="percent-encode the path")
    ap.add_argument("key", nargs="?")
    ap.add_argument("visibility", nargs="?", choices=[PUBLIC, PRIVATE])
    a = ap.parse_args(argv)
    if a.batch:
        return _batch()
    if not (a.base_url and a.secret_file and a.key and a.visibility):
        ap.error("--base-url, --secret-file, KEY and VISIBILITY are required")
    with open(a.secret_file, encoding="utf-8") as f:
        secret = f.readline().strip()
    try:
        url = LinkSigner(a.base_url, secret).download_url(
            a.key, a.visibility, a.ttl, expires=a.expires, encoded=a.encoded
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
