"""`wb dashboard` as a function: the Streamlit app over a store, served from a child process (dashboard/server.py)
on 127.0.0.1 unless told otherwise, until Ctrl-C."""

import os
import subprocess

from workbench.errors import BadInput
from workbench.system.console import info, warn


def serve(store: str | os.PathLike | None = None, *, port: int = 8501, host: str = "127.0.0.1",
          dashboards_dir: str | None = None) -> int:
    """Serve the comparison dashboard of `store` (default: $WB_STORE, else $WB_HOME/store) on host:port, with the
    app in dashboards_dir (default: the bundled one); returns Streamlit's exit code (0 after Ctrl-C)."""
    from workbench.system.content import content_dir
    from workbench.system.extras import require
    from workbench.system.home import store_dir
    from workbench.system.output_paths import check_store_folder

    check_store_folder(store_dir(store), must_exist=store is not None)  # a fresh default store is just empty
    require("streamlit", "The dashboard", "dashboard")
    require("plotly", "The dashboard", "dashboard")
    app_path = content_dir("dashboards", dashboards_dir) / "app.py"
    if not app_path.exists():
        raise BadInput(f"dashboard app '{app_path}': no such file")
    _check_port_free(host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"binding {host}: anyone who can reach this machine can read your runs")
    env = dict(os.environ, WB_STORE=str(store_dir(store).resolve()), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    info(f"dashboard on http://{host}:{port} (store {env['WB_STORE']}); Ctrl-C stops it")
    from workbench.system.children import guarded_env, module_command

    cmd = module_command("workbench.dashboard.server", "run", str(app_path), "--server.address", host,
                         "--server.port", str(port), "--server.headless", "true",
                         "--client.toolbarMode", "viewer", "--browser.gatherUsageStats",
                         "false",
                         # A served dashboard, not a dev loop: Streamlit's source watcher re-scans every imported
                         # module's path after each script run (about 2 s of a 2-core CPU after the first page).
                         "--server.fileWatcherType", "none")
    try:
        # SIGTERM (systemd, docker stop, a CI runner) ends wb without cleanup: the runner then ends Streamlit.
        return subprocess.call(cmd, env=guarded_env(env))
    except KeyboardInterrupt:
        return 0


def _check_port_free(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BadInput(f"--host '{host}': {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise BadInput(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror})") from None
