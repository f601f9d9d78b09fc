# cofab developer commands. `make demo` and `make test` are the two that matter; see README.md.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
KAFKA_LIBS ?= .cache/kafka-libs
PROTO_FILES := $(shell find proto/cofab -name '*.proto' | sort)

.PHONY: install system-packages gen-protos check-protos lint typecheck test test-unit up demo bench clean

NODE_EXAMPLE := clients/partner-node

install: system-packages $(STAMP) $(KAFKA_LIBS)/.resolved $(NODE_EXAMPLE)/node_modules/.installed

system-packages:
	@bash deploy/local/install-system.sh

$(STAMP): pyproject.toml uv.lock
	@test -x $(UV) || { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q uv==0.13.8; }
	$(UV) sync --locked --extra dev -q
	@touch $@

$(KAFKA_LIBS)/.resolved: deploy/local/kafka/pom.xml
	mvn -q -B -f deploy/local/kafka/pom.xml dependency:copy-dependencies \
	  -DoutputDirectory=$(abspath $(KAFKA_LIBS)) -DincludeScope=runtime
	@touch $@

# The partner example in Node.js (@grpc/grpc-js), pinned by its package-lock.json.
$(NODE_EXAMPLE)/node_modules/.installed: $(NODE_EXAMPLE)/package-lock.json
	cd $(NODE_EXAMPLE) && npm ci --no-audit --no-fund --silent
	@touch $@

GEN_OUT ?= proto/gen

gen-protos: $(STAMP)
	rm -rf $(GEN_OUT) && mkdir -p $(GEN_OUT)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m grpc_tools.protoc -I proto \
	  --python_out=$(GEN_OUT) --grpc_python_out=$(GEN_OUT) \
	  --mypy_out=quiet:$(GEN_OUT) --mypy_grpc_out=quiet:$(GEN_OUT) $(PROTO_FILES)
	find $(GEN_OUT)/cofab -type d -exec touch {}/__init__.py \;
	touch $(GEN_OUT)/cofab/py.typed

# CI: proto/gen must be exactly what gen-protos makes from proto/ (regenerated aside, compared).
check-protos: $(STAMP)
	@$(MAKE) -s gen-protos GEN_OUT=.cache/gen-check >/dev/null
	@diff -r -q -x __pycache__ .cache/gen-check proto/gen \
	  || { echo "proto/gen is stale: run 'make gen-protos' and commit the result"; exit 1; }

# proto/v1-baseline.binpb is the v1 contract as first released: additions are fine, anything
# that breaks a partner's client fails here (breaking changes go to a v2 package instead).
lint: $(STAMP)
	$(VENV)/bin/buf lint proto
	$(VENV)/bin/buf breaking proto --against proto/v1-baseline.binpb
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: install check-protos lint typecheck
	$(PY) -m deploy.local infra --kafka --postgres -- \
	  $(PY) -m pytest -p no:cacheprovider tests

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

up: install
	$(PY) -m deploy.local up

demo: install
	$(PY) -m deploy.local demo

bench: install
	$(PY) -m bench

clean:
	rm -rf .cache/test-infra .pytest_cache .mypy_cache .ruff_cache
