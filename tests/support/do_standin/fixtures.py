# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the DigitalOcean API stand-in, generated at run time.

Clusters, connection pools and one private CA per cluster (like DigitalOcean's), plus the broken
certificates the fault injection serves. Private keys are made in memory and thrown away; nothing
here is a real credential (passwords are random `standin-...` strings).
"""
from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOMAIN = 'db.standin.invalid'
# The DOKS cluster the tests deploy to: the mastodon-* databases admit it with a rule of type k8s,
# staging-pg only an office address (a firewall that omits it).
KUBERNETES_CLUSTER_ID = 'bd5f5959-5e1e-4205-a714-a914373942af'


def _cert(common_name, days_before, days_after, is_ca=True, issuer_key=None, issuer_name=None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer_name or name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=days_before))
               .not_valid_after(now + datetime.timedelta(days=days_after))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True))
    if is_ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def b64(data):
    return base64.b64encode(data).decode('ascii')


def _connection(scheme, user, password, host, port, database, sslmode=True):
    query = '?sslmode=require' if scheme == 'postgresql' else ''
    uri = '%s://%s:%s@%s:%d/%s%s' % (scheme, user, password, host, port, database, query)
    if scheme == 'https':  # OpenSearch: opensearch_connection.yml's example has no path
        uri = '%s://%s:%s@%s:%d' % (scheme, user, password, host, port)
    return dict(uri=uri, database=database, host=host, port=port, user=user, password=password, ssl=sslmode)


def _cluster(name, engine, version, semver, tags, num_nodes):
    cid = str(uuid.uuid4())
    password = 'standin-' + secrets.token_hex(8)
    slug = '%s-do-user-0-0' % name
    if engine == 'pg':
        scheme, port, user, database = 'postgresql', 25060, 'doadmin', 'defaultdb'
        db_names = ['defaultdb', 'mastodon_production']
    elif engine == 'opensearch':
        scheme, port, user, database = 'https', 25060, 'doadmin', ''
        db_names = None
    else:
        scheme, port, user, database = 'rediss', 25061, 'default', ''
        db_names = None
    cluster = dict(
        id=cid, name=name, engine=engine, version=version, semantic_version=semver, num_nodes=num_nodes,
        size='db-s-2vcpu-4gb', region='ams3', status='online', created_at='2024-05-01T10:00:00Z',
        private_network_uuid=str(uuid.uuid4()), tags=tags, db_names=db_names,
        connection=_connection(scheme, user, password, '%s.%s' % (slug, DOMAIN), port, database),
        private_connection=_connection(scheme, user, password, 'private-%s.%s' % (slug, DOMAIN), port, database),
        users=[dict(name=user, role='primary', password=password)],
        maintenance_window=dict(day='sunday', hour='03:00:00', pending=False, description=[]),
        project_id=str(uuid.uuid4()), storage_size_mib=20480,
        version_end_of_life='', version_end_of_availability='',
    )
    if num_nodes > 1:
        cluster['standby_connection'] = _connection(scheme, user, password, 'replica-%s.%s' % (slug, DOMAIN), port, database)
        cluster['standby_private_connection'] = _connection(scheme, user, password, 'private-replica-%s.%s' % (slug, DOMAIN),
                                                            port, database)
    return cluster


def _pool(cluster, name, mode, size, db, user):
    conn = cluster['connection']
    pconn = cluster['private_connection']
    password = conn['password']
    return dict(
        name=name, mode=mode, size=size, db=db, user=user,
        connection=_connection('postgresql', user, password, conn['host'], 25061, name),
        private_connection=_connection('postgresql', user, password, pconn['host'], 25061, name),
    )


def _rule(cluster, rule_type, value, description=None):
    """A trusted source as databases_list_firewall_rules answers it (models/firewall_rule.yml)."""
    rule = dict(uuid=str(uuid.uuid4()), cluster_uuid=cluster['id'], type=rule_type, value=value,
                created_at='2024-05-01T10:00:00Z')
    if description:
        rule['description'] = description
    return rule


BACKUP_HOUR, BACKUP_MINUTE = 3, 10


def _stamp(when):
    return when.strftime('%Y-%m-%dT%H:%M:%SZ')


def _backups(newest_age_hours, count, now=None, size=0.03357696):
    """Daily backups as databases_list_backups lists them (models/backup.yml: created_at, size_gigabytes), oldest
    first like the operation's example; the newest is newest_age_hours old."""
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    newest = now - datetime.timedelta(hours=newest_age_hours)
    return [dict(created_at=_stamp(newest - datetime.timedelta(days=index)), size_gigabytes=round(size + index * 0.0001, 8))
            for index in reversed(range(count))]


def backup_answers(clusters, now=None):
    """{cluster id: the databases_list_backups answer} for the PostgreSQL clusters; Valkey has none ("Backups are
    not supported for Caching or Valkey clusters", databases_list_backups.yml).

    mastodon-pg: a week of daily backups, the newest 5 hours old (fresh); staging-pg: the last one 3 days old
    (backups stopped: stale); the fillers: new clusters whose first backup is in progress (none yet).
    """
    schedule = dict(backup_hour=BACKUP_HOUR, backup_minute=BACKUP_MINUTE, backup_interval_hours=24)
    answers = {}
    for cluster in clusters:
        if cluster['engine'] not in ('pg', 'advanced_pg'):
            continue
        if cluster['name'] == 'mastodon-pg':
            answers[cluster['id']] = dict(backups=_backups(5, 7, now), scheduled_backup_time=schedule)
        elif cluster['name'] == 'staging-pg':
            answers[cluster['id']] = dict(backups=_backups(72, 5, now), scheduled_backup_time=schedule)
        else:
            answers[cluster['id']] = dict(backups=[], scheduled_backup_time=schedule, backup_progress='36')
    return answers


def generate(extra_clusters=0):
    """A fresh fixture set: two PostgreSQL clusters (one with a standby), one Valkey, one OpenSearch, optional fillers."""
    clusters = [
        _cluster('mastodon-pg', 'pg', '16', '16.4', ['mastodon', 'production'], 2),
        _cluster('mastodon-valkey', 'valkey', '8', '8.0.1', ['mastodon', 'production'], 1),
        _cluster('staging-pg', 'pg', '15', '15.8', ['staging'], 1),
        # Managed OpenSearch: its certificate is signed by the project CA too, served at /ca like PostgreSQL's.
        _cluster('mastodon-search', 'opensearch', '2', '2.17.1', ['search'], 1),
    ]
    for index in range(extra_clusters):
        clusters.append(_cluster('filler-%02d' % index, 'pg', '16', '16.4', [], 1))
    pools = {}
    for cluster in clusters:
        if cluster['engine'] == 'pg':
            pools[cluster['id']] = [
                _pool(cluster, 'mastodon', 'transaction', 20, 'mastodon_production', 'doadmin'),
                _pool(cluster, 'mastodon-session', 'session', 5, 'mastodon_production', 'doadmin'),
            ]
        else:
            pools[cluster['id']] = []
    firewall = {}
    for cluster in clusters:
        rules = []
        if cluster['name'].startswith('mastodon-pg'):
            rules = [_rule(cluster, 'k8s', KUBERNETES_CLUSTER_ID), _rule(cluster, 'ip_addr', '203.0.113.7', 'office')]
        elif cluster['name'] == 'staging-pg':
            rules = [_rule(cluster, 'ip_addr', '203.0.113.7', 'office'), _rule(cluster, 'tag', 'backend')]
        firewall[cluster['id']] = rules  # mastodon-valkey and the fillers: no rules, open to every source
    cas = {c['id']: b64(_cert('%s Project CA' % c['id'], 30, 3650)) for c in clusters}
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'standin issuing CA')])
    variants = {
        'non_ca': b64(_cert('leaf.%s' % DOMAIN, 1, 365, is_ca=False, issuer_key=issuer_key, issuer_name=issuer_name)),
        'expired': b64(_cert('expired Project CA', 400, -5)),
        'expiring': b64(_cert('expiring Project CA', 300, 10)),
        'not_yet_valid': b64(_cert('future Project CA', -10, 365)),
        'bad_base64': 'LS0tLS1CRUdJTi!!not*base64%%',
        'not_pem': b64(b'this is not a certificate\n'),
        'garbage_pem': b64(b'-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n'),
    }
    return dict(clusters=clusters, pools=pools, cas=cas, variants=variants, firewall=firewall,
                backups=backup_answers(clusters), kubernetes_cluster_id=KUBERNETES_CLUSTER_ID)


def load_or_generate(path):
    """Load a fixture file, or generate fixtures and write them there (no private keys inside)."""
    if path and os.path.exists(path):
        with open(path, encoding='utf-8') as handle:
            return json.load(handle)
    data = generate()
    if path:
        with open(path, 'w', encoding='utf-8') as handle:
            json.dump(data, handle, indent=2)
    return data


def ca_pem(fixtures, cluster_id):
    return base64.b64decode(fixtures['cas'][cluster_id]).decode('ascii')
