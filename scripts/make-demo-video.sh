#!/usr/bin/env bash
# Build portfolio/demo-video.mp4 and the portfolio's pictures from the real screenshots.
#
#   ./scripts/take-screenshots.sh     # first: docs/screenshots/demo-*.png from the running stack
#   ./scripts/make-demo-video.sh      # then: the video (captioned slides) + portfolio/assets/*.jpg
#
# Each slide is one screenshot shown for SLIDE_SECONDS (default 4) with a caption burnt in by
# ffmpeg's drawtext (DejaVu Sans). Screenshots that do not exist are skipped, so the script also
# works before a failure has been simulated. Installs ffmpeg and fonts-dejavu-core when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SHOTS="$ROOT/docs/screenshots"
OUT="$ROOT/portfolio/demo-video.mp4"
ASSETS="$ROOT/portfolio/assets"
FONT="${FONT:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}"
SLIDE_SECONDS="${SLIDE_SECONDS:-4}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$ROOT/scripts/install-debian-packages.sh" ffmpeg fonts-dejavu-core
[ -f "$FONT" ] || { echo "error: font $FONT is missing (set FONT to a .ttf file)" >&2; exit 1; }

# screenshot file | caption. The alert slide is listed but only used when its picture exists.
SLIDES=(
  "demo-airflow-grid.png|Airflow 3 schedules daily_etl_pipeline (local stack, no cloud account)"
  "demo-airflow-run.png|One run: 50 symbols in 5 batches of extract, transform, load"
  "demo-airflow-graph.png|The DAG: thin tasks, each calls one function in src/"
  "demo-dashboard.png|Dashboard: health checks and signals (SYNTHETIC demo data, labelled)"
  "demo-dashboard-chart.png|Close with SMA 20/50/200 and VWAP 20, RSI 14, volume (synthetic data)"
  "demo-airflow-failed-run.png|Simulated Alpha Vantage outage: the run fails loudly, never green"
  "demo-alerts.png|The Slack alert, caught by the local Slack stand-in (secrets redacted)"
  "demo-analytics.png|Analytics on the warehouse: python -m src.analytics (same SQL on BigQuery)"
)
# Slides to leave out, space-separated file names (e.g. SKIP_SLIDES="demo-alerts.png").
SKIP_SLIDES="${SKIP_SLIDES:-}"

drawtext() {
  # drawtext TEXTFILE SIZE Y: an ffmpeg drawtext filter reading its text from a file (no escaping).
  echo "drawtext=fontfile=$FONT:textfile=$1:fontsize=$2:fontcolor=white:x=(w-text_w)/2:y=$3:box=1:boxcolor=0x0f172a@0.85:boxborderw=14"
}

encode() {
  # encode OUTPUT FFMPEG-ARGS...: one slide (inputs and filter in FFMPEG-ARGS) as a short H.264 clip.
  local output="$1"
  shift
  ffmpeg -loglevel error -y "$@" -t "$SLIDE_SECONDS" -r 25 -c:v libx264 -preset veryfast -crf 30 -pix_fmt yuv420p "$output"
}

# Title slide.
printf '%s' "CloudScale Finance ETL" >"$WORK/title.txt"
printf '%s' "Alpha Vantage + Yahoo -> validation -> SMA/RSI/VWAP -> S3 -> BigQuery/SQLite -> Slack, on Airflow 3" >"$WORK/subtitle.txt"
encode "$WORK/slide-00.mp4" -f lavfi -i "color=c=0x0f172a:s=1280x720" \
  -vf "$(drawtext "$WORK/title.txt" 56 300),$(drawtext "$WORK/subtitle.txt" 24 390)"
echo "file '$WORK/slide-00.mp4'" >"$WORK/list.txt"

mkdir -p "$ASSETS"
number=0
for slide in "${SLIDES[@]}"; do
  file="${slide%%|*}"
  caption="${slide#*|}"
  case " $SKIP_SLIDES " in *" $file "*) echo "==> skipping $file (SKIP_SLIDES)"; continue ;; esac
  if [ ! -f "$SHOTS/$file" ]; then
    echo "==> skipping $file (not in docs/screenshots; run ./scripts/take-screenshots.sh)"
    continue
  fi
  number=$((number + 1))
  printf '%s' "$caption" >"$WORK/caption-$number.txt"
  clip="$WORK/slide-$(printf '%02d' "$number").mp4"
  encode "$clip" -loop 1 -i "$SHOTS/$file" \
    -vf "scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2:color=0x0f172a,$(drawtext "$WORK/caption-$number.txt" 26 h-64)"
  echo "file '$clip'" >>"$WORK/list.txt"
  # The portfolio page shows the same pictures, downscaled to 960 px wide JPEGs.
  ffmpeg -loglevel error -y -i "$SHOTS/$file" -vf "scale=960:-2" -q:v 5 "$ASSETS/${file%.png}.jpg"
done

ffmpeg -loglevel error -y -f concat -safe 0 -i "$WORK/list.txt" -c copy -movflags +faststart "$OUT"
echo "==> wrote $OUT ($(du -h "$OUT" | cut -f1), $((number + 1)) slides of $SLIDE_SECONDS s) and $ASSETS/*.jpg"
