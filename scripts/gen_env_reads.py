# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Generate plugins/module_utils/_mastodon_env_reads.py from Mastodon's env-reads catalogues.

The plugins cannot read tests/data at run time, so what each supported line reads from its environment, and
where (Rails, streaming or both), is written into a small module. The lines and their catalogues come from
plugins/module_utils/_mastodon_versions.py; the catalogues from tests/data/mastodon/ (README there).

    python scripts/gen_env_reads.py          # rewrite the module
    python scripts/gen_env_reads.py --check  # exit 1 if the committed module differs

tests/unit/scripts/test_gen_env_reads.py holds the committed module equal to what this script generates.
"""
import importlib.util
import json
import os
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, 'tests', 'data', 'mastodon')
OUTPUT = os.path.join(REPO, 'plugins', 'module_utils', '_mastodon_env_reads.py')

# lib/mastodon/redis_configuration.rb builds its names from a prefix (none, CACHE_, SIDEKIQ_) plus 'REDIS_'
# (line 38) plus a suffix (lines 40-45 and 69-73): a scan for ENV[...] sees only the suffix.
BUILDER = 'lib/mastodon/redis_configuration.rb'
BUILDER_PREFIXES = ('', 'CACHE_', 'SIDEKIQ_')
BUILT_SUFFIXES = ('URL', 'USER', 'PASSWORD', 'HOST', 'PORT', 'DB', 'SENTINEL_MASTER', 'SENTINEL_PORT', 'SENTINELS',
                  'SENTINEL_USERNAME', 'SENTINEL_PASSWORD')
STREAMING_DIR = 'streaming/'
RAILS, STREAMING, BOTH = 'rails', 'streaming', 'both'


def load_versions():
    path = os.path.join(REPO, 'plugins', 'module_utils', '_mastodon_versions.py')
    spec = importlib.util.spec_from_file_location('_mastodon_versions', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _in_builder(place):
    return place.startswith(BUILDER + ':')


def resolve(catalogue):
    """{full name: [places]} of a catalogue: the builder's suffixes become the names it builds."""
    reads = dict((name, list(places)) for name, places in catalogue.items())
    built = {}
    for suffix in BUILT_SUFFIXES:
        at_builder = [p for p in reads.get(suffix, []) if _in_builder(p)]
        if not at_builder:
            raise SystemExit('%s is no longer read at %s: check the Redis names it builds' % (suffix, BUILDER))
        for prefix in BUILDER_PREFIXES:
            built.setdefault(prefix + 'REDIS_' + suffix, []).extend(at_builder)
        reads[suffix] = [p for p in reads[suffix] if not _in_builder(p)]
    if not [p for p in reads.get('REDIS_', []) if _in_builder(p)]:
        raise SystemExit('the prefix REDIS_ is no longer read at %s' % BUILDER)
    reads['REDIS_'] = [p for p in reads['REDIS_'] if not _in_builder(p)]
    for name, places in built.items():
        reads.setdefault(name, []).extend(places)
    return dict((name, places) for name, places in reads.items() if places)


def placement(places):
    streaming = [p.startswith(STREAMING_DIR) for p in places]
    if all(streaming):
        return STREAMING
    return BOTH if any(streaming) else RAILS


def generate():
    versions = load_versions()
    lines = []
    for line in versions.LINE_ORDER:
        name = versions.env_reads_catalogue(line)
        with open(os.path.join(DATA, name), encoding='utf-8') as handle:
            reads = resolve(json.load(handle))
        groups = {RAILS: [], STREAMING: [], BOTH: []}
        for key in sorted(reads):
            groups[placement(reads[key])].append(key)
        lines.append((line, name, groups))
    out = [
        '# -*- coding: utf-8 -*-',
        '# Copyright (c) fediops.mastodon contributors',
        '# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)',
        '# SPDX-License-Identifier: GPL-3.0-or-later',
        '',
        '"""Every environment variable that each supported Mastodon line reads, and where: GENERATED, do not edit.',
        '',
        'PRIVATE to this collection: no API guarantees.',
        '',
        'Made by scripts/gen_env_reads.py from tests/data/mastodon/env-reads-*.json (their upstream commits are in',
        'tests/data/mastodon/README.md). `rails`: read by config/, lib/ or app/ (web, sidekiq, the migrations);',
        '`streaming`: read by streaming/ only; `both`: by both. The Redis names that lib/mastodon/redis_configuration.rb',
        'builds from a prefix (none, CACHE_, SIDEKIQ_) are included with their full names.',
        '"""',
        '',
        'from __future__ import annotations',
        '',
        "RAILS, STREAMING, BOTH = 'rails', 'streaming', 'both'",
        '',
        'SOURCES = {',
    ]
    for line, name, dummy in lines:
        out.append("    '%s': '%s'," % (line, name))
    out += ['}', '', '_READS = {']
    for line, dummy, groups in lines:
        out.append("    '%s': {" % line)
        for where in (RAILS, STREAMING, BOTH):
            text = ' '.join(groups[where])
            wrapped = textwrap.wrap(text, 108, break_long_words=False, break_on_hyphens=False)
            out.append("        %s: '''" % where.upper())
            out += ['            ' + part for part in wrapped]
            out.append("        ''',")
        out.append('    },')
    out += [
        '}',
        '',
        '# {line: {name: rails|streaming|both}}',
        'READS = dict((line, dict((name, where) for where, names in groups.items() for name in names.split()))',
        '             for line, groups in _READS.items())',
        '',
    ]
    return '\n'.join(out)


def main(argv):
    text = generate()
    if '--check' in argv:
        with open(OUTPUT, encoding='utf-8') as handle:
            if handle.read() != text:
                print('%s is not what scripts/gen_env_reads.py generates: run it' % OUTPUT)
                return 1
        return 0
    tmp = OUTPUT + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.replace(tmp, OUTPUT)
    print('wrote %s' % os.path.relpath(OUTPUT, REPO))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
