# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A local HTTPS stand-in for DigitalOcean's databases API (the endpoints this collection calls).

Endpoints (operationIds of resources/databases/ in the excerpt): databases_list_clusters, databases_get_cluster,
databases_get_ca, databases_list_firewall_rules, databases_list_backups, databases_list_users, databases_get_user, databases_add_user
(201), databases_list_connectionPools, databases_get_connectionPool, databases_add_connectionPool (201). The
writes change this stand-in's own copy of the fixtures; refusals (duplicate, unknown database or user, bad
mode/size/name) answer 422 {id, message, request_id} (the excerpt's `default` error response). The request log
(GET /_standin/requests, StandinServer.requests) records method, path, query and the JSON body of each request.

Answers as the OpenAPI excerpt in tests/data/digitalocean-openapi describes (checked by
tests/integration/digitalocean/test_contract.py), with DigitalOcean's headers (ratelimit-*,
x-request-id) and error bodies {id, message, request_id}. Faults are injected with rules, either
in-process (StandinServer.set_faults) or over HTTP (POST /_standin/faults, no token needed):

  {"kind": "status", "status": 500, "path": "/ca$", "count": 2}
  {"kind": "rate_limit", "retry_after": 1}          # or "reset_in": 2 (ratelimit-reset epoch), or both
  {"kind": "slow", "delay": 3}                       # answers normally after a delay
  {"kind": "truncated_json"} / {"kind": "malformed_json"} / {"kind": "disconnect"} / {"kind": "html", "status": 502}
  {"kind": "ca", "variant": "non_ca"|"expired"|"expiring"|"not_yet_valid"|"bad_base64"|"not_pem"|"garbage_pem"}

"path" is a regular expression searched in the request path (default: every API path); "count" is
how many requests the rule applies to (default: unlimited). The first matching rule wins.
"""
from __future__ import annotations

import copy
import json
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

RATE_LIMIT = 5000
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 200
ROUTES = (
    ('list', re.compile(r'^/v2/databases/?$')),
    ('get', re.compile(r'^/v2/databases/(?P<uuid>[^/]+)/?$')),
    ('ca', re.compile(r'^/v2/databases/(?P<uuid>[^/]+)/ca/?$')),
    ('pools', re.compile(r'^/v2/databases/(?P<uuid>[^/]+)/pools/?$')),
    ('pool', re.compile(r'^/v2/databases/(?P<uuid>[^/]+)/pools/(?P<name>[^/]+)/?$')),
    ('users', re.compile(r'^/v2/databases/(?P<uuid>[^/]+)/users/?$')),
    ('user', re.compile(r'^/v2/databases/(?P<uuid>[^/]+)/users/(?P<name>[^/]+)/?$')),
    ('firewall', re.compile(r'^/v2/databases/(?P<uuid>[^/]+)/firewall/?$')),
    ('backups', re.compile(r'^/v2/databases/(?P<uuid>[^/]+)/backups/?$')),
)
# Methods per route, and the status of a success: databases_add_user and databases_add_connectionPool answer 201.
METHODS = {'list': ('GET',), 'get': ('GET',), 'ca': ('GET',), 'pool': ('GET',), 'user': ('GET',), 'firewall': ('GET',),
           'backups': ('GET',),
           'pools': ('GET', 'POST'), 'users': ('GET', 'POST')}
POOL_MODES = ('session', 'transaction', 'statement')
# "User management is not supported for Caching or Valkey clusters" (databases_list_users.yml); the excerpt does
# not say how the API refuses, so the stand-in answers with its documented 404.
USER_ENGINES = ('pg', 'advanced_pg', 'mysql', 'advanced_mysql', 'mongodb', 'kafka', 'opensearch')
# "List all of the available backups of a PostgreSQL or MySQL database cluster" (databases_list_backups.yml)
BACKUP_ENGINES = ('pg', 'advanced_pg', 'mysql', 'advanced_mysql')
ERRORS = {
    401: ('unauthorized', 'Unable to authenticate you.'),
    403: ('forbidden', 'You do not have access for the attempted action.'),
    404: ('not_found', 'The resource you were accessing could not be found.'),
    405: ('method_not_allowed', 'Method not allowed.'),
    422: ('unprocessable_entity', 'The request could not be processed.'),
    429: ('too_many_requests', 'API Rate limit exceeded.'),
    500: ('server_error', 'Unexpected server-side error.'),
    502: ('bad_gateway', 'Bad gateway.'),
    503: ('service_unavailable', 'The service is temporarily unavailable.'),
}


class StandinState(object):
    """Fixtures, fault rules and the request log, shared by the handler threads."""

    def __init__(self, fixtures, token):
        # A copy: POSTs add users and pools, and every stand-in (spawn) must start from the same fixtures.
        self.fixtures = copy.deepcopy(fixtures)
        self.token = token
        self.lock = threading.Lock()
        self.faults = []
        self.requests = []
        self.max_per_page = MAX_PER_PAGE
        self.remaining = RATE_LIMIT

    def set_faults(self, rules):
        with self.lock:
            self.faults = [dict(rule) for rule in rules]

    def take_fault(self, path):
        with self.lock:
            for rule in self.faults:
                if rule.get('count', -1) == 0:
                    continue
                if re.search(rule.get('path', ''), path):
                    if rule.get('count', -1) > 0:
                        rule['count'] -= 1
                    return dict(rule)
        return None

    def log(self, entry):
        with self.lock:
            self.requests.append(entry)
            self.remaining = max(0, self.remaining - 1)
            return self.remaining


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    # The headers and the body go out in two writes: with Nagle's algorithm on, the body waits for the client's
    # delayed ACK (40 ms on Linux), a stall of the stand-in, not DigitalOcean's, on every request.
    disable_nagle_algorithm = True
    server_version = 'do-standin'

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass

    @property
    def state(self):
        return self.server.state

    # -- plumbing --------------------------------------------------------------------------------
    def _headers_common(self, request_id, remaining):
        self.send_header('ratelimit-limit', str(RATE_LIMIT))
        self.send_header('ratelimit-remaining', str(remaining))
        self.send_header('ratelimit-reset', str(int(time.time()) + 60))
        self.send_header('x-request-id', request_id)

    def _send(self, status, body, request_id, remaining, extra_headers=None, content_type='application/json; charset=utf-8'):
        self.send_response(status)
        self.send_header('content-type', content_type)
        self._headers_common(request_id, remaining)
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status, data, request_id, remaining, extra_headers=None):
        self._send(status, json.dumps(data).encode('utf-8'), request_id, remaining, extra_headers)

    def _error(self, status, request_id, remaining, error_id=None, message=None, extra_headers=None):
        default_id, default_message = ERRORS.get(status, ('example_error', 'some error message'))
        body = dict(id=error_id or default_id, message=message or default_message, request_id=request_id)
        self._json(status, body, request_id, remaining, extra_headers)

    # -- admin -----------------------------------------------------------------------------------
    def _admin(self, path):
        length = int(self.headers.get('content-length') or 0)
        payload = self.rfile.read(length) if length else b''
        if path == '/_standin/faults' and self.command in ('POST', 'PUT'):
            self.state.set_faults(json.loads(payload.decode('utf-8') or '[]'))
        elif path == '/_standin/faults' and self.command == 'DELETE':
            self.state.set_faults([])
        elif path == '/_standin/requests' and self.command == 'DELETE':
            with self.state.lock:
                del self.state.requests[:]
        elif path == '/_standin/config' and self.command == 'POST':
            config = json.loads(payload.decode('utf-8') or '{}')
            if 'max_per_page' in config:
                self.state.max_per_page = int(config['max_per_page'])
        elif path not in ('/_standin/requests', '/_standin/fixtures'):
            return self._error(404, str(uuid.uuid4()), self.state.remaining)
        if path == '/_standin/fixtures':
            return self._json(200, self.state.fixtures, str(uuid.uuid4()), self.state.remaining)
        with self.state.lock:
            data = dict(requests=list(self.state.requests), faults=list(self.state.faults))
        return self._json(200, data, str(uuid.uuid4()), self.state.remaining)

    # -- API -------------------------------------------------------------------------------------
    def do_GET(self):  # pylint: disable=invalid-name
        self._dispatch()

    def do_POST(self):  # pylint: disable=invalid-name
        self._dispatch()

    def do_PUT(self):  # pylint: disable=invalid-name
        self._dispatch()

    def do_DELETE(self):  # pylint: disable=invalid-name
        self._dispatch()

    def _dispatch(self):
        parts = urlsplit(self.path)
        if parts.path.startswith('/_standin/'):
            return self._admin(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request_id = str(uuid.uuid4())
        auth = self.headers.get('authorization') or ''
        authorized = auth == 'Bearer %s' % self.state.token
        length = int(self.headers.get('content-length') or 0)
        raw = self.rfile.read(length) if length else b''
        try:
            body = json.loads(raw.decode('utf-8')) if raw else None
        except ValueError:
            body = raw.decode('utf-8', 'replace')
        remaining = self.state.log(dict(method=self.command, path=parts.path, query=query, authorized=authorized,
                                        body=body, time=time.time()))
        if not authorized:
            return self._error(401, request_id, remaining)
        fault = self.state.take_fault(parts.path)
        if fault:
            kind = fault.get('kind')
            if kind == 'status':
                return self._error(int(fault.get('status', 500)), request_id, remaining, fault.get('id'), fault.get('message'))
            if kind == 'rate_limit':
                headers = {}
                if fault.get('retry_after') is not None:
                    headers['retry-after'] = str(fault['retry_after'])
                self.send_response(429)
                body = json.dumps(dict(id='too_many_requests', message='API Rate limit exceeded.',
                                       request_id=request_id)).encode('utf-8')
                self.send_header('content-type', 'application/json; charset=utf-8')
                self.send_header('ratelimit-limit', str(RATE_LIMIT))
                self.send_header('ratelimit-remaining', '0')
                reset = int(time.time()) + int(fault.get('reset_in', 60))
                self.send_header('ratelimit-reset', str(reset))
                self.send_header('x-request-id', request_id)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header('content-length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None
            if kind == 'disconnect':
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return None
            if kind == 'html':
                body = b'<html><body><h1>502 Bad Gateway</h1></body></html>'
                return self._send(int(fault.get('status', 502)), body, request_id, remaining, content_type='text/html')
            if kind == 'slow':
                time.sleep(float(fault.get('delay', 2)))
        status, data = self._route(parts.path, query, fault, body)
        if status >= 400:
            data = data or {}
            return self._error(status, request_id, remaining, data.get('id'), data.get('message'))
        body = json.dumps(data).encode('utf-8')
        if fault and fault.get('kind') == 'truncated_json':
            body = body[:max(1, len(body) // 2)]
        elif fault and fault.get('kind') == 'malformed_json':
            body = b"{'databases': [" + body[1:40] + b', }'
        try:
            self._send(status, body, request_id, remaining)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return None

    def _route(self, path, query, fault, body):
        fixtures = self.state.fixtures
        for name, pattern in ROUTES:
            match = pattern.match(path)
            if not match:
                continue
            if self.command not in METHODS[name]:
                return 405, None
            if name == 'list':
                return 200, self._list(query)
            cluster = next((c for c in fixtures['clusters'] if c['id'] == match.group('uuid')), None)
            if cluster is None:
                return 404, None
            if name == 'get':
                return 200, dict(database=cluster)
            if name == 'firewall':
                return 200, dict(rules=fixtures.get('firewall', {}).get(cluster['id'], []))
            if name == 'backups':
                return self._backups(cluster)
            if name in ('pools', 'pool'):
                return self._pools(cluster, match.groupdict().get('name'), body)
            if name in ('users', 'user'):
                return self._users(cluster, match.groupdict().get('name'), body)
            certificate = fixtures['cas'][cluster['id']]
            if fault and fault.get('kind') == 'ca':
                certificate = fixtures['variants'][fault.get('variant', 'non_ca')]
            return 200, dict(ca=dict(certificate=certificate))
        return 404, None

    def _backups(self, cluster):
        """databases_list_backups: {backups, scheduled_backup_time?, backup_progress?} (responses/database_backups.yml).

        "Backups are not supported for Caching or Valkey clusters" (databases_list_backups.yml); the excerpt does not
        say how the API refuses, so the stand-in answers with the operation's documented 404, as for users.
        """
        if cluster['engine'] not in BACKUP_ENGINES:
            return 404, dict(message='Backups are not supported for Caching or Valkey clusters.')
        answer = (self.state.fixtures.get('backups') or {}).get(cluster['id']) or dict(backups=[])
        return 200, copy.deepcopy(answer)

    @staticmethod
    def _unprocessable(message):
        return 422, dict(id='unprocessable_entity', message=message)

    def _users(self, cluster, username, body):
        """databases_list_users / databases_get_user / databases_add_user (201, the user with its new password)."""
        if cluster['engine'] not in USER_ENGINES:
            return 404, dict(message='User management is not supported for %s clusters.' % cluster['engine'])
        with self.state.lock:
            users = cluster.setdefault('users', [])
            if self.command == 'GET' and username is None:
                return 200, dict(users=copy.deepcopy(users))
            if self.command == 'GET':
                user = next((u for u in users if u['name'] == username), None)
                return (200, dict(user=copy.deepcopy(user))) if user else (404, None)
            if not isinstance(body, dict) or not isinstance(body.get('name'), str) or not body['name'].strip():
                return self._unprocessable('name is required')
            if any(u['name'] == body['name'] for u in users):
                return self._unprocessable('a user named %s already exists' % body['name'])
            user = dict(name=body['name'], role='normal', password='standin-' + secrets.token_hex(8))
            if cluster['engine'] in ('pg', 'advanced_pg'):
                user['settings'] = dict(pg_allow_replication=bool((body.get('settings') or {}).get('pg_allow_replication')))
            users.append(user)
            return 201, dict(user=copy.deepcopy(user))

    def _pools(self, cluster, pool_name, body):
        """databases_list_connectionPools / databases_get_connectionPool / databases_add_connectionPool (201)."""
        with self.state.lock:
            pools = self.state.fixtures['pools'].setdefault(cluster['id'], [])
            if self.command == 'GET' and pool_name is None:
                return 200, dict(pools=copy.deepcopy(pools))
            if self.command == 'GET':
                pool = next((p for p in pools if p['name'] == pool_name), None)
                return (200, dict(pool=copy.deepcopy(pool))) if pool else (404, None)
            problem = self._pool_problem(cluster, pools, body)
            if problem:
                return self._unprocessable(problem)
            user = body.get('user') or 'doadmin'
            password = next(u['password'] for u in cluster['users'] if u['name'] == user)
            pool = dict(name=body['name'], mode=body['mode'], size=body['size'], db=body['db'])
            if body.get('user'):
                pool['user'] = body['user']
            for key in ('connection', 'private_connection'):
                host = cluster[key]['host']
                pool[key] = dict(uri='postgresql://%s:%s@%s:25061/%s?sslmode=require' % (user, password, host, body['name']),
                                 database=body['name'], host=host, port=25061, user=user, password=password, ssl=True)
            pools.append(pool)
            return 201, dict(pool=copy.deepcopy(pool))

    @staticmethod
    def _pool_problem(cluster, pools, body):
        """What DigitalOcean would refuse in a new pool (models/connection_pool.yml: required name, mode, size, db)."""
        if cluster['engine'] not in ('pg', 'advanced_pg'):
            return 'connection pools are only supported for PostgreSQL clusters'
        if not isinstance(body, dict):
            return 'the request body must be a JSON object'
        missing = [key for key in ('name', 'mode', 'size', 'db') if body.get(key) in (None, '')]
        if missing:
            return '%s is required' % ', '.join(missing)
        if not isinstance(body['name'], str) or not 3 <= len(body['name']) <= 60:
            return 'name must be between 3 and 60 characters'
        if body['mode'] not in POOL_MODES:
            return 'mode must be one of session, transaction, statement'
        if not isinstance(body['size'], int) or isinstance(body['size'], bool) or body['size'] < 1:
            return 'size must be a positive integer'
        if body['db'] not in (cluster.get('db_names') or []):
            return 'database %s does not exist' % body['db']
        if body.get('user') and not any(u['name'] == body['user'] for u in cluster.get('users') or []):
            return 'user %s does not exist' % body['user']
        if any(p['name'] == body['name'] for p in pools):
            return 'a connection pool named %s already exists' % body['name']
        return None

    def _list(self, query):
        clusters = self.state.fixtures['clusters']
        if query.get('tag_name'):
            clusters = [c for c in clusters if query['tag_name'] in (c.get('tags') or [])]
        try:
            per_page = int(query.get('per_page') or DEFAULT_PER_PAGE)
            page = int(query.get('page') or 1)
        except ValueError:
            per_page, page = DEFAULT_PER_PAGE, 1
        per_page = max(1, min(per_page, self.state.max_per_page))
        page = max(1, page)
        last = max(1, (len(clusters) + per_page - 1) // per_page)
        items = clusters[(page - 1) * per_page:page * per_page]
        data = dict(databases=items, meta=dict(total=len(clusters)))
        pages = {}
        base = self.server.base_url + '/v2/databases?'
        keep = {k: v for k, v in query.items() if k in ('tag_name', 'per_page')}
        if page < last:
            pages['next'] = base + urlencode(dict(keep, page=page + 1))
            pages['last'] = base + urlencode(dict(keep, page=last))
        if page > 1:
            pages['first'] = base + urlencode(dict(keep, page=1))
            pages['prev'] = base + urlencode(dict(keep, page=page - 1))
        data['links'] = dict(pages=pages)
        return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state = None
    base_url = None
    ssl_context = None

    def get_request(self):
        sock, addr = self.socket.accept()
        # Handshake in the handler thread (finish_request), not the accept loop, so a stuck client cannot block it.
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return
        super(_Server, self).finish_request(request, client_address)

    def handle_error(self, request, client_address):
        pass


class StandinServer(object):
    """Runs the stand-in in a background thread: StandinServer(fixtures, token, ssl_context).start()."""

    def __init__(self, fixtures, token, ssl_context, host='127.0.0.1', port=0):
        self.state = StandinState(fixtures, token)
        self.httpd = _Server((host, port), Handler)
        self.httpd.ssl_context = ssl_context
        self.httpd.state = self.state
        self.port = self.httpd.server_address[1]
        self.base_url = 'https://%s:%d' % (host, self.port)
        self.httpd.base_url = self.base_url
        self.thread = None

    @property
    def fixtures(self):
        return self.state.fixtures

    @property
    def requests(self):
        with self.state.lock:
            return list(self.state.requests)

    def set_faults(self, rules):
        self.state.set_faults(rules)

    def set_max_per_page(self, value):
        self.state.max_per_page = value

    def reset(self):
        self.state.set_faults([])
        self.state.max_per_page = MAX_PER_PAGE
        with self.state.lock:
            del self.state.requests[:]

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.1), daemon=True)
        self.thread.start()
        return self

    def serve_forever(self):
        self.httpd.serve_forever(poll_interval=0.2)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def server_context(certfile, keyfile):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context
