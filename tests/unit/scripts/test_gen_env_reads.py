# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""plugins/module_utils/_mastodon_env_reads.py is exactly what scripts/gen_env_reads.py makes of tests/data."""
from __future__ import annotations

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture(scope='module')
def gen():
    spec = importlib.util.spec_from_file_location('gen_env_reads', os.path.join(ROOT, 'scripts', 'gen_env_reads.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_module_is_the_generated_one(gen):
    with open(gen.OUTPUT, encoding='utf-8') as handle:
        committed = handle.read()
    assert committed == gen.generate(), 'run python scripts/gen_env_reads.py'
    assert gen.main(['--check']) == 0


def test_builder_suffixes_become_full_names(gen):
    """lib/mastodon/redis_configuration.rb:72-73 reads <prefix>REDIS_SENTINEL_USERNAME/PASSWORD: Rails, every
    prefix; streaming/redis.js:55 reads the unprefixed one too."""
    catalogue = {'SENTINEL_USERNAME': ['lib/mastodon/redis_configuration.rb:72'],
                 'REDIS_SENTINEL_USERNAME': ['streaming/redis.js:55'], 'REDIS_': ['lib/mastodon/redis_configuration.rb:38'],
                 'TEST_ENV_NUMBER': ['lib/mastodon/redis_configuration.rb:45']}
    for suffix in gen.BUILT_SUFFIXES:
        catalogue.setdefault(suffix, ['lib/mastodon/redis_configuration.rb:40'])
    catalogue['PORT'] = ['lib/mastodon/redis_configuration.rb:44', 'config/puma.rb:12']
    reads = gen.resolve(catalogue)
    assert gen.placement(reads['REDIS_SENTINEL_USERNAME']) == 'both'
    assert gen.placement(reads['SIDEKIQ_REDIS_SENTINEL_USERNAME']) == gen.placement(reads['CACHE_REDIS_URL']) == 'rails'
    assert reads['PORT'] == ['config/puma.rb:12'] and 'URL' not in reads and 'REDIS_' not in reads
    assert reads['TEST_ENV_NUMBER'] == ['lib/mastodon/redis_configuration.rb:45']


def test_a_catalogue_without_a_builder_suffix_is_refused(gen):
    with pytest.raises(SystemExit):
        gen.resolve({'REDIS_': ['lib/mastodon/redis_configuration.rb:38']})


def test_every_catalogue_has_its_line(gen):
    versions = gen.load_versions()
    for line in versions.LINE_ORDER:
        with open(os.path.join(gen.DATA, versions.env_reads_catalogue(line)), encoding='utf-8') as handle:
            assert len(json.load(handle)) > 300
