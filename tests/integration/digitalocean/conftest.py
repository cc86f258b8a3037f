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


def start_standin(fixtures, token, context):
    """Start a stand-in whose connections send without Nagle's delay.

    The handler writes the headers and the body of an answer separately; with Nagle's algorithm the
    body then waits for the client's delayed ACK of the headers (~40 ms an answer). TCP_NODELAY
    (socketserver's disable_nagle_algorithm) changes only that timing, not a byte of the answers.
    """
    server = StandinServer(fixtures, token, context)
    handler = server.httpd.RequestHandlerClass
    server.httpd.RequestHandlerClass = type('NoDelay' + handler.__name__, (handler,), {'disable_nagle_algorithm': True})
    return server.start()


class StandinHandle(object):
    """What the tests get: base_url, token, ca_file, fixtures, and fault/request helpers."""

    def __init__(self, server, token, ca_file, context=None):
        self.server = server
        self.base_url = server.base_url
        self.token = token
        self.ca_file = ca_file
        self.context = context

    def spawn(self, *faults, **config):
        """Another stand-in on its own port: same fixtures, token and CA, its own faults and request log.

        Batched tests give each case its own stand-in, so that one playbook run can hold cases with
        different faults and each case's requests are counted apart. Stop it with stop().
        config: max_per_page, fixtures (other fixtures than this stand-in's, e.g. a changed copy).
        """
        server = start_standin(config.get('fixtures') or self.fixtures, self.token, self.context)
        handle = StandinHandle(server, self.token, self.ca_file, self.context)
        handle.set_faults(*faults)
        if config.get('max_per_page'):
            handle.set_max_per_page(config['max_per_page'])
        return handle

    def stop(self):
        self.server.stop()

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
    server = start_standin(generate(extra_clusters=3), token, context)
    try:
        yield StandinHandle(server, token, ca_file, context)
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


def do_play(api, tasks, defaults=None):
    """One play (YAML text) whose module_defaults point the DigitalOcean group at the stand-in `api`."""
    options = dict(api_base_url=api.base_url, ca_path=api.ca_file, max_wait=10, timeout=5)
    options.update(defaults or {})
    lines = ''.join('        %s: %s\n' % (k, v) for k, v in options.items())
    return ('- hosts: localhost\n'
            '  gather_facts: false\n'
            '  module_defaults:\n'
            '    group/fediops.mastodon.digitalocean:\n' + lines +
            '  tasks:\n' + textwrap.indent(textwrap.dedent(tasks), '    '))


def run_do_playbook(run_playbook, token, playbook, token_in_env=True, **kwargs):
    """Run a playbook of the DigitalOcean modules; the token reaches the modules through DIGITALOCEAN_ACCESS_TOKEN
    unless token_in_env=False."""
    env = dict(kwargs.pop('env', None) or {})
    for name in ('DIGITALOCEAN_ACCESS_TOKEN', 'DIGITALOCEAN_TOKEN', 'DO_API_TOKEN'):
        if name in os.environ:  # never pick up a real token from the developer's shell
            env.setdefault(name, '')
    if token_in_env:
        env['DIGITALOCEAN_ACCESS_TOKEN'] = token
    return run_playbook(playbook, env=env, **kwargs)


@pytest.fixture
def do_playbook(run_playbook, do_api):
    """Run tasks (YAML text) in a play whose module_defaults point the DigitalOcean group at the stand-in.

    The token reaches the modules through DIGITALOCEAN_ACCESS_TOKEN unless token_in_env=False.
    """

    def _run(tasks, token_in_env=True, defaults=None, **kwargs):
        return run_do_playbook(run_playbook, do_api.token, do_play(do_api, tasks, defaults), token_in_env, **kwargs)

    return _run


@pytest.fixture(scope='module')
def do_playbook_module(run_playbook_module):
    """For module-scoped fixtures: run tasks (YAML text) in a play whose module_defaults point the DigitalOcean
    group at the stand-in `api` (e.g. one of do_standin_session.spawn()); returns the PlaybookResult."""

    def _run(api, tasks, token_in_env=True, defaults=None, **kwargs):
        return run_do_playbook(run_playbook_module, api.token, do_play(api, tasks, defaults), token_in_env, **kwargs)

    return _run


class DoBatch(object):
    """Many cases in one ansible-playbook run. Each case is a host of the inventory (run locally, in
    parallel), with a stand-in of its own (spawn: its faults, its request log), files in a directory
    of its own (directory), and its own parameters, module_defaults and task keywords."""

    FORKS = 8

    def __init__(self, run_playbook, standin, tmp_path_factory):
        self.run_playbook = run_playbook
        self.standin = standin
        self.token = standin.token
        self.tmp_path_factory = tmp_path_factory
        self.spawned = []

    def spawn(self, *faults, **config):
        handle = self.standin.spawn(*faults, **config)
        self.spawned.append(handle)
        return handle

    def directory(self, name):
        return self.tmp_path_factory.mktemp(name)

    @staticmethod
    def case(api, params=None, defaults=None, **keywords):
        """One case: the module parameters, the module_defaults (pointing at the stand-in `api`, plus
        `defaults`), and task keywords (diff, check_mode, environment) as values."""
        options = dict(api_base_url=api.base_url, ca_path=api.ca_file, max_wait=10, timeout=5)
        options.update(defaults or {})
        return dict(keywords, params=dict(params or {}), defaults=options)

    @staticmethod
    def task(name, module, cases, keywords=None):
        """A task (YAML text) of `module` whose parameters come from each host's case (omitted where a
        case has none); `keywords` maps task keywords taken from the case to their default (Jinja text),
        e.g. {'diff': 'false', 'environment': '{}'}."""
        params = sorted({key for case in cases.values() for key in case['params']})
        lines = ''.join('    %s: "{{ case.params.%s | default(omit) }}"\n' % (key, key) for key in params)
        extra = ''.join('  %s: "{{ case.%s | default(%s) }}"\n' % (key, key, default)
                        for key, default in sorted((keywords or {}).items()))
        return '- name: %s\n  fediops.mastodon.%s:\n%s  register: out\n  ignore_errors: true\n%s' % (name, module, lines, extra)

    def run(self, tasks, cases, token_in_env=True, **kwargs):
        """Run the tasks (YAML text, see task()) on every case (a dict name -> case()) in ONE
        ansible-playbook; returns the PlaybookResult (results by host: .result(task, host=name))."""
        keys = sorted({key for case in cases.values() for key in case['defaults']})
        defaults = ''.join('        %s: "{{ case.defaults.%s | default(omit) }}"\n' % (key, key) for key in keys)
        playbook = ('- hosts: all\n'
                    '  gather_facts: false\n'
                    '  module_defaults:\n'
                    '    group/fediops.mastodon.digitalocean:\n' + defaults +
                    '  tasks:\n' + textwrap.indent(textwrap.dedent(tasks), '    '))
        kwargs.setdefault('forks', self.FORKS)
        return run_do_playbook(self.run_playbook, self.token, playbook, token_in_env, cases=cases, **kwargs)

    def close(self):
        for handle in self.spawned:
            handle.stop()


@pytest.fixture(scope='module')
def do_batch(run_playbook_module, do_standin_session, tmp_path_factory):
    """A DoBatch for a module-scoped fixture that runs the module's cases once and caches the results."""
    batch = DoBatch(run_playbook_module, do_standin_session, tmp_path_factory)
    yield batch
    batch.close()


def pytest_terminal_summary(terminalreporter):
    count = getattr(terminalreporter.config, 'do_contract_count', 0)
    if count:
        terminalreporter.write_line('DigitalOcean contract: %d stand-in responses validated against the OpenAPI excerpt' % count)
        by_endpoint = getattr(terminalreporter.config, 'do_contract_by_endpoint', {})
        terminalreporter.write_line('  by operation: ' + ', '.join('%s %d' % item for item in sorted(by_endpoint.items())))
