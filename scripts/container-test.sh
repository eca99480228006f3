#!/usr/bin/env bash
# Builds img2vid's CPU image with podman and runs it for real: `img2vid generate` into a
# mounted folder, then `img2vid serve` behind a port mapping, driven over HTTP from the host.
# With --gpu it also builds the CUDA variant and checks `img2vid doctor` inside it.
#
# No image registry is needed: the base is Debian made by `debootstrap --variant=minbase` and
# `podman import`, passed to the Dockerfile as BASE. PyPI must be reachable (or a wheel folder
# named by PIP_FIND_LINKS, mounted into the build). The base tarball, podman's layers and pip's
# cache (a cache mount in the Dockerfile) are kept, so a second run only re-runs the checks.
#
# Needs root and Debian's podman, runc and debootstrap (apt-get install podman runc debootstrap).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${IMG2VID_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/img2vid-container-test}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
TAG=localhost/img2vid:test
GPU=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "container-test: unknown option $arg (use --gpu or nothing)" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s (%ds)\n' "$*" "$SECONDS"; }
fail() { echo "container-test: FAILED: $*" >&2; exit 1; }

for tool in podman runc debootstrap curl; do
  command -v "$tool" >/dev/null || { echo "container-test: $tool is missing: apt-get install -y podman runc debootstrap curl" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "container-test: run as root (podman with runc and cgroupfs, debootstrap)" >&2; exit 2; }
"$PYTHON" -c "import av" 2>/dev/null || { echo "container-test: $PYTHON cannot import av; set PYTHON to a Python with img2vid's dependencies" >&2; exit 2; }
mkdir -p "$CACHE"

# Podman as root without systemd: runc, cgroupfs, and no ulimits it may not raise here.
if [ -z "${CONTAINERS_CONF:-}" ]; then
  export CONTAINERS_CONF=$CACHE/containers.conf
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' > "$CONTAINERS_CONF"
fi
[ -f "$CONTAINERS_CONF" ] || { echo "container-test: CONTAINERS_CONF names $CONTAINERS_CONF, which does not exist" >&2; exit 2; }

WORK=$(mktemp -d /tmp/img2vid-container-test.XXXXXX)
SERVER=img2vid-test-$$
cleanup() {
  podman rm -f -t 0 "$SERVER" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- pip's way out from inside the build ---------------------------------------------------
# The host's pip settings that the build needs too: a CA bundle for a TLS-inspecting proxy
# (PIP_CERT / pip.conf's cert) and a folder of wheels (PIP_FIND_LINKS / find-links), which is
# where a CPU torch wheel comes from when download.pytorch.org cannot be reached.
pip_setting() {  # env var, then pip.conf key
  local value=${!1:-}
  [ -n "$value" ] || value=$("$PYTHON" -m pip config get "global.$2" 2>/dev/null || true)
  printf '%s' "$value"
}
CERT=$(pip_setting PIP_CERT cert)
WHEELS=$(pip_setting PIP_FIND_LINKS find-links | awk '{print $1}')
[ -d "$WHEELS" ] || WHEELS=""

# --- base image: Debian minbase with Python, made here, imported once ----------------------
BASE_PACKAGES=python3,python3-venv,ca-certificates
key=$(printf '%s %s %s %s' "$SUITE" "$MIRROR" "$BASE_PACKAGES" "$WHEELS" \
      | cat - ${CERT:+"$CERT"} | sha256sum | cut -c1-12)
BASE=localhost/img2vid-base:$SUITE-$key
TARBALL=$CACHE/base-$SUITE-$key.tar
if ! podman image exists "$BASE"; then
  if [ ! -s "$TARBALL" ]; then
    step "debootstrap $SUITE (minbase + $BASE_PACKAGES)"
    rootfs=$WORK/rootfs
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
      > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
    {
      echo "[global]"
      if [ -n "$CERT" ]; then
        cp "$CERT" "$rootfs/etc/ssl/certs/pip-host-ca.pem"
        echo "cert = /etc/ssl/certs/pip-host-ca.pem"
      fi
      if [ -n "$WHEELS" ]; then echo "find-links = /wheels"; fi
    } > "$rootfs/etc/pip.conf"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" --numeric-owner -cf "$TARBALL.part" . && mv "$TARBALL.part" "$TARBALL"
    rm -rf "$rootfs"
  fi
  step "podman import $TARBALL"
  podman import -q "$TARBALL" "$BASE" >/dev/null
fi

# --- build ---------------------------------------------------------------------------------
build_args=(--format docker --build-arg "BASE=$BASE")
if [ -n "$WHEELS" ]; then
  build_args+=(-v "$WHEELS:/wheels:ro")
  # A local CPU torch wheel stands in for download.pytorch.org (unreachable without internet).
  compgen -G "$WHEELS/torch-*+cpu-*.whl" >/dev/null && build_args+=(--build-arg TORCH_INDEX_URL=)
fi
step "podman build (CPU) -> $TAG-cpu"
podman build "${build_args[@]}" -t "$TAG-cpu" "$ROOT" > "$WORK/build-cpu.log" 2>&1 \
  || { tail -30 "$WORK/build-cpu.log" >&2; fail "podman build (log above)"; }
echo "   $(grep -c -- '--> Using cache' "$WORK/build-cpu.log" || true) steps from podman's layer cache"

check_video() {  # FILE MIN_FRAMES: a real H.264 MP4 PyAV decodes frame by frame
  "$PYTHON" - "$@" <<'EOF'
import sys
import av

path, min_frames = sys.argv[1], int(sys.argv[2])
with av.open(path) as box:
    stream = box.streams.video[0]
    frames = sum(1 for _ in box.decode(stream))
    codec, width, height = stream.codec_context.name, stream.width, stream.height
assert box.format.name.startswith("mov,mp4"), box.format.name
assert codec == "h264", codec
assert frames >= min_frames, f"{frames} frames, expected at least {min_frames}"
print(f"   {path}: {codec} {width}x{height}, {frames} frames decoded")
EOF
}

# --- the CLI in the container --------------------------------------------------------------
step "img2vid runs as a non-root user"
# One-off commands need no HEALTHCHECK (and podman would ask systemd, absent here, to time it).
uid=$(podman run --rm --no-healthcheck --entrypoint id "$TAG-cpu" -u)
[ "$uid" != 0 ] || fail "the image runs as root"
echo "   uid $uid"

step "the CPU image has torch's CPU build and no CUDA libraries"
podman run --rm --no-healthcheck --entrypoint python "$TAG-cpu" -c "
import importlib.metadata as m, torch
cuda = sorted(d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].lower().startswith(('nvidia', 'cuda', 'triton')))
assert torch.version.cuda is None and not cuda, (torch.__version__, cuda)
print('   torch', torch.__version__)" || fail "the CPU image carries CUDA"

step "img2vid generate inside the container, on a mounted folder (the README's one-off command)"
# As the README has users run it: their own uid, their folder mounted as the working directory.
mkdir -p "$WORK/cli" && cp "$ROOT/examples/coffee.png" "$WORK/cli/" && chown -R 4321:4321 "$WORK/cli"
podman run --rm --no-healthcheck --user 4321:4321 -v "$WORK/cli:/work" -w /work "$TAG-cpu" \
  generate coffee.png --preset preview --duration 2 --motion zoom-in -o clip.mp4
check_video "$WORK/cli/clip.mp4" 48
[ -s "$WORK/cli/clip.json" ] || fail "no sidecar beside the video"
[ "$(stat -c %u "$WORK/cli/clip.mp4")" = 4321 ] || fail "the video is not owned by the caller's uid"

step "bad input: one line, exit code 2"
set +e
msg=$(podman run --rm --no-healthcheck "$TAG-cpu" generate /nonexistent.png 2>&1); rc=$?
set -e
echo "   $msg"
[ "$rc" = 2 ] || fail "expected exit code 2 for a missing image, got $rc"

# --- the server in the container -----------------------------------------------------------
PORT=$("$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
TOKEN=container-test-$RANDOM$RANDOM
URL=http://127.0.0.1:$PORT
step "img2vid serve (the image's default command) on $URL"
mkdir -p "$WORK/srv" && chmod 0777 "$WORK/srv"
# Without systemd podman cannot time the HEALTHCHECK (it says so on stderr); it is run by hand.
podman run -d --name "$SERVER" -p "127.0.0.1:$PORT:7860" -e "IMG2VID_SERVER__TOKEN=$TOKEN" \
  -v "$WORK/srv:/data/outputs" "$TAG-cpu" >/dev/null 2>"$WORK/podman-run.log" \
  || { cat "$WORK/podman-run.log" >&2; fail "podman run (serve)"; }
for _ in $(seq 180); do
  curl -fs "$URL/healthz" >/dev/null && break
  [ "$(podman inspect -f '{{.State.Running}}' "$SERVER")" = true ] \
    || { podman logs "$SERVER" >&2; fail "the server exited"; }
  sleep 1
done
curl -fsS "$URL/healthz" || { podman logs "$SERVER" >&2; fail "no /healthz after 180 s"; }
echo
podman healthcheck run "$SERVER" && echo "   HEALTHCHECK: healthy" || fail "the image's HEALTHCHECK failed"

code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/api/v1/jobs")
[ "$code" = 401 ] || fail "the API answered $code without the token (expected 401)"
echo "   without the token: 401"

auth=(-H "Authorization: Bearer $TOKEN")
job=$(curl -fsS "${auth[@]}" -F images=@"$ROOT/examples/astronaut.png" -F motion=zoom-in \
      -F preset=preview -F duration=2 "$URL/api/v1/jobs") || fail "submit"
id=$("$PYTHON" -c "import json, sys; print(json.loads(sys.argv[1])['id'])" "$job")
echo "   submitted job $id"
status=queued
for _ in $(seq 240); do
  status=$(curl -fsS "${auth[@]}" "$URL/api/v1/jobs/$id" \
           | "$PYTHON" -c "import json, sys; j = json.load(sys.stdin); print(j['status'], j.get('error') or '')")
  case "$status" in succeeded*|failed*|cancelled*) break ;; esac
  sleep 0.5
done
echo "   job $id: $status"
[ "${status%% *}" = succeeded ] || { podman logs "$SERVER" >&2; fail "job $id ended $status"; }
curl -fsS "${auth[@]}" -o "$WORK/downloaded.mp4" "$URL/api/v1/jobs/$id/video"
check_video "$WORK/downloaded.mp4" 40
ls "$WORK/srv" | grep -q '\.mp4$' || fail "the job's video is not in the mounted outputs volume"
ls -A "$WORK/srv" | grep -q . && echo "   outputs volume: $(ls -A "$WORK/srv" | tr '\n' ' ')"

step "stop: SIGTERM ends the server cleanly"
podman stop -t 30 "$SERVER" >/dev/null 2>"$WORK/podman-stop.log" \
  || { cat "$WORK/podman-stop.log" >&2; fail "podman stop"; }
code=$(podman inspect -f '{{.State.ExitCode}}' "$SERVER")
[ "$code" = 0 ] || { podman logs "$SERVER" >&2; fail "the server exited with $code on SIGTERM"; }
echo "   exit code 0"

# --- the GPU variant, as far as no GPU is needed -------------------------------------------
if [ "$GPU" = 1 ]; then
  step "podman build (CUDA) -> $TAG-cuda"
  # Without the wheel folder: PyPI's torch is the CUDA build, and a local +cpu wheel would win.
  podman build --format docker --build-arg "BASE=$BASE" --build-arg TORCH=cuda \
    -t "$TAG-cuda" "$ROOT" > "$WORK/build-cuda.log" 2>&1 \
    || { tail -30 "$WORK/build-cuda.log" >&2; fail "podman build --build-arg TORCH=cuda"; }
  step "img2vid doctor in the CUDA image (no GPU here)"
  doctor=$(podman run --rm --no-healthcheck "$TAG-cuda" doctor) || { echo "$doctor"; fail "img2vid doctor"; }
  echo "$doctor" | grep -E '^\[.*\] (torch|python|encoder libx264) '
  podman run --rm --no-healthcheck --entrypoint python "$TAG-cuda" -c \
    "import torch; assert torch.version.cuda, 'not a CUDA build'; print('   torch', torch.__version__, 'CUDA', torch.version.cuda, 'available:', torch.cuda.is_available())"
  echo "$doctor" | grep -q 'no GPU' || fail "doctor should report no GPU on this machine"
fi

step "container test passed"
