# Each target is one command on a fresh machine; all are idempotent.
PYTHON ?= python3

.PHONY: run test install bench package lint

run:            ## install, provision the default model pair, open the app
	$(PYTHON) scripts/bootstrap.py run

test:           ## install with test tools, provision models, run the whole test suite
	$(PYTHON) scripts/bootstrap.py test

install:
	$(PYTHON) scripts/bootstrap.py install

bench:          ## full benchmark on this machine (results in bench-results/)
	$(PYTHON) scripts/bootstrap.py install && .venv/bin/tandem bench

package:        ## build the desktop package for this machine (see packaging/)
	$(PYTHON) scripts/bootstrap.py install && .venv/bin/python packaging/build.py

lint:
	.venv/bin/ruff check .
