# The image the Helm chart runs: one `worldloom` binary for every role
# (coordinator, node, serve, token, runtime prepare) and the verified Python
# plugin runtime. The compiled interpreter cache is not baked in: the node's
# init container prepares it on its cache volume (`worldloom runtime prepare`).
#
#   docker build -t worldloom:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
RUN cargo build --release --locked -p worldloom-cli \
 && scripts/fetch-runtime /out/runtime/python \
 && install -D -m 0755 target/release/worldloom /out/worldloom

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 worldloom \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin worldloom \
 && install -d -o 10001 -g 10001 /var/cache/worldloom /var/lib/worldloom /etc/worldloom
COPY --from=build /out/worldloom /usr/local/bin/worldloom
COPY --from=build /out/runtime /opt/worldloom/runtime
ENV WORLDLOOM_RUNTIME_DIR=/opt/worldloom/runtime/python \
    WORLDLOOM_CACHE_DIR=/var/cache/worldloom
USER 10001:10001
EXPOSE 8080 8081
# tini reaps the sandbox zygote's children should the node die and forwards SIGTERM.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/worldloom"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--data", "fs:///var/lib/worldloom"]
