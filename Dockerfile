# Sentient Hub image: build with the Rust toolchain, run on a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY prompts prompts
RUN cargo build --release --locked --bin sentient-hub

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app hub
WORKDIR /app
COPY --from=build /src/target/release/sentient-hub /usr/local/bin/sentient-hub
COPY config config
COPY prompts prompts
USER hub
ENV SENTIENT_ENV=production SENTIENT_CONFIG_DIR=/app/config
EXPOSE 8080
ENTRYPOINT ["sentient-hub"]
CMD ["serve"]
