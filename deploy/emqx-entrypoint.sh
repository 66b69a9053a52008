#!/bin/sh
# Writes EMQX's API key bootstrap file from the environment (so the secret is not a file in the
# repository), then hands over to the image's own entrypoint. Keys in the bootstrap file never
# expire and are loaded at every start (reference emqx-v5-api.md §1.1).
set -eu
: "${DEVICE_OPS_EMQX_API_KEY:?set DEVICE_OPS_EMQX_API_KEY}"
: "${DEVICE_OPS_EMQX_API_SECRET:?set DEVICE_OPS_EMQX_API_SECRET}"
umask 077
printf '%s:%s:administrator\n' "$DEVICE_OPS_EMQX_API_KEY" "$DEVICE_OPS_EMQX_API_SECRET" > /opt/emqx/data/device-ops-api-keys.conf
exec /usr/bin/docker-entrypoint.sh "$@"
