#!/usr/bin/env bash
# Renders OUT/report.html in headless Chromium and saves a full-page screenshot next to it.
#   scripts/screenshot_report.sh OUT [WIDTH] [HEIGHT]
# Needs Debian's chromium (apt-get install -y chromium). Writes OUT/report_screenshot.png.
set -euo pipefail
out=${1:?usage: screenshot_report.sh OUT [WIDTH] [HEIGHT]}
width=${2:-1400}
height=${3:-4200}
report=$(realpath "$out/report.html")
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "no chromium found: apt-get install -y chromium" >&2
  exit 2
fi
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size="$width,$height" \
  --screenshot="$(realpath "$out")/report_screenshot.png" "file://$report" 2>/dev/null
echo "$out/report_screenshot.png"
