#!/usr/bin/env bash
# Load benchmark of `cria serve` (continuous batching): one streaming client alone, then CLIENTS
# streaming clients at once, each sending REQUESTS completions; prints generated tokens per second
# for both and their ratio. Needs curl; the server runs on loopback and is stopped at the end.
#
#   bench/serve-load.sh MODEL.gguf [CLIENTS=8] [REQUESTS=25] [MAX_TOKENS=48] [THREADS=2]
set -euo pipefail
model=${1:?usage: bench/serve-load.sh MODEL.gguf [CLIENTS] [REQUESTS] [MAX_TOKENS] [THREADS]}
clients=${2:-8} requests=${3:-25} max_tokens=${4:-48} threads=${5:-2}
port=${PORT:-18080}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$out"' EXIT

dotnet publish "$root/src/Cria.Cli" -c Release -o "$out/cria" >/dev/null
"$out/cria/cria" serve -m "$model" --port "$port" --parallel "$clients" --queue-size "$clients" -c 256 -t "$threads" 2>"$out/server.log" &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

# One client's REQUESTS streaming completions; prints the tokens it was given.
client() {
  local id=$1 total=0
  for r in $(seq "$requests"); do
    n=$(curl -sN "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
      -d "{\"prompt\": \"Once upon a time\", \"max_tokens\": $max_tokens, \"temperature\": 0.9, \"seed\": $((id * 1000 + r)), \"stream\": true}" \
      | grep -o '"completion_tokens":[0-9]*' | cut -d: -f2)
    total=$((total + n))
  done
  echo "$total"
}

run() { # CLIENTS -> "tokens seconds"
  local n=$1 start end tokens=0 pids=()
  start=$(date +%s.%N)
  for c in $(seq "$n"); do client "$c" >"$out/client-$c" & pids+=($!); done
  wait "${pids[@]}"
  end=$(date +%s.%N)
  for c in $(seq "$n"); do tokens=$((tokens + $(cat "$out/client-$c"))); done
  echo "$tokens $(awk "BEGIN { print $end - $start }")"
}

client 0 >/dev/null # warm-up
read -r t1 s1 < <(run 1)
read -r tn sn < <(run "$clients")
a=$(awk "BEGIN { printf \"%.1f\", $t1 / $s1 }"); b=$(awk "BEGIN { printf \"%.1f\", $tn / $sn }")
echo "1 client:  $t1 tokens in ${s1}s = $a tok/s"
echo "$clients clients: $tn tokens in ${sn}s = $b tok/s aggregate ($(awk "BEGIN { printf \"%.2f\", $b / $a }")x)"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^cria_(decode|request_errors)'
