-- 0002: issue ids compare exactly. 0001 gave `issue` the collation utf8mb4_unicode_ci, which ignores case,
-- accents and trailing spaces, so `press_1` and `PRESS_1` were one row in SQL but two issues in the batch
-- planner. Both `issue` columns become binary and NO PAD: utf8mb4_nopad_bin on MariaDB (its utf8mb4_bin
-- still ignores trailing spaces), utf8mb4_0900_bin on MySQL 8.
-- The server refuses to change a column a foreign key uses, so fk_session_issue is dropped (only if it
-- exists), both columns are changed, and the key is added again.
-- Safe to re-run from any statement: the drop looks first, MODIFY to the collation a column already has
-- changes nothing, and going from a case-insensitive to a binary collation never makes two keys collide.
SET @issue_collation = IF(VERSION() LIKE '%MariaDB%', 'utf8mb4_nopad_bin', 'utf8mb4_0900_bin');
SET @ddl = IF(
    (SELECT COUNT(*) FROM information_schema.TABLE_CONSTRAINTS
     WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = 'ChatbotSession'
       AND CONSTRAINT_NAME = 'fk_session_issue' AND CONSTRAINT_TYPE = 'FOREIGN KEY') > 0,
    'ALTER TABLE ChatbotSession DROP FOREIGN KEY fk_session_issue', 'DO 0');
PREPARE issue_ddl FROM @ddl;
EXECUTE issue_ddl;
DEALLOCATE PREPARE issue_ddl;
SET @ddl = CONCAT('ALTER TABLE ChatbotIssue MODIFY issue VARCHAR(191) CHARACTER SET utf8mb4 COLLATE ', @issue_collation, ' NOT NULL');
PREPARE issue_ddl FROM @ddl;
EXECUTE issue_ddl;
DEALLOCATE PREPARE issue_ddl;
SET @ddl = CONCAT('ALTER TABLE ChatbotSession MODIFY issue VARCHAR(191) CHARACTER SET utf8mb4 COLLATE ', @issue_collation, ' NOT NULL');
PREPARE issue_ddl FROM @ddl;
EXECUTE issue_ddl;
DEALLOCATE PREPARE issue_ddl;
ALTER TABLE ChatbotSession ADD CONSTRAINT fk_session_issue
    FOREIGN KEY (issue) REFERENCES ChatbotIssue (issue) ON DELETE CASCADE;
