"""The consumer runtime's public names in one place (kept for imports written before the split).

The pure batch core lives in :mod:`consumer_runtime.core`, the loop in :mod:`consumer_runtime.runner`,
the status types in :mod:`consumer_runtime.status`.
"""

from consumer_runtime.core import Batch, Failure, PermanentError, Record, Sink
from consumer_runtime.runner import ConsumerFactory, ConsumerPort, ConsumerRunner
from consumer_runtime.status import ConsumerStatus, ControlAck, State

__all__ = [
    "Batch",
    "ConsumerFactory",
    "ConsumerPort",
    "ConsumerRunner",
    "ConsumerStatus",
    "ControlAck",
    "Failure",
    "PermanentError",
    "Record",
    "Sink",
    "State",
]
