//go:build e2e

package e2e

import (
	"testing"

	testsuite "github.com/softreload/softreload/internal/testing/suite"
)

func TestE2E(t *testing.T) { testsuite.Run(t, "test/e2e") }
