#!/usr/bin/env python3
"""Restore benchmark against moto on loopback: ecocode-backup restore vs s3-pit-restore vs aws s3 cp --recursive,
for a 1000 x 4 KiB workspace and for one 256 MiB file. Prints wall, client CPU, peak RSS and moto's CPU;
best of two interleaved rounds. Needs moto[server], awscli and s3-pit-restore (pip).
"""
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import ROOT, free_port, row, timed  # noqa: E402


def main():
    subprocess.run(["swift", "build", "-c", "release", "--product", "ecocode-backup"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    binary = os.path.join(subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                                         capture_output=True, text=True).stdout.strip(), "ecocode-backup")
    work = tempfile.mkdtemp(prefix="ecocode-restore-bench-")
    port = free_port()
    moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(endpoint + "/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                   ECOCODE_AWS_REGION_NAME="us-east-1", AWS_ENDPOINT_URL=endpoint, HOME=work, USER="bench",
                   XDG_STATE_HOME=f"{work}/state", XDG_DATA_HOME=f"{work}/data", XDG_CONFIG_HOME=f"{work}/config")
        aws = ["aws", "--endpoint-url", endpoint]
        subprocess.run(aws + ["s3api", "create-bucket", "--bucket", "restore-bench"], env=env, check=True, capture_output=True)
        subprocess.run(aws + ["s3api", "put-bucket-versioning", "--bucket", "restore-bench", "--versioning-configuration",
                              "Status=Enabled"], env=env, check=True, capture_output=True)
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
        print(f"moto {endpoint}; {os.cpu_count()} cores")
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
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
