"""Open API latency and throughput: the score route against ``/healthz`` on the same server.

The real service runs under uvicorn with 2 worker processes on loopback
(:func:`flowbureau.service.server.serve`, as ``flowbureau serve --workers 2``), on a fresh SQLite
database holding one institution (API key scoped ``view_score``), one enterprise with a live
consent to it, and one evaluation in the score history. Each route is loaded in the same run,
alternately (healthz, score, healthz, score), by ``wrk`` when it is installed (``apt-get
install wrk``), else by a bounded httpx async load generator; both run on the same machine as
the server, so the absolute numbers include the load generator's share of the CPUs and the
ratio is the comparison that matters.

A score read is the full path: API-key authentication (SHA-256 lookup), the per-key rate limit
(set high here so that it never refuses), the consent check, an audit entry appended to the
hash chain and committed, and the score history read. ``/healthz`` runs one ``SELECT 1``.

Load: a closed loop of ``--connections`` (default 4: two per worker, so each worker always
has the next request queued while it serves one, without a deep queue). The two workers share
one listening socket and asyncio accepts every pending connection on a wake-up, so a fresh set
of four connections often lands 4/0 or 3/1, and one worker then serves alone (measured here:
250-520 req/s of ``/healthz`` at 4/0, 750-1,100 at 3/1 or 2/2). Such a round measured the
split, not the route, and the two routes drew different splits. So with wrk each round is
checked a quarter of a second after it starts (``/proc``: the connections each worker holds)
and started again until the split is even (an even split came in about 1 start of 14 here; at
most 100 starts, then the last is kept; starts discarded and rounds kept uneven are reported).
Latency in a closed loop is queueing time plus service time (Little's law: p50 ~ connections /
throughput), so 16 connections on two single-threaded workers measured mostly the queue, not
the route. The
load generator and the server share the machine's cores, as do other jobs on a shared
machine: the run records the load average before and after, and the server's own CPU time
per request (user + system of the uvicorn processes over each round, from ``/proc``), which
contention does not inflate the way it inflates wall-clock latency.

The run ends with an in-process measurement (``--in-process N`` requests per route, 0 skips
it): the same app built in a child process and called through ASGI directly, no HTTP server, no
load generator, so the CPU time per request (all threads of the process) measures the route's own
cost, least inflated by other jobs on the machine.

Goals: score throughput at least half of ``/healthz``'s; score p99 under 25 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, parse_args

CODE = "91350100M000100Y43"


_SPLIT_CHECK_S = 0.25
"""How long a wrk round runs before its connection split is checked (all are open by then)."""
_SPLIT_TRIES = 100
"""Starts of one round at most while looking for an even connection split (module docstring)."""


@dataclass
class Load:
    """One measurement of one route."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_s: float = 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU (all uvicorn processes, user + system) per request, in ms."""
        return self.server_cpu_s * 1000 / self.requests if self.requests else float("nan")

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


def _seed(env: dict[str, str]) -> str:
    """Create the institution, key, enterprise, consent and evaluation; return the API key."""
    script = f"""
from datetime import UTC, datetime, timedelta
from flowbureau.config import get_settings
from flowbureau.scoring.history import ScoreEvaluation, record_evaluations
from flowbureau.service import accounts, apikeys, consent, profiles
from flowbureau.service.app import prepare_database
from flowbureau.service.context import build_context
from flowbureau.service.demo import _new_enterprise_user
from flowbureau.service.models import Operation, Purpose, Role
from flowbureau.service.principals import Principal
from flowbureau.service.schemas import ProfileUpdate
from flowbureau.storage.database import session_scope

settings = get_settings()
prepare_database(settings)
context = build_context(settings)
now = datetime.now(UTC)
with session_scope(context.sessions) as db:
    bank = accounts.create_institution(db, name="Bench Bank", now=now)
    _row, key = apikeys.create_api_key(
        db, institution_id=bank.id, scopes=["view_score"], now=now
    )
    user = _new_enterprise_user(db, context, "13800138000", "bench password 1", "Bench Co")
    owner = Principal(
        kind="user", id=user.id, role=Role.ENTERPRISE, enterprise_id=user.enterprise_id
    )
    profiles.replace_profile(
        db, principal=owner, update=ProfileUpdate(name="Bench Co", credit_code="{CODE}"),
        vault=context.vault, pseudonym_key=b"k", request_id=None, now=now,
    )
    consent.grant_consent(
        db, principal=owner, institution_id=bank.id, purpose=Purpose.PRE_LOAN_REVIEW,
        scopes=[Operation.VIEW_SCORE], expires_at=now + timedelta(days=30), max_days=366,
        request_id=None, now=now,
    )
    evaluation = ScoreEvaluation(
        enterprise_id="{CODE}", as_of=now.date(), computed_at=now, model_name="credit",
        model_version=1, score=641, pd=0.0052, grade="BBB", grade_rank=3,
        reasons=[{{"feature": "inflow_growth_12m", "description": "inflows fell",
                  "points_lost": 12.0}}],
        cases=[], features={{}}, data_summary={{}}, sources=["transactions"],
        data_fingerprint="b",
    )
    record_evaluations(db, [evaluation], pd_jump=0.05, now=now)
context.close()
print(key)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"seeding failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


_IN_PROCESS = """
import asyncio, json, sys, time
from flowbureau.service.app import create_app

app = create_app()
key, code, block = sys.argv[1], sys.argv[2], max(1, int(sys.argv[3]) // 5)
base = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "root_path": "", "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000)}
headers = [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")]
routes = {
    "healthz": ("/healthz", b"", headers),
    "score": (f"/v1/enterprises/{code}/score", b"purpose=pre_loan_review",
              headers + [(b"authorization", f"Bearer {key}".encode())]),
}

async def call(path, query, request_headers):
    status = 0
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
    scope = dict(base, path=path, raw_path=path.encode(), query_string=query,
                 headers=request_headers, state={})
    await app(scope, receive, send)
    return status

async def main():
    cpu = {name: [] for name in routes}
    async with app.router.lifespan_context(app):
        for route in routes.values():  # warm-up
            for _ in range(100):
                assert await call(*route) == 200
        for _ in range(5):  # alternate short blocks; keep each route's fastest
            for name, route in routes.items():
                started = time.process_time()
                for _ in range(block):
                    assert await call(*route) == 200
                cpu[name].append((time.process_time() - started) * 1000 / block)
    print(json.dumps({name: sorted(values) for name, values in cpu.items()}))

asyncio.run(main())
"""


def _in_process(env: dict[str, str], key: str, count: int) -> dict[str, list[float]]:
    """CPU ms per request of each route called in-process (5 blocks each, sorted)."""
    done = subprocess.run(
        [sys.executable, "-c", _IN_PROCESS, key, CODE, str(count)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"in-process measurement failed:\n{done.stderr[-2000:]}")
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _process_tree(root: int) -> dict[int, float]:
    """``root`` and its descendants: pid -> CPU seconds (user + system) so far (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return {pid: times.get(pid, 0.0) for pid in tree}


def _process_tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by ``root`` and its descendants."""
    return sum(_process_tree(root).values())


def _connections_per_worker(server: int, port: int) -> list[int]:
    """Established connections to ``port`` held by each worker of ``server``, sorted.

    Workers are the processes of the server's tree that hold the listening socket; sockets come
    from ``/proc/net/tcp`` (state, local port, inode) and each process's ``/proc/PID/fd``.
    """
    listening: set[str] = set()
    established: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) != port:
                    continue
                inode = f"socket:[{fields[9]}]"
                if fields[3] == "0A":
                    listening.add(inode)
                elif fields[3] == "01":
                    established.add(inode)
    counts = []
    for pid in _process_tree(server):
        links = []
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    links.append(os.readlink(fd))
        if pid != server and listening.intersection(links):
            counts.append(sum(link in established for link in links))
    return sorted(counts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_wrk(
    url: str, headers: dict[str, str], seconds: int, connections: int
) -> subprocess.Popen[str]:
    """Start one wrk round (its output is read by :func:`_wrk_load`)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _even(held: list[int], connections: int) -> bool:
    """Whether ``connections`` are spread over the workers as evenly as they can be."""
    return bool(held) and held[-1] - held[0] <= (connections % len(held) > 0)


def _wrk_load(running: subprocess.Popen[str]) -> Load:
    """Wait for a wrk round and read its counts and percentiles."""
    out, _ = running.communicate()
    if running.returncode != 0:
        raise SystemExit(f"wrk failed ({running.returncode}):\n{out}")

    def latency(percent: str) -> float:
        found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not found:
            raise SystemExit(f"cannot read the {percent}th percentile from wrk:\n{out}")
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    if not total:
        raise SystemExit(f"cannot read the request count from wrk:\n{out}")
    elapsed = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return Load(int(total.group(1)), elapsed, latency("50"), latency("99"), errors)


async def _httpx(url: str, headers: dict[str, str], seconds: int, connections: int) -> Load:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.get(url)
                latencies.append((time.perf_counter() - start) * 1000)
                errors += response.status_code != 200

        begun = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - begun
    latencies.sort()
    return Load(
        len(latencies),
        elapsed,
        latencies[len(latencies) // 2],
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        errors,
    )


def _combine(parts: list[Load]) -> Load:
    """Two rounds of one route: summed counts, request-weighted percentiles."""
    total = sum(p.requests for p in parts)
    return Load(
        total,
        sum(p.seconds for p in parts),
        sum(p.p50_ms * p.requests for p in parts) / total,
        sum(p.p99_ms * p.requests for p in parts) / total,
        sum(p.errors for p in parts),
        sum(p.server_cpu_s for p in parts),
    )


def _fastest(in_process: dict[str, list[float]], name: str) -> float | None:
    values = in_process.get(name)
    return round(min(values), 3) if values else None


def main() -> None:
    """Run the benchmark and print the report."""
    args = parse_args(
        __doc__.splitlines()[0],
        connections={"type": int, "default": 4, "help": "concurrent connections (default 4)"},
        seconds={"type": int, "default": None, "help": "seconds per round (default 8, quick 3)"},
        in_process={
            "type": int,
            "default": None,
            "help": "requests per route in-process, 0 skips (default 2000, quick 300)",
        },
    )
    seconds = args.seconds or (3 if args.quick else 8)
    root = Path(tempfile.mkdtemp(prefix="fb-bench-api-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLOWBUREAU_")},
        "FLOWBUREAU_ENV": "test",
        "FLOWBUREAU_DATA_DIR": str(root / "data"),
        "FLOWBUREAU_SMS_BACKEND": f"file:{root / 'sms.jsonl'}",
        "FLOWBUREAU_SERVICE__API_KEY_REQUESTS_PER_MINUTE": "100000000",
        "FLOWBUREAU_SERVICE__WEBHOOK_POLL_SECONDS": "0",
    }
    key = _seed(env)
    load_before = os.getloadavg()
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowbureau.service.server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    generator = "wrk" if shutil.which("wrk") else "httpx"
    try:
        for _ in range(150):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not start")
        routes = {
            "healthz": (base + "/healthz", {}),
            "score": (
                f"{base}/v1/enterprises/{CODE}/score?purpose=pre_loan_review",
                {"Authorization": f"Bearer {key}"},
            ),
        }
        check = httpx.get(routes["score"][0], headers=routes["score"][1])
        if check.status_code != 200 or check.json().get("grade") != "BBB":
            raise SystemExit(f"the score route does not answer as expected: {check.text}")

        discarded = dict.fromkeys(routes, 0)
        uneven = dict.fromkeys(routes, 0)

        def measure(name: str, span: int) -> Load:
            """One round of ``name``; with wrk, only a start whose connections are split evenly
            over the workers is kept (module docstring), at most :data:`_SPLIT_TRIES` starts."""
            url, headers = routes[name]
            if generator == "httpx":
                cpu_before = _process_tree_cpu(server.pid)
                load = asyncio.run(_httpx(url, headers, span, args.connections))
            else:
                for attempt in range(_SPLIT_TRIES):
                    cpu_before = _process_tree_cpu(server.pid)
                    running = _start_wrk(url, headers, span, args.connections)
                    time.sleep(_SPLIT_CHECK_S)
                    even = _even(_connections_per_worker(server.pid, port), args.connections)
                    if not even and attempt + 1 < _SPLIT_TRIES:
                        running.kill()
                        running.communicate()
                        discarded[name] += 1
                        continue
                    uneven[name] += not even
                    load = _wrk_load(running)
                    break
            load.server_cpu_s = _process_tree_cpu(server.pid) - cpu_before
            return load

        for name in routes:  # warm-up: connections, caches, the workers' first requests
            measure(name, 1)
        rounds: dict[str, list[Load]] = {name: [] for name in routes}
        for _ in range(2):
            for name in routes:
                rounds[name].append(measure(name, seconds))
        server.terminate()
        server.wait(timeout=20)
        load_after = os.getloadavg()
        in_process_count = (
            args.in_process if args.in_process is not None else (300 if args.quick else 2000)
        )
        in_process = _in_process(env, key, in_process_count) if in_process_count > 0 else {}
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)
    health, score = _combine(rounds["healthz"]), _combine(rounds["score"])
    report = Report(
        "api",
        f"GET score vs /healthz, uvicorn 2 workers, {args.connections} connections, {generator}",
        ["route", "requests", "req/s", "p50 ms", "p99 ms", "server CPU ms/req", "errors"],
    )
    for name, load in (("/healthz", health), ("/v1/enterprises/{code}/score", score)):
        report.row(
            name,
            load.requests,
            round(load.rps, 1),
            round(load.p50_ms, 2),
            round(load.p99_ms, 2),
            round(load.cpu_ms_per_request, 2),
            load.errors,
        )
    ratio = score.rps / health.rps
    report.figures.update(
        {
            "generator": generator,
            "connections": args.connections,
            "seconds_per_round": seconds,
            "healthz_rps": health.rps,
            "healthz_p50_ms": health.p50_ms,
            "healthz_p99_ms": health.p99_ms,
            "score_rps": score.rps,
            "score_p50_ms": score.p50_ms,
            "score_p99_ms": score.p99_ms,
            "healthz_server_cpu_ms_per_request": health.cpu_ms_per_request,
            "score_server_cpu_ms_per_request": score.cpu_ms_per_request,
            "in_process_healthz_cpu_ms_per_request": _fastest(in_process, "healthz"),
            "in_process_score_cpu_ms_per_request": _fastest(in_process, "score"),
            "healthz_uneven_starts_discarded": discarded["healthz"],
            "score_uneven_starts_discarded": discarded["score"],
            "uneven_rounds_kept": uneven["healthz"] + uneven["score"],
            "load_average_1m_before": load_before[0],
            "load_average_1m_after": load_after[0],
            "errors": health.errors + score.errors,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    if in_process:
        report.row(
            "in-process /healthz | score (CPU ms/req, fastest of 5 blocks)",
            "",
            "",
            "",
            "",
            f"{_fastest(in_process, 'healthz'):.2f} | {_fastest(in_process, 'score'):.2f}",
            "",
        )
    report.goal("score_throughput_vs_healthz", ratio, 0.5, higher_is_better=True)
    report.goal("score_p99_ms", score.p99_ms, 25.0, higher_is_better=False)
    report.print()
    if health.errors or score.errors:
        raise SystemExit(f"{health.errors + score.errors} requests failed")


if __name__ == "__main__":
    main()
