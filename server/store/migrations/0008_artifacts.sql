-- Artifacts kept in the object store (attachments, transcripts, canon exports, backups).
-- A row is 'pending' while its upload runs and 'complete' only once the object store
-- holds every byte; a failed upload leaves no row.
CREATE TABLE artifacts (
    key          text PRIMARY KEY,
    kind         text NOT NULL,
    size         bigint NOT NULL CHECK (size >= 0),
    sha256       text NOT NULL,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'complete')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
