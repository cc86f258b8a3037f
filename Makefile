# The two commands of the README: `make demo` (the main job on a local embedded default) and
# `make test` (the whole suite). Both prepare the machine first with scripts/setup.sh.
SHELL := /bin/bash
export FEDIOPS_CACHE ?= $(HOME)/.cache/fediops-mastodon
SETUP = source <(bash scripts/setup.sh --print-env)

.PHONY: test demo setup lint sanity units pytest molecule build docs bench clean-cache

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

build:
	$(SETUP) && ansible-galaxy collection build --force --output-path build/

clean-cache:
	rm -rf $(FEDIOPS_CACHE)
