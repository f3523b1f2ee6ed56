"""assetgate benchmark driver (run it through benches/run.sh).

Everything runs on loopback: nginx 1.22 (Debian), wrk (Debian), the release
assetgate binary, and the reference FastAPI hook under uvicorn. Runs are
interleaved (A B C, A B C, ...; the order rotates each round), and the figures
quoted are medians over rounds; ratios are medians of the per-round ratios, so a
noisy neighbour slows a whole round, not one side of a comparison.

Sections:
- downloads: (a) native secure_link, (b) auth_request to nginx answering 204 (the
  floor), (c) auth_request to assetgate with the shipped nginx/ files, and, with
  --baseline, (c0) the same with the baseline binary;
- uploads: POST /tusd pre-create decisions/s, assetgate vs the reference FastAPI
  hook (benches/reference_hook/) and vs nginx answering `{}` to the same POST
  (the floor: no hook can be faster on this machine with this load generator).
  Twice: "shared" (every process free to run on every core, wrk -t2, FastAPI
  with 2 workers) and "isolated" (the server under test confined to CPU 0 and
  wrk -t1 to CPU 1, FastAPI with 1 worker, nginx with 1 worker), where the load
  generator no longer takes CPU from the server it measures;
- latency at half load: oha (crates.io; wrk2 is not packaged in Debian) sends
  POST /tusd at a constant rate, half the isolated maximum, with its
  coordinated-omission correction, to assetgate, the baseline and the floor;
- memory (VmRSS/VmHWM) and start-up time to /readyz 200.

Results: benches/results/results.json (raw runs + summary), table.md, chart.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ROOT / "benches"
OHA = "oha"
LINK_SECRET = "bench-link-secret-5f1c2a9e7d"
UPLOAD_SECRET = "bench-upload-secret-8e3b6d0a41"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def rss(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
    return out


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its descendants."""
    stats = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d.name)] = (int(f[1]), int(f[11]) + int(f[12]))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0))[1]
        todo.extend(c for c, (ppid, _) in stats.items() if ppid == p)
    return total / TICK


def tree_pids(pid: int) -> list[int]:
    """`pid` and its descendants."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return out


ALL_CPUS = set(os.sched_getaffinity(0))
# Isolated runs: the server under test on one CPU, the load generator on another.
SERVER_CPUS = {min(ALL_CPUS)}
GEN_CPUS = {sorted(ALL_CPUS)[1]} if len(ALL_CPUS) > 1 else set(ALL_CPUS)


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Confines every thread of `pid` and its descendants to `cpus`."""
    for p in tree_pids(pid):
        try:
            tids = [int(t.name) for t in Path(f"/proc/{p}/task").iterdir()]
        except OSError:
            continue
        for t in tids:
            try:
                os.sched_setaffinity(t, cpus)
            except OSError:
                pass


class Pinned:
    """`with Pinned(pid):` the process tree runs on SERVER_CPUS only, then on all."""

    def __init__(self, pid: int | None):
        self.pid = pid

    def __enter__(self):
        if self.pid:
            set_affinity(self.pid, SERVER_CPUS)
        return self

    def __exit__(self, *exc):
        if self.pid:
            set_affinity(self.pid, ALL_CPUS)


def on_cpus(cmd: list[str], cpus: set[int] | None) -> list[str]:
    """`cmd` confined to `cpus` by taskset (not preexec_fn, which is unsafe
    while other threads run, as the RSS sampler does)."""
    return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *cmd] if cpus else cmd


def measured(pid: int | None, fn):
    """Runs a wrk call; adds the CPU the server process tree used per request."""
    before = tree_cpu_s(pid) if pid else 0
    res = fn()
    if pid:
        res["server_cpu_us_per_req"] = (tree_cpu_s(pid) - before) / res["requests"] * 1e6
    return res


def deny_lines(port: int) -> list[str]:
    """assetgate's non-zero deny counters (the sanity checks make a few)."""
    _, _, m = http("GET", f"http://127.0.0.1:{port}/metrics")
    return [l for l in m.decode().splitlines() if 'decision="deny"' in l and not l.endswith(" 0")]


class RssSampler:
    """Samples a process's VmRSS every 0.25 s while a load runs; keeps the max."""

    def __init__(self, pid: int):
        self.pid, self.max_kib, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.max_kib = max(self.max_kib, rss(self.pid)["VmRSS"])
            except (OSError, KeyError):
                pass
            self._stop.wait(0.25)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


# --------------------------------------------------------------------------- wrk

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(url: str, script: str, script_args: list[str], threads: int, conns: int, secs: float,
        cpus: set[int] | None = None) -> dict:
    cmd = [
        "wrk", f"-t{threads}", f"-c{conns}", f"-d{int(secs)}s", "--latency", "--timeout", "5s",
        "-s", str(BENCHES / "wrk" / script), url, "--", *script_args,
    ]
    out = subprocess.run(on_cpus(cmd, cpus), capture_output=True, text=True, check=True).stdout
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    res["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    for p in ("50", "75", "90", "99"):
        res[f"p{p}_ms"] = to_ms(re.search(rf"^\s+{p}%\s+(\S+)", out, re.M).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(map(int, m.groups())) if m else 0
    if res["non2xx"] or res["socket_errors"]:
        raise RuntimeError(f"wrk saw failures against {url}:\n{out}")
    return res


# --------------------------------------------------------------------------- processes


class Proc:
    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict | None = None, cwd=None,
                 cpus: set[int] | None = None):
        self.name = name
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(
            on_cpus(cmd, cpus), stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env, cwd=cwd,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.p.poll() is None:
            # Our own process group (start_new_session): uvicorn's workers too.
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()


def assetgate_config(port: int, work: Path, log_level: str = "info") -> str:
    return (
        f'listen = "127.0.0.1:{port}"\n'
        f'log_level = "{log_level}"\nlog_format = "text"\n'
        f'[link]\nsecrets = ["{LINK_SECRET}"]\n'
        f'[upload]\nsecrets = ["{UPLOAD_SECRET}"]\n'
        f'[storage]\nroot = "{work}/assets"\n'
        f'[tusd]\nupload_dir = "{work}/uploads"\n'
    )


def start_assetgate(name: str, binary: str, port: int, work: Path, log_level: str,
                    config: str | None = None) -> Proc:
    """`config`: the whole TOML (default: assetgate_config(), the fs backend)."""
    cfg = work / f"{name}.toml"
    cfg.write_text(config if config is not None else assetgate_config(port, work, log_level))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETGATE_")}
    # Several gates run at once: each admin socket in its own directory (the
    # default is one per user), or on a baseline revision from before
    # [server] admin_socket, each TCP admin listener on a free port; only the
    # key the binary knows (a revision refuses an unknown one).
    for key, value in (("ASSETGATE_SERVER__ADMIN_SOCKET", str(work / f"{name}-run" / "admin.sock")),
                       ("ASSETGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:0")):
        probe = dict(env, **{key: value})
        if subprocess.run([binary, "--config", str(cfg), "check-config"], env=probe,
                          capture_output=True).returncode == 0:
            env = probe
            break
    p = Proc(name, [binary, "--config", str(cfg), "serve"], work / f"{name}.log", env=env)
    wait_port(port, p.p)
    return p


# The uploads' floor: nginx answering tusd's "accept" to the same POST, no checks.
UPLOAD_FLOOR = "location = /tusd { default_type application/json; return 200 '{}'; }"


def floor1_conf(work: Path, port: int) -> str:
    """A one-worker nginx serving only the uploads' floor (the isolated case)."""
    d = work / "nginx1"
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n  access_log off;\n  keepalive_requests 100000;\n"
        f"  client_body_temp_path {d}/client_body_temp; proxy_temp_path {d}/proxy_temp;\n"
        f"  fastcgi_temp_path {d}/fastcgi_temp; uwsgi_temp_path {d}/uwsgi_temp; scgi_temp_path {d}/scgi_temp;\n"
        f"  server {{ listen 127.0.0.1:{port}; {UPLOAD_FLOOR} }}\n}}\n"
    )


def nginx_conf(work: Path, ports: dict[str, int], gates: dict[str, int]) -> str:
    """Top-level nginx.conf. The gated servers include the SHIPPED nginx/ files;
    only the upstream address (and, for copies, the upstream name) is rewritten."""
    shipped_up = (ROOT / "nginx/assetgate-upstream.conf").read_text()
    shipped_loc = (ROOT / "nginx/assetgate-locations.conf").read_text()
    inc = work / "nginx-include"
    inc.mkdir(exist_ok=True)
    # The locations include assetgate/assetgate-types.conf from nginx's
    # configuration directory (work/nginx), as on a real install.
    types = work / "nginx" / "assetgate" / "assetgate-types.conf"
    types.parent.mkdir(parents=True, exist_ok=True)
    if not types.exists():
        types.symlink_to(ROOT / "nginx/assetgate-types.conf")
    # The shipped upstream file also defines a map; it may be defined once.
    map_at = shipped_up.index("\nmap ")
    servers = []
    # (b) floor: the shipped files with the upstream renamed to nginx answering 204.
    upstreams = {"floor": ports["floor"], **gates}
    for name, port in upstreams.items():
        up = shipped_up.replace("127.0.0.1:9750", f"127.0.0.1:{port}")
        loc = shipped_loc
        if name != "assetgate":
            up = up[:map_at] + "\n"
            up = up.replace("upstream assetgate {", f"upstream {name} {{")
            loc = loc.replace("http://assetgate/auth", f"http://{name}/auth")
        assert f"upstream {name} {{" in up and f"http://{name}/auth" in loc
        (inc / f"{name}-upstream.conf").write_text(up)
        (inc / f"{name}-locations.conf").write_text(loc)
        servers.append(f"include {inc}/{name}-upstream.conf;")
    case_of = {"floor": "b", "assetgate": "c", "assetgate_base": "c0"}
    for name in upstreams:
        servers.append(
            f"server {{ listen 127.0.0.1:{ports[case_of[name]]}; root {work}/assets;\n"
            f"  include {inc}/{name}-locations.conf; }}"
        )
    servers.append(
        f"server {{ listen 127.0.0.1:{ports['a']}; root {work}/assets;\n"
        "  location /private/ {\n"
        "    secure_link $arg_md5,$arg_expires;\n"
        f'    secure_link_md5 "$secure_link_expires$uri {LINK_SECRET}";\n'
        '    if ($secure_link = "") { return 403; }\n'
        '    if ($secure_link = "0") { return 410; }\n'
        "    try_files $uri =404;\n  }\n}"
    )
    servers.append(f"server {{ listen 127.0.0.1:{ports['floor']}; location / {{ return 204; }} }}")
    servers.append(f"server {{ listen 127.0.0.1:{ports['upfloor']}; {UPLOAD_FLOOR} }}")
    user = "user root;\n" if os.geteuid() == 0 else ""
    d = work / "nginx"
    return (
        f"{user}worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n"
        f"  client_body_temp_path {d}/client_body_temp; proxy_temp_path {d}/proxy_temp;\n"
        f"  fastcgi_temp_path {d}/fastcgi_temp; uwsgi_temp_path {d}/uwsgi_temp; scgi_temp_path {d}/scgi_temp;\n"
        "  default_type application/octet-stream;\n  "
        + "\n  ".join(servers)
        + "\n}\n"
    )


# --------------------------------------------------------------------------- sections


def median(xs):
    return statistics.median(xs)


def summarise(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    return {k: median([r[k] for r in runs]) for k in keys}


def interleave(cases: list[str], rounds: int):
    for r in range(rounds):
        k = r % len(cases)
        yield r, cases[k:] + cases[:k]


def downloads(args, ports, links_file, gate_procs) -> dict:
    cases = ["a", "b", "c"] + (["c0"] if "c0" in ports else [])
    url = {c: f"http://127.0.0.1:{ports[c]}" for c in cases}
    runs: dict[str, list] = {c: [] for c in cases}
    rss_max = {n: 0 for n in gate_procs}
    for c in cases:  # warm-up, not recorded
        wrk(url[c], "links.lua", [str(links_file)], args.threads, args.dl_conns, args.warmup)
    for r, order in interleave(cases, args.rounds):
        for c in order:
            gate = {"c": "new", "c0": "base"}.get(c)
            run = lambda: wrk(url[c], "links.lua", [str(links_file)], args.threads, args.dl_conns, args.duration)  # noqa: E731
            if gate:
                with RssSampler(gate_procs[gate].p.pid) as s:
                    res = measured(gate_procs[gate].p.pid, run)
                rss_max[gate] = max(rss_max[gate], s.max_kib)
            else:
                res = run()
            res["round"] = r
            runs[c].append(res)
            cpu = f" cpu {res['server_cpu_us_per_req']:.1f} us/req" if gate else ""
            log(f"downloads round {r} {c}: {res['rps']:.0f} req/s p99 {res['p99_ms']:.3f} ms{cpu}")
    ratios = {
        "c_over_b": median([c["rps"] / b["rps"] for c, b in zip(runs["c"], runs["b"])]),
        "c_over_a": median([c["rps"] / a["rps"] for c, a in zip(runs["c"], runs["a"])]),
        "b_over_a": median([b["rps"] / a["rps"] for b, a in zip(runs["b"], runs["a"])]),
    }
    if "c0" in runs:
        ratios["c0_over_b"] = median([c["rps"] / b["rps"] for c, b in zip(runs["c0"], runs["b"])])
        ratios["c_over_c0"] = median([c["rps"] / b["rps"] for c, b in zip(runs["c"], runs["c0"])])
    return {
        "runs": runs,
        "median": {c: summarise(v) for c, v in runs.items()},
        "ratios": ratios,
        "rss_max_kib": rss_max,
    }


def oha(url: str, body_file: Path, rate: float, conns: int, secs: float, cpus: set[int] | None) -> dict:
    """A constant-rate POST load (open loop) with oha's coordinated-omission
    correction: latency counts from when a request was due, not when sent."""
    cmd = [OHA, "-z", f"{secs:g}s", "-q", f"{rate:.0f}", "-c", str(conns), "--latency-correction",
           "--no-tui", "--output-format", "json", "-m", "POST", "-T", "application/json",
           "-D", str(body_file), url]
    d = json.loads(subprocess.run(on_cpus(cmd, cpus), capture_output=True, text=True, check=True).stdout)
    codes = d.get("statusCodeDistribution", {})
    if set(codes) != {"200"} or d.get("errorDistribution"):
        # Requests cut off by the deadline are not failures of the server.
        errs = {k: v for k, v in d.get("errorDistribution", {}).items() if "deadline" not in k}
        if set(codes) - {"200"} or errs:
            raise RuntimeError(f"oha saw failures against {url}: {codes} {errs}")
    lp = d["latencyPercentiles"]
    return {
        "rps": d["summary"]["requestsPerSec"],
        "requests": sum(codes.values()),
        **{f"p{k.replace('p', '')}_ms": lp[k] * 1e3 for k in ("p50", "p75", "p90", "p99", "p99.9")},
    }


def uploads(args, ports, body_file, gate_procs, peers) -> dict:
    """Pre-create decisions/s, shared and isolated, then latency at half load.

    `peers`: name -> (port, pid) for "fastapi" (2 workers), "fastapi1" (1 worker,
    started on SERVER_CPUS), "floor" (the shared nginx), "floor1" (an nginx
    with 1 worker, started on SERVER_CPUS) and, if built, "hyper1"
    (examples/hyper_floor.rs, started on SERVER_CPUS)."""
    gates = [c for c in ("new", "base") if c in gate_procs]
    port = {"new": ports["gate_new"], "base": ports.get("gate_base"),
            **{n: p for n, (p, _) in peers.items()}}
    pid = {**{c: gate_procs[c].p.pid for c in gates}, **{n: q for n, (_, q) in peers.items()}}
    url = {c: f"http://127.0.0.1:{p}/tusd" for c, p in port.items() if p}
    out: dict = {}
    modes = {
        # every process on every core; wrk with 2 threads (as for the downloads)
        "shared": (gates + ["fastapi", "floor"], args.threads, None),
        # the server under test on SERVER_CPUS, wrk -t1 on GEN_CPUS
        "isolated": (gates + ["fastapi1", "floor1"] + (["hyper1"] if "hyper1" in peers else []), 1, GEN_CPUS),
    }
    for mode, (cases, threads, gen_cpus) in modes.items():
        runs: dict[str, list] = {c: [] for c in cases}
        rss_max = {c: 0 for c in gates}

        def one(c, secs):
            run = lambda: wrk(url[c], "post.lua", [str(body_file)], threads, args.up_conns, secs, gen_cpus)  # noqa: E731
            # fastapi1 and floor1 were started confined; the gates are confined per run.
            with Pinned(pid[c] if mode == "isolated" and c in gates else None):
                if c in gates:
                    with RssSampler(pid[c]) as s:
                        res = measured(pid[c], run)
                    rss_max[c] = max(rss_max[c], s.max_kib)
                    return res
                return measured(pid[c], run)

        for c in cases:  # warm-up, not recorded
            one(c, args.warmup)
        for r, order in interleave(cases, args.rounds):
            for c in order:
                res = one(c, args.duration)
                res["round"] = r
                runs[c].append(res)
                log(f"uploads {mode} round {r} {c}: {res['rps']:.0f} req/s p99 {res['p99_ms']:.3f} ms "
                    f"cpu {res['server_cpu_us_per_req']:.1f} us/req")
        fa, fl = cases[len(gates)], cases[len(gates) + 1]

        def ratio(x, y):
            return median([a["rps"] / b["rps"] for a, b in zip(runs[x], runs[y])])

        ratios = {"new_over_fastapi": ratio("new", fa), "floor_over_fastapi": ratio(fl, fa),
                  "new_over_floor": ratio("new", fl)}
        if "base" in runs:
            ratios["base_over_fastapi"] = ratio("base", fa)
            ratios["new_over_base"] = ratio("new", "base")
        if "hyper1" in runs:
            ratios["hyper_over_fastapi"] = ratio("hyper1", fa)
            ratios["new_over_hyper"] = ratio("new", "hyper1")
        out[mode] = {"runs": runs, "median": {c: summarise(v) for c, v in runs.items()}, "ratios": ratios,
                     "rss_max_kib": rss_max, "fastapi": fa, "floor": fl, "wrk_threads": threads,
                     "server_cpus": sorted(SERVER_CPUS) if gen_cpus else None,
                     "generator_cpus": sorted(gen_cpus) if gen_cpus else None}
    out["rss_max_kib"] = {c: max(out[m]["rss_max_kib"][c] for m in modes) for c in gates}

    # Latency at half of the isolated maximum, constant rate, isolated as above.
    rate = out["isolated"]["median"]["new"]["rps"] / 2
    cases = gates + ["floor1"]
    half: dict[str, list] = {c: [] for c in cases}
    for r, order in interleave(cases, args.rounds):
        for c in order:
            with Pinned(pid[c] if c in gates else None):
                res = measured(pid[c], lambda: oha(url[c], body_file, rate, args.half_conns, args.duration, GEN_CPUS))  # noqa: B023
            res["round"] = r
            half[c].append(res)
            log(f"uploads half-load round {r} {c}: {res['rps']:.0f} req/s p50 {res['p50_ms']:.3f} "
                f"p99 {res['p99_ms']:.3f} ms")
    out["half_load"] = {
        "target_rps": rate,
        "conns": args.half_conns,
        "runs": half,
        "median": {c: summarise(v) for c, v in half.items()},
        # p99 per round: the floor's shows how much of the tail is the machine.
        "p99_by_round": {c: [x["p99_ms"] for x in v] for c, v in half.items()},
    }
    return out


def readyz_time(binary: str, port: int, work: Path, name: str) -> tuple[float, dict]:
    cfg = work / f"{name}-startup.toml"
    cfg.write_text(assetgate_config(port, work))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETGATE_")}
    logf = open(work / f"{name}-startup.log", "ab")
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "--config", str(cfg), "serve"], stdin=subprocess.DEVNULL,
                         stdout=logf, stderr=logf, env=env)
    try:
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"{binary} exited during start-up")
            try:
                s = socket.create_connection(("127.0.0.1", port))
            except ConnectionRefusedError:
                time.sleep(0.0002)
                continue
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            s.close()
            if head.startswith(b"HTTP/1.1 200"):
                elapsed = time.perf_counter() - t0
                break
        time.sleep(0.5)
        idle = rss(p.pid)
    finally:
        p.terminate()
        p.wait(10)
        logf.close()
    return elapsed * 1000, idle


def startup(args, binaries: dict[str, str], work: Path) -> dict:
    runs: dict[str, list] = {n: [] for n in binaries}
    for r, order in interleave(list(binaries), args.startup_reps):
        for n in order:
            ms, idle = readyz_time(binaries[n], free_port(), work, n)
            runs[n].append({"readyz_ms": ms, "idle_rss_kib": idle["VmRSS"], "round": r})
    return {"runs": runs, "median": {n: summarise(v) for n, v in runs.items()}}


# --------------------------------------------------------------------------- environment


def cmd_out(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = {}
    for line in lscpu.splitlines():
        k, _, v = line.partition(":")
        if k in ("Model name", "CPU(s)", "Thread(s) per core", "Hypervisor vendor", "L3 cache"):
            info[k] = v.strip()
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {
        "cpu": info,
        "mem_total_gib": round(int(mem) / 2**20, 1),
        "kernel": platform.release(),
        "os": cmd_out(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "loadavg_at_start": load,
    }


def versions(args) -> dict:
    import fastapi
    import uvicorn

    return {
        "rustc": cmd_out(["rustc", "--version"]),
        "nginx": cmd_out(["nginx", "-v"]) if shutil.which("nginx") else cmd_out(["/usr/sbin/nginx", "-v"]),
        "wrk": cmd_out(["wrk", "--version"]).split(" Copyright")[0],
        "oha": cmd_out([OHA, "--version"]),
        "python": platform.python_version(),
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "assetgate_commit": cmd_out(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"]),
        "assetgate_dirty": bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                                               capture_output=True, text=True).stdout.strip()),
        "baseline": args.baseline_label,
    }


# --------------------------------------------------------------------------- report


def fmt_rps(x: float) -> str:
    return f"{x:,.0f}"


def table(res: dict) -> str:
    d, u, s = res["downloads"], res["uploads"], res["startup"]
    base = "c0" in d["median"]
    rows = ["| Figure | " + ("baseline (before) | " if base else "") + "assetgate (after) | target | met |",
            "|---|" + ("---|" if base else "") + "---|---|---|"]

    def row(name, before, after, target="", met=""):
        rows.append(f"| {name} | " + (f"{before} | " if base else "") + f"{after} | {target} | {met} |")

    dm = d["median"]
    row("downloads (a) native secure_link, req/s", fmt_rps(dm["a"]["rps"]), fmt_rps(dm["a"]["rps"]))
    row("downloads (b) auth_request → nginx 204 (floor), req/s", fmt_rps(dm["b"]["rps"]), fmt_rps(dm["b"]["rps"]))
    row("downloads (c) auth_request → assetgate, req/s",
        fmt_rps(dm["c0"]["rps"]) if base else "", fmt_rps(dm["c"]["rps"]))
    cb = d["ratios"]["c_over_b"]
    row("(c)/(b), median of per-round ratios", f"{d['ratios'].get('c0_over_b', 0):.3f}", f"{cb:.3f}",
        "≥ 0.9", "yes" if cb >= 0.9 else "**no**")
    row("(c)/(a)", "", f"{d['ratios']['c_over_a']:.3f}")
    row("(c) assetgate CPU per auth decision, µs (median)",
        f"{dm['c0']['server_cpu_us_per_req']:.1f}" if base else "", f"{dm['c']['server_cpu_us_per_req']:.1f}")
    row("(c) p50 / p99 latency, ms",
        f"{dm['c0']['p50_ms']:.3f} / {dm['c0']['p99_ms']:.3f}" if base else "",
        f"{dm['c']['p50_ms']:.3f} / {dm['c']['p99_ms']:.3f}")
    for mode, title in (("shared", "shared cores, wrk -t2"), ("isolated", "server on 1 CPU, wrk -t1 on the other")):
        m = u[mode]
        um, ur, fa, fl = m["median"], m["ratios"], m["fastapi"], m["floor"]
        workers = res["params"]["fastapi_workers"] if mode == "shared" else 1
        row(f"**uploads, {title}**: FastAPI reference ({workers} worker{'s' if workers > 1 else ''}), decisions/s",
            fmt_rps(um[fa]["rps"]), fmt_rps(um[fa]["rps"]))
        row("  … nginx answering `{}` (the floor), req/s", fmt_rps(um[fl]["rps"]), fmt_rps(um[fl]["rps"]))
        row("  … assetgate, decisions/s", fmt_rps(um["base"]["rps"]) if base else "", fmt_rps(um["new"]["rps"]))
        row("  … CPU per decision, µs: assetgate (FastAPI; nginx floor)",
            f"{um['base']['server_cpu_us_per_req']:.1f}" if base else "",
            f"{um['new']['server_cpu_us_per_req']:.1f} ({um[fa]['server_cpu_us_per_req']:.0f}; "
            f"{um[fl]['server_cpu_us_per_req']:.1f})")
        nf = ur["new_over_fastapi"]
        row("  … **assetgate / FastAPI**, median of per-round ratios",
            f"{ur.get('base_over_fastapi', 0):.1f}×" if base else "", f"**{nf:.1f}×**", "≥ 20×",
            "yes" if nf >= 20 else "**no**")
        row("  … floor / FastAPI: the most any hook could reach here", f"{ur['floor_over_fastapi']:.1f}×",
            f"{ur['floor_over_fastapi']:.1f}×")
        row("  … assetgate / floor", "", f"{ur['new_over_floor']:.3f}")
        if "hyper1" in um:
            row("  … hyper answering `{}` (examples/hyper_floor.rs), req/s; / FastAPI", "",
                f"{fmt_rps(um['hyper1']['rps'])}; {ur['hyper_over_fastapi']:.1f}×")
            row("  … assetgate / hyper floor", "", f"{ur['new_over_hyper']:.3f}")
    h = u["half_load"]
    hm = h["median"]
    p99 = hm["new"]["p99_ms"]
    row(f"**uploads at half the isolated max** ({h['target_rps']:,.0f}/s, oha, constant rate): achieved req/s",
        fmt_rps(hm["base"]["rps"]) if base else "", fmt_rps(hm["new"]["rps"]))
    row("  … assetgate p50 / p99 latency, ms (median of rounds)",
        f"{hm['base']['p50_ms']:.3f} / {hm['base']['p99_ms']:.3f}" if base else "",
        f"{hm['new']['p50_ms']:.3f} / **{p99:.3f}**", "p99 < 1 ms", "yes" if p99 < 1 else "**no**")
    row("  … nginx floor at the same rate, p50 / p99, ms",
        f"{hm['floor1']['p50_ms']:.3f} / {hm['floor1']['p99_ms']:.3f}",
        f"{hm['floor1']['p50_ms']:.3f} / {hm['floor1']['p99_ms']:.3f}")
    sm = s["median"]
    rss_load = max(d["rss_max_kib"]["new"], u["rss_max_kib"]["new"]) / 1024
    row("RSS idle (after /readyz), MiB", f"{sm['base']['idle_rss_kib'] / 1024:.1f}" if base else "",
        f"{sm['new']['idle_rss_kib'] / 1024:.1f}")
    rss_load_b = max(d["rss_max_kib"].get("base", 0), u["rss_max_kib"].get("base", 0)) / 1024
    row("RSS under load (max VmRSS sampled; VmHWM), MiB",
        f"{rss_load_b:.1f}; {res['hwm_kib'].get('base', 0) / 1024:.1f}" if base else "",
        f"{rss_load:.1f}; {res['hwm_kib']['new'] / 1024:.1f}", "< 20 MiB",
        "yes" if res["hwm_kib"]["new"] / 1024 < 20 else "**no**")
    row("start → /readyz 200, ms (median)", f"{sm['base']['readyz_ms']:.1f}" if base else "",
        f"{sm['new']['readyz_ms']:.1f}")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target/release/assetgate"))
    ap.add_argument("--baseline", help="a second assetgate binary, measured interleaved as 'before'")
    ap.add_argument("--baseline-label", default=None)
    ap.add_argument("--log-level", default="info", help="assetgate's log_level (the product logs at info)")
    ap.add_argument("--baseline-log-level", default="info")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 5)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_SECONDS", 8)))
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dl-conns", type=int, default=32)
    ap.add_argument("--up-conns", type=int, default=32)
    ap.add_argument("--fastapi-workers", type=int, default=2, help="workers of the shared-case FastAPI hook")
    ap.add_argument("--half-conns", type=int, default=16, help="oha connections for the half-load latency")
    ap.add_argument("--hyper-floor", default=str(ROOT / "target/release/examples/hyper_floor"),
                    help="examples/hyper_floor.rs, built in release (benches/run.sh does)")
    ap.add_argument("--oha", default=shutil.which("oha") or str(ROOT / ".peers/bin/oha"))
    ap.add_argument("--startup-reps", type=int, default=15)
    ap.add_argument("--out", default=str(BENCHES / "results"))
    ap.add_argument("--peers-python", default=str(ROOT / ".peers/venv/bin/python"))
    ap.add_argument("--sections", default="downloads,uploads,startup")
    ap.add_argument("--render", metavar="RESULTS_JSON", help="only re-render table.md and chart.png from a run")
    args = ap.parse_args()
    if args.render:
        res = json.loads(Path(args.render).read_text())
        out = Path(args.out)
        t = table(res)
        (out / "table.md").write_text(t)
        print(t)
        subprocess.run([sys.executable, str(BENCHES / "chart.py"), args.render, str(out / "chart.png")], check=True)
        return
    if args.baseline and not args.baseline_label:
        args.baseline_label = args.baseline
    global OHA
    OHA = args.oha
    if "uploads" in args.sections and not os.access(OHA, os.X_OK):
        sys.exit(f"oha not found at {OHA}: `cargo install oha --locked --root .peers` (benches/run.sh does)")

    work = Path(tempfile.mkdtemp(prefix="assetgate-bench-"))
    os.chmod(work, 0o755)
    (work / "nginx").mkdir()
    (work / "nginx1").mkdir()
    (work / "uploads").mkdir()
    (work / "assets" / "public").mkdir(parents=True)
    procs: list[Proc] = []
    result: dict = {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(args),
        "params": {k: v for k, v in vars(args).items() if k not in ("out", "peers_python")},
    }
    try:
        log(f"minting links and an upload token with granite-assets ({work})")
        minted = json.loads(subprocess.run(
            [args.peers_python, str(BENCHES / "mint.py"), "--storage", str(work / "assets"),
             "--link-secret", LINK_SECRET, "--upload-secret", UPLOAD_SECRET],
            capture_output=True, text=True, check=True).stdout)
        result["versions"]["granite_assets"] = minted["granite_assets"]
        links_file = work / "links.txt"
        links_file.write_text("\n".join(minted["links"]) + "\n")
        body_file = work / "pre-create.json"
        body_file.write_text(minted["pre_create_body"])
        for root, dirs, files in os.walk(work):
            for n in dirs:
                os.chmod(Path(root) / n, 0o755)

        ports = {c: free_port() for c in ("a", "b", "c", "floor", "gate_new", "fastapi", "fastapi1", "upfloor",
                                          "upfloor1", "hyper1")}
        gates = {"assetgate": ports["gate_new"]}
        gate_procs = {"new": start_assetgate("assetgate-new", args.bin, ports["gate_new"], work, args.log_level)}
        procs.append(gate_procs["new"])
        if args.baseline:
            ports["c0"], ports["gate_base"] = free_port(), free_port()
            gates["assetgate_base"] = ports["gate_base"]
            gate_procs["base"] = start_assetgate("assetgate-base", args.baseline, ports["gate_base"], work,
                                                args.baseline_log_level)
            procs.append(gate_procs["base"])
        result["idle_rss_kib"] = {n: rss(p.p.pid)["VmRSS"] for n, p in gate_procs.items()}

        conf = work / "nginx" / "nginx.conf"
        conf.write_text(nginx_conf(work, ports, gates))
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        procs.append(Proc("nginx", [nginx_bin, "-p", str(work / "nginx"), "-c", str(conf), "-e",
                                    str(work / "nginx/error.log"), "-g", "daemon off;"], work / "nginx/stderr.log"))
        for c in ("a", "b", "c", "floor", "upfloor") + (("c0",) if args.baseline else ()):
            wait_port(ports[c], procs[-1].p)
        conf1 = work / "nginx1" / "nginx.conf"
        conf1.write_text(floor1_conf(work, ports["upfloor1"]))
        nginx1 = Proc("nginx1", [nginx_bin, "-p", str(work / "nginx1"), "-c", str(conf1), "-e",
                                 str(work / "nginx1/error.log"), "-g", "daemon off;"], work / "nginx1/stderr.log",
                      cpus=SERVER_CPUS)
        procs.append(nginx1)
        wait_port(ports["upfloor1"], nginx1.p)

        env = dict(os.environ, UPLOAD_SECRETS=UPLOAD_SECRET, PYTHONDONTWRITEBYTECODE="1")
        fastapi = Proc("fastapi", [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
                                   "--port", str(ports["fastapi"]), "--workers", str(args.fastapi_workers),
                                   "--no-access-log", "--log-level", "warning"],
                       work / "fastapi.log", env=env, cwd=BENCHES / "reference_hook")
        procs.append(fastapi)
        wait_port(ports["fastapi"], procs[-1].p)
        hyper1 = None
        if os.access(args.hyper_floor, os.X_OK):
            hyper1 = Proc("hyper1", [args.hyper_floor, f"127.0.0.1:{ports['hyper1']}"], work / "hyper1.log",
                          cpus=SERVER_CPUS)
            procs.append(hyper1)
            wait_port(ports["hyper1"], hyper1.p)
        else:
            log(f"no {args.hyper_floor}: the hyper floor is left out (cargo build --release --example hyper_floor)")
        # The isolated case: one core, so one worker, confined from the start.
        fastapi1 = Proc("fastapi1", [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
                                     "--port", str(ports["fastapi1"]), "--workers", "1",
                                     "--no-access-log", "--log-level", "warning"],
                        work / "fastapi1.log", env=env, cwd=BENCHES / "reference_hook", cpus=SERVER_CPUS)
        procs.append(fastapi1)
        wait_port(ports["fastapi1"], fastapi1.p)

        # Sanity: every path gives the verdict it should before anything is timed.
        link = minted["links"][0]
        forged = re.sub(r"md5=[^&]+", "md5=AAAAAAAAAAAAAAAAAAAAAA", link)
        for c in ("a", "b", "c") + (("c0",) if args.baseline else ()):
            st, _, body = http("GET", f"http://127.0.0.1:{ports[c]}{link}")
            assert st == 200 and len(body) == 1024, (c, st, len(body))
            if c != "b":
                st, _, _ = http("GET", f"http://127.0.0.1:{ports[c]}{forged}")
                assert st == 403, (c, "forged link", st)
        for name in ("upfloor", "upfloor1") + (("hyper1",) if hyper1 else ()):
            st, _, body = http("POST", f"http://127.0.0.1:{ports[name]}/tusd", body_file.read_bytes(),
                               {"Content-Type": "application/json"})
            assert st == 200 and json.loads(body) == {}, (name, st, body)
        for name, port in [("new", ports["gate_new"]), ("fastapi", ports["fastapi"]),
                           ("fastapi1", ports["fastapi1"])] + ([("base", ports["gate_base"])] if args.baseline else []):
            st, _, body = http("POST", f"http://127.0.0.1:{port}/tusd", body_file.read_bytes(),
                               {"Content-Type": "application/json"})
            assert st == 200 and json.loads(body) == {}, (name, st, body)
            hook = json.loads(minted["pre_create_body"])
            token = hook["Event"]["Upload"]["MetaData"]["upload-token"]
            hook["Event"]["Upload"]["MetaData"]["upload-token"] = token[:-1] + ("0" if token[-1] != "0" else "1")
            bad = json.dumps(hook)
            st, _, body = http("POST", f"http://127.0.0.1:{port}/tusd", bad.encode(),
                               {"Content-Type": "application/json"})
            assert st == 200 and json.loads(body).get("RejectUpload") is True, (name, "tampered", st, body)
        log("sanity checks passed")
        denies_before = {n: deny_lines(ports["gate_new" if n == "new" else "gate_base"]) for n in gate_procs}

        sections = args.sections.split(",")
        if "downloads" in sections:
            log(f"downloads: {args.rounds} rounds x {args.duration}s per case")
            result["downloads"] = downloads(args, ports, links_file, gate_procs)
        if "uploads" in sections:
            log(f"uploads: {args.rounds} rounds x {args.duration}s per case")
            peers = {"fastapi": (ports["fastapi"], fastapi.p.pid), "fastapi1": (ports["fastapi1"], fastapi1.p.pid),
                     "floor": (ports["upfloor"], procs[[p.name for p in procs].index("nginx")].p.pid),
                     "floor1": (ports["upfloor1"], nginx1.p.pid),
                     **({"hyper1": (ports["hyper1"], hyper1.p.pid)} if hyper1 else {})}
            result["uploads"] = uploads(args, ports, body_file, gate_procs, peers)
        result["hwm_kib"] = {n: rss(p.p.pid)["VmHWM"] for n, p in gate_procs.items()}
        # Every assetgate decision during the runs must have been an allow.
        for n, p in gate_procs.items():
            port = ports["gate_new" if n == "new" else "gate_base"]
            assert deny_lines(port) == denies_before[n], (n, "denials during the runs", deny_lines(port))
            _, _, m = http("GET", f"http://127.0.0.1:{port}/metrics")
            m = m.decode()
            result.setdefault("decisions", {})[n] = {
                l.split("{")[0] + "{" + l.split("{")[1].split("}")[0] + "}": int(float(l.split()[-1]))
                for l in m.splitlines() if 'decision="allow"' in l}
        if "startup" in sections:
            bins = {"new": args.bin, **({"base": args.baseline} if args.baseline else {})}
            log(f"start-up: {args.startup_reps} repetitions")
            result["startup"] = startup(args, bins, work)
    finally:
        for p in reversed(procs):
            p.stop()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    if {"downloads", "uploads", "startup"} <= set(result):
        t = table(result)
        (out / "table.md").write_text(t)
        print(t)
        subprocess.run([sys.executable, str(BENCHES / "chart.py"), str(out / "results.json"), str(out / "chart.png")],
                       check=True)
    shutil.rmtree(work, ignore_errors=True)
    log(f"results in {out}")


if __name__ == "__main__":
    main()
