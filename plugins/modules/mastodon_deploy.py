#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done on the controller by the action plugin of the same name (plugins/action/mastodon_deploy.py);
# this file holds its documentation.

from __future__ import annotations

DOCUMENTATION = r'''
module: mastodon_deploy
short_description: Plan, then apply a Mastodon deploy (config, migrations, web, streaming, sidekiq)
version_added: 0.2.0
description:
  - Runs on the controller (an action plugin). Reads the variables of every role of this collection (C(config_*),
    C(migrations_*), C(web_*), C(streaming_*), C(sidekiq_*)) from the play, so the roles' variables stay the only
    interface; their C(meta/argument_specs.yml) are the single source of the options.
  - B(Plan), before anything is written anywhere (cluster, files, DigitalOcean) - every variable of every role
    checked against its argument spec with strict types (V("two") is no integer), unknown C(<role>_*) variables
    and unknown Sidekiq group keys or queues reported with "did you mean"; rules between variables (names, hosts,
    a CDN host without scheme, resource quantities, strategy, nodeSelector, HPA bounds, the scheduler queue in
    exactly one replica); a given CA fully checked (X.509, CA:TRUE, validity, no private key; never echoed);
    DigitalOcean look-ups; the kept secrets read back from the cluster and the kept-secrets guard; the
    LOCAL_DOMAIN guard; Mastodon's environment validated for the version; every manifest rendered; the TLS
    preflight; a server-side dry-run of every object, a rejection mapped back to the variable that produced it.
    All problems are reported at once, each naming its variable.
  - B(Apply), in order - config objects, the pre-deployment migration Job, web, streaming, Sidekiq (server-side
    apply, ApplySet prune, wait), the post-deployment migration Job. Only objects that the dry-run found different
    are written, so a re-run writes nothing.
  - Check mode runs the plan and shows a per-component summary followed by the diff of every object. A first
    install works in check mode too - the namespace does not exist yet, so its objects are validated by the plan and
    reported as to be created.
  - The kept secrets guard - when the instance exists (its env Secret or ConfigMap, its web Deployment or the
    ApplySet marker C(<name>-set-config)) but the Secret C(<name>-generated-secrets) is missing, the plan refuses,
    naming what is missing and how to restore it (C(config_restore_kept_secrets_from_env=true), or
    C(config_secrets) from a backup); C(config_rotate_kept_secrets) replaces them on purpose, once, keeping each
    replaced generation in C(<name>-generated-secrets-previous-<generation>) (the encryption keys only with
    C(config_rotate_encryption_keys_destroying_encrypted_data)); a C(config_secrets) value that differs from the kept
    one is refused unless it is being rotated. The pre-deployment migration Job refuses a database that already holds
    a schema when its secrets were generated in this deploy (a changed name or namespace), and keys that do not
    decrypt the database's encrypted values.
author:
  - Fediops maintainers (@fediops)
extends_documentation_fragment:
  - fediops.mastodon.kubernetes
  - fediops.mastodon.attributes
attributes:
  action_group:
    description:
      - Use C(group/fediops.mastodon.kubernetes) or C(group/fediops.mastodon.digitalocean) in C(module_defaults)
        to set defaults for this module.
      - O(validate_certs) is the Kubernetes API's here; a C(validate_certs) in the defaults of
        C(group/fediops.mastodon.digitalocean) is refused (set C(config_do_validate_certs) instead).
    support: full
    membership:
      - fediops.mastodon.digitalocean
      - fediops.mastodon.kubernetes
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  api_token:
    description:
      - DigitalOcean API token (C(config_database_source=digitalocean)); C(config_do_api_token) takes precedence.
      - If neither is set, the first of E(DIGITALOCEAN_ACCESS_TOKEN), E(DIGITALOCEAN_TOKEN) and E(DO_API_TOKEN).
      - Never returned, logged or included in error messages.
    type: str
    aliases: [oauth_token]
  api_base_url:
    description: Base URL of the DigitalOcean API; C(config_do_api_base_url) takes precedence.
    type: str
    default: https://api.digitalocean.com
  timeout:
    description: Timeout of one DigitalOcean API request, in seconds.
    type: int
    default: 30
  ca_path:
    description: CA bundle for the DigitalOcean API endpoint; C(config_do_ca_path) takes precedence.
    type: path
  max_retries:
    description: Retries of one DigitalOcean API request after HTTP 429, 5xx, a timeout or a connection error.
    type: int
    default: 5
  max_wait:
    description: Upper bound, in seconds, of the waits before the retries of one DigitalOcean API request.
    type: int
    default: 60
  step:
    description:
      - V(all) plans and applies every component in this one task.
      - V(plan) runs every check of the plan and writes what it rendered (Secrets included) into a private file on the
        controller (mode 0600, in a new mode 0700 directory); the fact C(mastodon_deploy_plan) names only its path.
        Nothing is applied. The plan's one write to the cluster is the Job of the in-cluster TLS check
        (C(config_tls_preflight_in_cluster)), short-lived and always deleted, run only when every other check
        passed (so before any file is copied to C(config_files_hosts)).
      - V(config), V(migrate-pre), V(web), V(streaming), V(sidekiq), V(migrate-post) apply one part of that plan
        (each dry-runs its own objects against the server again first, unless the plan found every one of them
        unchanged and ready less than a minute before) and report their own changes and diff;
        while they wait they print one progress line per change of state, for example
        C(web - mastodon-web 1/3 updated, 2/3 ready (45 s)) with a colon after the step's name. Variables that differ from the plan's are refused
        (re-run the plan). Without a plan task before them (a role alone, C(--start-at-task)) they plan for
        themselves.
      - V(gate) is the point of no return before the post-deployment migrations - every pod of the web,
        streaming and Sidekiq Deployments runs the new image (pods of the old version are waited for, up to the
        largest of the three wait timeouts), and C(migrations_post=hold) stops there.
      - V(stop) does nothing unless C(config_upgrade_with_downtime=true) - then, unless the migration Job with
        downtime has already succeeded, it checks the backup gate, scales every Deployment of web, streaming and
        Sidekiq to 0 and waits until their pods are gone; V(migrate-pre) then runs every migration at once (without
        C(SKIP_POST_DEPLOYMENT_MIGRATIONS)), the rollout brings the new version up, and V(gate) and V(migrate-post)
        have nothing left to do.
      - V(finish) removes the plan's directory and the fact (playbooks/deploy.yml runs it in an C(always)
        section). A step whose fact names a directory that is gone (a fact cache) plans for itself.
      - playbooks/deploy.yml runs V(plan), then each step in this order as a task of its own.
      - V(rollback) (playbooks/rollback.yml) rolls config, web, streaming and Sidekiq back to the version the deploy
        record names as the previous one, with every check of a plan for that version, and records it (outcome
        C(rolled-back)); no migration runs. It is refused before anything is written once the newer version's
        post-deployment migrations have run (only a restore of the backup goes back), below 4.7 once a 4.7 pod has
        run, and when the environment has keys the older version refuses. A re-run changes nothing.
    type: str
    choices: [all, plan, config, stop, migrate-pre, web, streaming, sidekiq, gate, migrate-post, finish, rollback]
    default: all
  outcome:
    description: With O(step=finish), how the deploy ended (recorded with the deploy).
    type: str
    choices: [ok, failed]
    default: ok
  components:
    description:
      - The parts of the deploy to apply, in this order whatever the order given. The plan always checks the
        variables of every role (the model needs them all) and dry-runs the objects of these components.
    type: list
    elements: str
    choices: [config, migrate-pre, web, streaming, sidekiq, migrate-post]
    default: [config, migrate-pre, web, streaming, sidekiq, migrate-post]
  stage_files:
    description:
      - Run the plan only (nothing is applied) and write C(.env.production) and the CA into a new private directory
        on the controller (mode 0700, files 0600), returned as RV(staged_dir), for copying to C(config_files_hosts).
      - The directory also keeps the secrets generated by this plan, so that the apply run that follows with
        O(staged_dir) uses the same ones.
    type: bool
    default: false
  staged_dir:
    description:
      - A directory written by O(stage_files). The plan uses the secrets kept there when the cluster has none yet
        (a first install) and refuses to apply when the environment differs from the staged C(.env.production).
    type: path
requirements:
  - kubernetes
  - cryptography
  - requests (with C(config_database_source=digitalocean))
notes:
  - The DigitalOcean token is O(api_token), C(config_do_api_token) or the environment (E(DIGITALOCEAN_ACCESS_TOKEN),
    E(DIGITALOCEAN_TOKEN), E(DO_API_TOKEN)).
  - The result carries no secret value; diffs mask Secret data.
seealso:
  - module: fediops.mastodon.k8s_apply
  - module: fediops.mastodon.mastodon_env
'''

EXAMPLES = r'''
- name: Deploy Mastodon (every component)
  fediops.mastodon.mastodon_deploy:
  vars:
    config_local_domain: social.example
    config_do_database_cluster: mastodon-pg
    config_do_redis_cluster: mastodon-valkey
    config_env:
      S3_ENABLED: true
      S3_BUCKET: media

- name: Plan once (every check), then apply web alone from that plan
  block:
    - name: Plan
      fediops.mastodon.mastodon_deploy:
        step: plan
    - name: Web
      fediops.mastodon.mastodon_deploy:
        step: web
  always:
    - name: Finish
      fediops.mastodon.mastodon_deploy:
        step: finish

- name: The web step (what the web role does) - from the plan of the play, or planned for itself
  fediops.mastodon.mastodon_deploy:
    step: web
'''

RETURN = r'''
changed:
  description: Whether any object was (or, in check mode, would be) created, changed or pruned.
  returned: always
  type: bool
summary:
  description: The per-component summary of the plan (objects to create, change, leave, prune).
  returned: success
  type: str
  sample: "Plan of the deploy (per component):\n  web          1 configured, 3 unchanged\n"
plan:
  description: The checks the plan ran, in order.
  returned: success
  type: list
  elements: str
components:
  description: Per component, the objects with their action (created, configured, unchanged, replaced) and what was
    pruned.
  returned: success
  type: dict
generated_secrets:
  description: Names of the kept secrets generated by this run (first install or rotation); never their values.
  returned: success
  type: list
  elements: str
ansible_facts:
  description: With O(step=plan), the fact C(mastodon_deploy_plan) for the steps that follow.
  returned: success and O(step=plan)
  type: dict
  contains:
    mastodon_deploy_plan:
      description: C(path) of the plan's file (no secret is in the fact), C(steps), C(version), C(summary).
      type: dict
      returned: success
planned_here:
  description: Whether the step planned for itself (no plan task before it in the play) rather than applying the
    plan task's plan.
  returned: success and a step other than V(all), V(plan) and V(finish)
  type: bool
step:
  description: The step that ran (O(step) other than V(all) and V(plan)).
  returned: success
  type: str
msg:
  description:
    - What the V(gate) and V(migrate-post) steps decided (for example the restore point, or the command that runs held
      post-deployment migrations later).
    - With C(migrations_running), what is still running and what was not started.
  returned: sometimes
  type: str
errors:
  description: On a rejected plan, every problem found, each naming its variable.
  returned: failure
  type: list
  elements: str
variables:
  description: On a rejected plan, the variables at fault.
  returned: failure
  type: list
  elements: str
staged_dir:
  description: The directory written by O(stage_files).
  returned: when O(stage_files=true)
  type: str
version:
  description: The Mastodon version deployed.
  returned: success
  type: str
migrations_running:
  description:
    - A migration Job was still running when C(migrations_wait_timeout) was spent. It was left running (never killed)
      and no later component was applied; C(msg) and a warning say how long it has run and which migration it is at.
      Run the deploy again later, which re-attaches to the Job.
    - With O(step), the migration step that left its Job running says so, and so does every later step (V(web),
      V(streaming), V(sidekiq), V(gate), V(migrate-post)) while the pre-deployment Job still runs; they apply nothing.
  returned: when a migration Job was left running
  type: bool
  sample: true
'''
