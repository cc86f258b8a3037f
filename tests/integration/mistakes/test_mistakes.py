# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Acceptance of issue 18: operator mistakes (cases.yml), each run END TO END as an upgrade of an existing install.

A good install (v4.5.2, playbooks/deploy.yml against the local Kubernetes API server and the DigitalOcean API
stand-in) is made once in each of two namespaces; then every case is a deploy of the good variables at v4.5.3
plus ONE mistake. To keep the run short, the cases of a namespace run in batches: one `ansible-playbook
playbooks/deploy.yml` whose inventory holds each case as a host with its own variables (deploy_hosts=all), two
batches at a time (one per namespace, so that writes are told apart by namespace). The API server's audit log
(logs/audit.log beside the kubeconfig, read with molecule/default/files/audit_writes.py: create/update/patch/
delete by anyone but the cluster's controllers, dry-run requests left out) is read for each batch's window. A
batch without writes proves that none of its cases wrote; a batch with writes is narrowed down (Corpus.run_batch)
until each write belongs to one case. Each case is classified:

    named     rejected before any write, the variable named in the message (the target)
    unnamed   rejected before any write, the variable not named
    late      rejected after writes
    accepted  the deploy succeeded

A control run (the good variables at v4.5.3, no mistake) must succeed WITH writes: the audit reading can fail.
No output may echo a secret (the DigitalOcean token, the database password, SECRET_KEY_BASE) or a line of the
private key appended to a CA.
"""
from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DEPLOY = os.path.join(COLLECTION_ROOT, 'playbooks', 'deploy.yml')
sys.path.insert(0, os.path.join(COLLECTION_ROOT, 'molecule', 'default', 'files'))
sys.path.insert(0, os.path.join(COLLECTION_ROOT, 'tests', 'support'))
from do_standin.fixtures import KUBERNETES_CLUSTER_ID as STANDIN_KUBERNETES_CLUSTER_ID  # noqa: E402  pylint: disable=wrong-import-position

from audit_writes import writes as audit_writes  # noqa: E402  pylint: disable=wrong-import-position

INSTALLED_VERSION = 'v4.5.2'
UPGRADE_VERSION = 'v4.5.3'
WORKERS = 2  # a 2-core machine: two ansible-playbook processes at a time
BATCH = 18  # cases per ansible-playbook
FORKS = 4  # cases of a batch at a time
RUN_TIMEOUT = 300
CLASSES = ('named', 'unnamed', 'late', 'accepted')
CLASS_TITLES = {'named': 'rejected before any write, variable named',
                'unnamed': 'rejected before any write, variable NOT named',
                'late': 'rejected AFTER writes', 'accepted': 'accepted'}


def load_cases():
    with open(os.path.join(HERE, 'cases.yml'), encoding='utf-8') as handle:
        cases = yaml.safe_load(handle)
    ids = [case['id'] for case in cases]
    assert len(ids) == len(set(ids)), 'duplicate case ids'
    return cases


ALL_CASES = load_cases()
# FEDIOPS_MISTAKES=id,id runs only those cases (to debug one); the default is every case.
CASES = [case for case in ALL_CASES if not os.environ.get('FEDIOPS_MISTAKES')
         or case['id'] in os.environ['FEDIOPS_MISTAKES'].split(',')]


def ca_pems():
    """The bad CAs, made now (no key is committed): {kind: (pem, private key text that must never be echoed)}."""
    import trustme  # pylint: disable=import-outside-toplevel
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel
    from cryptography.x509.oid import NameOID  # pylint: disable=import-outside-toplevel

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'expired project CA')])
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=400)).not_valid_after(now - datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(key, hashes.SHA256()))
    authority = trustme.CA()
    leaf = authority.issue_cert('db.example.test').cert_chain_pems[0].bytes().decode()
    ca_pem = authority.cert_pem.bytes().decode()
    private_key = authority.private_key_pem.bytes().decode()
    garbage = '-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n' % base64.b64encode(
        secrets.token_bytes(300)).decode()
    return {
        'expired': (expired.public_bytes(serialization.Encoding.PEM).decode(), ''),
        'leaf': (leaf, ''),
        'garbage': (garbage, ''),
        'with_key': (ca_pem + private_key, private_key),
        'path': ('/etc/ssl/certs/do-project-ca.crt', ''),
    }


def _private_key_lines(text):
    return [line for line in text.splitlines() if line and not line.startswith('-----')]


class Corpus(object):
    """Runs the good installs, the cases (in batches) and the control run; keeps each case's outcome.

    A batch is ONE ansible-playbook in which every case is a host of the inventory with its variables as host
    variables (deploy.yml runs on deploy_hosts=all), so one process start serves many cases. A batch whose audit
    window shows no write proves that every case of it wrote nothing. A batch that wrote is split: the install
    is put back, and the cases that failed are run again, in halves, until each write is pinned to one case.
    """

    def __init__(self, kube_cluster, standin, workdir):
        self.kube = kube_cluster
        self.standin = standin
        self.workdir = workdir
        self.audit_log = os.path.join(os.path.dirname(os.path.abspath(kube_cluster.kubeconfig)), 'logs', 'audit.log')
        self.secret_key_base = secrets.token_hex(64)
        password = standin.cluster('mastodon-pg')['connection']['password']
        self.secrets = {'the DigitalOcean token': standin.token, 'the database password': password,
                        'SECRET_KEY_BASE': self.secret_key_base}
        self.pems = ca_pems()
        tag = uuid.uuid4().hex[:6]
        self.namespaces = ['mistakes-%s-%d' % (tag, i) for i in range(WORKERS)]
        self.lock = threading.Lock()
        self.counter = 0
        self.outcomes = {}
        self.install_seconds = []
        self.batch_seconds = []
        self.control = None

    def good_vars(self, namespace, version):
        return {
            'config_namespace': namespace,
            'config_name': 'mastodon',
            'config_mastodon_version': version,
            'config_local_domain': 'social.example.test',
            'config_streaming_host': 'streaming.social.example.test',
            'config_cdn_host': 'cdn.social.example.test',
            'config_database_source': 'digitalocean',
            'config_do_database_cluster': 'mastodon-pg',
            'config_do_redis_cluster': 'mastodon-valkey',
            'config_do_api_base_url': self.standin.base_url,
            'config_do_ca_path': self.standin.ca_file,
            # The stand-in's mastodon-pg admits this DOKS cluster (trusted source k8s:<id>), as a production one would.
            'config_do_kubernetes_cluster_id': STANDIN_KUBERNETES_CLUSTER_ID,
            # the stand-in's database hosts (*.standin.invalid) cannot be connected to
            'config_tls_preflight': False,
            'config_media_ephemeral': True,
            'config_secrets': {'SECRET_KEY_BASE': self.secret_key_base},
            'config_env': {'SINGLE_USER_MODE': False, 'DEFAULT_LOCALE': 'en'},
            'web_replicas': 2,
            'web_pdb_enabled': True,
            'streaming_replicas': 2,
            'sidekiq_workers': [
                {'name': 'scheduler', 'queues': ['scheduler'], 'concurrency': 5, 'replicas': 1},
                {'name': 'default', 'queues': ['default,8', 'push,6', 'ingress,4', 'mailers,2', 'pull', 'fasp'],
                 'concurrency': 25, 'replicas': 2},
            ],
            'web_wait_timeout': 120, 'streaming_wait_timeout': 120, 'sidekiq_wait_timeout': 120,
            'migrations_wait_timeout': 120,
        }

    def case_vars(self, case, namespace):
        extra = self.good_vars(namespace, UPGRADE_VERSION)
        for name in case.get('unset', []):
            extra.pop(name, None)
        extra.update(case.get('vars') or {})
        if case.get('big_value'):  # a value too large to write in cases.yml
            big = case['big_value']
            extra[big['variable']] = dict(extra.get(big['variable']) or {}, **{big['key']: 'a' * big['bytes']})
        if case.get('wrong_token'):  # a token of DigitalOcean's form that the stand-in does not know, made now
            extra['config_do_api_token'] = 'dop_v1_' + secrets.token_hex(32)
        if case.get('ca'):
            extra['config_db_ca_pem'] = self.pems[case['ca']][0]
        return extra

    def run(self, hosts):
        """ONE ansible-playbook of playbooks/deploy.yml on the hosts {name: variables} (json callback):
        ({host: its result of the deploy, {} when it did not get there}, returncode, stdout, stderr, seconds)."""
        with self.lock:
            self.counter += 1
            directory = os.path.join(self.workdir, 'run-%03d' % self.counter)
        os.makedirs(directory)
        inventory = os.path.join(directory, 'inventory.json')
        host_vars = dict((name, dict(variables, ansible_connection='local', ansible_python_interpreter=sys.executable))
                         for name, variables in hosts.items())
        fd = os.open(inventory, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # the variables hold secrets
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            json.dump({'all': {'hosts': host_vars}}, handle)
        env = dict(os.environ)
        env.update({
            'ANSIBLE_COLLECTIONS_PATH': os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_ROOT))),
            'ANSIBLE_STDOUT_CALLBACK': 'json', 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_LOCALHOST_WARNING': 'false',
            'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false', 'ANSIBLE_HOST_KEY_CHECKING': 'false',
            'K8S_AUTH_KUBECONFIG': self.kube.kubeconfig, 'DIGITALOCEAN_ACCESS_TOKEN': self.standin.token,
        })
        start = time.monotonic()
        done = subprocess.run(['ansible-playbook', '-i', inventory, '--forks', str(FORKS), DEPLOY,
                               '-e', json.dumps({'deploy_hosts': 'all'})],
                              capture_output=True, text=True, env=env, cwd=directory, timeout=RUN_TIMEOUT, check=False)
        seconds = time.monotonic() - start
        return host_results(done.stdout, hosts), done.returncode, done.stdout, done.stderr, seconds

    def audit_offset(self):
        return os.path.getsize(self.audit_log)

    def writes_since(self, offset, namespaces):
        time.sleep(0.2)  # the audit log backend writes each event as its request completes
        with open(self.audit_log, 'rb') as handle:
            handle.seek(offset)
            lines = handle.read().decode('utf-8', 'replace').splitlines()
        found = []
        for namespace in sorted(set(namespaces)):
            found += audit_writes(lines, namespace)
        return found

    def install(self, namespace, restore=False):
        good = self.good_vars(namespace, INSTALLED_VERSION)
        # A case that got through (e.g. LOCAL_DOMAIN through config_env) may have changed the domain: put it back.
        good['config_allow_local_domain_change'] = restore
        results, code, out, err, seconds = self.run({'good-install': good})
        self.install_seconds.append(seconds)
        assert code == 0, 'the good install failed in %s:\n%s\n%s' % (
            namespace, failure_message(results.get('good-install')), err[-2000:])

    def run_batch(self, cases, namespace):
        """Classify the cases (run together); returns after every case has its outcome."""
        hosts = dict((case['id'], self.case_vars(case, namespace)) for case in cases)
        offset = self.audit_offset()
        results, dummy, out, err, seconds = self.run(hosts)
        self.batch_seconds.append((len(cases), seconds))
        found = self.writes_since(offset, [namespace] + [str(v.get('config_namespace')) for v in hosts.values()])
        if found:
            self.install(namespace, restore=True)  # as it was, for what runs next in this namespace
        failed = []
        for case in cases:
            result = results.get(case['id']) or {}
            if not result.get('failed') and result:
                self.outcome(case, 'accepted', result, err, found, seconds)
            elif not found:
                message = failure_message(result) or err.strip()
                self.outcome(case, 'named' if case['variable'] in message else 'unnamed', result, err, [], seconds)
            else:
                failed.append(case)
        if failed and len(failed) == len(cases) == 1:
            self.outcome(failed[0], 'late', results.get(failed[0]['id']) or {}, err, found, seconds)
        elif failed and len(failed) < len(cases):
            self.run_batch(failed, namespace)  # the writes may all be the accepted cases'
        elif failed:
            half = len(failed) // 2
            self.run_batch(failed[:half], namespace)
            self.run_batch(failed[half:], namespace)

    def outcome(self, case, verdict, result, stderr, found, seconds):
        text = json.dumps(result) + stderr
        leaks = [what for what, value in self.secrets.items() if value and value in text]
        if case.get('ca') and any(line in text for line in _private_key_lines(self.pems[case['ca']][1])):
            leaks.append('the private key')
        self.outcomes[case['id']] = {'case': case, 'verdict': verdict, 'writes': found, 'leaks': leaks,
                                     'message': failure_message(result) or stderr.strip(), 'seconds': seconds,
                                     'failed': bool(result.get('failed'))}

    def run_worker(self, index, cases):
        namespace = self.namespaces[index]
        for first in range(0, len(cases), BATCH):
            self.run_batch(cases[first:first + BATCH], namespace)

    def run_all(self):
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(self.install, self.namespaces))
            shares = [CASES[i::WORKERS] for i in range(WORKERS)]
            list(pool.map(lambda i: self.run_worker(i, shares[i]), range(WORKERS)))
        offset = self.audit_offset()
        results, code, out, err, seconds = self.run({'control': self.good_vars(self.namespaces[0], UPGRADE_VERSION)})
        self.control = {'returncode': code, 'writes': self.writes_since(offset, [self.namespaces[0]]),
                        'message': failure_message(results.get('control')) or err, 'seconds': seconds}

    def table(self):
        lines = ['%-42s %-10s %-9s %-34s %s' % ('case', 'role', 'class', 'variable', 'writes / message')]
        for case in CASES:
            o = self.outcomes[case['id']]
            detail = ('%d writes in its batch: %s' % (len(o['writes']), ', '.join(sorted(set(
                '%s %s/%s' % (w['verb'], w['resource'], w['name']) for w in o['writes'])))[:200])
                if o['writes'] else first_line(o['message']))
            lines.append('%-42s %-10s %-9s %-34s %s' % (case['id'], case['role'], o['verdict'], case['variable'], detail))
        counts = dict((c, sum(1 for o in self.outcomes.values() if o['verdict'] == c)) for c in CLASSES)
        lines.append('')
        lines.append('%d cases; %s' % (len(CASES), '; '.join('%s: %d' % (CLASS_TITLES[c], counts[c]) for c in CLASSES)))
        for role in sorted(set(case['role'] for case in CASES)):
            own = [self.outcomes[c['id']]['verdict'] for c in CASES if c['role'] == role]
            lines.append('  %-10s %3d cases: %s' % (role, len(own), ', '.join('%s %d' % (c, own.count(c)) for c in CLASSES)))
        leaks = ['%s (%s)' % (i, ', '.join(o['leaks'])) for i, o in sorted(self.outcomes.items()) if o['leaks']]
        lines.append('secrets echoed: %s' % (', '.join(leaks) or 'none'))
        lines.append('control run (no mistake, %s -> %s): rc=%s, %d writes, %.1f s' % (
            INSTALLED_VERSION, UPGRADE_VERSION, self.control['returncode'], len(self.control['writes']),
            self.control['seconds']))
        lines.append('good installs (%s: the first ones and each restore after a batch that wrote): %s s' % (
            INSTALLED_VERSION, ', '.join('%.1f' % s for s in self.install_seconds)))
        lines.append('batches (cases, seconds): %s' % ', '.join('%d/%.0f' % b for b in self.batch_seconds))
        return '\n'.join(lines)


def host_results(stdout, hosts):
    """{host: the result of its first failed task, else of its last task that ran, or {} } from the json callback's
    output (the deploy's Finish task runs after a failure too)."""
    out = dict((name, {}) for name in hosts)
    try:
        data = json.loads(stdout)
    except ValueError:
        return out
    for play in data.get('plays', []):
        for task in play.get('tasks', []):
            for name, result in task.get('hosts', {}).items():
                if name in out and not result.get('skipped') and not out[name].get('failed'):
                    out[name] = result
    return out


def failure_message(result):
    """The message of a failed deploy task (its json callback result)."""
    if not result or not result.get('failed'):
        return ''
    return str(result.get('msg', '')) or json.dumps(result, sort_keys=True)


def first_line(text):
    lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith('nothing was changed:'):
        return lines[1][:200]
    return (lines[0] if lines else '')[:200]


@pytest.fixture(scope='module')
def corpus(kube_cluster, do_standin_session, request):
    workdir = tempfile.mkdtemp(prefix='fediops-mistakes-')
    runner = Corpus(kube_cluster, do_standin_session, workdir)
    assert os.path.isfile(runner.audit_log), 'the local cluster has no audit log at %s' % runner.audit_log
    start = time.monotonic()
    try:
        runner.run_all()
        table = runner.table()
        request.config.mistakes_table = table + '\n(%d deploy runs in %.0f s)' % (runner.counter, time.monotonic() - start)
        yield runner
    finally:
        for namespace in runner.namespaces:
            kube_cluster.kubectl('delete', 'namespace', namespace, '--ignore-not-found', '--wait=false', check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def test_corpus_covers_every_role():
    assert len(ALL_CASES) >= 60
    assert set(case['role'] for case in ALL_CASES) == {'config', 'web', 'streaming', 'sidekiq', 'migrations'}


def test_control_run_writes(corpus):
    """The harness can see writes: the same upgrade without a mistake succeeds and is seen writing."""
    assert corpus.control['returncode'] == 0, corpus.control['message']
    assert corpus.control['writes'], 'the audit log shows no write of the control upgrade'


@pytest.mark.parametrize('case', CASES, ids=[case['id'] for case in CASES])
def test_mistake_rejected_before_any_write_naming_the_variable(corpus, case):
    outcome = corpus.outcomes[case['id']]
    assert not outcome['leaks'], 'the output echoes %s' % ', '.join(outcome['leaks'])
    assert outcome['verdict'] == 'named', '%s (failed=%s, %d writes in its batch: %s)\nexpected %s named; message:\n%s' % (
        CLASS_TITLES[outcome['verdict']], outcome['failed'], len(outcome['writes']),
        json.dumps(outcome['writes'])[:1500], case['variable'], outcome['message'][-3000:])
