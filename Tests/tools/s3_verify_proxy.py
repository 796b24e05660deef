#!/usr/bin/env python3
"""Test harness: starts moto_server on a free loopback port and a proxy in front of it that checks
every request independently of our Swift code, because moto accepts any signature and any checksum.

For each request the proxy checks, with botocore's own SigV4 implementation, that
  - the path and query are encoded the way AWS canonicalizes them (so signing the wire form is right),
  - x-amz-content-sha256 is the SHA-256 of the body actually received,
  - x-amz-checksum-sha256, when present, is the base64 SHA-256 of the body,
  - the Authorization signature is the one botocore computes for the same request.
A failed check answers 403 SignatureDoesNotMatch / 400 BadDigest without reaching moto.

Faults can be injected (for retry tests) with POST /__proxy/faults, a JSON list of
  {"method": "PUT", "path_contains": "part", "status": 503, "code": "SlowDown", "times": 2,
   "retry_after": "1", "reset": false, "delay": 0}
(a fault with only "delay" slows the request down and then forwards it; "truncate": true forwards it and
sends only half of the answer's body before hanging up)
GET /__proxy/log lists the requests seen; POST /__proxy/clear forgets log and faults, or with
{"path_contains": X} only the faults injected with that path_contains.

Prints "READY <proxy_port> <moto_port> <moto_pid>" once both listen. Stops (and stops moto by PID)
on SIGTERM or when its standard input closes, so a crashed test run leaves nothing behind.
"""
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SECRETS = {}  # access key id -> secret, from --credentials AK:SECRET
STATE = {"faults": [], "log": []}
LOCK = threading.Lock()
UPSTREAM = ("127.0.0.1", 0)
AUTH_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                     r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def canonical(part, safe):
    return urllib.parse.quote(urllib.parse.unquote(part), safe=safe)


def verify(method, raw_target, headers, body):
    """Returns None when the request is signed and encoded as AWS requires, else a reason."""
    raw_path, _, raw_query = raw_target.partition("?")
    if canonical(raw_path, "/~") != raw_path:
        return f"path {raw_path!r} is not canonically encoded (expected {canonical(raw_path, '/~')!r})"
    params = []
    if raw_query:
        for pair in raw_query.split("&"):
            k, _, v = pair.partition("=")
            for piece in (k, v):
                if canonical(piece, "-_.~") != piece:
                    return f"query piece {piece!r} is not canonically encoded"
            params.append((urllib.parse.unquote(k), urllib.parse.unquote(v)))
    lower = {k.lower(): v for k, v in headers.items()}
    m = AUTH_RE.match(lower.get("authorization", ""))
    if not m:
        return "missing or malformed Authorization header"
    akid, day, region, service, signed, signature = m.groups()
    if akid not in SECRETS:
        return f"unknown access key {akid}"
    amz_date = lower.get("x-amz-date", "")
    if not amz_date.startswith(day):
        return "x-amz-date does not match the credential scope date"
    signed_names = signed.split(";")
    if signed_names != sorted(signed_names):
        return "SignedHeaders are not sorted"
    if "host" not in signed_names:
        return "host is not signed"
    real_hash = hashlib.sha256(body).hexdigest()
    if service == "s3":
        if "x-amz-content-sha256" not in signed_names:
            return "x-amz-content-sha256 is not signed"
        if lower.get("x-amz-content-sha256") != real_hash:
            return "x-amz-content-sha256 is not the SHA-256 of the body received"
    if "x-amz-checksum-sha256" in lower:
        if lower["x-amz-checksum-sha256"] != base64.b64encode(hashlib.sha256(body).digest()).decode():
            return "x-amz-checksum-sha256 is not the SHA-256 of the body received"
    for name in signed_names:
        if name not in lower:
            return f"signed header {name} was not sent"
    signed_values = {n: lower[n] for n in signed_names}
    if service == "s3":
        signed_values["x-amz-content-sha256"] = real_hash
    request = AWSRequest(method=method, url="http://" + lower["host"] + raw_path, data=body,
                         headers=signed_values, params=params)
    request.context["timestamp"] = amz_date
    creds = Credentials(akid, SECRETS[akid], lower.get("x-amz-security-token"))
    auth = (S3SigV4Auth if service == "s3" else SigV4Auth)(creds, service, region)
    cr = auth.canonical_request(request)
    sts = auth.string_to_sign(request, cr)
    expected = auth.signature(sts, request)
    if expected != signature:
        return f"signature mismatch; botocore's canonical request was:\n{cr}"
    return None


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _control(self, body):
        if self.path == "/__proxy/faults":
            with LOCK:
                STATE["faults"].extend(json.loads(body or b"[]"))
            return self._reply(200)
        if self.path == "/__proxy/clear":
            only = json.loads(body or b"{}").get("path_contains")
            with LOCK:
                if only:  # just this test's faults; other tests' faults and the log stay
                    STATE["faults"] = [f for f in STATE["faults"] if f.get("path_contains") != only]
                else:
                    STATE["faults"].clear()
                    STATE["log"].clear()
            return self._reply(200)
        if self.path == "/__proxy/log":
            with LOCK:
                data = json.dumps(STATE["log"]).encode()
            return self._reply(200, data, [("Content-Type", "application/json")])
        return self._reply(404)

    def _fault_for(self):
        with LOCK:
            for f in STATE["faults"]:
                if f.get("times", 1) <= 0:
                    continue
                if f.get("method") and f["method"] != self.command:
                    continue
                if f.get("path_contains") and f["path_contains"] not in self.path:
                    continue
                f["times"] = f.get("times", 1) - 1
                return dict(f)
        return None

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/__proxy/"):
            return self._control(body)
        problem = verify(self.command, self.path, dict(self.headers.items()), body)
        entry = {"method": self.command, "path": self.path, "verified": problem is None, "problem": problem,
                 "headers": {k.lower(): v for k, v in self.headers.items() if k.lower() != "authorization"}}
        with LOCK:
            STATE["log"].append(entry)
        if problem:
            xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code>"
                   f"<Message>{problem.splitlines()[0]}</Message><RequestId>proxy</RequestId></Error>").encode()
            sys.stderr.write(f"proxy: rejected {self.command} {self.path}: {problem}\n")
            return self._reply(403, xml, [("Content-Type", "application/xml")])
        fault = self._fault_for()
        if fault:
            entry["fault"] = fault
            if fault.get("delay"):
                time.sleep(fault["delay"])
            if fault.get("reset"):
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if not fault.get("status") and not fault.get("truncate"):
                fault = None
        if fault and fault.get("status"):
            xml = (f"<Error><Code>{fault.get('code', 'InternalError')}</Code><Message>injected</Message>"
                   "<RequestId>fault</RequestId></Error>").encode()
            extra = [("Retry-After", str(fault["retry_after"]))] if "retry_after" in fault else []
            return self._reply(fault.get("status", 500), xml, [("Content-Type", "application/xml")] + extra)
        conn = http.client.HTTPConnection(*UPSTREAM, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        entry["status"] = resp.status
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", resp.getheader("Content-Length") if self.command == "HEAD" and resp.getheader("Content-Length") else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            if fault and fault.get("truncate"):
                # Promise the whole body, send half, hang up: a truncated download.
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def main():
    global UPSTREAM
    # The test process may spawn us with signals blocked; moto inherits our mask, so clear it first.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for arg in sys.argv[1:]:
        if arg.startswith("--credentials="):
            ak, _, sk = arg.split("=", 1)[1].partition(":")
            SECRETS[ak] = sk
    moto_port = free_port()
    try:
        moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        print("ERROR moto_server is not installed: pip install 'moto[server]'", flush=True)
        sys.exit(2)
    UPSTREAM = ("127.0.0.1", moto_port)

    def stop(*_):
        moto.terminate()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    deadline = time.time() + 60
    while True:
        if moto.poll() is not None:
            print(f"ERROR moto_server exited with status {moto.returncode}", flush=True)
            sys.exit(2)
        try:
            c = http.client.HTTPConnection("127.0.0.1", moto_port, timeout=2)
            c.request("GET", "/")
            c.getresponse().read()
            break
        except OSError:
            if time.time() > deadline:
                print("ERROR moto_server did not answer within 60 s", flush=True)
                stop()
            time.sleep(0.1)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    server.handle_error = lambda *_: None  # clients that hang up mid-request (tests do) are not news
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"READY {server.server_address[1]} {moto_port} {moto.pid}", flush=True)
    sys.stdin.read()  # returns when the test process closes our stdin or dies
    stop()


if __name__ == "__main__":
    main()
