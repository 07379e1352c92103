-- 0003: late, older events are merged instead of dropped.
-- ChatbotIssueEvent keeps (version, isSolved) of every event of an issue, so the sessions can be recomputed
-- from the whole history when an older event arrives late; description_version is the version of the event
-- the stored description came from (the newest event that carried one).
-- Safe to re-run: the table and column are created only if missing, the backfill inserts rows only if
-- missing (ON DUPLICATE KEY UPDATE of a column to itself), the description_version update is idempotent.
SET @issue_collation = IF(VERSION() LIKE '%MariaDB%', 'utf8mb4_nopad_bin', 'utf8mb4_0900_bin');
SET @ddl = CONCAT(
    'CREATE TABLE IF NOT EXISTS ChatbotIssueEvent ('
    ' issue VARCHAR(191) CHARACTER SET utf8mb4 COLLATE ', @issue_collation, ' NOT NULL,'
    ' event_version CHAR(47) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,'
    ' isSolved BOOLEAN NOT NULL,'
    ' PRIMARY KEY (issue, event_version),'
    ' CONSTRAINT fk_event_issue FOREIGN KEY (issue) REFERENCES ChatbotIssue (issue) ON DELETE CASCADE'
    ') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci');
PREPARE history_ddl FROM @ddl;
EXECUTE history_ddl;
DEALLOCATE PREPARE history_ddl;
-- MySQL has no ADD COLUMN IF NOT EXISTS: look first
SET @ddl = IF(
    (SELECT COUNT(*) FROM information_schema.COLUMNS
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'ChatbotIssue' AND COLUMN_NAME = 'description_version') > 0,
    'DO 0',
    'ALTER TABLE ChatbotIssue ADD COLUMN description_version CHAR(47) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '''' COMMENT ''version of the newest event that carried a description'' AFTER event_version');
PREPARE history_ddl FROM @ddl;
EXECUTE history_ddl;
DEALLOCATE PREPARE history_ddl;
UPDATE ChatbotIssue SET description_version = event_version
    WHERE description IS NOT NULL AND description_version = '';
-- Backfill of the issues stored before this migration: the row's own event, and for every session an
-- unsolved event at opened_at and a solved one at closed_at (partition 0, offsets 2*seq and 2*seq+1, so an
-- open and a close at the same instant keep their order). Replaying that history gives the same sessions.
INSERT INTO ChatbotIssueEvent (issue, event_version, isSolved)
    SELECT issue, event_version, isSolved FROM ChatbotIssue
    ON DUPLICATE KEY UPDATE isSolved = ChatbotIssueEvent.isSolved;
INSERT INTO ChatbotIssueEvent (issue, event_version, isSolved)
    SELECT issue, CONCAT(LPAD(TIMESTAMPDIFF(MICROSECOND, '0001-01-01 00:00:00', opened_at), 18, '0'),
                         LPAD(0, 10, '0'), LPAD(2 * seq, 19, '0')), FALSE
    FROM ChatbotSession
    ON DUPLICATE KEY UPDATE isSolved = ChatbotIssueEvent.isSolved;
INSERT INTO ChatbotIssueEvent (issue, event_version, isSolved)
    SELECT issue, CONCAT(LPAD(TIMESTAMPDIFF(MICROSECOND, '0001-01-01 00:00:00', closed_at), 18, '0'),
                         LPAD(0, 10, '0'), LPAD(2 * seq + 1, 19, '0')), TRUE
    FROM ChatbotSession WHERE closed_at IS NOT NULL
    ON DUPLICATE KEY UPDATE isSolved = ChatbotIssueEvent.isSolved;
