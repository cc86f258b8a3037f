# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One deploy at a time per instance: a coordination.k8s.io/v1 Lease ``<config_name>-deploy`` in the namespace.

PRIVATE to this collection: no API guarantees.

Two deploys of one instance at once (two AWX jobs, an operator and a schedule) would interleave their applies,
prune each other's objects and run two migration Jobs. The plan takes the Lease before it writes anything,
every step renews it (once a third of its duration has passed), ``finish`` releases it (docs/dev/ARCHITECTURE.md,
section 3):

    holder = holder_identity()
    lease = acquire(client, namespace, name, holder, duration_s)    # LockHeld: another deploy holds it
    with Renewer(client, namespace, name, holder, duration_s):       # renews every duration_s / 3
        ...                                                          # renewer.check() raises LockLost
    release(client, namespace, name, holder)
or, for one process that does it all: ``with held(client, namespace, name, holder, duration_s) as lease: ...``

Check mode takes no lock: ``check_free`` reads the Lease and raises LockHeld, writing nothing.

Why it is safe:
* Every write is conditional. A Lease is created with POST (the API server answers 409 AlreadyExists to the
  second of two creators) and changed with PUT carrying the ``metadata.resourceVersion`` that was read (409
  Conflict when anyone wrote in between): of two acquirers racing, exactly one wins; the other re-reads and is
  told who holds it.
* A holder that died loses the Lease ``leaseDurationSeconds`` after its last renewal (``spec.renewTime``), as
  Kubernetes' own leader election (client-go tools/leaderelection) uses the same fields. The expiry is judged
  on this machine's clock against the time the other holder wrote: clocks of deploy hosts are assumed to agree
  within a few seconds, small against the duration.
* Release clears the holder (keeping the Lease and its ``leaseTransitions`` count) only when we still hold it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import getpass
import os
import socket
import threading
import uuid

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError, status_message

API_VERSION = 'coordination.k8s.io/v1'
KIND = 'Lease'
MICRO_TIME = '%Y-%m-%dT%H:%M:%S.%fZ'
DEFAULT_DURATION_S = 120


class LockError(Exception):
    """The lock could not be taken, renewed or released; ``msg`` is fit for the user."""

    def __init__(self, msg):
        super(LockError, self).__init__(msg)
        self.msg = msg


class LockHeld(LockError):
    """Another deploy holds the Lease and it has not expired."""

    def __init__(self, msg, holder, since, expires):
        super(LockHeld, self).__init__(msg)
        self.holder = holder
        self.since = since
        self.expires = expires


class LockLost(LockError):
    """We held the Lease, but someone else holds it now (we did not renew in time)."""


class NoNamespace(LockError):
    """The namespace does not exist yet (a first install): there is nowhere to put the Lease."""


def lease_name(name):
    return '%s-deploy' % name


def holder_identity():
    """Who holds the lock, for the message another deploy gets: user@host, the process, a random part (two
    deploys from one process never share an identity)."""
    try:
        user = getpass.getuser()
    except Exception:  # pylint: disable=broad-except  # no user name in some containers
        user = 'uid%s' % os.getuid()
    job = os.environ.get('JOB_ID') or os.environ.get('AWX_JOB_ID')
    where = '%s@%s pid %s' % (user, socket.gethostname(), os.getpid())
    if job:
        where += ' (AWX job %s)' % job
    return '%s #%s' % (where, uuid.uuid4().hex[:8])


def _now(now=None):
    return now if now is not None else datetime.datetime.now(datetime.timezone.utc)


def _fmt(when):
    return when.astimezone(datetime.timezone.utc).strftime(MICRO_TIME)


def _parse(text):
    if not text:
        return None
    for fmt in (MICRO_TIME, '%Y-%m-%dT%H:%M:%SZ'):
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
    return None


def _path(client, namespace, name=None):
    return client.path(API_VERSION, KIND, namespace, lease_name(name) if name else None)


def _get(client, namespace, name):
    status, body = client.request('GET', _path(client, namespace, name))
    if status == 404:
        return None
    if status != 200:
        raise LockError('cannot read the Lease %s in namespace %s: HTTP %s: %s'
                        % (lease_name(name), namespace, status, status_message(body)))
    return body


def expires_at(lease):
    """When the Lease expires unless renewed (None: nobody holds it)."""
    spec = lease.get('spec') or {}
    if not spec.get('holderIdentity'):
        return None
    renewed = _parse(spec.get('renewTime')) or _parse(spec.get('acquireTime'))
    if renewed is None:
        return None
    return renewed + datetime.timedelta(seconds=int(spec.get('leaseDurationSeconds') or 0))


def _held_by_other(lease, holder, now):
    spec = lease.get('spec') or {}
    other = spec.get('holderIdentity')
    expires = expires_at(lease)
    return bool(other) and other != holder and expires is not None and expires > now


def _held_error(lease, namespace, name, now):
    spec = lease.get('spec') or {}
    expires = expires_at(lease)
    since = spec.get('acquireTime') or spec.get('renewTime') or 'an unknown time'
    msg = ('another deploy of %s in namespace %s is running: the lock (Lease %s) is held by %s since %s, last '
           'renewed %s; it expires at %s (in %d s) unless renewed. Wait for that deploy to finish. If it died, the '
           'lock frees itself %s s after its last renewal; delete the Lease (kubectl -n %s delete lease %s) only when '
           'you are sure no deploy runs.'
           % (name, namespace, lease_name(name), spec.get('holderIdentity'), since, spec.get('renewTime') or since,
              _fmt(expires), max(0, int((expires - now).total_seconds())), spec.get('leaseDurationSeconds'),
              namespace, lease_name(name)))
    return LockHeld(msg, spec.get('holderIdentity'), since, _fmt(expires))


def check_free(client, namespace, name, holder=None, now=None):
    """Check mode: raise LockHeld when another deploy holds the lock; write nothing."""
    now = _now(now)
    lease = _get(client, namespace, name)
    if lease is not None and _held_by_other(lease, holder, now):
        raise _held_error(lease, namespace, name, now)


def _spec(holder, duration_s, now, acquired=None, transitions=0):
    return {'holderIdentity': holder, 'leaseDurationSeconds': int(duration_s), 'acquireTime': _fmt(acquired or now),
            'renewTime': _fmt(now), 'leaseTransitions': transitions}


def acquire(client, namespace, name, holder, duration_s=DEFAULT_DURATION_S, now=None):
    """Take the lock of instance `name` for `holder`; the Lease. LockHeld (naming the holder and since when)
    when another holder has it and it has not expired; an expired or released one is taken over. Taking it
    again as the same holder renews it. NoNamespace when the namespace does not exist."""
    for dummy in range(3):  # a lost race re-reads: the winner's Lease then answers
        current_time = _now(now)
        lease = _get(client, namespace, name)
        if lease is None:
            body = {'apiVersion': API_VERSION, 'kind': KIND,
                    'metadata': {'name': lease_name(name), 'namespace': namespace,
                                 'labels': {'app.kubernetes.io/instance': name,
                                            'app.kubernetes.io/managed-by': 'fediops.mastodon'}},
                    'spec': _spec(holder, duration_s, current_time)}
            status, answer = client.request('POST', _path(client, namespace), body=body)
            if status == 201:
                return answer
            if status == 409:
                continue
            if status == 404:
                raise NoNamespace('namespace %s does not exist: the deploy lock (Lease %s) is taken once it exists'
                                  % (namespace, lease_name(name)))
            raise LockError('cannot create the Lease %s in namespace %s: HTTP %s: %s'
                            % (lease_name(name), namespace, status, status_message(answer)))
        if _held_by_other(lease, holder, current_time):
            raise _held_error(lease, namespace, name, current_time)
        spec = lease.get('spec') or {}
        same = spec.get('holderIdentity') == holder
        updated = dict(lease, spec=_spec(holder, duration_s, current_time,
                                         acquired=_parse(spec.get('acquireTime')) if same else None,
                                         transitions=int(spec.get('leaseTransitions') or 0) + (0 if same else 1)))
        status, answer = client.request('PUT', _path(client, namespace, name), body=updated)
        if status == 200:
            return answer
        if status != 409:  # 409: someone wrote in between (resourceVersion): read again
            raise LockError('cannot take the Lease %s in namespace %s: HTTP %s: %s'
                            % (lease_name(name), namespace, status, status_message(answer)))
    lease = _get(client, namespace, name)
    if lease is not None and _held_by_other(lease, holder, _now(now)):
        raise _held_error(lease, namespace, name, _now(now))
    raise LockError('the Lease %s in namespace %s changes too often to be taken' % (lease_name(name), namespace))


def renew(client, namespace, name, holder, duration_s=DEFAULT_DURATION_S, now=None):
    """Renew our lock; the Lease. LockLost when someone else holds it now."""
    current_time = _now(now)
    lease = _get(client, namespace, name)
    spec = (lease or {}).get('spec') or {}
    if lease is None or spec.get('holderIdentity') != holder:
        raise LockLost('the deploy lock (Lease %s in namespace %s) is no longer ours: %s. Another deploy may be '
                       'running; stop and re-run the plan.'
                       % (lease_name(name), namespace, 'it was deleted' if lease is None
                          else 'it is held by %s' % (spec.get('holderIdentity') or 'nobody')))
    updated = dict(lease, spec=dict(spec, renewTime=_fmt(current_time), leaseDurationSeconds=int(duration_s)))
    status, answer = client.request('PUT', _path(client, namespace, name), body=updated)
    if status == 200:
        return answer
    if status == 409:
        return renew(client, namespace, name, holder, duration_s, now)
    raise LockError('cannot renew the Lease %s in namespace %s: HTTP %s: %s'
                    % (lease_name(name), namespace, status, status_message(answer)))


def release(client, namespace, name, holder, now=None):
    """Give the lock back (True) when we hold it; False when we do not (nothing written)."""
    for dummy in range(3):
        lease = _get(client, namespace, name)
        spec = (lease or {}).get('spec') or {}
        if lease is None or spec.get('holderIdentity') != holder:
            return False
        released = dict(spec, renewTime=_fmt(_now(now)), leaseDurationSeconds=1)
        released.pop('holderIdentity', None)
        status, answer = client.request('PUT', _path(client, namespace, name), body=dict(lease, spec=released))
        if status == 200:
            return True
        if status != 409:
            raise LockError('cannot release the Lease %s in namespace %s: HTTP %s: %s'
                            % (lease_name(name), namespace, status, status_message(answer)))
    return False


class Renewer(object):
    """A background thread renewing our lock every `duration_s / 3` seconds while a long step runs (a migration
    can take hours). A failed renewal is kept: `check()` raises it (LockLost when another deploy took over).
    As a context manager it starts and stops the thread; it does not release the lock."""

    def __init__(self, client, namespace, name, holder, duration_s=DEFAULT_DURATION_S, interval_s=None):
        self.client = client
        self.namespace = namespace
        self.name = name
        self.holder = holder
        self.duration_s = duration_s
        self.interval_s = interval_s if interval_s is not None else max(1.0, duration_s / 3.0)
        self.error = None
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = None

    def _run(self):
        while not self._stop.wait(self.interval_s):
            try:
                renew(self.client, self.namespace, self.name, self.holder, self.duration_s)
                self.renewals += 1
            except LockLost as exc:
                self.error = exc
                return
            except (LockError, KubeError) as exc:  # a passing API error: the next round tries again
                self.error = exc

    def start(self):
        self._thread = threading.Thread(target=self._run, name='fediops-lease-renewer', daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def check(self):
        """Raise LockLost when the lock was lost (a step calls it between its waits)."""
        if isinstance(self.error, LockLost):
            raise self.error

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
        return False


class held(object):  # pylint: disable=invalid-name  # used as a function: `with held(...) as lease:`
    """acquire, renew in the background, release at the end (also on an exception)."""

    def __init__(self, client, namespace, name, holder, duration_s=DEFAULT_DURATION_S):
        self.args = (client, namespace, name, holder)
        self.duration_s = duration_s
        self.renewer = None

    def __enter__(self):
        lease = acquire(*self.args, duration_s=self.duration_s)
        self.renewer = Renewer(*self.args, duration_s=self.duration_s).start()
        return lease

    def __exit__(self, *exc_info):
        self.renewer.stop()
        release(*self.args)
        return False
