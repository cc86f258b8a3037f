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
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

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
# DigitalOcean's managed Valkey, and the clusters created as "Redis" ("Caching") before Valkey replaced it:
# both answer the Redis protocol over TLS (engine enum in resources/databases/models/database_cluster.yml).
REDIS_ENGINES = ('valkey', 'redis')


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
        # A token copied from a file or a vault often ends with a newline; no token holds whitespace, and a header
        # with a newline is refused by the HTTP library before DigitalOcean sees it.
        token = token.strip() if isinstance(token, str) else token
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
            text += (' (the api_token lacks the scope this call needs: database:read to read, database:view_credentials '
                     'for passwords, database:create to add users and pools)')
        if request_id:
            text += ' [request_id %s]' % request_id
        return DigitalOceanError(self._scrub(text), status=response.status_code, error_id=self._scrub(error_id) if error_id else None,
                                 request_id=request_id, url=self._scrub(url))

    def _budget_left(self, started):
        return self.max_wait - (self._clock() - started)

    # -- requests --------------------------------------------------------------------------------
    def get(self, path, params=None, what=None):
        """GET a path (or absolute URL on the API's origin) and return the decoded JSON object."""
        return self.request('GET', path, params=params, what=what)

    def post(self, path, body, what=None):
        """POST a JSON body to a path and return the decoded JSON object.

        A POST creates something, so it is retried only where DigitalOcean did not act on it: on HTTP 429
        (rate limited, rejected before processing). A timeout, a dropped connection or a 5xx may have
        created the object already; retrying could create it twice or fail on the duplicate, so these
        surface as errors and the next run of the (idempotent) caller finds what exists.
        """
        return self.request('POST', path, body=body, what=what)

    def request(self, method, path, params=None, body=None, what=None):
        """Send one API request (with the bounded retries above) and return the decoded JSON object."""
        url = self._url(path, params)
        what = what or '%s %s' % (method, urlsplit(url).path)
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise DigitalOceanError('refusing to send the API token to %s://%s (not api_base_url %s)'
                                    % (parts.scheme, parts.netloc, self.base_url))
        retry_failures = method == 'GET'
        send = getattr(self.session, method.lower())
        kwargs = dict(headers=self._headers(), timeout=self.timeout, verify=self.verify, allow_redirects=False)
        if body is not None:
            kwargs['json'] = body
        started = self._clock()
        attempt = 0
        while True:
            self.request_count += 1
            try:
                response = send(url, **kwargs)
            except Exception as exc:  # pylint: disable=broad-except
                if HAS_REQUESTS and isinstance(exc, requests.exceptions.SSLError):
                    raise DigitalOceanError(self._scrub('DigitalOcean API %s failed: TLS error talking to %s: %s '
                                                        '(set ca_path or validate_certs)' % (what, self.base_url, exc)), url=self._scrub(url))
                if not retry_failures or not self._transient(exc):
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
                    # Say which bound ended the retries: the count, or the time the wait asked for.
                    if attempt >= self.max_retries:
                        why = 'the %d retries of max_retries are used up' % self.max_retries
                    else:
                        why = ('waiting would pass max_wait %s s (%.0f s already spent)'
                               % (self.max_wait, self._clock() - started))
                    error.message = self._scrub('%s; still rate limited after %d attempt(s): the API asks to wait '
                                                '%.0f s, and %s' % (error.message, attempt + 1, wait, why))
                    error.args = (error.message,)
                    raise error
                self._wait(wait)
                attempt += 1
                continue
            if status >= 500 and retry_failures:
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
        """databases_list_connectionPools: GET /v2/databases/{uuid}/pools -> {"pools": [...]}."""
        return expect_list(self.get('/v2/databases/%s/pools' % cluster_id, what='list connection pools of %s' % cluster_id),
                           'pools', 'list connection pools of %s' % cluster_id)

    def database_pool(self, cluster_id, pool_name):
        """databases_get_connectionPool: GET /v2/databases/{uuid}/pools/{pool_name} -> {"pool": {...}}."""
        what = 'get connection pool %s of %s' % (pool_name, cluster_id)
        return expect_object(self.get('/v2/databases/%s/pools/%s' % (cluster_id, quote(pool_name, safe='')), what=what),
                             'pool', what)

    def add_database_pool(self, cluster_id, name, mode, size, db, user=None):
        """databases_add_connectionPool: POST /v2/databases/{uuid}/pools {name, mode, size, db[, user]} -> 201 {"pool"}."""
        body = dict(name=name, mode=mode, size=size, db=db)
        if user:
            body['user'] = user
        what = 'add connection pool %s to %s' % (name, cluster_id)
        return expect_object(self.post('/v2/databases/%s/pools' % cluster_id, body, what=what), 'pool', what)

    def database_users(self, cluster_id):
        """databases_list_users: GET /v2/databases/{uuid}/users -> {"users": [...]} (passwords need database:view_credentials)."""
        return expect_list(self.get('/v2/databases/%s/users' % cluster_id, what='list users of %s' % cluster_id),
                           'users', 'list users of %s' % cluster_id)

    def database_user(self, cluster_id, username):
        """databases_get_user: GET /v2/databases/{uuid}/users/{username} -> {"user": {...}}."""
        what = 'get user %s of %s' % (username, cluster_id)
        return expect_object(self.get('/v2/databases/%s/users/%s' % (cluster_id, quote(username, safe='')), what=what),
                             'user', what)

    def add_database_user(self, cluster_id, username):
        """databases_add_user: POST /v2/databases/{uuid}/users {name} -> 201 {"user": {name, role, password}}."""
        what = 'add user %s to %s' % (username, cluster_id)
        return expect_object(self.post('/v2/databases/%s/users' % cluster_id, dict(name=username), what=what), 'user', what)

    def database_backups(self, cluster_id):
        """databases_list_backups: GET /v2/databases/{uuid}/backups -> {"backups": [{created_at, size_gigabytes,
        incremental?}], "scheduled_backup_time"?: {backup_hour, backup_minute, backup_interval_hours},
        "backup_progress"?: "36"} (responses/database_backups.yml; `backups` is required there).

        Returns that object with `backups` always a list of objects. The list is not paginated (the operation
        takes no page parameters). "Backups are not supported for Caching or Valkey clusters"
        (databases_list_backups.yml): the caller asks only about the PostgreSQL cluster.
        """
        what = 'list backups of %s' % cluster_id
        data = self.get('/v2/databases/%s/backups' % cluster_id, what=what)
        if not isinstance(data.get('backups'), list):
            raise DigitalOceanError('DigitalOcean API %s: the answer has no \'backups\' list' % what)
        answer = dict(data)
        answer['backups'] = [item for item in data['backups'] if isinstance(item, dict)]
        return answer

    def database_firewall_rules(self, cluster_id):
        """databases_list_firewall_rules: GET /v2/databases/{uuid}/firewall -> {"rules": [...]} ("trusted sources")."""
        return expect_list(self.get('/v2/databases/%s/firewall' % cluster_id, what='list trusted sources of %s' % cluster_id),
                           'rules', 'list trusted sources of %s' % cluster_id)


def expect_list(data, key, what):
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DigitalOceanError('DigitalOcean API %s: %r is not a list' % (what, key))
    return [item for item in value if isinstance(item, dict)]


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


def find_cluster_by_name(client, name, clusters=None):
    """The one cluster with that name (one list request, all pages; none when `clusters`, the list, is given)."""
    if not name or not name.strip():
        raise DigitalOceanError('cluster_name must not be empty')
    if clusters is None:
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


def get_cluster(client, cluster_id=None, cluster_name=None):
    """The cluster named by its UUID (one GET) or by its name (one list request)."""
    if cluster_id is not None:
        validate_cluster_id(cluster_id)
        return client.database(cluster_id)
    return find_cluster_by_name(client, cluster_name)


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


# -- trusted sources ---------------------------------------------------------------------------------
# DOKS serves each cluster's API at https://<cluster uuid>.k8s.ondigitalocean.com (the `endpoint` of DigitalOcean's
# Kubernetes API, e.g. "https://bd5f5959-5e1e-4205-a714-a914373942af.k8s.ondigitalocean.com" in its examples, and
# the `server` of the kubeconfig that `doctl kubernetes cluster kubeconfig save` writes).
DOKS_SERVER_RE = re.compile(r'^(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.k8s\.ondigitalocean\.com$')
CONTROL_PANEL_PATH = 'Databases > {name} > Network Access > Add Trusted Sources > select the Kubernetes cluster'


def kubernetes_cluster_id_from_server(url):
    """The DOKS cluster id in a kubeconfig's API server URL (https://<uuid>.k8s.ondigitalocean.com), else None."""
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme != 'https' or not host:
        return None
    match = DOKS_SERVER_RE.match(host.lower())
    return match.group('id') if match else None


def kubernetes_admitting_tags(kubernetes_cluster_id):
    """The tags DOKS puts on every worker node of the cluster, so a trusted source of type tag with one admits it.

    DigitalOcean's Kubernetes API shows node pools tagged "k8s", "k8s:<cluster id>" and "k8s:worker"; the tag rule
    admits "any Droplet or Kubernetes node with that tag" (databases_update_firewall_rules.yml).
    """
    return ('k8s', 'k8s:%s' % kubernetes_cluster_id, 'k8s:worker')


def _rule_text(rule):
    return '%s:%s' % (rule.get('type'), rule.get('value'))


def trusted_sources_problem(database_name, rules, kubernetes_cluster_id, database_id=None):
    """None if the database's trusted sources admit the Kubernetes cluster, else the message that says how to fix it.

    rules: the `rules` of databases_list_firewall_rules (GET /v2/databases/{uuid}/firewall). An empty list means
    no restriction: DigitalOcean restricts a cluster's incoming connections only once trusted sources are added
    ("To implement these restrictions, add trusted sources", docs.digitalocean.com/products/databases/postgresql/
    how-to/secure/; the firewall "specif[ies] which resources should be able to open connections", OpenAPI
    databases_update_firewall_rules.yml), so a cluster without rules is open to every source (password and TLS
    still apply).
    The cluster is admitted by a rule of type k8s whose value is its id, or a rule of type tag naming one of the
    tags every DOKS node carries (kubernetes_admitting_tags). Droplet and ip_addr rules are not taken as admitting
    it: node droplets and their addresses change whenever a node pool is recycled or scaled.
    database_id: the database cluster's UUID for the doctl command (default: the rules' cluster_uuid).
    """
    rules = [rule for rule in rules or [] if isinstance(rule, dict)]
    if not rules:
        return None
    database_id = database_id or next((r.get('cluster_uuid') for r in rules if r.get('cluster_uuid')), None) or '<database-id>'
    present = ', '.join(_rule_text(rule) for rule in rules)
    if not kubernetes_cluster_id:
        return ('database cluster %r admits only its trusted sources (%s), and the id of the Kubernetes cluster the '
                'applications run in is unknown (the kubeconfig\'s API server is not https://<id>.k8s.ondigitalocean.com): '
                'name it with config_do_kubernetes_cluster_id (doctl kubernetes cluster get <name> --format ID) so the '
                'deploy can check that the cluster is admitted' % (database_name, present))
    admitting_tags = kubernetes_admitting_tags(kubernetes_cluster_id)
    for rule in rules:
        if rule.get('type') == 'k8s' and str(rule.get('value', '')).lower() == kubernetes_cluster_id.lower():
            return None
        if rule.get('type') == 'tag' and rule.get('value') in admitting_tags:
            return None
    return ('database cluster %r does not admit the Kubernetes cluster %s: its trusted sources are %s, so the '
            'applications in the cluster cannot connect to it. Add the trusted source of type k8s with value %s: '
            '`doctl databases firewalls append %s --rule k8s:%s`, or in the control panel: %s'
            % (database_name, kubernetes_cluster_id, present, kubernetes_cluster_id, database_id, kubernetes_cluster_id,
               CONTROL_PANEL_PATH.format(name=database_name)))


# -- Redis / Valkey -------------------------------------------------------------------------------------
def redis_url(cluster, private=True):
    """The REDIS_URL of a DigitalOcean Valkey (or legacy Redis) cluster, with its password.

    cluster: the cluster object of the API (databases_get_cluster: connection objects carry `password`), or an
    element of do_database_info's `clusters` with include_passwords (passwords under `passwords`).
    private: the VPC endpoint (private_connection) rather than the public one (connection).
    The scheme is rediss:// when the connection says ssl (always, on DigitalOcean), with user and password
    percent-encoded, as Mastodon's REDIS_URL (config/initializers/redis.rb reads it whole) expects.
    """
    name = cluster.get('name') or cluster.get('id')
    engine = cluster.get('engine')
    if engine not in REDIS_ENGINES:
        raise DigitalOceanError('database cluster %r is a %s cluster, not Valkey or Redis (engine %s)'
                                % (name, engine, ' or '.join(REDIS_ENGINES)))
    key = 'private_connection' if private else 'connection'
    conn = cluster.get(key)
    if not isinstance(conn, dict) or not conn.get('host'):
        raise DigitalOceanError('database cluster %r has no %s endpoint%s' % (
            name, key, ' (set private to false, or put the cluster in the Kubernetes cluster\'s VPC)' if private else ''))
    password = conn.get('password') or (cluster.get('passwords') or {}).get(key) or ''
    user = conn.get('user') or 'default'
    scheme = 'rediss' if conn.get('ssl', True) else 'redis'
    userinfo = quote(user, safe='') + (':' + quote(password, safe='') if password else '')
    return '%s://%s@%s:%s' % (scheme, userinfo, conn['host'], conn.get('port') or 25061)


# -- the application's database user and its PgBouncer pool -------------------------------------------------
POOL_MODES = ('transaction', 'session', 'statement')
POOL_FIELDS = ('name', 'mode', 'size', 'db', 'user')


def find_pool(pools, pool_name):
    return next((pool for pool in pools or [] if isinstance(pool, dict) and pool.get('name') == pool_name), None)


def require_pool_engine(cluster, what):
    if cluster.get('engine') not in POOL_ENGINES:
        raise DigitalOceanError('%s: database cluster %r is engine %s; connection pools and database users exist only on '
                                'PostgreSQL clusters (engine %s)' % (what, cluster.get('name'), cluster.get('engine'),
                                                                     ' or '.join(POOL_ENGINES)))


def application_user(client, cluster, pools, pool_name=None, user_name=None):
    """The database user the application (and its migrations) connect as, with its password.

    The user is user_name when the operator names one, else the `user` of the pool pool_name. The password comes
    from the pool's connection when the pool uses that user (no extra request), else from databases_get_user
    (GET /v2/databases/{uuid}/users/{name}; the password needs the database:view_credentials scope).
    Returns {name, role, source ('operator' or 'pool'), pool, password}; the admin user (role primary, doadmin)
    is only ever returned when the pool or the operator names it.
    """
    require_pool_engine(cluster, 'app_user')
    pool = None
    if pool_name:
        pool = find_pool(pools, pool_name)
        if pool is None:
            raise DigitalOceanError('app_pool: database cluster %r has no connection pool %r (it has: %s)' % (
                cluster.get('name'), pool_name, ', '.join(sorted(str(p.get('name')) for p in pools or [])) or 'none'))
    if user_name:
        name, source = user_name, 'operator'
    elif pool is not None:
        name, source = pool.get('user'), 'pool'
        if not name:
            raise DigitalOceanError('app_pool: connection pool %r has no user (its sessions connect as whichever user '
                                    'logs in); name the application\'s database user with app_user' % pool_name)
    else:
        raise DigitalOceanError('app_user: name the application\'s database user, or the pool (app_pool) whose user it is')
    password = None
    role = None
    if pool is not None and pool.get('user') == name:
        for key in CONNECTION_KEYS:
            conn = pool.get(key)
            if isinstance(conn, dict) and conn.get('password') and conn.get('user', name) == name:
                password = conn['password']
                break
    known = next((u for u in cluster.get('users') or [] if isinstance(u, dict) and u.get('name') == name), None)
    if known is not None:
        role = known.get('role')
    if password is None:
        try:
            user = client.database_user(cluster['id'], name)
        except DigitalOceanError as exc:
            if exc.status == 404:
                raise DigitalOceanError('app_user: database cluster %r has no user %r (create it with '
                                        'fediops.mastodon.do_database_pool, or in the control panel under Users & Databases)'
                                        % (cluster.get('name'), name), status=404, request_id=exc.request_id)
            raise
        role = user.get('role', role)
        password = user.get('password')
        if not password:
            raise DigitalOceanError('app_user: the API returned no password for user %r of %r: the api_token needs the '
                                    'database:view_credentials scope' % (name, cluster.get('name')))
    return dict(name=name, role=role, source=source, pool=pool_name, password=password)


def validate_pool_spec(spec):
    """Raise, naming the option, for a pool spec DigitalOcean would refuse (models/connection_pool.yml)."""
    name = spec.get('name') or ''
    if not 3 <= len(name) <= 60:
        raise DigitalOceanError('name: a connection pool name must be 3 to 60 characters long, got %r' % (name,))
    if spec.get('mode') not in POOL_MODES:
        raise DigitalOceanError('mode must be one of %s, got %r' % (', '.join(POOL_MODES), spec.get('mode')))
    size = spec.get('size')
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise DigitalOceanError('size must be a positive number of backend connections, got %r' % (size,))
    if not spec.get('db') or not str(spec['db']).strip():
        raise DigitalOceanError('db: name the database the pool connects to (for example mastodon_production)')
    user = spec.get('user')
    if user is not None and (not user.strip() or user != user.strip()):
        raise DigitalOceanError('user must be a database user name without surrounding spaces, got %r' % (user,))


def pool_view(pool):
    """The settings of a pool (the fields of databases_add_connectionPool), without its connections."""
    if not pool:
        return {}
    return dict((key, pool.get(key)) for key in POOL_FIELDS if pool.get(key) is not None)


def ensure_pool(client, cluster, spec, check_mode=False):
    """Make the PgBouncer pool `spec` (name, mode, size, db, user) and its user exist; idempotent.

    Everything is read and checked first (engine, database, existing pool's settings), then the user is added
    (databases_add_user) when missing, then the pool (databases_add_connectionPool). In check mode nothing is sent
    but GETs. An existing pool with other settings is an error naming the settings: this never rewrites a pool
    that applications may be using. Returns {changed, pool, user_created, diff}.
    """
    validate_pool_spec(spec)
    require_pool_engine(cluster, 'cluster')
    db_names = cluster.get('db_names')
    if isinstance(db_names, list) and db_names and spec['db'] not in db_names:
        raise DigitalOceanError('db: database cluster %r has no database %r (it has: %s)'
                                % (cluster.get('name'), spec['db'], ', '.join(sorted(db_names))))
    cluster_id = cluster['id']
    existing = find_pool(client.database_pools(cluster_id), spec['name'])
    wanted = pool_view(spec)
    if existing is not None:
        differences = ['%s is %r, not %r' % (key, existing.get(key), wanted[key])
                       for key in POOL_FIELDS if key in wanted and existing.get(key) != wanted[key]]
        if differences:
            raise DigitalOceanError('name: connection pool %r of %r exists with other settings (%s); change it in the '
                                    'control panel or choose another name: this module does not rewrite a pool in use'
                                    % (spec['name'], cluster.get('name'), '; '.join(differences)))
    user_missing = False
    if spec.get('user'):
        users = client.database_users(cluster_id)
        user_missing = not any(u.get('name') == spec['user'] for u in users)
    before = dict(pool=pool_view(existing), users=[] if user_missing or not spec.get('user') else [spec['user']])
    after = dict(pool=wanted if existing is None else pool_view(existing),
                 users=[spec['user']] if spec.get('user') else [])
    changed = existing is None or user_missing
    pool = existing
    if changed and not check_mode:
        if user_missing:
            client.add_database_user(cluster_id, spec['user'])
        if existing is None:
            pool = client.add_database_pool(cluster_id, spec['name'], spec['mode'], spec['size'], spec['db'], spec.get('user'))
    return dict(changed=changed, pool=pool if pool is not None else dict(wanted), user_created=user_missing,
                diff=dict(before=before, after=after))


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
