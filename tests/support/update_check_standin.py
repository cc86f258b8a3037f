# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A local stand-in of Mastodon's update check (api.joinmastodon.org/update-check), for tests: never the real one.

It answers as Mastodon's client expects (app/services/software_update_check_service.rb:21-25, 38-52):
GET <path>?version=X.Y.Z with Accept: application/json -> 200 {"updatesAvailable": [{"version", "urgent", "type",
"releaseNotes"}]} listing the releases newer than X.Y.Z (Gem::Version order, here numeric X.Y.Z), and 404 on other
paths. `mode` makes it misbehave: 'status' (answers `status`, default 500), 'malformed' (JSON cut in the middle),
'html' (a 200 page of HTML), 'shape' (JSON without updatesAvailable), 'slow' (answers after `delay` seconds).
Plain HTTP, or HTTPS with an ssl context; loopback only. `requests` records (path, query, accept).

    standin = UpdateCheckStandin(RELEASES).start()      # standin.url -> http://127.0.0.1:<port>/update-check
    standin.mode = 'status'; standin.status = 503
    standin.stop()
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PATH = '/update-check'
# Releases as the real service lists them (software_update.rb: type patch/minor/major, urgent for security fixes).
RELEASES = [
    dict(version='4.7.6', urgent=True, type='patch', releaseNotes='https://github.com/mastodon/mastodon/releases/tag/v4.7.6'),
    dict(version='4.7.5', urgent=False, type='patch', releaseNotes='https://github.com/mastodon/mastodon/releases/tag/v4.7.5'),
    dict(version='4.7.0', urgent=False, type='minor', releaseNotes='https://github.com/mastodon/mastodon/releases/tag/v4.7.0'),
    dict(version='4.6.9', urgent=True, type='patch', releaseNotes='https://github.com/mastodon/mastodon/releases/tag/v4.6.9'),
    dict(version='4.5.4', urgent=False, type='patch', releaseNotes='https://github.com/mastodon/mastodon/releases/tag/v4.5.4'),
]


def _numbers(version):
    return tuple(int(part) for part in version.split('.')[:3])


class _Handler(BaseHTTPRequestHandler):
    server_version = 'update-check-standin'

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass

    def do_GET(self):  # pylint: disable=invalid-name
        standin = self.server.standin
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with standin.lock:
            standin.requests.append(dict(path=parts.path, query=query, accept=self.headers.get('accept')))
        mode = standin.mode
        if mode == 'slow':
            time.sleep(standin.delay)
        if parts.path != standin.path:
            return self._send(404, b'{"error":"Not found"}')
        if mode == 'status':
            return self._send(standin.status, b'{"error":"unavailable"}')
        if mode == 'html':
            return self._send(200, b'<html><body>maintenance</body></html>', 'text/html')
        if mode == 'shape':
            return self._send(200, json.dumps(dict(updates=standin.releases)).encode('utf-8'))
        try:
            running = _numbers(query.get('version', ''))
        except ValueError:
            return self._send(400, b'{"error":"version is required"}')
        newer = [release for release in standin.releases if _numbers(release['version']) > running]
        body = json.dumps(dict(updatesAvailable=newer)).encode('utf-8')
        if mode == 'malformed':
            body = body[:max(1, len(body) // 2)]
        return self._send(200, body)

    def _send(self, status, body, content_type='application/json; charset=utf-8'):
        try:
            self.send_response(status)
            self.send_header('content-type', content_type)
            self.send_header('content-length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class UpdateCheckStandin(object):
    def __init__(self, releases=None, ssl_context=None, host='127.0.0.1', path=PATH):
        if host not in ('127.0.0.1', '::1', 'localhost'):
            raise ValueError('the stand-in only listens on loopback')
        self.releases = list(RELEASES if releases is None else releases)
        self.path = path
        self.mode = 'ok'
        self.status = 500
        self.delay = 3.0
        self.requests = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.standin = self
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        scheme = 'https' if ssl_context is not None else 'http'
        self.url = '%s://%s:%d%s' % (scheme, host, self.httpd.server_address[1], path)
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.1), daemon=True)
        self.thread.start()
        return self

    def reset(self):
        self.mode, self.status, self.delay = 'ok', 500, 3.0
        with self.lock:
            del self.requests[:]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
