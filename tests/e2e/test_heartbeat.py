"""Server heartbeats reach every websocket, however late it attached (API.md fix F7).

0.7.1 started a connection's heartbeat loop 5 s after /connect and ended it for good if no
socket was attached by then: a socket attached later got no `[]` and was collected ~15 s after
its last activity. Default settings here: heartbeat_interval 5 s, gc_conns_after 30 s.

This test takes ~30 s: the seconds that pass are the scenario.
"""

import time
import uuid
from itertools import pairwise

from tests.e2e.apiclient import ApiClient, WsListener, has_text

SECRET = "e2e-heartbeat-secret"
HEARTBEAT_INTERVAL = 5.0  # the default
MARGIN = 2.0
ATTACH_AFTER = 8.0
SILENCE = 20.0


def test_late_socket_gets_heartbeats_and_stays_open(start_server):
    server = start_server(settings={"secret": SECRET})  # defaults otherwise
    api = ApiClient(server.base_url, SECRET)
    room = f"room-{uuid.uuid4().hex[:8]}"
    conn_id = api.connect("latecomer", channels=[room])

    time.sleep(ATTACH_AFTER)  # the scenario: the browser opens its socket 8 s after /connect

    with WsListener.open(server.ws_url, conn_id) as ws:
        attached = time.monotonic()
        assert ws.next_frames(timeout=HEARTBEAT_INTERVAL + MARGIN) == []
        beats = [time.monotonic()]
        # The client says nothing for 20 s; the server keeps sending [] on schedule.
        while time.monotonic() - attached < SILENCE:
            assert ws.next_frames(timeout=HEARTBEAT_INTERVAL + MARGIN) == []
            beats.append(time.monotonic())
        gaps = [round(later - earlier, 2) for earlier, later in pairwise(beats)]
        assert len(beats) >= SILENCE / HEARTBEAT_INTERVAL, gaps
        assert max(gaps) <= HEARTBEAT_INTERVAL + MARGIN, gaps

        api.publish({"channel": room, "user": "bob", "message": {"text": "still there?"}})
        message = ws.wait_for(has_text("still there?"), timeout=2.0)
        assert message["catchup"] is False
        assert ws.close_code is None
