"""Links from the REAL granite-assets library for a batch of cases, at a fixed
expiry: the oracle of tests/link_signers.rs for examples/link_signer.{py,mjs}.

    .peers/venv/bin/python tests/peers/granite_cases.py < cases.json

stdin: a JSON array of {"base_url", "secret", "key", "visibility", "expires"}.
stdout: one {"url": ...} per case, in order. Each key is first written as an
empty file under a temporary ``storage_path/<visibility>/`` (granite signs only
what it finds on disk: that is what an S3 deployment cannot give it), then
``build_download_url(key, 3600)`` is called with the library's clock
(``local_nginx.time``) reading ``expires - 3600``, so ``expires`` comes out as
asked. Only keys the signers accept are sent here (no ``..`` segments: the key
is a path under the temporary directory).
"""

import json
import sys
import tempfile
import types
from pathlib import Path
from unittest import mock

from granite_assets import LocalNginxAssetRepositoryConfig, build_asset_repository
from granite_assets.repositories import local_nginx

TTL = 3600


def main() -> int:
    out = []
    for case in json.load(sys.stdin):
        key = case["key"]
        if any(s in ("", ".", "..") for s in key.split("/")):
            raise SystemExit(f"not a case for granite (path outside its storage): {key!r}")
        with tempfile.TemporaryDirectory() as storage:
            f = Path(storage, case["visibility"], key)
            f.parent.mkdir(parents=True, exist_ok=True)
            f.touch()
            repo = build_asset_repository(
                LocalNginxAssetRepositoryConfig(
                    storage_path=storage,
                    base_url=case["base_url"],
                    secure_link_secret=case["secret"],
                )
            )
            clock = types.SimpleNamespace(time=lambda: case["expires"] - TTL)
            with mock.patch.object(local_nginx, "time", clock):
                out.append({"url": repo.build_download_url(key, ttl_seconds=TTL).url})
    json.dump(out, sys.stdout, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
