-- 0007_initial_state: the state an execution started with, kept apart from its latest state (postgres).
-- A claim hands the worker the initial state: a replay starts from it and restores the
-- recorded steps' snapshots on the way. Rows written without it (before this migration, or
-- by an older orchestrator during a rolling upgrade) keep initial_state_recorded = false and
-- start from the latest state, as before.

ALTER TABLE executions ADD COLUMN initial_state TEXT;

ALTER TABLE executions ADD COLUMN initial_state_recorded BOOLEAN DEFAULT false NOT NULL;
