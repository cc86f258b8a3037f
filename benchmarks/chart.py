# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PNG chart of the deploy benchmark's results (benchmarks/run.py).

  python benchmarks/chart.py benchmarks/results/results.json benchmarks/results/results.png
"""
from __future__ import annotations

import json
import sys

PHASES = (('first', 'first deploy'), ('rerun', 'idempotent re-run'))
COLORS = {'ours': '#2b7bb9', 'ours_apply': '#5fb0e8', 'core_per_role': '#e08a1e', 'core_loop': '#b83b3b'}


def _bars(ax, results, key, ylabel, title):
    variants = list(results['variants'])
    width = 0.8 / max(len(variants), 1)
    for index, name in enumerate(variants):
        entry = results['variants'][name]
        xs, meds, lows, highs = [], [], [], []
        for pos, (phase, _label) in enumerate(PHASES):
            stat = entry[phase][key]
            xs.append(pos + (index - (len(variants) - 1) / 2.0) * width)
            meds.append(stat['median'])
            lows.append(stat['median'] - stat['min'])
            highs.append(stat['max'] - stat['median'])
        ax.bar(xs, meds, width, yerr=[lows, highs], capsize=3, label=entry['label'], color=COLORS.get(name))
        for x, med in zip(xs, meds):
            ax.annotate('%g' % round(med, 1), (x, med), ha='center', va='bottom', fontsize=7,
                        xytext=(0, 2), textcoords='offset points')
    ax.set_xticks(range(len(PHASES)))
    ax.set_xticklabels([label for _phase, label in PHASES])
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def draw(results, path):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    if results.get('variants'):
        _bars(axes[0], results, 'seconds', 'seconds (median, min-max)', 'Wall time, %d objects' %
              results['meta'].get('objects', 0))
        axes[0].legend(fontsize=7, loc='upper right')
        _bars(axes[1], results, 'requests', 'API requests (median, min-max)', 'API requests (audit log)')
    ax = axes[2]
    points = results.get('scale') or []
    if points:
        objects = [p['objects'] for p in points]
        for name in ('ours', 'core_per_role', 'core_loop'):
            for phase, label in PHASES:
                ys = [p[name][phase]['seconds']['median'] if name in p else None for p in points]
                pairs = [(x, y) for x, y in zip(objects, ys) if y is not None]
                if not pairs:
                    continue
                ax.plot([x for x, _y in pairs], [y for _x, y in pairs], marker='o',
                        linestyle='-' if phase == 'first' else '--', color=COLORS.get(name),
                        label='%s %s' % (name, label))
        base = [p for p in points if p['factor'] == 1 and 'ours' in p]
        if base:
            x0, y0 = base[0]['objects'], base[0]['ours']['first']['seconds']['median']
            ax.plot(objects, [y0 * x / x0 for x in objects], color='grey', linestyle=':', label='linear from ours x1')
        ax.set_xlabel('objects')
        ax.set_ylabel('seconds (median)')
        ax.set_title('Scale: extra sidekiq worker groups', fontsize=10)
        ax.legend(fontsize=7)
    fail = results.get('failure') or {}
    notes = []
    for name in ('ours', 'core_wait', 'core_condition'):
        if name in fail:
            entry = fail[name]
            latency = entry.get('latency')
            if latency:
                text = 'failed %.1f s after the pod' % latency['median']
            elif entry['reported_failed']:
                text = 'failed in %d/%d runs' % (entry['reported_failed'], entry['runs'])
            else:
                text = 'task ok, failure never reported (%d runs)' % entry['runs']
            notes.append('%s: %s' % (entry['label'], text))
    if notes:
        fig.text(0.01, 0.01, 'Failing migration Job: ' + '; '.join(notes), fontsize=8)
    meta = results.get('meta', {})
    fig.suptitle('fediops.mastodon deploy vs kubernetes.core %s (ansible-core %s, %s CPUs, %s runs)' % (
        meta.get('kubernetes_core'), meta.get('ansible_core'), meta.get('cpus'), meta.get('runs')), fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding='utf-8') as handle:
        draw(json.load(handle), argv[1])
    return 0


if __name__ == '__main__':
    sys.exit(main())
