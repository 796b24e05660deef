#!/usr/bin/env python3
"""Restore benchmark against moto on loopback: ecocode-backup restore vs s3-pit-restore vs aws s3 cp --recursive,
for a 1000 x 4 KiB workspace and for one 256 MiB file. Prints wall, client CPU, peak RSS and moto's CPU;
best of two interleaved rounds. Needs moto[server], awscli and s3-pit-restore (pip).
"""
import datetime
import os
import shutil
import subprocess
import time

from benchlib import make_bucket, moto_and_workdir, release_binary, row, timed


def main():
    binary = release_binary()
    with moto_and_workdir("restore") as (moto, endpoint, work, env):
        aws = ["aws", "--endpoint-url", endpoint]
        make_bucket(endpoint, env, "restore-bench")
        small, big = f"{work}/small", f"{work}/big"
        for i in range(1000):
            os.makedirs(f"{small}/d{i // 100}", exist_ok=True)
            with open(f"{small}/d{i // 100}/f{i}.txt", "wb") as f:
                f.write(os.urandom(4096))
        os.makedirs(big)
        with open(f"{big}/blob.bin", "wb") as f:
            for _ in range(256):
                f.write(os.urandom(1 << 20))
        for ws in (small, big):
            subprocess.run([binary, "sync", "--workspace", ws, "--bucket", "restore-bench"], env=env, check=True,
                           capture_output=True)
        time.sleep(1.1)
        at = datetime.datetime.now(datetime.timezone.utc)
        for name, ws, label in (("small", small, "1000 x 4 KiB"), ("big", big, "one 256 MiB file")):
            prefix = f"workspaces/bench/{name}/"
            results = {"ecocode-backup restore": [], "s3-pit-restore": [], "aws s3 cp --recursive": []}
            for r in range(2):
                out = f"{work}/out-{name}-{r}"
                results["ecocode-backup restore"].append(timed(
                    [binary, "restore", "--workspace", ws, "--bucket", "restore-bench", "--at", at.isoformat(),
                     "--to", f"{out}/ours"], env, moto.pid))
                results["s3-pit-restore"].append(timed(
                    ["s3-pit-restore", "-b", "restore-bench", "-p", prefix, "-d", f"{out}/pit",
                     "-t", at.strftime("%Y-%m-%d %H:%M:%S %z")], env, moto.pid))
                results["aws s3 cp --recursive"].append(timed(
                    aws + ["s3", "cp", "--recursive", f"s3://restore-bench/{prefix}", f"{out}/cli", "--only-show-errors"],
                    env, moto.pid))
                shutil.rmtree(out, ignore_errors=True)
            print(f"{label} (best of 2):")
            for tool, runs in results.items():
                row(tool, min(runs))


if __name__ == "__main__":
    main()
