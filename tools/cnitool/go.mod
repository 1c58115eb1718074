// Module cnitool builds cnitool (github.com/containernetworking/cni/cnitool)
// from the Go module proxy, for provisio-cni's end-to-end test in a network
// namespace. See hack/cnitool.
module provisio.dev/tools/cnitool

go 1.26.0

require github.com/containernetworking/cni v1.3.0
