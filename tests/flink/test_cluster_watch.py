"""The driver gives up on a cluster that stopped answering (a real HTTP server that answers,
then is stopped: its port refuses), instead of waiting with the job's result for ever."""

from __future__ import annotations

import http.server
import threading

from fraudstream.cli.runner import ClusterWatch


class _Jobs(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/jobs/j1" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_a_cluster_that_stops_answering_is_given_up_on_after_the_limit():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Jobs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        watch = ClusterWatch("127.0.0.1", port, "j1", limit=3, timeout_s=1.0)
        assert [watch.check() for _ in range(5)] == [None] * 5 and watch.unanswered == 0
        assert ClusterWatch("127.0.0.1", port, "other", limit=1).check() is None  # a 404 is an answer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    # the port now refuses
    assert watch.check() is None and watch.check() is None
    line = watch.check()
    assert line is not None and line.startswith(f"the cluster at 127.0.0.1:{port} stopped answering; job j1's state")
    assert "refused" in line.lower() and "\n" not in line
