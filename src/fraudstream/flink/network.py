"""Where the local Flink job listens: loopback only, unless `pipeline.bind_host` says otherwise.

Flink's mini-cluster opens a BLOB server (it binds `jobmanager.bind-host`, else every
interface), the task manager's data server (`taskmanager.bind-host`) and the REST API (set in
`checkpoints.configure`). PyFlink's driver opens a gRPC worker pool for its Python workers
(loopback mode) on `[::]` with no option to change it; `configure_network` replaces that one
method so the pool binds the same host. The REST API answers browsers of no other origin:
Flink's default `Access-Control-Allow-Origin: *` would let any web page read it.
"""

from __future__ import annotations

import atexit
import functools
import logging
from typing import Any

from pyflink.common import Configuration

from fraudstream.config import WILDCARD_HOSTS, Settings

logger = logging.getLogger(__name__)


def configure_network(conf: Configuration, settings: Settings, worker_pool: bool = True) -> None:
    """Bind every listener of the job to `pipeline.bind_host` and drop the CORS wildcard.
    `worker_pool`: whether PyFlink's loopback pool will be started (process mode only)."""
    host = settings.pipeline.bind_host
    for key in ("jobmanager.bind-host", "taskmanager.bind-host", "rest.bind-address"):
        conf.set_string(key, host)
    # the addresses the mini-cluster's parts reach each other on: a wildcard names no host
    reach = settings.pipeline.reach_host
    for key in ("jobmanager.rpc.address", "taskmanager.host"):
        conf.set_string(key, reach)
    # Same-origin only: the value names no page, so no browser lets another site read the API.
    conf.set_string("web.access-control-allow-origin", "")
    if worker_pool:
        _bind_worker_pool(host)


def _bind_worker_pool(host: str) -> None:
    """Make PyFlink's loopback worker pool listen on `host` (PyFlink binds `[::]:0`).

    The pool is a process-wide singleton whose `__init__` forgets its address, so PyFlink
    starts a new server each time an environment opens; ours starts one per host and reuses it.
    """
    from pyflink.fn_execution.beam import beam_worker_pool_service as pool

    servicer = pool.BeamFnLoopbackWorkerPoolServicer
    if getattr(servicer.start, "_fraudstream_host", None) == host:
        return
    servers: dict[str, str] = {}

    def start(self: Any) -> str:
        if host not in servers:
            import grpc
            from apache_beam.portability.api import beam_fn_api_pb2_grpc
            from apache_beam.utils import thread_pool_executor

            server = grpc.server(thread_pool_executor.shared_unbounded_instance())
            bind = f"[{host}]" if ":" in host else host
            port = server.add_insecure_port(f"{bind}:0")
            beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(self, server)
            server.start()
            atexit.register(functools.partial(server.stop, 1))
            reach = "127.0.0.1" if host in WILDCARD_HOSTS else bind  # bracketed, for an IPv6 address
            servers[host] = f"{reach}:{port}"
            logger.info("Python worker pool listening on %s:%d", bind, port)
        self._worker_address = servers[host]
        return servers[host]

    start._fraudstream_host = host  # type: ignore[attr-defined]
    servicer.start = start  # type: ignore[method-assign]
