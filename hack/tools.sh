#!/usr/bin/env bash
# Builds the pinned tools and the test control plane from the Go module proxy
# and caches them outside the repo, keyed by version, so a second run costs
# nothing.
#
#   hack/tools.sh <tool>...   build what is missing, print nothing else
#   hack/tools.sh --path T    print the path of tool T (building it first)
#   hack/tools.sh --assets    print the envtest asset directory
#                             (kube-apiserver, etcd, kubectl), building them
#
# Tools: kube-apiserver etcd kubectl controller-gen golangci-lint helm
#        kubelet kube-controller-manager kube-scheduler kube-proxy
#        (the last four for the real-node test, make test-node)
#
# SOFTRELOAD_TOOLS_DIR moves the cache (default: ~/.cache/softreload/tools).
# KUBEBUILDER_ASSETS, when set to a directory holding kube-apiserver, etcd and
# kubectl, is used as it is and nothing is built.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${SOFTRELOAD_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/softreload/tools}
mkdir -p "$cache"

say() { echo "hack/tools.sh: $*" >&2; }

# dir_of TOOL: the versioned directory the tool lives in.
dir_of() {
  case $1 in
    kube-apiserver|kubectl|kubelet|kube-controller-manager|kube-scheduler|kube-proxy)
      echo "$cache/kube-$KUBE_VERSION" ;;
    etcd) echo "$cache/etcd-$ETCD_VERSION" ;;
    controller-gen) echo "$cache/controller-gen-$CONTROLLER_TOOLS_VERSION" ;;
    golangci-lint) echo "$cache/golangci-lint-$GOLANGCI_LINT_VERSION" ;;
    helm) echo "$cache/helm-$HELM_VERSION" ;;
    *) echo "hack/tools.sh: unknown tool \"$1\"" >&2; return 2 ;;
  esac
}

# go_install DIR PKG@VERSION [LDFLAGS]: installs a module's command into DIR.
go_install() {
  local dir=$1 pkg=$2 ldflags=${3:-}
  mkdir -p "$dir"
  GOBIN="$dir" GOFLAGS=-mod=mod go install -ldflags="$ldflags" "$pkg"
}

# kube_module: the wrapper module that builds Kubernetes commands from
# k8s.io/kubernetes, in $work. Its go.mod points the k8s.io staging modules
# at ./staging, which a dependency cannot use, so the wrapper requires
# k8s.io/kubernetes and replaces every staging module it names with that
# module's release of the same minor. Every command is a main package of
# its own under $work; they share the Go build cache.
kube_module() {
  local mod
  work="$cache/src/kube-$KUBE_VERSION"
  mkdir -p "$work"
  mod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module softreload.dev/hack/kube"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$mod" | awk -v v="$KUBE_STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } > "$work/go.mod"
}

# kube_build CMD...: builds the commands (directories of $work) into the
# versioned directory, with the version the release binaries carry.
kube_build() {
  local out minor ld=""
  out=$(dir_of kube-apiserver)
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$work" && go mod tidy && mkdir -p "$out" &&
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $ld" -o "$out/" "${@/#/./}")
}

# kube_main CMD [IMPORT]: the main of a node command, which runs the
# cobra command of k8s.io/kubernetes/cmd/CMD/app (app.$constructor).
kube_main() {
  local cmd=$1 constructor=$2 extra=${3:-}
  mkdir -p "$work/$cmd"
  cat > "$work/$cmd/main.go" <<GO
package main

import (
$extra	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/$cmd/app"
)

func main() {
	os.Exit(cli.Run(app.$constructor))
}
GO
}

# build_kube: kube-apiserver and kubectl.
build_kube() {
  local work
  kube_module
  mkdir -p "$work/kube-apiserver" "$work/kubectl"
  say "building kube-apiserver and kubectl $KUBE_VERSION from source (several minutes on 2 cores, once)"
  cat > "$work/kube-apiserver/main.go" <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
GO
  cat > "$work/kubectl/main.go" <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) //nolint:errcheck
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
GO
  kube_build kube-apiserver kubectl
}

# build_kube_node: the kubelet, kube-controller-manager, kube-scheduler and
# kube-proxy, for the real-node test: four small mains in the module of
# kube-apiserver, one go build (a few minutes after kube-apiserver's).
build_kube_node() {
  local work
  kube_module
  say "building kubelet, kube-controller-manager, kube-scheduler and kube-proxy $KUBE_VERSION from source (a few minutes on 2 cores, once)"
  kube_main kubelet 'NewKubeletCommand(context.Background())' $'\t"context"\n'
  kube_main kube-controller-manager 'NewControllerManagerCommand()' $'\t_ "time/tzdata" // CronJob time zones\n'
  kube_main kube-scheduler 'NewSchedulerCommand()'
  kube_main kube-proxy 'NewProxyCommand()'
  kube_build kubelet kube-controller-manager kube-scheduler kube-proxy
}

# build_etcd: the etcd server module has no installable main of its own, so a
# tiny main calls etcdmain.Main.
build_etcd() {
  local out work
  out=$(dir_of etcd)
  work="$cache/src/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  say "building etcd $ETCD_VERSION from source (a minute or two, once)"
  cat > "$work/go.mod" <<GOMOD
module softreload.dev/hack/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat > "$work/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$work" && go mod tidy && mkdir -p "$out" &&
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$out/etcd" .)
}

build() {
  local tool=$1 dir
  dir=$(dir_of "$tool")
  [ -x "$dir/$tool" ] && return 0
  case $tool in
    kube-apiserver|kubectl) build_kube ;;
    kubelet|kube-controller-manager|kube-scheduler|kube-proxy) build_kube_node ;;
    etcd) build_etcd ;;
    controller-gen)
      say "building controller-gen $CONTROLLER_TOOLS_VERSION"
      go_install "$dir" "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION" ;;
    golangci-lint)
      say "building golangci-lint $GOLANGCI_LINT_VERSION (a few minutes, once)"
      go_install "$dir" "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION" ;;
    helm)
      say "building helm $HELM_VERSION"
      go_install "$dir" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
        "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" ;;
  esac
  [ -x "$dir/$tool" ] || { say "building $tool left no binary in $dir"; exit 1; }
}

assets() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    for t in kube-apiserver etcd kubectl; do
      [ -x "$KUBEBUILDER_ASSETS/$t" ] || { say "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $t"; exit 1; }
    done
    echo "$KUBEBUILDER_ASSETS"
    return
  fi
  build kube-apiserver
  build etcd
  build kubectl
  # envtest wants the three binaries in one directory.
  local dir="$cache/assets-$KUBE_VERSION-etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  ln -sf "$(dir_of kube-apiserver)/kube-apiserver" "$dir/kube-apiserver"
  ln -sf "$(dir_of kubectl)/kubectl" "$dir/kubectl"
  ln -sf "$(dir_of etcd)/etcd" "$dir/etcd"
  echo "$dir"
}

case ${1:-} in
  --path) build "$2"; echo "$(dir_of "$2")/$2" ;;
  --assets) assets ;;
  ""|-h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) for t in "$@"; do build "$t"; done ;;
esac
