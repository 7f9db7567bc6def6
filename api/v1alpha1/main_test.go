package v1alpha1_test

import (
	"flag"
	"os"
	"testing"
)

// controlPlaneTests are the tests that start a control plane: go test
// -short leaves them out, and the pure tests answer in seconds.
const controlPlaneTests = "^TestCRD$"

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		if err := flag.Set("test.skip", controlPlaneTests); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
