"""The local OTLP/HTTP receiver of the tracing benchmark: accepts ``POST /v1/traces`` (protobuf, as the
services' ``OTLPSpanExporter`` sends it), counts requests, bytes and spans, answers 200; ``GET /stats`` gives
the counts as JSON. A collector stand-in on 127.0.0.1 in its own process (its CPU is the machine's, not the
service's), so the exporter does its real work: serialise, POST, wait for the answer.

    python -m benchmarks._otlp_sink PORT
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_lock = threading.Lock()
_stats = {"requests": 0, "bytes": 0, "spans": 0}
_ANSWER = ExportTraceServiceResponse().SerializeToString()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector answers

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with _lock:
            _stats["requests"] += 1
            _stats["bytes"] += len(body)
            _stats["spans"] += spans
        self._answer(200, "application/x-protobuf", _ANSWER)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, "application/json", b'{"status":"ok"}')
            return
        with _lock:
            body = json.dumps(_stats).encode()
        self._answer(200, "application/json", body)

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
