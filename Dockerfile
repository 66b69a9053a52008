# One image for the worker, the webhook adapter, the codec server and the CLI.
# Multi-stage: build with dev dependencies (TypeScript + the prebuilt workflow bundle), run with
# production dependencies only, as a non-root user, on a glibc base (the Temporal core bridge is a
# glibc native module).

FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY devstack ./devstack
# tsc to dist/, then bundleWorkflowCode to dist/workflow-bundle.js
RUN npm run build

FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Loaded by path at run time by the Temporal data converter (see src/codec/data-converter.ts).
COPY src/codec/failure-converter.cjs ./src/codec/failure-converter.cjs
COPY bin ./bin
USER node
# Running from dist, the worker loads dist/workflow-bundle.js instead of bundling at start.
CMD ["node", "dist/src/worker.js"]
