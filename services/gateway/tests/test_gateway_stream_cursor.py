"""The notifier's stream cursor passes through the gateway whole: its opaque SSE id (one position per
partition of the message topic) can be longer than an id, so both stream routes take up to 1024 characters
(the notifier's own limit, ``notifier.cursor.MAX_CURSOR_CHARS``)."""

from __future__ import annotations

from gateway.api.query_models import MAX_STREAM_CURSOR
from gateway.app import create_app
from gateway_testlib import Names, gateway_settings


def test_stream_resume_parameters_take_a_whole_cursor() -> None:
    assert MAX_STREAM_CURSOR == 1024
    app = create_app(gateway_settings("127.0.0.1:1", Names()))
    op = app.openapi()["paths"]["/api/v1/notifications/{user_id}/stream"]["get"]
    limits = {
        p["name"]: [s.get("maxLength") for s in p["schema"]["anyOf"] if s.get("type") == "string"]
        for p in op["parameters"]
        if p["name"] in ("last-event-id", "after")
    }
    assert limits == {"last-event-id": [MAX_STREAM_CURSOR], "after": [MAX_STREAM_CURSOR]}
