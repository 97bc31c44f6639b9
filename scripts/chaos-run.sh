#!/usr/bin/env bash
# Shared body of chaos-short.sh / chaos-long.sh: write a cluster.yml, `shoal up`, `shoal chaos`, `shoal down`.
set -euo pipefail
SEED="$1" DURATION="$2"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
B="$CHAOS_PORT_BASE"
mkdir -p "$CHAOS_DIR"
DIR="$(cd "$CHAOS_DIR" && pwd)"
cat > "$DIR/cluster.yml" <<YML
cluster: chaos
profile: local               # fast timers: leases of 6 s, probes every 0.3 s
state_dir: state
nodes:
  - {id: n1, host: 127.0.0.1, http_port: $((B + 1)), gossip_port: $((B + 11))}
  - {id: n2, host: 127.0.0.1, http_port: $((B + 2)), gossip_port: $((B + 12))}
  - {id: n3, host: 127.0.0.1, http_port: $((B + 3)), gossip_port: $((B + 13))}
storage: {endpoint: embedded, bucket: chaos, embedded_port: $((B + 33))}
ladder:                      # tiny renditions for the tiny test clips
  - {name: 144p, height: 144, video_kbps: 150, audio_kbps: 48}
  - {name: 180p, height: 180, video_kbps: 250, audio_kbps: 48}
  - {name: 240p, height: 240, video_kbps: 350, audio_kbps: 64}
timing: {upload_expiry: 30, orphan_grace: 30, housekeeping_interval: 5}  # abandoned uploads and orphan multipart uploads are reclaimed after 30 s
processing: {chunked: true, chunk_segments: 2}  # the 10 s clip is cut in 3 chunks + audio
YML
shoal() { PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m cli.main --config "$DIR/cluster.yml" "$@"; }
trap 'shoal down >/dev/null 2>&1 || true' EXIT
shoal up >/dev/null
rm -f "$DIR/history.jsonl"
shoal chaos --profile "$CHAOS_PROFILE" --seed "$SEED" --duration "$DURATION" --history "$DIR/history.jsonl" \
  ${CHAOS_ARGS:-} \
  | tee "$DIR/verdict.txt"
