package chart

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/softreload/softreload/internal/testing/controlplane"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// env is the suite's control plane, with the release's namespace; nil with
// go test -short.
var env *envtest.Env

func TestChart(t *testing.T) { suite.Run(t, "test/chart") }

var _ = BeforeSuite(func() {
	env = controlplane.Start(envtest.Options{})
	if env == nil {
		return
	}
	// Namespaced objects need their namespace to exist even in a dry run.
	Expect(env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())
})

var _ = AfterSuite(func() { controlplane.Stop(env) })
