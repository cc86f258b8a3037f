# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Small helpers shared by the AWX / execution environment / docs tests."""
from __future__ import annotations

import os
import shutil
import sys

import yaml

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def tool(name):
    """An executable of the test venv (next to sys.executable), else from PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if not found:
        raise RuntimeError('%s not found (run the tests through `make pytest`)' % name)
    return found


def collection_version():
    with open(os.path.join(COLLECTION_ROOT, 'galaxy.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)['version']


def collections_path():
    """The ANSIBLE_COLLECTIONS_PATH entry that holds this copy as ansible_collections/fediops/mastodon."""
    ns_dir = os.path.dirname(COLLECTION_ROOT)
    if os.path.basename(os.path.dirname(ns_dir)) != 'ansible_collections':
        raise RuntimeError('run the integration tests through `make pytest` (a collection copy)')
    return os.path.dirname(os.path.dirname(ns_dir))
