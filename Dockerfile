# One image per service, from one Dockerfile: kafka/docker-compose.yml passes the binary's name
# as SERVICE. The build stage does not depend on SERVICE, so Docker builds the workspace once
# and every image reuses it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
ARG SERVICE
COPY --from=build /src/target/release/${SERVICE} /usr/local/bin/service
ENV HOST=0.0.0.0
ENTRYPOINT ["/usr/local/bin/service"]
