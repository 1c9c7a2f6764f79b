#!/usr/bin/env python3
"""Batched vs solo PNGs on the bundled checkpoints, end to end (Python standard library only).

Starts `rind serve` twice from this checkout (.build/release/rind, ./checkpoints): once with
--workers 1 (jobs one at a time) and once with --workers 8 (running jobs of a model share each
step), submits the same jobs to each at once (different models, classes, seeds, steps, samplers,
schedules, guidance, counts), and compares the PNG bytes. Prints one line per job; exit status 1
if any differ. Loopback ports 18110 and 18111.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


queries = ["model=cifar10&class=1&seed=11&steps=20", "model=cifar10&class=3&seed=12&steps=25&sampler=ddpm&n=2",
           "model=cifar10&class=5&seed=13&steps=15&guidance=0", "model=imagenet64&class=207&seed=14&steps=20",
           "model=imagenet64&class=1&seed=15&steps=12&guidance=1.5&schedule=sigmoid"]
def run(port, workers):
    state = tempfile.mkdtemp()
    p = subprocess.Popen([".build/release/rind", "serve", "--checkpoints", "checkpoints", "--port", str(port), "--state-dir", state,
                          "--workers", str(workers), "--log-level", "warning"], stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz"); break
        except Exception: time.sleep(0.2)
    ids = [json.load(urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/generate?{q}", method="POST")))["id"] for q in queries]
    out = []
    for i in ids:
        while True:
            job = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs/{i}"))
            if job["status"] not in ("queued", "running"): break
            time.sleep(0.05)
        assert job["status"] == "succeeded", job
        out.append([urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs/{i}/image.png?i={k}").read() for k in range(job["image_count"])])
    p.terminate()
    p.wait()
    shutil.rmtree(state, ignore_errors=True)
    return out
solo = run(18110, 1)
batched = run(18111, 8)
differ = 0
for q, a, b in zip(queries, solo, batched):
    differ += a != b
    print(q, "PNG bytes identical" if a == b else "DIFFER", [hashlib.sha256(x).hexdigest()[:12] for x in b])
sys.exit(1 if differ else 0)
