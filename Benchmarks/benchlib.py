"""Shared pieces of the benchmarks: release build, moto on a free loopback port, the client environment,
per-process timing. Every server started here is stopped by PID when its `with` block ends."""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_of(pid):
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def release_binary(product="ecocode-backup"):
    # Built as packaging/install.sh builds it: release, Swift runtime linked statically.
    flags = ["-c", "release", "--static-swift-stdlib"]
    subprocess.run(["swift", "build", *flags, "--product", product], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    bindir = subprocess.run(["swift", "build", *flags, "--show-bin-path"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    return os.path.join(bindir, product)


@contextlib.contextmanager
def moto_and_workdir(label):
    """Yields (moto process, endpoint, work dir, env for clients); cleans all up afterwards."""
    work = tempfile.mkdtemp(prefix=f"ecocode-{label}-bench-")
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
        print(f"moto {endpoint} (pid {moto.pid}); {os.cpu_count()} cores")
        yield moto, endpoint, work, env
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def make_bucket(endpoint, env, name):
    aws = ["aws", "--endpoint-url", endpoint, "s3api"]
    subprocess.run(aws + ["create-bucket", "--bucket", name], env=env, check=True, capture_output=True)
    subprocess.run(aws + ["put-bucket-versioning", "--bucket", name, "--versioning-configuration", "Status=Enabled"],
                   env=env, check=True, capture_output=True)


def timed(cmd, env, moto_pid):
    """Runs cmd; returns (wall, its cpu, its peak rss MiB, moto cpu)."""
    moto_before = cpu_of(moto_pid)
    start = time.time()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - start
    if status != 0:
        sys.exit(f"{cmd[0]} failed ({status}): {err[-2000:].decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, cpu_of(moto_pid) - moto_before


def row(name, t):
    print(f"  {name:<28} wall {t[0]:6.2f} s   cpu {t[1]:6.2f} s   peak RSS {t[2]:5.0f} MiB   moto cpu {t[3]:6.2f} s")
