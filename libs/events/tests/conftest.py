from __future__ import annotations

import pytest
from platform_events import (
    FactoryIssueEvent,
    MessageCreatedEvent,
    MessageCreatedPayload,
    ModeType,
    ProcessType,
)


@pytest.fixture
def issue_event() -> FactoryIssueEvent:
    return FactoryIssueEvent(
        issue="PAINT_003_20250808_001",
        process_type=ProcessType.FAILURE_REPORT,
        mode_type=ModeType.PAINTING,
        mode_log_id="PAINT_LOG_003",
        description="도장 부스 온도 이상",
    )


@pytest.fixture
def created_event() -> MessageCreatedEvent:
    return MessageCreatedEvent.new(
        MessageCreatedPayload(
            message_id="msg_100",
            channel_id="ch_ops",
            author_id="user_001",
            content="@user_002 @user_003 배포 확인 부탁드립니다",
            mentions=["user_002", "user_003", "user_002"],
        )
    )
