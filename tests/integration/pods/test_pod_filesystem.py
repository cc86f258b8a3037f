# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filesystem of the RENDERED pods, with a real process: what a kubelet would give Mastodon's containers.

Each Rails pod spec that _manifests.build renders (web, Sidekiq, a migration Job) is run with docker as a kubelet
would run it: its init containers first, then its container, as the spec's user (runAsUser/runAsGroup), with a
read-only root when the spec says so, every capability dropped, no network, and each volume of the spec mounted at
the spec's paths (an emptyDir is a fresh host directory of mode 0777, shared by the pod's containers, as the
kubelet makes it; a Secret a read-only directory). The image is built locally from the Debian base image (nothing
is pulled): it stands for Mastodon's image with what matters here, the working directory /opt/mastodon, uid 991,
and a precompiled Bootsnap cache under tmp/cache/bootsnap.

The process then does what Mastodon does (facts from Mastodon's code, v4.6.5):
* writes an upload under public/system (config/initializers/paperclip.rb:163, no object storage): with
  config_media_ephemeral this must not be EROFS;
* reads the precompiled Bootsnap cache under tmp/cache/bootsnap (config/boot.rb: cache_dir tmp/cache): hidden by
  an empty tmp/ volume, every pod would recompile it;
* writes tmp/pids and the Sidekiq ready file tmp/<MASTODON_SIDEKIQ_READY_FILENAME> (config/initializers/sidekiq.rb:11-18).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._manifests import build
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.manifests_model import make_model

BASE_IMAGE = os.environ.get('FEDIOPS_NODE_IMAGE', 'localhost/fediops-debian:12')
IMAGE = 'localhost/fediops-mastodon-tmp-standin:test'
# Mastodon's facts (not read from the code under test).
APP = '/opt/mastodon'
MEDIA = APP + '/public/system'
BOOTSNAP_MARKER = APP + '/tmp/cache/bootsnap/compile-cache/00/precompiled-by-the-image'
READY_FILE = APP + '/tmp/sidekiq_process_has_started_and_will_begin_processing_jobs'

DOCKERFILE = '''FROM %s
# What Mastodon's image has (Dockerfile: uid/gid 991, /opt/mastodon, tmp/ and public/system owned by the app user,
# Bootsnap's cache precompiled at build time).
RUN mkdir -p %s %s && echo compiled > %s && chown -R 991:991 %s
WORKDIR %s
''' % (BASE_IMAGE, os.path.dirname(BOOTSNAP_MARKER), MEDIA, BOOTSNAP_MARKER, APP, APP)

# What Mastodon does with its files; each failure is printed with the error the kernel gave.
PROCESS = '''
fail=0
if printf upload > %(media)s/original.png; then echo "upload: written"; else echo "upload: FAILED"; fail=1; fi
if cat %(marker)s >/dev/null; then echo "bootsnap cache: visible"; else echo "bootsnap cache: HIDDEN"; fail=1; fi
if mkdir -p %(app)s/tmp/pids && : > %(app)s/tmp/pids/server.pid; then echo "pids: written"; else echo "pids: FAILED"; fail=1; fi
if : > %(ready)s; then echo "ready file: written"; else echo "ready file: FAILED"; fail=1; fi
exit $fail
''' % {'media': MEDIA, 'marker': BOOTSNAP_MARKER, 'app': APP, 'ready': READY_FILE}


def docker(*args, check=True):
    proc = subprocess.run(['docker'] + list(args), capture_output=True, text=True, timeout=300, check=False)
    if check and proc.returncode:
        raise AssertionError('docker %s: %s%s' % (' '.join(args[:2]), proc.stdout, proc.stderr))
    return proc


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    """The stand-in for Mastodon's image, built from the local Debian image without any network."""
    context = tmp_path_factory.mktemp('image')
    (context / 'Dockerfile').write_text(DOCKERFILE)
    docker('build', '--network', 'none', '--pull=false', '-q', '-t', IMAGE, str(context))
    return IMAGE


def pod_of(component):
    result = build(make_model(config_media_ephemeral=True))
    obj = [o for o in result[component] if o['kind'] in ('Deployment', 'Job')][0]
    return obj['spec']['template']['spec']


class Pod:
    """A kubelet's view of one pod spec, run with docker."""

    def __init__(self, spec, workdir):
        self.spec = spec
        self.paths = {}
        for volume in spec['volumes']:
            path = workdir / volume['name']
            path.mkdir()
            if 'secret' in volume:
                (path / 'ca.crt').write_text('not a real certificate\n')
            else:  # emptyDir (and a claim, which starts empty too): the kubelet makes it 0777
                assert set(volume) & {'emptyDir', 'persistentVolumeClaim'}, volume
            os.chmod(str(path), 0o777)
            self.paths[volume['name']] = str(path)

    def run(self, container, image, command):
        ctx = dict(self.spec.get('securityContext') or {})
        ctx.update(container.get('securityContext') or {})
        args = ['run', '--rm', '--network', 'none', '--user', '%d:%d' % (ctx['runAsUser'], ctx['runAsGroup'])]
        if ctx.get('readOnlyRootFilesystem'):
            args.append('--read-only')
        if 'ALL' in ((ctx.get('capabilities') or {}).get('drop') or []):
            args += ['--cap-drop', 'ALL']
        if ctx.get('allowPrivilegeEscalation') is False:
            args += ['--security-opt', 'no-new-privileges']
        for mount in container.get('volumeMounts') or []:
            spec = 'type=bind,src=%s,dst=%s' % (self.paths[mount['name']], mount['mountPath'])
            args += ['--mount', spec + (',readonly' if mount.get('readOnly') else '')]
        return docker(*(args + [image] + command), check=False)


@pytest.mark.parametrize('component', ['web', 'sidekiq', 'migrate-pre'])
def test_rendered_rails_pod_can_write_uploads_and_boot_from_the_image_cache(component, image, tmp_path):
    spec = pod_of(component)
    container = spec['containers'][0]
    assert container['securityContext']['readOnlyRootFilesystem'] is True  # the default this is about
    pod = Pod(spec, tmp_path)
    for init in spec.get('initContainers') or []:
        # The spec's init containers run the pod's image with their own command.
        assert init['image'] == container['image']
        done = pod.run(init, image, init['command'])
        assert done.returncode == 0, (init['name'], done.stdout, done.stderr)
    proc = pod.run(container, image, ['sh', '-c', PROCESS])
    report = proc.stdout + proc.stderr
    assert 'bootsnap cache: visible' in report, report
    assert 'pids: written' in report and 'ready file: written' in report, report
    if component == 'migrate-pre':
        # The Jobs do not process uploads: nothing is mounted there, so the read-only root refuses.
        assert 'Read-only file system' in report and 'upload: FAILED' in report, report
    else:
        assert 'upload: written' in report and proc.returncode == 0, report
