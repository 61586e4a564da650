# syntax=docker/dockerfile:1
#
# certops images. Three targets, all static Go binaries running as UID 65532:
#
#   docker build -t ghcr.io/certops/certops:0.1.0        --build-arg VERSION=0.1.0 .                  # certops (default target)
#   docker build -t ghcr.io/certops/certops-agent:0.1.0  --build-arg VERSION=0.1.0 --target agent .
#   docker build -t ghcr.io/certops/certops-backup:0.1.0 --build-arg VERSION=0.1.0 --target backup .
#
# certops and certops-agent run on distroless/static (no shell, no libc).
# The backup image is certops on the official PostgreSQL image, for the
# pg_dump and pg_restore that `certops backup`/`certops restore` run; its
# major version (PG_MAJOR) must be >= the server's, so build it with
# --build-arg PG_MAJOR=18 for a PostgreSQL 18 server.

# GO_VERSION must satisfy go.mod's go line (GOTOOLCHAIN=local: no toolchain download).
ARG GO_VERSION=1.26.8
ARG PG_MAJOR=17

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Static binaries, built with the image's own toolchain.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/certops ./cmd/certops && \
    go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/certops-agent ./cmd/certops-agent

# certops-agent: the in-cluster agent (chart value agent.image).
FROM gcr.io/distroless/static-debian12:nonroot AS agent
COPY --from=build /out/certops-agent /usr/local/bin/certops-agent
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/certops-agent"]

# certops with pg_dump/pg_restore: the backup CronJob (chart value backup.image).
FROM postgres:${PG_MAJOR}-alpine AS backup
# A passwd entry for UID 65532, so libpq and pg_dump can resolve the user.
RUN adduser -D -H -u 65532 -s /sbin/nologin certops
COPY --from=build /out/certops /usr/local/bin/certops
USER 65532:65532
ENV HOME=/tmp
# The postgres image's entrypoint would start a server: run certops instead.
ENTRYPOINT ["/usr/local/bin/certops"]
CMD ["backup"]

# certops: the reconciler and the migration hook (chart value image). Last,
# so it is the default target.
FROM gcr.io/distroless/static-debian12:nonroot AS certops
COPY --from=build /out/certops /usr/local/bin/certops
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/certops"]
CMD ["serve"]
