// containerd's own snapshotter conformance suite (snapshots/testsuite,
// SnapshotterSuite from Debian's golang-github-containerd-containerd-dev)
// run against a blockstore snapshotter through containerd's proxy client,
// exactly as containerd itself talks to a proxy plugin.
//
// Built offline in GOPATH mode; tests/test_containerd_conformance.py copies
// this file to GOPATH/src/blockstoreconformance/ and runs
//
//	GO111MODULE=off GOPATH=<tmp>:/usr/share/gocode GOPROXY=off GOFLAGS=-mod=mod \
//	BLOCKSTORE_SNAPSHOTTER_SOCK=<socket> go test -v blockstoreconformance
//
// with `blockstore snapshotter serve --address <socket>` running.
package blockstoreconformance

import (
	"context"
	"os"
	"testing"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

func TestBlockstoreSnapshotter(t *testing.T) {
	sock := os.Getenv("BLOCKSTORE_SNAPSHOTTER_SOCK")
	if sock == "" {
		t.Fatal("BLOCKSTORE_SNAPSHOTTER_SOCK is not set")
	}
	testsuite.SnapshotterSuite(t, "blockstore", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		conn, err := grpc.Dial("unix:"+sock, grpc.WithInsecure())
		if err != nil {
			return nil, nil, err
		}
		sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "blockstore")
		return sn, conn.Close, nil
	})
}
