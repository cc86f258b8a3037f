# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Kubernetes objects of a Mastodon deploy, built from the planner's model (PRIVATE: no API guarantees).

``build(model)`` takes the model of docs/dev/ARCHITECTURE.md section 6 and returns a ``Manifests``: a dict
``{component: [objects]}`` for the components ``config``, ``migrate-pre``, ``web``, ``streaming``, ``sidekiq``,
``migrate-post`` (in apply order), with two attributes:

* ``.objects`` -- the same dict (so callers may write ``build(model).objects``);
* ``.origins`` -- ``{(kind, name, path): variable}``: which role variable produced which part of an object.
  ``path`` is a dotted field path as the API server names fields in its errors
  (``spec.template.spec.containers[0].resources``). ``origin_of(origins, kind, name, field)`` finds the variable
  of a rejected field by the longest matching path prefix, so a dry-run rejection can name the variable.

``sidekiq_groups(workers, defaults)`` parses and checks ``sidekiq_workers`` into the model's ``sidekiq_groups``;
``media_storage_problem(model)`` says why uploads would be lost (no object storage and no volume), or None.
Both raise/return messages that name the variable and the field.

Facts from Mastodon's code (v4.6.5, see tests/data/mastodon/FACTS.md):
* both images run as uid/gid 991 (Dockerfile:45-47, streaming/Dockerfile:29-31); the working directory is
  /opt/mastodon, so Rails' ``tmp/`` is /opt/mastodon/tmp;
* the image sets MASTODON_SIDEKIQ_READY_FILENAME (Dockerfile:64-72) and config/initializers/sidekiq.rb:11-18
  touches ``tmp/<that name>`` once Sidekiq processes jobs: the readiness signal;
* without S3/Swift/Azure (config/initializers/paperclip.rb:38,118,142) uploads go to PAPERCLIP_ROOT_PATH,
  default ``public/system`` (paperclip.rb:163);
* node reads NODE_EXTRA_CA_CERTS at process start only; streaming ignores PGSSLROOTCERT, Rails' libpq reads it.

With a read-only root filesystem, Rails' tmp/ and /tmp are emptyDir volumes. The image precompiles Bootsnap's cache
into tmp/cache/bootsnap (config/boot.rb: cache_dir tmp/cache); an init container copies the image's tmp/ into the
emptyDir first, so the pods boot from that cache instead of recompiling it (see ``seed_rails_tmp``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re

from urllib.parse import urlsplit

from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError, did_you_mean, to_text

COMPONENTS = ('config', 'migrate-pre', 'web', 'streaming', 'sidekiq', 'migrate-post')

# The options that the shared builders (server, template, pod_spec, exposure) read for each role, named literally
# (grep finds where an option is used): ROLE_OPTIONS[role][what].
ROLE_OPTIONS = {
    'web': {'replicas': 'web_replicas', 'resources': 'web_resources', 'extra_env': 'web_extra_env',
            'node_selector': 'web_node_selector', 'tolerations': 'web_tolerations', 'affinity': 'web_affinity',
            'pod_annotations': 'web_pod_annotations', 'exposure': 'web_exposure',
            'ingress_class_name': 'web_ingress_class_name', 'ingress_annotations': 'web_ingress_annotations',
            'ingress_tls_secret': 'web_ingress_tls_secret', 'gateway_parent_refs': 'web_gateway_parent_refs',
            'prestop_delay_seconds': 'web_prestop_delay_seconds',
            'termination_grace_period_seconds': 'web_termination_grace_period_seconds',
            'progress_deadline_seconds': 'web_progress_deadline_seconds'},
    'streaming': {'replicas': 'streaming_replicas', 'resources': 'streaming_resources',
                  'extra_env': 'streaming_extra_env', 'node_selector': 'streaming_node_selector',
                  'tolerations': 'streaming_tolerations', 'affinity': 'streaming_affinity',
                  'pod_annotations': 'streaming_pod_annotations', 'exposure': 'streaming_exposure',
                  'ingress_class_name': 'streaming_ingress_class_name',
                  'ingress_annotations': 'streaming_ingress_annotations',
                  'ingress_tls_secret': 'streaming_ingress_tls_secret',
                  'gateway_parent_refs': 'streaming_gateway_parent_refs',
                  'prestop_delay_seconds': 'streaming_prestop_delay_seconds',
                  'termination_grace_period_seconds': 'streaming_termination_grace_period_seconds',
                  'progress_deadline_seconds': 'streaming_progress_deadline_seconds'},
    'sidekiq': {'affinity': 'sidekiq_affinity', 'pod_annotations': 'sidekiq_pod_annotations',
                'node_selector': 'sidekiq_node_selector', 'tolerations': 'sidekiq_tolerations'},
    'migrations': {'pod_annotations': 'migrations_pod_annotations', 'node_selector': 'migrations_node_selector',
                   'tolerations': 'migrations_tolerations'},
}
MIGRATION_PHASES = {'migrate-pre': 'pre', 'migrate-post': 'post'}

APP_ROOT = '/opt/mastodon'
RAILS_TMP = APP_ROOT + '/tmp'
MEDIA_PATH = APP_ROOT + '/public/system'
# Where the init container sees the rails-tmp emptyDir while it copies the image's tmp/ into it.
RAILS_TMP_SEED = '/seed/rails-tmp'
UID = 991
# Dockerfile:64-72 sets this name; we set the same value explicitly so the probe and the file always agree.
SIDEKIQ_READY_FILENAME = 'sidekiq_process_has_started_and_will_begin_processing_jobs'
CHECKSUM_ANNOTATION = 'fediops.mastodon/config-checksum'
GROUP_LABEL = 'fediops.mastodon/sidekiq-group'

# Mastodon's Sidekiq queues (config/sidekiq.yml); a group key not listed here is an error (with "did you mean").
SIDEKIQ_QUEUES = ('default', 'push', 'ingress', 'mailers', 'pull', 'scheduler', 'fasp')
SIDEKIQ_GROUP_KEYS = ('name', 'queues', 'concurrency', 'replicas', 'resources', 'node_selector', 'tolerations')
_GROUP_NAME_RE = re.compile(r'\A[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?\Z')
_QUEUE_RE = re.compile(r'\A\s*([a-z0-9_-]+)\s*(?:,\s*([0-9]+)\s*)?\Z')
# Object storage backends Mastodon knows (paperclip.rb:38, 118, 142): with one of them, nothing is kept on disk.
OBJECT_STORAGE_SWITCHES = ('S3_ENABLED', 'SWIFT_ENABLED', 'AZURE_ENABLED')


# ------------------------------------------------------------------------------------------------ graceful shutdown
def prestop_sleep(seconds):
    """The preStop hook of web and streaming: the kubelet's own `sleep` action (no binary needed in the image, so
    it works with a read-only root and under Pod Security `restricted`; beta and on by default since Kubernetes
    1.30, GA in 1.34). While it sleeps the pod is already Terminating, so the EndpointSlice controller has marked
    its endpoint not ready and the ingress/load balancer stop sending new requests; then SIGTERM reaches Puma
    (which finishes the requests in flight) or node (streaming/index.js:1427-1443 exits at once). None for 0."""
    return {'preStop': {'sleep': {'seconds': seconds}}} if seconds else None


def sidekiq_prestop(quiet_seconds):
    """Sidekiq's preStop: TSTP (quiet: stop fetching, keep the jobs in flight), then wait `quiet_seconds` before the
    kubelet sends TERM (which then waits `-t` seconds before pushing unfinished jobs back to Redis).

    The signal goes to PID 1 of the container, which IS Sidekiq: the container's `command` replaces the image's
    ENTRYPOINT (tini, Dockerfile: ENTRYPOINT ["/usr/bin/tini", "--"]), and `bundle exec` runs Sidekiq in its own
    process (Kernel#load or exec: same PID). Were tini PID 1, it would still pass TSTP on: tini's
    wait_and_forward_signal (krallin/tini src/tini.c) forwards every signal but SIGCHLD to its child (SIGTTIN/
    SIGTTOU are ignored). `sh` (dash) and `sleep` (coreutils) are in every Debian-based image; `kill` is a shell
    builtin; the same uid may signal PID 1 without any capability."""
    return {'preStop': {'exec': {'command': ['/bin/sh', '-c', 'kill -TSTP 1; sleep %d' % quiet_seconds]}}}


class Manifests(dict):
    """{component: [objects]} plus .origins ({(kind, name, path): variable})."""

    def __init__(self, objects, origins):
        super(Manifests, self).__init__(objects)
        self.origins = origins

    @property
    def objects(self):
        return self


def origin_of(origins, kind, name, field):
    """The variable that produced `field` (an API server field path) of object kind/name, or None."""
    best, best_len = None, -1
    for (o_kind, o_name, path), variable in origins.items():
        if o_kind != kind or o_name != name:
            continue
        if (field == path or field.startswith(path + '.') or field.startswith(path + '[')) and len(path) > best_len:
            best, best_len = variable, len(path)
    return best


def _port(value):
    """A TCP port from an env value, or None."""
    text = str(value or '').strip()
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _url_port(url, default):
    try:
        return urlsplit(url).port or default
    except ValueError:
        return default


def _b64(text):
    return base64.b64encode(text.encode('utf-8')).decode('ascii')


def _env_list(env):
    return [{'name': key, 'value': env[key]} for key in sorted(env)]


def _text_env(variable, env):
    """A role's extra env (YAML values) as strings; a dict or list value is an error naming the variable."""
    out = {}
    for key, value in (env or {}).items():
        try:
            out[key] = to_text(key, value)
        except ConfigError as exc:
            raise ConfigError(variable, exc.reason + ' (key %s)' % key)
    return out


def dns_label_slug(text):
    """`text` as a DNS label fragment: lower case, runs of other characters as one '-'."""
    return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-')


def bounded_name(name, limit=63):
    """`name` if it fits in `limit` characters, else its head plus a hash of the whole (stays unique)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]
    return name[:limit - 9].rstrip('-') + '-' + digest


def version_label(version):
    """The version as a label value (at most 63 of [A-Za-z0-9_.-]): the tag without a digest (v4.6.5@sha256:...)."""
    tag = re.sub(r'[^A-Za-z0-9_.-]+', '-', version.split('@', 1)[0])[:63]
    return tag.strip('-_.')


def migration_job_name(name, phase, version, suffix=''):
    """`<name>-migrate-<phase>-<version slug><suffix>`, at most 63 characters. A version with a digest
    (v4.6.5@sha256:...) keeps a hash of the whole, so two digests never share a Job name. `suffix`:
    _migrations.job_name_suffix (the plan's signals to the Job)."""
    return bounded_name('%s-migrate-%s-%s%s' % (name, phase, dns_label_slug(version), suffix))


# ------------------------------------------------------------------------------------------------ sidekiq groups
def _strict_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def sidekiq_groups(workers, defaults):
    """Parse `sidekiq_workers` (the role variable) into the model's `sidekiq_groups`.

    `defaults`: {'resources', 'node_selector', 'tolerations' (the role-wide values), 'max_concurrency'}.
    Each group: {name, queues: [{name, weight}], concurrency, replicas, scheduler, resources, node_selector,
    tolerations} (weight None when not given).
    Raises ConfigError('sidekiq_workers', ...) naming the group and the field.
    """
    var = 'sidekiq_workers'
    max_concurrency = defaults.get('max_concurrency', 30)
    if not isinstance(workers, list) or not workers:
        raise ConfigError(var, 'must list at least one worker group')
    groups = []
    for index, group in enumerate(workers):
        if not isinstance(group, dict):
            raise ConfigError(var, 'item %d must be a mapping with name and queues' % index)
        label = 'group %s' % (group.get('name') if isinstance(group.get('name'), str) else '#%d' % index)
        for key in group:
            if key not in SIDEKIQ_GROUP_KEYS:
                raise ConfigError(var, '%s: unknown key %s%s; known keys: %s'
                                  % (label, key, did_you_mean(str(key), SIDEKIQ_GROUP_KEYS), ', '.join(SIDEKIQ_GROUP_KEYS)))
        name = group.get('name')
        if not isinstance(name, str) or not _GROUP_NAME_RE.match(name):
            raise ConfigError(var, '%s: name must be a DNS label of at most 40 characters (a-z, 0-9, -)' % label)
        queues = group.get('queues')
        if not isinstance(queues, list) or not queues:
            raise ConfigError(var, '%s: queues must be a non-empty list' % label)
        parsed = []
        for queue in queues:
            parsed.append(_parse_queue(var, label, queue))
        names = [q['name'] for q in parsed]
        duplicates = sorted(set(n for n in names if names.count(n) > 1))
        if duplicates:
            raise ConfigError(var, '%s: queue %s is listed twice' % (label, ', '.join(duplicates)))
        concurrency = group.get('concurrency', 25)
        if not _strict_int(concurrency) or not 1 <= concurrency <= max_concurrency:
            raise ConfigError(var, '%s: concurrency must be an integer between 1 and %d (sidekiq_max_concurrency; '
                                   'Mastodon recommends 25-30 threads at most: add replicas or groups instead)'
                              % (label, max_concurrency))
        replicas = group.get('replicas', 1)
        if not _strict_int(replicas) or replicas < 0:
            raise ConfigError(var, '%s: replicas must be an integer >= 0' % label)
        for key, kind in (('resources', dict), ('node_selector', dict), ('tolerations', list)):
            if key in group and not isinstance(group[key], kind):
                raise ConfigError(var, '%s: %s must be a %s' % (label, key, 'list' if kind is list else 'mapping'))
        scheduler = 'scheduler' in names
        if scheduler and replicas != 1:
            raise ConfigError(var, '%s processes the scheduler queue with replicas: %d; the scheduler queue must run in '
                                   'exactly one replica: set replicas: 1 or move scheduler into a group of its own'
                              % (label, replicas))
        groups.append({'name': name, 'queues': parsed, 'concurrency': concurrency, 'replicas': replicas,
                       'scheduler': scheduler,
                       'resources': group.get('resources', defaults.get('resources') or {}),
                       'node_selector': group.get('node_selector', defaults.get('node_selector') or {}),
                       'tolerations': group.get('tolerations', defaults.get('tolerations') or [])})
    names = [g['name'] for g in groups]
    twice = sorted(set(n for n in names if names.count(n) > 1))
    if twice:
        raise ConfigError(var, 'group names must be unique: %s appears more than once' % ', '.join(twice))
    with_scheduler = [g['name'] for g in groups if g['scheduler']]
    if len(with_scheduler) != 1:
        raise ConfigError(var, 'exactly one group must process the scheduler queue (groups with it: %s)'
                          % (', '.join(with_scheduler) or 'none'))
    covered = set(q['name'] for g in groups for q in g['queues'])
    missing = [q for q in SIDEKIQ_QUEUES if q not in covered]
    if missing:
        raise ConfigError(var, 'no group processes the queue(s) %s: jobs there would never run' % ', '.join(missing))
    return groups


def sidekiq_command(group, shutdown_timeout=None):
    """bundle exec sidekiq -c N [-t SECONDS] -q queue[,weight] ... for a parsed group.

    -t is Sidekiq's shutdown timeout (default 25): after TERM it waits that long for the jobs in flight, then
    pushes the unfinished ones back to Redis. Written explicitly so the pod's grace period can be checked
    against it (sidekiq_termination_grace_period_seconds)."""
    command = ['bundle', 'exec', 'sidekiq', '-c', str(group['concurrency'])]
    if shutdown_timeout is not None:
        command += ['-t', str(shutdown_timeout)]
    for queue in group['queues']:
        command += ['-q', queue['name'] + (',%d' % queue['weight'] if queue.get('weight') is not None else '')]
    return command


def _parse_queue(var, label, queue):
    if isinstance(queue, dict):
        unknown = [k for k in queue if k not in ('name', 'weight')]
        if unknown:
            raise ConfigError(var, '%s: queue item has unknown key %s (known: name, weight)' % (label, unknown[0]))
        name, weight = queue.get('name'), queue.get('weight')
        if not isinstance(name, str):
            raise ConfigError(var, '%s: a queue item {name, weight} needs a name' % label)
        name = name.strip()
        if weight is not None and not (_strict_int(weight) or (isinstance(weight, str) and weight.strip().isdigit())):
            raise ConfigError(var, '%s: queue %s: weight must be a positive integer' % (label, name))
        weight = int(weight) if weight is not None else None
    elif isinstance(queue, str):
        match = _QUEUE_RE.match(queue)
        if not match:
            raise ConfigError(var, '%s: queue item %r must be "name" or "name,weight"' % (label, queue))
        name, weight = match.group(1), (int(match.group(2)) if match.group(2) is not None else None)
    else:
        raise ConfigError(var, '%s: each queue must be "name", "name,weight" or {name, weight}' % label)
    if name not in SIDEKIQ_QUEUES:
        raise ConfigError(var, '%s: unknown queue %s%s; Mastodon\'s queues: %s'
                          % (label, name, did_you_mean(name, SIDEKIQ_QUEUES), ', '.join(SIDEKIQ_QUEUES)))
    if weight is not None and weight < 1:
        raise ConfigError(var, '%s: queue %s: weight must be at least 1' % (label, name))
    return {'name': name, 'weight': weight}


# ------------------------------------------------------------------------------------------------ media storage
def object_storage_enabled(rails_env):
    return any(rails_env.get(key) == 'true' for key in OBJECT_STORAGE_SWITCHES)


def media_path(rails_env):
    """Where Mastodon writes uploads without object storage (paperclip.rb:163, relative to the app root)."""
    path = rails_env.get('PAPERCLIP_ROOT_PATH') or MEDIA_PATH
    return path.replace(':rails_root', APP_ROOT)


def media_storage_problem(model):
    """None when uploads survive a pod restart; else the message the planner raises (before any write)."""
    env = _rails_env(model)
    if object_storage_enabled(env):
        return None
    if model_var(model, 'config_media_volume_claim') or model_var(model, 'config_media_ephemeral'):
        return None
    return ('config_media_volume_claim: Mastodon stores uploads in %s when no object storage is configured '
            '(S3_ENABLED, SWIFT_ENABLED or AZURE_ENABLED is not true in config_env), and the containers\' files are '
            'lost on every restart. Configure object storage (S3_ENABLED: true with S3_BUCKET...), or name a '
            'PersistentVolumeClaim (ReadWriteMany when web and sidekiq run on several nodes) in '
            'config_media_volume_claim, or accept losing uploads with config_media_ephemeral: true (tests, demos).'
            % media_path(env))


def model_var(model, name):
    """A role variable of the model; a clear error when the planner's model lacks it."""
    try:
        return model['vars'][name]
    except KeyError:
        raise ConfigError(name, 'missing from the model (add it to its role\'s argument spec and defaults)')


def _rails_env(model):
    rails = model['env']['rails']
    out = dict(rails.get('config') or {})
    out.update(rails.get('secret') or {})
    return out


# ------------------------------------------------------------------------------------------------ the builder
class _Builder(object):

    def __init__(self, model):
        self.model = model
        self.name = model['name']
        self.namespace = model['namespace']
        self.origins = {}
        self.rails_env = _rails_env(model)
        self.has_ca = bool(model.get('ca_pem'))
        self.has_redis_ca = bool(model.get('redis_ca_pem'))
        # The CA of Elasticsearch/OpenSearch (config_es_ca_pem, or DigitalOcean's OpenSearch CA from the plan).
        self.has_es_ca = bool(model.get('es_ca_pem'))

    def var(self, name):
        return model_var(self.model, name)

    def origin(self, obj, path, variable):
        self.origins[(obj['kind'], obj['metadata']['name'], path)] = variable

    # ---------------------------------------------------------------- shared pieces
    def labels(self, component=None, extra=None):
        labels = dict(self.model['labels'])
        labels['app.kubernetes.io/version'] = version_label(self.model['version'])
        if component:
            labels['app.kubernetes.io/component'] = component
        labels.update(extra or {})
        return labels

    def selector(self, component, extra=None):
        out = {'app.kubernetes.io/name': 'mastodon', 'app.kubernetes.io/instance': self.name,
               'app.kubernetes.io/component': component}
        out.update(extra or {})
        return out

    def meta(self, name, labels, annotations=None):
        meta = {'name': name, 'namespace': self.namespace, 'labels': labels}
        if annotations:
            meta['annotations'] = annotations
        return meta

    def checksum(self, kind):
        """Pod annotation: the env of that kind and the CAs (a changed CA must restart node: it reads
        NODE_EXTRA_CA_CERTS at start)."""
        text = '\n'.join((self.model['checksums'][kind], self.model.get('ca_pem') or '',
                          self.model.get('redis_ca_pem') or '') + ((self.model['es_ca_pem'],) if self.has_es_ca else ()))
        return hashlib.sha256(text.encode('utf-8')).hexdigest()

    def ca_file(self, key='ca.crt'):
        return self.var('config_ca_mount_dir').rstrip('/') + '/' + key

    def pod_security_context(self):
        return {'runAsUser': UID, 'runAsGroup': UID, 'fsGroup': UID, 'runAsNonRoot': True,
                'seccompProfile': {'type': 'RuntimeDefault'}}

    def container_security_context(self):
        return {'runAsUser': UID, 'runAsGroup': UID, 'runAsNonRoot': True, 'allowPrivilegeEscalation': False,
                'privileged': False, 'capabilities': {'drop': ['ALL']},
                'readOnlyRootFilesystem': bool(self.var('config_read_only_root_filesystem')),
                'seccompProfile': {'type': 'RuntimeDefault'}}

    def volumes(self, rails, media=False):
        """(volumes, volumeMounts): writable scratch space for a read-only root, the CA, the media claim (or an
        emptyDir for the media with config_media_ephemeral)."""
        volumes = [{'name': 'tmp', 'emptyDir': {}}]
        mounts = [{'name': 'tmp', 'mountPath': '/tmp'}]
        if rails:
            # Rails' tmp/: Bootsnap's cache (tmp/cache/bootsnap, copied from the image by seed_rails_tmp), pids, the
            # Sidekiq ready file.
            volumes.append({'name': 'rails-tmp', 'emptyDir': {}})
            mounts.append({'name': 'rails-tmp', 'mountPath': RAILS_TMP})
        if self.has_ca or self.has_redis_ca or self.has_es_ca:
            volumes.append({'name': 'db-ca', 'secret': {'secretName': self.name + '-db-ca', 'defaultMode': 0o444}})
            mounts.append({'name': 'db-ca', 'mountPath': self.var('config_ca_mount_dir'), 'readOnly': True})
        claim = self.var('config_media_volume_claim')
        if media and not object_storage_enabled(self.rails_env):
            if claim:
                volumes.append({'name': 'media', 'persistentVolumeClaim': {'claimName': claim}})
                mounts.append({'name': 'media', 'mountPath': media_path(self.rails_env)})
            elif self.var('config_media_ephemeral'):
                # Paperclip writes uploads under public/system (paperclip.rb:163): on a read-only root that is EROFS
                # unless something writable is mounted there. The pod's own emptyDir: lost with the pod, as accepted.
                volumes.append({'name': 'media', 'emptyDir': {}})
                mounts.append({'name': 'media', 'mountPath': media_path(self.rails_env)})
        return volumes, mounts

    def seed_rails_tmp(self, container):
        """The init container that copies the image's tmp/ (Bootsnap's precompiled cache, tmp/cache/bootsnap) into
        the rails-tmp emptyDir, which otherwise hides it: without it every web, Sidekiq and Job pod recompiles the
        cache at boot (config/boot.rb: Bootsnap.setup(cache_dir: tmp/cache)).

        Chosen over BOOTSNAP_READONLY=true with emptyDirs only at the writable subpaths: Bootsnap reads
        BOOTSNAP_READONLY only in its default setup (`require 'bootsnap/setup'`, lib/bootsnap.rb default_setup),
        not when an application calls Bootsnap.setup with its own arguments as Mastodon's config/boot.rb has done;
        and Mastodon writes directly under tmp/ (the Sidekiq ready file, config/initializers/sidekiq.rb:11-18), so
        tmp/ itself must stay writable and an emptyDir there hides the cache anyway. The copy needs no assumption
        about either and costs one `cp` of the cache at pod start. Measured with Debian's Rails 6.1 (997 cache files,
        8.2 MB): booting with an empty cache 2.8-3.1 s, with the cache 1.0-1.3 s, the copy 0.4-0.6 s."""
        return {'name': 'seed-rails-tmp', 'image': container['image'], 'imagePullPolicy': container['imagePullPolicy'],
                'command': ['cp', '-R', RAILS_TMP + '/.', RAILS_TMP_SEED + '/'],
                'volumeMounts': [{'name': 'rails-tmp', 'mountPath': RAILS_TMP_SEED}],
                'securityContext': self.container_security_context(), 'resources': container['resources']}

    def ca_env(self, rails):
        if rails:
            out = {'PGSSLROOTCERT': self.ca_file()} if self.has_ca else {}
            if self.has_es_ca:
                # config/initializers/chewy.rb:4-9: the private CA of Elasticsearch/OpenSearch.
                out['ES_CA_FILE'] = self.ca_file('es-ca.crt')
            return out
        if self.has_redis_ca:
            return {'NODE_EXTRA_CA_CERTS': self.ca_file('node-extra-ca.crt')}
        return {'NODE_EXTRA_CA_CERTS': self.ca_file()} if self.has_ca else {}

    def env_from(self, rails):
        source = self.name + ('-env' if rails else '-streaming-env')
        return [{'configMapRef': {'name': source}}, {'secretRef': {'name': source}}]

    def pod_spec(self, obj, containers, volumes, prefix, role_prefix, node_selector, tolerations, affinity=None,
                 extra=None):
        spec = {'serviceAccountName': self.name, 'automountServiceAccountToken': False,
                'securityContext': self.pod_security_context(),
                'imagePullSecrets': [{'name': s} for s in self.var('config_image_pull_secrets')],
                'nodeSelector': node_selector, 'tolerations': tolerations}
        if affinity:
            spec['affinity'] = affinity
            self.origin(obj, prefix + '.affinity', ROLE_OPTIONS[role_prefix]['affinity'])
        spec.update(extra or {})
        spec['volumes'] = volumes
        if any(m['name'] == 'rails-tmp' for m in containers[0]['volumeMounts']):
            spec['initContainers'] = [self.seed_rails_tmp(containers[0])]
            self.origin(obj, prefix + '.initContainers[0].image', 'config_mastodon_version')
            self.origin(obj, prefix + '.initContainers[0].resources',
                        {'sidekiq': 'sidekiq_workers'}.get(role_prefix, role_prefix + '_resources'))
        spec['containers'] = containers
        self.origin(obj, prefix + '.imagePullSecrets', 'config_image_pull_secrets')
        self.origin(obj, prefix + '.volumes', 'config_media_volume_claim')
        return spec

    def container(self, obj, prefix, name, image, command, env, mounts, resources, rails, resources_var, env_var):
        container = {'name': name, 'image': image, 'imagePullPolicy': self.var('config_image_pull_policy'),
                     'command': command, 'envFrom': self.env_from(rails), 'env': _env_list(env),
                     'volumeMounts': mounts, 'securityContext': self.container_security_context(),
                     'resources': resources}
        cpath = prefix + '.containers[0]'
        self.origin(obj, cpath + '.image', 'config_mastodon_version')
        self.origin(obj, cpath + '.imagePullPolicy', 'config_image_pull_policy')
        self.origin(obj, cpath + '.resources', resources_var)
        self.origin(obj, cpath + '.env', env_var)
        self.origin(obj, cpath + '.volumeMounts', 'config_ca_mount_dir')
        self.origin(obj, cpath + '.securityContext.readOnlyRootFilesystem', 'config_read_only_root_filesystem')
        return container

    # ---------------------------------------------------------------- config
    def config(self):
        out = []
        labels = self.labels('config')
        if self.var('config_manage_namespace'):
            ns_labels = dict(self.model['labels'])
            level = self.var('config_namespace_pod_security')
            if level:
                # Pod Security admission enforces on the pods themselves (the workloads only warn).
                ns_labels.update({'pod-security.kubernetes.io/enforce': level,
                                  'pod-security.kubernetes.io/enforce-version': 'latest',
                                  'pod-security.kubernetes.io/warn': level,
                                  'pod-security.kubernetes.io/warn-version': 'latest'})
            ns = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': self.namespace, 'labels': ns_labels}}
            self.origin(ns, 'metadata.name', 'config_namespace')
            self.origin(ns, 'metadata.labels', 'config_namespace_pod_security')
            out.append(ns)
        sa = {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': self.meta(self.name, labels),
              'automountServiceAccountToken': False}
        out.append(sa)
        envs = self.model['env']
        for kind, name in (('rails', self.name + '-env'), ('streaming', self.name + '-streaming-env')):
            config = envs[kind].get('config') or {}
            secret = envs[kind].get('secret') or {}
            cm = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': self.meta(name, labels),
                  'data': dict((k, config[k]) for k in sorted(config))}
            self.origin(cm, 'data', 'config_env')
            out.append(cm)
            out.append(self.secret(name, labels, secret, origin='config_env'))
        out.append(self.secret(self.name + '-generated-secrets', labels, self.model['kept_secrets'],
                               note='Generated once on the first deploy and reused by every later run. Do not delete.',
                               origin='config_secrets', annotations=self.model.get('kept_secrets_annotations')))
        direct_user, app_user = self.model['db_direct'].get('DB_USER'), self.rails_env.get('DB_USER')
        if direct_user and app_user and direct_user != app_user:
            # Tables the migrations create belong to the user that runs them: it must be the application's.
            raise ConfigError('config_db_user', 'the migrations would connect as %s but the application as %s; '
                                                'both must be the application\'s database user' % (direct_user, app_user))
        out.append(self.secret(self.name + '-db-direct', labels, self.model['db_direct'],
                               note='Direct PostgreSQL connection (bypassing the PgBouncer pool) as the application\'s '
                                    'user, for the migration Jobs.', origin='config_db_direct_host'))
        if self.has_ca or self.has_redis_ca or self.has_es_ca:
            data = {}
            if self.has_es_ca:
                data['es-ca.crt'] = self.model['es_ca_pem']
            if self.has_ca:
                data['ca.crt'] = self.model['ca_pem']
            if self.has_redis_ca:
                data['redis-ca.crt'] = self.model['redis_ca_pem']
                # node takes ONE extra file: the database CA and the Redis CA together.
                pems = (self.model.get('ca_pem'), self.model['redis_ca_pem'])
                data['node-extra-ca.crt'] = ''.join(pem.strip() + '\n' for pem in pems if pem)
            out.append(self.secret(self.name + '-db-ca', labels, data, origin='config_db_ca_pem'))
        if self.var('config_network_policy'):
            out.extend(self.network_policies())
        return out

    def secret(self, name, labels, data, note=None, origin=None, annotations=None):
        more = dict(annotations or {})
        if note:
            more['fediops.mastodon/note'] = note
        obj = {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
               'metadata': self.meta(name, labels, more or None),
               'data': dict((k, _b64(data[k])) for k in sorted(data))}
        if origin:
            self.origin(obj, 'data', origin)
        return obj

    # ---------------------------------------------------------------- network policies
    def network_policies(self):
        """One NetworkPolicy per kind of pod (both directions: what is not listed is denied)."""
        labels = self.labels('config')
        dns = {'ports': [{'protocol': 'UDP', 'port': 53}, {'protocol': 'TCP', 'port': 53}]}

        def ports_rule(ports):
            return {'ports': [{'protocol': 'TCP', 'port': p} for p in ports]} if ports else None

        data = ports_rule(self.data_ports())
        web_out = ports_rule(sorted(set(self.var('config_network_policy_egress_web_ports'))))
        extra = list(self.var('config_network_policy_extra_egress'))
        mail = ports_rule(self.mail_and_search_ports())
        ingress_from = self.var('config_network_policy_ingress_namespace_labels')

        def allow_from():
            return [{'namespaceSelector': {'matchLabels': dict(ingress_from)}}] if ingress_from else []

        def policy(suffix, selector, ingress_port=None, egress=()):
            obj = {'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy',
                   'metadata': self.meta(self.name + '-' + suffix, labels),
                   'spec': {'podSelector': {'matchLabels': selector}, 'policyTypes': ['Ingress', 'Egress'],
                            'egress': [rule for rule in egress if rule]}}
            # No ingress rules = no `ingress` key (policyType Ingress then denies all): the API server drops an
            # empty list, and a server-side apply of `ingress: []` would then change the object on every run.
            if ingress_port:
                rule = {'ports': [{'protocol': 'TCP', 'port': ingress_port}]}
                if allow_from():
                    rule['from'] = allow_from()
                obj['spec']['ingress'] = [rule]
                self.origin(obj, 'spec.ingress', 'config_network_policy_ingress_namespace_labels')
            self.origin(obj, 'spec.egress', 'config_network_policy_extra_egress')
            self.origin(obj, 'spec', 'config_network_policy')
            return obj

        rails_out = [dns, data, web_out, mail] + extra
        return [
            policy('web', self.selector('web'), 3000, rails_out),
            policy('streaming', self.selector('streaming'), 4000, [dns, data]),
            policy('sidekiq', self.selector('sidekiq'), None, rails_out),
            policy('migrations', {'app.kubernetes.io/instance': self.name,
                                  'fediops.mastodon/migrations': 'true'}, None, [dns, data]),
        ]

    def data_ports(self):
        """The database and Redis ports of the variables, and those the environments actually name (so a
        self-managed PostgreSQL on 5432 or Redis on 6379 is reachable without further settings)."""
        ports = set(self.var('config_network_policy_database_ports')) | set(self.var('config_network_policy_redis_ports'))
        envs = [self.rails_env, self.model['db_direct']]
        streaming = self.model['env']['streaming']
        envs.append(dict(streaming.get('config') or {}, **(streaming.get('secret') or {})))
        for env in envs:
            ports.update(_port(env.get(key)) for key in ('DB_PORT', 'REDIS_PORT', 'SIDEKIQ_REDIS_PORT', 'CACHE_REDIS_PORT'))
            for key in ('REDIS_URL', 'SIDEKIQ_REDIS_URL', 'CACHE_REDIS_URL'):
                if env.get(key):
                    ports.add(_url_port(env[key], 6379))
        ports.discard(None)
        return sorted(ports)

    def mail_and_search_ports(self):
        """SMTP (config/email.yml:9-10: SMTP_PORT, else the usual submission ports) and Elasticsearch
        (config/initializers/chewy.rb:4-5: ES_PORT, default 9200)."""
        env, ports = self.rails_env, set()
        if env.get('SMTP_SERVER'):
            ports.update([_port(env.get('SMTP_PORT'))] if _port(env.get('SMTP_PORT')) else [25, 465, 587])
        if env.get('ES_ENABLED') == 'true':
            ports.add(_port(env.get('ES_PORT')) or 9200)
        return sorted(ports)

    # ---------------------------------------------------------------- web
    def server(self, role, image, command, env, port_name, port, health_path, startup_failures, strategy):
        """The Deployment and Service of an HTTP server (web or streaming) and their origins."""
        v, o = self.var, ROLE_OPTIONS[role]
        rails = role == 'web'
        name = '%s-%s' % (self.name, role)
        selector = self.selector(role)
        labels = self.labels(extra=selector)
        env.update(self.ca_env(rails=rails))
        env.update(_text_env(o['extra_env'], v(o['extra_env'])))
        deployment = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': self.meta(name, labels), 'spec': {}}
        if not (rails and v('web_hpa_enabled')):
            deployment['spec']['replicas'] = v(o['replicas'])
            self.origin(deployment, 'spec.replicas', o['replicas'])
        deployment['spec'].update({'revisionHistoryLimit': 5, 'strategy': strategy,
                                   'progressDeadlineSeconds': v(o['progress_deadline_seconds']),
                                   'selector': {'matchLabels': selector}})
        self.origin(deployment, 'spec.progressDeadlineSeconds', o['progress_deadline_seconds'])
        prefix = 'spec.template.spec'
        volumes, mounts = self.volumes(rails=rails, media=rails)
        container = self.container(deployment, prefix, role, image, command, env, mounts, v(o['resources']), rails,
                                   o['resources'], o['extra_env'])
        container['ports'] = [{'name': port_name, 'containerPort': port, 'protocol': 'TCP'}]
        probe = {'httpGet': {'path': health_path, 'port': port_name}}
        container['startupProbe'] = dict(probe, periodSeconds=5, failureThreshold=startup_failures, timeoutSeconds=5)
        container['readinessProbe'] = dict(probe, periodSeconds=10, failureThreshold=3, timeoutSeconds=5)
        if rails:
            # Puma answers GET /health from the same threads as real requests: with every thread busy the probe
            # queues and times out, and the kubelet would kill a pod that is only busy. Liveness asks only whether
            # Puma still accepts connections (as Mastodon's Helm chart does); readiness keeps /health.
            container['livenessProbe'] = {'tcpSocket': {'port': port_name}, 'periodSeconds': 30, 'failureThreshold': 3,
                                          'timeoutSeconds': 5}
        else:
            container['livenessProbe'] = dict(probe, periodSeconds=30, failureThreshold=3, timeoutSeconds=5)
        lifecycle = prestop_sleep(v(o['prestop_delay_seconds']))
        if lifecycle:
            container['lifecycle'] = lifecycle
        self.origin(deployment, prefix + '.containers[0].lifecycle', o['prestop_delay_seconds'])
        self.template(deployment, role, 'rails' if rails else 'streaming', container, volumes,
                      v(o['node_selector']), v(o['tolerations']), v(o['affinity']),
                      extra={'terminationGracePeriodSeconds': v(o['termination_grace_period_seconds'])})
        self.origin(deployment, prefix + '.terminationGracePeriodSeconds', o['termination_grace_period_seconds'])
        return name, labels, selector, [deployment, self.service(name, labels, selector, port_name, port)]

    def template(self, obj, role, env_kind, container, volumes, node_selector, tolerations, affinity=None, extra=None):
        """The pod template of a workload, with the origins of its scheduling fields."""
        o = ROLE_OPTIONS[role]
        prefix = 'spec.template.spec'
        metadata = {'labels': obj['metadata']['labels']}
        if env_kind:
            metadata['annotations'] = self.pod_annotations(env_kind, o['pod_annotations'])
        elif self.var(o['pod_annotations']):
            metadata['annotations'] = dict(self.var(o['pod_annotations']))
        obj['spec']['template'] = {'metadata': metadata,
                                   'spec': self.pod_spec(obj, [container], volumes, prefix, role, node_selector,
                                                         tolerations, affinity, extra)}
        self.origin(obj, 'spec.template.metadata.annotations', o['pod_annotations'])
        self.origin(obj, prefix + '.nodeSelector', 'sidekiq_workers' if role == 'sidekiq' else o['node_selector'])
        self.origin(obj, prefix + '.tolerations', 'sidekiq_workers' if role == 'sidekiq' else o['tolerations'])

    # ---------------------------------------------------------------- web
    def web(self):
        v = self.var
        env = {'PORT': '3000', 'BIND': '0.0.0.0', 'RAILS_ENV': 'production', 'NODE_ENV': 'production',
               'WEB_CONCURRENCY': to_text('web_concurrency', v('web_concurrency')),
               'MAX_THREADS': to_text('web_max_threads', v('web_max_threads'))}
        name, labels, selector, out = self.server('web', self.model['image'],
                                                  ['bundle', 'exec', 'puma', '-C', 'config/puma.rb'], env,
                                                  'http', 3000, '/health', 60, v('web_strategy'))
        self.origin(out[0], 'spec.strategy', 'web_strategy')
        if v('web_hpa_enabled'):
            obj = {'apiVersion': 'autoscaling/v2', 'kind': 'HorizontalPodAutoscaler', 'metadata': self.meta(name, labels),
                   'spec': {'scaleTargetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': name},
                            'minReplicas': v('web_hpa_min_replicas'), 'maxReplicas': v('web_hpa_max_replicas'),
                            'metrics': [{'type': 'Resource', 'resource': {'name': 'cpu', 'target': {
                                'type': 'Utilization', 'averageUtilization': v('web_hpa_cpu_utilization')}}}]}}
            self.origin(obj, 'spec.minReplicas', 'web_hpa_min_replicas')
            self.origin(obj, 'spec.maxReplicas', 'web_hpa_max_replicas')
            self.origin(obj, 'spec.metrics', 'web_hpa_cpu_utilization')
            out.append(obj)
        if v('web_pdb_enabled'):
            out.append(self.pdb(name, labels, selector, 'web_pdb_min_available'))
        out.extend(self.exposure('web', name, labels, self.model['web_domain'], '/', 'http', 3000, {
            'nginx.ingress.kubernetes.io/proxy-body-size': '100m'}))
        return out

    def pod_annotations(self, kind, variable):
        annotations = {CHECKSUM_ANNOTATION: self.checksum(kind)}
        annotations.update(self.var('config_pod_annotations'))
        annotations.update(self.var(variable))
        return annotations

    def service(self, name, labels, selector, port_name, port):
        return {'apiVersion': 'v1', 'kind': 'Service', 'metadata': self.meta(name, labels),
                'spec': {'type': 'ClusterIP', 'selector': selector,
                         'ports': [{'name': port_name, 'port': port, 'targetPort': port_name, 'protocol': 'TCP'}]}}

    def pdb(self, name, labels, selector, variable):
        obj = {'apiVersion': 'policy/v1', 'kind': 'PodDisruptionBudget', 'metadata': self.meta(name, labels),
               'spec': {'minAvailable': self.var(variable), 'selector': {'matchLabels': selector}}}
        self.origin(obj, 'spec.minAvailable', variable)
        return obj

    def exposure(self, role, name, labels, host, path, port_name, port, annotations):
        v, o = self.var, ROLE_OPTIONS[role]
        kind = v(o['exposure'])
        if kind == 'ingress':
            annotations = dict(annotations)
            annotations.update(v(o['ingress_annotations']))
            obj = {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress',
                   'metadata': self.meta(name, labels, annotations),
                   'spec': {'ingressClassName': v(o['ingress_class_name'])}}
            if v(o['ingress_tls_secret']):
                obj['spec']['tls'] = [{'hosts': [host], 'secretName': v(o['ingress_tls_secret'])}]
                self.origin(obj, 'spec.tls', o['ingress_tls_secret'])
            obj['spec']['rules'] = [{'host': host, 'http': {'paths': [{
                'path': path, 'pathType': 'Prefix',
                'backend': {'service': {'name': name, 'port': {'name': port_name}}}}]}}]
            self.origin(obj, 'metadata.annotations', o['ingress_annotations'])
            self.origin(obj, 'spec.ingressClassName', o['ingress_class_name'])
            self.origin(obj, 'spec.rules', 'config_streaming_host' if role == 'streaming' else 'config_web_domain')
            return [obj]
        if kind == 'httproute':
            obj = {'apiVersion': 'gateway.networking.k8s.io/v1', 'kind': 'HTTPRoute', 'metadata': self.meta(name, labels),
                   'spec': {'parentRefs': v(o['gateway_parent_refs']), 'hostnames': [host],
                            'rules': [{'matches': [{'path': {'type': 'PathPrefix', 'value': path}}],
                                       'backendRefs': [{'name': name, 'port': port}]}]}}
            self.origin(obj, 'spec.parentRefs', o['gateway_parent_refs'])
            self.origin(obj, 'spec.hostnames', 'config_streaming_host' if role == 'streaming' else 'config_web_domain')
            return [obj]
        return []

    # ---------------------------------------------------------------- streaming
    def streaming_sslmode(self):
        """streaming's DB_SSLMODE: streaming_db_sslmode when set, else the one that matches Rails' (config_db_sslmode,
        as the environment carries it). streaming/database.js:85-97 knows only: disable or empty -> no TLS,
        no-verify -> TLS without verification, anything else -> TLS verifying chain and host name. So libpq's
        disable and allow (which tries without TLS first) become disable; prefer, require, verify-ca and verify-full
        become verify-full (the TLS preflight has checked those certificates against the same CA, or the system
        store, before anything is written)."""
        chosen = self.var('streaming_db_sslmode')
        if chosen:
            return chosen
        # config/database.yml:7: Rails' default is prefer.
        rails = self.rails_env.get('DB_SSLMODE') or 'prefer'
        return 'disable' if rails in ('disable', 'allow') else 'verify-full'

    def streaming(self):
        v = self.var
        env = {'PORT': '4000', 'BIND': '0.0.0.0', 'NODE_ENV': 'production', 'DB_SSLMODE': self.streaming_sslmode()}
        strategy = {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': 0}}
        name, labels, selector, out = self.server('streaming', self.model['streaming_image'], ['node', './streaming'],
                                                  env, 'streaming', 4000, '/api/v1/streaming/health', 30, strategy)
        if v('streaming_pdb_enabled'):
            out.append(self.pdb(name, labels, selector, 'streaming_pdb_min_available'))
        host = self.model['streaming_host'] or self.model['web_domain']
        path = '/' if self.model['streaming_host'] else '/api/v1/streaming'
        out.extend(self.exposure('streaming', name, labels, host, path, 'streaming', 4000, {
            'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600',
            'nginx.ingress.kubernetes.io/proxy-send-timeout': '3600'}))
        return out

    # ---------------------------------------------------------------- sidekiq
    def sidekiq(self):
        v = self.var
        out = []
        for group in self.model['sidekiq_groups']:
            name = '%s-sidekiq-%s' % (self.name, group['name'])
            selector = self.selector('sidekiq', {GROUP_LABEL: group['name']})
            labels = self.labels(extra=selector)
            env = {'RAILS_ENV': 'production', 'NODE_ENV': 'production', 'DB_POOL': str(group['concurrency']),
                   'MALLOC_ARENA_MAX': '2', 'MASTODON_SIDEKIQ_READY_FILENAME': SIDEKIQ_READY_FILENAME}
            env.update(self.ca_env(rails=True))
            env.update(_text_env('sidekiq_extra_env', v('sidekiq_extra_env')))
            if group['scheduler']:
                strategy = {'type': 'Recreate'}
            else:
                strategy = {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': 0}}
            deployment = {'apiVersion': 'apps/v1', 'kind': 'Deployment',
                          'metadata': self.meta(name, labels, {'fediops.mastodon/sidekiq-queues':
                                                               ','.join(q['name'] for q in group['queues'])}),
                          'spec': {'replicas': group['replicas'], 'revisionHistoryLimit': 5, 'strategy': strategy,
                                   'progressDeadlineSeconds': v('sidekiq_progress_deadline_seconds'),
                                   'selector': {'matchLabels': selector}}}
            self.origin(deployment, 'spec.progressDeadlineSeconds', 'sidekiq_progress_deadline_seconds')
            prefix = 'spec.template.spec'
            volumes, mounts = self.volumes(rails=True, media=True)
            container = self.container(deployment, prefix, 'sidekiq', self.model['image'],
                                       sidekiq_command(group, v('sidekiq_shutdown_timeout_seconds')), env, mounts,
                                       group['resources'],
                                       True, 'sidekiq_workers', 'sidekiq_extra_env')
            # config/initializers/sidekiq.rb:11-18 touches tmp/<MASTODON_SIDEKIQ_READY_FILENAME> (on the rails-tmp
            # emptyDir) once Sidekiq processes jobs, and removes it at shutdown.
            container['readinessProbe'] = {'exec': {'command': ['cat', RAILS_TMP + '/' + SIDEKIQ_READY_FILENAME]},
                                           'initialDelaySeconds': 5, 'periodSeconds': 10, 'failureThreshold': 3,
                                           'timeoutSeconds': 5}
            container['lifecycle'] = sidekiq_prestop(v('sidekiq_quiet_seconds'))
            self.origin(deployment, prefix + '.containers[0].lifecycle', 'sidekiq_quiet_seconds')
            self.template(deployment, 'sidekiq', 'rails', container, volumes, group['node_selector'],
                          group['tolerations'], v('sidekiq_affinity'),
                          extra={'terminationGracePeriodSeconds': v('sidekiq_termination_grace_period_seconds')})
            self.origin(deployment, prefix + '.terminationGracePeriodSeconds',
                        'sidekiq_termination_grace_period_seconds')
            self.origin(deployment, 'spec.replicas', 'sidekiq_workers')
            self.origin(deployment, prefix + '.containers[0].command', 'sidekiq_workers')
            out.append(deployment)
        return out

    # ---------------------------------------------------------------- migrations
    def migration(self, phase):
        # Imported here: the migrations' own module decides the command and environment of each phase.
        from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations

        v = self.var
        # An upgrade with downtime (web, streaming and Sidekiq stopped first: _deploy/downtime.py) replaces the
        # pre-deployment Job by one that runs every migration; its own name keeps it apart from a zero-downtime one.
        if phase == 'pre' and v('config_upgrade_with_downtime'):
            phase = 'downtime'
        # The plan's signals to the Job (_migrations' docstring): keys generated in this deploy, keys replaced
        # on purpose.
        signals = {'fresh_secrets': bool(self.model.get('fresh_secrets')),
                   'encryption_keys_replaced': bool(self.model.get('encryption_keys_replaced'))}
        job_container = _migrations.job_container(
            phase, extra_env=_text_env('migrations_extra_env', v('migrations_extra_env')), **signals)
        name = migration_job_name(self.name, phase, self.model['version'], _migrations.job_name_suffix(phase, **signals))
        labels = self.labels('migrations-' + phase, {'fediops.mastodon/migrations': 'true'})
        env = self.ca_env(rails=True)
        env.update(job_container['env'])
        job = {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': self.meta(name, labels), 'spec': {'backoffLimit': 0}}
        # No deadline unless asked for: the Job controller would kill the pod at the deadline, and a migration
        # killed half-way (4.7's run outside a transaction, building indexes concurrently) leaves half-done work.
        if v('migrations_active_deadline_seconds'):
            job['spec']['activeDeadlineSeconds'] = v('migrations_active_deadline_seconds')
            self.origin(job, 'spec.activeDeadlineSeconds', 'migrations_active_deadline_seconds')
        prefix = 'spec.template.spec'
        volumes, mounts = self.volumes(rails=True)
        container = self.container(job, prefix, 'migrate', self.model['image'], list(job_container['command']), env,
                                   mounts, v('migrations_resources'), True, 'migrations_resources',
                                   'migrations_extra_env')
        # The direct endpoint and the application's user (DB_HOST/PORT/NAME/USER/PASS) override the pool's.
        container['envFrom'].append({'secretRef': {'name': self.name + '-db-direct'}})
        # No checksum annotation: a Job's template cannot change, and its name already carries the version.
        self.template(job, 'migrations', None, container, volumes, v('migrations_node_selector'),
                      v('migrations_tolerations'), extra={'restartPolicy': 'Never'})
        self.origin(job, 'metadata.name', 'config_mastodon_version')
        return [job]


def build(model, components=COMPONENTS):
    """The objects of each component (see the module docstring). `model` is not modified."""
    model = copy.deepcopy(model)
    builder = _Builder(model)
    out = {}
    for component in components:
        if component == 'config':
            out[component] = builder.config()
        elif component in MIGRATION_PHASES:
            out[component] = builder.migration(MIGRATION_PHASES[component])
        elif component in ('web', 'streaming', 'sidekiq'):
            out[component] = getattr(builder, component)()
        else:
            raise ConfigError('components', 'unknown component %s (known: %s)' % (component, ', '.join(COMPONENTS)))
    return Manifests(out, builder.origins)
