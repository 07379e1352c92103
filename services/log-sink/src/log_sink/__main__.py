"""``python -m log_sink``: read the environment, log JSON, serve the app (SIGTERM flushes and commits)."""

from __future__ import annotations

from consumer_runtime import configure_logging, load_settings, serve

from log_sink.app import create_app
from log_sink.config import Settings


def main() -> None:
    settings = load_settings(Settings)
    configure_logging("log-sink", settings.log_level, json=settings.log_json)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
