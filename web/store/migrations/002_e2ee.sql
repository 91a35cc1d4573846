-- 002: end-to-end encrypted meetings. The web tier mints version 3 join
-- tokens with the E2EE flag for them; fixed at creation. Portable SQL
-- (SQLite 3.35+, PostgreSQL 12+).
ALTER TABLE meetings ADD COLUMN e2ee INTEGER NOT NULL DEFAULT 0;
