"""``python -m gateway``: settings from the environment, JSON logs, uvicorn."""

from __future__ import annotations

from consumer_runtime import configure_logging, load_settings, serve

from gateway.app import create_app
from gateway.config import GatewaySettings


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level, json=settings.log_json)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
