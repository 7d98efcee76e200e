# syntax=docker/dockerfile:1

# Build: docker build -t users:dev \
#   --build-arg VERSION="$(git describe --always --dirty)" \
#   --build-arg REVISION="$(git rev-parse HEAD)" \
#   --build-arg CREATED="$(git log -1 --format=%cI)" .
# See docs/containers.md for what is in the image and why.

# The 1.26 line's image; the Go release that builds is at least go.mod's
# toolchain line (GOTOOLCHAIN below). CI pins the image to that release
# with --build-arg, so nothing is downloaded there.
ARG GO_VERSION=1.26

# The builder runs on the build machine's own platform and cross-compiles
# for the target: no emulation, whatever --platform asks for.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
# The golang images set GOTOOLCHAIN=local, which ignores go.mod's toolchain
# line; auto fetches that release from the module proxy (into the module
# cache mount) when the image's Go is older, so the binary is never built
# with a Go that has a known reachable vulnerability (docs/answers.md).
ENV GOTOOLCHAIN=auto
WORKDIR /src

# Modules first, in their own step keyed on go.mod/go.sum only: a code change
# does not download anything again. The module cache is a cache mount, so it
# also survives a go.mod change and is shared with the build step below.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download -x

COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
# CGO off: a static binary that runs on distroless/static (no libc).
# -trimpath and -s -w: no build paths, symbols or DWARF in the image.
# The build cache mount makes a one-line change recompile one package.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/users ./pkg/cmd/users

# Runtime: distroless static (CA certificates, tzdata, /etc/passwd with
# nonroot = 65532) plus the one binary. No shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/example/users
LABEL org.opencontainers.image.title="users" \
      org.opencontainers.image.description="users API: user records over PostgreSQL" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/users /users
# The collector runs a quarter as often as Go's default (100): the live
# heap is a few MB, collecting it every few MB cost up to a quarter of a
# request's CPU, and the peak RSS grows by about 11 MB (docs/performance.md,
# "GOGC"). func.yaml sets the same (without a comment: func build rewrites
# that file and drops comments inside it); gogc_test.go keeps them equal.
ENV GOGC=400
USER 65532:65532
EXPOSE 8080
# The binary checks itself: distroless has no curl or wget. Readiness, not
# liveness, so a container whose database is gone shows as unhealthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/users", "healthcheck"]
ENTRYPOINT ["/users"]
CMD ["serve"]
