# The two commands of the README:
#   make run   - start a local control plane if no cluster is configured,
#                install the CRDs, run the operator, apply the samples
#   make test  - install what is missing, build (ASan+UBSan, -Werror), run
#                every test tier (unit, e2e against a real control plane)
BUILD ?= build
CMAKE_FLAGS ?= -DPROVISIO_SANITIZE=ON -DPROVISIO_WERROR=ON
CTEST_FLAGS ?= --output-on-failure --verbose

FUZZ_BUILD ?= build-fuzz

.PHONY: all deps build test unit e2e run down image bench bench-device bench-volume chaos fuzz format clean

all: build

deps:
	@hack/install-deps

build: deps
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j2

# Build the control plane first so its progress is visible (cached after).
test: build
	@hack/kube-local build
	@cd $(BUILD) && ctest $(CTEST_FLAGS)

unit: build
	@cd $(BUILD) && ctest $(CTEST_FLAGS) -L unit

e2e: build
	@hack/kube-local build
	@cd $(BUILD) && ctest $(CTEST_FLAGS) -L e2e

# make run REAL_NODE=1: provisio's image on a real node (containerd +
# kubelet on this machine), deployed with config/default.
run:
	@REAL_NODE=$(REAL_NODE) hack/run-local

# provisio's image from the Dockerfile, built with buildah (no registry):
# build/image/provisio-dev.tar (docker-archive, provisio:dev).
image:
	@hack/make-image $(CURDIR)/$(BUILD)/image/provisio-dev.tar

down:
	@hack/run-local down

# provisio and its controller-runtime twin (bench/twin, Go) on one control
# plane, alternating; bench/run-ip-bench alone sweeps workers and light load.
bench:
	@$(MAKE) build BUILD=build-release CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release"
	@cd bench/twin && GOTOOLCHAIN=local $${GO:-$$(command -v go || echo /usr/local/go/bin/go)} build -o ../../build-release/provisio-twin .
	@bench/run-twin-bench build-release

# The device domain's benchmark: DeviceClaims over 100 DevicePools against
# the API server's floor, light load, the node agent (bench/run-device-bench).
bench-device:
	@$(MAKE) build BUILD=build-release CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release"
	@bench/run-device-bench build-release

# The volume domain's benchmark: Volumes over StoragePools, one node agent per
# fake node, against the API server's floor; light load, the agents' RSS and
# the cost of a volume's quota (bench_vol_quota, root) (bench/run-volume-bench).
bench-volume:
	@$(MAKE) build BUILD=build-release CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release"
	@bench/run-volume-bench build-release

# The chaos run (bench/chaos/README.md): kill -9 of the leader among three
# replicas, API server restarts, etcd compactions, node-agent kills and node
# heartbeat losses during storms of claims, then the invariants of API.md
# checked after convergence. CHAOS_KILLS (default 100), CHAOS_SEED and the
# other CHAOS_* settings come from the environment or the make command line.
chaos: deps
	@cmake -S . -B build-chaos -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build-chaos -j2 --target provisio
	@hack/kube-local build
	@python3 -B -m unittest discover -s bench/chaos -p 'test_*.py'
	@bench/run-chaos build-chaos

# libFuzzer harnesses (fuzz/README.md), built with clang into $(FUZZ_BUILD),
# each run for FUZZ_SECONDS (default 60), one after another at nice 19.
fuzz:
	@fuzz/install-deps
	@cmake -S fuzz -B $(FUZZ_BUILD) -G Ninja -DCMAKE_C_COMPILER=clang >/dev/null
	@cmake --build $(FUZZ_BUILD) -j2
	@fuzz/run $(FUZZ_BUILD)

# provisio-cni, the CNI IPAM plugin, built in Release and installed where
# CNI runtimes look: CNI_BIN_DIR (default /opt/cni/bin). Example network
# configuration and RBAC: config/cni/.
CNI_BIN_DIR ?= /opt/cni/bin
.PHONY: install
install: deps
	@cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release \
		-DPROVISIO_CNI_BIN_DIR=$(CNI_BIN_DIR) >/dev/null
	@cmake --build build-release -j2 --target provisio-cni
	@cmake --install build-release --component cni

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-release build-chaos $(FUZZ_BUILD)
