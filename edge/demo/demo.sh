#!/usr/bin/env bash
# make demo-edge: skybridge-cloud and two skybridge-edge nodes on this
# machine. It activates the nodes, deploys an app by label, stops the
# cloud (the nodes keep running their app, and one restarts with no cloud
# at all), brings the cloud back with a new revision, and shows the fleet
# converge. It stops only the processes it started (by process group).
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${DEMO_PORT_BASE:-18000}
API=127.0.0.1:$((BASE + 443)) BROKER=127.0.0.1:$((BASE + 883))
DIR=$(mktemp -d /tmp/skybridge-edge-demo.XXXXXX)
declare -A PGID=()
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
stop() { local p=${PGID[$1]:-}; [ -n "$p" ] && kill -TERM -- "-$p" 2>/dev/null || true; unset "PGID[$1]"; }
cleanup() { for k in "${!PGID[@]}"; do stop "$k"; done; wait 2>/dev/null || true; echo; echo "logs and data: $DIR"; }
trap cleanup EXIT
# start NAME CMD...: in its own process group, output to DIR/NAME.log.
start() { local n=$1; shift; setsid "$@" >>"$DIR/$n.log" 2>&1 & PGID[$n]=$!; }
# until SECONDS CMD...: poll until CMD succeeds.
until_ok() { local end=$((SECONDS + $1)); shift; until "$@" >/dev/null 2>&1; do
  [ $SECONDS -lt $end ] || { echo "timed out: $*"; exit 1; }; sleep 0.3; done; }
ctl() { "$DIR/bin/skybridge-cloud" ctl --data "$DIR/cloud" --api "https://$API" "$@"; }
beat() { for n in edge-1 edge-2; do printf '%s: %s\n' "$n" "$(cat "$DIR/$n/apps/hello/heartbeat" 2>/dev/null || echo '(not running)')"; done; }

say "building skybridge-cloud, skybridge-edge and the demo app (heartbeat)"
go build -o "$DIR/bin/" ./cmd/skybridge-cloud ./cmd/skybridge-edge ./edge/demo/heartbeat

say "starting the cloud: API https://$API, broker mqtts://$BROKER (data in $DIR/cloud)"
start cloud "$DIR/bin/skybridge-cloud" serve --data "$DIR/cloud" --api "$API" --broker "$BROKER" --host 127.0.0.1 --lease 15s
until_ok 30 grep -q 'msg=ready' "$DIR/cloud.log"
echo "web console while the demo runs: https://$API/console/ (token in $DIR/cloud/admin.token; a self-signed certificate, its sha256 in $DIR/cloud.log)"

say "two nodes: a one-time token each, with labels"
for i in 1 2; do
  join=$(ctl token "edge-$i" role=demo site=$i)
  echo "edge-$i join: ${join:0:40}..."
  start "edge-$i" "$DIR/bin/skybridge-edge" run --data "$DIR/edge-$i" --join "$join" \
    --local-broker "127.0.0.1:$((BASE + 1883 + i))" --report-every 5s --resync-jitter 2s --ack-timeout 5s
done
until_ok 30 bash -c "$(declare -f ctl); DIR=$DIR API=$API; ctl nodes | grep -c 'active.*true' | grep -q 2"
ctl nodes

say "deploying the app 'hello' to every node labelled role=demo"
sha=$(ctl push "$DIR/bin/heartbeat")
cat >"$DIR/hello.yaml" <<YAML
name: hello
selector: role=demo
artifact: {sha256: $sha}
args: [--rev, v1]
restart: {policy: always, backoff_min: 500ms, backoff_max: 10s}
health: {exec: [test, -f, heartbeat], period: 5s}
limits: {nofile: 256}
YAML
ctl deploy "$DIR/hello.yaml"
until_ok 30 grep -q 'rev v1' "$DIR/edge-1/apps/hello/heartbeat"
until_ok 30 grep -q 'rev v1' "$DIR/edge-2/apps/hello/heartbeat"
beat
sleep 6; ctl nodes

say "stopping the cloud: the nodes keep running their app"
stop cloud; sleep 2; beat

say "restarting edge-1's agent while the cloud is down: its app comes back from local state"
stop edge-1; sleep 1
start edge-1 "$DIR/bin/skybridge-edge" run --data "$DIR/edge-1" --local-broker "127.0.0.1:$((BASE + 1884))" \
  --report-every 5s --resync-jitter 2s --ack-timeout 5s
sleep 2; beat

say "the cloud comes back; revision v2 of the app is deployed"
start cloud "$DIR/bin/skybridge-cloud" serve --data "$DIR/cloud" --api "$API" --broker "$BROKER" --host 127.0.0.1 --lease 15s
until_ok 30 bash -c "grep -c 'msg=ready' '$DIR/cloud.log' | grep -q 2"
sed -i 's/v1/v2/' "$DIR/hello.yaml"
ctl deploy "$DIR/hello.yaml"
until_ok 60 grep -q 'rev v2' "$DIR/edge-1/apps/hello/heartbeat"
until_ok 60 grep -q 'rev v2' "$DIR/edge-2/apps/hello/heartbeat"
beat
sleep 6; ctl nodes

say "the fleet's events"
ctl events | tail -25
