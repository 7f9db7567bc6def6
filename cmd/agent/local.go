//go:build softreload_local

// The agent of softreload's local mode (internal/local builds it with
// -tags softreload_local): its pods share one machine, so each agent binds
// the pool's tcp ports at an offset and on a host of its own, as pods with
// their own IPs would not need to.

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/softreload/softreload/agent/sockets"
	"github.com/softreload/softreload/api/v1alpha1"
)

func init() { localRebind = rebindFromEnv }

// rebindFromEnv reads SOFTRELOAD_LISTEN_HOST, which replaces the host of
// every tcp listen address, SOFTRELOAD_PORT_OFFSET, which is added to
// every non-zero tcp port, and SOFTRELOAD_SOCKET_ROOT, a directory under
// which every unix socket's path goes (unix:///tmp/a.sock binds
// ROOT/tmp/a.sock): pods on one machine share its file system too. The
// workers inherit the three variables, so a gateway can dial an address of
// its pool as the agent moved it (sdk/python's resolve_address does).
func rebindFromEnv() (func(v1alpha1.ListenAddress) (v1alpha1.ListenAddress, error), error) {
	offset, err := envInt("SOFTRELOAD_PORT_OFFSET")
	if err != nil {
		return nil, err
	}
	host, root := os.Getenv("SOFTRELOAD_LISTEN_HOST"), os.Getenv("SOFTRELOAD_SOCKET_ROOT")
	if root != "" && !filepath.IsAbs(root) {
		return nil, fmt.Errorf("SOFTRELOAD_SOCKET_ROOT=%q: want an absolute directory", root)
	}
	if host == "" && offset == 0 && root == "" {
		return nil, nil
	}
	return func(a v1alpha1.ListenAddress) (v1alpha1.ListenAddress, error) {
		return moveAddress(a, host, offset, root)
	}, nil
}

func envInt(name string) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q: want a port offset, a whole number from 0", name, v)
	}
	return n, nil
}

// moveAddress puts a tcp address on host (if set) and adds offset to its
// port (if not 0); it puts a unix socket's path under root (if set),
// making the directory.
func moveAddress(a v1alpha1.ListenAddress, host string, offset int, root string) (v1alpha1.ListenAddress, error) {
	addr, err := sockets.Parse(a)
	if err != nil {
		return "", err
	}
	if addr.Network == "unix" {
		if root == "" {
			return a, nil
		}
		path := filepath.Join(root, addr.Addr)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", fmt.Errorf("listen address %q: %w", a, err)
		}
		return v1alpha1.ListenAddress("unix://" + path), nil
	}
	h, p, err := net.SplitHostPort(addr.Addr)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", a, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", fmt.Errorf("listen address %q: port %q: %w", a, p, err)
	}
	if port != 0 {
		port += offset
	}
	if port > 65535 {
		return "", fmt.Errorf("listen address %q: port %d plus the port offset %d is above 65535", a, port-offset, offset)
	}
	if host != "" {
		h = host
	}
	return v1alpha1.ListenAddress(addr.Network + "://" + net.JoinHostPort(h, strconv.Itoa(port))), nil
}
