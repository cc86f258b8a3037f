# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The documentation site builds (antsibull-docs + Sphinx -W, offline) with every expected page."""
from __future__ import annotations

import os
import subprocess
import sys

from docs_helpers import COLLECTION_ROOT, collections_path, guide_names, role_names

BUILD_TOOL = os.path.join(COLLECTION_ROOT, 'docs', 'tools', 'build_docs.py')


def _module_names():
    directory = os.path.join(COLLECTION_ROOT, 'plugins', 'modules')
    return sorted(n[:-3] for n in os.listdir(directory) if n.endswith('.py') and not n.startswith('_'))


def test_docs_site_builds_without_warnings(tmp_path):
    dest = tmp_path / 'site'
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1')
    done = subprocess.run([sys.executable, BUILD_TOOL, '--dest', str(dest)], capture_output=True, text=True,
                          check=False, env=env, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-15000:]
    assert 'WARNING' not in output, [line for line in output.splitlines() if 'WARNING' in line]
    pages = output.split('\npages:\n', 1)[1].split()
    print('generated pages (%d):\n  %s' % (len(pages), '\n  '.join(pages)))
    prefix = 'collections/fediops/mastodon/'
    expected = {'index.html', prefix + 'index.html'}
    expected.update(prefix + '%s_module.html' % name for name in _module_names())
    expected.update(prefix + '%s_role.html' % name for name in role_names())
    expected.update(prefix + 'docsite/%s.html' % name for name in guide_names())
    missing = expected - set(pages)
    assert not missing, sorted(missing)
    # the guides are linked from the collection's index page
    index = (dest / 'build' / 'html' / 'collections' / 'fediops' / 'mastodon' / 'index.html').read_text(
        encoding='utf-8')
    for name in guide_names():
        assert 'docsite/%s.html' % name in index, name
    # role pages come from the argument_specs
    for role in role_names():
        html = (dest / 'build' / 'html' / 'collections' / 'fediops' / 'mastodon' / ('%s_role.html' % role)).read_text(
            encoding='utf-8')
        assert '%s_' % role in html, role
