# One image per service, from one Dockerfile: kafka/docker-compose.yml passes the binary's name
# as SERVICE. The build stage does not depend on SERVICE, so Docker builds the binaries once
# and every image reuses them. The cache mounts keep Cargo's downloads and target directory
# from one build to the next, so a change to the sources recompiles only what it touches.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p order-service -p exchange-service -p point-service -p deadline-service -p gateway \
    && mkdir /out \
    && cd target/release \
    && cp order-service exchange-service point-service deadline-service gateway /out/

FROM debian:bookworm-slim
# curl is for the compose file's health checks.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home saga
ARG SERVICE
COPY --from=build /out/${SERVICE} /usr/local/bin/service
USER saga
ENV HOST=0.0.0.0
ENTRYPOINT ["/usr/local/bin/service"]
