# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""check_updates over real HTTP(S) (ansible's open_url) against the local update-check stand-in: the request
Mastodon's client makes (app/services/software_update_check_service.rb:21-25), and a warning, never a failure,
for every way the service can misbehave. Never the real api.joinmastodon.org."""
from __future__ import annotations

import os
import ssl
import sys
import time

import pytest
import trustme

from ansible_collections.fediops.mastodon.plugins.module_utils._update_check import check_updates

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'support')
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

from update_check_standin import UpdateCheckStandin  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope='module')
def authority():
    return trustme.CA()


@pytest.fixture(scope='module')
def ca_file(authority, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('update-check') / 'ca.pem')
    authority.cert_pem.write_to_path(path)
    return path


@pytest.fixture(scope='module')
def https_standin(authority):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert('127.0.0.1', 'localhost').configure_cert(context)
    standin = UpdateCheckStandin(ssl_context=context).start()
    yield standin
    standin.stop()


@pytest.fixture(scope='module')
def http_standin():
    standin = UpdateCheckStandin().start()
    yield standin
    standin.stop()


@pytest.fixture
def standin(http_standin):
    http_standin.reset()
    yield http_standin
    http_standin.reset()


def test_pending_updates_over_https(https_standin, ca_file):
    https_standin.reset()
    result = check_updates(https_standin.url, 'v4.7.5', timeout=5, ca_path=ca_file)
    assert result['warning'] is None, result
    assert [u['version'] for u in result['available']] == ['4.7.6'] and result['urgent'] is True
    assert result['available'][0] == {'version': '4.7.6', 'urgent': True, 'type': 'patch',
                                      'release_notes': 'https://github.com/mastodon/mastodon/releases/tag/v4.7.6'}
    assert https_standin.requests == [{'path': '/update-check', 'query': {'version': '4.7.5'}, 'accept': 'application/json'}]


def test_an_untrusted_certificate_is_a_warning(https_standin):
    https_standin.reset()
    result = check_updates(https_standin.url, 'v4.7.5', timeout=5)
    assert result['available'] == [] and 'CERTIFICATE_VERIFY_FAILED' in result['warning'], result


def test_several_pending_and_none(standin):
    result = check_updates(standin.url, 'v4.6.9', timeout=5)
    assert [u['version'] for u in result['available']] == ['4.7.6', '4.7.5', '4.7.0'] and result['warning'] is None
    result = check_updates(standin.url, 'v4.7.6', timeout=5)
    assert result == {'available': [], 'urgent': False, 'warning': None}


@pytest.mark.parametrize('mode,status,warning', [
    ('status', 500, 'failed: HTTP 500'),
    ('status', 503, 'failed: HTTP 503'),
    ('status', 301, 'failed: HTTP 301'),
    ('malformed', None, 'the answer is not JSON'),
    ('html', None, 'the answer is not JSON'),
    ('shape', None, 'the answer has no updatesAvailable list'),
])
def test_misbehaving_service_warns(standin, mode, status, warning):
    standin.mode = mode
    if status:
        standin.status = status
    result = check_updates(standin.url, 'v4.7.5', timeout=5)
    assert result['available'] == [] and result['urgent'] is False
    assert warning in result['warning'], result['warning']


def test_timeout_is_a_warning_within_the_timeout(standin):
    standin.mode, standin.delay = 'slow', 3.0
    started = time.monotonic()
    result = check_updates(standin.url, 'v4.7.5', timeout=1)
    assert time.monotonic() - started < 2.5
    assert result['available'] == [] and 'timed out' in result['warning'], result['warning']


def test_wrong_path_and_closed_port_warn(standin):
    assert 'HTTP 404' in check_updates(standin.url.replace('/update-check', '/nope'), 'v4.7.5', timeout=5)['warning']
    closed = standin.url.rsplit(':', 1)[0] + ':9/update-check'
    assert 'failed' in check_updates(closed, 'v4.7.5', timeout=2)['warning']
