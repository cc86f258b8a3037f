"""fediops.mastodon.k8s_secret_info against the real local cluster (tests/cluster): no mocks."""
import base64
import json
import secrets

PLAYBOOK = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: read
      fediops.mastodon.k8s_secret_info:
        kubeconfig: "{{ p.kubeconfig }}"
        name: "{{ p.name }}"
        namespace: "{{ p.namespace }}"
      register: out
      no_log: "{{ p.no_log | default(false) }}"

    - name: use
      ansible.builtin.set_fact:
        got_value: "{{ out.data.SECRET_KEY_BASE | default('') | length }}"
'''

GROUP_PLAYBOOK = '''
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/fediops.mastodon.kubernetes:
      kubeconfig: "{{ p.kubeconfig }}"
  tasks:
    - name: read
      fediops.mastodon.k8s_secret_info:
        name: "{{ p.name }}"
        namespace: "{{ p.namespace }}"
      register: out
      no_log: true
'''


def _create_secret(kube_cluster, namespace, name, data):
    obj = {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': name, 'namespace': namespace},
           'data': dict((k, base64.b64encode(v if isinstance(v, bytes) else v.encode('utf-8')).decode('ascii'))
                        for k, v in data.items())}
    kube_cluster.kubectl('apply', '-f', '-', input=json.dumps(obj))


def test_missing_secret_and_namespace(run_playbook, kube_cluster, namespace):
    for ns in (namespace, 'no-such-namespace-x1'):
        params = {'kubeconfig': kube_cluster.kubeconfig, 'name': 'absent', 'namespace': ns}
        res = run_playbook(PLAYBOOK, extra_vars={'p': params})
        out = res.result('read')
        assert not out.get('failed'), out
        assert out['exists'] is False and out['data'] == {} and out['changed'] is False


def test_existing_secret_decoded_in_check_mode_too(run_playbook, kube_cluster, namespace):
    value = secrets.token_hex(32)
    data = {'SECRET_KEY_BASE': value, 'UNICODE': 'grüße $(x) "q"\n', 'BLOB': b'\xff\xfe\x00'}
    _create_secret(kube_cluster, namespace, 'kept', data)
    params = {'kubeconfig': kube_cluster.kubeconfig, 'name': 'kept', 'namespace': namespace}
    for check in (False, True):
        res = run_playbook(PLAYBOOK, check=check, extra_vars={'p': params})
        out = res.result('read')
        assert not out.get('failed'), out
        assert out['exists'] is True and out['changed'] is False
        assert out['data'] == {'SECRET_KEY_BASE': value, 'UNICODE': 'grüße $(x) "q"\n'}
        assert out['binary_data'] == {'BLOB': base64.b64encode(b'\xff\xfe\x00').decode('ascii')}
        assert out['type'] == 'Opaque'
        assert res.result('use')['ansible_facts']['got_value'] == 64


def test_value_never_printed_with_no_log(run_playbook, kube_cluster, namespace):
    value = 'topsecret-' + secrets.token_hex(16)
    _create_secret(kube_cluster, namespace, 'kept', {'SECRET_KEY_BASE': value})
    res = run_playbook(PLAYBOOK, verbosity=3, callback='default',
                       extra_vars={'p': {'kubeconfig': kube_cluster.kubeconfig, 'name': 'kept', 'namespace': namespace,
                                         'no_log': True}})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert 'censored' in out
    assert value not in out
    assert 'got_value' in out  # the registered result carried the real value to the next task
    # The action group of module_defaults applies to it.
    res = run_playbook(GROUP_PLAYBOOK, verbosity=3, callback='default',
                       extra_vars={'p': {'kubeconfig': kube_cluster.kubeconfig, 'name': 'kept', 'namespace': namespace}})
    out = res.stdout + res.stderr
    assert res.returncode == 0 and value not in out, out[-3000:]


def test_bad_kubeconfig_fails_with_a_message(run_playbook, kube_cluster, namespace, tmp_path):
    params = {'kubeconfig': str(tmp_path / 'missing'), 'name': 'kept', 'namespace': namespace}
    res = run_playbook(PLAYBOOK, extra_vars={'p': params})
    out = res.result('read')
    assert out.get('failed') and 'kubeconfig' in out['msg'], out
