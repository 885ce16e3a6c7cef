"""What `server/http.py` takes from uvicorn's and h11's internals, named so that an upgrade that moves them fails
here, in one place, rather than as connections that never time out."""

from __future__ import annotations

import inspect

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.http import TimedH11Protocol, timed_h11


def test_uvicorns_h11_protocol_still_has_what_the_read_deadline_overrides_and_reads():
    for hook in ("connection_made", "data_received", "on_response_complete", "connection_lost"):
        assert callable(getattr(H11Protocol, hook, None)), f"uvicorn's H11Protocol lost {hook}: server/http.py overrides it"
    assert list(inspect.signature(H11Protocol.data_received).parameters) == ["self", "data"]
    source = inspect.getsource(H11Protocol)
    for attribute in ("self.conn", "self.transport", "self.loop", "self.logger"):
        assert attribute in source, f"uvicorn's H11Protocol no longer sets {attribute}, which server/http.py reads"
    assert h11.DONE is not None and hasattr(h11.Connection, "their_state")


def test_timed_protocol_classes_carry_their_deadline():
    cls = timed_h11(2.5)
    assert issubclass(cls, TimedH11Protocol) and issubclass(cls, H11Protocol) and cls.read_timeout == 2.5
