# syntax=docker/dockerfile:1
#
# The provisio image: `docker build -t provisio:dev .` (the tag that
# config/manager/manager.yaml deploys; see there to use another one).
#
# Without a Docker engine (as on the machines this project is built on):
# `make image` (hack/make-image) builds this file unchanged with buildah, the
# two Debian base images being one debootstrap root made from the Debian
# archive, and writes a docker-archive tarball that
# `hack/kube-local load-image DIR TARBALL` loads into kube-local's real node;
# the realnode e2e tier deploys it with config/default.
#
# Two stages: a Debian bookworm build stage with the -dev packages of
# hack/install-deps (minus what only tests and formatting need), and a
# bookworm-slim runtime stage with only the shared libraries the binary links
# and the CA certificates, running as an unprivileged user.

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libcurl4-openssl-dev libssl-dev libjson-c-dev libyaml-dev libwebsockets-dev libzstd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPROVISIO_TESTS=OFF \
 && cmake --build /build --target provisio \
 && strip -o /provisio /build/provisio

FROM debian:bookworm-slim
# libcurl4 (with libssl3) for HTTP/TLS to the API server, libjson-c5 and
# libyaml-0-2 for JSON and kubeconfig YAML, libwebsockets17 for the
# /healthz, /readyz and /metrics endpoints, libzstd1 for the informer
# caches' compressed objects; ca-certificates for TLS.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libcurl4 libssl3 libjson-c5 libyaml-0-2 libwebsockets17 libzstd1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /provisio /provisio
# 65532 is the conventional "nonroot" uid/gid of distroless images, the one
# config/manager/manager.yaml runs as.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/provisio"]
