#!/usr/bin/env python3
"""Repeated downloads of ONE link: native secure_link vs the gate, with and
without the optional nginx cache of the gate's allows
(nginx/assetgate-auth-cache.conf).

    benches/cache_ab.py [--bin target/release/assetgate] [--rounds 3] [--secs 5]

One nginx (worker_processes auto, access_log off) serves three servers over the
same 1 KiB file and the same link:

- (a) native `secure_link`, no daemon;
- (c) the shipped nginx/assetgate-locations.conf + assetgate-upstream.conf
  (upstream address rewritten), assetgate at its defaults (`info`, text log);
- (c+cache) the same, with the snippet of nginx/assetgate-auth-cache.conf
  (10 s) added to `location = /_assetgate`.

wrk -t2 -c32 runs each for --secs, interleaved (a, c, c+cache; then rotated)
over --rounds rounds; ratios are medians of the per-round ratios. The gate's
decision counter (/metrics) tells how many subrequests reached it in each case.
On a shared machine these wall-clock figures are noisy: read the ratios, and
the decision counts, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-link-secret-0123456789"
CACHE = """
    proxy_cache assetgate_auth;
    proxy_cache_key $request_uri;
    proxy_cache_methods GET HEAD;
    proxy_cache_valid 204 10s;
    proxy_ignore_headers X-Accel-Expires;
    proxy_cache_lock on;"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not up")


def decisions(gate: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{gate}/metrics").read().decode()
    return sum(int(float(m.group(1))) for m in re.finditer(
        r'^assetgate_decisions_total\{[^}]*endpoint="auth"[^}]*\} (\S+)', text, re.M))


def wrk(url: str, secs: float) -> float:
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{secs}s", url], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if re.search(r"Non-2xx", out):
        raise RuntimeError(f"errors: {out}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/assetgate"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="assetgate-cache-"))
    os.chmod(work, 0o755)
    procs = []
    try:
        f = work / "assets/private/bench/file-0001.bin"
        f.parent.mkdir(parents=True)
        f.write_bytes(os.urandom(1024))
        for d in [work / "assets", work / "assets/private", f.parent]:
            os.chmod(d, 0o755)
        uri = "/private/bench/file-0001.bin"
        expires = int(time.time()) + 3600
        md5 = base64.urlsafe_b64encode(hashlib.md5(f"{expires}{uri} {SECRET}".encode()).digest()).decode().rstrip("=")
        link = f"{uri}?md5={md5}&expires={expires}"
        gate, pa, pc, pk = free_port(), free_port(), free_port(), free_port()
        (work / "gate.toml").write_text(
            f'listen = "127.0.0.1:{gate}"\nlog_level = "info"\nlog_format = "text"\n'
            f'[link]\nsecrets = ["{SECRET}"]\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETGATE_")}
        procs.append(subprocess.Popen([args.bin, "--config", str(work / "gate.toml"), "serve"],
                                      stdout=open(work / "gate.log", "wb"), stderr=subprocess.STDOUT, env=env))
        wait_port(gate)
        up = (ROOT / "nginx/assetgate-upstream.conf").read_text().replace("127.0.0.1:9750", f"127.0.0.1:{gate}")
        loc = (ROOT / "nginx/assetgate-locations.conf").read_text()
        anchor = "proxy_pass http://assetgate/auth;"
        assert anchor in loc
        (work / "up.conf").write_text(up)
        (work / "loc.conf").write_text(loc)
        (work / "loc-cache.conf").write_text(loc.replace(anchor, anchor + CACHE))
        d = work / "nginx"
        d.mkdir()
        # The locations include assetgate/assetgate-types.conf relative to
        # nginx's configuration directory, as on a real install.
        (d / "assetgate").mkdir()
        (d / "assetgate" / "assetgate-types.conf").symlink_to(ROOT / "nginx/assetgate-types.conf")
        user = "user root;\n" if os.geteuid() == 0 else ""
        (d / "nginx.conf").write_text(
            f"{user}worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  sendfile on;\n  keepalive_requests 100000;\n"
            f"  client_body_temp_path {d}/cb; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;\n"
            f"  uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;\n"
            f"  proxy_cache_path {d}/cache levels=1:2 keys_zone=assetgate_auth:1m max_size=16m inactive=30s use_temp_path=off;\n"
            f"  include {work}/up.conf;\n"
            f"  server {{ listen 127.0.0.1:{pa}; root {work}/assets;\n"
            "    location /private/ { secure_link $arg_md5,$arg_expires;\n"
            f'      secure_link_md5 "$secure_link_expires$uri {SECRET}";\n'
            '      if ($secure_link = "") { return 403; }\n      if ($secure_link = "0") { return 410; }\n'
            "      try_files $uri =404; } }\n"
            f"  server {{ listen 127.0.0.1:{pc}; root {work}/assets; include {work}/loc.conf; }}\n"
            f"  server {{ listen 127.0.0.1:{pk}; root {work}/assets; include {work}/loc-cache.conf; }}\n"
            "}\n")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        procs.append(subprocess.Popen([nginx, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log"),
                                       "-g", "daemon off;"]))
        for p in (pa, pc, pk):
            wait_port(p)
        cases = {"a": pa, "c": pc, "c+cache": pk}
        for name, port in cases.items():  # check, and warm up
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}{link}").read()
            assert body == f.read_bytes(), name
            wrk(f"http://127.0.0.1:{port}{link}", 1)
        res = {n: [] for n in cases}
        reached = {n: [] for n in cases}
        order = list(cases)
        for r in range(args.rounds):
            for name in order[r % 3:] + order[:r % 3]:
                before = decisions(gate)
                res[name].append(wrk(f"http://127.0.0.1:{cases[name]}{link}", args.secs))
                reached[name].append(decisions(gate) - before)
                print(f"round {r + 1} {name}: {res[name][-1]:,.0f} req/s, gate decisions {reached[name][-1]:,}",
                      flush=True)
        ca = [c / a for c, a in zip(res["c"], res["a"])]
        ka = [k / a for k, a in zip(res["c+cache"], res["a"])]
        print(f"(c)/(a) per round {[round(x, 3) for x in ca]}, median {statistics.median(ca):.3f}")
        print(f"(c+cache)/(a) per round {[round(x, 3) for x in ka]}, median {statistics.median(ka):.3f}")
        print(f"median req/s: a {statistics.median(res['a']):,.0f}, c {statistics.median(res['c']):,.0f}, "
              f"c+cache {statistics.median(res['c+cache']):,.0f}")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
