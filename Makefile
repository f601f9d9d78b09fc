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
GO_EXAMPLE := clients/partner-go
# google/api/field_behavior.proto and resource.proto, from the googleapis-common-protos wheel.
GOOGLEAPIS := proto/third_party/googleapis
# Go never fetches a toolchain of its own: the machine's Go builds everything.
export GOTOOLCHAIN := local

install: system-packages $(STAMP) $(KAFKA_LIBS)/.resolved $(NODE_EXAMPLE)/node_modules/.installed \
  $(GOOGLEAPIS)/.copied $(VENV)/.go-installed proto/node_modules/.installed

system-packages:
	@bash deploy/local/install-system.sh

# Bytecode is compiled at install: the CAD sandbox sees the venv read-only and would otherwise
# compile every module of CadQuery, trimesh and numpy again for each job (a STEP: 11.8 s -> 5.2 s).
$(STAMP): pyproject.toml uv.lock
	@test -x $(UV) || { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q uv==0.13.8; }
	$(UV) sync --locked --extra dev -q --compile-bytecode
	@touch $@

$(KAFKA_LIBS)/.resolved: deploy/local/kafka/pom.xml
	mvn -q -B -f deploy/local/kafka/pom.xml dependency:copy-dependencies \
	  -DoutputDirectory=$(abspath $(KAFKA_LIBS)) -DincludeScope=runtime
	@touch $@

# The partner example in Node.js (@grpc/grpc-js), pinned by its package-lock.json.
$(NODE_EXAMPLE)/node_modules/.installed: $(NODE_EXAMPLE)/package-lock.json
	cd $(NODE_EXAMPLE) && npm ci --no-audit --no-fund --silent
	@touch $@

$(GOOGLEAPIS)/.copied: $(STAMP)
	mkdir -p $(GOOGLEAPIS)/google/api
	src=$$($(PY) -c 'import google.api.field_behavior_pb2 as m, pathlib; print(pathlib.Path(m.__file__).parent)') \
	  && cp "$$src/field_behavior.proto" "$$src/resource.proto" $(GOOGLEAPIS)/google/api/
	@touch $@

# protoc-gen-go and protoc-gen-go-grpc are pinned as tools in proto/go.mod (the module of the
# generated Go code); the Go example's modules are downloaded here so its build needs no network.
$(VENV)/.go-installed: proto/go.mod proto/go.sum $(GO_EXAMPLE)/go.mod $(GO_EXAMPLE)/go.sum $(STAMP)
	cd proto && go mod download && GOBIN=$(abspath $(VENV))/bin go install tool
	cd $(GO_EXAMPLE) && go mod download
	@touch $@

# protoc-gen-es (TypeScript) and tsc, pinned by proto/package-lock.json.
proto/node_modules/.installed: proto/package-lock.json
	cd proto && npm ci --no-audit --no-fund --silent
	@touch $@

GEN_OUT ?= proto/gen
CODEGEN_PATH := $(abspath $(VENV))/bin:$(abspath proto/node_modules/.bin):$$PATH

# Python (grpcio-tools) into $(GEN_OUT)/cofab; Go and TypeScript (buf generate with
# proto/buf.gen.yaml) into $(GEN_OUT)/go and $(GEN_OUT)/ts.
gen-protos: $(STAMP) $(GOOGLEAPIS)/.copied $(VENV)/.go-installed proto/node_modules/.installed
	rm -rf $(GEN_OUT) && mkdir -p $(GEN_OUT)
	PATH=$(CODEGEN_PATH) $(PY) -m grpc_tools.protoc -I proto -I $(GOOGLEAPIS) \
	  --python_out=$(GEN_OUT) --grpc_python_out=$(GEN_OUT) \
	  --mypy_out=quiet:$(GEN_OUT) --mypy_grpc_out=quiet:$(GEN_OUT) $(PROTO_FILES)
	find $(GEN_OUT)/cofab -type d -exec touch {}/__init__.py \;
	touch $(GEN_OUT)/cofab/py.typed
	PATH=$(CODEGEN_PATH) $(VENV)/bin/buf generate --template proto/buf.gen.yaml -o $(GEN_OUT)

# CI: proto/gen must be exactly what gen-protos makes from proto/ (regenerated aside, compared),
# and the Go and TypeScript code must compile.
check-protos: $(STAMP) $(VENV)/.go-installed proto/node_modules/.installed
	@$(MAKE) -s gen-protos GEN_OUT=.cache/gen-check >/dev/null
	@diff -r -q -x __pycache__ .cache/gen-check proto/gen \
	  || { echo "proto/gen is stale: run 'make gen-protos' and commit the result"; exit 1; }
	cd proto && GOFLAGS=-mod=readonly GOPROXY=off go build ./gen/go/...
	proto/node_modules/.bin/tsc -p proto/tsconfig.json

# proto/v1-baseline.binpb is the v1 contract as released: additions are fine, anything that
# breaks a partner's client fails here (breaking changes go to a v2 package instead). It was
# re-recorded once, when every file got its go_package (proto/v1-baseline.md): the second check
# proves it is the first release plus additions and that option only.
lint: $(STAMP) $(GOOGLEAPIS)/.copied
	$(VENV)/bin/buf lint proto
	$(VENV)/bin/buf breaking proto --against proto/v1-baseline.binpb
	$(VENV)/bin/buf breaking proto/v1-baseline.binpb --against proto/v1-baseline-initial.binpb \
	  --config '{"version":"v2","breaking":{"use":["FILE"],"except":["FILE_SAME_GO_PACKAGE"]}}'
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
