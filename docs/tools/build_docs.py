# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Builds the collection's documentation site with antsibull-docs and Sphinx, offline.

    python docs/tools/build_docs.py --dest build/docs [--theme sphinx_ansible_theme|alabaster]

Documents the checkout this script is part of (linked into a scratch collections path when the
checkout is not under .../ansible_collections/fediops/mastodon). Steps:
  1. `antsibull-docs sphinx-init --use-current` writes the Sphinx project (conf.py, build.sh, ...);
  2. the intersphinx inventories, which Sphinx would download from docs.python.org and
     docs.ansible.com, are replaced by a small local inventory of the Ansible labels the generated
     pages refer to (the links still point at docs.ansible.com);
  3. `antsibull-docs collection --use-current --fail-on-error` writes the plugin and role pages and the
     guides listed in docs/docsite/extra-docs.yml;
  4. the site's own front page (docs/site/index.rst) replaces antsibull-docs' placeholder, the benchmark chart
     (benchmarks/results/results.png) goes beside the benchmark page, and docs/site/custom.css (code blocks
     and tables scroll inside the page) is added to the theme;
  5. `sphinx-build -W --keep-going` makes the HTML: any warning is an error.
Prints the generated HTML pages, one per line, after a line `pages:`.

The theme is sphinx_ansible_theme (the Ansible documentation theme, as docs.ansible.com's collection pages;
tests/requirements.txt installs it); --theme alabaster builds with Sphinx's built-in theme instead.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

import yaml

COLLECTION = 'fediops.mastodon'
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE_DOCS = 'https://docs.ansible.com/projects/ansible/devel/'
# Labels of the Ansible documentation that antsibull-docs' pages link to: (name, page, title).
ANSIBLE_LABELS = (
    ('ansible_configuration_settings', 'reference_appendices/config.html', 'Ansible Configuration Settings'),
    ('common_return_values', 'reference_appendices/common_return_values.html', 'Return Values'),
    ('collections_installing', 'collections_guide/collections_installing.html', 'Installing collections'),
    ('playbooks_module_defaults', 'playbook_guide/playbooks_module_defaults.html', 'Module defaults'),
    ('module_defaults_groups', 'playbook_guide/playbooks_module_defaults.html#module-defaults-groups',
     'Module defaults groups'),
    ('using_collections', 'collections_guide/index.html', 'Using Ansible collections'),
    ('playbooks_intro', 'playbook_guide/playbooks_intro.html', 'Ansible playbooks'),
    ('playbooks_reuse_roles', 'playbook_guide/playbooks_reuse_roles.html', 'Roles'),
    ('role_argument_spec', 'playbook_guide/playbooks_reuse_roles.html#role-argument-validation',
     'Role argument validation'),
    ('check_mode_dry', 'playbook_guide/playbooks_checkmode.html', 'Validating tasks: check mode and diff mode'),
    ('playbooks_vault', 'vault_guide/index.html', 'Protecting sensitive data with Ansible vault'),
    ('keep_secret_data', 'reference_appendices/logging.html', 'Logging Ansible output'),
)
SITE = os.path.join(ROOT, 'docs', 'site')
BENCHMARK_CHART = os.path.join(ROOT, 'benchmarks', 'results', 'results.png')


def _tool(name):
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.access(candidate, os.X_OK) else (shutil.which(name) or name)


def write_inventory(path):
    """A Sphinx objects.inv (version 2) with the Ansible labels above."""
    lines = []
    for name, page, title in ANSIBLE_LABELS:
        lines.append('%s std:label -1 %s %s' % (name, page, title))
    header = ('# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n'
              '# The remainder of this file is compressed using zlib.\n').encode('utf-8')
    with open(path, 'wb') as handle:
        handle.write(header + zlib.compress(('\n'.join(lines) + '\n').encode('utf-8')))


def run(cmd, **kwargs):
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def collections_path(scratch):
    """A collections path holding this checkout as fediops.mastodon, and nothing else.

    A checkout under .../ansible_collections/fediops/mastodon is used where it is; any other checkout
    is linked into `scratch`. Only this path is searched, so an older fediops.mastodon installed in
    ~/.ansible/collections cannot be documented by mistake.
    """
    namespace_dir = os.path.dirname(ROOT)
    if (os.path.basename(ROOT), os.path.basename(namespace_dir)) == ('mastodon', 'fediops') and \
            os.path.basename(os.path.dirname(namespace_dir)) == 'ansible_collections':
        return os.path.dirname(os.path.dirname(namespace_dir))
    link_dir = os.path.join(scratch, 'ansible_collections', 'fediops')
    os.makedirs(link_dir)
    os.symlink(ROOT, os.path.join(link_dir, 'mastodon'))
    return scratch


def default_theme():
    return 'sphinx_ansible_theme' if importlib.util.find_spec('sphinx_ansible_theme') else 'alabaster'


def guides_toctrees():
    """One toctree per section of docs/docsite/extra-docs.yml, in its order, for the front page."""
    with open(os.path.join(ROOT, 'docs', 'docsite', 'extra-docs.yml'), encoding='utf-8') as handle:
        sections = yaml.safe_load(handle)['sections']
    return '\n'.join('.. toctree::\n   :maxdepth: 1\n   :caption: %s\n\n%s\n' % (
        section['title'], '\n'.join('   collections/fediops/mastodon/docsite/%s' % name for name in section['toctree']))
        for section in sections)


def add_site_files(dest, rst):
    """The front page, the benchmark chart and the stylesheet: files antsibull-docs does not place."""
    with open(os.path.join(SITE, 'index.rst'), encoding='utf-8') as handle:
        front_page = handle.read()
    with open(os.path.join(rst, 'index.rst'), 'w', encoding='utf-8') as handle:
        handle.write(front_page.replace('GUIDES-TOCTREES', guides_toctrees()))
    shutil.copyfile(BENCHMARK_CHART, os.path.join(rst, 'collections', 'fediops', 'mastodon', 'docsite',
                                                  'benchmark_results.png'))
    static = os.path.join(dest, '_static')
    os.makedirs(static, exist_ok=True)
    shutil.copyfile(os.path.join(SITE, 'custom.css'), os.path.join(static, 'fediops.css'))
    with open(os.path.join(dest, 'conf.py'), 'a', encoding='utf-8') as handle:
        handle.write('\n# Site files (docs/tools/build_docs.py).\n'
                     'html_static_path = [%r]\n'
                     "html_css_files = ['fediops.css']\n" % static)


def build(dest, theme=None, quiet=False):
    with tempfile.TemporaryDirectory(prefix='fediops-docs-') as scratch:
        os.environ['ANSIBLE_COLLECTIONS_PATH'] = collections_path(scratch)
        return _build(dest, theme, quiet)


def _build(dest, theme=None, quiet=False):
    theme = theme or default_theme()
    dest = os.path.abspath(dest)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    run([_tool('antsibull-docs'), 'sphinx-init', '--use-current', '--dest-dir', dest, '--sphinx-theme', theme,
         '--project', 'fediops.mastodon', '--copyright', 'fediops.mastodon contributors',
         '--title', 'fediops.mastodon: Mastodon on DigitalOcean Kubernetes', '--html-short-title', 'fediops.mastodon',
         '--no-add-antsibull-docs-version', '--fail-on-error', COLLECTION])
    write_inventory(os.path.join(dest, 'ansible.inv'))
    with open(os.path.join(dest, 'conf.py'), 'a', encoding='utf-8') as handle:
        handle.write('\n# Offline build (docs/tools/build_docs.py): no inventories downloaded.\n'
                     'intersphinx_mapping = {\n'
                     "    'ansible_devel': (%r, %r),\n"
                     '}\n' % (ANSIBLE_DOCS, os.path.join(dest, 'ansible.inv')))
    rst = os.path.join(dest, 'rst')
    os.makedirs(rst, exist_ok=True)
    os.chmod(rst, 0o755)
    run([_tool('antsibull-docs'), '--config-file', os.path.join(dest, 'antsibull-docs.cfg'), 'collection',
         '--use-current', '--fail-on-error', '--cleanup', 'everything', '--dest-dir', rst, COLLECTION],
        cwd=dest)
    add_site_files(dest, rst)
    html = os.path.join(dest, 'build', 'html')
    cmd = [_tool('sphinx-build'), '-b', 'html', '-W', '--keep-going', '-c', dest, rst, html]
    if quiet:
        cmd.insert(1, '-q')
    run(cmd, cwd=dest)
    pages = sorted(os.path.relpath(os.path.join(root, name), html)
                   for root, _dirs, files in os.walk(html) for name in files if name.endswith('.html'))
    return theme, html, pages


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--dest', default='build/docs', help='output directory (replaced)')
    parser.add_argument('--theme', help='Sphinx theme (default: sphinx_ansible_theme if installed, else alabaster)')
    parser.add_argument('--quiet', action='store_true')
    args = parser.parse_args()
    theme, html, pages = build(args.dest, args.theme, args.quiet)
    print('theme: %s' % theme)
    print('html: %s' % html)
    print('pages:')
    for page in pages:
        print(page)


if __name__ == '__main__':
    main()
