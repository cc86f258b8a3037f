# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The TLS preflight from inside the cluster: a short-lived Job in the namespace, with Mastodon's streaming image.

This is a PRIVATE API of the fediops.mastodon collection: it may change or go away without notice
in any release. Do not use it from other collections.

Why: DigitalOcean trusted sources often admit only the Kubernetes cluster, so the controller (ansible-playbook,
AWX) cannot reach the databases, while the applications can. The Job makes the same checks as
`_tls_check.preflight` from where the applications run, with their runtime: node (the streaming image runs
`node ./streaming`), `NODE_SCRIPT` below, using only node's `net` and `tls`:
- PostgreSQL/PgBouncer (`protocol: postgres`): the 8-byte SSLRequest, `S`, then TLS; verified against the CA
  file mounted from the `<name>-db-ca` Secret (as PGSSLROOTCERT/NODE_EXTRA_CA_CERTS point at it in the pods),
  or against `ca_pem` passed inline when no Secret is given (e.g. before the first apply).
- Redis/Valkey (`protocol: redis`): TLS from the first byte; `trust: system` -> node's default store, as
  ioredis in the streaming server verifies `rediss://` (streaming/redis.js:48-60, `new Redis(redisUrl, ...)`,
  no CA option); `trust: ca` -> only the operator's CA (config_redis_ca_pem), inline.
The script prints one JSON line `{"fediops_tls_check": {...}}` and writes it to the termination message too,
so the result is read from the pod status without the `pods/log` permission.

job_manifest() builds the Job; run_job() creates it, waits, reads the result and deletes it; parse_job_output()
and job_failure_message() turn what the Job left into the same result shape as `_tls_check.preflight`.
"""

from __future__ import annotations

import json
import secrets
import time

from ansible_collections.fediops.mastodon.plugins.module_utils._tls_check import (
    UNREACHABLE_KINDS, failure_message, summarize, validate_endpoints)

CONTAINER = 'tls-check'
RESULT_KEY = 'fediops_tls_check'
CA_FILE_NAME = 'ca.crt'  # the key of the <name>-db-ca Secret (roles/config/templates/manifests.yml.j2)
# Mastodon's images run as uid/gid 991 (Dockerfile:45-47, streaming/Dockerfile:29-31).
MASTODON_UID = 991

# node's error codes (err.code, or the TLS socket's authorizationError) -> _tls_check kinds.
_NODE_KINDS = {
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE': 'unknown_ca',
    'UNABLE_TO_GET_ISSUER_CERT_LOCALLY': 'unknown_ca',
    'UNABLE_TO_GET_ISSUER_CERT': 'unknown_ca',
    'SELF_SIGNED_CERT_IN_CHAIN': 'unknown_ca',
    'DEPTH_ZERO_SELF_SIGNED_CERT': 'unknown_ca',
    'CERT_HAS_EXPIRED': 'expired',
    'CERT_NOT_YET_VALID': 'not_yet_valid',
    'ERR_TLS_CERT_ALTNAME_INVALID': 'hostname_mismatch',
    'ECONNREFUSED': 'connection_refused',
    'ETIMEDOUT': 'timeout',
    'ENOTFOUND': 'dns',
    'EAI_AGAIN': 'dns',
    'EHOSTUNREACH': 'no_route',
    'ENETUNREACH': 'no_route',
    'ECONNRESET': 'connection',
    'NO_TLS': 'no_tls',
    'PROTOCOL': 'protocol',
    'CA_INVALID': 'ca_invalid',
}

# The checker run by node in the Job (and by the tests with the machine's node). CommonJS, node >= 18, no
# dependencies. Input: FEDIOPS_TLS_ENDPOINTS (JSON list of {name, host, port, protocol, trust, ca_file|ca_pem,
# server_name?, hostaddr?}), FEDIOPS_TLS_TIMEOUT (seconds). Exit 0 when every endpoint verified, 1 otherwise.
NODE_SCRIPT = r"""'use strict';
const fs = require('fs');
const net = require('net');
const tls = require('tls');

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]);
const timeoutMs = Math.round(1000 * Number(process.env.FEDIOPS_TLS_TIMEOUT || 10));

function fail(code, message) {
  return Object.assign(new Error(message), { code });
}

function withTimeout(sock, what, reject) {
  return setTimeout(() => {
    sock.destroy();
    reject(fail('ETIMEDOUT', `timeout: ${what} within ${timeoutMs} ms`));
  }, timeoutMs);
}

function connectTcp(ep) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: ep.hostaddr || ep.host, port: ep.port });
    const timer = withTimeout(sock, `no connection to ${ep.hostaddr || ep.host}:${ep.port}`, reject);
    sock.once('connect', () => { clearTimeout(timer); resolve(sock); });
    sock.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

// PostgreSQL: SSLRequest, then the one-byte answer (S: go on with TLS; N: ssl is off).
function sslRequest(sock) {
  return new Promise((resolve, reject) => {
    const timer = withTimeout(sock, 'no answer to the SSLRequest', reject);
    sock.once('data', (data) => {
      clearTimeout(timer);
      sock.pause();
      const answer = data.toString('latin1', 0, 1);
      if (answer === 'S') return resolve(sock);
      sock.destroy();
      return reject(answer === 'N' ? fail('NO_TLS', 'the server refuses TLS (it answered N to the SSLRequest)')
        : fail('PROTOCOL', 'unexpected answer to the SSLRequest: not a PostgreSQL server'));
    });
    sock.once('close', () => { clearTimeout(timer); reject(fail('PROTOCOL', 'the server closed the connection after the SSLRequest')); });
    sock.write(SSL_REQUEST);
  });
}

function caFor(ep) {
  if (ep.trust !== 'ca') return undefined; // node's default store, as ioredis/pg use it
  try {
    return ep.ca_file ? fs.readFileSync(ep.ca_file, 'utf8') : ep.ca_pem;
  } catch (err) {
    throw fail('CA_INVALID', `the CA file ${ep.ca_file} cannot be read: ${err.message}`);
  }
}

// TLS as node's tls.connect verifies it (chain, validity, then the name), with the chain kept for the report.
function handshake(ep, sock, ca) {
  const servername = ep.server_name || ep.host;
  const options = { socket: sock, servername, rejectUnauthorized: false, ca };
  return new Promise((resolve, reject) => {
    const tlsSock = tls.connect(options);
    const timer = withTimeout(tlsSock, 'no TLS handshake', reject);
    tlsSock.once('error', (err) => { clearTimeout(timer); reject(err); });
    tlsSock.once('secureConnect', () => {
      clearTimeout(timer);
      const cert = tlsSock.getPeerCertificate() || {};
      const dn = (name) => (name ? Object.entries(name).map(([k, v]) => `${k}=${v}`).join(',') : null);
      const report = {
        subject: dn(cert.subject),
        issuer: dn(cert.issuer),
        names: cert.subjectaltname || null,
        not_after: cert.valid_to ? new Date(cert.valid_to).toISOString() : null,
        tls_version: tlsSock.getProtocol(),
      };
      if (cert.valid_to) report.days_left = Math.floor((new Date(cert.valid_to) - Date.now()) / 86400000);
      // node sets authorizationError to a code: the chain's, else the name check's (ERR_TLS_CERT_ALTNAME_INVALID).
      const code = tlsSock.authorized ? null : String(tlsSock.authorizationError);
      let error = tls.checkServerIdentity(servername, cert) || null;
      if (code && !(error && error.code === code)) {
        error = fail(code, `certificate verification failed: ${code}`);
      }
      tlsSock.destroy();
      if (error) {
        error.report = report;
        return reject(error);
      }
      return resolve(report);
    });
  });
}

async function check(ep) {
  const base = {
    name: ep.name, host: ep.host, server_name: ep.server_name || ep.host, port: ep.port, protocol: ep.protocol, trust: ep.trust,
  };
  try {
    const ca = caFor(ep);
    let sock = await connectTcp(ep);
    if (ep.protocol === 'postgres') sock = await sslRequest(sock);
    const report = await handshake(ep, sock, ca);
    return Object.assign(base, { ok: true }, report);
  } catch (err) {
    return Object.assign(base, err.report || {}, {
      ok: false, code: err.code ? String(err.code) : null, message: String(err.message || err).slice(0, 300),
    });
  }
}

async function main() {
  const endpoints = JSON.parse(process.env.FEDIOPS_TLS_ENDPOINTS || '[]');
  const results = [];
  for (const ep of endpoints) results.push(await check(ep));
  const line = JSON.stringify({ fediops_tls_check: { node: process.version, results } });
  process.stdout.write(line + '\n');
  try { fs.writeFileSync('/dev/termination-log', line); } catch (err) { /* not in a pod */ }
  process.exitCode = results.every((r) => r.ok) ? 0 : 1;
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exitCode = 2;
});
"""


class InClusterError(Exception):
    """The Job could not be run or left no result; the message says what happened."""


def container_endpoints(endpoints, ca_secret=None, ca_mount_dir='/etc/mastodon/db-ca'):
    """Endpoints as the script in the pod gets them: PostgreSQL's CA as the mounted Secret file when a Secret is
    named (what the applications read), other CAs inline (they are certificates, not secrets)."""
    ca_file = '%s/%s' % (ca_mount_dir.rstrip('/'), CA_FILE_NAME)
    out = []
    for endpoint in validate_endpoints(endpoints):
        item = dict((k, v) for k, v in endpoint.items() if v is not None)
        if item['trust'] == 'ca' and item['protocol'] == 'postgres' and ca_secret:
            item.pop('ca_pem', None)
            item['ca_file'] = ca_file
        out.append(item)
    return out


def job_name(name, suffix=None):
    return '%s-tls-check-%s' % (name, suffix or secrets.token_hex(3))


def job_manifest(name, namespace, image, endpoints, ca_secret=None, ca_mount_dir='/etc/mastodon/db-ca', labels=None,
                 service_account=None, timeout=10, pod_annotations=None, image_pull_secrets=None, suffix=None):
    """The Job (batch/v1) that checks `endpoints` (as `_tls_check.preflight` takes them) from the namespace.

    `image` is the streaming image (node); `ca_secret` the `<name>-db-ca` Secret to mount at `ca_mount_dir`
    (None: the PostgreSQL CA is passed inline). No credential goes into the Job: only host names, ports and CAs.
    """
    items = container_endpoints(endpoints, ca_secret, ca_mount_dir)
    labels = dict(labels or {})
    labels.update({'app.kubernetes.io/component': 'tls-check'})
    pod_spec = {
        'restartPolicy': 'Never',
        'automountServiceAccountToken': False,
        'securityContext': {'runAsUser': MASTODON_UID, 'runAsGroup': MASTODON_UID, 'runAsNonRoot': True,
                            'seccompProfile': {'type': 'RuntimeDefault'}},
        'containers': [{
            'name': CONTAINER,
            'image': image,
            'command': ['node', '-e', NODE_SCRIPT],
            'env': [{'name': 'FEDIOPS_TLS_ENDPOINTS', 'value': json.dumps(items, sort_keys=True)},
                    {'name': 'FEDIOPS_TLS_TIMEOUT', 'value': str(timeout)}],
            'terminationMessagePolicy': 'FallbackToLogsOnError',
            'resources': {'requests': {'cpu': '10m', 'memory': '64Mi'}, 'limits': {'memory': '128Mi'}},
            'securityContext': {'allowPrivilegeEscalation': False, 'readOnlyRootFilesystem': True,
                                'capabilities': {'drop': ['ALL']}},
        }],
    }
    if service_account:
        pod_spec['serviceAccountName'] = service_account
    if image_pull_secrets:
        pod_spec['imagePullSecrets'] = [{'name': secret} for secret in image_pull_secrets]
    if ca_secret:
        pod_spec['volumes'] = [{'name': 'db-ca', 'secret': {'secretName': ca_secret, 'defaultMode': 0o444}}]
        pod_spec['containers'][0]['volumeMounts'] = [{'name': 'db-ca', 'mountPath': ca_mount_dir, 'readOnly': True}]
    template_metadata = {'labels': labels}
    if pod_annotations:
        template_metadata['annotations'] = dict(pod_annotations)
    return {
        'apiVersion': 'batch/v1',
        'kind': 'Job',
        'metadata': {'name': job_name(name, suffix), 'namespace': namespace, 'labels': labels},
        'spec': {
            'backoffLimit': 0,
            'activeDeadlineSeconds': int(60 + 3 * float(timeout) * max(1, len(items))),
            'ttlSecondsAfterFinished': 600,  # cleaned up by the cluster even if the controller dies meanwhile
            'template': {'metadata': template_metadata, 'spec': pod_spec},
        },
    }


def node_result_kind(code):
    return _NODE_KINDS.get(code or '', 'handshake' if code and code.startswith('ERR_') else 'verify')


def _in_cluster_error(result):
    """A failed result of the script -> (kind, message), worded as the controller's check words it."""
    kind = node_result_kind(result.get('code'))
    server_name = result.get('server_name') or result.get('host')
    trust = 'CA' if result.get('trust') == 'ca' else 'system store'
    target = '%s:%s (%s, trust %s, from the cluster)' % (server_name, result.get('port'), result.get('protocol'), trust)
    names = [name.split(':', 1)[-1].strip() for name in (result.get('names') or '').split(',') if name.strip()]
    leaf = dict(issuer=result.get('issuer') or 'unknown', names=names, subject=result.get('subject') or server_name,
                expired=kind == 'expired', not_after=result.get('not_after'), days_left=result.get('days_left') or 0)
    detail = result.get('message') or result.get('code')
    return kind, failure_message(kind, target, server_name, [leaf] if result.get('issuer') else [], None,
                                 detail, protocol=result.get('protocol'), trust=result.get('trust'))


def cluster_unreachable_message(names, details, where='the Kubernetes cluster'):
    return ('%s cannot reach %s either (%s): the applications will not reach them. Add the cluster to the databases\' '
            'trusted sources (rule type k8s, value the cluster id), or check the host names and ports.'
            % (where, ', '.join(names), '; '.join(details)))


def parse_job_output(text, job='the in-cluster TLS check'):
    """The script's output (termination message or log) -> the result shape of `_tls_check.preflight`.

    Raises InClusterError when the text holds no result line.
    """
    data = None
    for line in reversed((text or '').strip().splitlines()):
        line = line.strip()
        if line.startswith('{') and RESULT_KEY in line:
            try:
                data = json.loads(line)[RESULT_KEY]
                break
            except (ValueError, KeyError, TypeError):
                continue
    if data is None:
        raise InClusterError('%s printed no result%s' % (job, ': %s' % text.strip()[-500:] if (text or '').strip() else ''))
    results = []
    for item in data.get('results', []):
        result = dict(item, verified=bool(item.get('ok')), error_kind=None, error=None)
        if not result['verified']:
            result['error_kind'], result['error'] = _in_cluster_error(item)
        result['unreachable'] = result['error_kind'] in UNREACHABLE_KINDS
        results.append(result)
    failed, msg = summarize(results, where='the Kubernetes cluster', unreachable=cluster_unreachable_message)
    return dict(failed=failed, msg=msg, results=results, where='cluster', node=data.get('node'),
                unreachable=[r['name'] for r in results if r['unreachable']])


def job_failure_message(job, pods):
    """Why a Job ended without a result: the container's termination message or reason, else the Job's condition."""
    name = '%s/%s' % (job['metadata'].get('namespace'), job['metadata']['name'])
    details = []
    for pod in pods:
        for status in (pod.get('status') or {}).get('containerStatuses') or []:
            state = status.get('state') or {}
            terminated = state.get('terminated') or (status.get('lastState') or {}).get('terminated')
            waiting = state.get('waiting')
            if terminated:
                details.append('%s (exit code %s): %s' % (
                    terminated.get('reason') or 'terminated', terminated.get('exitCode'),
                    terminated.get('message') or 'no message'))
            elif waiting:
                details.append('%s: %s' % (waiting.get('reason'), waiting.get('message') or 'waiting'))
    if not details:
        for condition in (job.get('status') or {}).get('conditions') or []:
            if condition.get('status') == 'True' and condition.get('type') in ('Failed', 'FailureTarget'):
                details.append('%s: %s' % (condition.get('reason'), condition.get('message') or 'no message'))
    return 'the in-cluster TLS check Job %s ended without a result: %s' % (name, '; '.join(details) or 'no pod status')


def _finished(job):
    for condition in (job.get('status') or {}).get('conditions') or []:
        if condition.get('status') == 'True' and condition.get('type') in ('Complete', 'Failed'):
            return condition['type']
    return None


def _termination_text(pods):
    texts = []
    for pod in pods:
        for status in (pod.get('status') or {}).get('containerStatuses') or []:
            terminated = (status.get('state') or {}).get('terminated') or {}
            if terminated.get('message'):
                texts.append(terminated['message'])
    return '\n'.join(texts)


def run_job(client, job, wait_timeout=180, poll_interval=1.0, sleep=time.sleep, clock=time.monotonic):
    """Create the Job with `client` (a _kube.KubeClient), wait for it, read its result, delete it (always).

    Returns the result of parse_job_output; raises InClusterError (Job not created, no result, time out).
    """
    from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError

    namespace, name = job['metadata']['namespace'], job['metadata']['name']
    jobs = client.path('batch/v1', 'Job', namespace)
    status, body = client.request('POST', jobs, body=job)
    if status not in (200, 201):
        raise InClusterError('cannot create the in-cluster TLS check Job %s/%s: HTTP %s %s'
                             % (namespace, name, status, (body or {}).get('message') if isinstance(body, dict) else body))
    try:
        deadline = clock() + wait_timeout
        while True:
            status, current = client.request('GET', '%s/%s' % (jobs, name))
            if status == 200 and _finished(current):
                break
            if clock() > deadline:
                raise InClusterError('the in-cluster TLS check Job %s/%s did not finish within %ss (image pull? quota?)'
                                     % (namespace, name, wait_timeout))
            sleep(poll_interval)
        status, pod_list = client.request('GET', client.path('v1', 'Pod', namespace),
                                          query={'labelSelector': 'job-name=%s' % name})
        pods = pod_list.get('items', []) if status == 200 and isinstance(pod_list, dict) else []
        text = _termination_text(pods)
        if RESULT_KEY not in text:
            for pod in pods:
                try:
                    status, log = client.request('GET', client.path('v1', 'Pod', namespace, pod['metadata']['name'], 'log'),
                                                 query={'container': CONTAINER})
                except KubeError:
                    continue
                if status == 200 and log:
                    text += '\n' + (log if isinstance(log, str) else json.dumps(log))
        try:
            return parse_job_output(text, 'the in-cluster TLS check Job %s/%s' % (namespace, name))
        except InClusterError:
            raise InClusterError(job_failure_message(current, pods))
    finally:
        try:
            client.request('DELETE', '%s/%s' % (jobs, name), query={'propagationPolicy': 'Background'})
        except KubeError:
            pass
