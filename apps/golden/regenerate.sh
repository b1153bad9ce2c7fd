#!/usr/bin/env bash
# Regenerate the golden files the Kotlin (:core) and Swift (EdgediffKit) cores test against: the default model
# and both 4-step students, converted for ONNX Runtime (fp32) and run once by the Python runtime
# (`edgediff bundle-golden`: default prompt, seed 0, the bundle's own steps and guidance); shapes-sd-step4-sizes is
# the 4-step student converted with three sizes (one golden run per size: sizes/WxH/ beside the first).
#
#   apps/golden/regenerate.sh            (uses `python` on PATH; set PYTHON=/path/to/venv/bin/python)
#   BUNDLES=/tmp/b apps/golden/regenerate.sh   (reuse converted bundles in /tmp/b/<model>/onnxruntime)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-python}
cd "$REPO"
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
BUNDLES=${BUNDLES:-}
if [[ -z $BUNDLES ]]; then
    BUNDLES=$(mktemp -d)
    trap 'rm -rf "$BUNDLES"' EXIT
fi
for model in shapes-sd shapes-sd-step4 shapes-sd-lcm4; do
    if [[ ! -f $BUNDLES/$model/onnxruntime/manifest.json ]]; then
        "$PY" -m edgediff.cli convert "models/$model" --target onnxruntime --output "$BUNDLES/$model" --no-profile
    fi
    rm -rf "apps/golden/$model"
    "$PY" -m edgediff.cli bundle-golden "$BUNDLES/$model/onnxruntime" --output "apps/golden/$model"
done
if [[ ! -f $BUNDLES/shapes-sd-step4-sizes/onnxruntime/manifest.json ]]; then
    "$PY" -m edgediff.cli convert models/shapes-sd-step4 --target onnxruntime --output "$BUNDLES/shapes-sd-step4-sizes" \
        --size 64x64 --size 96x64 --size 64x96 --no-profile
fi
rm -rf apps/golden/shapes-sd-step4-sizes
"$PY" -m edgediff.cli bundle-golden "$BUNDLES/shapes-sd-step4-sizes/onnxruntime" --output apps/golden/shapes-sd-step4-sizes
du -sh apps/golden/*/
