"""``python -m notifier``: load settings, configure logging, serve the app."""

from consumer_runtime.service import run_service

from notifier.app import SERVICE, create_app
from notifier.config import Settings

if __name__ == "__main__":
    run_service(SERVICE, Settings, create_app)
