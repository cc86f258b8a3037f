# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the DigitalOcean tests: the API stand-in on a free loopback port behind a trustme CA."""
from __future__ import annotations

import os
import secrets
import ssl
import sys
import textwrap

import pytest
import trustme

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'support')
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

from do_standin import StandinServer, ca_pem, generate  # noqa: E402  pylint: disable=wrong-import-position


class StandinHandle(object):
    """What the tests get: base_url, token, ca_file, fixtures, and fault/request helpers."""

    def __init__(self, server, token, ca_file):
        self.server = server
        self.base_url = server.base_url
        self.token = token
        self.ca_file = ca_file

    @property
    def fixtures(self):
        return self.server.fixtures

    def cluster(self, name):
        return next(c for c in self.fixtures['clusters'] if c['name'] == name)

    def ca_pem(self, name):
        return ca_pem(self.fixtures, self.cluster(name)['id'])

    def set_faults(self, *rules):
        self.server.set_faults(list(rules))

    def set_max_per_page(self, value):
        self.server.set_max_per_page(value)

    @property
    def requests(self):
        return self.server.requests

    def count(self, path_regex=None):
        import re  # pylint: disable=import-outside-toplevel
        return len([r for r in self.requests if path_regex is None or re.search(path_regex, r['path'])])

    def reset(self):
        self.server.reset()


@pytest.fixture(scope='session')
def do_standin_session(tmp_path_factory):
    directory = tmp_path_factory.mktemp('do-standin')
    authority = trustme.CA()
    server_cert = authority.issue_cert('127.0.0.1', 'localhost')
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(context)
    ca_file = str(directory / 'api-ca.pem')
    authority.cert_pem.write_to_path(ca_file)
    token = 'standin-' + secrets.token_hex(16)
    server = StandinServer(generate(extra_clusters=3), token, context).start()
    try:
        yield StandinHandle(server, token, ca_file)
    finally:
        server.stop()


@pytest.fixture
def do_api(do_standin_session):
    """The stand-in, with no faults and an empty request log."""
    do_standin_session.reset()
    yield do_standin_session
    do_standin_session.reset()


@pytest.fixture
def dest_dir(tmp_path):
    """An empty directory for files the modules write (run_playbook keeps its playbooks in tmp_path)."""
    path = tmp_path / 'dest'
    path.mkdir()
    return path


@pytest.fixture
def do_playbook(run_playbook, do_api):
    """Run tasks (YAML text) in a play whose module_defaults point the DigitalOcean group at the stand-in.

    The token reaches the modules through DIGITALOCEAN_ACCESS_TOKEN unless token_in_env=False.
    """

    def _run(tasks, token_in_env=True, defaults=None, **kwargs):
        options = dict(api_base_url=do_api.base_url, ca_path=do_api.ca_file, max_wait=10, timeout=5)
        options.update(defaults or {})
        lines = ''.join('        %s: %s\n' % (k, v) for k, v in options.items())
        playbook = ('- hosts: localhost\n'
                    '  gather_facts: false\n'
                    '  module_defaults:\n'
                    '    group/fediops.mastodon.digitalocean:\n' + lines +
                    '  tasks:\n' + textwrap.indent(textwrap.dedent(tasks), '    '))
        env = dict(kwargs.pop('env', None) or {})
        for name in ('DIGITALOCEAN_ACCESS_TOKEN', 'DIGITALOCEAN_TOKEN', 'DO_API_TOKEN'):
            if name in os.environ:  # never pick up a real token from the developer's shell
                env.setdefault(name, '')
        if token_in_env:
            env['DIGITALOCEAN_ACCESS_TOKEN'] = do_api.token
        return run_playbook(playbook, env=env, **kwargs)

    return _run


def pytest_terminal_summary(terminalreporter):
    count = getattr(terminalreporter.config, 'do_contract_count', 0)
    if count:
        terminalreporter.write_line('DigitalOcean contract: %d stand-in responses validated against the OpenAPI excerpt' % count)
