-- 0004: every index earns its place. ChatbotSession.ix_session_status (status, opened_at) serves no query:
-- sessions are only read per issue (GET /issues/{id}/sessions, ux_session_issue_seq) and written by the
-- batch upsert (the same unique key); the index cost a write on every session insert and close.
-- Safe to re-run from any statement: the index is dropped only if it exists (MySQL has no DROP INDEX IF
-- EXISTS; MariaDB's is not in MySQL).
SET @ddl = IF(
    (SELECT COUNT(*) FROM information_schema.STATISTICS
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'ChatbotSession' AND INDEX_NAME = 'ix_session_status') > 0,
    'ALTER TABLE ChatbotSession DROP INDEX ix_session_status', 'DO 0');
PREPARE session_ddl FROM @ddl;
EXECUTE session_ddl;
DEALLOCATE PREPARE session_ddl;
