#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and etcd for the end-to-end
# tests from the Go modules pinned in tests/e2e/cluster/go.mod and tests/e2e/etcd/go.mod, into
#   <repo>/.cache/k8s/<kubernetes version>-<etcd version>/bin/
# and kwok (sigs.k8s.io/kwok, pinned by KWOK_VERSION below, built from its own go.mod and
# checked against the Go checksum database, as `go install module@version` does) into
#   <repo>/.cache/k8s/kwok-<kwok version>/bin/kwok
# Idempotent: a binary that already exists is not rebuilt, so a second run is a no-op.
# Non-interactive (CI runs it as root without a terminal). Go's module and build caches stay
# at their defaults ($HOME/go/pkg/mod, $HOME/.cache/go-build), so CI can cache those.
#
#   build.sh                 build what is missing, print the time taken and the bin dir
#   build.sh --print-bin-dir print the bin dir and exit (tests/e2e/kube.py uses this, so the
#                            version-to-path rule lives in this file only)
#   build.sh --print-kwok    print the kwok binary's path and exit (tests/e2e/kwok_cluster.py)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../../.." && pwd)"
etcd_module_dir="$(cd "$here/../etcd" && pwd)"

# The versions are read from the go.mod files, so bumping a pin there moves the cache key too.
module_version() { # <go.mod> <module path>
    awk -v mod="$2" '($1 == "require" && $2 == mod) { print $3 } ($1 == mod) { print $2 }' "$1" |
        head -n 1
}
k8s_version="$(module_version "$here/go.mod" k8s.io/kubernetes)"
etcd_version="$(module_version "$etcd_module_dir/go.mod" go.etcd.io/etcd/server/v3)"
if [[ -z "$k8s_version" || -z "$etcd_version" ]]; then
    echo "build.sh: cannot read the pinned versions from the go.mod files" >&2
    exit 1
fi
bin_dir="$repo_root/.cache/k8s/${k8s_version}-${etcd_version}/bin"
# kwok simulates nodes and pod lifecycles (no kubelet); its own module pins its client-go.
KWOK_VERSION=v0.8.0
kwok_bin="$repo_root/.cache/k8s/kwok-${KWOK_VERSION}/bin/kwok"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
    echo "$bin_dir"
    exit 0
fi
if [[ "${1:-}" == "--print-kwok" ]]; then
    echo "$kwok_bin"
    exit 0
fi

start=$(date +%s)
mkdir -p "$bin_dir" "$(dirname "$kwok_bin")"
# pytest-xdist workers or two shells may call this at once: one builds, the others wait.
exec 9>"$bin_dir/.build.lock"
flock 9

# /version of the API server then reports the pinned release instead of v0.0.0-master.
k8s_minor="${k8s_version#v1.}"
k8s_minor="${k8s_minor%%.*}"
version_pkg=k8s.io/component-base/version
k8s_ldflags="-s -w -X $version_pkg.gitVersion=$k8s_version -X $version_pkg.gitMajor=1"
k8s_ldflags+=" -X $version_pkg.gitMinor=$k8s_minor -X $version_pkg.gitTreeState=clean"

build_one() { # <module dir> <package> <binary name> <ldflags>
    local target="$bin_dir/$3"
    if [[ -x "$target" ]]; then
        echo "build.sh: $3 already built"
        return
    fi
    echo "build.sh: building $3 from $2"
    local t0
    t0=$(date +%s)
    # Build to a temporary name and rename, so an interrupted build never leaves a
    # half-written binary that the next run would take as done.
    # -buildvcs=false: the repository's git state is not the binaries' version (and git
    # may be missing or refuse a checkout owned by another user in CI).
    (cd "$1" && go build -trimpath -buildvcs=false -ldflags "$4" -o "$target.tmp" "$2")
    mv -f "$target.tmp" "$target"
    echo "build.sh: built $3 in $(($(date +%s) - t0)) s"
}

build_one "$etcd_module_dir" go.etcd.io/etcd/server/v3 etcd "-s -w"
build_one "$here" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$k8s_ldflags"
build_one "$here" k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager \
    "$k8s_ldflags"
# Shares almost every package with the two above: after them it is mostly a link.
build_one "$here" k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler "$k8s_ldflags"

if [[ -x "$kwok_bin" ]]; then
    echo "build.sh: kwok already built"
else
    echo "build.sh: building kwok $KWOK_VERSION"
    t0=$(date +%s)
    kwok_tmp="$(dirname "$kwok_bin")/.gobin.tmp"
    rm -rf "$kwok_tmp"
    mkdir -p "$kwok_tmp"
    # `go install module@version` builds with the module's own go.mod (no replace lines in
    # kwok's), outside any workspace, so this repository's modules cannot interfere.
    (cd "$here" && GOBIN="$kwok_tmp" GOWORK=off go install -trimpath -buildvcs=false \
        -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
    mv -f "$kwok_tmp/kwok" "$kwok_bin"
    rm -rf "$kwok_tmp"
    echo "build.sh: built kwok in $(($(date +%s) - t0)) s"
fi

echo "build.sh: Kubernetes $k8s_version, etcd $etcd_version in $bin_dir;" \
    "kwok $KWOK_VERSION in $(dirname "$kwok_bin")" \
    "($(($(date +%s) - start)) s)"
