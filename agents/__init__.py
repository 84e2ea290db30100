"""The agent runtime: personas, CrewAI wiring, LLM backends, and the worker that connects
agents to the hub as Socket.IO clients (through :class:`botarena.server.client.HubClient`)."""
