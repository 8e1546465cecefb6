# Build: docker build -t emergentd .
# Run:   docker run -p 9799:9799 -v $PWD/rules.toml:/etc/emergent/rules.toml \
#          -e EMERGENT_PROMETHEUS_URL=http://prometheus:9090 emergentd
# (127.0.0.1, the shipped rules.toml's Prometheus, is the container itself.)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Static binary; version information for --version and emergent_build_info via prometheus/common/version.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.BuildUser=docker" \
      -o /out/emergentd ./cmd/emergentd \
 && mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/emergentd /bin/emergentd
COPY rules.toml /etc/emergent/rules.toml
# The optional local state (Slack message ids) must be writable by the non-root user; WORKDIR
# alone would create it owned by root.
COPY --from=build --chown=65532:65532 /out/state /var/lib/emergent
WORKDIR /var/lib/emergent
EXPOSE 9799
USER nonroot
# The image has no shell or curl: the binary probes itself.
HEALTHCHECK --interval=30s --timeout=10s CMD ["/bin/emergentd", "healthcheck"]
ENTRYPOINT ["/bin/emergentd"]
CMD ["--config.file=/etc/emergent/rules.toml", "--storage.path=/var/lib/emergent"]
