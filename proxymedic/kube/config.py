"""Find the API server: in-cluster service account, or the kubeconfig, through the kubernetes client."""

from __future__ import annotations

import os
import ssl
import time
from pathlib import Path

from proxymedic.kube.client import Connection

KUBECONFIG_EXIT_CODE = 4
"""What every command exits with when its kubeconfig is missing, unreadable or unusable."""


class KubeconfigError(Exception):
    """The kubeconfig cannot be used; ``str()`` names the file and says whether it is missing,
    unreadable or invalid, in one line."""


def kubeconfig_files(explicit: str | None) -> tuple[list[Path], str]:
    """The files a kubeconfig is read from, as kubectl picks them, and where that choice came from."""
    if explicit:
        return [Path(explicit).expanduser()], "--kubeconfig"
    listed = os.environ.get("KUBECONFIG", "")
    if listed:
        return [Path(part).expanduser() for part in listed.split(os.pathsep) if part], "KUBECONFIG"
    return [Path("~/.kube/config").expanduser()], "the default location"


def check_kubeconfig(explicit: str | None) -> None:
    """Raise KubeconfigError naming the file when there is none to read, or it cannot be read.

    As kubectl does, files listed in KUBECONFIG that do not exist are ignored while one exists."""
    files, source = kubeconfig_files(explicit)
    existing = [path for path in files if path.exists()]
    if not existing:
        if source == "--kubeconfig":
            raise KubeconfigError(f"kubeconfig {files[0]} is missing: no such file (--kubeconfig)")
        if source == "KUBECONFIG":
            named = os.pathsep.join(str(path) for path in files)
            raise KubeconfigError(f"kubeconfig missing: no file of KUBECONFIG={named} exists")
        raise KubeconfigError(
            f"kubeconfig {files[0]} is missing and KUBECONFIG is not set: pass --kubeconfig FILE, set "
            "KUBECONFIG, or run in a pod"
        )
    for path in existing:
        if path.is_dir():
            raise KubeconfigError(f"kubeconfig {path} is unreadable: it is a directory ({source})")
        try:
            path.open("rb").close()
        except OSError as exc:
            raise KubeconfigError(
                f"kubeconfig {path} is unreadable: {exc.strerror or exc} ({source})"
            ) from None


SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
SERVICE_ACCOUNT_CA = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")


class TokenFile:
    """A bound service-account token that the kubelet rotates: re-read it every minute."""

    def __init__(self, path: Path, refresh_seconds: float = 60.0) -> None:
        self._path = path
        self._refresh = refresh_seconds
        self._token = ""
        self._read_at = float("-inf")

    def __call__(self) -> str:
        now = time.monotonic()
        if now - self._read_at > self._refresh:
            self._token = self._path.read_text().strip()
            self._read_at = now
        return self._token


def in_cluster_connection() -> Connection:
    """The pod's service account, read the way the kubernetes client's ``load_incluster_config`` does.

    Without the kubernetes client: importing it costs every agent about 11 MB of memory.
    """
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise RuntimeError("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set in a pod")
    if not SERVICE_ACCOUNT_TOKEN.is_file() or not SERVICE_ACCOUNT_TOKEN.read_text().strip():
        raise RuntimeError(f"the service account token {SERVICE_ACCOUNT_TOKEN} is missing or empty")
    if not SERVICE_ACCOUNT_CA.is_file():
        raise RuntimeError(f"the service account CA {SERVICE_ACCOUNT_CA} is missing")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return Connection(
        server=server,
        token=TokenFile(SERVICE_ACCOUNT_TOKEN),
        ssl_context=ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_CA)),
    )


def load_connection(kubeconfig: str | None = None, context: str | None = None) -> Connection:
    """In a pod, the service account; elsewhere the kubeconfig (``KUBECONFIG`` or ~/.kube/config).

    Raise KubeconfigError when the kubeconfig is missing, unreadable or invalid."""
    in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ and kubeconfig is None
    if in_cluster:
        return in_cluster_connection()

    check_kubeconfig(kubeconfig)

    import kubernetes.client
    import kubernetes.config

    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except Exception as exc:  # the kubernetes client raises several kinds for a bad kubeconfig
        files, _ = kubeconfig_files(kubeconfig)
        named = os.pathsep.join(str(path) for path in files)
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise KubeconfigError(f"kubeconfig {named} is invalid: {detail}") from None

    ssl_context: ssl.SSLContext | bool
    if not configuration.verify_ssl:
        ssl_context = False
    else:
        ssl_context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            ssl_context.load_cert_chain(configuration.cert_file, configuration.key_file)

    token: str | None = None
    header = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
    if header:
        token = str(header).removeprefix("Bearer ").strip()
    return Connection(
        server=configuration.host.rstrip("/"),
        token=token,
        ssl_context=ssl_context,
        tls_server_name=getattr(configuration, "tls_server_name", None) or None,
    )
