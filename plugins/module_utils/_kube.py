# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Kubernetes connection shared by the fediops.mastodon Kubernetes modules (private).

One argument spec helper (kube_argument_spec) and one client wrapper (KubeClient) on top of the
official ``kubernetes`` Python client: kubeconfig files, contexts and exec credential plugins (for
example ``doctl kubernetes cluster kubeconfig exec-credential``) are handled by ``kubernetes.config``.
"""

from __future__ import annotations

import json
import threading
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

KUBERNETES_IMPORT_ERROR = None
try:
    import urllib3
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes import watch as k8s_watch
    from kubernetes.config.config_exception import ConfigException
    HAS_KUBERNETES = True
except ImportError:  # pragma: no cover - depends on the controller
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()

YAML_IMPORT_ERROR = None
try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - depends on the controller
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()

USER_AGENT = 'fediops.mastodon'
APPLY_PATCH = 'application/apply-patch+yaml'


def kube_argument_spec():
    """Connection options (documented in the fediops.mastodon.kubernetes doc fragment)."""
    return dict(
        kubeconfig=dict(type='path', fallback=(env_fallback, ['K8S_AUTH_KUBECONFIG'])),
        context=dict(type='str', fallback=(env_fallback, ['K8S_AUTH_CONTEXT'])),
        host=dict(type='str', fallback=(env_fallback, ['K8S_AUTH_HOST'])),
        api_key=dict(type='str', no_log=True, fallback=(env_fallback, ['K8S_AUTH_API_KEY'])),
        ca_cert=dict(type='path', aliases=['ssl_ca_cert'], fallback=(env_fallback, ['K8S_AUTH_SSL_CA_CERT'])),
        validate_certs=dict(type='bool', aliases=['verify_ssl'], fallback=(env_fallback, ['K8S_AUTH_VERIFY_SSL'])),
    )


class KubeError(Exception):
    """An error with a message fit for the user; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, msg, status=None, body=None, **details):
        super(KubeError, self).__init__(msg)
        self.msg = msg
        self.status = status
        self.body = body
        self.details = details

    def fail_kwargs(self):
        out = dict(msg=self.msg)
        if self.status is not None:
            out['status'] = self.status
        out.update(self.details)
        return out


def api_path(api_version):
    """URL prefix of an API group version: /api/v1 or /apis/<group>/<version>."""
    if '/' in api_version:
        return '/apis/' + api_version
    return '/api/' + api_version


def status_message(body):
    """The message of a Status object (or the raw text)."""
    if isinstance(body, dict):
        return body.get('message') or body.get('reason') or json.dumps(body)
    return str(body or '').strip()


class KubeClient(object):
    """A thread-safe, counting wrapper around kubernetes.client.ApiClient."""

    def __init__(self, kubeconfig=None, context=None, host=None, api_key=None, ca_cert=None,
                 validate_certs=None, timeout=30):
        if not HAS_KUBERNETES:
            raise KubeError(missing_required_lib('kubernetes'), exception=KUBERNETES_IMPORT_ERROR)
        cfg = k8s_client.Configuration()
        if kubeconfig or not host:
            try:
                k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg,
                                            persist_config=False)
            except (ConfigException, OSError) as exc:
                if kubeconfig or context:
                    raise KubeError('cannot load kubeconfig %s: %s' % (kubeconfig or '(default)', exc))
                try:
                    k8s_config.load_incluster_config(client_configuration=cfg)
                except ConfigException:
                    raise KubeError('no Kubernetes connection: no kubeconfig (%s) and not in a cluster; '
                                    'set kubeconfig or host' % exc)
        if host:
            cfg.host = host
        if api_key:
            cfg.api_key = {'authorization': api_key}
            cfg.api_key_prefix = {'authorization': 'Bearer'}
        if ca_cert:
            cfg.ssl_ca_cert = ca_cert
        if validate_certs is not None:
            cfg.verify_ssl = validate_certs
        cfg.retries = urllib3.Retry(total=2, connect=2, read=0, status=0, backoff_factor=0.2, raise_on_status=False)
        cfg.connection_pool_maxsize = 16
        self.configuration = cfg
        self.host = cfg.host
        self.api = k8s_client.ApiClient(cfg)
        self.api.user_agent = USER_AGENT
        self.timeout = timeout
        self._lock = threading.Lock()
        self._discovery = {}
        self._discovery_locks = {}
        self.requests = 0
        self.writes = 0

    @classmethod
    def from_module(cls, module):
        """A client from the connection options, failing the module on a missing library."""
        if not HAS_KUBERNETES:
            module.fail_json(msg=missing_required_lib('kubernetes'), exception=KUBERNETES_IMPORT_ERROR)
        p = module.params
        return cls(kubeconfig=p.get('kubeconfig'), context=p.get('context'), host=p.get('host'),
                   api_key=p.get('api_key'), ca_cert=p.get('ca_cert'), validate_certs=p.get('validate_certs'))

    def _count(self, method):
        with self._lock:
            self.requests += 1
            if method not in ('GET', 'HEAD'):
                self.writes += 1

    def _send(self, method, path, query=None, body=None, content_type=None, timeout=None):
        headers = {'Accept': 'application/json'}
        if content_type:
            headers['Content-Type'] = content_type
        elif body is not None:
            headers['Content-Type'] = 'application/json'
        query_params = [(k, v) for k, v in (query or {}).items() if v is not None]
        request = self.api.param_serialize(method, path, query_params=query_params, header_params=headers,
                                           body=body, auth_settings=['BearerToken'])
        self._count(method)
        try:
            return self.api.call_api(*request, _request_timeout=timeout or self.timeout)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError('cannot reach the Kubernetes API server %s: %s' % (self.host, _short(exc)), status=0)
        except k8s_client.ApiException as exc:
            raise KubeError('Kubernetes API server %s: %s' % (self.host, exc.reason), status=exc.status or 0)

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        """Send one request; returns (status, decoded JSON body or text). Raises KubeError(status=0) when
        the API server cannot be reached."""
        resp = self._send(method, path, query, body, content_type, timeout)
        try:
            raw = resp.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError('cannot reach the Kubernetes API server %s: %s' % (self.host, _short(exc)), status=0)
        text = raw.decode('utf-8', 'replace') if isinstance(raw, bytes) else (raw or '')
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = text
        return resp.status, data

    def discover(self, api_version):
        """Resources of one API group version (one GET per version and client): {kind: (plural, namespaced)}."""
        with self._lock:
            lock = self._discovery_locks.setdefault(api_version, threading.Lock())
        with lock:
            if api_version not in self._discovery:
                status, data = self.request('GET', api_path(api_version))
                if status == 404:
                    self._discovery[api_version] = None
                elif status != 200:
                    raise KubeError('discovery of %s failed: HTTP %s %s' % (api_version, status, status_message(data)),
                                    status=status)
                else:
                    kinds = {}
                    for res in data.get('resources', []):
                        if '/' in res.get('name', ''):
                            continue
                        kinds[res['kind']] = (res['name'], bool(res.get('namespaced')))
                    self._discovery[api_version] = kinds
            return self._discovery[api_version]

    def discovery_cache(self):
        """The discovery this client made: {api_version: {kind: (plural, namespaced)} or None (not served)}."""
        with self._lock:
            return dict(self._discovery)

    def seed_discovery(self, cache):
        """Take the discovery of another client of the same server, made moments ago (mastodon_deploy's plan task
        hands it to the steps), instead of asking again."""
        with self._lock:
            for version, kinds in (cache or {}).items():
                self._discovery.setdefault(version, None if kinds is None else
                                           dict((kind, tuple(entry)) for kind, entry in kinds.items()))

    def resource(self, api_version, kind):
        """(plural, namespaced) of a kind; KubeError when the server does not serve it."""
        kinds = self.discover(api_version)
        if kinds is None:
            raise KubeError('the API server %s does not serve %s' % (self.host, api_version), status=404)
        if kind not in kinds:
            raise KubeError('the API server %s has no kind %s in %s' % (self.host, kind, api_version), status=404)
        return kinds[kind]

    def path(self, api_version, kind, namespace=None, name=None, subresource=None):
        """URL path of a collection (name None) or an object."""
        plural, namespaced = self.resource(api_version, kind)
        parts = [api_path(api_version)]
        if namespaced and namespace:
            parts += ['namespaces', namespace]
        parts.append(plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return '/'.join(parts)

    def watch(self, path, query=None, timeout=60):
        """Yield watch events (dicts with type and object) of a collection path until timeout seconds."""
        query = dict(query or {})

        def watch_func(**kwargs):
            params = dict(query, watch='true', timeoutSeconds=str(max(1, int(kwargs.get('timeout_seconds', timeout)))),
                          allowWatchBookmarks='false')
            if kwargs.get('resource_version'):
                params['resourceVersion'] = kwargs['resource_version']
            resp = self._send('GET', path, params, timeout=(10, timeout + 5))
            return resp.response

        watcher = k8s_watch.Watch(return_type=None)
        try:
            for event in watcher.stream(watch_func, timeout_seconds=max(1, int(timeout + 0.999)),
                                        resource_version=query.pop('resourceVersion', None)):
                if event:
                    yield event
        except k8s_client.ApiException as exc:
            raise KubeError('watch of %s failed: %s' % (path, exc.reason), status=exc.status or 0)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError('cannot reach the Kubernetes API server %s: %s' % (self.host, _short(exc)), status=0)
        finally:
            watcher.stop()


def _short(exc):
    """The last, most specific line of a connection error."""
    text = str(getattr(exc, 'reason', None) or exc)
    return text.strip().splitlines()[-1] if text.strip() else type(exc).__name__


def load_yaml_documents(text):
    """The non-empty documents of a multi-document YAML string."""
    if not HAS_YAML:
        raise KubeError(missing_required_lib('PyYAML'), exception=YAML_IMPORT_ERROR)
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise KubeError('definitions: invalid YAML: %s' % exc)
