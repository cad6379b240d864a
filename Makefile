# wasmpod: build, install, test, demo and benchmark.
#   make demo    set up this machine, start a private containerd, run Wasm containers on it
#   make test    set up, build once, run the unit tests and the end-to-end tests
#   make bench   benchmarks against baselines in the same run (release build; see test/bench.sh)
#   make stress  container lifecycles under load, counting leaks (release build; see test/stress.sh)

PREFIX ?= /usr/local
CARGO ?= cargo
WORK ?= $(CURDIR)/.work
PROFILE ?= debug
TARGET := $(CURDIR)/target/$(PROFILE)
SHIM := containerd-shim-wasmpod-v1
ALIASES := containerd-shim-spin-v2 containerd-shim-wasmtime-v1
CARGO_PROFILE_FLAG := $(if $(filter release,$(PROFILE)),--release,)

# Debian packages the build and the demo need.
APT_PACKAGES := containerd runc busybox-static curl \
	protobuf-compiler libseccomp-dev pkg-config \
	clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc
# ... and those only the tests need (CNI for CRI pods, a registry for pulls, the servers the
# Spin tests talk to, openssl for their TLS certificates, iproute2's ss to name the peer of a
# socket containerd holds).
APT_TEST_PACKAGES := containernetworking-plugins skopeo docker-registry redis-server postgresql mosquitto mosquitto-clients mariadb-server openssl iproute2

# componentize-py (PyPI) builds the tests' Python components; it goes under $(WORK)/pytools.
COMPONENTIZE_PY := componentize-py==0.25.1
# The Python Spin SDK and the componentize-py it is built with go under $(WORK)/spin-pytools.
SPIN_PY_SDK := spin-sdk==3.4.1 componentize-py==0.17.2
# The Python Spin SDKs for Spin 4 (WASIp3), spin-sdk 4.0.0 and 5.0.0, go under
# $(WORK)/spin-py4 and $(WORK)/spin-py5 (built with the componentize-py of $(WORK)/pytools).
# Helm (its SDK v4, from PyPI) and the Kubernetes schemas that test the chart, under $(WORK)/chart-tools.
CHART_TOOLS := helm-python-sdk==0.2.2 kubernetes-validate==1.37.0

.PHONY: all setup setup-test build install install-local unit chart-test manifests installer-image e2e e2e-containerd-1.7 e2e-containerd-2.1 test demo bench bench-run stress stress-run fuzz fmt clippy clean

all: build

# Installs what the build and the demo use (Debian packages, a Rust toolchain for
# wasm32-wasip1 from Debian under .work/rust-wasm for Spin's Rust SDK).
setup:
	@WORK=$(WORK) test/lib/apt-install.sh $(APT_PACKAGES)
	@test/lib/rust-wasm.sh $(WORK)/rust-wasm

# setup, plus what only the tests and benchmarks use (the JS Spin build tools from npm go
# under $(WORK)/spin-js, installed from the fixture's package-lock.json).
setup-test: setup
	@WORK=$(WORK) test/lib/apt-install.sh $(APT_TEST_PACKAGES)
	@if [ ! -x $(WORK)/pytools/bin/componentize-py ]; then \
		echo "installing $(COMPONENTIZE_PY) into $(WORK)/pytools"; \
		python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
			--target $(WORK)/pytools $(COMPONENTIZE_PY); \
	fi
	@if [ ! -x $(WORK)/spin-pytools/bin/componentize-py ]; then \
		echo "installing $(SPIN_PY_SDK) into $(WORK)/spin-pytools"; \
		python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
			--target $(WORK)/spin-pytools $(SPIN_PY_SDK); \
	fi
	@for v in 4 5; do \
		if [ ! -d $(WORK)/spin-py$$v/spin_sdk ]; then \
			echo "installing spin-sdk $$v into $(WORK)/spin-py$$v"; \
			python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
				--target $(WORK)/spin-py$$v spin-sdk==$$v.0.0 || exit 1; \
		fi; \
	done
	@if [ ! -d $(WORK)/chart-tools/helm_python ]; then \
		echo "installing $(CHART_TOOLS) into $(WORK)/chart-tools"; \
		python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
			--target $(WORK)/chart-tools $(CHART_TOOLS); \
	fi
	@if [ ! -d $(WORK)/spin-js/node_modules/@spinframework/build-tools ]; then \
		echo "installing the Spin JS build tools (npm) into $(WORK)/spin-js"; \
		mkdir -p $(WORK)/spin-js && cp test/fixtures/spin-js/package.json test/fixtures/spin-js/package-lock.json $(WORK)/spin-js/ && \
		(cd $(WORK)/spin-js && npm ci --no-audit --no-fund --loglevel=error >/dev/null); \
	fi

build:
	$(CARGO) build --workspace --all-targets $(CARGO_PROFILE_FLAG)

# Installs the shim, its two compatibility names (links to the same file), and the
# `wasmpod` tool (image build).
install:
	install -D -m 0755 $(TARGET)/$(SHIM) $(DESTDIR)$(PREFIX)/bin/$(SHIM)
	install -D -m 0755 $(TARGET)/wasmpod $(DESTDIR)$(PREFIX)/bin/wasmpod
	for a in $(ALIASES); do ln -sf $(SHIM) $(DESTDIR)$(PREFIX)/bin/$$a; done

# The install the tests, demo and benchmark use: under .work, never system-wide.
install-local:
	$(MAKE) --no-print-directory install PREFIX=$(WORK)/prefix DESTDIR=

# Every cargo call selects the whole workspace, so features unify the same way and nothing is
# compiled twice: unit tests are the libraries' and binaries' own tests.
unit:
	$(CARGO) test --workspace --lib --bins $(CARGO_PROFILE_FLAG)

# End-to-end tests against a private containerd (started and always stopped here): every
# suite, or those E2E_SUITES names.
e2e: install-local
	WORK=$(WORK) CARGO="$(CARGO)" CARGO_PROFILE_FLAG="$(CARGO_PROFILE_FLAG)" E2E_TESTS="$(E2E_SUITES)" test/e2e.sh

test: setup-test build unit chart-test e2e e2e-containerd-1.7 e2e-containerd-2.1

# In `make test` the Spin suite runs on containerd 2.1 only: the Spin host does not depend on
# the containerd version, and its content-store tests need >= 1.7.7.
test: E2E_SUITES = cri ctr docker node stress faults

# The Helm chart: lint, render, Kubernetes 1.28 and 1.35 schemas, the rendered installer
# command run against a node tree, and deploy/kubernetes/wasmpod.yaml up to date.
chart-test:
	PYTHONPATH=$(WORK)/chart-tools WASMPOD_TOOL=$(TARGET)/wasmpod python3 test/chart/test_chart.py

# The node installer's image (the wasmpod CLI and the shim with their libraries, linux/amd64):
# load it into your registry and point the chart's image.repository at it.
INSTALLER_IMAGE ?= docker.io/wasmpod/installer:0.1.0
installer-image: build
	$(TARGET)/wasmpod node image -o $(WORK)/wasmpod-installer.tar -t $(INSTALLER_IMAGE)

# Renders deploy/kubernetes/wasmpod.yaml from the chart.
manifests:
	PYTHONPATH=$(WORK)/chart-tools python3 test/chart/test_chart.py write-manifest

# The same end-to-end tests against containerd 1.7 with dockerd 26 (from Debian trixie), and
# against containerd 2.1 with dockerd 28 (from Debian sid), each unpacked under .work.
e2e-containerd-1.7: install-local
	WORK=$(WORK) CARGO="$(CARGO)" CARGO_PROFILE_FLAG="$(CARGO_PROFILE_FLAG)" test/with-debian-containerd.sh trixie

e2e-containerd-2.1: install-local
	WORK=$(WORK) CARGO="$(CARGO)" CARGO_PROFILE_FLAG="$(CARGO_PROFILE_FLAG)" test/with-debian-containerd.sh sid

# Fuzzing (cargo-fuzz): each target of test/fuzz for FUZZ_SECONDS (default 60) from its seed
# corpus; FUZZ_TARGETS picks some. Not part of make test.
FUZZ_SECONDS ?= 60
fuzz: setup
	WORK=$(WORK) FUZZ_SECONDS=$(FUZZ_SECONDS) test/fuzz.sh

demo: setup
	$(CARGO) build --workspace $(CARGO_PROFILE_FLAG)
	$(MAKE) --no-print-directory install-local
	WORK=$(WORK) TARGET=$(TARGET) test/demo.sh

# Benchmarks measure the build users run: release, unless BENCH_PROFILE=debug.
BENCH_PROFILE ?= release
bench: setup-test
	$(MAKE) --no-print-directory PROFILE=$(BENCH_PROFILE) bench-run

bench-run:
	$(CARGO) build --workspace $(CARGO_PROFILE_FLAG)
	$(MAKE) --no-print-directory install-local
	WORK=$(WORK) TARGET=$(TARGET) test/bench.sh

# The stress run: STRESS_CYCLES (1000) cycles at STRESS_PARALLEL (10), STRESS_SOAK=SECONDS
# for a soak (see test/stress.sh), on the release build unless STRESS_PROFILE=debug.
STRESS_PROFILE ?= release
stress: setup-test
	$(MAKE) --no-print-directory PROFILE=$(STRESS_PROFILE) stress-run

stress-run:
	$(CARGO) build --workspace $(CARGO_PROFILE_FLAG)
	$(MAKE) --no-print-directory install-local
	WORK=$(WORK) TARGET=$(TARGET) test/stress.sh

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(WORK)
