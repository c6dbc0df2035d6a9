"""A small HTTP/1.1 forwarding server for the S3 test stack (stdlib only).

ForwardingHandler reads a whole request (bodies are bounded: S3 parts and objects
the tests send), lets a subclass answer it itself (`intercept`) or forwards it to
the upstream with one kept-alive connection per handler thread, and streams the
upstream answer back. Used by front.py (SigV4 verification) and fault_proxy.py.
"""

import http.client
import http.server
import socketserver
import threading
from xml.sax.saxutils import escape

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "host", "content-length"}
# The proxy's own Server/Date replace the upstream's.
OWN = {"server", "date"}
COPY_CHUNK = 1 << 20
MAX_BODY = 6 << 30
# One kept-alive upstream connection per handler thread.
_local = threading.local()


def error_xml(code, message, request_id="", extra=None):
    parts = [f"<Code>{escape(code)}</Code>", f"<Message>{escape(message)}</Message>"]
    for k, v in (extra or {}).items():
        parts.append(f"<{k}>{escape(str(v))}</{k}>")
    if request_id:
        parts.append(f"<RequestId>{escape(request_id)}</RequestId>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) +
            "</Error>").encode()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port, handler, upstream):
        self.upstream = upstream  # (host, port)
        self.counter_lock = threading.Lock()
        self.counter = 0
        super().__init__(("127.0.0.1", port), handler)

    def next_id(self):
        with self.counter_lock:
            self.counter += 1
            return self.counter


class ForwardingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vessel-s3-test"
    verbose = False
    # A transparent proxy keeps the client's Host (it is signed); the last hop
    # before s3rver names s3rver.
    rewrite_host = True
    reuse_upstream = True

    def log_message(self, fmt, *args):  # noqa: N802 (stdlib name)
        if self.verbose:
            super().log_message(fmt, *args)

    # --- hooks -------------------------------------------------------------------
    def intercept(self, body):
        """(status, headers, body) answers without the upstream; "close" drops the
        connection; (path, header names to drop) forwards a rewritten request; None
        forwards as is."""
        return None

    # --- plumbing ------------------------------------------------------------------
    def _upstream(self):
        conn = getattr(_local, "conn", None)
        if conn is None:
            host, port = self.server.upstream
            conn = http.client.HTTPConnection(host, port, timeout=600)
            _local.conn = conn
        return conn

    @staticmethod
    def _drop_upstream():
        conn = getattr(_local, "conn", None)
        if conn is not None:
            conn.close()
            _local.conn = None

    def fix_response(self, resp):
        """(status, headers, body) to answer instead of the upstream's response."""
        return None

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            return None
        chunks, left = [], length
        while left > 0:
            chunk = self.rfile.read(min(left, COPY_CHUNK * 8))
            if not chunk:
                raise ConnectionError("client closed mid-body")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def send_simple(self, status, headers=None, body=b""):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_error_xml(self, status, code, message, extra=None):
        rid = f"{self.server_version}-{self.server.next_id()}"
        self.send_simple(status, {"Content-Type": "application/xml", "x-amz-request-id": rid},
                         error_xml(code, message, rid, extra))

    def forward(self, body, path=None, drop=()):
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() not in drop}
        host, port = self.server.upstream
        headers["Host"] = f"{host}:{port}" if self.rewrite_host else self.headers.get("Host", "")
        headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            conn = self._upstream()
            try:
                conn.request(self.command, path or self.path, body=body, headers=headers)
                resp = conn.getresponse()
                break
            except (http.client.HTTPException, OSError):
                self._drop_upstream()  # a kept-alive connection the upstream closed
                if attempt == 2:
                    raise
        answer = self.fix_response(resp)
        if answer is not None:
            self._drop_upstream()  # the upstream's body is not read: never reuse
            self.send_simple(*answer)
            return
        self.send_response(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() not in OWN:
                self.send_header(k, v)
        if self.command == "HEAD" or resp.status in (204, 304):
            resp.read()
            self.send_header("Content-Length", length or "0")
            self.end_headers()
        elif length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            left = int(length)
            while left > 0:
                chunk = resp.read(min(left, COPY_CHUNK))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)
        else:
            data = resp.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        if not self.reuse_upstream or resp.getheader("Connection", "").lower() == "close":
            self._drop_upstream()

    def handle_any(self):
        try:
            body = self.read_body()
        except ConnectionError:
            self.close_connection = True
            return
        if body is None:
            self.send_error_xml(411, "MissingContentLength",
                                "You must provide the Content-Length HTTP header.")
            return
        answer = self.intercept(body)
        path, drop = None, ()
        if isinstance(answer, tuple) and len(answer) == 2:  # (path, headers to drop): forward
            (path, drop), answer = answer, None
        if answer is not None:
            if answer == "close":
                self.close_connection = True
                return
            status, headers, payload = answer
            self.send_simple(status, headers, payload)
            return
        try:
            self.forward(body, path, drop)
        except (http.client.HTTPException, OSError) as e:
            self.send_error_xml(502, "InternalError", f"upstream failed: {e}")
        finally:
            held, self.lock = getattr(self, "lock", None), None
            if held is not None:
                held.release()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any  # noqa: N815


def serve(server):
    """Runs `server` in a daemon thread; returns the thread."""
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t


def port_of(server):
    return server.socket.getsockname()[1]

