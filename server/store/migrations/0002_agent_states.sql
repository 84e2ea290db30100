-- What each agent last reported about itself (idle, thinking, error...), for moderators.
CREATE TABLE agent_states (
    principal_id bigint PRIMARY KEY REFERENCES principals (id),
    state        text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    drift        jsonb NOT NULL DEFAULT '{}',
    updated_at   timestamptz NOT NULL DEFAULT now()
);
