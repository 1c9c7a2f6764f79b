#!/usr/bin/env python3
"""Load test for a running rind daemon (Python standard library only).

N client threads share M jobs: each job is submitted (POST /generate), polled until it finishes
(GET /jobs/<id>, honouring Retry-After), and its image fetched (GET /jobs/<id>/image.png).
Prints throughput, latency percentiles, errors by kind (429 counted on their own) and the daemon's
resident memory before and after (from /proc/<pid>/status with --pid, else from /metrics).

Bounded: at most --requests jobs and --max-seconds of wall time; loopback addresses only.

    scripts/loadtest.py --url http://127.0.0.1:8080 --clients 4 --requests 40 --query 'class=1&steps=20'
"""
import argparse
import http.client
import ipaddress
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections import Counter


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, host, port, headers, timeout):
        self.host, self.port, self.headers, self.timeout = host, port, headers, timeout
        self.connection = None

    def request(self, method, path):
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                started = time.monotonic()
                self.connection.request(method, path, headers=self.headers)
                response = self.connection.getresponse()
                body = response.read()
                return response.status, dict(response.getheaders()), body, time.monotonic() - started
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = None
                if attempt == 1:
                    raise
        raise RuntimeError("unreachable")


def loopback_target(parser, url_text, api_key_file):
    """(host, port, headers) of the daemon at url_text; refuses (parser.error) anything but loopback.
    headers carries the bearer key from api_key_file, if given."""
    url = urllib.parse.urlsplit(url_text)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as error:
        parser.error(f"cannot resolve {host}: {error}")
    if not all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses):
        parser.error(f"{host} is not a loopback address: this tool only loads a local daemon")
    headers = {}
    if api_key_file:
        with open(api_key_file, encoding="utf-8") as handle:
            headers["Authorization"] = "Bearer " + handle.readline().strip()
    return host, port, headers


def resident_memory(args, host, port, headers):
    """The daemon's resident memory in bytes, or None."""
    if args.pid:
        try:
            with open(f"/proc/{args.pid}/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    try:
        status, _, body, _ = Client(host, port, headers, 10).request("GET", "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("rind_process_resident_memory_bytes"):
            return int(float(line.split()[-1]))
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads (1..64)")
    parser.add_argument("--requests", type=int, default=20, help="jobs in all (1..10000)")
    parser.add_argument("--query", default="class=0&steps=10", help="POST /generate query string")
    parser.add_argument("--max-seconds", type=float, default=300, help="stop starting jobs after this long")
    parser.add_argument("--poll-seconds", type=float, default=0.05, help="pause between polls")
    parser.add_argument("--pid", type=int, help="the daemon's pid, for /proc/<pid>/status")
    parser.add_argument("--api-key-file", help="bearer key file, if the daemon needs one")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 1 <= args.requests <= 10000:
        parser.error("--clients must be 1..64 and --requests 1..10000")

    host, port, headers = loopback_target(parser, args.url, args.api_key_file)

    memory_before = resident_memory(args, host, port, headers)
    lock = threading.Lock()
    next_job = [0]
    deadline = time.monotonic() + args.max_seconds
    job_latencies, request_latencies = [], {"submit": [], "poll": [], "image": []}
    errors = Counter()
    outcomes = Counter()

    def take_job():
        with lock:
            if next_job[0] >= args.requests or time.monotonic() > deadline:
                return False
            next_job[0] += 1
            return True

    def record(kind, seconds):
        with lock:
            request_latencies[kind].append(seconds)

    def error(kind):
        with lock:
            errors[kind] += 1

    def worker():
        client = Client(host, port, headers, 60)
        while take_job():
            started = time.monotonic()
            try:
                while True:
                    status, response_headers, body, seconds = client.request("POST", "/generate?" + args.query)
                    record("submit", seconds)
                    if status == 429:
                        error("429 queue full")
                        if time.monotonic() > deadline:
                            raise TimeoutError("deadline while the queue was full")
                        time.sleep(float(response_headers.get("Retry-After", "1")))
                        continue
                    if status != 202:
                        error(f"submit {status}")
                        raise ValueError(body[:200])
                    break
                job = json.loads(body)
                path = f"/jobs/{job['id']}"
                while job["status"] in ("queued", "running"):
                    if time.monotonic() > deadline + 600:
                        raise TimeoutError("job did not finish")
                    time.sleep(args.poll_seconds)
                    status, _, body, seconds = client.request("GET", path)
                    record("poll", seconds)
                    if status != 200:
                        error(f"poll {status}")
                        raise ValueError(body[:200])
                    job = json.loads(body)
                with lock:
                    outcomes[job["status"]] += 1
                if job["status"] != "succeeded":
                    error(f"job {job['status']}")
                    continue
                status, response_headers, body, seconds = client.request("GET", path + "/image.png")
                record("image", seconds)
                if status != 200 or not body.startswith(b"\x89PNG"):
                    error(f"image {status}")
                    continue
                with lock:
                    job_latencies.append(time.monotonic() - started)
            except (OSError, http.client.HTTPException) as failure:
                error(f"connection {type(failure).__name__}")
            except (ValueError, KeyError, TimeoutError) as failure:
                error(type(failure).__name__)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    memory_after = resident_memory(args, host, port, headers)

    def mib(value):
        return "n/a" if value is None else f"{value / 1048576:.1f} MiB"

    print(f"target         {args.url}  query {args.query!r}  clients {args.clients}")
    print(f"jobs           {len(job_latencies)} completed of {next_job[0]} started in {elapsed:.2f} s "
          f"({len(job_latencies) / elapsed if elapsed > 0 else 0:.2f} jobs/s)")
    print(f"outcomes       {dict(outcomes)}")
    print(f"job latency    p50 {percentile(job_latencies, 0.5):.3f} s  p90 {percentile(job_latencies, 0.9):.3f} s  "
          f"p99 {percentile(job_latencies, 0.99):.3f} s")
    for kind, values in request_latencies.items():
        print(f"{kind:<14} {len(values)} requests  p50 {percentile(values, 0.5) * 1000:.1f} ms  "
              f"p90 {percentile(values, 0.9) * 1000:.1f} ms  p99 {percentile(values, 0.99) * 1000:.1f} ms")
    print(f"errors         {dict(errors) if errors else 'none'}  (429 counted separately: {errors.get('429 queue full', 0)})")
    print(f"daemon RSS     before {mib(memory_before)}  after {mib(memory_after)}")
    failures = sum(count for kind, count in errors.items() if kind != "429 queue full")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
