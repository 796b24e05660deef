#!/usr/bin/env python3
"""Agent benchmarks against moto on loopback (figures, not tests).

  python3 Benchmarks/agent.py [--files 100000] [--dirs 10000] [--saves 50]

1. Change -> object visible in the bucket: p50/p99 over --saves single-file saves, default debounce (1 s).
2. A --files/--dirs workspace: agent startup time to "watching" (journal already populated), RSS when idle,
   CPU over 60 idle seconds, and the time until one changed file lands, compared with `aws s3 sync` of the
   same workspace to the same prefix after the same kind of change (the CLI must list and stat everything).
Needs moto[server] and awscli. Bounded: every wait has a deadline; servers are stopped at the end.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import threading
import time

import boto3

from benchlib import cpu_of as proc_cpu
from benchlib import make_bucket, moto_and_workdir, release_binary


def proc_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


class AgentProc:
    def __init__(self, binary, workspace, bucket, env):
        self.p = subprocess.Popen([binary, "agent", "--workspace", workspace, "--bucket", bucket], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.watching = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.append(line)
            if " watching " in line:
                self.watching.set()

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=30)


def wait_for(s3, bucket, key, sha, deadline):
    while time.time() < deadline:
        try:
            if s3.head_object(Bucket=bucket, Key=key)["Metadata"].get("sha256") == sha:
                return True
        except Exception:
            pass
        time.sleep(0.01)
    return False


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--dirs", type=int, default=10_000)
    ap.add_argument("--saves", type=int, default=50)
    args = ap.parse_args()
    binary = release_binary()
    with moto_and_workdir("agent") as (moto, endpoint, work, env):
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y")
        for b in ("lat", "big"):
            make_bucket(endpoint, env, b)

        # 1. Save latency.
        ws = f"{work}/lat"
        os.makedirs(ws)
        agent = AgentProc(binary, ws, "lat", env)
        agent.watching.wait(30)
        lat = []
        for i in range(args.saves):
            body = f"save {i} {time.time()}".encode()
            sha = hashlib.sha256(body).hexdigest()
            start = time.time()
            with open(f"{ws}/file{i % 5}.txt", "wb") as f:
                f.write(body)
            if wait_for(s3, "lat", f"workspaces/bench/lat/file{i % 5}.txt", sha, start + 60):
                lat.append(time.time() - start)
            time.sleep(0.2)
        agent.stop()
        print(f"save -> visible in bucket, {len(lat)} saves, debounce 1 s: p50 {pct(lat, 50):.3f} s, p99 {pct(lat, 99):.3f} s, max {max(lat):.3f} s")

        # 2. A large workspace.
        big = f"{work}/big"
        per_dir = max(1, args.files // args.dirs)
        for d in range(args.dirs):
            p = f"{big}/d{d // 100}/e{d}"
            os.makedirs(p, exist_ok=True)
            for j in range(per_dir):
                with open(f"{p}/f{j}.txt", "w") as f:
                    f.write(f"{d}-{j}")
        t = time.time()
        r = subprocess.run([binary, "sync", "--workspace", big, "--bucket", "big", "--timeout", "3600"], env=env,
                           capture_output=True, text=True)
        print(f"{args.files} files / {args.dirs} dirs: initial sync {time.time() - t:.1f} s (exit {r.returncode})")

        t = time.time()
        agent = AgentProc(binary, big, "big", env)
        if not agent.watching.wait(600):
            sys.exit("agent did not start watching")
        print(f"  agent startup to watching: {time.time() - t:.2f} s")
        time.sleep(5)
        rss = proc_rss_mib(agent.p.pid)
        cpu0 = proc_cpu(agent.p.pid)
        time.sleep(60)
        cpu = proc_cpu(agent.p.pid) - cpu0
        print(f"  idle: RSS {rss:.1f} MiB (after 60 s: {proc_rss_mib(agent.p.pid):.1f} MiB), CPU over 60 s: {cpu:.2f} s")

        target = f"{big}/d{args.dirs // 200}/e{args.dirs // 2}/f0.txt"
        body = f"changed {time.time()}".encode()
        start = time.time()
        with open(target, "wb") as f:
            f.write(body)
        rel = os.path.relpath(target, big)
        ok = wait_for(s3, "big", f"workspaces/bench/big/{rel}", hashlib.sha256(body).hexdigest(), start + 120)
        print(f"  one changed file lands (agent): {time.time() - start:.2f} s{'' if ok else ' (timed out)'}")
        agent.stop()
        # The same kind of change, sent by the AWS CLI to the same prefix: it must list and compare everything.
        # (Our objects were written after the files' mtimes, so it uploads only what changed.)
        time.sleep(1.1)
        with open(target, "wb") as f:
            f.write(body + b" again")
        start = time.time()
        subprocess.run(["aws", "--endpoint-url", endpoint, "s3", "sync", big, "s3://big/workspaces/bench/big/",
                        "--only-show-errors"], env=env, check=True)
        print(f"  same change with aws s3 sync: {time.time() - start:.2f} s")


if __name__ == "__main__":
    main()
