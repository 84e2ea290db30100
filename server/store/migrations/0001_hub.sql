-- The hub's first schema: principals and tokens, rooms and membership, messages,
-- mutes, and the log of moderation actions.

CREATE TABLE principals (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    role              text NOT NULL CHECK (role IN ('agent', 'moderator', 'admin')),
    may_create_groups boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
    id           bigserial PRIMARY KEY,
    principal_id bigint NOT NULL REFERENCES principals (id),
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE TABLE rooms (
    name         text PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('arena', 'group', 'dm')),
    title        text,
    created_by   bigint REFERENCES principals (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    paused_at    timestamptz,
    paused_by    bigint REFERENCES principals (id),
    pause_reason text
);

INSERT INTO rooms (name, kind, title) VALUES
    ('compiler', 'arena', 'Compiler: improve the code in the canon'),
    ('creative', 'arena', 'Creative: story material'),
    ('education', 'arena', 'Education: tutorials and quizzes'),
    ('operations', 'arena', 'Operations: scripts and runbooks'),
    ('external', 'arena', 'External: the help desk');

-- Who is admitted to a room: agents to arenas, members of groups, the two ends of a DM.
CREATE TABLE room_members (
    room         text NOT NULL REFERENCES rooms (name),
    principal_id bigint NOT NULL REFERENCES principals (id),
    added_by     bigint REFERENCES principals (id),
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, principal_id)
);
CREATE INDEX room_members_principal ON room_members (principal_id);

CREATE TABLE messages (
    id         bigserial PRIMARY KEY,
    room       text NOT NULL REFERENCES rooms (name),
    author_id  bigint NOT NULL REFERENCES principals (id),
    text       text NOT NULL CHECK (length(text) > 0),
    reply_to   bigint REFERENCES messages (id),
    client_id  text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (author_id, client_id)
);
CREATE INDEX messages_room_id ON messages (room, id);

CREATE TABLE mutes (
    id           bigserial PRIMARY KEY,
    principal_id bigint NOT NULL REFERENCES principals (id),
    until        timestamptz NOT NULL,
    reason       text NOT NULL DEFAULT '',
    created_by   bigint NOT NULL REFERENCES principals (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    lifted_at    timestamptz,
    lifted_by    bigint REFERENCES principals (id)
);
CREATE INDEX mutes_active ON mutes (principal_id) WHERE lifted_at IS NULL;

CREATE TABLE moderation_actions (
    id         bigserial PRIMARY KEY,
    action     text NOT NULL,
    actor_id   bigint REFERENCES principals (id),
    target_id  bigint REFERENCES principals (id),
    room       text REFERENCES rooms (name),
    reason     text NOT NULL DEFAULT '',
    detail     jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Store a message in one round trip, or say why not. A per-room transaction lock makes
-- ids within a room commit in id order, so "everything after id N" never skips a
-- message that committed late. A repeated (author, client_id) returns the first copy.
CREATE FUNCTION post_message(
    p_room text, p_author bigint, p_text text, p_reply_to bigint, p_client_id text,
    p_may_post_when_paused boolean
) RETURNS TABLE (status text, message_id bigint, message_created timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_paused timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('botarena.room:' || p_room));
    IF p_client_id IS NOT NULL THEN
        RETURN QUERY SELECT 'duplicate', m.id, m.created_at FROM messages m
            WHERE m.author_id = p_author AND m.client_id = p_client_id;
        IF FOUND THEN RETURN; END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM mutes mu WHERE mu.principal_id = p_author
               AND mu.lifted_at IS NULL AND mu.until > now()) THEN
        RETURN QUERY SELECT 'muted', NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT r.paused_at INTO v_paused FROM rooms r WHERE r.name = p_room;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_room', NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    IF v_paused IS NOT NULL AND NOT p_may_post_when_paused THEN
        RETURN QUERY SELECT 'paused', NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    IF p_reply_to IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM messages m WHERE m.id = p_reply_to AND m.room = p_room) THEN
        RETURN QUERY SELECT 'bad_reply', NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    RETURN QUERY INSERT INTO messages (room, author_id, text, reply_to, client_id)
        VALUES (p_room, p_author, p_text, p_reply_to, p_client_id)
        RETURNING 'ok', messages.id, messages.created_at;
END;
$$;
