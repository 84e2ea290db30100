-- Which worker runs each agent: a lease per agent, held by one hub session of one
-- worker process and renewed by that hub while the session lives; a worker waiting for
-- agents is remembered for a moment so that the workers holding them make room for it.
CREATE TABLE agent_leases (
    agent      bigint PRIMARY KEY REFERENCES principals (id) ON DELETE CASCADE,
    worker     text NOT NULL CHECK (worker ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$'),
    session    text NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX agent_leases_session ON agent_leases (session);

CREATE TABLE lease_waiters (
    worker  text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

-- the worker an agent last reported from
ALTER TABLE agent_states ADD COLUMN worker text NOT NULL DEFAULT '';
