#!/usr/bin/env bash
# bench/storage.sh: persistent QoS 1 throughput with the Pebble store on disk
# against the in-memory store, in one run (docs/STORAGE.md, "Figures").
#
# One publisher sends QoS 1 messages (16 B, 1,000 in flight) for 5 s to one
# connected persistent subscriber (clean session off) that acknowledges
# them; the broker is `skybridge serve` with --storage pebble (a fresh data
# directory on the disk under DATA_DIR) or --storage memory. The two
# alternate for ROUNDS rounds, each run on a freshly started broker, so
# drifts of the machine hit both alike. It prints every run and the
# median rate of each store and their ratio.
#
# Usage: bench/storage.sh            (ROUNDS=5 DATA_DIR=$PWD/bench/.data)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DATA_DIR=${DATA_DIR:-$PWD/bench/.data}
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/skybridge" ./cmd/skybridge
go build -o "$bin/skybridge-bench" ./cmd/skybridge-bench
mkdir -p "$DATA_DIR"

# free_port prints a loopback port nobody listens on.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run STORE prints the messages per second the subscriber received.
run() {
	local store=$1 dir port admin broker sub
	dir=$(mktemp -d -p "$DATA_DIR")
	port=$(free_port)
	admin=$(free_port)
	"$bin/skybridge" serve --config /dev/null --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" \
		--storage "$store" --data "$dir/data" --log-level warn >"$dir/broker.log" 2>&1 &
	broker=$!
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		sleep 0.05
	done
	"$bin/skybridge-bench" sub -h "127.0.0.1:$port" -t 'd/#' -q 1 -C=false -prefix "s$store" -d 7s -quiet -o "$dir/sub.json" &
	sub=$!
	sleep 0.5
	"$bin/skybridge-bench" pub -h "127.0.0.1:$port" -t d/1 -q 1 -F 1000 -d 5s -quiet -o "$dir/pub.json"
	wait "$sub"
	kill -INT "$broker"
	wait "$broker" || true
	grep -o '"received": *[0-9]*' "$dir/sub.json" | head -1 | awk '{print int($2/5)}'
	rm -rf "$dir"
}

declare -a pebble memory
for r in $(seq "$ROUNDS"); do
	p=$(run pebble)
	m=$(run memory)
	pebble+=("$p")
	memory+=("$m")
	echo "round $r: pebble $p msg/s, memory $m msg/s ($(awk -v p="$p" -v m="$m" 'BEGIN{printf "%.0f", 100*p/m}')%)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
mp=$(median "${pebble[@]}")
mm=$(median "${memory[@]}")
echo "median: pebble $mp msg/s, memory $mm msg/s: $(awk -v p="$mp" -v m="$mm" 'BEGIN{printf "%.0f", 100*p/m}')% (target: at least 50%)"
