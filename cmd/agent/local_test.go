//go:build softreload_local

package main

import (
	"strings"
	"testing"

	"github.com/softreload/softreload/api/v1alpha1"
)

// The local mode's agent moves the pool's tcp addresses to its own host
// and ports, and leaves unix sockets alone (go test -tags softreload_local).
func TestLocalRebind(t *testing.T) {
	t.Setenv("SOFTRELOAD_LISTEN_HOST", "127.0.0.1")
	t.Setenv("SOFTRELOAD_PORT_OFFSET", "100")
	rebind, err := rebindFromEnv()
	if err != nil || rebind == nil {
		t.Fatalf("rebindFromEnv() = %v, %v; want a rebind", rebind != nil, err)
	}
	for in, want := range map[v1alpha1.ListenAddress]v1alpha1.ListenAddress{
		"tcp://:8080":           "tcp://127.0.0.1:8180",
		"tcp://0.0.0.0:8080":    "tcp://127.0.0.1:8180",
		"unix:///run/app.sock":  "unix:///run/app.sock",
		"tcp://[::1]:9000":      "tcp://127.0.0.1:9100",
		"tcp://127.0.0.1:65435": "tcp://127.0.0.1:65535",
	} {
		if got, err := rebind(in); err != nil || got != want {
			t.Errorf("rebind(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := rebind("tcp://:65436"); err == nil || !strings.Contains(err.Error(), "above 65535") {
		t.Errorf(`rebind("tcp://:65436") = %q, %v; want an error saying the port is above 65535`, got, err)
	}
}

// Without the variables nothing moves; a bad offset is refused, naming it.
func TestLocalRebindFromEnv(t *testing.T) {
	t.Setenv("SOFTRELOAD_LISTEN_HOST", "")
	t.Setenv("SOFTRELOAD_PORT_OFFSET", "")
	if rebind, err := rebindFromEnv(); rebind != nil || err != nil {
		t.Errorf("rebindFromEnv() with neither variable = %v, %v; want no rebind", rebind != nil, err)
	}
	t.Setenv("SOFTRELOAD_PORT_OFFSET", "lots")
	if _, err := rebindFromEnv(); err == nil || !strings.Contains(err.Error(), `SOFTRELOAD_PORT_OFFSET="lots"`) {
		t.Errorf("rebindFromEnv() with a bad offset = %v; want a refusal naming it", err)
	}
}
