# syntax=docker/dockerfile:1.7
# Sentient Hub image: build with the Rust toolchain, run on a slim Debian. BuildKit's cache mounts
# keep the crate registry and the build directory between builds, so a change to the code does
# not rebuild every dependency. tests/api/docker.rs checks that every path Cargo needs is copied.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# Cargo reads every target the manifest declares, the benchmarks included.
COPY benches benches
COPY src src
COPY migrations migrations
COPY prompts prompts
COPY metrics metrics
COPY words words
COPY assets assets
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sentient-hub \
    && cp target/release/sentient-hub /usr/local/bin/sentient-hub

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app hub \
    && mkdir -p /app/archive && chown hub /app/archive
WORKDIR /app
COPY --from=build /usr/local/bin/sentient-hub /usr/local/bin/sentient-hub
COPY config config
USER hub
ENV SENTIENT_ENV=production SENTIENT_CONFIG_DIR=/app/config
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --retries=6 CMD ["sentient-hub", "healthcheck"]
ENTRYPOINT ["sentient-hub"]
CMD ["serve"]
