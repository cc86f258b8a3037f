# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the plan reads from the cluster (GETs only), and running independent reads at the same time.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

import threading

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.record import read_record
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import KubeError
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_secret_info import read_secret
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import status_message


def catching(error_class, func, *args):
    """A callable returning func(*args), or the error_class exception it raised."""
    def call():
        try:
            return func(*args)
        except error_class as exc:
            return exc
    return call


def concurrently(calls):
    """{name: result} of {name: callable}, run in threads; the first exception is raised."""
    out, errors = {}, []

    def run(name):
        try:
            out[name] = calls[name]()
        except Exception as exc:  # pylint: disable=broad-except  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return out


def read_state(client, v):
    """What the plan needs from the cluster, read concurrently (GETs only)."""
    name, ns = v['config_name'], v['config_namespace']
    todo = {
        'namespace': lambda: get(client, client.path('v1', 'Namespace', None, ns)),
        'kept': lambda: read_secret(client, ns, name + '-generated-secrets'),
        'env_secret': lambda: read_secret(client, ns, name + '-env'),
        'env_configmap': lambda: get(client, client.path('v1', 'ConfigMap', ns, name + '-env')),
        'web': lambda: get(client, client.path('apps/v1', 'Deployment', ns, name + '-web')),
        'marker': lambda: get(client, client.path('v1', 'Secret', ns, name + '-set-config')),
        'record': lambda: read_record(client, ns, name),
    }
    out = concurrently(todo)
    out['kept_exists'] = out['kept']['exists']
    out['kept_annotations'] = out['kept'].get('annotations') or {}
    out['kept'] = out['kept']['data'] if out['kept']['exists'] else {}
    out['env_secret_exists'] = out['env_secret']['exists']
    out['env_secret'] = out['env_secret']['data'] if out['env_secret']['exists'] else {}
    out['instance'] = [what for what, present in (
        ('Secret %s-env' % name, out['env_secret_exists']), ('ConfigMap %s-env' % name, out['env_configmap'] is not None),
        ('Deployment %s-web' % name, out['web'] is not None),
        ('ApplySet %s-set-config' % name, out['marker'] is not None)) if present]
    return out


def get(client, path):
    status, body = client.request('GET', path)
    if status == 404:
        return None
    if status != 200:
        raise KubeError('GET %s: HTTP %s: %s' % (path, status, status_message(body)), status=status)
    return body


def read_references(client, v):
    """The objects the deploy refers to but does not create, read concurrently (GETs only): the uploads
    PersistentVolumeClaim, the image pull Secrets, the IngressClasses. {what: present (bool) or None (not readable:
    the deployer Role may not read a cluster-scoped kind)}."""
    ns, todo = v['config_namespace'], {}

    def exists(path):
        def call():
            status, body = client.request('GET', path)
            if status == 200:
                return True
            if status == 404:
                return False
            if status in (401, 403):
                return None
            raise KubeError('GET %s: HTTP %s: %s' % (path, status, status_message(body)), status=status)
        return call

    if v.get('config_media_volume_claim'):
        todo[('config_media_volume_claim', 'PersistentVolumeClaim', v['config_media_volume_claim'])] = exists(
            client.path('v1', 'PersistentVolumeClaim', ns, v['config_media_volume_claim']))
    for index, name in enumerate(v.get('config_image_pull_secrets') or []):
        todo[('config_image_pull_secrets', 'Secret', name)] = exists('/api/v1/namespaces/%s/secrets/%s' % (ns, name))
    for role in ('web', 'streaming'):
        if v.get(role + '_exposure') == 'ingress' and v.get(role + '_ingress_class_name'):
            todo[(role + '_ingress_class_name', 'IngressClass', v[role + '_ingress_class_name'])] = exists(
                client.path('networking.k8s.io/v1', 'IngressClass', None, v[role + '_ingress_class_name']))
    keys = list(todo)
    found = concurrently(dict((str(i), todo[key]) for i, key in enumerate(keys)))
    return dict((key, found[str(i)]) for i, key in enumerate(keys))
