"""Helpers for the k8s_apply tests: run the module through ansible-playbook against the real local cluster."""
import datetime
import json
import os
import time
import uuid

import pytest

PLAYBOOK = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: apply
      fediops.mastodon.k8s_apply:
        kubeconfig: "{{ p.kubeconfig }}"
        definitions: "{{ p.definitions }}"
        namespace: "{{ p.namespace | default(omit) }}"
        apply_set: "{{ p.apply_set | default(omit) }}"
        state: "{{ p.state | default(omit) }}"
        field_manager: "{{ p.field_manager | default(omit) }}"
        force_conflicts: "{{ p.force_conflicts | default(omit) }}"
        wait: "{{ p.wait | default(omit) }}"
        wait_timeout: "{{ p.wait_timeout | default(omit) }}"
        replace_failed_jobs: "{{ p.replace_failed_jobs | default(omit) }}"
      register: out
      ignore_errors: true
'''


@pytest.fixture
def k8s_apply(run_playbook, kube_cluster):
    """Run k8s_apply once; returns the task result (dict, with 'failed' on failure)."""

    def _apply(check=False, diff=False, kubeconfig=None, **params):
        params['kubeconfig'] = kubeconfig or kube_cluster.kubeconfig
        res = run_playbook(PLAYBOOK, extra_vars={'p': params}, check=check, diff=diff)
        assert res.data is not None, res.stdout + res.stderr
        return res.result('apply')

    return _apply


@pytest.fixture
def namespace(kube_cluster):
    """A fresh namespace, deleted afterwards."""
    name = 'k8sapply-' + uuid.uuid4().hex[:8]
    kube_cluster.kubectl('create', 'namespace', name)
    yield name
    kube_cluster.kubectl('delete', 'namespace', name, '--wait=false', check=False)


class AuditLog:
    """Requests the API server logged (audit policy level Metadata), by user agent and time window."""

    def __init__(self, path):
        self.path = path

    def mark(self):
        time.sleep(0.01)
        return datetime.datetime.now(datetime.timezone.utc)

    def events(self, since, until=None, user_agent='fediops.mastodon', stage='ResponseComplete'):
        """Events of one stage (a watch logs ResponseStarted when it starts, ResponseComplete when it ends)."""
        out = []
        time.sleep(0.5)  # let the log backend flush
        with open(self.path, encoding='utf-8') as handle:
            for line in handle:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get('stage') != stage or not ev.get('userAgent', '').startswith(user_agent):
                    continue
                ts = datetime.datetime.fromisoformat(ev['requestReceivedTimestamp'].replace('Z', '+00:00'))
                if ts < since or (until and ts > until):
                    continue
                out.append(ev)
        return out


@pytest.fixture
def audit_log(kube_cluster):
    path = None
    if kube_cluster.state_dir is not None:
        candidate = os.path.join(str(kube_cluster.state_dir), 'logs', 'audit.log')
        if os.path.exists(candidate):
            path = candidate
    if path is None:
        pytest.skip('the cluster has no audit log')
    return AuditLog(path)
