# syntax=docker/dockerfile:1
#
# pgward container image.
#
#   docker build -t pgward .
#   docker run --rm -p 13013:13013 -p 9090:9090 \
#     -v "$PWD/deploy/haproxy/pgward.yaml:/etc/pgward/pgward.yaml:ro" \
#     -v "$PWD/keys:/etc/pgward/keys:ro" pgward
#
# The default command is `pgward start --config /etc/pgward/pgward.yaml`. Inside a container the
# config must listen on all interfaces (`bindAddr: 0.0.0.0:13013`; pgward's default is loopback),
# and should set `metricsAddr: 0.0.0.0:9090` for /health and /metrics (see deploy/haproxy/).
# Any other command works as well, e.g. `docker run --rm pgward token --help`.
# (`pgward demo` listens on the container's loopback only, so it is not reachable from outside.)

ARG NODE_IMAGE=node:20-slim

# ---- build: all dependencies, compile TypeScript to dist/ --------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# No package of pgward's needs an install script (PGlite ships its WebAssembly in the package).
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY plugins ./plugins
# tsconfig also includes test/ and bench/; they are not copied, so only src/ and plugins/ compile.
RUN npm run build \
 && mkdir -p /out \
 && for dir in plugins/*/; do \
      mkdir -p "/out/${dir}" && cp "${dir}package.json" "/out/${dir}package.json"; \
    done

# ---- deps: production dependencies only -------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

# ---- runtime ----------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# package.json is read at run time (version; "type": "module"); the bundled plugins resolve
# through plugins/<name>/package.json, whose "main" points into dist/plugins/.
COPY --chown=root:root package.json package-lock.json ./
COPY --chown=root:root --from=deps /app/node_modules ./node_modules
COPY --chown=root:root --from=build /src/dist ./dist
COPY --chown=root:root --from=build /src/bin ./bin
COPY --chown=root:root --from=build /out/plugins ./plugins
# The application files stay root-owned and read-only to the process, which runs as the
# unprivileged "node" user (uid 1000) of the official image.
USER node
EXPOSE 13013
ENTRYPOINT ["node", "bin/pgward.js"]
CMD ["start", "--config", "/etc/pgward/pgward.yaml"]
