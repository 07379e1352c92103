"""``python -m notifier``: load settings, configure logging, serve the app."""

from __future__ import annotations

from consumer_runtime import configure_logging, load_settings, serve

from notifier.app import create_app
from notifier.config import Settings


def main() -> None:
    settings = load_settings(Settings)
    configure_logging("notifier", settings.log_level, json=settings.log_json)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
