#!/usr/bin/env bash
# Starts three Skybridge nodes on loopback that route messages between
# them (examples/cluster/n1..n3.yaml): MQTT on 127.0.0.1:1883, :1884 and
# :1885, admin on :8081, :8082 and :8083. Ctrl-C stops the three (by pid).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/skybridge
go build -o "$bin" ./cmd/skybridge
pids=()
stop() {
	trap - INT TERM EXIT
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait "${pids[@]}" 2>/dev/null || true
	rm -rf "$(dirname "$bin")"
}
trap stop INT TERM EXIT
mkdir -p data/cluster
for i in 1 2 3; do
	"$bin" serve --config "examples/cluster/n$i.yaml" 2>"data/cluster/n$i.log" &
	pids+=($!)
done
# The nodes serve MQTT once their raftkv has a quorum (all three started).
for port in 1883 1884 1885; do
	for _ in $(seq 1 600); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
		for p in "${pids[@]}"; do
			kill -0 "$p" 2>/dev/null || { echo "a node exited: see data/cluster/n*.log" >&2; exit 1; }
		done
		sleep 0.1
	done
done
cat <<MSG
Three nodes are up (logs in data/cluster/n*.log):
  MQTT   127.0.0.1:1883  127.0.0.1:1884  127.0.0.1:1885
  admin  http://127.0.0.1:8081  :8082  :8083   (GET /api/v1/cluster)
Try: mosquitto_sub -p 1884 -t 'demo/#' -v   and   mosquitto_pub -p 1883 -t demo/x -m hello
Ctrl-C stops them.
MSG
wait "${pids[@]}"
