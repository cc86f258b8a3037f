# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The TLS preflight: from the controller, or from the namespace by a short-lived Job.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils import _tls_check
from ansible_collections.fediops.mastodon.plugins.module_utils import _tls_incluster as incluster
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError


def tls_targets(endpoints, redis_ca_pem=''):
    """The endpoints of the TLS preflight, each with what the applications trust (docs/dev/ARCHITECTURE.md section 7): PostgreSQL
    (direct, pool) the database CA; Redis the system store (DigitalOcean's Valkey has a publicly trusted
    certificate, and Mastodon's Redis client takes no CA option) or config_redis_ca_pem for a self-managed Redis."""
    db, ca = endpoints['db'], endpoints['ca_pem'] or None
    targets = [('database', db['direct_host'], db['direct_port'], 'postgres', ca)]
    if db['pgbouncer']:
        targets.append(('pool', db['host'], db['port'], 'postgres', ca))
    url = endpoints['redis_url'] or ''
    if url.startswith('rediss://'):
        host, port = mconfig.url_host_port(url)
        targets.append(('redis', host, port or 6379, 'redis', redis_ca_pem or None))
    return [{'name': name, 'host': host, 'port': int(port), 'protocol': protocol, 'trust': 'ca' if ca_pem else 'system',
             'ca_pem': ca_pem} for name, host, port, protocol, ca_pem in targets if host]


def _preflight_errors(variable, failed, message):
    """One error per failing endpoint, so each is named; unreachable ones share one explanation."""
    if not failed:
        return []
    prefix = 'TLS preflight failed: '
    return [ConfigError(variable, prefix + part) for part in message[len(prefix):].split(' | ')]


def tls_preflight(endpoints, check_endpoint, hostaddr=None, timeout=10, redis_ca_pem=''):
    """The errors of the TLS preflight from the controller (tls_targets)."""
    results = []
    for target in tls_targets(endpoints, redis_ca_pem):
        report, error = check_endpoint(host=target['host'], port=target['port'], protocol=target['protocol'],
                                       ca_pem=target['ca_pem'], trust=target['trust'], hostaddr=hostaddr or None,
                                       timeout=timeout)
        results.append(dict(report or {}, name=target['name'], error=error))
    return _preflight_errors('config_tls_preflight', *_tls_check.summarize(results))


def in_cluster_preflight(client, v, model, run_job=None):
    """The errors of the TLS preflight made from the namespace by a short-lived Job (_tls_incluster): for databases
    that admit only the Kubernetes cluster. The Job carries host names, ports and CAs, no credential."""
    job = incluster.job_manifest(v['config_name'], v['config_namespace'], model['streaming_image'],
                                 tls_targets(model['tls_endpoints'], model['redis_ca_pem']), labels=model['labels'],
                                 timeout=v['config_tls_preflight_timeout'],
                                 image_pull_secrets=v['config_image_pull_secrets'])
    try:
        result = (run_job or incluster.run_job)(client, job)
    except incluster.InClusterError as exc:
        return [ConfigError('config_tls_preflight_in_cluster', 'TLS preflight failed: %s' % exc)]
    return _preflight_errors('config_tls_preflight_in_cluster', result['failed'], result['msg'] or '')
