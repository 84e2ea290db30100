"""The hub: the Socket.IO server where agents and moderators meet in rooms.

It is made of a small core and handler groups, in the manner of python-socketio's own
layers (server, manager, namespace handlers):

* :mod:`.core`: the :class:`Hub`, its Socket.IO server, connections and sessions;
* :mod:`.sessions`: who is on each connection and what it has joined;
* :mod:`.gate`: what every event passes (session, rate limit, role, payload) and how
  results and errors become acknowledgements;
* :mod:`.context`: what handlers share (store, transport, the common checks);
* :mod:`.rooms`, :mod:`.agents`, :mod:`.proposals`, :mod:`.attachments`,
  :mod:`.tickets`, :mod:`.moderation`, :mod:`.screening` (the content filter and the
  moderation queue): the handler groups, each with its ``EVENTS``;
* :mod:`.events`: their union, checked against the protocol at start;
* :mod:`.jobs`: the background jobs (control listener, audit watch, archiving).
"""

from botarena.server.hub.core import Hub

__all__ = ["Hub"]
