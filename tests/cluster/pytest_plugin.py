"""pytest plugin: a session-scoped real Kubernetes API server.

Load it from a conftest.py::

    pytest_plugins = ["tests.cluster.pytest_plugin"]   # or add tests/cluster to sys.path
                                                       # and use "pytest_plugin"

and use the ``kube_cluster`` fixture::

    def test_x(kube_cluster):
        subprocess.run(["kubectl", "--kubeconfig", kube_cluster.kubeconfig, "get", "nodes"], check=True)

``kube_cluster`` has ``.kubeconfig`` (str path), ``.state_dir`` (Path or None),
``.api_url`` (str), ``.kubectl(*args)`` and ``.env`` (os.environ plus KUBECONFIG).

If ``FEDIOPS_KUBECONFIG`` names an existing kubeconfig, that (already running)
cluster is reused and never stopped.  Otherwise a cluster is started in
``FEDIOPS_CLUSTER_STATE`` (or a pytest temp dir), binaries being built into the
cache on first use, and stopped at the end of the session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localcluster import LocalCluster  # noqa: E402


def _server_from_kubeconfig(path: str) -> str | None:
    text = Path(path).read_text()
    try:
        import yaml  # optional
        cfg = yaml.safe_load(text) or {}
        ctx_name = cfg.get("current-context")
        ctx = next((c["context"] for c in cfg.get("contexts", []) if c.get("name") == ctx_name), None)
        cl_name = ctx.get("cluster") if ctx else None
        for c in cfg.get("clusters", []):
            if cl_name is None or c.get("name") == cl_name:
                return c["cluster"]["server"]
    except Exception:  # pragma: no cover - fall back to a regex
        pass
    m = re.search(r"^\s*server:\s*(\S+)", text, re.M)
    return m.group(1) if m else None


@dataclass
class KubeCluster:
    kubeconfig: str
    api_url: str | None
    state_dir: Path | None
    cluster: LocalCluster | None = None
    reused: bool = False
    env: dict = field(default_factory=dict)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], input=input,
                              capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory):
    existing = os.environ.get("FEDIOPS_KUBECONFIG")
    if existing and Path(existing).is_file():
        state = Path(existing).resolve().parent
        ours = (state / "pids.json").exists()
        kc = KubeCluster(kubeconfig=str(Path(existing).resolve()),
                         api_url=_server_from_kubeconfig(existing),
                         state_dir=state if ours else None, reused=True,
                         # a LocalCluster view of it (audit log, pids); never stopped here
                         cluster=LocalCluster(state, verbose=False) if ours else None)
        kc.env = dict(os.environ, KUBECONFIG=kc.kubeconfig)
        yield kc
        return

    state_dir = os.environ.get("FEDIOPS_CLUSTER_STATE") or str(tmp_path_factory.mktemp("kube-cluster"))
    cluster = LocalCluster(state_dir)
    kubeconfig = cluster.start()
    kc = KubeCluster(kubeconfig=str(kubeconfig), api_url=cluster.api_url,
                     state_dir=cluster.state_dir, cluster=cluster)
    kc.env = dict(os.environ, KUBECONFIG=kc.kubeconfig)
    try:
        yield kc
    finally:
        cluster.stop()


@pytest.fixture
def gateway_api(kube_cluster):
    """The Gateway API standard-channel CRDs (HTTPRoute, Gateway, ...) installed in the session's cluster for one
    test; yields their names, and removes them afterwards: the other tests run against a cluster without the
    Gateway API (as a DOKS cluster is until its operator installs it). Fetched once into the cache (see
    localcluster.gateway_api_crds)."""
    cluster = kube_cluster.cluster or LocalCluster(Path(kube_cluster.kubeconfig).parent, verbose=False)
    names = cluster.install_gateway_api()
    try:
        yield names
    finally:
        # A CRD goes only after the API server has deleted every object of it (its customresourcecleanup
        # finalizer), which a loaded machine can take minutes to get to: waited for, so that the tests after this
        # one see a cluster without the Gateway API, with kubectl's own bound inside ours.
        kube_cluster.kubectl("delete", "crd", *names, "--ignore-not-found", "--wait=true", "--timeout=600s",
                             check=False, timeout=660)
