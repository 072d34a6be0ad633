"""Running a sweep's groups as Ray tasks on an existing cluster.

Each group (one checkpoint's units) is one task with the resources the sweep file declares. Ray's own task
retries rerun a group whose worker process or node dies (`max_retries`); a unit's own failure is an outcome,
not an exception, so Ray never retries it. A small actor on the driver's node hears which units have started,
and where, for the progress line."""

import socket
from urllib.parse import urlparse

from workbench.errors import BadInput, EnvironmentProblem
from workbench.system.extras import require
from workbench.system.failures import described, first_line

CONNECT_TIMEOUT_S = 5.0
HANDSHAKE_TIMEOUT_S = 10.0


def connect(address: str):
    """ray.init on the cluster at `address` (host:port, ray://host:port or auto), checked first to answer and to
    speak Ray: ray.init itself waits minutes on an address where nothing listens, and retries without end on one
    where something else does."""
    ray = require("ray", "wb sweep --ray", "sweep")
    target = _bootstrap_address(address)
    host, port = _host_port(target)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise EnvironmentProblem(f"--ray {address}: no Ray cluster answers at {host}:{port} "
                                 f"({exc.strerror or exc}); start one with `ray start --head`") from None
    _check_speaks_ray(address, target, f"{host}:{port}")
    try:
        ray.init(address=target, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError) as exc:
        raise EnvironmentProblem(f"--ray {address}: could not join the Ray cluster: {first_line(exc)}") from None
    return ray


def _check_speaks_ray(address: str, target: str, host_port: str) -> None:
    """One call of Ray's own gRPC API, with a deadline: the GCS's GetClusterId at host:port, the Ray Client
    server's ping at ray://host:port. A port held by something that is not Ray (silent, HTTP, another gRPC
    service) fails here in seconds. A refusal for want of Ray's auth token is Ray answering: ray.init says more."""
    grpc = require("grpc", "wb sweep --ray", "sweep")
    with grpc.insecure_channel(host_port) as channel:
        try:
            if target.startswith("ray://"):
                client = require("ray.core.generated.ray_client_pb2", "wb sweep --ray", "sweep")
                stubs = require("ray.core.generated.ray_client_pb2_grpc", "wb sweep --ray", "sweep")
                stubs.RayletDriverStub(channel).ClusterInfo(
                    client.ClusterInfoRequest(type=client.ClusterInfoType.PING), timeout=HANDSHAKE_TIMEOUT_S)
            else:
                gcs = require("ray.core.generated.gcs_service_pb2", "wb sweep --ray", "sweep")
                stubs = require("ray.core.generated.gcs_service_pb2_grpc", "wb sweep --ray", "sweep")
                stubs.NodeInfoGcsServiceStub(channel).GetClusterId(gcs.GetClusterIdRequest(),
                                                                  timeout=HANDSHAKE_TIMEOUT_S)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return
            why = {grpc.StatusCode.DEADLINE_EXCEEDED: f"no answer in {HANDSHAKE_TIMEOUT_S:.0f} s",
                   grpc.StatusCode.UNIMPLEMENTED: "a gRPC service without Ray's API"}.get(exc.code(), "not gRPC")
            if target.startswith("ray://"):
                raise EnvironmentProblem(f"--ray {address}: {host_port} does not answer as a Ray Client server ({why}); "
                                         "give ray://HEAD:10001, or the cluster's host:port without ray://") from None
            raise EnvironmentProblem(f"--ray {address}: {host_port} does not answer as a Ray cluster ({why}); give "
                                     "the address `ray start --head` printed (a Ray Client server needs ray://)") from None


def _bootstrap_address(address: str) -> str:
    if address != "auto":
        return address
    import os

    found = os.environ.get("RAY_ADDRESS")
    if not found:
        try:  # where `ray start` on this machine recorded its cluster (ray.init("auto") reads the same file)
            from ray._private.services import find_bootstrap_address

            found = find_bootstrap_address(None)
        except Exception:  # noqa: BLE001  (a Ray without that helper: ray.init below says what it finds)
            found = None
    if not found:
        raise EnvironmentProblem("--ray auto: no Ray cluster found on this machine (no RAY_ADDRESS, no `ray start`)")
    return found


def _host_port(address: str) -> tuple[str, int]:
    """host and port of host:port or ray://host:port; a BadInput naming --ray for anything else."""
    usage = f"--ray {address}: expected host:port, ray://host:port or auto"
    parsed = urlparse(address if "://" in address else f"ray-gcs://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError as exc:  # a port that is not a number, or out of range
        raise BadInput(f"{usage} ({exc})") from None
    if parsed.scheme not in ("ray", "ray-gcs") or not host or not port or any(c.isspace() for c in host):
        raise BadInput(usage)
    return host, port


class _Tracker:
    """Units started (how many times, where) and finished, as the workers report them."""

    def __init__(self):
        self.units: dict[str, dict] = {}

    def started(self, unit: str, where: str) -> None:
        s = self.units.setdefault(unit, {"attempts": 0})
        s.update(attempts=s["attempts"] + 1, where=where, state="running")

    def finished(self, unit: str, status: str) -> None:
        self.units.setdefault(unit, {"attempts": 1})["state"] = status

    def snapshot(self) -> dict[str, dict]:
        return self.units


class _RemoteReporter:
    """The worker's side of the tracker: fire-and-forget calls (progress must never stop an evaluation)."""

    def __init__(self, handle):
        self.handle = handle

    def started(self, unit: str, where: str) -> None:
        try:
            self.handle.started.remote(unit, where)
        except Exception:  # noqa: BLE001
            pass

    def finished(self, unit: str, status: str) -> None:
        try:
            self.handle.finished.remote(unit, status)
        except Exception:  # noqa: BLE001
            pass


def _evaluate_on_worker(group, settings, tracker):
    import ray

    from workbench.sweep.worker import evaluate_group

    ctx = ray.get_runtime_context()
    where = f"node {ctx.get_node_id()[:8]} ({socket.gethostname()})"
    return list(evaluate_group(group, settings, _RemoteReporter(tracker), where=where))


class RayRunner:
    """Submits the groups, yields each group's outcomes as it finishes, cancels everything on Ctrl-C."""

    def __init__(self, ray, resources, max_retries: int):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        self.tracker = ray.remote(_Tracker).options(num_cpus=0, scheduling_strategy=here).remote()
        options = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, "max_retries": max_retries,
                   "retry_exceptions": False}
        if resources.memory_gb:
            options["memory"] = int(resources.memory_gb * 2**30)
        self.task = ray.remote(_evaluate_on_worker).options(**options)
        self.max_retries = max_retries

    def nodes(self) -> list[dict]:
        return [{"node": n["NodeID"][:8], "alive": n["Alive"], "resources": n.get("Resources", {})}
                for n in self.ray.nodes()]

    def run(self, groups, settings, on_tick):
        """Yields (group, outcomes) as groups finish; on_tick(snapshot) between, with the tracker's view."""
        ray = self.ray
        refs = {self.task.remote(group, settings, self.tracker): group for group in groups}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=2.0)
                on_tick(self._snapshot())
                for ref in done:
                    yield refs[ref], self._outcomes(ref, refs[ref])
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def _snapshot(self) -> dict:
        try:
            return self.ray.get(self.tracker.snapshot.remote(), timeout=10)
        except Exception:  # noqa: BLE001  (no progress this tick; the results still land)
            return {}

    def _outcomes(self, ref, group) -> list[dict]:
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # wb's own code failed outside a unit: report each unit
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            error, code = described(cause), 1
        except ray.exceptions.RayError as exc:  # the worker or its node died, after Ray's retries
            attempts = self._snapshot().get(group.units[0].id, {}).get("attempts", self.max_retries + 1)
            error, code = f"its worker died ({attempts} attempts): {described(exc)}", 4
        return [{"unit": u.id, "status": "failed", "error": error, "exit_code": code} for u in group.units]

    def close(self) -> None:
        self.ray.shutdown()
