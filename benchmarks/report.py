# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Prints the benchmark's results (benchmarks/results/results.json) as reStructuredText tables.

  python benchmarks/report.py [benchmarks/results/results.json]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _range(stat, unit=''):
    if not stat:
        return '-'
    if unit:
        return '%.1f%s (%.1f-%.1f)' % (stat['median'], unit, stat['min'], stat['max'])
    return '%g (%g-%g)' % (stat['median'], stat['min'], stat['max'])


def _table(header, rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = '  '.join('=' * w for w in widths)
    out = [line, '  '.join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip(), line]
    out += ['  '.join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    out.append(line)
    return '\n'.join(out)


def render(results):
    parts = []
    rows = []
    for name, entry in results['variants'].items():
        for phase in ('first', 'rerun'):
            stat = entry[phase]
            rows.append([name + ' ' + entry['label'].split(' ', 1)[0], phase, _range(stat['seconds'], ' s'),
                         _range(stat['requests']), _range(stat['writes']),
                         results['requests_per_object'][name][phase]['writes'],
                         '%g / %g' % (stat['tasks']['median'], stat['modules']['median'])])
    parts.append(_table(['variant', 'run', 'seconds: median (min-max)', 'API requests', 'writes', 'writes/object',
                         'tasks / modules'], rows))
    ratio_rows = [[pair, results['ratios'].get('first', {}).get(pair, '-'), results['ratios'].get('rerun', {}).get(pair, '-')]
                  for pair in results['ratios'].get('rerun', {})]
    parts.append(_table(['time ratio (median)', 'first deploy', 're-run'], ratio_rows))
    fail_rows = []
    for name, entry in results.get('failure', {}).items():
        if name == 'setup':
            continue
        fail_rows.append([entry['label'], '%d/%d' % (entry['reported_failed'], entry['runs']),
                          _range(entry['latency'], ' s'), _range(entry['playbook_seconds'], ' s')])
    if fail_rows:
        parts.append(_table(['failing migration Job', 'reported failed', 'after the pod failed', 'playbook'],
                            fail_rows))
    scale_rows = []
    for point in results.get('scale', []):
        for name in ('ours', 'core_per_role', 'core_loop'):
            if name in point:
                stat = point[name]
                scale_rows.append(['x%d' % point['factor'], point['objects'], name,
                                   _range(stat['first']['seconds'], ' s'), _range(stat['rerun']['seconds'], ' s'),
                                   _range(stat['first']['requests']), _range(stat['rerun']['requests'])])
    if scale_rows:
        parts.append(_table(['scale', 'objects', 'variant', 'first deploy', 're-run', 'requests first',
                             'requests re-run'], scale_rows))
    target_rows = [[name, t['target'], json.dumps(t['measured']), 'yes' if t['met'] else 'no']
                   for name, t in results.get('targets', {}).items()]
    if target_rows:
        parts.append(_table(['target', 'wanted', 'measured', 'met'], target_rows))
    return '\n\n'.join(parts)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).resolve().parent / 'results' / 'results.json'
    print(render(json.loads(path.read_text(encoding='utf-8'))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
