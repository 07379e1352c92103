"""``python -m search_indexer``: settings from the environment, JSON logs, serve the app."""

from __future__ import annotations

from consumer_runtime import configure_logging, load_settings, serve

from search_indexer.app import SERVICE, create_app
from search_indexer.config import Settings


def main() -> None:
    settings = load_settings(Settings)
    configure_logging(SERVICE, settings.log_level, json=settings.log_json)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
