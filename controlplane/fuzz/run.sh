#!/usr/bin/env bash
# The fuzz targets of the control plane (STA XML, RADIUS, otpauth, OTP attribute, push device input): builds and runs each for a bounded time.
# Usage: run.sh [--seconds N] [--build-only] [TARGET...] (see tools/fuzz/run.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../../tools/fuzz/run.sh" "$here" "$@"
