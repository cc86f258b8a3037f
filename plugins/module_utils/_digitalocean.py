# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""DigitalOcean API client shared by the fediops.mastodon DigitalOcean modules.

This is a PRIVATE API of the fediops.mastodon collection: it may change or go away without notice
in any release. Do not use it from other collections.

One argument spec (``digitalocean_argument_spec()``) and one client class (``DigitalOceanClient``)
built on ``requests``: bearer-token auth, pagination through ``links.pages.next``, bounded waits on
HTTP 429 (``retry-after`` or ``ratelimit-reset``), bounded exponential backoff with jitter on 5xx,
timeouts and connection errors, and errors that carry DigitalOcean's ``id``, ``message`` and
``request_id`` but never the token.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import time
import traceback
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ansible.module_utils.basic import env_fallback, missing_required_lib

REQUESTS_IMPORT_ERROR = None
try:
    import requests
    HAS_REQUESTS = True
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    requests = None
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

DEFAULT_BASE_URL = 'https://api.digitalocean.com'
TOKEN_ENV_VARS = ('DIGITALOCEAN_ACCESS_TOKEN', 'DIGITALOCEAN_TOKEN', 'DO_API_TOKEN')
PER_PAGE = 200
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
MASK = '********'
UUID_RE = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')
POOL_ENGINES = ('pg', 'advanced_pg')


def digitalocean_argument_spec():
    """The options every DigitalOcean module takes (documented by fediops.mastodon.digitalocean)."""
    return dict(
        api_token=dict(type='str', no_log=True, aliases=['oauth_token'],
                       fallback=(env_fallback, list(TOKEN_ENV_VARS))),
        api_base_url=dict(type='str', default=DEFAULT_BASE_URL),
        timeout=dict(type='int', default=30),
        validate_certs=dict(type='bool', default=True),
        ca_path=dict(type='path'),
        max_retries=dict(type='int', default=5),
        max_wait=dict(type='int', default=60),
    )


class DigitalOceanError(Exception):
    """A failed API call; the text never contains the API token."""

    def __init__(self, message, status=None, error_id=None, request_id=None, url=None):
        super(DigitalOceanError, self).__init__(message)
        self.message = message
        self.status = status
        self.error_id = error_id
        self.request_id = request_id
        self.url = url

    def fail_kwargs(self):
        """Keyword arguments for AnsibleModule.fail_json()."""
        result = dict(msg=self.message)
        for key in ('status', 'error_id', 'request_id', 'url'):
            value = getattr(self, key)
            if value is not None:
                result[key] = value
        return result


def scrub(text, secrets):
    """Remove every secret (the token, and its Authorization header form) from a text."""
    text = '' if text is None else str(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return re.sub(r'(?i)(bearer\s+)\S+', r'\1' + MASK, text)


def parse_wait(headers, now):
    """Seconds to wait before retrying a 429, from retry-after or ratelimit-reset; None if neither is usable."""
    retry_after = headers.get('retry-after')
    if retry_after:
        retry_after = retry_after.strip()
        if re.match(r'^\d+(\.\d+)?$', retry_after):
            return max(0.0, float(retry_after))
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - now)
    reset = headers.get('ratelimit-reset')
    if reset and re.match(r'^\d+$', reset.strip()):
        return max(0.0, float(reset.strip()) - now)
    return None


def backoff_delay(attempt, rand):
    """Exponential backoff with jitter: base * 2**attempt, capped, scaled by [0.5, 1)."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** attempt))
    return delay * (0.5 + rand() / 2.0)


class DigitalOceanClient(object):
    """A small DigitalOcean API v2 client on requests."""

    def __init__(self, token, base_url=DEFAULT_BASE_URL, timeout=30, validate_certs=True, ca_path=None,
                 max_retries=5, max_wait=60, session=None, sleep=time.sleep, clock=time.time,
                 rand=random.random, user_agent='fediops.mastodon'):
        if not token:
            raise DigitalOceanError('api_token is missing: set the api_token option or one of the environment variables '
                                    + ', '.join(TOKEN_ENV_VARS))
        parts = urlsplit(base_url or '')
        if parts.scheme not in ('http', 'https') or not parts.netloc:
            raise DigitalOceanError('api_base_url must be an http(s) URL such as %s, got %r' % (DEFAULT_BASE_URL, base_url))
        if timeout is None or timeout <= 0:
            raise DigitalOceanError('timeout must be a positive number of seconds, got %r' % (timeout,))
        if max_retries is None or max_retries < 0:
            raise DigitalOceanError('max_retries must be 0 or more, got %r' % (max_retries,))
        if max_wait is None or max_wait < 0:
            raise DigitalOceanError('max_wait must be 0 or more seconds, got %r' % (max_wait,))
        if ca_path and not os.path.isfile(ca_path):
            raise DigitalOceanError('ca_path %s is not a readable file' % ca_path)
        if session is None:
            if not HAS_REQUESTS:
                raise DigitalOceanError('the Python library requests is required')
            session = requests.Session()
        self._token = token
        self.base_url = base_url.rstrip('/')
        self._origin = (parts.scheme, parts.netloc.lower())
        self.timeout = timeout
        self.verify = ca_path if ca_path else bool(validate_certs)
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.session = session
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self.user_agent = user_agent
        self.request_count = 0
        self.waited = 0.0

    # -- helpers ---------------------------------------------------------------------------------
    def _scrub(self, text):
        return scrub(text, [self._token])

    def _headers(self):
        return {
            'Authorization': 'Bearer %s' % self._token,
            'Accept': 'application/json',
            'User-Agent': self.user_agent,
        }

    def _url(self, path, params=None):
        url = path if path.startswith(('http://', 'https://')) else self.base_url + '/' + path.lstrip('/')
        if params:
            parts = urlsplit(url)
            query = parse_qsl(parts.query, keep_blank_values=True)
            present = set(k for k, dummy in query)
            query += [(k, str(v)) for k, v in params.items() if v is not None and k not in present]
            url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ''))
        return url

    def _error_from_response(self, response, url, what):
        body = None
        try:
            body = response.json()
        except ValueError:
            body = None
        error_id = message = request_id = None
        if isinstance(body, dict):
            error_id = body.get('id')
            message = body.get('message')
            request_id = body.get('request_id')
        request_id = request_id or response.headers.get('x-request-id')
        if message is None:
            snippet = (response.text or '')[:200].strip()
            message = snippet or response.reason or 'no error body'
        text = 'DigitalOcean API %s failed: HTTP %s %s: %s' % (what, response.status_code, error_id or '-', message)
        if response.status_code == 401:
            text += ' (check api_token: it is missing, wrong or revoked)'
        elif response.status_code == 403:
            text += ' (the api_token lacks the scope this call needs, e.g. database:read)'
        if request_id:
            text += ' [request_id %s]' % request_id
        return DigitalOceanError(self._scrub(text), status=response.status_code, error_id=self._scrub(error_id) if error_id else None,
                                 request_id=request_id, url=self._scrub(url))

    def _budget_left(self, started):
        return self.max_wait - (self._clock() - started)

    # -- requests --------------------------------------------------------------------------------
    def get(self, path, params=None, what=None):
        """GET a path (or absolute URL on the API's origin) and return the decoded JSON object."""
        url = self._url(path, params)
        what = what or 'GET %s' % urlsplit(url).path
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise DigitalOceanError('refusing to send the API token to %s://%s (not api_base_url %s)'
                                    % (parts.scheme, parts.netloc, self.base_url))
        started = self._clock()
        attempt = 0
        while True:
            self.request_count += 1
            try:
                response = self.session.get(url, headers=self._headers(), timeout=self.timeout, verify=self.verify,
                                            allow_redirects=False)
            except Exception as exc:  # pylint: disable=broad-except
                if HAS_REQUESTS and isinstance(exc, requests.exceptions.SSLError):
                    raise DigitalOceanError(self._scrub('DigitalOcean API %s failed: TLS error talking to %s: %s '
                                                        '(set ca_path or validate_certs)' % (what, self.base_url, exc)), url=self._scrub(url))
                if not self._transient(exc):
                    raise DigitalOceanError(self._scrub('DigitalOcean API %s failed: %s: %s' % (what, type(exc).__name__, exc)),
                                            url=self._scrub(url))
                delay = backoff_delay(attempt, self._rand)
                if attempt >= self.max_retries or delay > self._budget_left(started):
                    raise DigitalOceanError(self._scrub('DigitalOcean API %s failed after %d attempt(s): %s: %s'
                                                        % (what, attempt + 1, type(exc).__name__, exc)), url=self._scrub(url))
                self._wait(delay)
                attempt += 1
                continue

            status = response.status_code
            if status == 429:
                wait = parse_wait(response.headers, self._clock())
                if wait is None:
                    wait = backoff_delay(attempt, self._rand)
                if attempt >= self.max_retries or wait > self._budget_left(started):
                    error = self._error_from_response(response, url, what)
                    error.message = self._scrub(
                        '%s; rate limited: the API asks to wait %.0f s, beyond the bound (max_wait %s s, max_retries %s, '
                        '%d attempt(s) made)' % (error.message, wait, self.max_wait, self.max_retries, attempt + 1))
                    error.args = (error.message,)
                    raise error
                self._wait(wait)
                attempt += 1
                continue
            if status >= 500:
                delay = backoff_delay(attempt, self._rand)
                if attempt >= self.max_retries or delay > self._budget_left(started):
                    error = self._error_from_response(response, url, what)
                    error.message = '%s (gave up after %d attempt(s))' % (error.message, attempt + 1)
                    error.args = (error.message,)
                    raise error
                self._wait(delay)
                attempt += 1
                continue
            if status >= 300:
                raise self._error_from_response(response, url, what)
            return self._decode(response, url, what)

    def _transient(self, exc):
        if not HAS_REQUESTS:
            return isinstance(exc, (IOError, OSError))
        return isinstance(exc, (requests.exceptions.Timeout, requests.exceptions.ConnectionError,
                                requests.exceptions.ChunkedEncodingError))

    def _wait(self, seconds):
        seconds = max(0.0, seconds)
        self.waited += seconds
        self._sleep(seconds)

    def _decode(self, response, url, what):
        raw = response.content or b''
        try:
            data = json.loads(raw.decode('utf-8'))
        except (ValueError, UnicodeDecodeError) as exc:
            length = response.headers.get('content-length')
            raise DigitalOceanError(self._scrub(
                'DigitalOcean API %s returned malformed or truncated JSON (%d bytes received%s, content-type %s): %s'
                % (what, len(raw), ', content-length %s' % length if length else '', response.headers.get('content-type'), exc)),
                status=response.status_code, request_id=response.headers.get('x-request-id'), url=self._scrub(url))
        if not isinstance(data, dict):
            raise DigitalOceanError('DigitalOcean API %s returned JSON that is not an object: %s' % (what, type(data).__name__),
                                    status=response.status_code, request_id=response.headers.get('x-request-id'),
                                    url=self._scrub(url))
        return data

    def get_paginated(self, path, key, params=None, what=None):
        """GET every page of a list endpoint and return the concatenated items under key."""
        query = dict(params or {})
        query.setdefault('per_page', PER_PAGE)
        url = self._url(path, query)
        items = []
        seen = set()
        while url:
            if url in seen:
                raise DigitalOceanError('DigitalOcean API pagination loops back to %s' % self._scrub(url))
            seen.add(url)
            data = self.get(url, what=what)
            page = data.get(key)
            if page is None:
                page = []
            if not isinstance(page, list):
                raise DigitalOceanError('DigitalOcean API %s: %r is not a list' % (what or path, key))
            items.extend(page)
            links = data.get('links') or {}
            pages = links.get('pages') or {} if isinstance(links, dict) else {}
            url = pages.get('next') if isinstance(pages, dict) else None
        return items

    # -- databases -------------------------------------------------------------------------------
    def database(self, cluster_id):
        return expect_object(self.get('/v2/databases/%s' % cluster_id, what='get database cluster %s' % cluster_id),
                             'database', 'get database cluster %s' % cluster_id)

    def databases(self, tag=None):
        return self.get_paginated('/v2/databases', 'databases', params={'tag_name': tag} if tag else None,
                                  what='list database clusters' + (' tagged %s' % tag if tag else ''))

    def database_ca(self, cluster_id):
        ca = expect_object(self.get('/v2/databases/%s/ca' % cluster_id, what='get CA of database cluster %s' % cluster_id),
                           'ca', 'get CA of database cluster %s' % cluster_id)
        cert = ca.get('certificate')
        if not isinstance(cert, str) or not cert:
            raise DigitalOceanError('DigitalOcean API get CA of database cluster %s: ca.certificate is missing or empty' % cluster_id)
        return cert

    def database_pools(self, cluster_id):
        data = self.get('/v2/databases/%s/pools' % cluster_id, what='list connection pools of %s' % cluster_id)
        pools = data.get('pools') or []
        if not isinstance(pools, list):
            raise DigitalOceanError('DigitalOcean API list connection pools of %s: "pools" is not a list' % cluster_id)
        return pools


def expect_object(data, key, what):
    value = data.get(key)
    if not isinstance(value, dict):
        raise DigitalOceanError('DigitalOcean API %s: the answer has no %r object' % (what, key))
    return value


def validate_cluster_id(cluster_id):
    """Raise a clear error for a cluster_id that is not a UUID (before any request is made)."""
    if not UUID_RE.match(cluster_id or ''):
        raise DigitalOceanError('cluster_id must be a database cluster UUID such as 9cc10173-e9ea-4176-9dbc-a4cee4c4ff30, got %r'
                                % (cluster_id,))


def find_cluster_by_name(client, name):
    """The one cluster with that name (one list request, all pages)."""
    if not name or not name.strip():
        raise DigitalOceanError('cluster_name must not be empty')
    clusters = client.databases()
    matches = [c for c in clusters if isinstance(c, dict) and c.get('name') == name]
    if not matches:
        names = sorted(str(c.get('name')) for c in clusters if isinstance(c, dict))
        raise DigitalOceanError('cluster_name: no database cluster named %r (the account has: %s)'
                                % (name, ', '.join(names) if names else 'none'))
    if len(matches) > 1:
        raise DigitalOceanError('cluster_name: %d database clusters are named %r; use cluster_id (one of %s)'
                                % (len(matches), name, ', '.join(str(c.get('id')) for c in matches)))
    return matches[0]


def strip_uri_password(uri):
    """A connection URI without its password."""
    if not uri:
        return uri
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit('@', 1)[1]
    userinfo = parts.netloc.rsplit('@', 1)[0].split(':', 1)[0]
    return urlunsplit((parts.scheme, '%s@%s' % (userinfo, netloc), parts.path, parts.query, parts.fragment))


CONNECTION_KEYS = ('connection', 'private_connection', 'standby_connection', 'standby_private_connection')


def connection_info(conn):
    """The non-secret part of a DigitalOcean connection object."""
    if not isinstance(conn, dict):
        return None
    return dict(host=conn.get('host'), port=conn.get('port'), user=conn.get('user'), database=conn.get('database'),
                ssl=conn.get('ssl'), uri=strip_uri_password(conn.get('uri')))


def collect_passwords(cluster, pools):
    """Every password of a cluster and its pools, as a nested dict."""
    out = {}
    for key in CONNECTION_KEYS:
        conn = cluster.get(key)
        if isinstance(conn, dict) and conn.get('password'):
            out[key] = conn['password']
    users = {}
    for user in cluster.get('users') or []:
        if isinstance(user, dict) and user.get('password'):
            users[user.get('name')] = user['password']
    if users:
        out['users'] = users
    pool_pw = {}
    for pool in pools or []:
        for key in CONNECTION_KEYS:
            conn = pool.get(key)
            if isinstance(conn, dict) and conn.get('password'):
                pool_pw.setdefault(pool.get('name'), {})[key] = conn['password']
    if pool_pw:
        out['pools'] = pool_pw
    return out


def all_passwords(passwords):
    """The flat set of password strings in a collect_passwords() dict."""
    found = set()
    stack = [passwords]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, str) and item:
            found.add(item)
    return found


def cluster_info(cluster, pools):
    """The documented, password-free view of a cluster and its connection pools."""
    info = dict(
        id=cluster.get('id'), name=cluster.get('name'), engine=cluster.get('engine'), version=cluster.get('version'),
        semantic_version=cluster.get('semantic_version'), region=cluster.get('region'), size=cluster.get('size'),
        num_nodes=cluster.get('num_nodes'), status=cluster.get('status'), tags=cluster.get('tags') or [],
        db_names=cluster.get('db_names') or [], private_network_uuid=cluster.get('private_network_uuid'),
        users=[u.get('name') for u in cluster.get('users') or [] if isinstance(u, dict)],
    )
    for key in CONNECTION_KEYS:
        if isinstance(cluster.get(key), dict):
            info[key] = connection_info(cluster[key])
    info['pools'] = []
    for pool in pools or []:
        entry = dict(name=pool.get('name'), mode=pool.get('mode'), size=pool.get('size'), db=pool.get('db'), user=pool.get('user'))
        for key in CONNECTION_KEYS:
            if isinstance(pool.get(key), dict):
                entry[key] = connection_info(pool[key])
        info['pools'].append(entry)
    return info


def client_from_module(module):
    """A DigitalOceanClient from a module's parameters; fails the module on missing requests or bad options."""
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib('requests'), exception=REQUESTS_IMPORT_ERROR)
    params = module.params
    try:
        return DigitalOceanClient(
            token=params['api_token'], base_url=params['api_base_url'], timeout=params['timeout'],
            validate_certs=params['validate_certs'], ca_path=params['ca_path'], max_retries=params['max_retries'],
            max_wait=params['max_wait'], user_agent='fediops.mastodon (ansible %s)' % module.ansible_version)
    except DigitalOceanError as exc:
        module.fail_json(**exc.fail_kwargs())
