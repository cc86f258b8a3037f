# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The documentation site builds (antsibull-docs + Sphinx -W, offline) with every expected page."""
from __future__ import annotations

import os
import re

from docs_helpers import COLLECTION_ROOT, guide_names, role_names


def _module_names():
    directory = os.path.join(COLLECTION_ROOT, 'plugins', 'modules')
    return sorted(n[:-3] for n in os.listdir(directory) if n.endswith('.py') and not n.startswith('_'))


def test_docs_site_builds_without_warnings(docs_site):
    output, pages, dest = docs_site.output, docs_site.pages, docs_site.dest
    assert 'WARNING' not in output, [line for line in output.splitlines() if 'WARNING' in line]
    assert 'theme: sphinx_ansible_theme' in output
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


def test_front_page_and_user_facing_text(docs_site):
    """The site's own front page (what it is, the guides first, the two commands), the benchmark chart on its page,
    no invented links and no internal tracker numbers in what a reader sees."""
    index = (docs_site.html / 'index.html').read_text(encoding='utf-8')
    assert 'Welcome to my Ansible collection documentation' not in index
    words = ' '.join(re.sub(r'<[^>]+>', ' ', index).split())
    for text in ('deploys and upgrades', 'make demo', 'make demo-down', 'make test', 'fediops.mastodon.status'):
        assert text in words, text
    assert index.index('Guides') < index.index('Reference'), 'the guides come first'
    for name in guide_names():
        assert 'collections/fediops/mastodon/docsite/%s.html' % name in index, name
    benchmark = (docs_site.html / 'collections' / 'fediops' / 'mastodon' / 'docsite' / 'benchmark.html').read_text(
        encoding='utf-8')
    assert re.search(r'<img[^>]+src="[^"]*benchmark_results\.png"', benchmark)
    assert list(docs_site.html.glob('_images/benchmark_results*.png'))
    for page in docs_site.pages:
        text = (docs_site.html / page).read_text(encoding='utf-8')
        assert 'example.invalid' not in text, page
        assert not re.search(r'\b[Ii]ssue \d+\b', re.sub(r'<[^>]+>', ' ', text)), page
