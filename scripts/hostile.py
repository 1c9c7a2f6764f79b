#!/usr/bin/env python3
"""The hostile run: rind as an attacker and a flaky environment would treat it (issue 12).

usage: scripts/hostile.py [--short] [--binary .build/release/rind] [--examples N] [--kills N]

Starts real `rind serve` processes on loopback with the tiny test checkpoint and runs:
  fuzz       schemathesis against the served /openapi.yaml (examples, coverage and fuzzing
             phases; checks: no server error, status codes, content types, headers and response
             bodies against the schemas)
  slow       slow clients from four loopback addresses (32 connections each, the per-address
             limit) that trickle request heads and reconnect whenever they are cut off, while
             health checks and submits must still get answers
  disk-full  the state directory on a small tmpfs, filled: 507 on submit, /readyz 503, then
             space returns and accepted jobs succeed (needs root; skipped with the reason if not)
  kill-9     daemons killed with SIGKILL while jobs are queued and running, restarted; every
             accepted job must end succeeded, and equal requests must give identical PNGs
It prints a summary table (cases run, server errors, lost jobs, memory before and after) and a
closing line "hostile: N passed, M failed" (one per check) that scripts/test.sh counts.
--short is the CI size (a few minutes on 2 cores); without it, the long run.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINTS = os.path.join(ROOT, "Tests", "Fixtures", "checkpoints")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port, method, path, body=None, headers=None, timeout=30):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), data
    finally:
        connection.close()


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Daemon:
    """One `rind serve` on a free loopback port."""

    def __init__(self, binary, state, log, *flags):
        self.port = free_port()
        self.log = open(log, "ab")
        self.process = subprocess.Popen(
            [binary, "serve", "--checkpoints", CHECKPOINTS, "--port", str(self.port), "--state-dir", state,
             "--workers", "1", "--threads", "1", "--log-level", "warning", *flags],
            stdout=self.log, stderr=self.log, env={**os.environ, "OPENBLAS_THREAD_TIMEOUT": "1"})
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if request(self.port, "GET", "/readyz", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"rind serve exited with {self.process.returncode}; see {log}")
            time.sleep(0.1)
        raise RuntimeError(f"rind serve did not get ready; see {log}")

    def server_errors(self):
        """Answers with status 500 so far, from the daemon's own /metrics."""
        text = request(self.port, "GET", "/metrics")[2].decode()
        return int(sum(float(m.group(1)) for m in re.finditer(r'rind_http_requests_total\{[^}]*status="500"[^}]*\} (\S+)', text)))

    def kill(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.log.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Report:
    def __init__(self):
        self.rows = []
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"hostile: FAILED {name}: {detail}", flush=True)

    def row(self, phase, **fields):
        self.rows.append((phase, fields))


def schemathesis_phase(args, daemon, report, workdir):
    executable = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    if not os.path.exists(executable):
        report.check("fuzz", False, f"schemathesis is not installed next to {sys.executable} (scripts/test-python-env.sh)")
        return
    before = daemon.server_errors()
    command = [executable, "run", f"http://127.0.0.1:{daemon.port}/openapi.yaml",
               "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                           "response_headers_conformance,response_schema_conformance",
               "--phases", "examples,coverage,fuzzing", "--max-examples", str(args.examples),
               # One worker: hypothesis trips a CPython 3.11 ast.parse bug when run from threads.
               "--workers", "1", "--request-timeout", "30", "--suppress-health-check", "all",
               "--seed", str(args.seed), "--no-color"]
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    output = result.stdout + result.stderr
    with open(os.path.join(workdir, "schemathesis.log"), "w", encoding="utf-8") as handle:
        handle.write(output)
    generated = re.search(r"(\d+) generated", output)
    cases = int(generated.group(1)) if generated else 0
    failures = re.search(r"found (\d+) unique failures?", output)
    schema_failures = int(failures.group(1)) if failures else (0 if result.returncode == 0 else -1)
    errors = daemon.server_errors() - before
    report.row("fuzz", cases=cases, server_errors=errors, failures=schema_failures,
               seconds=round(time.time() - started))
    report.check("fuzz: schemathesis finished cleanly", result.returncode == 0,
                 "\n".join(output.splitlines()[-40:]))
    report.check("fuzz: cases run", cases >= args.examples, f"{cases} cases")
    report.check("fuzz: no server errors", errors == 0, f"{errors} answers with status 500")


def slow_phase(args, binary, report, workdir):
    state = os.path.join(workdir, "slow-state")
    # The default connection limits (256, 32 per address); a short read timeout so that the
    # trickling connections are cut within the phase.
    daemon = Daemon(binary, state, os.path.join(workdir, "slow.log"), "--read-timeout", "5")
    stop = threading.Event()
    cut = [0]

    def attacker(source):
        sockets = []
        while not stop.is_set():
            while len(sockets) < 32 and not stop.is_set():
                try:
                    sock = socket.socket()
                    sock.bind((source, 0))
                    sock.settimeout(2)
                    sock.connect(("127.0.0.1", daemon.port))
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    sockets.append(sock)
                except OSError:
                    sock.close()
                    time.sleep(0.05)
            time.sleep(0.3)
            for sock in list(sockets):
                try:
                    sock.sendall(b"X")   # trickle: every byte resets the idle timer
                    sock.setblocking(False)
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        raise OSError("closed")
                except BlockingIOError:
                    pass
                except OSError:
                    cut[0] += 1
                    sockets.remove(sock)
                    sock.close()
                finally:
                    if sock in sockets:
                        sock.setblocking(True)
        for sock in sockets:
            sock.close()

    attackers = [threading.Thread(target=attacker, args=(f"127.0.0.{i}",)) for i in range(2, 6)]
    for thread in attackers:
        thread.start()
    time.sleep(2)
    rss_before = rss_mib(daemon.process.pid)
    answered = unanswered = 0
    deadline = time.time() + args.slow_seconds
    while time.time() < deadline:
        for method, path, expected in (("GET", "/healthz", 200), ("POST", "/generate?class=0&steps=2", 202)):
            ok = False
            give_up = time.time() + 10
            while time.time() < give_up and not ok:
                try:
                    ok = request(daemon.port, method, path, timeout=10)[0] == expected
                except OSError:
                    time.sleep(0.2)
            answered += ok
            unanswered += not ok
        time.sleep(0.5)
    stop.set()
    for thread in attackers:
        thread.join()
    rss_after = rss_mib(daemon.process.pid)
    errors = daemon.server_errors()
    daemon.stop()
    report.row("slow", cases=answered + unanswered, server_errors=errors, unanswered=unanswered,
               slow_connections_cut=cut[0], rss_mib=f"{rss_before:.0f} -> {rss_after:.0f}")
    report.check("slow: health checks and submits answered within 10 s", unanswered == 0,
                 f"{unanswered} of {answered + unanswered} unanswered")
    report.check("slow: slow connections were cut", cut[0] > 0, "none cut")


def wait_finished(port, ids, seconds=300):
    deadline = time.time() + seconds
    final = {}
    while time.time() < deadline and len(final) < len(ids):
        for job in ids:
            if job in final:
                continue
            try:
                status, _, body = request(port, "GET", f"/jobs/{job}")
            except OSError:
                continue
            if status != 200:
                final[job] = f"http {status}"
            elif json.loads(body)["status"] in ("succeeded", "failed", "canceled"):
                final[job] = json.loads(body)["status"]
        time.sleep(0.1)
    return final


def disk_full_phase(args, binary, report, workdir):
    if os.geteuid() != 0:
        print("hostile: disk-full skipped: mounting a tmpfs needs root", flush=True)
        report.row("disk-full", skipped="not root")
        return
    mount = os.path.join(workdir, "tmpfs")
    os.makedirs(mount)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mount], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"hostile: disk-full skipped: cannot mount a tmpfs: {done.stderr.strip()}", flush=True)
        report.row("disk-full", skipped="mount refused")
        return
    try:
        daemon = Daemon(binary, os.path.join(mount, "state"), os.path.join(workdir, "disk-full.log"))
        accepted = []
        for index in range(4):
            status, _, body = request(daemon.port, "POST", f"/generate?class={index % 3}&steps=1000&n=16&preview_every=1")
            if status == 202:
                accepted.append(json.loads(body)["id"])
        filler = os.path.join(mount, "filler")
        with open(filler, "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        refused = request(daemon.port, "POST", "/generate?class=0&steps=2")
        problem = json.loads(refused[2] or b"{}")
        time.sleep(1.5)   # readiness probes the disk at most once a second
        ready_full = request(daemon.port, "GET", "/readyz")[0]
        time.sleep(2)
        statuses_full = {json.loads(request(daemon.port, "GET", f"/jobs/{job}")[2])["status"] for job in accepted}
        os.remove(filler)
        final = wait_finished(daemon.port, accepted)
        ready_after = request(daemon.port, "GET", "/readyz")[0]
        errors = daemon.server_errors()
        daemon.stop()
        lost = sum(1 for job in accepted if final.get(job) != "succeeded")
        report.row("disk-full", cases=len(accepted) + 1, server_errors=errors, lost_jobs=lost,
                   submit_when_full=refused[0], readyz_when_full=ready_full)
        report.check("disk-full: submit answers 507 with Retry-After", refused[0] == 507 and "Retry-After" in refused[1],
                     f"{refused[0]} {refused[1]}")
        report.check("disk-full: no path in the problem", mount not in problem.get("detail", ""), problem.get("detail"))
        report.check("disk-full: /readyz 503 while full", ready_full == 503, str(ready_full))
        report.check("disk-full: no job failed while full", "failed" not in statuses_full, str(statuses_full))
        report.check("disk-full: accepted jobs succeed once space returns", lost == 0, str(final))
        report.check("disk-full: /readyz 200 again", ready_after == 200, str(ready_after))
    finally:
        subprocess.run(["umount", "-l", mount], capture_output=True)


def kill_phase(args, binary, report, workdir):
    state = os.path.join(workdir, "kill-state")
    accepted = {}
    rng = random.Random(args.seed)
    for cycle in range(args.kills):
        daemon = Daemon(binary, state, os.path.join(workdir, "kill.log"))
        for index in range(4):
            params = (rng.randrange(3), rng.randrange(4))
            status, _, body = request(daemon.port, "POST",
                                      f"/generate?class={params[0]}&seed={params[1]}&steps=300&n=2&preview_every=50")
            if status == 202:
                accepted[json.loads(body)["id"]] = params
        time.sleep(rng.uniform(0.2, 1.5))
        daemon.kill()
    daemon = Daemon(binary, state, os.path.join(workdir, "kill.log"))
    final = wait_finished(daemon.port, list(accepted), seconds=600)
    lost = [job for job in accepted if final.get(job) != "succeeded"]
    images = {}
    mismatched = 0
    for job, params in accepted.items():
        if final.get(job) != "succeeded":
            continue
        for index in range(2):
            png = request(daemon.port, "GET", f"/jobs/{job}/image.png?i={index}")[2]
            key = (params, index)
            if key in images and images[key] != png:
                mismatched += 1
            images.setdefault(key, png)
    errors = daemon.server_errors()
    daemon.stop()
    report.row("kill-9", cases=len(accepted), server_errors=errors, lost_jobs=len(lost), cycles=args.kills,
               differing_images=mismatched)
    report.check("kill-9: no accepted job lost", not lost, str({job: final.get(job) for job in lost}))
    report.check("kill-9: equal requests give identical images", mismatched == 0, f"{mismatched} differ")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="the CI size")
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "rind"))
    parser.add_argument("--examples", type=int, help="schemathesis examples per operation")
    parser.add_argument("--kills", type=int, help="kill -9 cycles")
    parser.add_argument("--slow-seconds", type=float)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    args.examples = args.examples or (150 if args.short else 1000)
    args.kills = args.kills or (3 if args.short else 10)
    args.slow_seconds = args.slow_seconds or (15 if args.short else 120)
    if not os.path.exists(args.binary):
        sys.exit(f"hostile: no {args.binary}; run swift build -c release first")

    workdir = tempfile.mkdtemp(prefix="rind-hostile-")
    report = Report()
    started = time.time()
    daemon = Daemon(args.binary, os.path.join(workdir, "fuzz-state"), os.path.join(workdir, "fuzz.log"))
    rss_before = rss_mib(daemon.process.pid)
    try:
        schemathesis_phase(args, daemon, report, workdir)
        rss_after = rss_mib(daemon.process.pid)
        report.rows[-1][1]["rss_mib"] = f"{rss_before:.0f} -> {rss_after:.0f}" if report.rows else ""
    finally:
        daemon.stop()
    for phase in (slow_phase, disk_full_phase, kill_phase):
        try:
            phase(args, args.binary, report, workdir)
        except Exception as error:  # a phase that cannot run is a failed check, not a crash
            report.check(phase.__name__, False, repr(error))

    print(f"\nhostile run ({'short' if args.short else 'long'}), {time.time() - started:.0f} s, logs in {workdir}")
    columns = ["cases", "server_errors", "failures", "lost_jobs", "rss_mib"]
    print("| phase | " + " | ".join(columns) + " | other |")
    print("|" + "---|" * (len(columns) + 2))
    for phase, fields in report.rows:
        other = ", ".join(f"{k}={v}" for k, v in fields.items() if k not in columns)
        print(f"| {phase} | " + " | ".join(str(fields.get(c, "")) for c in columns) + f" | {other} |")
    print(f"hostile: {report.passed} passed, {report.failed} failed", flush=True)
    if report.failed == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
