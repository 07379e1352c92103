"""``python -m search_indexer``: settings from the environment, JSON logs, serve the app."""

from consumer_runtime.service import run_service

from search_indexer.app import SERVICE, create_app
from search_indexer.config import Settings

if __name__ == "__main__":
    run_service(SERVICE, Settings, create_app)
