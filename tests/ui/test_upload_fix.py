"""ui/upload_fix.py: an upload address survives the queue clear at a run's start (the
cause of the lost drops), and nothing else changes. The browser side is
tests/ui/test_browser.py::test_first_screen_upload_and_lean_report (B dropped 0.3 s
after A, four times in a row)."""

from __future__ import annotations

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

from lpips_explain.ui import upload_fix


def _urls(request_id: str) -> ForwardMsg:
    msg = ForwardMsg()
    msg.file_urls_response.response_id = request_id
    return msg


def _delta(text: str, index: int) -> ForwardMsg:
    msg = ForwardMsg()
    msg.metadata.delta_path[:] = [0, index]
    msg.delta.new_element.markdown.body = text
    return msg


def _run_start(queue: ForwardMsgQueue) -> list[str]:
    """What the session does when a script run starts; the kinds of message left."""
    queue.clear(retain_lifecycle_msgs=True)
    return [m.WhichOneof("type") for m in queue._queue]


def _filled() -> ForwardMsgQueue:
    queue = ForwardMsgQueue()
    queue.enqueue(_delta("stale", 0))
    queue.enqueue(_urls("r1"))
    finished = ForwardMsg()
    finished.script_finished = ForwardMsg.FINISHED_SUCCESSFULLY
    queue.enqueue(finished)
    queue.enqueue(_delta("stale too", 1))
    return queue


def test_unpatched_streamlit_drops_a_pending_upload_address():
    """The bug the module works around (if a Streamlit upgrade fixes it, this says so)."""
    original = getattr(ForwardMsgQueue.clear, "__wrapped__", ForwardMsgQueue.clear)
    queue = _filled()
    original(queue, retain_lifecycle_msgs=True)
    assert [m.WhichOneof("type") for m in queue._queue] == ["script_finished"]


def test_a_run_start_keeps_the_upload_address_and_drops_the_stale_deltas():
    upload_fix.install()
    queue = _filled()
    assert _run_start(queue) == ["script_finished", "file_urls_response"]
    assert queue._queue[1].file_urls_response.response_id == "r1"
    # The next flush sends it once; the clear inside flush keeps nothing.
    sent = queue.flush()
    assert [m.WhichOneof("type") for m in sent] == ["script_finished", "file_urls_response"]
    assert queue.is_empty() and queue.flush() == []


def test_a_plain_clear_still_empties_the_queue():
    upload_fix.install()
    queue = _filled()
    queue.clear()
    assert queue.is_empty()


def test_install_is_idempotent():
    upload_fix.install()
    before = ForwardMsgQueue.clear
    assert upload_fix.install() is False
    assert ForwardMsgQueue.clear is before
    queue = _filled()
    assert _run_start(queue).count("file_urls_response") == 1  # kept once, not twice
