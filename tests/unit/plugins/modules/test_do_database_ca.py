# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of do_database_ca: write, idempotence, check mode and failures, with a fake API client."""
from __future__ import annotations

import base64
import datetime
import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.fediops.mastodon.plugins.modules import do_database_ca

CLUSTER = '9cc10173-e9ea-4176-9dbc-a4cee4c4ff30'


def ca_pem(ca=True):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'unit CA')])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=400))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class FakeClient(object):
    def __init__(self, pem):
        self.pem = pem
        self.calls = []

    def database_ca(self, cluster_id):
        self.calls.append(cluster_id)
        return base64.b64encode(self.pem.encode()).decode()


def run(monkeypatch, capsys, client, check=False, **args):
    monkeypatch.setattr(do_database_ca, 'client_from_module', lambda module: client)
    args.setdefault('api_token', 'unit-token-never-printed')
    args['_ansible_check_mode'] = check
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            do_database_ca.main()
    out = capsys.readouterr().out
    assert 'unit-token-never-printed' not in out
    return json.loads(out)


def test_writes_then_unchanged(monkeypatch, capsys, tmp_path):
    pem = ca_pem()
    dest = tmp_path / 'ca.pem'
    client = FakeClient(pem)
    result = run(monkeypatch, capsys, client, cluster_id=CLUSTER, dest=str(dest))
    assert result['changed'] is True and dest.read_text() == pem
    assert oct(os.stat(dest).st_mode & 0o777) == oct(0o644)
    assert result['cluster'] == {'id': CLUSTER, 'name': None, 'engine': None}
    result = run(monkeypatch, capsys, client, cluster_id=CLUSTER, dest=str(dest))
    assert result['changed'] is False


def test_check_mode_writes_nothing(monkeypatch, capsys, tmp_path):
    dest = tmp_path / 'ca.pem'
    result = run(monkeypatch, capsys, FakeClient(ca_pem()), check=True, cluster_id=CLUSTER, dest=str(dest))
    assert result['changed'] is True and not dest.exists()


def test_non_ca_fails_and_keeps_dest(monkeypatch, capsys, tmp_path):
    dest = tmp_path / 'ca.pem'
    dest.write_text('keep me\n')
    result = run(monkeypatch, capsys, FakeClient(ca_pem(ca=False)), cluster_id=CLUSTER, dest=str(dest))
    assert result['failed'] is True and 'not a CA certificate' in result['msg']
    assert dest.read_text() == 'keep me\n'


def test_bad_cluster_id_fails_before_any_request(monkeypatch, capsys):
    client = FakeClient(ca_pem())
    result = run(monkeypatch, capsys, client, cluster_id='nope')
    assert result['failed'] is True and 'cluster_id must be' in result['msg'] and client.calls == []
