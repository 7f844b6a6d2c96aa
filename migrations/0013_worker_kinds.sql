-- notifyq schema, version 13: the worker registry records the kinds each process runs.
--
-- A process claims only the kinds it has a handler for; a task of another kind stays
-- pending for a process that has one (during a rolling deploy, old processes leave new
-- kinds to new ones). `notifyq status` lists the pending tasks that no live process can
-- run, from this column. NULL: a process of an older version, which claims every kind.
-- ADD COLUMN without a default is a catalog change: the table is not rewritten.

ALTER TABLE notifyq.workers ADD COLUMN kinds text[];
