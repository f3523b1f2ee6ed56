"""tus concatenation (parallel uploads) by hand, with granite-minted metadata:
tuspy has no concatenation, so the requests are written here with `requests`,
as tus-js-client's `parallelUploads` sends them (tus 1.0.0, `Upload-Concat`).

Used by tests/e2e_tusd.rs. Prints one JSON object on stdout.

  python tus_concat.py --endpoint http://127.0.0.1:PORT/files/ --secret S \
      --key K --content-type CT --visibility private [--ttl 600] COMMAND ...

  partial --file F [--parts N]
      N partial uploads (`Upload-Concat: partial`) of consecutive slices of F,
      each created with the granite metadata (tus-js-client's
      `metadataForPartialUploads`) and uploaded in parallel threads.
      -> {"ok": true, "parts": [url, ...]} or {"ok": false, "status", "body", "phase"}
  final --part URL [--part URL ...]
      the final upload: `Upload-Concat: final;<part paths>` with the granite
      metadata, no body. -> {"ok": true, "url", "status"} or {"ok": false, "status", "body"}
  parallel --file F [--parts N]
      partial, then final. -> {"ok", "parts", "url" | "status", "body", "phase"}
"""

import argparse
import json
import sys
import threading
from urllib.parse import urljoin, urlparse

import requests

from tus_upload import mint

TUS = {"Tus-Resumable": "1.0.0"}


def create(endpoint: str, headers: dict) -> requests.Response:
    return requests.post(endpoint, headers={**TUS, **headers}, timeout=60)


def partial(endpoint: str, metadata: str, data: bytes, parts: int) -> dict:
    size = len(data)
    cuts = [size * i // parts for i in range(parts + 1)]
    urls = []
    for i in range(parts):
        r = create(
            endpoint,
            {
                "Upload-Concat": "partial",
                "Upload-Length": str(cuts[i + 1] - cuts[i]),
                "Upload-Metadata": metadata,
            },
        )
        if r.status_code != 201:
            return {"ok": False, "status": r.status_code, "body": r.text, "phase": "partial-create"}
        urls.append(urljoin(endpoint, r.headers["Location"]))

    results = [None] * parts

    def patch(i: int) -> None:
        r = requests.patch(
            urls[i],
            data=data[cuts[i] : cuts[i + 1]],
            headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
            timeout=60,
        )
        results[i] = (r.status_code, r.text)

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for status, body in results:
        if status != 204:
            return {"ok": False, "status": status, "body": body, "phase": "partial-patch", "parts": urls}
    return {"ok": True, "parts": urls}


def final(endpoint: str, metadata: str, parts: list) -> dict:
    paths = " ".join(urlparse(u).path for u in parts)
    r = create(endpoint, {"Upload-Concat": "final;" + paths, "Upload-Metadata": metadata})
    if r.status_code != 201:
        return {"ok": False, "status": r.status_code, "body": r.text, "phase": "final"}
    return {"ok": True, "status": r.status_code, "url": urljoin(endpoint, r.headers["Location"])}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--content-type", required=True)
    ap.add_argument("--visibility", default="private", choices=["public", "private"])
    ap.add_argument("--ttl", type=int, default=600)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("partial", "parallel"):
        p = sub.add_parser(name)
        p.add_argument("--file", required=True)
        p.add_argument("--parts", type=int, default=2)
    f = sub.add_parser("final")
    f.add_argument("--part", action="append", required=True)
    args = ap.parse_args()

    metadata = mint(args.endpoint, args.secret, args.key, args.content_type, args.ttl, args.visibility)[
        "Upload-Metadata"
    ]
    if args.command == "final":
        out = final(args.endpoint, metadata, args.part)
    else:
        with open(args.file, "rb") as fh:
            data = fh.read()
        out = partial(args.endpoint, metadata, data, args.parts)
        if out["ok"] and args.command == "parallel":
            out = {**final(args.endpoint, metadata, out["parts"]), "parts": out["parts"]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
