-- When moderators were told that a ticket has waited too long for an answer; NULL: not
-- yet. Set once, by whichever hub tells them first.
ALTER TABLE tickets ADD COLUMN alerted_at timestamptz;
