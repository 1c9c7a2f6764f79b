#!/usr/bin/env python3
"""Throughput of a running rind daemon at 1, 2, 4, 8 concurrent jobs (Python standard library only).

For each concurrency C, C client threads each run --jobs-per-client jobs back to back: submit
(POST /generate), poll until finished (GET /jobs/<id>), fetch the image (GET /jobs/<id>/image.png).
With C jobs in flight the daemon's batch scheduler steps them together, one batched network pass per
step. Prints one row per C: images per minute over the level's wall time, job latency (submit to
image) p50/p95, the machine's load average before the level, and images/minute relative to C=1.

    scripts/throughput.py --url http://127.0.0.1:8080 --query 'model=cifar10&class=1&steps=20'

Loopback addresses only (Client and checks from scripts/loadtest.py). Exit status 1 if a job failed.
"""
import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadtest import Client, loopback_target, percentile  # noqa: E402


def run_level(host, port, headers, query, clients, jobs_per_client, poll_seconds):
    """Returns (images, wall seconds, job latencies, failures)."""
    lock = threading.Lock()
    latencies, failures, images = [], [], [0]

    def worker():
        client = Client(host, port, headers, 600)
        for _ in range(jobs_per_client):
            started = time.monotonic()
            try:
                while True:
                    status, response_headers, body, _ = client.request("POST", "/generate?" + query)
                    if status == 429:
                        time.sleep(float(response_headers.get("Retry-After", "1")))
                        continue
                    if status != 202:
                        raise ValueError(f"submit {status}: {body[:200]!r}")
                    break
                job = json.loads(body)
                path = f"/jobs/{job['id']}"
                while job["status"] in ("queued", "running"):
                    time.sleep(poll_seconds)
                    status, _, body, _ = client.request("GET", path)
                    if status != 200:
                        raise ValueError(f"poll {status}: {body[:200]!r}")
                    job = json.loads(body)
                if job["status"] != "succeeded":
                    raise ValueError(f"job {job['id']} {job['status']}: {job.get('error')}")
                count = job.get("image_count") or job.get("params", {}).get("n", 1) or 1
                for index in range(count):
                    status, _, body, _ = client.request("GET", f"{path}/image.png?i={index}")
                    if status != 200 or not body.startswith(b"\x89PNG"):
                        raise ValueError(f"image {status}")
                with lock:
                    latencies.append(time.monotonic() - started)
                    images[0] += count
            except Exception as failure:  # reported, never hidden
                with lock:
                    failures.append(str(failure))

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return images[0], time.monotonic() - started, latencies, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated concurrent jobs per level")
    parser.add_argument("--jobs-per-client", type=int, default=3, help="jobs each client runs back to back")
    parser.add_argument("--query", default="model=cifar10&class=1&steps=20&preview_every=0",
                        help="POST /generate query string")
    parser.add_argument("--warmup", type=int, default=1, help="untimed jobs before the first level")
    parser.add_argument("--poll-seconds", type=float, default=0.02)
    parser.add_argument("--api-key-file", help="bearer key file, if the daemon needs one")
    args = parser.parse_args()
    try:
        levels = [int(part) for part in args.concurrency.split(",")]
    except ValueError:
        parser.error("--concurrency must be comma-separated integers")
    if not levels or not all(1 <= level <= 64 for level in levels) or not 1 <= args.jobs_per_client <= 1000:
        parser.error("--concurrency values must be 1..64 and --jobs-per-client 1..1000")

    host, port, headers = loopback_target(parser, args.url, args.api_key_file)

    if args.warmup:
        run_level(host, port, headers, args.query, 1, args.warmup, args.poll_seconds)
    print(f"target {args.url}  query {args.query!r}  jobs per client {args.jobs_per_client}  cpus {os.cpu_count()}")
    print("| concurrent jobs | images | wall s | images/min | p50 latency s | p95 latency s | load avg (1 min) before | vs 1 |")
    print("|---|---|---|---|---|---|---|---|")
    baseline, failed = None, False
    for level in levels:
        load = os.getloadavg()[0]
        images, wall, latencies, failures = run_level(host, port, headers, args.query, level,
                                                      args.jobs_per_client, args.poll_seconds)
        rate = images / wall * 60 if wall > 0 else 0.0
        if baseline is None and level == 1:
            baseline = rate
        ratio = f"{rate / baseline:.2f}x" if baseline else "n/a"
        print(f"| {level} | {images} | {wall:.1f} | {rate:.1f} | {percentile(latencies, 0.5):.2f} | "
              f"{percentile(latencies, 0.95):.2f} | {load:.2f} | {ratio} |", flush=True)
        for failure in failures:
            failed = True
            print(f"  failure: {failure}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
