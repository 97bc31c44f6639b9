# Shoal: everything the project needs is installed from here (Python venv, npm packages for the
# web page, and for the test suite Debian's chromium and nginx).
#   make demo   install what is missing, start a local 3-node cluster with embedded S3,
#               upload a generated sample video, wait until it is ready, print its playback URL
#   make test   install what is missing, run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install lock demo test test-fast down bench clean web system

install: $(STAMP) web

# Exactly the versions of requirements.lock, then the project itself without resolving anything
# again (--no-deps), then pip's own consistency check: a fresh machine gets the same set.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e '.[test]'
	$(PY) -m pip check
	@touch $(STAMP)

# After changing a dependency in pyproject.toml: install within its new range, then pin what
# got installed (scripts/lock.py: the closure of shoal[test], not pip freeze).
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) scripts/lock.py
	@touch $(STAMP)

web: web/node_modules/.installed

web/node_modules/.installed: web/package.json
	@if command -v npm >/dev/null 2>&1; then \
	  if [ -f web/package-lock.json ]; then npm ci --prefix web --no-audit --no-fund --loglevel=error; \
	  else npm install --prefix web --no-audit --no-fund --loglevel=error; fi && touch $@; \
	else echo "npm not found: the web page will ask for 'npm ci --prefix web' (the API works without it)"; fi

# Debian packages the test suite and benchmarks use: chromium (browser test), nginx and wrk
# (streaming benchmark: the reference server and the load generator), iproute2 and iptables
# (`shoal lab` and its test: network namespaces and real partitions).
system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium chromium-driver"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing="$$missing iproute2"; \
	command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing="$$missing iptables"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing"; \
	  else echo "warning: missing$$missing (install them with apt-get as root)"; fi; \
	fi

demo: install
	$(VENV)/bin/shoal demo

down:
	$(VENV)/bin/shoal down

test: install system
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

test-fast: install
	$(PY) -m pytest -q -m "not cluster"

bench: install system
	$(PY) bench/ingest/run.py
	$(PY) bench/membership/run.py
	$(PY) bench/streaming/run.py
	$(PY) bench/processing/run.py

clean:
	rm -rf $(VENV) web/node_modules .shoal
