# Build: docker build -t emergentd .
# Run:   docker run -p 9799:9799 -v $PWD/rules.toml:/etc/emergent/rules.toml emergentd
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/emergentd ./cmd/emergentd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/emergentd /bin/emergentd
COPY rules.toml /etc/emergent/rules.toml
WORKDIR /var/lib/emergent
EXPOSE 9799
USER nonroot
ENTRYPOINT ["/bin/emergentd"]
CMD ["--config.file=/etc/emergent/rules.toml", "--storage.path=/var/lib/emergent"]
