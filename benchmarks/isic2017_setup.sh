# Sourced by the GPU scripts (gpu_check.sh, scratch_gpu.sh) after they set DATA and NAME: moves to the
# repository root, makes the package importable from it, and stops (exit 2) unless DATA is an ISIC 2017 folder.
# refuse_earlier_results OUT PATH...: stops (exit 2) when OUT already holds one of the PATHs of an earlier call.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [ ! -f "$DATA/ISIC-2017_Training_Part3_GroundTruth.csv" ]; then
    echo "$NAME: $DATA is not an ISIC 2017 folder (no ISIC-2017_Training_Part3_GroundTruth.csv)" >&2
    exit 2
fi

refuse_earlier_results() {  # one folder, one call: a rerun naming the same OUT_DIR truncates or deletes nothing
    local out=$1; shift
    local p
    for p in "$@"; do
        if [ -e "$out/$p" ]; then
            echo "$NAME: $out already holds an earlier call's results ($p); move it or name another OUT_DIR" >&2
            exit 2
        fi
    done
}
