//go:build tools

// Package tools keeps etcd's main package (go.etcd.io/etcd/server/v3, which build.sh
// compiles into the etcd binary) in go.mod and go.sum across `go mod tidy`.
package tools

import _ "go.etcd.io/etcd/server/v3"
