# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Streaming's DB_SSLMODE as RENDERED (_manifests.build), used by the real node `pg` client with streaming's own
mapping (check_node.js = streaming/database.js:85-97), against a PostgreSQL server without TLS.

config_db_sslmode: disable means the database speaks no TLS, and Rails (libpq, sslmode=disable) connects
without asking for it. The server here answers the protocol's SSLRequest with 'N' (no TLS), as PostgreSQL with
ssl=off does, and otherwise accepts the startup and answers one query: streaming must connect too.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._manifests import build
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.manifests_model import make_model

HERE = os.path.dirname(os.path.abspath(__file__))
SSL_REQUEST = 80877103  # the protocol's SSLRequest code


def _node_path():
    cache = os.environ.get('FEDIOPS_CACHE', os.path.expanduser('~/.cache/fediops-mastodon'))
    for path in [p for p in os.environ.get('NODE_PATH', '').split(os.pathsep) if p] + [
            os.path.join(cache, 'node', 'node_modules')]:
        if all(os.path.isdir(os.path.join(path, name)) for name in ('dotenv', 'pg', 'ioredis')):
            return path
    return None


def _message(kind, payload=b''):
    return kind + struct.pack('!I', len(payload) + 4) + payload


class PlainPostgres(object):
    """A PostgreSQL server without TLS, at the protocol level: 'N' to an SSLRequest; trust authentication; every
    query answered with one text row 'mastodon'. Records whether a client asked for TLS."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.ssl_requests = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn, size):
        data = b''
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def session(self, conn):
        try:
            with conn:
                while True:  # the startup phase: SSLRequest, then StartupMessage
                    length = struct.unpack('!I', self._read(conn, 4))[0]
                    body = self._read(conn, length - 4)
                    if struct.unpack('!I', body[:4])[0] == SSL_REQUEST:
                        self.ssl_requests += 1
                        conn.sendall(b'N')
                        continue
                    break
                conn.sendall(_message(b'R', struct.pack('!I', 0)) + _message(b'Z', b'I'))
                while True:
                    kind = self._read(conn, 1)
                    length = struct.unpack('!I', self._read(conn, 4))[0]
                    self._read(conn, length - 4)
                    if kind == b'X':
                        return
                    field = b'db\x00' + struct.pack('!IhIhih', 0, 0, 25, -1, -1, 0)
                    value = b'mastodon'
                    conn.sendall(_message(b'T', struct.pack('!h', 1) + field)
                                 + _message(b'D', struct.pack('!hI', 1, len(value)) + value)
                                 + _message(b'C', b'SELECT 1\x00') + _message(b'Z', b'I'))
        except (EOFError, OSError):
            return

    def close(self):
        self.sock.close()


@pytest.fixture
def plain_postgres():
    server = PlainPostgres()
    yield server
    server.close()


def rendered_streaming_sslmode(rails_sslmode):
    model = make_model()
    model['env']['rails']['config']['DB_SSLMODE'] = rails_sslmode
    container = build(model)['streaming'][0]['spec']['template']['spec']['containers'][0]
    return dict((e['name'], e['value']) for e in container['env'])['DB_SSLMODE']


def test_streaming_connects_where_rails_does_without_tls(plain_postgres, tmp_path):
    node_path = _node_path()
    assert node_path, 'npm packages dotenv, pg and ioredis not found: run scripts/setup.sh (NODE_PATH)'
    sslmode = rendered_streaming_sslmode('disable')
    env_file = tmp_path / 'env'
    env_file.write_text('DB_HOST=127.0.0.1\nDB_PORT=%d\nDB_USER=mastodon\nDB_PASS=pw\nDB_NAME=mastodon\nDB_SSLMODE=%s\n'
                        % (plain_postgres.port, sslmode))
    done = subprocess.run(['node', os.path.join(HERE, 'check_node.js'), str(env_file), 'pg'], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'NODE_PATH': node_path})
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])['results']['pg']
    assert result == {'ok': True, 'detail': 'mastodon'}, (sslmode, result)
    assert plain_postgres.ssl_requests == 0, sslmode
