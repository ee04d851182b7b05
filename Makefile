# The two quick-start commands: `make run` and `make test`.  Everything installs into .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# lua-unbound: Prosody's resolver, pointed at the federation tests' DNS server (a Recommends, and
# the install below skips Recommends).
APT_PACKAGES := postgresql sip-tester sipsak coturn prosody lua-unbound chromium

.PHONY: run test install test-deps apt-deps node-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || (apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV))
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[postgresql]' --config-settings editable_mode=compat

# Run the server in the foreground on the sample config (SQLite and a self-signed certificate under etc/var/).
run: install
	$(BIN)/twistd --nodaemon --pidfile= unirtc -c etc/falcot.ini

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Browser tests: playwright-core drives Debian's chromium (never a browser of its own), and
# the pages load strophe.js; both are pinned in package-lock.json and land in node_modules/.
node_modules/.package-lock.json: package.json package-lock.json
	@command -v npm >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q --no-install-recommends nodejs npm)
	npm ci --no-audit --no-fund
	touch $@

node-deps: node_modules/.package-lock.json

test-deps: $(BIN)/python apt-deps node-deps
	$(BIN)/pip install --quiet -e '.[test,postgresql]' --config-settings editable_mode=compat

test: test-deps
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) node_modules build *.egg-info etc/var twisted/plugins/dropin.cache
