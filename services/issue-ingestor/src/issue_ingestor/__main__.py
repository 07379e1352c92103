"""``python -m issue_ingestor``: read the environment, log JSON, serve the API and run the consumer."""

from consumer_runtime.service import run_service

from issue_ingestor.app import create_app
from issue_ingestor.config import SERVICE_NAME, Settings

if __name__ == "__main__":
    run_service(SERVICE_NAME, Settings, create_app)
