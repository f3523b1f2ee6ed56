"""Downloads through nginx from SeaweedFS vs the same files from disk (issue 21).

    ASSETGATE_PEERS=.peers .peers/venv/bin/python benches/s3_downloads.py \\
        --bin target/release/assetgate [--rounds 3] [--duration 5]

Run with the peers venv (tests/peers/requirements.txt: granite-assets for the
links, boto3 for the bucket); `scripts/s3-peers.sh` builds SeaweedFS, and wrk
and nginx are the Debian packages benches/run.sh installs. It reuses
benches/run.py's helpers (processes, wrk and its parsing, interleaved rounds,
per-tree CPU time) and leaves run.py's sections as they are.

One nginx, two servers, the SHIPPED files (only upstream addresses and, for
the second gate, the upstream's name rewritten, as run.py does for its copies):

- (a) **fs**: `nginx/assetgate-locations.conf` over the asset tree on disk,
  auth_request to an assetgate with the fs backend: run.py's download case (c);
- (b) **s3**: `nginx/assetgate-s3-locations.conf` + `assetgate-s3-proxy.conf`
  and the `assetgate_s3` upstream of `nginx/assetgate-s3.conf.example`,
  auth_request to an assetgate with `[storage] backend = "s3"` (its `/auth`
  signs the object GET with the read-only identity), proxied to SeaweedFS;
- (s) **the store alone**: wrk straight to SeaweedFS's S3 port with GET URLs
  presigned by the same read-only identity (boto3): no nginx, no gate. What
  SeaweedFS itself can serve here, so (b)/(s) is what nginx + /auth cost on
  top of the store.

The same files in both: `benches/mint.py` (the real granite-assets) writes
them under `private/` on disk and mints the links; each is then put into the
bucket under the same key with the Content-Type nginx gives it from disk and
assetgate's marker metadata, as assetgate's publish would leave it. So one
link list serves both servers, and the sanity checks compare the bytes.

Sizes: 1 KiB (the size of run.py's download cases: per-request cost, where the
auth hop, the signing and the store's lookup dominate) and 1 MiB (a typical
image or document: the bytes' path, where nginx's sendfile from the page cache
meets SeaweedFS's read through its S3 gateway and nginx's proxy buffers).

SeaweedFS runs ONLY as tests/common/s3.rs starts it: the same `weed mini`
argument list (loopback, `-master.telemetry=false`), checked by the same guard
before it runs; both are compared with the Rust source at start, so a change
there stops this script instead of drifting from it. After the runs, every
socket weed holds must be on loopback (as `S3Engine::assert_loopback_only`).

Cases are interleaved (fs-1k s3-1k store-1k fs-1m s3-1m store-1m, rotating
each round, after a warm-up of each); figures are medians of rounds, and
(b)/(a) is the median of the per-round ratios. The CPU each process tree used
during a run (the two gates, weed, nginx) gives the CPU per request of each,
which says who pays for the difference and suffers much less from neighbours
than throughput does; "others" is the CPU the rest of the machine used
meanwhile (/proc/stat minus these trees and wrk), in cores.

Results: --out (default benches/results/s3downloads): results.json, table.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (benches/run.py: stdlib only at import)
from run import ROOT, BENCHES, LINK_SECRET, UPLOAD_SECRET, log  # noqa: E402

S3_RS = ROOT / "tests/common/s3.rs"
REGION = "us-east-1"
BUCKET = "assets"
SIZES = {"1k": 1024, "1m": 1024 * 1024}
# The Content-Type nginx serves a `.bin` from disk (assetgate-types.conf has no
# entry: the locations' default_type), so both sides send the same header.
CONTENT_TYPE = "application/octet-stream"
# The fs locations' upstream name, and the one the s3 gate's copy gets.
S3_GATE_UPSTREAM = "assetgate_s3gate"


# --------------------------------------------------------------------------- SeaweedFS, as tests/common/s3.rs


def rust_const(name: str) -> str:
    m = re.search(rf'pub const {name}: &str = "([^"]+)";', S3_RS.read_text())
    if not m:
        sys.exit(f"{S3_RS}: no `pub const {name}`")
    return m.group(1)


def seaweedfs_args(dir: Path, data: Path, identities: Path, s3_port: int) -> list[str]:
    """tests/common/s3.rs `seaweedfs_args`, element for element (checked against
    the source by `check_same_as_rust`)."""
    def p(flag: str) -> str:
        return f"-{flag}={bench.free_port()}"
    return [
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        # Never omit: the default posts statistics to the internet.
        "-master.telemetry=false",
        f"-s3.config={identities}",
        f"-s3.port={s3_port}",
        p("s3.port.grpc"),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        p("master.port"),
        p("master.port.grpc"),
        p("filer.port"),
        p("filer.port.grpc"),
        p("volume.port"),
        p("volume.port.grpc"),
        p("admin.port"),
        p("admin.port.grpc"),
        "-admin.port.legacy=0",
        "-admin.ui=false",
        "-webdav=false",
        f"-filer.localSocket={dir / 'filer.sock'}",
        f"-s3.localSocket={dir / 's3.sock'}",
    ]


REQUIRED = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"]
RISKY = ["telemetry", ".ip", "-ip", "Ip", "bind", "Bind", "metrics.address", "publicUrl", "externalUrl"]


def check_seaweedfs_args(args: list[str]) -> str | None:
    """tests/common/s3.rs `check_seaweedfs_args`: None, or why it must not run."""
    for want in REQUIRED:
        n = args.count(want)
        if n != 1:
            return f"`{want}` occurs {n} times (must be exactly once)"
    for a in (a for a in args if a not in REQUIRED):
        name = a.split("=", 1)[0]
        if any(r in name for r in RISKY):
            return f"`{a}` touches where SeaweedFS binds or reports"
        if "0.0.0.0" in a or "[::]" in a:
            return f"`{a}` names a wildcard address"
    return None


def check_same_as_rust(args: list[str]) -> None:
    """Exits unless `args` has the shape of the Rust `seaweedfs_args` (the same
    flags in the same order, the same literal values) and REQUIRED/RISKY are
    the Rust guard's lists."""
    src = S3_RS.read_text()
    body = src.split("pub fn seaweedfs_args(", 1)[1].split("vec![", 1)[1].split("\n    ]\n", 1)[0]
    want = []  # (flag name, the whole literal or None when computed)
    for fmt, port_flag, lit in re.findall(r'format!\("([^"]*)"|p\("([^"]+)"\)|"([^"]*)"\.into\(\)', body):
        if port_flag:
            want.append((f"-{port_flag}", None))
        elif fmt:
            want.append((fmt.split("=", 1)[0], None))
        else:
            want.append((lit.split("=", 1)[0], lit))
    got = [a.split("=", 1)[0] for a in args]
    if [w[0] for w in want] != got:
        sys.exit(f"{S3_RS} seaweedfs_args changed: {[w[0] for w in want]} != {got}; update {__file__}")
    for (name, lit), a in zip(want, args):
        if lit is not None and a != lit:
            sys.exit(f"{S3_RS} seaweedfs_args: `{lit}` here is `{a}`; update {__file__}")
    check = src.split("pub fn check_seaweedfs_args(", 1)[1].split("\n}\n", 1)[0]
    req = re.findall(r'"([^"]+)"', re.search(r"const REQUIRED[^=]*=\s*\[([^\]]*)\]", check).group(1))
    risky = re.findall(r'"([^"]+)"', re.search(r"let risky = \[([^\]]*)\]", check).group(1))
    if req != REQUIRED or risky != RISKY:
        sys.exit(f"{S3_RS} check_seaweedfs_args changed ({req}, {risky}); update {__file__}")


def sockets_of(pid: int) -> list[tuple[str, str, str]]:
    """Every inet socket `pid` holds: (table, local ip, remote ip), as
    tests/common/s3.rs `sockets_of` (fd inodes looked up in /proc/<pid>/net)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            t = os.readlink(fd)
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])

    def ip(hexaddr: str):
        h = hexaddr.split(":")[0]
        words = [bytes.fromhex(h[i:i + 8])[::-1] for i in range(0, len(h), 8)]
        b = b"".join(words)
        return IPv4Address(b) if len(b) == 4 else IPv6Address(b)

    out = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[9] in inodes:
                out.append((table, ip(f[1]), ip(f[2])))
    return out


def assert_loopback_only(pid: int) -> int:
    """Fails unless every inet socket of `pid` is on loopback (a wildcard
    listener is not); returns how many it saw."""
    def loop(a) -> bool:
        return a.is_loopback or (isinstance(a, IPv6Address) and a.ipv4_mapped is not None
                                 and a.ipv4_mapped.is_loopback)
    seen = sockets_of(pid)
    bad = [s for s in seen if not loop(s[1]) or not (loop(s[2]) or s[2].is_unspecified)]
    if bad:
        raise RuntimeError(f"SeaweedFS holds sockets off loopback: {bad}")
    return len(seen)


class SeaweedFs:
    """`weed mini` on loopback with one bucket, as S3Engine::seaweedfs: an admin
    identity (puts) and a read-only one (what /auth signs with)."""

    def __init__(self, work: Path, peers: Path):
        version = rust_const("SEAWEEDFS_VERSION")
        weed = peers / "bin" / f"weed-{version}"
        if not os.access(weed, os.X_OK):
            sys.exit(f"no {weed}: scripts/s3-peers.sh (ASSETGATE_PEERS={peers})")
        d = work / "seaweedfs"
        (d / "data").mkdir(parents=True)
        self.access, self.secret = "assetgate-bench", secrets.token_hex(20)
        self.read_access, self.read_secret = "assetgate-reader", secrets.token_hex(20)
        ids = {"identities": [
            {"name": self.access, "credentials": [{"accessKey": self.access, "secretKey": self.secret}],
             "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
            {"name": self.read_access,
             "credentials": [{"accessKey": self.read_access, "secretKey": self.read_secret}],
             "actions": ["Read"]},
        ]}
        (d / "identities.json").write_text(json.dumps(ids))
        self.port = bench.free_port()
        args = seaweedfs_args(d, d / "data", d / "identities.json", self.port)
        check_same_as_rust(args)
        # The guard runs before weed does: without these flags it never starts.
        why = check_seaweedfs_args(args)
        if why:
            sys.exit(f"refusing to start SeaweedFS: {why} ({args})")
        self.litter = [Path(f"/tmp/seaweedfs-{svc}-grpc-{a.split('=', 1)[1]}.sock")
                       for svc in ("master", "volume", "filer", "s3", "admin")
                       for a in args if a.startswith(f"-{svc}.port.grpc=")]
        self.version, self.args = version, args
        self.proc = bench.Proc("weed", [str(weed), *args], d / "engine.log", cwd=d)
        bench.wait_port(self.port, self.proc.p, timeout=120)
        def client(access: str, secret: str):
            return boto3.client(
                "s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name=REGION,
                aws_access_key_id=access, aws_secret_access_key=secret,
                config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                              response_checksum_validation="when_required", signature_version="s3v4",
                              retries={"max_attempts": 1, "mode": "standard"}))
        self.s3 = client(self.access, self.secret)
        self.reader = client(self.read_access, self.read_secret)
        # The S3 port may accept before the filer behind it is ready.
        last = None
        for _ in range(120):
            try:
                self.s3.create_bucket(Bucket=BUCKET)
                return
            except Exception as e:  # noqa: BLE001  (retried, then reported)
                last = e
                time.sleep(0.5)
        raise RuntimeError(f"cannot create bucket {BUCKET}: {last}")

    def put(self, key: str, body: bytes, marker: str) -> None:
        """As assetgate publishes: the Content-Type, the upload marker and the
        signed type nginx serves (x-amz-meta-assetgate-type)."""
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=CONTENT_TYPE,
                           Metadata={"assetgate-upload": marker, "assetgate-type": CONTENT_TYPE})

    def presigned(self, key: str) -> str:
        """A GET of `key` presigned by the read-only identity: path and query."""
        url = self.reader.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key},
                                                 ExpiresIn=3600)
        parts = urllib.parse.urlsplit(url)
        return f"{parts.path}?{parts.query}"

    def stop(self) -> None:
        self.proc.stop()
        for f in self.litter:
            f.unlink(missing_ok=True)


# --------------------------------------------------------------------------- nginx


def nginx_conf(work: Path, ports: dict[str, int], gate_fs: int, gate_s3: int, store: int) -> str:
    """One nginx: server fs (the shipped fs locations, the shipped upstream with
    its address rewritten) and server s3 (the shipped s3 locations, a copy of
    the shipped upstream renamed, the example's store upstream)."""
    shipped = ROOT / "nginx"
    up = (shipped / "assetgate-upstream.conf").read_text()
    inc = work / "nginx-include"
    inc.mkdir()
    # Relative includes resolve against nginx's configuration directory.
    conf_dir = work / "nginx" / "assetgate"
    conf_dir.mkdir(parents=True)
    for f in ("assetgate-types.conf", "assetgate-s3-proxy.conf"):
        (conf_dir / f).symlink_to(shipped / f)

    def once(text: str, old: str, new: str, what: str) -> str:
        assert text.count(old) == 1, (what, old)
        return text.replace(old, new)

    (inc / "fs-upstream.conf").write_text(once(up, "server 127.0.0.1:9750;", f"server 127.0.0.1:{gate_fs};", "upstream"))
    # The maps may be defined once: the copy is the upstream block alone.
    s3_up = up[:up.index("\nmap ")] + "\n"
    s3_up = once(s3_up, "server 127.0.0.1:9750;", f"server 127.0.0.1:{gate_s3};", "upstream")
    s3_up = once(s3_up, "upstream assetgate {", f"upstream {S3_GATE_UPSTREAM} {{", "upstream")
    (inc / "s3gate-upstream.conf").write_text(s3_up)
    example = (shipped / "assetgate-s3.conf.example").read_text()
    store_up = re.search(r"^upstream assetgate_s3 \{.*?^\}", example, re.M | re.S).group(0)
    (inc / "store-upstream.conf").write_text(
        once(store_up, "server 127.0.0.1:8333;", f"server 127.0.0.1:{store};", "example"))
    (inc / "fs-locations.conf").write_text((shipped / "assetgate-locations.conf").read_text())
    (inc / "s3-locations.conf").write_text(once(
        (shipped / "assetgate-s3-locations.conf").read_text(), "http://assetgate/auth",
        f"http://{S3_GATE_UPSTREAM}/auth", "s3 locations"))
    user = "user root;\n" if os.geteuid() == 0 else ""
    d = work / "nginx"
    return (
        f"{user}worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n"
        f"  client_body_temp_path {d}/client_body_temp; proxy_temp_path {d}/proxy_temp;\n"
        f"  fastcgi_temp_path {d}/fastcgi_temp; uwsgi_temp_path {d}/uwsgi_temp; scgi_temp_path {d}/scgi_temp;\n"
        "  default_type application/octet-stream;\n"
        f"  include {inc}/fs-upstream.conf;\n  include {inc}/s3gate-upstream.conf;\n"
        f"  include {inc}/store-upstream.conf;\n"
        f"  server {{ listen 127.0.0.1:{ports['fs']}; root {work}/assets;\n"
        f"    include {inc}/fs-locations.conf; }}\n"
        f"  server {{ listen 127.0.0.1:{ports['s3']}; merge_slashes on;\n"
        f"    include {inc}/s3-locations.conf; }}\n"
        "}\n"
    )


def s3_gate_config(port: int, store: SeaweedFs, log_level: str) -> str:
    """run.py's assetgate_config, with the s3 backend instead of [storage] root."""
    return (
        f'listen = "127.0.0.1:{port}"\n'
        f'log_level = "{log_level}"\nlog_format = "text"\n'
        f'[link]\nsecrets = ["{LINK_SECRET}"]\n'
        f'[upload]\nsecrets = ["{UPLOAD_SECRET}"]\n'
        '[storage]\nbackend = "s3"\n'
        f'[storage.s3]\nendpoint = "http://127.0.0.1:{store.port}"\nregion = "{REGION}"\n'
        f'bucket = "{BUCKET}"\naccess_key_id = "{store.access}"\nsecret_access_key = "{store.secret}"\n'
        f'read_access_key_id = "{store.read_access}"\nread_secret_access_key = "{store.read_secret}"\n'
    )


# --------------------------------------------------------------------------- the runs


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all but idle and iowait)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(f) - f[3] - f[4]) / bench.TICK


def children_cpu_s() -> float:
    """CPU seconds of this script's finished children (wrk)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


SIDES = ("fs", "s3", "store")


def downloads(args, url: dict[str, str], links: dict[tuple[str, str], Path], trees: dict[str, int]) -> dict:
    """`links[(side, size)]`: the request targets; `url[side]`: the server."""
    cases = [f"{side}-{size}" for size in SIZES for side in SIDES]
    runs: dict[str, list] = {c: [] for c in cases}

    def one(c: str, secs: float) -> dict:
        side, size = c.split("-")
        before = {n: bench.tree_cpu_s(p) for n, p in trees.items()}
        busy0, wrk0, t0 = machine_busy_s(), children_cpu_s(), time.monotonic()
        res = bench.wrk(url[side], "links.lua", [str(links[side, size])], args.threads, args.conns, secs)
        wall = time.monotonic() - t0
        ours = children_cpu_s() - wrk0
        for n, p in trees.items():
            used = bench.tree_cpu_s(p) - before[n]
            ours += used
            res[f"cpu_us_per_req_{n}"] = used / res["requests"] * 1e6
        # What the rest of the machine (the other engineers) used meanwhile.
        res["others_cores"] = (machine_busy_s() - busy0 - ours) / wall
        res["mib_per_s"] = res["rps"] * SIZES[size] / 2**20
        return res

    for c in cases:  # warm-up, not recorded
        one(c, args.warmup)
    for r, order in bench.interleave(cases, args.rounds):
        for c in order:
            res = one(c, args.duration)
            res["round"] = r
            runs[c].append(res)
            cpu = " ".join(f"{n} {res[f'cpu_us_per_req_{n}']:.0f}" for n in trees)
            log(f"round {r} {c}: {res['rps']:.0f} req/s p50 {res['p50_ms']:.3f} p99 {res['p99_ms']:.3f} ms; "
                f"cpu us/req: {cpu}; others {res['others_cores']:.2f} cores")
    def by_round(x: str, y: str, size: str) -> list[float]:
        return [round(a["rps"] / b["rps"], 4) for a, b in zip(runs[f"{x}-{size}"], runs[f"{y}-{size}"])]

    return {"runs": runs, "median": {c: bench.summarise(v) for c, v in runs.items()},
            "ratio_s3_over_fs": {size: bench.median(by_round("s3", "fs", size)) for size in SIZES},
            "ratio_by_round": {size: by_round("s3", "fs", size) for size in SIZES},
            "ratio_s3_over_store": {size: bench.median(by_round("s3", "store", size)) for size in SIZES},
            "ratio_s3_over_store_by_round": {size: by_round("s3", "store", size) for size in SIZES}}


def table(res: dict) -> str:
    d = res["downloads"]
    m, rat, byr = d["median"], d["ratio_s3_over_fs"], d["ratio_by_round"]
    rows = ["| size | case | req/s | MiB/s | p50 / p99, ms | CPU µs per request: gate; SeaweedFS; nginx "
            "| others' load, cores |",
            "|---|---|---|---|---|---|---|"]
    for size in SIZES:
        for side, label in (("fs", "(a) fs: disk"), ("s3", "(b) s3: SeaweedFS via nginx"),
                            ("store", "(s) SeaweedFS alone, presigned")):
            x = m[f"{side}-{size}"]
            gate = {"fs": f"{x['cpu_us_per_req_gate_fs']:.0f}", "s3": f"{x['cpu_us_per_req_gate_s3']:.0f}"}.get(side, "—")
            weed = f"{x['cpu_us_per_req_weed']:.0f}" if side != "fs" else "—"
            ngx = f"{x['cpu_us_per_req_nginx']:.0f}" if side != "store" else "—"
            rows.append(f"| {size.upper().replace('K', ' KiB').replace('M', ' MiB')} | {label} | {x['rps']:,.0f} | "
                        f"{x['mib_per_s']:,.1f} | {x['p50_ms']:.2f} / {x['p99_ms']:.2f} | {gate}; {weed}; {ngx} | "
                        f"{x['others_cores']:.2f} |")
        rows.append(f"| | **(b)/(a)**, median of per-round ratios | **{rat[size]:.3f}** | | | "
                    f"rounds: {', '.join(f'{r:.3f}' for r in byr[size])} | |")
        rows.append(f"| | (b)/(s): nginx + /auth on top of the store | {d['ratio_s3_over_store'][size]:.3f} | | | "
                    f"rounds: {', '.join(f'{r:.3f}' for r in d['ratio_s3_over_store_by_round'][size])} | |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target/release/assetgate"))
    ap.add_argument("--log-level", default="info", help="the gates' log_level (the product logs at info)")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_SECONDS", 5)))
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--conns", type=int, default=32, help="wrk connections (run.py's --dl-conns)")
    ap.add_argument("--files", type=int, default=32, help="files per size")
    ap.add_argument("--links", type=int, default=256, help="links per size")
    ap.add_argument("--out", default=str(BENCHES / "results" / "s3downloads"))
    args = ap.parse_args()
    peers = Path(os.environ.get("ASSETGATE_PEERS", ROOT / ".peers")).resolve()
    if not shutil.which("wrk"):
        sys.exit("no wrk: apt-get install wrk (benches/run.sh does)")

    work = Path(tempfile.mkdtemp(prefix="assetgate-s3bench-"))
    os.chmod(work, 0o755)
    (work / "assets" / "public").mkdir(parents=True)
    (work / "uploads").mkdir()
    result: dict = {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": bench.machine(),
        "params": {k: v for k, v in vars(args).items() if k != "out"},
    }
    procs: list = []
    store = None
    try:
        links: dict[tuple[str, str], Path] = {}
        for size, n in SIZES.items():
            log(f"minting {args.links} links over {args.files} files of {n} bytes with granite-assets")
            minted = json.loads(subprocess.run(
                [sys.executable, str(BENCHES / "mint.py"), "--storage", str(work / "assets"),
                 "--link-secret", LINK_SECRET, "--upload-secret", UPLOAD_SECRET, "--size", str(n),
                 "--dir", f"bench-{size}", "--files", str(args.files), "--links", str(args.links)],
                capture_output=True, text=True, check=True).stdout)
            links["fs", size] = links["s3", size] = work / f"links-{size}.txt"
            links["fs", size].write_text("\n".join(minted["links"]) + "\n")
        for root, dirs, _ in os.walk(work):
            for d in dirs:
                os.chmod(Path(root) / d, 0o755)

        log("starting SeaweedFS (loopback, telemetry off) and putting the same files in the bucket")
        store = SeaweedFs(work, peers)
        private = work / "assets" / "private"
        files = sorted(p for p in private.rglob("*.bin"))
        for i, f in enumerate(files):
            store.put(f"private/{f.relative_to(private)}", f.read_bytes(), f"bench-{i:04d}")
        # The store alone: the same objects by presigned GET URLs of the
        # read-only identity (what the store costs without nginx and /auth).
        for size in SIZES:
            targets = [store.presigned(t.split("?")[0].removeprefix("/"))
                       for t in links["fs", size].read_text().split()]
            links["store", size] = work / f"store-links-{size}.txt"
            links["store", size].write_text("\n".join(targets) + "\n")

        ports = {"fs": bench.free_port(), "s3": bench.free_port(), "gate_fs": bench.free_port(),
                 "gate_s3": bench.free_port()}
        gate_fs = bench.start_assetgate("gate-fs", args.bin, ports["gate_fs"], work, args.log_level)
        procs.append(gate_fs)
        gate_s3 = bench.start_assetgate("gate-s3", args.bin, ports["gate_s3"], work, args.log_level,
                                        config=s3_gate_config(ports["gate_s3"], store, args.log_level))
        procs.append(gate_s3)
        (work / "nginx").mkdir(exist_ok=True)
        conf = work / "nginx" / "nginx.conf"
        conf.write_text(nginx_conf(work, ports, ports["gate_fs"], ports["gate_s3"], store.port))
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        ngx = bench.Proc("nginx", [nginx_bin, "-p", str(work / "nginx"), "-c", str(conf), "-e",
                                   str(work / "nginx/error.log"), "-g", "daemon off;"], work / "nginx/stderr.log")
        procs.append(ngx)
        for side in ("fs", "s3"):
            bench.wait_port(ports[side], ngx.p)
        url = {side: f"http://127.0.0.1:{ports[side]}" for side in ("fs", "s3")}
        url["store"] = f"http://127.0.0.1:{store.port}"

        # Sanity: both servers give the same bytes and type for every size, and
        # refuse a forged link, before anything is timed.
        for size in SIZES:
            link = links["fs", size].read_text().splitlines()[0]
            want = (work / "assets" / link.split("?")[0].lstrip("/")).read_bytes()
            forged = re.sub(r"md5=[^&]+", "md5=AAAAAAAAAAAAAAAAAAAAAA", link)
            for side in ("fs", "s3"):
                st, hdrs, body = bench.http("GET", url[side] + link)
                assert st == 200 and hashlib.sha256(body).digest() == hashlib.sha256(want).digest(), \
                    (side, size, st, len(body))
                assert hdrs.get("Content-Type") == CONTENT_TYPE, (side, size, hdrs)
                assert not [k for k in hdrs if k.lower().startswith("x-amz-")], (side, hdrs)
                st, _, _ = bench.http("GET", url[side] + forged)
                assert st == 403, (side, size, "forged link", st)
            st, _, body = bench.http("GET", url["store"] + links["store", size].read_text().split()[0])
            assert st == 200 and body == want, ("store", size, st, len(body))
        log("sanity checks passed: same bytes and Content-Type from disk and from the bucket, forged 403")
        result["weed_sockets_at_start"] = assert_loopback_only(store.proc.p.pid)
        gate_ports = {"gate_fs": ports["gate_fs"], "gate_s3": ports["gate_s3"]}
        denies_before = {n: bench.deny_lines(p) for n, p in gate_ports.items()}
        trees = {"gate_fs": gate_fs.p.pid, "gate_s3": gate_s3.p.pid, "weed": store.proc.p.pid,
                 "nginx": ngx.p.pid}
        result["load_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
        log(f"downloads: {args.rounds} rounds x {args.duration}s per case, {len(SIDES) * len(SIZES)} cases")
        result["downloads"] = downloads(args, url, links, trees)
        result["load_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
        for n, p in gate_ports.items():
            assert bench.deny_lines(p) == denies_before[n], (n, "denials during the runs", bench.deny_lines(p))
        result["weed_sockets_at_end"] = assert_loopback_only(store.proc.p.pid)
        err = (work / "nginx" / "error.log").read_text()
        result["nginx_error_log"] = {
            "buffered_to_temp_file": err.count("buffered to a temporary file"),
            "lines": len(err.splitlines()),
            "first_lines": err.splitlines()[:5],
        }
        result["versions"] = {
            "nginx": bench.cmd_out([nginx_bin, "-v"]),
            "wrk": bench.cmd_out(["wrk", "--version"]).split(" Copyright")[0],
            "seaweedfs": store.version,
            "seaweedfs_reported": bench.cmd_out([str(peers / "bin" / f"weed-{store.version}"), "version"]),
            "boto3": boto3.__version__,
            "assetgate_commit": bench.cmd_out(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"]),
        }
        result["seaweedfs_args"] = [re.sub(r"=[1-9]\d*$", "=<port>", a) for a in store.args]
    finally:
        for p in reversed(procs):
            p.stop()
        if store:
            store.stop()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str) + "\n")
    t = table(result)
    (out / "table.md").write_text(t)
    print(t)
    shutil.rmtree(work, ignore_errors=True)
    log(f"results in {out}")


if __name__ == "__main__":
    main()
