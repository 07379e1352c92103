"""``python -m issue_ingestor``: read the environment, log JSON, serve the API and run the consumer."""

from __future__ import annotations

from consumer_runtime import configure_logging, load_settings, serve

from issue_ingestor.app import create_app
from issue_ingestor.config import SERVICE_NAME, Settings


def main() -> None:
    settings = load_settings(Settings)
    configure_logging(SERVICE_NAME, settings.log_level, json=settings.log_json)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
