//go:build tools

// Package tools pins cnitool in go.mod; hack/cnitool builds it.
package tools

import _ "github.com/containernetworking/cni/cnitool"
