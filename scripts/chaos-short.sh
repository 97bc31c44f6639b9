#!/usr/bin/env bash
# A short seeded chaos run (~2-3 minutes) on a throwaway 3-node local cluster, then the checker.
#   scripts/chaos-short.sh [SEED] [DURATION_S]        exit 0 = no anomaly
# Works under $CHAOS_DIR (default .chaos/short): cluster.yml, state, history.jsonl.
set -euo pipefail
export CHAOS_DIR="${CHAOS_DIR:-.chaos/short}" CHAOS_PROFILE=short CHAOS_PORT_BASE="${CHAOS_PORT_BASE:-8200}"
exec "$(dirname "$0")/chaos-run.sh" "${1:-7}" "${2:-120}"
