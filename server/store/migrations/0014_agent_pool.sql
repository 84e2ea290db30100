-- The LLM backends of the worker an agent runs on, as it last reported them (each one's
-- health, slots busy, queue, speed and errors), for /metrics and the console's Health tab.
ALTER TABLE agent_states ADD COLUMN pool jsonb NOT NULL DEFAULT '[]';
