#!/usr/bin/env bash
# Make the bundle benchmarks/gpu_check.sh needs on a GPU machine without a package registry:
# the wheels of the worker path beyond what that machine has (Keras, Optuna, optuna-dashboard and
# their dependencies; numpy comes with its JAX / PyTorch) and Fashion-MNIST's training IDX files.
#
#   benchmarks/gpu_bundle.sh [DEST] [PYTHON_VERSION]     # defaults: benchmarks/gpu_bundle 3.12
#
# DEST is git-ignored; pass it to the device run as a carried path (64 MiB in all, code included).
# The IDX files come from Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$ROOT/benchmarks/gpu_bundle}
PYVER=${2:-3.12}
IDX=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
rm -rf "$DEST/wheels" "$DEST/data" && mkdir -p "$DEST/wheels" "$DEST/data/fashion-mnist"
# the versions tested (constraints.txt), as wheels for the target: x86-64 Linux, CPython PYVER;
# six: KerasTuner 1.4.8 imports it without declaring it
pip download --quiet --dest "$DEST/wheels" --only-binary=:all: --implementation cp \
    --python-version "$PYVER" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
    -c "$ROOT/constraints.txt" keras keras-tuner six optuna optuna-dashboard pyyaml tqdm 2>&1 | grep -v "is ignored" || true
rm -f "$DEST/wheels"/numpy-*.whl  # the GPU machine's JAX and PyTorch bring their own numpy
# the training files only: the check never reads the test split (and 4.4 MB count against 64 MiB)
cp "$IDX"/train-{images-idx3,labels-idx1}-ubyte.gz "$DEST/data/fashion-mnist/"
du -sh "$DEST/wheels" "$DEST/data"
ls "$DEST/wheels"
