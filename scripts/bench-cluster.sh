#!/usr/bin/env bash
# Cross-node throughput and latency (docs/CLUSTER.md, "Benchmarks"): the
# same skybridge-bench scenarios against a standalone broker, against one
# node of a two-node cluster (publishers and subscribers on the same node),
# and across the cluster (publishers on node A, subscribers on node B, so
# every message crosses a forward link). Stores in memory; raftkv on a
# temporary directory. Prints one line per scenario and target; the
# scenarios' JSON goes to $OUT (default: a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIOS=${SCENARIOS:-p2p-1-1-q0-16B p2p-1-1-q1-16B-if100 fanin-50-1-q0-16B fanout-1-50-q0-16B p2p-10-10-q0-16B-r50k}
WINDOW=${WINDOW:-3s}
work=$(mktemp -d)
OUT=${OUT:-$work/results}
mkdir -p "$OUT"
go build -o "$work/skybridge" ./cmd/skybridge
go build -o "$work/skybridge-bench" ./cmd/skybridge-bench
pids=()
stop() {
	trap - INT TERM EXIT
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait "${pids[@]}" 2>/dev/null || true
	rm -rf "$work/data"
}
trap stop INT TERM EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
S=127.0.0.1:$(port); A=127.0.0.1:$(port); B=127.0.0.1:$(port)
kvA=127.0.0.1:$(port); kvB=127.0.0.1:$(port); gA=127.0.0.1:$(port); gB=127.0.0.1:$(port)
for n in a b; do
	if [ $n = a ]; then id=1; g=$gA; kv=$kvA; else id=2; g=$gB; kv=$kvB; fi
	cat >"$work/$n.yaml" <<YAML
storage: {type: memory}
log: {level: warn}
cluster:
  name: bench
  node_id: $n
  bind: $g
  seeds: [$gA]
  forward: 127.0.0.1:0
  kv: {node_id: $id, bind: $kv, client_bind: 127.0.0.1:0, peers: ["1=$kvA", "2=$kvB"], dir: $work/data/kv-$n}
YAML
done
"$work/skybridge" serve --listen "$S" --storage memory --log-level warn 2>"$work/s.log" & pids+=($!); pidS=$!
"$work/skybridge" serve --listen "$A" --config "$work/a.yaml" 2>"$work/a.log" & pids+=($!); pidA=$!
"$work/skybridge" serve --listen "$B" --config "$work/b.yaml" 2>"$work/b.log" & pids+=($!); pidB=$!
tck=$(getconf CLK_TCK)
# cpu PID...: the processes' user + system CPU so far, in microseconds.
cpu() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $((t * 1000000 / tck)); }
for addr in "$S" "$A" "$B"; do
	for _ in $(seq 1 600); do
		if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then break; fi
		sleep 0.1
	done
done
# Both nodes must see each other before a subscription's SUBACK covers both.
for _ in $(seq 1 300); do
	if grep -q 'member alive.*member=b' "$work/a.log" 2>/dev/null || grep -q 'member=b' "$work/a.log"; then break; fi
	sleep 0.1
done
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# cpu-us/msg: the brokers' CPU (both nodes of the cluster, raftkv
# included) over the whole run, divided by the messages received.
printf '%-28s %-12s %14s %-6s %12s\n' scenario target primary unit cpu-us/msg
for sc in $SCENARIOS; do
	for target in standalone same-node cross-node; do
		case $target in
		standalone) args=(-h "$S"); procs=($pidS) ;;
		same-node) args=(-h "$A"); procs=($pidA $pidB) ;;
		cross-node) args=(-h "$A" -sub-h "$B"); procs=($pidA $pidB) ;;
		esac
		f="$OUT/$sc-$target.json"
		before=$(cpu "${procs[@]}")
		"$work/skybridge-bench" scenario -w 1s -d "$WINDOW" "${args[@]}" -quiet -o "$f" "$sc" || true
		used=$(( $(cpu "${procs[@]}") - before ))
		per=$(jq -r --argjson us "$used" 'if (.received // 0) > 0 then ($us / .received * 100 | floor / 100) else "-" end' "$f")
		printf '%-28s %-12s %14s %-6s %12s %s\n' "$sc" "$target" "$(jq -r '.primary // "-"' "$f")" "$(jq -r '.unit // ""' "$f")" "$per" \
			"$(jq -r 'if .ok then "" else "FAILED: " + (.error // "") end' "$f")"
	done
done
# Memory per idle connection, standalone and on a cluster node.
for target in standalone cluster-node; do
	case $target in
	standalone) h=$S; pid=$pidS ;;
	cluster-node) h=$A; pid=$pidA ;;
	esac
	f="$OUT/idle-$target.json"
	"$work/skybridge-bench" scenario -h "$h" -pid "$pid" -quiet -o "$f" "idle-${IDLE:-5000}" || true
	printf '%-28s %-12s %14s %s\n' "idle-${IDLE:-5000}" "$target" "$(jq -r '.primary // "-"' "$f")" "$(jq -r '.unit // ""' "$f")"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "results: $OUT"
