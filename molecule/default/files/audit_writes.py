# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Print, as JSON, the writes that the API server's audit log records for one namespace from a byte offset on.

Evidence that a refused deploy wrote nothing must not move when controllers act: an HPA scaling a Deployment
changes its generation and resourceVersion, but it is not a write by the deploy. So this reads the audit log of
the local cluster (tests/cluster) and leaves out the cluster's own controllers and dry-run requests.

    python3 audit_writes.py AUDIT_LOG OFFSET NAMESPACE
"""

from __future__ import annotations

import json
import sys

WRITE_VERBS = ('create', 'update', 'patch', 'delete', 'deletecollection')
CONTROLLER_AGENTS = ('kube-controller-manager', 'kubesim', 'kube-apiserver')


def writes(lines, namespace):
    found = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line still being written when we read
        ref = event.get('objectRef') or {}
        in_namespace = ref.get('namespace') == namespace or (
            ref.get('resource') == 'namespaces' and ref.get('name') == namespace)
        if (event.get('stage') != 'ResponseComplete' or event.get('verb') not in WRITE_VERBS or not in_namespace
                or (event.get('userAgent') or '').startswith(CONTROLLER_AGENTS)
                or 'dryRun=All' in (event.get('requestURI') or '')):
            continue
        found.append({'verb': event['verb'], 'resource': ref.get('resource'), 'name': ref.get('name'),
                      'userAgent': event.get('userAgent'),
                      'code': (event.get('responseStatus') or {}).get('code')})
    return found


def main(path, offset, namespace):
    with open(path, 'rb') as handle:
        handle.seek(int(offset))
        lines = handle.read().decode('utf-8', 'replace').splitlines()
    print(json.dumps(writes(lines, namespace)))


if __name__ == '__main__':
    main(*sys.argv[1:4])
