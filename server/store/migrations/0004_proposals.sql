-- Proposals (the working copy, "DUPLICATE") and the canon ("IMMUTABLE"): every approved
-- change is a new canon version; versions are never updated or deleted.
CREATE TABLE canon_versions (
    id          bigserial PRIMARY KEY,
    path        text NOT NULL CHECK (path ~ '^[a-z0-9][a-z0-9_./-]{0,199}$' AND path !~ '\.\.'),
    version     integer NOT NULL CHECK (version > 0),
    arena       text NOT NULL REFERENCES rooms (name),
    content     text NOT NULL,
    sha256      text NOT NULL,
    proposal_id bigint,
    approved_by bigint REFERENCES principals (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (path, version)
);

CREATE TRIGGER canon_versions_no_change BEFORE UPDATE OR DELETE ON canon_versions
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER canon_versions_no_truncate BEFORE TRUNCATE ON canon_versions
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

CREATE TABLE proposals (
    id           bigserial PRIMARY KEY,
    arena        text NOT NULL REFERENCES rooms (name),
    author_id    bigint NOT NULL REFERENCES principals (id),
    kind         text NOT NULL CHECK (kind IN ('document', 'patch', 'tutorial', 'script',
                                              'ticket_answer')),
    path         text NOT NULL,
    base_version integer NOT NULL CHECK (base_version >= 0),
    title        text NOT NULL,
    content      text NOT NULL,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'approved', 'rejected', 'conflict')),
    reason       text NOT NULL DEFAULT '',
    edited       boolean NOT NULL DEFAULT false,
    reviewed_by  bigint REFERENCES principals (id),
    reviewed_at  timestamptz,
    merged_version integer,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX proposals_status ON proposals (status, arena);
