// blockstore-pull: pull an image with containerd's own unpacker
// (client.Pull with WithPullUnpack), the path CRI (Kubernetes) and other
// containerd clients use.  Unlike `ctr image pull`/`ctr image import`, which
// unpack through Image.Unpack, the unpacker labels each layer's Prepare with
// containerd.io/snapshot.ref = its chain ID, which lets a snapshotter that
// already holds the layer answer ALREADY_EXISTS instead of unpacking it.
//
// Built offline in GOPATH mode by tests/test_containerd_e2e.py:
//
//	blockstore-pull CONTAINERD_SOCK SNAPSHOTTER REF   (plain HTTP registry)
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes/docker"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: blockstore-pull CONTAINERD_SOCK SNAPSHOTTER REF")
		os.Exit(2)
	}
	client, err := containerd.New(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), "default")
	resolver := docker.NewResolver(docker.ResolverOptions{PlainHTTP: true})
	img, err := client.Pull(ctx, os.Args[3], containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(os.Args[2]), containerd.WithResolver(resolver))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(img.Name())
}
