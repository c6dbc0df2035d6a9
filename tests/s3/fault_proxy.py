#!/usr/bin/env python3
"""A fault-injecting proxy in front of the verifying front, for retry tests.

It forwards everything unless a fault rule matches. Rules are set over a small
control API on a second loopback port:

  POST /faults   {"rules": [{"kind": "slowdown", "count": 2,
                             "method": "PUT", "query": "partNumber", "skip": 0}]}
                 replaces the rules; each matching request (method and a query
                 substring, both optional) consumes one of `count` after `skip`
                 matching requests were let through.
  GET  /stats    {"requests": n, "injected": n, "log": [[method, path, fault], ...]}
  POST /reset    clears rules and counters.

Kinds: "500" (InternalError), "503" (ServiceUnavailable), "slowdown" (503
SlowDown), "429" (TooManyRequests), "403" (AccessDenied), "400" (InvalidRequest),
"timeout" (holds the request `delay_s`, default 5 s, then closes the connection
unanswered), "reset" (closes the connection unanswered at once), "latency" (holds
the request `delay_s`, then forwards it: a distant store, e.g. {"kind": "latency",
"delay_s": 0.05, "count": 1000000000} for 50 ms on every request).

  fault_proxy.py --upstream 127.0.0.1:PORT [--port 0] [--control-port 0]
prints "LISTENING <port> <control port>" once ready.
"""

import argparse
import http.server
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forward  # noqa: E402

ANSWERS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Service is unable to handle request."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "429": (429, "TooManyRequests", "Too many requests."),
    "403": (403, "AccessDenied", "Access Denied"),
    "400": (400, "InvalidRequest", "Injected bad request."),
}


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.rules = []
            self.requests = 0
            self.injected = 0
            self.log = []

    def set(self, rules):
        with self.lock:
            self.rules = [dict(r, seen=0, used=0) for r in rules]

    def pick(self, method, path):
        """The fault kind for this request, or None; counts it."""
        with self.lock:
            self.requests += 1
            kind, delay_s = None, 5.0
            for r in self.rules:
                if r.get("method") and r["method"] != method:
                    continue
                if r.get("query") and r["query"] not in path:
                    continue
                r["seen"] += 1
                if r["seen"] <= r.get("skip", 0) or r["used"] >= r.get("count", 1):
                    continue
                r["used"] += 1
                kind = r["kind"]
                delay_s = float(r.get("delay_s", 5))
                break
            if kind:
                self.injected += 1
            if len(self.log) < 10000:
                self.log.append([method, path, kind])
            return kind, delay_s

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "injected": self.injected, "log": self.log}


FAULTS = Faults()


class ProxyHandler(forward.ForwardingHandler):
    server_version = "vessel-s3-faults"
    rewrite_host = False

    def intercept(self, body):
        kind, delay_s = FAULTS.pick(self.command, self.path)
        if kind is None:
            return None
        if kind == "timeout":
            time.sleep(delay_s)
            return "close"
        if kind == "latency":
            time.sleep(delay_s)
            return None
        if kind == "reset":
            return "close"
        status, code, message = ANSWERS[kind]
        rid = f"faults-{self.server.next_id()}"
        headers = {"Content-Type": "application/xml", "x-amz-request-id": rid}
        return status, headers, forward.error_xml(code, message, rid)


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # noqa: N802
        pass

    def reply(self, obj, status=200):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if self.path == "/stats":
            return self.reply(FAULTS.stats())
        return self.reply({"error": "not found"}, 404)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/reset":
            FAULTS.reset()
            return self.reply({"ok": True})
        if self.path == "/faults":
            try:
                rules = json.loads(body or b"{}").get("rules", [])
                for r in rules:
                    if r.get("kind") not in ANSWERS and r.get("kind") not in ("timeout", "reset",
                                                                              "latency"):
                        raise ValueError(f"unknown kind {r.get('kind')!r}")
            except (ValueError, AttributeError) as e:
                return self.reply({"error": str(e)}, 400)
            FAULTS.set(rules)
            return self.reply({"ok": True})
        return self.reply({"error": "not found"}, 404)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    cfg = ap.parse_args()
    host, _, port = cfg.upstream.rpartition(":")
    proxy = forward.Server(cfg.port, ProxyHandler, (host, int(port)))
    control = http.server.ThreadingHTTPServer(("127.0.0.1", cfg.control_port), ControlHandler)
    forward.serve(control)
    print(f"LISTENING {forward.port_of(proxy)} {control.socket.getsockname()[1]}", flush=True)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
