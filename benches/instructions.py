#!/usr/bin/env python3
"""Instructions per request of the whole daemon, counted by callgrind.

Wall-clock figures on a shared 2-core machine are noise; instruction counts of
the same binary on the same requests are not. This driver runs a release
binary under `valgrind --tool=callgrind`, sends it N requests, one after the
other, over ONE keep-alive connection, stops it with SIGTERM and reads the
total instruction count (all threads: the runtime's worker, the blocking pool,
the log writer thread). It does it again with 2N requests: the difference,
divided by N, is the cost of one request in the steady state, without start-up,
the first request's lazy initialisation or shutdown (all counted once in both
runs, so they cancel).

Cases (the same bytes go to assetgate and to the floor):

- `auth`: `GET /auth` as nginx's `auth_request` subrequest sends it with the
  shipped `nginx/assetgate-locations.conf` (Host, X-Original-URI,
  X-Original-Method, X-Real-IP), a valid link: assetgate answers 204.
- `tusd`: `POST /tusd` as tusd v2.9.1 sends a pre-create hook, the body of
  `tests/fixtures/tusd-v2/pre-create.json` with a fresh token: assetgate
  answers `{}` (accepted), after a `stat` of the destination (`[storage] root`
  and `[tusd] upload_dir` set, as deployed).

The floor is `examples/hyper_floor.rs`: the same HTTP stack and runtime
settings, answering `{}` without looking at anything. assetgate runs with its
defaults (`log_level = "info"`, text, one line per decision, stderr to a file).

The tokens are computed here (md5 / HMAC-SHA256 with the layouts granite-assets
uses; `tests/granite_links.rs` and the fixtures pin those layouts to the real
library), so the driver needs nothing but Python and valgrind.

    benches/instructions.py --bin target/release/assetgate \
        --floor target/release/examples/hyper_floor [--n 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/tusd-v2/pre-create.json"
LINK_SECRET = "bench-link-secret-0123456789"
UPLOAD_SECRET = "bench-upload-secret-0123456789"


def link_target(uri: str, expires: int) -> str:
    digest = hashlib.md5(f"{expires}{uri} {LINK_SECRET}".encode()).digest()
    md5 = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return f"{uri}?md5={md5}&expires={expires}"


def pre_create_body(expires: int) -> bytes:
    body = json.loads(FIXTURE.read_text())
    meta = body["Event"]["Upload"]["MetaData"]
    meta["upload-expires"] = str(expires)
    payload = f"{expires}:{meta['asset-key']}:{meta['visibility']}:{meta['content-type']}"
    meta["upload-token"] = hmac.new(UPLOAD_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    header = ", ".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())
    body["Event"]["HTTPRequest"]["Header"]["Upload-Metadata"] = [header]
    # tusd sends compact JSON (Go's encoding/json).
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def requests(port: int) -> dict[str, bytes]:
    expires = int(time.time()) + 3600
    target = link_target("/private/bench/file-0001.bin", expires)
    auth = (
        "GET /auth HTTP/1.1\r\n"
        f"Host: assetgate\r\n"
        f"X-Original-URI: {target}\r\n"
        "X-Original-Method: GET\r\n"
        "X-Real-IP: 127.0.0.1\r\n\r\n"
    ).encode()
    body = pre_create_body(expires)
    tusd = (
        "POST /tusd HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "User-Agent: Go-http-client/1.1\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\n"
        "Accept-Encoding: gzip\r\n\r\n"
    ).encode() + body
    return {"auth": auth, "tusd": tusd}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """One HTTP/1.1 response (Content-Length or none for 204); returns status, body."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        rest += chunk
    del buf[:]
    buf += rest[length:]
    return status, rest[:length]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


LOG_LEVEL = "info"


def config(port: int, work: Path) -> str:
    return (
        f'listen = "127.0.0.1:{port}"\n'
        f'log_level = "{LOG_LEVEL}"\nlog_format = "text"\n'
        f'[link]\nsecrets = ["{LINK_SECRET}"]\n'
        f'[upload]\nsecrets = ["{UPLOAD_SECRET}"]\n'
        f'[storage]\nroot = "{work}/assets"\n'
        f'[tusd]\nupload_dir = "{work}/uploads"\n'
    )


def callgrind_total(path: Path) -> int:
    text = path.read_text(errors="replace")
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    if not m:
        raise RuntimeError(f"no totals in {path}")
    return int(m.group(1))


def run_once(server: str, binary: str, case: str, n: int, work: Path, tag: str) -> int:
    """Total instructions of one server process serving `n` requests of `case`."""
    port = free_port()
    out = work / f"callgrind.{tag}.out"
    if server == "assetgate":
        cfg = work / "assetgate.toml"
        cfg.write_text(config(port, work))
        args = [binary, "--config", str(cfg), "serve"]
    else:
        args = [binary, f"127.0.0.1:{port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETGATE_")}
    log = open(work / f"{tag}.log", "wb")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
         "--compress-strings=no", "--compress-pos=no", *args],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(port, proc)
        req = requests(port)[case]
        want = {("assetgate", "auth"): 204, ("assetgate", "tusd"): 200}.get((server, case), 200)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = bytearray()
            for _ in range(n):
                s.sendall(req)
                status, body = read_response(s, buf)
                if status != want or (server == "assetgate" and case == "tusd" and body != b"{}"):
                    raise RuntimeError(f"{server} {case}: {status} {body[:200]!r}")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    return callgrind_total(out)


def per_request(server: str, binary: str, case: str, n: int, work: Path) -> dict:
    a = run_once(server, binary, case, n, work, f"{server}-{case}-{n}")
    b = run_once(server, binary, case, 2 * n, work, f"{server}-{case}-{2 * n}")
    return {"n": n, "total_n": a, "total_2n": b, "per_request": round((b - a) / n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "target/release/assetgate"))
    ap.add_argument("--floor", default=str(ROOT / "target/release/examples/hyper_floor"))
    ap.add_argument("--n", type=int, default=200, help="requests in the short run (the long run sends 2N)")
    ap.add_argument("--cases", default="auth,tusd")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--log-level", default="info", help="assetgate's log_level (the product logs at info)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--keep", help="keep the callgrind profiles (callgrind.*.out) in this directory")
    args = ap.parse_args()
    global LOG_LEVEL
    LOG_LEVEL = args.log_level
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="assetgate-ir-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "assets" / "public").mkdir(parents=True, exist_ok=True)
        (work / "uploads").mkdir(exist_ok=True)
        for case in args.cases.split(","):
            row = {"assetgate": per_request("assetgate", args.bin, case, args.n, work)}
            if not args.no_floor:
                row["floor"] = per_request("floor", args.floor, case, args.n, work)
                row["ratio"] = round(row["assetgate"]["per_request"] / row["floor"]["per_request"], 3)
            res[case] = row
            floor = row.get("floor", {}).get("per_request", "-")
            print(f"{case}: assetgate {row['assetgate']['per_request']:,} Ir/request, "
                  f"floor {floor if isinstance(floor, str) else f'{floor:,}'}"
                  + (f", ratio {row['ratio']}" if "ratio" in row else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
