# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read one Secret (private logic of fediops.mastodon.k8s_secret_info), through the shared KubeClient."""

from __future__ import annotations

import base64
import binascii
import re

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError, status_message


NAME_RE = re.compile(r'^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$')
NAMESPACE_RE = re.compile(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')


def secret_path(namespace, name):
    """URL path of a Secret (core v1 is always served; no discovery request needed)."""
    if not NAME_RE.match(name or ''):
        raise KubeError('name %r is not a valid Secret name (a DNS subdomain)' % name)
    if not NAMESPACE_RE.match(namespace or ''):
        raise KubeError('namespace %r is not a valid namespace name (a DNS label)' % namespace)
    return '/api/v1/namespaces/%s/secrets/%s' % (namespace, name)


def decode_data(data):
    """(text values, base64 values that are not UTF-8) of a Secret's ``data``."""
    text, binary = {}, {}
    for key, value in (data or {}).items():
        try:
            raw = base64.b64decode(value or '', validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise KubeError('Secret key %s: the API server returned a value that is not base64' % key)
        try:
            text[key] = raw.decode('utf-8')
        except UnicodeDecodeError:
            binary[key] = value
    return text, binary


def read_secret(client, namespace, name):
    """exists, data (decoded), binary_data, type and resource_version of one Secret.

    A missing Secret (or namespace) is exists=false with empty data; any other answer but 200 raises KubeError.
    """
    status, body = client.request('GET', secret_path(namespace, name))
    if status == 404:
        return dict(exists=False, data={}, binary_data={}, type=None, resource_version=None, annotations={})
    if status != 200 or not isinstance(body, dict):
        raise KubeError('Secret %s/%s: HTTP %s: %s' % (namespace, name, status, status_message(body)), status=status)
    data, binary = decode_data(body.get('data'))
    meta = body.get('metadata') or {}
    return dict(exists=True, data=data, binary_data=binary, type=body.get('type'),
                resource_version=meta.get('resourceVersion'), annotations=dict(meta.get('annotations') or {}))
