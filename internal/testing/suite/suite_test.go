package suite

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestSuite(t *testing.T) { Run(t, "suite") }

var _ = DescribeTable("the label filter of go test -short",
	func(given, want string) {
		Expect(short(given)).To(Equal(want))
		Expect(Label(ControlPlane).MatchesLabelFilter(want)).To(BeFalse(), "a control-plane spec runs under %q", want)
		Expect(Label(Slow).MatchesLabelFilter(want)).To(BeFalse(), "a slow spec runs under %q", want)
	},
	Entry("with no filter given", "", "!controlplane && !slow"),
	Entry("narrows the filter given", "e2e || chart", "(e2e || chart) && !controlplane && !slow"),
)
