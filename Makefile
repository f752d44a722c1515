# calibmon: the two commands a newcomer needs (see README.md)
#   make demo   install into .venv and run `calibmon demo` (no server needed)
#   make test   install system packages + .venv, run `make lint`, then the whole test suite
#   make lint   ruff check, ruff format --check, lint-imports (layer contracts, pyproject.toml)
#   make fuzz N=100000   a long hostile-input run (tests/fuzz)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
# Debian packages the tests start for real: InfluxDB 1.x, VictoriaMetrics (v2 write API),
# Alertmanager (+amtool), Prometheus (promtool), Chromium (report screenshot).
APT_PACKAGES := influxdb victoria-metrics prometheus-alertmanager prometheus chromium

.PHONY: install demo system-deps test lint bench fuzz clean

$(BIN)/calibmon: pyproject.toml
	@# Debian's python3 needs python3-venv for `-m venv`; install it when that is missing
	$(PYTHON) -m venv $(VENV) || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,butler]'
	touch $@

install: $(BIN)/calibmon

demo: install
	$(BIN)/calibmon demo

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# The Debian packages start their services; the tests run their own on free ports.
	-@$(SUDO) systemctl disable --now influxdb prometheus prometheus-alertmanager victoria-metrics >/dev/null 2>&1 || true

# Lint first: a style error or a broken layer contract (docs/architecture.md) fails CI
# before the servers start.
test: system-deps install lint
	$(BIN)/pytest -q -n 2 --dist loadgroup

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Long hostile-input run: N mutated raws through the reader (tests/fuzz; CI runs 2,400).
# SEED picks another corpus; a failure names the mutant so `FUZZ_SEED=... FUZZ_N=...` rebuilds it.
N    ?= 100000
SEED ?= 0
fuzz: install
	FUZZ_N=$(N) FUZZ_SEED=$(SEED) $(BIN)/pytest -q -n 2 tests/fuzz -k "in_process or hostile_directory"

bench: install
	$(BIN)/python benchmarks/bench_read.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
