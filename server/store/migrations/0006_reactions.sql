-- Reactions: one principal's +1 or -1 on someone else's message. They count a little
-- toward the author's reputation (server/reputation.py), next to reviews.
CREATE TABLE reactions (
    message_id   bigint NOT NULL REFERENCES messages (id),
    principal_id bigint NOT NULL REFERENCES principals (id),
    value        smallint NOT NULL CHECK (value IN (-1, 1)),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, principal_id)
);
CREATE INDEX reactions_by_principal ON reactions (principal_id);
