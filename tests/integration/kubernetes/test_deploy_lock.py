"""The deploy lock (plugins/module_utils/_deploy/lock.py) against the real API server of the local cluster: a
coordination.k8s.io/v1 Lease <name>-deploy, conditional writes (resourceVersion), expiry by renewTime."""
import threading
import time

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import lock
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient


@pytest.fixture
def client(kube_cluster):
    return KubeClient(kubeconfig=str(kube_cluster.kubeconfig))


def test_two_acquirers_at_once_one_wins(client, namespace):
    """Two deploys start together, ten times over (a new instance each round): exactly one holds the Lease, the
    other is refused with a message naming the winner and since when; nothing else is written."""
    for round_ in range(10):
        name = 'race%d' % round_
        barrier = threading.Barrier(2)
        outcome = {}

        def attempt(holder):
            barrier.wait()
            try:
                outcome[holder] = lock.acquire(client, namespace, name, holder, 60)
            except lock.LockHeld as exc:
                outcome[holder] = exc

        threads = [threading.Thread(target=attempt, args=(h,)) for h in ('deploy A', 'deploy B')]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [h for h, r in outcome.items() if isinstance(r, dict)]
        lost = [r for r in outcome.values() if isinstance(r, lock.LockHeld)]
        assert len(won) == 1 and len(lost) == 1, outcome
        assert lost[0].holder == won[0]
        assert 'held by %s since ' % won[0] in lost[0].msg and 'Lease %s-deploy' % name in lost[0].msg
        live = client.request('GET', client.path('coordination.k8s.io/v1', 'Lease', namespace, name + '-deploy'))[1]
        assert live['spec']['holderIdentity'] == won[0] and live['spec']['leaseTransitions'] == 0


def test_a_dead_holder_is_taken_over_after_its_duration(client, namespace):
    """A holder that died (never renews) loses the Lease leaseDurationSeconds after its last renewal; the next
    deploy takes it over then, not before; the dead holder's renewal is then refused (LockLost)."""
    duration = 4
    first = lock.acquire(client, namespace, 'inst', 'dead deploy', duration)
    started = time.monotonic()
    with pytest.raises(lock.LockHeld) as refused:
        lock.acquire(client, namespace, 'inst', 'next deploy', duration)
    assert refused.value.holder == 'dead deploy'
    while True:
        try:
            lease = lock.acquire(client, namespace, 'inst', 'next deploy', duration)
            break
        except lock.LockHeld:
            assert time.monotonic() - started < duration + 3, 'not taken over within its duration'
            time.sleep(0.2)
    waited = time.monotonic() - started
    print('taken over after %.1f s (duration %d s)' % (waited, duration))
    assert waited >= duration - 1.5  # not before it expired (the second's precision of the clocks)
    assert lease['spec']['holderIdentity'] == 'next deploy'
    assert lease['spec']['leaseTransitions'] == first['spec']['leaseTransitions'] + 1
    with pytest.raises(lock.LockLost, match='held by next deploy'):
        lock.renew(client, namespace, 'inst', 'dead deploy', duration)
    assert lock.release(client, namespace, 'inst', 'dead deploy') is False


def test_the_renewer_keeps_it_and_release_frees_it(client, namespace):
    """A renewed Lease outlives its duration; released, the next deploy takes it at once."""
    duration = 3
    with lock.held(client, namespace, 'inst', 'long deploy', duration):
        time.sleep(duration * 2)
        with pytest.raises(lock.LockHeld, match='held by long deploy'):
            lock.acquire(client, namespace, 'inst', 'other deploy', duration)
        lock.check_free(client, namespace, 'inst', 'long deploy')  # our own lock is no obstacle
        with pytest.raises(lock.LockHeld):
            lock.check_free(client, namespace, 'inst', 'other deploy')
    assert lock.acquire(client, namespace, 'inst', 'other deploy', duration)['spec']['holderIdentity'] == 'other deploy'


def test_no_namespace(client):
    with pytest.raises(lock.NoNamespace, match='namespace absent-ns-x does not exist'):
        lock.acquire(client, 'absent-ns-x', 'inst', 'a deploy', 30)
