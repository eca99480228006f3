"""Server load: 50 concurrent clients submit 200 small camera-engine jobs to `img2vid serve`.

Reports accepted / 429 / lost counts (lost must be 0), p50/p99 submit latency and jobs per
minute, against a named peer measured in the same run: the same jobs made one after another
by `pipeline.generate` in one process (no HTTP, no queue). Writes a plot to
benchmarks/results/server_load.png.

    python benchmarks/server_load.py [--jobs 200] [--clients 50] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "coffee.png"
RESULTS = ROOT / "benchmarks" / "results"
# A small job: 12 frames of 256p, like a thumbnail preview.
JOB = {"resolution": "256", "num_frames": "12", "fps": "12", "motion": "ken-burns",
       "encode_speed": "ultrafast"}
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Load:
    accepted: dict[str, float] = field(default_factory=dict)  # job id -> submit time
    latencies: list[float] = field(default_factory=list)  # accepted submissions, seconds
    refused_429: int = 0
    submit_phase: float = 0.0  # seconds until every job was accepted
    other_errors: list[str] = field(default_factory=list)


def small_photo() -> bytes:
    with Image.open(PHOTO) as im:
        im = im.convert("RGB")
        im.thumbnail((360, 360))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("IMG2VID_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "img2vid", "serve", "--port", str(port),
                             "--workers", str(workers)], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {proc.stderr.read().decode()}"
                                 if proc.stderr else "the server did not start") from None
            time.sleep(0.2)


async def client_task(base: str, photo: bytes, pending: asyncio.Queue[int], load: Load,
                      t0: float) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while True:
            try:
                index = pending.get_nowait()
            except asyncio.QueueEmpty:
                return
            while True:  # retry this job until the queue takes it
                started = time.perf_counter()
                r = await client.post("/api/v1/jobs", data={**JOB, "prompt": f"job {index}"},
                                      files=[("images", ("photo.jpg", photo, "image/jpeg"))])
                elapsed = time.perf_counter() - started
                if r.status_code == 202:
                    load.accepted[r.json()["id"]] = time.perf_counter() - t0
                    load.latencies.append(elapsed)
                    break
                if r.status_code == 429:
                    load.refused_429 += 1
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                    continue
                load.other_errors.append(f"{r.status_code}: {r.text[:200]}")
                break


async def idle_latency(base: str, n: int = 10) -> list[float]:
    """Submit latency with nothing else going on: one client, one job at a time."""
    photo, latencies = small_photo(), []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for i in range(n):
            started = time.perf_counter()
            r = await client.post("/api/v1/jobs", data={**JOB, "prompt": f"idle {i}"},
                                  files=[("images", ("photo.jpg", photo, "image/jpeg"))])
            latencies.append(time.perf_counter() - started)
            job_id = r.json()["id"]
            while (await client.get(f"/api/v1/jobs/{job_id}")).json()["status"] not in TERMINAL:
                await asyncio.sleep(0.05)
    return latencies


async def run_load(base: str, jobs: int, clients: int) -> tuple[Load, dict[str, dict], float]:
    photo = small_photo()
    pending: asyncio.Queue[int] = asyncio.Queue()
    for i in range(jobs):
        pending.put_nowait(i)
    load = Load()
    t0 = time.perf_counter()
    await asyncio.gather(*(client_task(base, photo, pending, load, t0) for _ in range(clients)))
    load.submit_phase = time.perf_counter() - t0
    # Wait for every accepted job to end; whatever is missing or never ends is lost.
    finished: dict[str, dict] = {}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        deadline = time.perf_counter() + 600
        while len(finished) < len(load.accepted) and time.perf_counter() < deadline:
            offset = 0
            while True:
                page = (await client.get("/api/v1/jobs", params={"limit": 100,
                                                                  "offset": offset})).json()
                for job in page["jobs"]:
                    if job["status"] in TERMINAL and job["id"] in load.accepted:
                        finished[job["id"]] = job
                offset += 100
                if offset >= page["total"]:
                    break
            await asyncio.sleep(0.5)
    wall = time.perf_counter() - t0
    return load, finished, wall


def direct_jobs_per_minute(n: int) -> float:
    """The peer: the same job, one after another, through pipeline.generate in-process."""
    sys.path.insert(0, str(ROOT / "src"))
    from img2vid.core.config import LogSettings, OutputSettings, Settings
    from img2vid.core.request import build_request
    from img2vid.engines.base import create_engine
    from img2vid.execution.pipeline import generate

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        photo.write_bytes(small_photo())
        settings = Settings(output=OutputSettings(directory=Path(tmp) / "outputs"),
                            logs=LogSettings(directory=Path(tmp) / "logs"))
        engine = create_engine("camera", settings)
        request = build_request(images=(str(photo),), **JOB)
        generate(request, settings, engine=engine)  # warm-up
        t0 = time.perf_counter()
        for _ in range(n):
            generate(request, settings, engine=engine)
        return n / (time.perf_counter() - t0) * 60


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def plot(load: Load, finished: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    lat = sorted(x * 1000 for x in load.latencies)
    left.plot(lat, [i / len(lat) for i in range(1, len(lat) + 1)])
    left.set(xlabel="submit latency (ms)", ylabel="fraction of accepted submissions",
             title="POST /api/v1/jobs latency (CDF)")
    left.grid(alpha=0.3)
    ends = sorted(datetime.fromisoformat(j["finished"]).timestamp()
                  for j in finished.values() if j["finished"])
    if ends:
        right.plot([t - ends[0] for t in ends], range(1, len(ends) + 1))
    right.set(xlabel="seconds since the first job finished", ylabel="jobs finished",
              title="completions over time")
    right.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="server --workers")
    parser.add_argument("--peer-jobs", type=int, default=60)
    args = parser.parse_args()

    # The peer runs half before and half after the server, so drift in the machine's load
    # affects both sides alike.
    peer_before = direct_jobs_per_minute(args.peer_jobs // 2)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(Path(tmp), port, args.workers)
        try:
            base = f"http://127.0.0.1:{port}"
            idle = asyncio.run(idle_latency(base))
            load, finished, wall = asyncio.run(run_load(base, args.jobs, args.clients))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    peer = (peer_before + direct_jobs_per_minute(args.peer_jobs - args.peer_jobs // 2)) / 2

    succeeded = sum(1 for j in finished.values() if j["status"] == "succeeded")
    failed = [j["error"] for j in finished.values() if j["status"] != "succeeded"]
    lost = len(set(load.accepted) - set(finished))
    per_minute = succeeded / wall * 60
    rows = [
        ("jobs submitted by 50 clients" if args.clients == 50
         else f"jobs submitted by {args.clients} clients", f"{args.jobs}"),
        ("accepted (202)", f"{len(load.accepted)}"),
        ("429 responses (retried after Retry-After)", f"{load.refused_429}"),
        ("other refusals", f"{len(load.other_errors)}"),
        ("succeeded", f"{succeeded}"),
        ("failed", f"{len(failed)}"),
        ("lost", f"{lost}"),
        ("submit latency, idle server, 1 client (median of 10)",
         f"{statistics.median(idle) * 1000:.0f} ms"),
        ("submit latency p50 under load", f"{percentile(load.latencies, 50) * 1000:.0f} ms"),
        ("submit latency p99 under load", f"{percentile(load.latencies, 99) * 1000:.0f} ms"),
        ("POSTs answered per second while submitting",
         f"{(len(load.accepted) + load.refused_429) / load.submit_phase:.0f}"),
        ("server throughput", f"{per_minute:.0f} jobs/min (wall {wall:.1f} s)"),
        ("peer: pipeline.generate in-process, serial", f"{peer:.0f} jobs/min"),
        ("server / peer", f"{per_minute / peer:.2f}x"),
    ]
    print(f"\nServer load: {platform.processor() or platform.machine()}, {os.cpu_count()} "
          f"cores (load average {os.getloadavg()[0]:.1f}), --workers {args.workers}, "
          f"job = {JOB}\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for error in (load.other_errors + failed)[:5]:
        print("error:", error)
    out = RESULTS / "server_load.png"
    plot(load, finished, out)
    print(f"\nplot: {out}")
    return 0 if lost == 0 and not failed and not load.other_errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
