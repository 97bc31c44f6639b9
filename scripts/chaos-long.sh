#!/usr/bin/env bash
# The long chaos run of docs/reliability.md: kill -9 every 20-40 s, SIGSTOP/SIGCONT, storage outages of
# 10-30 s, gossip partitions, for 30 minutes by default, on a throwaway 3-node local cluster.
#   scripts/chaos-long.sh [SEED] [DURATION_S]         exit 0 = no anomaly
set -euo pipefail
export CHAOS_DIR="${CHAOS_DIR:-.chaos/long}" CHAOS_PROFILE=long CHAOS_PORT_BASE="${CHAOS_PORT_BASE:-8300}" \
  CHAOS_ARGS="${CHAOS_ARGS:---max-uploads 2000}"
exec "$(dirname "$0")/chaos-run.sh" "${1:-7}" "${2:-1800}"
