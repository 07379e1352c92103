"""Shared Kafka consumer machinery: write once, used by every service."""

from consumer_runtime.control import CONTROL_TOPIC, ControlCommand, ControlFollower, publish_command
from consumer_runtime.core import Batch, Failure, PermanentError, Record, Sink
from consumer_runtime.dlq import DeadLetterPublisher, decode_headers
from consumer_runtime.http import Check, ops_router, run_checks
from consumer_runtime.logging import configure_logging, get_logger
from consumer_runtime.runner import ConsumerPort, ConsumerRunner
from consumer_runtime.service import ServiceSettings, running, serve
from consumer_runtime.settings import ConfigError, KafkaSettings, load_settings
from consumer_runtime.status import ConsumerStatus, ControlAck, State
from consumer_runtime.topics import ensure_topics

__all__ = [
    "CONTROL_TOPIC",
    "Batch",
    "Check",
    "ConfigError",
    "ConsumerPort",
    "ConsumerRunner",
    "ConsumerStatus",
    "ControlAck",
    "ControlCommand",
    "ControlFollower",
    "DeadLetterPublisher",
    "Failure",
    "KafkaSettings",
    "PermanentError",
    "Record",
    "ServiceSettings",
    "Sink",
    "State",
    "configure_logging",
    "decode_headers",
    "ensure_topics",
    "get_logger",
    "load_settings",
    "ops_router",
    "publish_command",
    "run_checks",
    "running",
    "serve",
]
