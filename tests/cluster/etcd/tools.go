//go:build tools

// Package tools pins etcd's server command (the module root is its main
// package) so that `go mod tidy` keeps its dependencies.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
