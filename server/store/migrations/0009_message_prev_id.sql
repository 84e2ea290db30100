-- post_message also returns prev_id: the id of the room's message before the new one
-- (0 for a room's first). The hub's push carries it, so a client whose last message of
-- the room is another one knows it missed some and fetches them. Under the room's lock
-- no other message of the room is being stored, so max(id) is exactly the previous one.

DROP FUNCTION post_message(text, bigint, text, bigint, text, boolean);

CREATE FUNCTION post_message(
    p_room text, p_author bigint, p_text text, p_reply_to bigint, p_client_id text,
    p_may_post_when_paused boolean
) RETURNS TABLE (status text, message_id bigint, message_created timestamptz, prev_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_paused timestamptz;
    v_prev bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('botarena.room:' || p_room));
    IF p_client_id IS NOT NULL THEN
        RETURN QUERY SELECT 'duplicate', m.id, m.created_at, NULL::bigint FROM messages m
            WHERE m.author_id = p_author AND m.client_id = p_client_id;
        IF FOUND THEN RETURN; END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM mutes mu WHERE mu.principal_id = p_author
               AND mu.lifted_at IS NULL AND mu.until > now()) THEN
        RETURN QUERY SELECT 'muted', NULL::bigint, NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;
    SELECT r.paused_at INTO v_paused FROM rooms r WHERE r.name = p_room;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_room', NULL::bigint, NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;
    IF v_paused IS NOT NULL AND NOT p_may_post_when_paused THEN
        RETURN QUERY SELECT 'paused', NULL::bigint, NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;
    IF p_reply_to IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM messages m WHERE m.id = p_reply_to AND m.room = p_room) THEN
        RETURN QUERY SELECT 'bad_reply', NULL::bigint, NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;
    SELECT coalesce(max(m.id), 0) INTO v_prev FROM messages m WHERE m.room = p_room;
    RETURN QUERY INSERT INTO messages (room, author_id, text, reply_to, client_id)
        VALUES (p_room, p_author, p_text, p_reply_to, p_client_id)
        RETURNING 'ok', messages.id, messages.created_at, v_prev;
END;
$$;
