"""Path and query parameters shared by the admin routes (and the console's pages)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from gateway.errors import error_responses
from gateway.ops.topics import TOPIC_MAX, TOPIC_PATTERN

TopicName = Annotated[str, Path(min_length=1, max_length=TOPIC_MAX, pattern=TOPIC_PATTERN)]
GroupId = Annotated[str, Path(min_length=1, max_length=255)]
#: Most records one browse request may ask for (the answer is capped by ``browse_max_messages`` too).
MAX_BROWSE_LIMIT = 10_000
#: What an admin endpoint on one topic (browse, dead letters, replay) can answer besides its success.
TOPIC_ADMIN_ERRORS = error_responses(401, 403, 404, 422, 503)
