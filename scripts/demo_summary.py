"""The summary `make demo` ends with (called by scripts/demo_run.sh): what was deployed, how to look at it and
what to try next, each command ready to copy. Reads the status playbook's JSON output (ansible.builtin.json
callback), the namespace's objects (`kubectl get ... -o json`) and the demo's variables file."""
import argparse
import json
import re
import shlex

import yaml

RULE = '-' * 78


def status_result(path):
    """The mastodon_status result inside the json callback's output."""
    with open(path, encoding='utf-8') as handle:
        data = json.load(handle)
    for play in data['plays']:
        for task in play['tasks']:
            for result in task['hosts'].values():
                if 'table' in result and 'components' in result:
                    return result
    raise SystemExit('demo: no mastodon_status result in %s' % path)


def next_patch(version):
    match = re.match(r'^(v?\d+\.\d+\.)(\d+)$', version)
    return '%s%d' % (match.group(1), int(match.group(2)) + 1) if match else version


def endpoints(objects, name):
    rows = []
    for obj in objects:
        if obj['kind'] != 'Ingress' or (obj['metadata'].get('labels') or {}).get(
                'app.kubernetes.io/instance') != name:
            continue
        for rule in obj['spec'].get('rules') or []:
            for path in (rule.get('http') or {}).get('paths') or []:
                service = path['backend'].get('service') or {}
                port = service.get('port', {}).get('number') or service.get('port', {}).get('name')
                rows.append('  %-26s https://%s%s -> Service %s:%s' % (
                    'Ingress ' + obj['metadata']['name'], rule.get('host', '*'), path.get('path', '/'),
                    service.get('name'), port))
    return rows


def names(objects, kind, name):
    return [o['metadata']['name'] for o in objects if o['kind'] == kind and
            (o['metadata'].get('labels') or {}).get('app.kubernetes.io/instance') == name]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    for option in ('vars', 'status', 'objects', 'recap', 'env-file', 'repo', 'base-url', 'seconds'):
        parser.add_argument('--' + option, required=True)
    args = parser.parse_args()
    with open(args.vars, encoding='utf-8') as handle:
        settings = yaml.safe_load(handle)
    with open(args.objects, encoding='utf-8') as handle:
        objects = json.load(handle)['items']
    status = status_result(args.status)
    name, namespace = settings.get('config_name', 'mastodon'), settings['config_namespace']
    version = settings['config_mastodon_version']
    changed = re.search(r'changed=(\d+)', args.recap)
    failed = re.search(r'failed=(\d+)', args.recap)
    vars_opt = '-e @' + args.vars
    upgrade = next_patch(version)
    failing = next_patch(upgrade)
    fail_annotation = shlex.quote(json.dumps({'migrations_pod_annotations': {'sim.fediops.test/fail': 'true'}}))

    out = ['', RULE, 'Mastodon %s deployed to the local Kubernetes cluster, namespace %s, in %s s' % (
        version, namespace, args.seconds)]
    if changed:
        out.append('ansible-playbook recap: %s%s' % (
            ' '.join(args.recap.split(':', 1)[1].split()),
            '  (nothing changed: an idempotent re-run)' if changed.group(1) == '0' and failed
            and failed.group(1) == '0' else ''))
    out += ['', 'What runs (ansible-playbook playbooks/status.yml %s):' % vars_opt]
    out += ['  ' + line for line in status['table']]
    out += ['', 'Endpoints (the local cluster has no ingress controller: nothing answers there):']
    out += endpoints(objects, name) or ['  (no Ingress)']
    cdn = settings.get('config_cdn_host')
    if cdn:
        out.append('  %-26s https://%s (CDN_HOST)' % ('static assets', cdn))
    ca = status['database_ca']
    out += ['', 'Where things come from:',
            '  settings     %s (every variable is a role variable: see the roles\' pages in the docs)' % args.vars,
            '  database CA  GET /v2/databases/{id}/ca of the DigitalOcean API (here its stand-in, %s) for the' % (
                args.base_url),
            '               database cluster %s -> Secret %s (%s), mounted into every pod' % (
                settings.get('config_do_database_cluster'), ca['secret'],
                'expires %s' % ca['not_after'] if ca.get('not_after') else ca['state']),
            '  environment  ConfigMaps %s; Secrets %s' % (
                ', '.join(names(objects, 'ConfigMap', name)) or '-', ', '.join(names(objects, 'Secret', name)) or '-'),
            '               (database and Redis endpoints from the DigitalOcean API; secrets generated once, kept)',
            '', 'Look at it (in your shell):',
            '  source %s && cd %s' % (args.env_file, args.repo),
            '  kubectl -n %s get deployments,pods,jobs' % namespace,
            '  kubectl -n %s get configmap %s-env -o yaml' % (namespace, name),
            '  ansible-playbook playbooks/status.yml %s' % vars_opt,
            '', 'Try next:',
            '  # a dry run with diff of an upgrade to the next patch (changes nothing):',
            '  ansible-playbook playbooks/deploy.yml %s -e config_mastodon_version=%s --check --diff' % (
                vars_opt, upgrade),
            '  # the upgrade: pre-deployment migration Job, rollout, post-deployment migration Job',
            '  ansible-playbook playbooks/deploy.yml %s -e config_mastodon_version=%s' % (vars_opt, upgrade),
            '  # a failing migration (the local cluster fails pods annotated sim.fediops.test/fail):',
            '  # the play stops at the pre-deployment migration and the running version stays',
            '  ansible-playbook playbooks/deploy.yml %s -e config_mastodon_version=%s -e %s' % (
                vars_opt, failing, fail_annotation),
            '', 'Everything keeps running: `make demo` again re-runs the deploy (changed=0); `make demo-down` stops it.',
            RULE]
    print('\n'.join(out))


if __name__ == '__main__':
    main()
