// Command cri-clean stops and removes every pod sandbox (and so every
// container) of a CRI runtime, through the CRI API as crictl rmp -af does:
// the runtime runs the CNI DEL of each sandbox and removes its network
// namespace, so nothing of the pods (veths, netns, IPAM leases) outlives
// kube-local's real node. hack/kube-local down runs it after stopping the
// kubelet and before stopping containerd.
//
//	cri-clean --endpoint unix:///path/to/containerd.sock
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "CRI endpoint, unix:///path")
	timeout := flag.Duration("timeout", 60*time.Second, "overall timeout")
	flag.Parse()
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "cri-clean: --endpoint is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-clean: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-clean: list pod sandboxes: %v\n", err)
		os.Exit(1)
	}
	failed := 0
	for _, s := range list.Items {
		name := s.Id
		if s.Metadata != nil {
			name = s.Metadata.Namespace + "/" + s.Metadata.Name
		}
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-clean: stop %s: %v\n", name, err)
			failed++
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-clean: remove %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Printf("removed pod sandbox %s\n", name)
	}
	if failed > 0 {
		os.Exit(1)
	}
}
