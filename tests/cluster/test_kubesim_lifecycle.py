"""kubesim's kubelet behaviour around readiness and termination (kubesim/lifecycle.go), against the real API
server and the real EndpointSlice controller of kube-controller-manager.

What a kubelet does (and kubesim now models): a deleted pod stays Terminating while its preStop hook runs, then gets
SIGTERM, and is killed when terminationGracePeriodSeconds (counted from the delete) is over; its Ready condition
stays as it was during the hook (the server still answers its probes); the EndpointSlice controller then reports
its endpoint ready=false, serving=<Ready>, terminating=true.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

pytest_plugins = ["pytest_plugin"]


@pytest.fixture
def ns(kube_cluster):
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl("create", "namespace", name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(kc, ns, name, *, prestop=None, grace=30, annotations=None, image="registry.invalid/web:1.0", replicas=1):
    container = {"name": "web", "image": image, "ports": [{"name": "http", "containerPort": 3000}]}
    if prestop is not None:
        container["lifecycle"] = {"preStop": prestop}
    objs = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                               "spec": {"terminationGracePeriodSeconds": grace, "containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
         "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]}},
    ]
    kc.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


def pods(kc, ns, name):
    return json.loads(kc.kubectl("get", "pods", "-n", ns, "-l", f"app={name}", "-o", "json").stdout)["items"]


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def endpoints(kc, ns, name):
    items = json.loads(kc.kubectl("get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={name}",
                                  "-o", "json").stdout)["items"]
    return [e for s in items for e in s.get("endpoints") or []]


def gone(kc, ns, name, pod):
    return pod["metadata"]["name"] not in [p["metadata"]["name"] for p in pods(kc, ns, name)]


def wait_for(what, cond, timeout=30.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def one_ready_pod(kc, ns, name):
    return wait_for("a ready pod", lambda: [p for p in pods(kc, ns, name) if ready(p)]
                    and endpoints(kc, ns, name))


def test_readiness_delay_annotation_holds_the_pod_unready(kube_cluster, ns):
    apply(kube_cluster, ns, "slow", annotations={"sim.fediops.test/delay-seconds": "2"})
    started = time.monotonic()
    wait_for("the pod", lambda: pods(kube_cluster, ns, "slow"))
    assert not any(ready(p) for p in pods(kube_cluster, ns, "slow"))
    one_ready_pod(kube_cluster, ns, "slow")
    assert time.monotonic() - started >= 1.5


def test_prestop_sleep_keeps_the_pod_serving_while_terminating(kube_cluster, ns):
    apply(kube_cluster, ns, "web", prestop={"sleep": {"seconds": 3}}, grace=20,
          annotations={"sim.fediops.test/stop-seconds": "1"})
    one_ready_pod(kube_cluster, ns, "web")
    (pod,) = pods(kube_cluster, ns, "web")
    deleted = time.monotonic()
    kube_cluster.kubectl("delete", "pod", "-n", ns, pod["metadata"]["name"], "--wait=false")
    # During the preStop sleep: Terminating, still Ready; the endpoint serving and terminating, not ready.
    name = pod["metadata"]["name"]
    ep = wait_for("a terminating endpoint", lambda: [
        e for e in endpoints(kube_cluster, ns, "web")
        if e["targetRef"]["name"] == name and e["conditions"].get("terminating")])
    assert ep[0]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert time.monotonic() - deleted < 3
    # After the hook (SIGTERM sent) the server stops answering: not serving; then the pod is removed.
    wait_for("not serving", lambda: [
        e for e in endpoints(kube_cluster, ns, "web")
        if e["targetRef"]["name"] == name and e["conditions"] == {"ready": False, "serving": False, "terminating": True}])
    wait_for("the pod removed", lambda: gone(kube_cluster, ns, "web", pod))
    took = time.monotonic() - deleted
    # preStop 3 s + stop 1 s, less up to 1 s as deletionTimestamp has whole seconds.
    assert 3.0 <= took < 10, took


def test_the_grace_period_cuts_a_long_prestop(kube_cluster, ns):
    # An exec hook's "sleep N" counts as well; the grace period (2 s) ends it first.
    apply(kube_cluster, ns, "slowstop", prestop={"exec": {"command": ["/bin/sh", "-c", "kill -TSTP 1; sleep 30"]}},
          grace=2)
    one_ready_pod(kube_cluster, ns, "slowstop")
    (pod,) = pods(kube_cluster, ns, "slowstop")
    deleted = time.monotonic()
    kube_cluster.kubectl("delete", "pod", "-n", ns, pod["metadata"]["name"], "--wait=false")
    wait_for("the pod removed", lambda: gone(kube_cluster, ns, "slowstop", pod))
    took = time.monotonic() - deleted
    # deletionTimestamp has whole seconds (the API server truncates it): the end may come up to 1 s early.
    assert 1.0 <= took < 8, took


def test_a_pod_without_prestop_goes_at_once(kube_cluster, ns):
    apply(kube_cluster, ns, "plain")
    one_ready_pod(kube_cluster, ns, "plain")
    (pod,) = pods(kube_cluster, ns, "plain")
    deleted = time.monotonic()
    kube_cluster.kubectl("delete", "pod", "-n", ns, pod["metadata"]["name"], "--wait=false")
    wait_for("the pod removed", lambda: gone(kube_cluster, ns, "plain", pod))
    assert time.monotonic() - deleted < 3


def test_an_image_named_never_ready_never_becomes_ready(kube_cluster, ns):
    apply(kube_cluster, ns, "broken", image="registry.invalid/web-never-ready:2.0")
    wait_for("the pod running", lambda: [p for p in pods(kube_cluster, ns, "broken")
                                         if p["status"].get("phase") == "Running"])
    time.sleep(1)
    assert not any(ready(p) for p in pods(kube_cluster, ns, "broken"))
    assert all(not e["conditions"].get("ready") for e in endpoints(kube_cluster, ns, "broken"))
