-- A posted message a moderator or an AI moderator takes back out of its room.
--
-- messages.withheld hides it from the room's history (and transcripts) while its hold
-- waits in moderation_queue: a 'held' item whose message_id is set from the start (a
-- message the filter held has none until it is released, and keeps its text in the
-- queue). A release shows it again, in its place; a drop keeps it withheld.

ALTER TABLE messages ADD COLUMN withheld boolean NOT NULL DEFAULT false;

ALTER TABLE moderation_queue DROP CONSTRAINT moderation_queue_check;
ALTER TABLE moderation_queue
    ADD CHECK (kind = 'flagged' AND text IS NULL
               OR kind = 'held' AND (text IS NOT NULL OR message_id IS NOT NULL));
CREATE UNIQUE INDEX moderation_queue_withheld_key
    ON moderation_queue (message_id) WHERE kind = 'held' AND text IS NULL AND state = 'open';
