"""Keep a dropped file from being lost when it arrives while the page starts a run.

Streamlit (checked on 1.67.0) uploads a dropped file in three steps: the browser asks the
server for an upload address (a ``file_urls_request``), the server answers with a
``file_urls_response`` placed in the session's outgoing queue, and only then does the
browser send the file. When a script run starts, the server clears that queue, keeping
only the run's lifecycle messages and toasts (``ForwardMsgQueue.clear(retain_lifecycle_msgs
=True)``). An answer still waiting in the queue at that moment is thrown away; the
browser waits for it forever, so the file is never sent and the uploader keeps showing
the file it held before.

On this app that happened when image B was dropped a fraction of a second after image A:
A's upload starts a run, and B's answer was in the queue when it started.
``scripts/probe_drops.py`` lost 1-2 drops of every 5-6 this way, none with this fix
(docs/testing.md has the figures).

:func:`install` makes the queue keep those answers as well (they belong to no run and are
never stale). It changes nothing else; it is idempotent and is called from ``app.py``, so
it holds however the server was started.
"""

from __future__ import annotations

from typing import Any

_MARK = "_lpips_explain_keeps_file_urls"


def _is_file_urls_response(msg: Any) -> bool:
    return msg.WhichOneof("type") == "file_urls_response"


def install() -> bool:
    """Patch ``ForwardMsgQueue.clear`` to keep pending upload addresses; False when the
    patch was already in place (or Streamlit's queue has no ``clear`` to wrap)."""
    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

    original = getattr(ForwardMsgQueue, "clear", None)
    if original is None or getattr(original, _MARK, False):
        return False

    def clear(self: ForwardMsgQueue, retain_lifecycle_msgs: bool = False,
              *args: Any, **kwargs: Any) -> None:
        # Only the clear at a run's start keeps messages; flush() clears everything (it
        # has just taken the messages to send them).
        pending = ([m for m in getattr(self, "_queue", []) if _is_file_urls_response(m)]
                   if retain_lifecycle_msgs else [])
        original(self, retain_lifecycle_msgs, *args, **kwargs)
        for msg in pending:
            if not any(m is msg for m in self._queue):
                self._queue.append(msg)

    clear.__doc__ = original.__doc__
    clear.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(clear, _MARK, True)
    ForwardMsgQueue.clear = clear  # type: ignore[method-assign]
    return True
