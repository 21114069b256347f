//go:build tools

// Package tools keeps the command packages build.sh compiles in go.mod and go.sum:
// without an import, `go mod tidy` would drop k8s.io/kubernetes as unused.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
