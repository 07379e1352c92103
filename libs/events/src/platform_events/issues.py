"""Factory issue event (topic ``chatbot-issue-events``): camelCase JSON sent by the factory monitors."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, StrictBool, ValidationInfo, field_validator, model_validator

from platform_events._common import (
    NON_BLANK_SCHEMA,
    EventModel,
    EventTime,
    non_blank,
    parse_timestamp,
    utc_now,
)

__all__ = [
    "MAX_DESCRIPTION_CHARS",
    "MAX_ISSUE_ID_CHARS",
    "RECEIVED_AT_CONTEXT_KEY",
    "FactoryIssueEvent",
    "ModeType",
    "ProcessType",
]

#: ``issue`` is the primary key of MySQL table ``ChatbotIssue``: an indexed utf8mb4 VARCHAR(191) holds it.
MAX_ISSUE_ID_CHARS: Final = 191
#: ``description`` fits a MySQL TEXT column (65,535 bytes) even at 4 bytes per character.
MAX_DESCRIPTION_CHARS: Final = 10_000

#: Validation-context key :func:`platform_events.decode` uses to pass the receive time.
RECEIVED_AT_CONTEXT_KEY: Final = "received_at"


class ProcessType(StrEnum):
    """``processType``: why the issue was raised."""

    FAILURE_REPORT = "장애접수"
    SCHEDULED_INSPECTION = "정기점검"


class ModeType(StrEnum):
    """``modeType``: the kind of equipment."""

    PRESS = "프레스"
    WELDER = "용접기"
    PAINTING = "도장설비"
    VEHICLE_ASSEMBLY = "차량조립설비"


IssueId = Annotated[
    str, Field(min_length=1, max_length=MAX_ISSUE_ID_CHARS), AfterValidator(non_blank), NON_BLANK_SCHEMA
]


class FactoryIssueEvent(EventModel):
    """One failure report / inspection of a piece of factory equipment.

    Wire format (keys are a compatibility promise)::

        {"issue": "PRESS_001_20250808_001", "processType": "장애접수", "modeType": "프레스",
         "modeLogId": "PRESS_LOG_001", "description": "100톤 프레스 유압 이상", "isSolved": false,
         "timestamp": "2025-08-08T17:05:37.123Z"}

    - ``isSolved`` accepts only JSON ``true``/``false`` (``null`` or absent = ``false``);
      ``"yes"``, ``"true"``, ``1`` are refused rather than guessed.
    - ``timestamp`` absent or ``null`` → the receive time (``decode(..., received_at=...)``, else now).
      ISO-8601 with ``Z``, an offset, or no zone: a naive timestamp is interpreted as **UTC**. Always held as
      an aware UTC datetime and written back as ``...Z``. More than ``MAX_CLOCK_SKEW`` (default 5 minutes)
      ahead of the receiver's clock is refused (error type ``future_timestamp``).
    - Unknown keys are ignored (tolerant reader).
    """

    issue: IssueId = Field(description="Issue id, primary key of ChatbotIssue")
    process_type: ProcessType = Field(alias="processType")
    mode_type: ModeType = Field(alias="modeType")
    mode_log_id: IssueId = Field(alias="modeLogId")
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS)] | None = None
    is_solved: StrictBool = Field(default=False, alias="isSolved")
    timestamp: EventTime = Field(default_factory=utc_now)

    @model_validator(mode="before")
    @classmethod
    def _fill_timestamp(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and data.get("timestamp") is None:
            context = info.context if isinstance(info.context, dict) else {}
            received_at = context.get(RECEIVED_AT_CONTEXT_KEY)
            data = {**data, "timestamp": parse_timestamp(received_at) if received_at else utc_now()}
        return data

    @field_validator("is_solved", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        # A Java ``Boolean`` that was never set is serialised as ``null``: treat it as absent.
        return False if value is None else value
