"""``python -m log_sink``: read the environment, log JSON, serve the app (SIGTERM flushes and commits)."""

from consumer_runtime.service import run_service

from log_sink.app import SERVICE, create_app
from log_sink.config import Settings

if __name__ == "__main__":
    run_service(SERVICE, Settings, create_app)
