// Package loopback gives tests addresses on 127.0.0.1, the only address
// they use.
package loopback

import (
	"net"
	"testing"
)

// FreePort returns a port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
