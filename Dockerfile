# Almanac: almanac-server and the almanac CLI in one image.
#
#   docker build -t almanac:0.1.0 .
#   docker run -p 8888:8888 -e ALMANAC_REPO=https://git.example.com/config.git almanac:0.1.0
#
# Two stages: the build stage compiles on Debian 12 with the -dev packages; the runtime stage is
# Debian 12 slim with only the shared libraries the binaries link against (the k8s tests compare
# this list with what ldd reports for a fresh build, so keep them in step).

FROM debian:bookworm AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libgit2-dev libmicrohttpd-dev libyaml-dev libssl-dev libjansson-dev \
        libcurl4-openssl-dev libcrypt-dev libgnutls28-dev librabbitmq-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads: no tests, benchmarks or build trees (see .dockerignore).
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY common/ common/
COPY server/ server/
COPY client/ client/
# The client's examples are part of the build (so that they never rot), not of the image.
COPY examples/ examples/
COPY fuzz/CMakeLists.txt fuzz/
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DALMANAC_TESTS=OFF \
        -DCMAKE_INSTALL_PREFIX=/usr/local \
    && cmake --build build -j"$(nproc)" \
    && DESTDIR=/staging cmake --install build --strip \
    && rm -rf /staging/usr/local/include /staging/usr/local/lib/pkgconfig \
        /staging/usr/local/lib/cmake /staging/usr/local/lib/*.a

FROM debian:bookworm-slim AS runtime
# tini runs as PID 1 so that SIGTERM reaches every command the image runs (the kernel drops
# signals a PID 1 has no handler for); ca-certificates for https Git remotes and servers.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates tini \
        libcrypt1 libcurl4 libgit2-1.5 libgnutls30 libjansson4 libmicrohttpd12 librabbitmq4 libssl3 \
        libyaml-0-2 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 almanac \
    && useradd --system --uid 10001 --gid almanac --no-create-home \
        --home-dir /var/cache/almanac --shell /usr/sbin/nologin almanac \
    && mkdir -p /var/cache/almanac \
    && chown almanac:almanac /var/cache/almanac
COPY --from=build /staging/usr/local/ /usr/local/
RUN ldconfig

ENV ALMANAC_CACHE_DIR=/var/cache/almanac \
    ALMANAC_PORT=8888
USER 10001:10001
WORKDIR /var/cache/almanac
EXPOSE 8888
# No HTTP client in the image: bash's /dev/tcp asks for the health endpoint (plain HTTP only; with
# --tls-cert set, probe from outside instead). Any answer but 200 is unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${ALMANAC_PORT:-8888} && printf 'GET /actuator/health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q '^HTTP/1\\.[01] 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["almanac-server"]
