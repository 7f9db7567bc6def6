# syntax=docker/dockerfile:1
# The manager and agent images, for users with Docker (or any BuildKit
# builder). Each is one static binary on distroless/static, run as the
# non-root user 65532:
#
#   docker build --target manager -t ghcr.io/softreload/manager:0.1.0 .
#   docker build --target agent   -t ghcr.io/softreload/agent:0.1.0 .
#
# `make images` builds the same images as OCI archives without Docker
# (hack/image).

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS deps
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

# build compiles one command for the target platform: static (no cgo),
# trimmed paths, no symbol tables.
FROM deps AS build
ARG TARGETOS TARGETARCH
ENV CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH
COPY api/ api/
COPY agent/ agent/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/

FROM build AS build-manager
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/manager ./cmd/manager

FROM build AS build-agent
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/agent ./cmd/agent

FROM gcr.io/distroless/static:nonroot AS manager
COPY --from=build-manager /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]

# The webhook runs this image as an init container (/agent install …) that
# copies the agent into each governed pod.
FROM gcr.io/distroless/static:nonroot AS agent
COPY --from=build-agent /out/agent /agent
USER 65532:65532
ENTRYPOINT ["/agent"]
