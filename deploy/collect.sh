#!/usr/bin/env bash
# Collect the report.json of every node that bench-daemonset.yaml or bench-job.yaml ran
# `bulkhead bench` on, and merge them with `bulkhead report merge`.
#
#   deploy/collect.sh daemonset|job OUT
#
# Waits for the bench to finish on every node (the DaemonSet rolled out: each pod's init
# container done; the Job complete), then writes OUT/nodes/<node>/report.json from each
# pod's log (what follows its `--- report.json ---` line) and OUT/merged/ (report.json,
# report.md, report.html; one node: its report rendered alone). KUBECTL and BULKHEAD name
# the programs (default: from PATH); NAMESPACE the namespace (default bulkhead-bench);
# TIMEOUT the wait (default 60m).
set -euo pipefail

usage() {
    echo "usage: $0 daemonset|job OUT" >&2
    exit 2
}
(($# == 2)) || usage
mode=$1
out=$2
kubectl=${KUBECTL:-kubectl}
bulkhead=${BULKHEAD:-bulkhead}
ns=${NAMESPACE:-bulkhead-bench}
timeout=${TIMEOUT:-60m}

case "$mode" in
daemonset) "$kubectl" -n "$ns" rollout status daemonset/bulkhead-bench --timeout="$timeout" ;;
job) "$kubectl" -n "$ns" wait --for=condition=complete job/bulkhead-bench --timeout="$timeout" ;;
*) usage ;;
esac

# "pod node" per line, for the bench's pods (both manifests label them alike).
pods=$("$kubectl" -n "$ns" get pods -l app.kubernetes.io/name=bulkhead-bench \
    -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName}{"\n"}{end}')
[[ -n "$pods" ]] || {
    echo "$0: no bench pods in namespace $ns" >&2
    exit 1
}

reports=()
while read -r pod node; do
    [[ -n "$pod" ]] || continue
    dir="$out/nodes/$node"
    mkdir -p "$dir"
    "$kubectl" -n "$ns" logs "$pod" -c bench |
        sed -n '/^--- report.json ---$/,$p' | tail -n +2 >"$dir/report.json"
    if [[ ! -s "$dir/report.json" ]]; then
        echo "$0: pod $pod on node $node logged no report.json" >&2
        exit 1
    fi
    echo "$node: $dir/report.json"
    reports+=("$dir/report.json")
done <<<"$pods"

if ((${#reports[@]} > 1)); then
    "$bulkhead" report merge "${reports[@]}" -o "$out/merged"
else
    mkdir -p "$out/merged"
    cp "${reports[0]}" "$out/merged/report.json"
    "$bulkhead" report "$out/merged"
fi
