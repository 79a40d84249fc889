# syntax=docker/dockerfile:1
#
# pgward container image.
#
#   npx pgward keygen --out keys          # or mount the JWKS of your identity provider
#   docker build -t pgward .
#   docker run --rm -p 13013:13013 -p 9090:9090 \
#     -v "$PWD/deploy/docker/pgward.yaml:/etc/pgward/pgward.yaml:ro" \
#     -v "$PWD/deploy/docker/backends.yaml:/etc/pgward/backends.yaml:ro" \
#     -v "$PWD/keys:/etc/pgward/keys:ro" pgward
#
# The default command is `pgward start --config /etc/pgward/pgward.yaml`. Inside a container the
# config must listen on all interfaces (`bindAddr: 0.0.0.0:13013`; pgward's default is loopback),
# and should set `metricsAddr: 0.0.0.0:9090` for /health, /ready and /metrics. Check a config
# before you deploy it: `docker run --rm -v … pgward check --config /etc/pgward/pgward.yaml`.
# Any other command works as well, e.g. `docker run --rm pgward token --help`.
# (`pgward demo` listens on the container's loopback only, so it is not reachable from outside.)
#
# test/integration/dockerfile.test.ts replays the COPY, WORKDIR and RUN lines of both stages in
# scratch directories and runs the result: keep RUN paths relative to the WORKDIR.

ARG NODE_IMAGE=node:20-slim

# ---- build: all dependencies, the native relay addon, TypeScript to dist/ ---------------------
FROM ${NODE_IMAGE} AS build
# node-gyp needs python3, make and a C compiler for native/relay.c.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# No dependency of pgward's needs an install script (PGlite ships its WebAssembly in the package).
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY native ./native
COPY bin ./bin
COPY src ./src
COPY plugins ./plugins
# tsconfig also includes test/ and bench/; they are not copied, so only src/ and plugins/ compile.
# PGWARD_NATIVE_REQUIRED=1: a failed addon build fails the image instead of shipping without it.
RUN PGWARD_NATIVE_REQUIRED=1 npm run build \
 && npm prune --omit=dev --ignore-scripts \
 && mkdir -p out \
 && for dir in plugins/*/; do \
      mkdir -p "out/${dir}" && cp "${dir}package.json" "out/${dir}package.json"; \
    done

# ---- runtime ----------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# package.json is read at run time (version; "type": "module"); the bundled plugins resolve
# through plugins/<name>/package.json, whose "main" points into dist/plugins/.
COPY --chown=root:root package.json package-lock.json ./
COPY --chown=root:root --from=build /src/node_modules ./node_modules
COPY --chown=root:root --from=build /src/dist ./dist
COPY --chown=root:root --from=build /src/bin ./bin
COPY --chown=root:root --from=build /src/native/build/Release/pgward_relay.node ./native/build/Release/pgward_relay.node
COPY --chown=root:root --from=build /src/out/plugins ./plugins
# The application files stay root-owned and read-only to the process, which runs as the
# unprivileged "node" user (uid 1000) of the official image.
USER node
EXPOSE 13013 9090
ENTRYPOINT ["node", "bin/pgward.js"]
CMD ["start", "--config", "/etc/pgward/pgward.yaml"]
