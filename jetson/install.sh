#!/usr/bin/env bash
# Installs seld-edge's torch-free runtime on a flashed Jetson:
#   JetPack 6.1/6.2 (L4T R36.4.x: TensorRT 10.3, CUDA 12.6, Python 3.10, Orin = sm_87)
#   JetPack 7.x     (L4T R38.x:   TensorRT 10.13+, CUDA 13, Python 3.12, Thor = sm_110, Orin = sm_87)
# What it does: a venv that sees JetPack's TensorRT Python bindings, pycuda built against the CUDA
# toolkit, this repository's package with its [trt] extra (never torch), the SelectiveScan TensorRT
# plugin built for this GPU, and the plugin's kernel test on the GPU.
#
# Usage: ./jetson/install.sh
# Environment:
#   SELD_EDGE_HOME  where the venv, build and plugin go (default: $HOME/.seld-edge)
#   CUDA_ARCH       GPU architecture for nvcc (default: from /proc/device-tree/compatible; 87 Orin, 110 Thor)
#   L4T_RELEASE     the L4T release as "36.4" or "38.2" when /etc/nv_tegra_release is missing
#   SKIP_GPU_TEST=1 build the test binary but do not run it (container builds, where no GPU is visible)
# Exit codes: 0 installed, 1 a step failed, 2 this release is not supported.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELD_EDGE_HOME="${SELD_EDGE_HOME:-$HOME/.seld-edge}"
VENV="$SELD_EDGE_HOME/venv"
BUILD="$SELD_EDGE_HOME/build/scan"
PLUGIN="$SELD_EDGE_HOME/lib/libseld_scan_plugin.so"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"

die() { echo "install.sh: $*" >&2; exit 1; }
refuse() { echo "install.sh: $*" >&2; exit 2; }
stage() { echo "[$1/6] $2"; }

# ---------------------------------------------------------------------------------------------
stage 1 "checking the L4T release, the GPU and the tools"

if [ -n "${L4T_RELEASE:-}" ]; then
    release="$L4T_RELEASE"
elif [ -r /etc/nv_tegra_release ]; then
    # first line: "# R36 (release), REVISION: 4.3, GCID: ..., BOARD: ..., EABI: aarch64, DATE: ..."
    release="$(sed -n '1s/^# R\([0-9][0-9]*\) (release), REVISION: \([0-9][0-9.]*\).*/\1.\2/p' /etc/nv_tegra_release)"
    [ -n "$release" ] || refuse "cannot read the L4T release from the first line of /etc/nv_tegra_release"
else
    refuse "no /etc/nv_tegra_release: not a Jetson with L4T (set L4T_RELEASE=36.4 to force, e.g. in a container)"
fi
[[ "$release" =~ ^[0-9]+\.[0-9]+ ]] || refuse "L4T release '$release': expected a form like 36.4"
l4t_major="${release%%.*}"
l4t_rest="${release#*.}"
l4t_minor="${l4t_rest%%.*}"
case "$l4t_major" in
    36)
        if [ "$l4t_minor" -lt 4 ]; then
            refuse "L4T R$release is JetPack 6.0 (TensorRT 8.6), not supported here: seld-edge builds and runs engines with TensorRT 10; on 8.6 only trtexec with the plugin's IPluginV2 build, done by hand (cmake with -DTENSORRT_ROOT, see export/plugins/selective_scan/README.md)"
        fi
        jetpack="6.1/6.2" ;;
    38)
        jetpack="7.x" ;;
    35)
        refuse "L4T R$release is JetPack 5.1 (TensorRT 8.5), not supported here: TensorRT 8.5 cannot load the SelectiveScan plugin library, and seld-edge builds and runs engines with TensorRT 10" ;;
    *)
        refuse "L4T R$release is not supported (JetPack 6.1/6.2 = R36.4, JetPack 7 = R38): seld-edge builds and runs engines with TensorRT 10 or later" ;;
esac

if [ -n "${CUDA_ARCH:-}" ]; then
    SM="$CUDA_ARCH"
elif [ -r /proc/device-tree/compatible ]; then
    compatible="$(tr '\0' '\n' < /proc/device-tree/compatible)"
    if grep -qx 'nvidia,tegra234' <<< "$compatible"; then
        SM=87     # Orin
    elif grep -qx 'nvidia,tegra264' <<< "$compatible"; then
        SM=110    # Thor
    else
        die "unknown SoC in /proc/device-tree/compatible ($(tr '\n' ' ' <<< "$compatible")); set CUDA_ARCH"
    fi
else
    die "no /proc/device-tree/compatible to tell the GPU from; set CUDA_ARCH (87 Orin, 110 Thor)"
fi
[[ "$SM" =~ ^[0-9]+(\;[0-9]+)*$ ]] || die "CUDA_ARCH=$SM: expected a number such as 87 or 110 (or a list 87;110)"

export PATH="$CUDA_HOME/bin:$PATH"
export CPATH="$CUDA_HOME/include${CPATH:+:$CPATH}"
# libcuda for linking pycuda: JetPack's driver library, else the toolkit's stub (container builds)
export LIBRARY_PATH="/usr/lib/aarch64-linux-gnu/tegra:$CUDA_HOME/lib64:$CUDA_HOME/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDA_ROOT="$CUDA_HOME"

command -v nvcc > /dev/null || die "nvcc not found in $CUDA_HOME/bin: install the CUDA toolkit (sudo apt install nvidia-jetpack)"
command -v cmake > /dev/null || die "cmake not found: sudo apt install cmake"
command -v python3 > /dev/null || die "python3 not found: sudo apt install python3 python3-venv python3-dev"
echo "      L4T R$release (JetPack $jetpack), sm_$SM, $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/CUDA \1/p'), $(python3 --version)"

# ---------------------------------------------------------------------------------------------
stage 2 "creating the venv $VENV (with JetPack's system site packages)"

mkdir -p "$SELD_EDGE_HOME"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv --system-site-packages "$VENV" \
        || die "python3 -m venv failed: sudo apt install python3-venv python3-dev"
fi
PY="$VENV/bin/python"
"$PY" -c "import tensorrt" 2> /dev/null \
    || die "the tensorrt Python module does not import: install JetPack's python3-libnvinfer (sudo apt install nvidia-tensorrt, or python3-libnvinfer)"
trt_version="$("$PY" -c "import tensorrt; print(tensorrt.__version__)")"
[ "${trt_version%%.*}" -ge 10 ] || refuse "TensorRT $trt_version: seld-edge builds and runs engines with TensorRT 10 or later; on 8.6 only trtexec with the plugin's IPluginV2 build, done by hand (cmake with -DTENSORRT_ROOT, see export/plugins/selective_scan/README.md)"
echo "      TensorRT $trt_version"
"$PY" -m pip install --quiet --upgrade pip setuptools wheel

# ---------------------------------------------------------------------------------------------
stage 3 "building pycuda from source against $CUDA_HOME (takes a few minutes)"

"$PY" -m pip install --quiet pycuda || die "pip install pycuda failed (needs python3-dev and the CUDA toolkit; see the output above)"

# ---------------------------------------------------------------------------------------------
stage 4 "installing seld-edge from $REPO with its [trt] extra (no torch)"

"$PY" -m pip install --quiet "${REPO}[trt]" || die "pip install ${REPO}[trt] failed (see the output above)"
"$VENV/bin/seld-edge" --help > /dev/null || die "$VENV/bin/seld-edge does not start"

# ---------------------------------------------------------------------------------------------
stage 5 "building the SelectiveScan TensorRT plugin for sm_$SM"

cmake -S "$REPO/export/plugins/selective_scan" -B "$BUILD" -DCMAKE_CUDA_ARCHITECTURES="$SM" > "$SELD_EDGE_HOME/cmake.log" 2>&1 \
    || { cat "$SELD_EDGE_HOME/cmake.log" >&2; die "cmake configure failed (log: $SELD_EDGE_HOME/cmake.log)"; }
cmake --build "$BUILD" -j"$(nproc)" >> "$SELD_EDGE_HOME/cmake.log" 2>&1 \
    || { tail -n 40 "$SELD_EDGE_HOME/cmake.log" >&2; die "plugin build failed (log: $SELD_EDGE_HOME/cmake.log)"; }
[ -f "$BUILD/libseld_scan_plugin.so" ] \
    || die "no libseld_scan_plugin.so: CMake found no TensorRT headers (sudo apt install libnvinfer-dev; log: $SELD_EDGE_HOME/cmake.log)"
# TensorRT 10 finds the plugin through getCreators; without it the library was built against 8.x headers.
nm -D --defined-only "$BUILD/libseld_scan_plugin.so" | grep -qw getCreators \
    || die "the plugin library has no getCreators: it was built against TensorRT 8 headers, not this TensorRT $trt_version (log: $SELD_EDGE_HOME/cmake.log)"
mkdir -p "$(dirname "$PLUGIN")"
cp "$BUILD/libseld_scan_plugin.so" "$PLUGIN"
echo "      $PLUGIN"

# ---------------------------------------------------------------------------------------------
if [ "${SKIP_GPU_TEST:-0}" = 1 ]; then
    stage 6 "skipping the kernel test on the GPU (SKIP_GPU_TEST=1)"
else
    stage 6 "testing the scan kernel on the GPU against the CPU reference"
    test_log="$SELD_EDGE_HOME/scan_test.log"
    "$BUILD/seld_scan_host_test" > "$test_log" 2>&1 \
        || { cat "$test_log" >&2; die "the scan kernel test failed (log: $test_log)"; }
    if grep -q '^skip GPU checks' "$test_log"; then
        cat "$test_log" >&2
        die "the kernel test saw no GPU (set SKIP_GPU_TEST=1 where none is expected, e.g. a container build)"
    fi
    tail -n 1 "$test_log" | sed 's/^/      /'
fi

cat << NEXT

seld-edge is installed in $VENV. Next steps:
  1. source $VENV/bin/activate
  2. on a PC with the training install: seld-edge export CHECKPOINT -o out/model.onnx --trt [--fp16]
     (without TensorRT there it writes out/model.onnx, out/model.engine.json and out/build_engine.sh)
  3. copy out/ to this Jetson and, with the venv active, run ./build_engine.sh in it
     (a model with a selective scan loads ~/.seld-edge/lib/libseld_scan_plugin.so;
      export SELD_SCAN_PLUGIN=$PLUGIN when SELD_EDGE_HOME is elsewhere)
  4. seld-edge run out/model.engine audio/ -o csv/    (add --stream for block-by-block events and latency)
Details: $REPO/jetson/README.md
NEXT
