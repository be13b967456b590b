#!/bin/bash
# stackrig on aarch64 (Raspberry Pi OS 64-bit's Debian base) under qemu-user emulation.
#
# Builds (once) a Debian bookworm arm64 root in $ROOT with debootstrap, installs this checkout
# into a venv there with pip (the aarch64 wheels of every dependency: python-gphoto2 with its
# libgphoto2, OpenCV, imagecodecs, rawpy), and runs, as a user would, the commands of the
# README on the simulated rig. Emulation runs 10 to 30 times slower than the host: a machine
# on which stacking lags far behind capture, which is what a Raspberry Pi is at 24 MP.
# Each command must end 0 within its timeout with its outputs written.
#
#   sudo bash benchmarks/aarch64_emulated.sh            # root: debootstrap, chroot, binfmt
#   ROOT=/var/tmp/arm64 sudo bash benchmarks/aarch64_emulated.sh
#
# Needs Debian's qemu-user-static, binfmt-support and debootstrap (installed if missing) and
# a kernel with binfmt_misc. Python tracebacks of a hung command: it runs with
# PYTHONFAULTHANDLER=1, so `kill -ABRT` on it prints every thread's stack to its .err file.
set -u
ROOT=${ROOT:-/tmp/stackrig-arm64}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=/run1

if [ "$(id -u)" != 0 ]; then echo "run as root (debootstrap and chroot)"; exit 2; fi
if ! command -v debootstrap >/dev/null || [ ! -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support debootstrap
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

if [ ! -x "$ROOT/usr/bin/python3" ]; then
    debootstrap --arch=arm64 --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$ROOT" http://deb.debian.org/debian || exit 1
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"  # a proxy's CA too
for d in proc dev dev/pts sys; do mountpoint -q "$ROOT/$d" || mount --bind "/$d" "$ROOT/$d"; done
trap 'for d in dev/pts dev proc sys; do umount "$ROOT/$d" 2>/dev/null; done' EXIT

rm -rf "$ROOT/src" && git clone -q "$REPO" "$ROOT/src"
echo "installing $(git -C "$REPO" rev-parse --short HEAD) into $ROOT/venv ($(chroot "$ROOT" uname -m))"
chroot "$ROOT" env -u PIP_FIND_LINKS bash -c \
    'python3 -m venv /venv && /venv/bin/pip install -q --upgrade pip && /venv/bin/pip install -q "/src[raw]"' \
    || exit 1
chroot "$ROOT" /venv/bin/rig --version

rm -rf "${ROOT:?}$WORK" && mkdir -p "$ROOT$WORK"
cat > "$ROOT$WORK/commands.sh" <<'EOF'
#!/bin/bash
export PYTHONFAULTHANDLER=1
cd /run1 && R=/venv/bin/rig S=/venv/bin/stacker
failed=0
run() {  # name, timeout in s, command...: its status and time, one line
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$name.out" 2> "$name.err"
    local rc=$?
    printf '%-12s rc=%-3s %4ss\n' "$name" "$rc" "$((SECONDS - t0))"
    [ "$rc" = 0 ] || failed=1
}
run demo 900 $R demo --frames 6 --size 640x480 --out demo
run tether 900 $R demo --tether --frames 6 --size 640x480 --out tether
run nikon-pairs 900 $R demo --tether --camera nikon --raw-plus-jpeg --frames 6 --size 640x480 --out nikon
run canon-rail 900 $R demo --camera canon --raw-mb 8 --frames 6 --size 640x480 --out canon
run stack 900 $S stack demo/frames -o stack.tif --depth-map stack-depth.png
mkdir -p hot
( sleep 8; for f in demo/frames/*.jpg; do cp "$f" hot/.part && mv hot/.part "hot/${f##*/}"; sleep 2; done ) &
run watch 900 $S watch hot -o watch.tif --idle-timeout 40s
wait
frames() { cat "$1/journal.jsonl" 2>/dev/null | grep -c '"event":"frame"'; }
# Ctrl-C after the third frame, then resume
$R demo --frames 8 --size 640x480 --out cut > cut.out 2> cut.err &
pid=$!
for _ in $(seq 1 3000); do [ "$(frames cut)" -ge 3 ] && break; sleep 0.2; done
kill -INT $pid; wait $pid; rc=$?
printf '%-12s rc=%-3s after %s frames\n' "ctrl-c" "$rc" "$(frames cut)"
[ "$rc" = 130 ] || [ "$rc" = 0 ] || failed=1
run resume 900 $R resume cut
# The station: a session started through its API, its composite fetched
$R station --sim --sessions sessions --port 8765 > station.out 2> station.err &
pid=$!
run station-api 900 /venv/bin/python3 - <<'PY'
import json, re, time, urllib.request
while not (m := re.search(r"#token=(\S+)", open("station.out").read())):
    time.sleep(0.5)
def call(path, body=None):
    req = urllib.request.Request(
        "http://127.0.0.1:8765" + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + m.group(1)},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read()
plan = {"from": "0mm", "to": "2mm", "frames": 6, "settle": "0.2s"}
call("/api/sessions", {"plan": plan, "name": "beetle"})
while json.loads(call("/api/station")).get("running") is not None:
    time.sleep(2)
open("station.tif", "wb").write(call("/api/sessions/beetle/composite"))
PY
kill -TERM $pid; wait $pid; rc=$?
printf '%-12s rc=%-3s at SIGTERM\n' "station" "$rc"
[ "$rc" = 0 ] || failed=1
for f in demo/composite.tif tether/composite.tif nikon/composite.tif canon/composite.tif \
         stack.tif stack-depth.png watch.tif cut/composite.tif station.tif; do
    [ -s "$f" ] || { echo "missing: $f"; failed=1; }
done
grep -l Traceback ./*.err */session.log sessions/*/session.log 2>/dev/null && failed=1
exit $failed
EOF
chmod +x "$ROOT$WORK/commands.sh"
t0=$SECONDS
chroot "$ROOT" "$WORK/commands.sh"
rc=$?
echo "$([ $rc = 0 ] && echo "every command ended well" || echo "FAILED: see $ROOT$WORK") in $((SECONDS - t0)) s"
exit $rc
