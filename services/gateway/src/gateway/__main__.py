"""``python -m gateway``: settings from the environment, JSON logs, uvicorn."""

from consumer_runtime.service import run_service

from gateway.app import create_app
from gateway.config import GatewaySettings

if __name__ == "__main__":
    run_service("gateway", GatewaySettings, create_app)
