#!/usr/bin/env python3
"""Benchmarks for `ecocode-backup sync` against moto on loopback, side by side with the AWS CLI.

  python3 Benchmarks/run.py            # builds release binaries first

Prints, for each case, wall seconds, CPU seconds (user+sys) and peak RSS of the client, plus moto's CPU share:
  - initial sync of 1000 x 4 KiB files: ecocode-backup sync vs aws s3 sync
  - one 256 MiB file: ecocode-backup sync vs aws s3 cp
  - a no-change sync of a 10,000-file workspace: time and S3 requests by method (via the verifying proxy)
  - SHA-256 throughput of the pipeline's reader vs `openssl speed -evp sha256`
Needs moto[server] and awscli (pip). Starts and stops its own servers; bounded in time and size.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

from benchlib import ROOT, make_bucket, moto_and_workdir, release_binary, row, timed


def main():
    binary = release_binary()
    hash_tool = release_binary("hash-throughput")
    with moto_and_workdir("sync") as (moto, endpoint, work, env):
        aws = ["aws", "--endpoint-url", endpoint]

        def bucket(name):
            make_bucket(endpoint, env, name)

        small = f"{work}/small"
        for i in range(1000):
            d = f"{small}/dir{i // 100}"
            os.makedirs(d, exist_ok=True)
            with open(f"{d}/file{i}.txt", "wb") as f:
                f.write(os.urandom(4096))
        # Two interleaved rounds each, best kept: moto's speed drifts as it stores more.
        print("1000 x 4 KiB, initial sync (best of 2):")
        ours, cli = [], []
        for r in range(2):
            bucket(f"bench-ours-small{r}"); bucket(f"bench-cli-small{r}")
            shutil.rmtree(f"{work}/state", ignore_errors=True)
            ours.append(timed([binary, "sync", "--workspace", small, "--bucket", f"bench-ours-small{r}"], env, moto.pid))
            cli.append(timed(aws + ["s3", "sync", small, f"s3://bench-cli-small{r}/small", "--only-show-errors"], env, moto.pid))
        row("ecocode-backup sync", min(ours))
        row("aws s3 sync", min(cli))

        big = f"{work}/big"
        os.makedirs(big)
        with open(f"{big}/blob.bin", "wb") as f:
            for _ in range(256):
                f.write(os.urandom(1 << 20))
        print("one 256 MiB file (best of 2):")
        ours, cli = [], []
        for r in range(2):
            bucket(f"bench-ours-big{r}"); bucket(f"bench-cli-big{r}")
            shutil.rmtree(f"{work}/state", ignore_errors=True)
            cli.append(timed(aws + ["s3", "cp", f"{big}/blob.bin", f"s3://bench-cli-big{r}/blob.bin", "--only-show-errors"], env, moto.pid))
            ours.append(timed([binary, "sync", "--workspace", big, "--bucket", f"bench-ours-big{r}"], env, moto.pid))
        row("ecocode-backup sync", min(ours))
        row("aws s3 cp", min(cli))

        hashed = subprocess.run([hash_tool, f"{big}/blob.bin"], capture_output=True, text=True).stdout.strip()
        speed = subprocess.run(["openssl", "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "3"],
                               capture_output=True, text=True).stdout
        m = re.search(r"sha256\s+([\d.]+)k", speed)
        print("hashing:")
        print(f"  {hashed}")
        if m:
            print(f"  openssl speed -evp sha256 (1 MiB blocks): {float(m.group(1)) * 1000 / 1073741824:.2f} GiB/s")

        # No-change sync of 10,000 files, through the verifying proxy so every request is counted.
        many = f"{work}/many"
        for i in range(10000):
            d = f"{many}/d{i // 100}"
            os.makedirs(d, exist_ok=True)
            with open(f"{d}/f{i}", "wb") as f:
                f.write(b"x%d" % i)
        proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "Tests/tools/s3_verify_proxy.py"), "--credentials=bench:bench"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = proxy.stdout.readline().split()
        penv = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{ready[1]}")
        # The proxy runs its own moto: create the bucket there, sync once, then measure a second, no-change sync.
        subprocess.run(aws[:1] + ["--endpoint-url", f"http://127.0.0.1:{ready[2]}", "s3api", "create-bucket", "--bucket", "bench-many"], env=env, check=True, capture_output=True)
        subprocess.run(aws[:1] + ["--endpoint-url", f"http://127.0.0.1:{ready[2]}", "s3api", "put-bucket-versioning", "--bucket", "bench-many", "--versioning-configuration", "Status=Enabled"], env=env, check=True, capture_output=True)
        shutil.rmtree(f"{work}/state")
        subprocess.run([binary, "sync", "--workspace", many, "--bucket", "bench-many"], env=penv, check=True, capture_output=True)
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{ready[1]}/__proxy/clear", data=b"{}")).read()
        t = timed([binary, "sync", "--workspace", many, "--bucket", "bench-many"], penv, int(ready[3]))
        log = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ready[1]}/__proxy/log").read())
        methods = {}
        for e in log:
            methods[e["method"]] = methods.get(e["method"], 0) + 1
        lists = sum(1 for e in log if "versions" in e["path"] or "list-type" in e["path"] or "uploads" in e["path"])
        print("no-change sync of 10,000 files:")
        print(f"  wall {t[0]:.2f} s, cpu {t[1]:.2f} s, peak RSS {t[2]:.0f} MiB, requests {methods or 'none'} (of them listings: {lists})")
        proxy.stdin.close()
        proxy.wait(timeout=30)


if __name__ == "__main__":
    main()
