"""``/metrics`` on its own port (METRICS_PORT): a real service process serves the same metrics there as on its
main port, nothing of its API is reachable through it, and SIGTERM still ends the process gracefully."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from consumer_runtime import ConfigError, ServiceSettings, load_settings, ops_router
from consumer_runtime.testing import KafkaNames, fast_settings, wait_until
from consumer_runtime.topics import ensure_topics
from devservers import free_port

APP = Path(__file__).with_name("sigterm_app.py")


def _start(bootstrap: str, names: KafkaNames, out: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(APP), names.topic, str(out)],
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_CONSUMER_GROUP": names.group,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "KAFKA_CONTROL_ENABLED": "false",
            "SHUTDOWN_TIMEOUT_S": "5",
            **env,
        },
        stdout=open(f"{out}.log", "wb"),
        stderr=subprocess.STDOUT,
    )


def _families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


@pytest.mark.integration
async def test_metrics_port_serves_the_metrics_and_no_route_of_the_api(
    kafka_bootstrap: str, kafka_names: KafkaNames, tmp_path: Path
) -> None:
    await ensure_topics(fast_settings(kafka_bootstrap), [kafka_names.topic, kafka_names.dlq])
    http_port, metrics_port = free_port(), free_port()
    out = tmp_path / "stored.jsonl"
    proc = _start(kafka_bootstrap, kafka_names, out, HTTP_PORT=str(http_port), METRICS_PORT=str(metrics_port))
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as api,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}", timeout=5) as scrape,
        ):

            async def assigned() -> bool:
                try:
                    return bool((await api.get("/consumer/status")).json()["assignment"])
                except httpx.HTTPError:
                    return False

            await wait_until(assigned, timeout=40, what="service assigned")
            scraped = await scrape.get("/metrics")
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain; version=")
            families = _families(scraped.text)
            assert "platform_consumer_running" in families  # the runtime's own metrics, not only process_*
            assert f'platform_consumer_running{{group="{kafka_names.group}"}} 1.0' in scraped.text
            assert families == _families((await api.get("/metrics")).text)  # one registry, two ports
            head = await scrape.head("/metrics")
            assert head.status_code == 200
            assert head.content == b""

            # every route of the API, with every method it has: not found on the metrics port
            routes = ops_router(service="x", runner=None, checks={}).routes
            paths = {getattr(r, "path", "") for r in routes} | {"/consumer/status", "/consumer/{action}"}
            for path in sorted(paths - {"/metrics"}):
                for method in ("GET", "POST", "DELETE"):
                    url = path.replace("{action}", "stop")
                    answer = await scrape.request(method, url)
                    assert answer.status_code == 404, (method, url, answer.text)
            for method in ("POST", "PUT", "DELETE"):
                assert (await scrape.request(method, "/metrics")).status_code == 405
            assert (await api.get("/consumer/status")).json()["state"] == "running"  # nothing was stopped

        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: the conventional exit status of SIGTERM
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", metrics_port)) != 0  # the metrics port closed with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.integration
def test_a_taken_metrics_port_stops_the_start_naming_it(tmp_path: Path, kafka_names: KafkaNames) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _start(
            f"127.0.0.1:{free_port()}",
            kafka_names,
            tmp_path / "out.jsonl",
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(free_port()),
            METRICS_PORT=str(port),
        )
        assert proc.wait(timeout=30) == 1
    log = Path(f"{tmp_path / 'out.jsonl'}.log").read_text()
    assert f"METRICS_PORT: cannot listen on 127.0.0.1:{port}" in log


def test_metrics_port_must_differ_from_the_http_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "8101")
    monkeypatch.setenv("METRICS_PORT", "8101")
    with pytest.raises(ConfigError, match=r"METRICS_PORT .* must differ from HTTP_PORT"):
        load_settings(ServiceSettings)
    monkeypatch.setenv("METRICS_PORT", "0")
    assert load_settings(ServiceSettings).metrics_port == 0
