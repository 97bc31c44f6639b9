#!/usr/bin/env bash
# The 30-minute chaos run against a lab (issue 13's Goal; docs/reliability.md "Against the lab"),
# as root: `shoal lab up` with the chaos settings below, `shoal chaos --profile lab-long`, then
# `shoal lab down` (also when anything fails). Chunked processing is on, so the 10 s clip is cut
# in chunks that nodes claim, lose and redo under the lab's real faults.
#   scripts/chaos-lab-long.sh [SEED] [DURATION]     (defaults: 7, 1800)
#   CHAOS_DIR (default .chaos-lab): the history, the verdict, the lab's folder
#   CHAOS_LAB_NAME, CHAOS_LAB_SUBNET (defaults cl, 10.217.0.0/24): the lab beside any other
set -euo pipefail
SEED="${1:-7}" DURATION="${2:-1800}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
DIR="${CHAOS_DIR:-$ROOT/.chaos-lab}"
NAME="${CHAOS_LAB_NAME:-cl}"
SUBNET="${CHAOS_LAB_SUBNET:-10.217.0.0/24}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
cat > "$DIR/with.yml" <<YML
ladder:                      # tiny renditions for the tiny test clips
  - {name: 144p, height: 144, video_kbps: 150, audio_kbps: 48}
  - {name: 180p, height: 180, video_kbps: 250, audio_kbps: 48}
  - {name: 240p, height: 240, video_kbps: 350, audio_kbps: 64}
timing: {upload_expiry: 30, orphan_grace: 30, housekeeping_interval: 5}
processing: {chunked: true, chunk_segments: 2}  # the 10 s clip is cut in 3 chunks + audio
YML
shoal() { PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m cli.main "$@"; }
trap 'shoal lab down --name "$NAME" --dir "$DIR/lab" >/dev/null 2>&1 || true' EXIT
CONFIG="$(shoal lab up --name "$NAME" --dir "$DIR/lab" --hosts 3 --subnet "$SUBNET" --with "$DIR/with.yml" | tail -1)"
rm -f "$DIR/history.jsonl"
shoal --config "$CONFIG" chaos --profile lab-long --seed "$SEED" --duration "$DURATION" \
  --history "$DIR/history.jsonl" --max-uploads 2000 ${CHAOS_ARGS:-} | tee "$DIR/verdict.txt"
