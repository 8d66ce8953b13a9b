# books-server container image for Cloud Run.
#   build:   debian:bookworm, the project's scripts/deps.sh unit, CMake RelWithDebInfo (the
#            tested configuration, with Debian's hardening flags: CMake's BOOKS_HARDEN), the unit
#            tests (a failing test fails the image build), strip.
#   runtime: debian:bookworm-slim with only the shared libraries the binary links, non-root.
# Build and smoke-test locally with podman: scripts/container-test.sh.

# ---- build ------------------------------------------------------------------------------------------
FROM debian:bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
# The package list lives in scripts/deps.sh: "unit" is the build plus cmocka for the unit tests
# ("test" would also pull python, valgrind, node and npm, ~480 packages, for tests not run here).
# deps.sh is copied alone so this layer stays cached while the sources change.
COPY scripts/deps.sh /src/scripts/deps.sh
RUN /src/scripts/deps.sh unit \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
WORKDIR /src
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBOOKS_TESTS=ON \
 && cmake --build /build -j"$(nproc)" \
 && ctest --test-dir /build -L unit --output-on-failure -j"$(nproc)" \
 && strip --strip-unneeded -o /books-server /build/books-server \
 && /books-server --version

# ---- runtime ----------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# Runtime libraries: `objdump -p build/books-server | grep NEEDED` and `ldd`, each library mapped to its
# package with `dpkg -S`:
#   gRPC core, abseil, c-ares, re2 and upb are linked in statically (CMake's BOOKS_STATIC_GRPC):
#     no libgrpc29, and none of the abseil and protobuf libraries it would pull
#   libstdc++.so.6 -> libstdc++6, libgcc_s.so.1 -> libgcc-s1 (gRPC core is C++; both in the base)
#   libprotobuf-c.so.1 -> libprotobuf-c1     libssl.so.3 libcrypto.so.3 -> libssl3
#   libuuid.so.1 -> libuuid1
#   libsqlite3.so.0 -> libsqlite3-0 (the sqlite: store)    libc.so.6 -> libc6 (in the base)
#   libpq.so.5 -> libpq5: the postgresql: store dlopen()s it when it opens (ldd does not list it;
#     the second check below looks for it and its libraries)  libbsd.so.0 -> libbsd0
#   libz.so.1 -> zlib1g (the codec's bounded inflate; required priority, in the base)
#   ca-certificates: the firestore: store's TLS to firestore.googleapis.com; gRPC core reads the
#     system's roots (/etc/ssl/certs) when no roots file is named
# If the binary starts linking something else, the ldd check below fails the build until its package
# is added here.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libprotobuf-c1 libsqlite3-0 libpq5 libssl3 libuuid1 libbsd0 libstdc++6 ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt \
      /var/log/dpkg.log \
 && groupadd --system --gid 65532 books \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/books --no-create-home \
      --shell /usr/sbin/nologin books \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/books
COPY --from=build /books-server /usr/local/bin/books-server
# The API's FileDescriptorSet, for a front end (ESPv2, API Gateway) that transcodes REST to gRPC.
COPY --from=build /build/gen/books_descriptor_set.pb /usr/local/share/books-server/books_descriptor_set.pb
RUN if ldd /usr/local/bin/books-server | grep 'not found'; then \
      echo "runtime stage: shared libraries missing (add their packages above)" >&2; exit 1; \
    fi \
 && libpq=$(ldconfig -p | awk '/libpq\.so\.5 /{print $NF; exit}') \
 && if [ -z "$libpq" ] || ldd "$libpq" | grep 'not found'; then \
      echo "runtime stage: libpq.so.5 or its libraries missing (the postgresql: store)" >&2; exit 1; \
    fi \
 && /usr/local/bin/books-server --version

# The repository has no LICENSE file and no public URL yet: both are build arguments, defaulting to
# SPDX "NOASSERTION" and empty, e.g. --build-arg SOURCE_URL=https://github.com/org/books-server.
ARG SOURCE_URL=""
ARG LICENSES="NOASSERTION"
LABEL org.opencontainers.image.title="books-server" \
      org.opencontainers.image.description="Books API gRPC server (gRPC core C API, protobuf-c)" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

USER 65532:65532
WORKDIR /var/lib/books
ENV PORT=8080
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/books-server"]
