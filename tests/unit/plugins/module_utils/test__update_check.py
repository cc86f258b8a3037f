# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mastodon's update check, on canned answers (no network): the request Mastodon's client makes
(app/services/software_update_check_service.rb:21-25), the answer it reads (:38-52) and Gem::Version order."""
from __future__ import annotations

import io
import json
import socket
from urllib.error import HTTPError, URLError

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._update_check import (
    DEFAULT_URL, check_updates, compare_versions, parse_answer, release_of)

URL = 'https://updates.example.test/update-check'
ANSWER = {'updatesAvailable': [
    {'version': '4.7.5', 'urgent': False, 'type': 'patch', 'releaseNotes': 'https://example.test/4.7.5'},
    {'version': '4.7.6', 'urgent': True, 'type': 'patch', 'releaseNotes': 'https://example.test/4.7.6'},
    {'version': '4.7.0', 'urgent': False, 'type': 'minor', 'releaseNotes': 'https://example.test/4.7.0'},
]}


class Response(object):
    def __init__(self, status, body):
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode('utf-8')

    def getcode(self):
        return self.status

    def read(self):
        return self.body


class Opener(object):
    def __init__(self, result):
        self.result = result
        self.calls = []

    def __call__(self, url, **kwargs):
        self.calls.append((url, kwargs))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.mark.parametrize('newer,older,expected', [
    ('4.7.6', '4.7.5', 1), ('v4.7.6', '4.7.6', 0), ('4.7.10', '4.7.9', 1), ('4.7', '4.7.0', 0),
    ('4.7.0-beta.1', '4.7.0', -1), ('4.7.0.beta1', '4.7.0.beta2', -1), ('4.7.0.1', '4.7.0', 1),
    ('4.7.0-rc.1', '4.6.9', 1), ('5.0.0', '4.99.99', 1)])
def test_gem_version_order(newer, older, expected):
    assert compare_versions(newer, older) == expected
    assert compare_versions(older, newer) == -expected


def test_release_sent_as_version():
    assert release_of('v4.7.6') == '4.7.6' and release_of('4.7.0-beta.1') == '4.7.0'
    assert release_of('latest') is None and release_of('sha256:abc') is None and release_of(None) is None


def test_default_url_is_mastodons():
    assert DEFAULT_URL == 'https://api.joinmastodon.org/update-check'  # config/mastodon.yml's UPDATE_CHECK_URL


def test_the_request_and_the_pending_updates_newest_first():
    opener = Opener(Response(200, ANSWER))
    result = check_updates(URL, 'v4.7.5', timeout=7, opener=opener)
    assert result == {'available': [
        {'version': '4.7.6', 'urgent': True, 'type': 'patch', 'release_notes': 'https://example.test/4.7.6'}],
        'urgent': True, 'warning': None}
    url, kwargs = opener.calls[0]
    assert url == URL + '?version=4.7.5'
    assert kwargs['headers'] == {'Accept': 'application/json'} and kwargs['method'] == 'GET' and kwargs['timeout'] == 7


def test_older_running_version_sees_every_newer_release():
    result = check_updates(URL, 'v4.6.9', opener=Opener(Response(200, ANSWER)))
    assert [u['version'] for u in result['available']] == ['4.7.6', '4.7.5', '4.7.0'] and result['urgent'] is True


def test_no_urgent_update():
    result = check_updates(URL, 'v4.7.5', opener=Opener(Response(200, {'updatesAvailable': ANSWER['updatesAvailable'][:1]})))
    assert result == {'available': [], 'urgent': False, 'warning': None}


def test_query_of_the_url_is_kept():
    opener = Opener(Response(200, {'updatesAvailable': []}))
    check_updates(URL + '?channel=stable', '4.7.5', opener=opener)
    assert opener.calls[0][0] == URL + '?channel=stable&version=4.7.5'


@pytest.mark.parametrize('url', ['', None])
def test_empty_url_disables_the_check(url):
    opener = Opener(AssertionError('no request expected'))
    assert check_updates(url, 'v4.7.5', opener=opener) == {'available': [], 'urgent': False, 'warning': None}
    assert opener.calls == []


@pytest.mark.parametrize('result,warning', [
    (Response(204, b''), 'failed: HTTP 204'),
    (Response(200, b'{"updatesAvailable": [{"vers'), 'failed: the answer is not JSON'),
    (Response(200, b'<html>maintenance</html>'), 'failed: the answer is not JSON'),
    (Response(200, {'updates': []}), 'the answer has no updatesAvailable list'),
    (Response(200, [1, 2]), 'the answer has no updatesAvailable list'),
    (HTTPError(URL, 500, 'Internal Server Error', {}, io.BytesIO(b'')), 'failed: HTTP 500'),
    (HTTPError(URL, 404, 'Not Found', {}, io.BytesIO(b'')), 'failed: HTTP 404'),
    (URLError(ConnectionRefusedError(111, 'Connection refused')), 'failed: URLError'),
    (socket.timeout('timed out'), 'timed out'),
])
def test_unusable_answers_warn_and_never_fail(result, warning):
    out = check_updates(URL, 'v4.7.5', opener=Opener(result))
    assert out['available'] == [] and out['urgent'] is False
    assert out['warning'].startswith('update check %s' % URL) and warning in out['warning'], out['warning']


def test_entries_without_a_version_are_left_out_with_a_warning():
    entries = [{'urgent': True}, 'x', {'version': '4.8.0', 'urgent': 'yes', 'type': 'huge'}]
    updates, warning = parse_answer({'updatesAvailable': entries}, '4.7.6')
    assert updates == [{'version': '4.8.0', 'urgent': False, 'type': None, 'release_notes': None}]
    assert warning == '2 entries without a version were left out'


def test_unknown_running_version_or_bad_url_skip_the_check():
    opener = Opener(AssertionError('no request expected'))
    assert 'not a release' in check_updates(URL, 'latest', opener=opener)['warning']
    assert 'must be http(s)' in check_updates('ftp://x/update-check', 'v4.7.5', opener=opener)['warning']
    assert opener.calls == []
