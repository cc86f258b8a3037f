# The two commands of the README: `make demo` (the main job on a local embedded default) and
# `make test` (the whole suite). Both prepare the machine first with scripts/setup.sh.
SHELL := /bin/bash
export FEDIOPS_CACHE ?= $(HOME)/.cache/fediops-mastodon
SETUP = source <(bash scripts/setup.sh --print-env)

.PHONY: test demo setup lint sanity units pytest molecule build docs bench bench-quick clean-cache

test:
	$(SETUP) && python scripts/run_tests.py

demo:
	$(SETUP) && bash scripts/demo.sh

setup:
	bash scripts/setup.sh

lint sanity units pytest molecule:
	$(SETUP) && FEDIOPS_STAGES=$@ python scripts/run_tests.py

docs:
	$(SETUP) && python docs/tools/build_docs.py --dest build/docs

bench:
	$(SETUP) && python benchmarks/run.py

# The side-by-side comparison only: 3 alternated rounds of deploy.yml and kubernetes.core.k8s one task per role on the
# same 18 objects (first deploy + idempotent re-run), no failure or scale series; results in build/bench-quick.
bench-quick:
	$(SETUP) && python benchmarks/run.py --runs 3 --variants ours,core_per_role --failure-runs 0 --scales '' \
		--no-chart --output build/bench-quick

build:
	$(SETUP) && ansible-galaxy collection build --force --output-path build/

clean-cache:
	rm -rf $(FEDIOPS_CACHE)
