# certwatch container image.
#
#   docker build -t certwatch .
#   docker run --rm -e POSTGRES_DSN=postgresql://certwatch:...@db:5432/certwatch \
#       -e CERTSTREAM_URL=wss://certstream.example/full-stream \
#       -e WEBHOOK_URL=https://n8n.example/webhook/ct -p 8765:8765 certwatch

# --- build -------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# Everything the manifest names: the library and binary, schema.sql (compiled in
# with include_str!), and tests/ (the manifest declares its test and example
# targets, so their files must exist even though a release build skips them).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schema.sql ./schema.sql
COPY tests ./tests
RUN cargo build --release --locked

# --- runtime -----------------------------------------------------------------
# glibc + libgcc + CA certificates, no shell, runs as uid 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/certwatch /usr/local/bin/certwatch
# For operators who apply the schema themselves: psql "$POSTGRES_DSN" -f schema.sql
COPY schema.sql /usr/share/certwatch/schema.sql
USER nonroot
ENV API_HOST=0.0.0.0
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/certwatch", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/certwatch"]
