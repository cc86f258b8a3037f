"""Tests of the local cluster tool against the real API server it starts."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from localcluster import GATEWAY_API_VERSION, LocalCluster, gateway_api_crds, k8s_version  # noqa: E402

pytest_plugins = ["pytest_plugin"]


@pytest.fixture
def ns(kube_cluster):
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl("create", "namespace", name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def deployment(name: str, replicas: int = 2, pod_annotations: dict | None = None,
               progress_deadline: int | None = None) -> str:
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": pod_annotations or {}},
            "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1.0",
                                     "ports": [{"containerPort": 3000}]}]},
        },
    }
    if progress_deadline is not None:
        spec["progressDeadlineSeconds"] = progress_deadline
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": name}, "spec": spec})


def job(name: str, pod_annotations: dict | None = None, image: str = "registry.invalid/task:1.0") -> str:
    return json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"annotations": pod_annotations or {}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "task", "image": image, "command": ["true"]}]}}},
    })


def get_json(kc, *args) -> dict:
    return json.loads(kc.kubectl("get", *args, "-o", "json").stdout)


def test_api_versions(kube_cluster):
    out = kube_cluster.kubectl("api-versions").stdout.split()
    for gv in ("v1", "apps/v1", "autoscaling/v2", "policy/v1", "batch/v1",
               "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1"):
        assert gv in out, f"{gv} missing from {out}"


def test_server_version(kube_cluster):
    out = json.loads(kube_cluster.kubectl("version", "-o", "json", check=False).stdout)
    assert out["serverVersion"]["gitVersion"] == k8s_version()
    assert int(out["serverVersion"]["minor"]) >= 31


def test_nodes_ready(kube_cluster):
    nodes = get_json(kube_cluster, "nodes")["items"]
    assert nodes, "kubesim registered no node"
    for n in nodes:
        conds = {c["type"]: c["status"] for c in n["status"]["conditions"]}
        assert conds["Ready"] == "True"
        assert not n["spec"].get("taints")


def test_ssa_deployment_available_and_idempotent(kube_cluster, ns):
    kc = kube_cluster
    manifest = deployment("web", replicas=2)
    out = kc.kubectl("apply", "--server-side", "--field-manager=fediops-test", "-n", ns, "-f", "-",
                     input=manifest).stdout
    assert "serverside-applied" in out
    kc.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=60s")
    dep = get_json(kc, "-n", ns, "deployment/web")
    assert dep["status"]["availableReplicas"] == 2
    assert dep["status"]["readyReplicas"] == 2
    conds = {c["type"]: c["status"] for c in dep["status"]["conditions"]}
    assert conds["Available"] == "True"
    full = json.loads(kc.kubectl("get", "-n", ns, "deployment/web", "-o", "json",
                                 "--show-managed-fields").stdout)
    managers = [m["manager"] for m in full["metadata"]["managedFields"]]
    assert "fediops-test" in managers

    pods = get_json(kc, "-n", ns, "pods", "-l", "app=web")["items"]
    assert len(pods) == 2
    for p in pods:
        assert p["status"]["phase"] == "Running"
        assert p["spec"]["nodeName"]
        assert p["status"]["podIP"]
        cs = p["status"]["containerStatuses"][0]
        assert cs["ready"] is True and cs["started"] is True

    # A no-op re-apply writes nothing. resourceVersion is no evidence of that: the Deployment controller may
    # still be writing status. Our manager's entry (stamped only when our apply changes the object) and the
    # generation (spec changes) are.
    def ours(obj):
        return [m for m in obj["metadata"]["managedFields"] if m["manager"] == "fediops-test"]
    time.sleep(1)
    kc.kubectl("apply", "--server-side", "--field-manager=fediops-test", "-n", ns, "-f", "-",
               input=manifest)
    again = json.loads(kc.kubectl("get", "-n", ns, "deployment/web", "-o", "json",
                                  "--show-managed-fields").stdout)
    assert ours(again) == ours(full)
    assert again["metadata"]["generation"] == full["metadata"]["generation"]

    # Scaling down removes pods for good (kubesim finishes the deletion).
    kc.kubectl("scale", "-n", ns, "deployment/web", "--replicas=0")
    deadline = time.time() + 30
    while time.time() < deadline and get_json(kc, "-n", ns, "pods", "-l", "app=web")["items"]:
        time.sleep(0.5)
    assert get_json(kc, "-n", ns, "pods", "-l", "app=web")["items"] == []


def test_dry_run_server_persists_nothing(kube_cluster, ns):
    kc = kube_cluster
    out = kc.kubectl("apply", "--server-side", "--dry-run=server", "-n", ns, "-f", "-",
                     input=deployment("dry", replicas=1)).stdout
    assert "server dry run" in out
    r = kc.kubectl("get", "-n", ns, "deployment/dry", check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr
    cm = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"},
                     "data": {"a": "b"}})
    kc.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", input=cm)
    assert kc.kubectl("get", "-n", ns, "configmap/dry", check=False).returncode != 0


def test_jobs_complete_and_fail(kube_cluster, ns):
    kc = kube_cluster
    kc.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=job("ok"))
    kc.kubectl("apply", "--server-side", "-n", ns, "-f", "-",
               input=job("bad", {"sim.fediops.test/fail": "true"}))
    kc.kubectl("apply", "--server-side", "-n", ns, "-f", "-",
               input=job("badimg", image="registry.invalid/task:fail"))
    kc.kubectl("wait", "-n", ns, "--for=condition=Complete", "job/ok", "--timeout=60s")
    kc.kubectl("wait", "-n", ns, "--for=condition=Failed", "job/bad", "job/badimg", "--timeout=60s")
    ok = get_json(kc, "-n", ns, "job/ok")
    assert ok["status"]["succeeded"] == 1
    assert not any(c["type"] == "Failed" and c["status"] == "True" for c in ok["status"]["conditions"])
    bad = get_json(kc, "-n", ns, "job/bad")
    assert bad["status"]["failed"] == 1
    assert not any(c["type"] == "Complete" and c["status"] == "True" for c in bad["status"]["conditions"])
    pods = get_json(kc, "-n", ns, "pods", "-l", "job-name=bad")["items"]
    assert pods and pods[0]["status"]["phase"] == "Failed"
    term = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 1 and term["reason"] == "Error"
    assert "simulated failure" in term["message"]


def test_job_delay_annotation(kube_cluster, ns):
    kc = kube_cluster
    t0 = time.monotonic()
    kc.kubectl("apply", "--server-side", "-n", ns, "-f", "-",
               input=job("slow", {"sim.fediops.test/delay-seconds": "4"}))
    kc.kubectl("wait", "-n", ns, "--for=condition=Complete", "job/slow", "--timeout=60s")
    assert time.monotonic() - t0 >= 4


def test_never_ready_progress_deadline(kube_cluster, ns):
    kc = kube_cluster
    kc.kubectl("apply", "--server-side", "-n", ns, "-f", "-",
               input=deployment("stuck", replicas=1, progress_deadline=3,
                                pod_annotations={"sim.fediops.test/never-ready": "true"}))
    kc.kubectl("wait", "-n", ns, "deployment/stuck", "--timeout=60s",
               "--for=jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}"
               "=ProgressDeadlineExceeded")
    r = kc.kubectl("rollout", "status", "-n", ns, "deployment/stuck", "--timeout=10s", check=False)
    assert r.returncode != 0 and "exceeded its progress deadline" in r.stderr
    pods = get_json(kc, "-n", ns, "pods", "-l", "app=stuck")["items"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    assert all(not p["status"]["containerStatuses"][0]["ready"] for p in pods)


def test_crashloop_deployment(kube_cluster, ns):
    kc = kube_cluster
    kc.kubectl("apply", "--server-side", "-n", ns, "-f", "-",
               input=deployment("crash", replicas=1, pod_annotations={"sim.fediops.test/fail": "true"}))
    deadline = time.time() + 30
    waiting = None
    while time.time() < deadline:
        pods = get_json(kc, "-n", ns, "pods", "-l", "app=crash")["items"]
        cs = pods[0]["status"].get("containerStatuses") if pods else None
        if cs and cs[0]["state"].get("waiting"):
            waiting = cs[0]
            break
        time.sleep(0.5)
    assert waiting and waiting["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert waiting["lastState"]["terminated"]["exitCode"] == 1


def test_service_account_token(kube_cluster, ns):
    out = kube_cluster.kubectl("create", "token", "default", "-n", ns).stdout.strip()
    assert out.count(".") == 2


def test_audit_log(kube_cluster):
    audit = kube_cluster.cluster.info.get("audit_log") if kube_cluster.cluster else None
    if not audit:
        pytest.skip("audit log not enabled on this cluster")
    kube_cluster.kubectl("get", "namespaces")
    log = Path(audit)
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert any(e.get("verb") == "list" and e.get("objectRef", {}).get("resource") == "namespaces"
               and e.get("userAgent", "").startswith("kubectl") for e in events)
    assert all(e["level"] == "Metadata" for e in events)


def _procs_mentioning(text: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if text.encode() in (d / "cmdline").read_bytes():
                found.append(int(d.name))
        except OSError:
            pass
    return found


def test_start_twice_and_stop_leaves_no_process(tmp_path):
    c = LocalCluster(tmp_path / "own", audit=False)
    t0 = time.monotonic()
    kubeconfig = c.start()
    started_in = time.monotonic() - t0
    try:
        assert c.running() and c.healthy(), c.status()
        pids = [p["pid"] for p in c.processes().values()]
        assert len(pids) == 4, c.processes()
        t1 = time.monotonic()
        assert c.start() == kubeconfig
        again_in = time.monotonic() - t1
        assert again_in < 15, f"second start took {again_in:.1f}s"
        assert [p["pid"] for p in c.processes().values()] == pids, c.processes()
        assert started_in < 90, f"start took {started_in:.1f}s"
    finally:
        c.stop()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), \
            f"pid {pid} survived stop: {Path(f'/proc/{pid}/status').read_text()[:300]}"
    left = _procs_mentioning(str(c.state_dir))
    assert left == [], [Path(f"/proc/{p}/cmdline").read_bytes() for p in left]
    assert not c.running() and not c.healthy()


def test_daemonset_hpa_pdb_cronjob(kube_cluster, ns):
    kc = kube_cluster
    objs = [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
         "spec": {"selector": {"matchLabels": {"app": "agent"}},
                  "template": {"metadata": {"labels": {"app": "agent"}},
                               "spec": {"containers": [{"name": "a", "image": "registry.invalid/a:1"}]}}}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                  "minReplicas": 1, "maxReplicas": 3,
                  "metrics": [{"type": "Resource", "resource": {
                      "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "agent"},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "agent"}}}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cleanup"},
         "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
             "restartPolicy": "OnFailure",
             "containers": [{"name": "c", "image": "registry.invalid/c:1"}]}}}}}},
    ]
    kc.kubectl("apply", "--server-side", "-n", ns, "-f", "-",
               input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    kc.kubectl("rollout", "status", "-n", ns, "daemonset/agent", "--timeout=60s")
    nodes = len(get_json(kc, "nodes")["items"])
    assert get_json(kc, "-n", ns, "daemonset/agent")["status"]["numberReady"] == nodes
    assert get_json(kc, "-n", ns, "hpa/web")["apiVersion"] == "autoscaling/v2"
    deadline = time.time() + 30
    while time.time() < deadline:
        pdb = get_json(kc, "-n", ns, "pdb/agent")
        if pdb.get("status", {}).get("currentHealthy") == nodes:
            break
        time.sleep(0.5)
    assert pdb["status"]["currentHealthy"] == nodes
    assert get_json(kc, "-n", ns, "cronjob/cleanup")["spec"]["schedule"] == "0 3 * * *"


def test_rolling_update_and_namespace_deletion(kube_cluster):
    kc = kube_cluster
    name = f"t-{uuid.uuid4().hex[:8]}"
    kc.kubectl("create", "namespace", name)
    try:
        kc.kubectl("apply", "--server-side", "-n", name, "-f", "-", input=deployment("web", replicas=3))
        kc.kubectl("rollout", "status", "-n", name, "deployment/web", "--timeout=60s")
        kc.kubectl("set", "image", "-n", name, "deployment/web", "web=registry.invalid/web:2.0")
        kc.kubectl("rollout", "status", "-n", name, "deployment/web", "--timeout=60s")
        deadline = time.time() + 30
        while time.time() < deadline:
            images = [p["spec"]["containers"][0]["image"]
                      for p in get_json(kc, "-n", name, "pods", "-l", "app=web")["items"]]
            if images == ["registry.invalid/web:2.0"] * 3:
                break
            time.sleep(0.5)
        assert images == ["registry.invalid/web:2.0"] * 3
        assert get_json(kc, "-n", name, "deployment/web")["status"]["updatedReplicas"] == 3
    finally:
        r = kc.kubectl("delete", "namespace", name, "--timeout=60s", check=False)
    assert r.returncode == 0, r.stderr
    assert kc.kubectl("get", "namespace", name, check=False).returncode != 0


def test_gateway_api_crds_come_from_the_cache_without_go(tmp_path, monkeypatch):
    """A fetched copy in the cache is used as is: no `go` (nor network) needed on later runs."""
    target = tmp_path / "gateway-api" / GATEWAY_API_VERSION / "standard"
    target.mkdir(parents=True)
    (target / "gateway.networking.k8s.io_httproutes.yaml").write_text("kind: CustomResourceDefinition\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gateway_api_crds(tmp_path) == target.resolve()
    # An empty cache and no go: a clear error, not a half-made directory.
    with pytest.raises(Exception, match="`go` not found"):
        gateway_api_crds(tmp_path / "other")
    assert not (tmp_path / "other" / "gateway-api" / GATEWAY_API_VERSION).exists()


def test_gateway_api_installed_and_served(kube_cluster, gateway_api):
    """The HTTPRoute kind is served by the API server once the fixture ran (idempotent: a second install too)."""
    assert "httproutes.gateway.networking.k8s.io" in gateway_api
    out = kube_cluster.kubectl("api-resources", "--api-group=gateway.networking.k8s.io", "-o", "name").stdout
    assert "httproutes.gateway.networking.k8s.io" in out.split()
    cluster = kube_cluster.cluster or LocalCluster(Path(kube_cluster.kubeconfig).parent, verbose=False)
    assert sorted(cluster.install_gateway_api()) == sorted(gateway_api)
