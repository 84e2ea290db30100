-- A ticket the agents could not answer from what they know is escalated to a human: it
-- leaves the agents' queue, stays answerable, and counts as a human's intervention.
ALTER TABLE tickets DROP CONSTRAINT tickets_status_check;
ALTER TABLE tickets ADD CONSTRAINT tickets_status_check
    CHECK (status IN ('open', 'escalated', 'closed'));
ALTER TABLE tickets ADD COLUMN escalated_at timestamptz;
ALTER TABLE tickets ADD COLUMN escalation text;
