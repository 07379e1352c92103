-- 0001: factory issues (one row per issue id) and chatbot sessions (one row per open/close cycle).
-- Every statement must be safe to run again: MySQL commits DDL implicitly, so a crash half-way through a
-- migration re-runs it from the start.

CREATE TABLE IF NOT EXISTS ChatbotIssue (
    issue           VARCHAR(191)  NOT NULL,
    processType     VARCHAR(32)   NOT NULL,
    modeType        VARCHAR(32)   NOT NULL,
    modeLogId       VARCHAR(191)  NOT NULL,
    description     TEXT          NULL,
    isSolved        BOOLEAN       NOT NULL DEFAULT FALSE,
    `timestamp`     DATETIME(6)   NOT NULL COMMENT 'event time (UTC) of the event the row reflects',
    received_at     DATETIME(6)   NOT NULL COMMENT 'when this service first stored the issue (UTC)',
    updated_at      DATETIME(6)   NOT NULL COMMENT 'when the row last changed (UTC)',
    kafka_partition INT           NOT NULL COMMENT 'partition of the event the row reflects',
    kafka_offset    BIGINT        NOT NULL COMMENT 'offset of the event the row reflects',
    session_seq     INT           NOT NULL COMMENT 'number of the current (latest) chatbot session',
    event_version   CHAR(47) CHARACTER SET ascii COLLATE ascii_bin NOT NULL
        COMMENT 'event time (us) + partition + offset, zero-padded: the newest version wins',
    PRIMARY KEY (issue),
    KEY ix_issue_timestamp (`timestamp`),
    KEY ix_issue_process_timestamp (processType, `timestamp`),
    KEY ix_issue_mode_timestamp (modeType, `timestamp`),
    KEY ix_issue_solved_timestamp (isSolved, `timestamp`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS ChatbotSession (
    id         BIGINT        NOT NULL AUTO_INCREMENT,
    issue      VARCHAR(191)  NOT NULL,
    seq        INT           NOT NULL COMMENT '1 for the first session of the issue, 2 after a reopen, ...',
    status     ENUM('open', 'closed') NOT NULL,
    opened_at  DATETIME(6)   NOT NULL COMMENT 'event time (UTC) of the event that opened the session',
    closed_at  DATETIME(6)   NULL     COMMENT 'event time (UTC) of the isSolved=true event that closed it',
    PRIMARY KEY (id),
    UNIQUE KEY ux_session_issue_seq (issue, seq),
    KEY ix_session_status (status, opened_at),
    CONSTRAINT fk_session_issue FOREIGN KEY (issue) REFERENCES ChatbotIssue (issue) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
