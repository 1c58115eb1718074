// Command etcd is the etcd server at the version k8s.io/kubernetes itself
// depends on, so kube-apiserver talks to the etcd it was released with.
//
// Besides the server (every argument list etcd itself accepts), it has two
// helper modes for hack/kube-local, chosen by the first argument:
//
//	etcd compact --endpoints http://127.0.0.1:PORT
//	    Compact etcd to its current revision, the way kube-apiserver's own
//	    compactor does: record the revision under compact_rev_key (the API
//	    server watches that key and then compacts its watch caches, so a
//	    watch from an older resourceVersion gets 410 Gone), then compact.
//	    Prints the compacted revision.
//
//	etcd free-ports N
//	    Print N distinct TCP ports that are free on 127.0.0.1 right now, one
//	    a line. They are taken below the kernel's ephemeral range when there
//	    is room, so outgoing connections do not grab them before use.
//
// Neither word is an etcd flag or subcommand, so the server is unaffected.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

// compactRevKey is where kube-apiserver (k8s.io/apiserver/pkg/storage/etcd3)
// keeps the last compacted revision; it is outside the /registry prefix.
const compactRevKey = "compact_rev_key"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "compact":
			os.Exit(runCompact(os.Args[2:]))
		case "free-ports":
			os.Exit(runFreePorts(os.Args[2:]))
		}
	}
	etcdmain.Main(os.Args)
}

func runCompact(args []string) int {
	fs := flag.NewFlagSet("etcd compact", flag.ContinueOnError)
	endpoints := fs.String("endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	timeout := fs.Duration("timeout", 30*time.Second, "overall timeout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: 5 * time.Second,
		Context:     ctx,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd compact: connect: %v\n", err)
		return 1
	}
	defer func() { _ = cli.Close() }()

	rev, err := compactToCurrent(ctx, cli)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd compact: %v\n", err)
		return 1
	}
	fmt.Println(rev)
	return 0
}

// compactToCurrent records the current revision under compactRevKey and
// compacts the keyspace to it (physically, so it is done when this returns).
func compactToCurrent(ctx context.Context, cli *clientv3.Client) (int64, error) {
	resp, err := cli.Get(ctx, compactRevKey)
	if err != nil {
		return 0, fmt.Errorf("read current revision: %w", err)
	}
	rev := resp.Header.Revision
	// A plain put bumps the key's version: the API server's compactor then
	// fails its next compare-and-swap, adopts the new version and carries on,
	// exactly as when another API server compacted.
	if _, err := cli.Put(ctx, compactRevKey, strconv.FormatInt(rev, 10)); err != nil {
		return 0, fmt.Errorf("record compact revision: %w", err)
	}
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return 0, fmt.Errorf("compact to revision %d: %w", rev, err)
	}
	return rev, nil
}

func runFreePorts(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: etcd free-ports N")
		return 2
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > 100 {
		fmt.Fprintln(os.Stderr, "etcd free-ports: N must be 1..100")
		return 2
	}
	ports, err := freePorts(n)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd free-ports: %v\n", err)
		return 1
	}
	for _, p := range ports {
		fmt.Println(p)
	}
	return 0
}

// freePorts holds every listener it opens until all n are found, so the
// ports are distinct, then closes them. Candidates are drawn at random from
// [10000, start of the ephemeral range); if that fails, the kernel picks.
func freePorts(n int) ([]int, error) {
	lo, hi := 10000, ephemeralStart()
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n && tries < 1000; tries++ {
		port := 0
		if hi-lo > 1000 && tries < 900 {
			port = lo + rand.IntN(hi-lo)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	if len(ports) < n {
		return nil, errors.New("could not find enough free ports on 127.0.0.1")
	}
	return ports, nil
}

// ephemeralStart reads the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil || v < 1024 {
		return 32768
	}
	return v
}
