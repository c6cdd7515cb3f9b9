"""Load-test ``rorf serve`` against fast local upstreams and report its overhead.

Everything runs on 127.0.0.1: two fake upstreams
(``python -m rorf_core.serving.testing``) and ``rorf serve`` start as
subprocesses, and this process sends the requests with ``--concurrency``
clients. Each response carries the server's own timings in headers, so the
routing overhead is the server's time minus the time it waited for the
upstream. The same prompts are also sent straight to an upstream, as the
baseline a client would see without the router.

    python benchmarks/bench_serve_load.py --router DIR [--requests 2000]

Without ``--router`` a wordllama router is trained first on
``--train-rows`` rows of the MMLU battles table. The run exits non-zero
when a request failed or the run passed ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "mmlu_gpt4_mixtral.parquet"
)
MODEL_A = "model-a"
MODEL_B = "model-b"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", help="router directory; default: train one")
    parser.add_argument(
        "--data", default=str(DEFAULT_DATA), help="battles table with an Input column"
    )
    parser.add_argument(
        "--train-rows", type=int, default=2000, help="rows to train on without --router"
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests through the router"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="concurrent clients"
    )
    parser.add_argument("--batch-wait-ms", type=float, default=1.0)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="bound on the whole run"
    )
    parser.add_argument("--json", dest="json_out", help="also write the results here")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_prompts(path: str) -> list[str]:
    import pyarrow.parquet as pq

    prompts = pq.read_table(path, columns=["Input"]).column("Input").to_pylist()
    return [text for text in prompts if isinstance(text, str) and text.strip()]


def train_small_router(data: str, rows: int, folder: Path) -> Path:
    import pyarrow.parquet as pq

    from rorf_core.cache import EmbeddingCache
    from rorf_core.training import TrainingConfig, train_router

    subset = folder / "train.parquet"
    pq.write_table(pq.read_table(data).slice(0, rows), subset)
    config = TrainingConfig(dataset=str(subset), embedder="wordllama")
    out = folder / "router"
    train_router(config, cache=EmbeddingCache.disabled(), out=out, progress=False)
    return out


def start_upstream(name: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "rorf_core.serving.testing", "--name", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http://127.0.0.1:"):
        process.kill()
        raise RuntimeError(f"fake upstream {name} failed to start")
    return process, base_url


def start_server(
    router: str, urls: dict[str, str], args: argparse.Namespace, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "from rorf_core.cli import main; main()",
        "serve",
        "--router",
        router,
        "--model-a",
        f"{MODEL_A}={urls[MODEL_A]}",
        "--model-b",
        f"{MODEL_B}={urls[MODEL_B]}",
        "--port",
        str(port),
        "--max-batch",
        str(args.max_batch),
        "--batch-wait-ms",
        str(args.batch_wait_ms),
    ]
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rorf serve exited early; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("rorf serve did not respond on /health within 120 s")


async def run_load(
    url: str, prompts: list[str], count: int, concurrency: int, model: str
) -> dict[str, Any]:
    """Send ``count`` requests with ``concurrency`` workers; return timings."""
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency
    )
    records: list[dict[str, Any]] = []
    failures: list[str] = []
    next_index = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            body = {
                "model": model,
                "messages": [
                    {"role": "user", "content": prompts[index % len(prompts)]}
                ],
            }
            started = time.perf_counter()
            try:
                response = await client.post(f"{url}/chat/completions", json=body)
            except httpx.HTTPError as error:
                failures.append(f"{type(error).__name__}: {error}")
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                continue
            records.append({"client_ms": elapsed_ms, **_timing_headers(response)})

    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall_s = time.perf_counter() - started
    return {"records": records, "failures": failures, "wall_s": wall_s}


def _timing_headers(response: httpx.Response) -> dict[str, Any]:
    headers = response.headers
    if "x-rorf-server-ms" not in headers:
        return {}
    return {
        "server_ms": float(headers["x-rorf-server-ms"]),
        "upstream_ms": float(headers["x-rorf-upstream-ms"]),
        "routing_ms": float(headers["x-rorf-routing-ms"]),
        "model": headers["x-rorf-model"],
    }


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(array, 50)), 3),
        "p99": round(float(np.percentile(array, 99)), 3),
        "max": round(float(array.max()), 3),
    }


def summarise(routed: dict[str, Any], direct: dict[str, Any]) -> dict[str, Any]:
    records = routed["records"]
    overhead = [r["server_ms"] - r["upstream_ms"] for r in records]
    seen_by_client = [r["client_ms"] - r["upstream_ms"] for r in records]
    share_a = sum(r["model"] == MODEL_A for r in records) / max(len(records), 1)
    return {
        "routed_requests": len(records),
        "routed_failures": len(routed["failures"]),
        "routed_throughput_rps": round(len(records) / routed["wall_s"], 1),
        "share_to_a": round(share_a, 3),
        "client_latency_ms": percentiles([r["client_ms"] for r in records]),
        "routing_ms": percentiles([r["routing_ms"] for r in records]),
        "server_overhead_ms": percentiles(overhead),
        "client_latency_minus_upstream_ms": percentiles(seen_by_client),
        "direct_requests": len(direct["records"]),
        "direct_failures": len(direct["failures"]),
        "direct_throughput_rps": round(len(direct["records"]) / direct["wall_s"], 1),
        "direct_client_latency_ms": percentiles(
            [r["client_ms"] for r in direct["records"]]
        ),
        "first_failures": (routed["failures"] + direct["failures"])[:5],
    }


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return None


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.machine(),
        "cpus": os.cpu_count(),
        # Other work on the machine slows every number down.
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


async def run_all(
    router: str, prompts: list[str], args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    processes: list[subprocess.Popen[Any]] = []
    try:
        urls = {}
        for name in (MODEL_A, MODEL_B):
            process, base_url = start_upstream(name)
            processes.append(process)
            urls[name] = base_url
        log = folder / "serve.log"
        server, server_url = start_server(router, urls, args, log)
        processes.append(server)
        # Warm-up: the first calls compile the forest kernel.
        await run_load(f"{server_url}/v1", prompts, 64, 8, "rorf")
        routed = await run_load(
            f"{server_url}/v1", prompts, args.requests, args.concurrency, "rorf"
        )
        direct = await run_load(
            urls[MODEL_A], prompts, args.requests, args.concurrency, MODEL_A
        )
        return summarise(routed, direct)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    args = parse_args()
    machine_info = machine()
    prompts = load_prompts(args.data)
    with tempfile.TemporaryDirectory(prefix="rorf-bench-serve-") as tmp:
        folder = Path(tmp)
        router = args.router or str(
            train_small_router(args.data, args.train_rows, folder)
        )
        try:
            results = asyncio.run(
                asyncio.wait_for(
                    run_all(router, prompts, args, folder), args.max_seconds
                )
            )
        except asyncio.TimeoutError:
            print(f"the run passed --max-seconds {args.max_seconds:g}", file=sys.stderr)
            return 1
    report = {
        "machine": machine_info,
        "settings": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "batch_wait_ms": args.batch_wait_ms,
            "max_batch": args.max_batch,
            "router": args.router or f"wordllama, trained on {args.train_rows} rows",
        },
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    failed = results["routed_failures"] + results["direct_failures"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
