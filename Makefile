# The two commands of the README: `make demo` (the main job on a local embedded default, left running for you
# to look at; `make demo-down` stops it) and `make test` (the whole suite). Each target prepares the machine
# first with scripts/setup.sh, installing only what that target needs (--for).
SHELL := /bin/bash
export FEDIOPS_CACHE ?= $(HOME)/.cache/fediops-mastodon
SETUP = source <(bash scripts/setup.sh --print-env --for

.PHONY: test demo demo-down setup lint sanity units pytest molecule build docs bench clean-cache

test:
	$(SETUP) test) && python scripts/run_tests.py

demo:
	$(SETUP) demo) && bash scripts/demo.sh

demo-down:
	bash scripts/demo_run.sh --down

setup:
	bash scripts/setup.sh --for test

lint sanity units pytest molecule:
	$(SETUP) test) && FEDIOPS_STAGES=$@ python scripts/run_tests.py

docs:
	$(SETUP) docs) && python docs/tools/build_docs.py --dest build/docs

bench:
	$(SETUP) bench) && python benchmarks/run.py

build:
	$(SETUP) build) && bash scripts/build_collection.sh build

clean-cache:
	rm -rf $(FEDIOPS_CACHE)
