# softreload: a Kubernetes operator that reloads the worker processes inside
# running pods one at a time instead of restarting the pods.

include hack/versions.env

TOOLS := hack/tools.sh
CONTROLLER_GEN = $(shell $(TOOLS) --path controller-gen)
GOLANGCI_LINT = $(shell $(TOOLS) --path golangci-lint)
HELM = $(shell $(TOOLS) --path helm)
# The envtest control plane (kube-apiserver, etcd, kubectl), built by hack/
# unless KUBEBUILDER_ASSETS already points at a directory holding them. A
# recipe line, so that a failed build stops make.
WITH_ASSETS = assets=$$($(TOOLS) --assets) && KUBEBUILDER_ASSETS="$$assets"
# What the real-node test runs besides the images (make test-node).
NODE_TOOLS = etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl helm

GO_TEST_FLAGS ?= -race -count=1 -timeout 30m
BIN ?= bin
CHART := charts/softreload
# Images are tagged with the chart's appVersion, so the chart's defaults
# name the images that make images builds.
VERSION ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' $(CHART)/Chart.yaml)
IMAGE_REGISTRY ?= ghcr.io/softreload
DIST ?= dist

.DEFAULT_GOAL := help

##@ General

.PHONY: demo
demo: ## Run softreload here, no cluster needed: a control plane, the manager and three agent pods; watch a code change roll out.
	$(WITH_ASSETS) go run ./hack/demo

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

.PHONY: manifests
manifests: ## Generate the CRD, RBAC and webhook configuration into config/, and copy into the chart.
	$(CONTROLLER_GEN) crd rbac:roleName=softreload-manager-role webhook paths="./..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook
	rm -f $(CHART)/crds/*.yaml && cp config/crd/bases/*.yaml $(CHART)/crds/
	cp config/rbac/role.yaml config/policy/agent-pod-policy.yaml $(CHART)/files/

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: ## Regenerate everything and fail on any difference; run lint.
	hack/verify.sh
	$(MAKE) lint

##@ Test

.PHONY: test
test: ## Run every test (unit, envtest, end-to-end) with -race.
	$(WITH_ASSETS) go test $(GO_TEST_FLAGS) -tags e2e ./...
	go test $(GO_TEST_FLAGS) -short -tags softreload_local ./cmd/agent -ginkgo.label-filter=local

.PHONY: test-short
test-short: ## Run the tests that need no control plane, in seconds (go test -short).
	go test -short ./...

.PHONY: test-node
test-node: images ## Run the real-node test as root: softreload on a one-node cluster (containerd, kubelet) in namespaces of its own.
	# The sandbox image: its name is nodeimage.PauseRef.
	go run ./hack/image -out $(DIST)/node -registry localhost/softreload -tag test pause=./hack/nodeimage/pause
	go run ./hack/nodeimage -out $(DIST)/node
	$(TOOLS) $(NODE_TOOLS)
	DIST=$(abspath $(DIST)) go test -tags realnode -count=1 -timeout 60m -v ./test/realnode $(NODE_TEST_FLAGS)

.PHONY: tools
tools: ## Build the pinned tools and the test control plane into the cache.
	$(TOOLS) kube-apiserver etcd kubectl controller-gen golangci-lint helm

##@ Build

.PHONY: build
build: ## Build the binaries into bin/.
	go build -o $(BIN)/ ./cmd/...

.PHONY: images
images: ## Build the manager and agent images as OCI archives into dist/ (no Docker needed).
	go run ./hack/image -out $(DIST) -registry $(IMAGE_REGISTRY) -tag $(VERSION) \
		manager=./cmd/manager agent=./cmd/agent

.PHONY: helm-lint
helm-lint: ## Lint the Helm chart.
	$(HELM) lint --strict $(CHART)

##@ Benchmark

.PHONY: bench
bench: ## Run the benchmarks and print their tables (agent, then controller).
	go run ./test/bench/agent
	$(WITH_ASSETS) go run ./test/bench/controller
