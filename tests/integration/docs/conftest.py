# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The documentation site, built once per session for the docs tests (docs/tools/build_docs.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from docs_helpers import COLLECTION_ROOT, collections_path

BUILD_TOOL = os.path.join(COLLECTION_ROOT, 'docs', 'tools', 'build_docs.py')


class Site(object):
    def __init__(self, dest, output):
        self.dest = dest
        self.html = dest / 'build' / 'html'
        self.output = output
        self.pages = output.split('\npages:\n', 1)[1].split() if '\npages:\n' in output else []


@pytest.fixture(scope='session')
def docs_site(tmp_path_factory):
    dest = tmp_path_factory.mktemp('docs') / 'site'
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1')
    done = subprocess.run([sys.executable, BUILD_TOOL, '--dest', str(dest)], capture_output=True, text=True,
                          check=False, env=env, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-15000:]
    return Site(dest, output)
