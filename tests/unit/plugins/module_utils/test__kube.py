# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import (
    KubeClient, KubeError, kube_argument_spec, load_yaml_documents, status_message)

KUBECONFIG = '''
apiVersion: v1
kind: Config
current-context: one
clusters:
  - name: c1
    cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
  - name: c2
    cluster: {server: "https://127.0.0.2:6443", insecure-skip-tls-verify: true}
users:
  - name: u
    user: {token: abc}
contexts:
  - name: one
    context: {cluster: c1, user: u}
  - name: two
    context: {cluster: c2, user: u}
'''


def test_argument_spec():
    spec = kube_argument_spec()
    assert set(spec) == {'kubeconfig', 'context', 'host', 'api_key', 'ca_cert', 'validate_certs'}
    assert spec['api_key']['no_log'] is True
    assert spec['kubeconfig']['fallback'][1] == ['K8S_AUTH_KUBECONFIG']


def test_client_from_kubeconfig_and_context(tmp_path):
    path = tmp_path / 'kubeconfig'
    path.write_text(KUBECONFIG)
    assert KubeClient(kubeconfig=str(path)).host == 'https://127.0.0.1:6443'
    client = KubeClient(kubeconfig=str(path), context='two')
    assert client.host == 'https://127.0.0.2:6443'
    assert 'abc' in str(client.configuration.api_key)
    client = KubeClient(kubeconfig=str(path), host='https://192.0.2.1', api_key='t', validate_certs=False)
    assert client.host == 'https://192.0.2.1' and client.configuration.verify_ssl is False
    with pytest.raises(KubeError, match='cannot load kubeconfig'):
        KubeClient(kubeconfig=str(path), context='three')


def test_unreachable_names_the_host(tmp_path):
    client = KubeClient(host='https://127.0.0.1:1', api_key='t', validate_certs=False)
    with pytest.raises(KubeError, match=r'cannot reach the Kubernetes API server https://127\.0\.0\.1:1') as err:
        client.request('GET', '/api/v1')
    assert err.value.status == 0


def test_helpers():
    assert status_message({'message': 'nope'}) == 'nope'
    assert status_message(' text ') == 'text'
    assert len(load_yaml_documents('a: 1\n---\n---\nb: 2\n')) == 2
