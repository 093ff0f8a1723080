# chat in a container: a multi-stage build, a small non-root runtime image.
#
#   docker build -t chat .
#   docker run --rm -p 10000:10000 --ulimit nofile=1048576:1048576 chat
#
# Settings come from CHAT_* environment variables (docker run -e
# CHAT_MAX_CONNECTIONS=200000 ...); see docs/operations.md.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p chat --bin chat \
 && install -m 0755 target/release/chat /chat

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin chat
COPY --from=build /chat /usr/local/bin/chat
USER 10001:10001
ENV RUST_LOG=info
EXPOSE 10000
# bash's /dev/tcp, so the image needs no curl: HTTP/1.0 GET /healthz, expect 200.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/10000 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q ' 200'"]
# SIGTERM (docker stop) closes every session with 1001 and exits within 5 s.
STOPSIGNAL SIGTERM
CMD ["chat", "--listen", "0.0.0.0:10000"]
