package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/injection"
)

// The manager's readiness check proves that its webhook server serves; it
// cannot prove that the API server reaches it. Between the two the pod must
// turn Ready, its address enter the webhook Service's endpoints, and the API
// server (or kube-proxy, for the Service's ClusterIP) learn of it. Until
// then a pod created for a pool fails ("failed calling webhook"). The
// chart's post-install hook runs `manager --wait-for-webhook` to wait for
// that end to end, so that `helm install` returns only once a governed pod
// can be created.

// checkPoolName is the pool that the probe pod names: one that should not
// exist, so that the injector refuses the pod, which proves it was called.
const checkPoolName = "softreload-webhook-check"

// callsInARow is how many calls in a row, a second apart, must reach the
// webhook: behind a load balancer, each API server must have learnt of the
// endpoint, not just one.
const callsInARow = 3

// waitForWebhook returns once the API server calls the injection webhook
// callsInARow times in a row, or fails with its last answer after timeout.
func waitForWebhook(ctx context.Context, c client.Client, namespace, serviceAccount string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	calls := 0
	for {
		err := webhookCalled(ctx, c, namespace, serviceAccount)
		if err == nil {
			calls++
		} else {
			calls = 0
			klog.InfoS("Waiting for the API server to call the injection webhook", "answer", err.Error())
		}
		if calls >= callsInARow {
			klog.InfoS("The API server calls the injection webhook", "webhook", injection.WebhookName)
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				return fmt.Errorf("the API server called webhook %s only %d times in a row within %s", injection.WebhookName, calls, timeout)
			}
			return fmt.Errorf("the API server did not call webhook %s within %s; its last answer: %w", injection.WebhookName, timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the API server to call webhook %s: %w", injection.WebhookName, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// webhookCalled asks the API server to create, as a dry run, a pod labelled
// for a pool; nil when the injector answered. It does, for a pool that does
// not exist, by refusing the pod with a message that names the label; for a
// pool that does exist, by injecting the agent. Any other answer (a failure
// to call the webhook above all, or a pod admitted untouched because
// failurePolicy Ignore skipped an unreachable webhook) means not yet.
func webhookCalled(ctx context.Context, c client.Client, namespace, serviceAccount string) error {
	pod := probePod(namespace, serviceAccount)
	err := c.Create(ctx, pod, client.DryRunAll)
	switch {
	case err == nil && slices.ContainsFunc(pod.Spec.InitContainers, func(ic corev1.Container) bool { return ic.Name == injection.InstallContainer }):
		return nil
	case err == nil:
		return errors.New("the API server admitted the probe pod without the injector's changes")
	case strings.Contains(err.Error(), fmt.Sprintf("admission webhook %q denied the request", injection.WebhookName)):
		return nil
	default:
		return err
	}
}

// probePod is the pod whose dry-run creation checks the webhook. It runs as
// serviceAccount, which must exist (the ServiceAccount admission plugin
// answers before the webhooks).
func probePod(namespace, serviceAccount string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: checkPoolName, Namespace: namespace,
			Labels: map[string]string{workersv1alpha1.PoolLabel: checkPoolName},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName:           serviceAccount,
			AutomountServiceAccountToken: ptr.To(false),
			RestartPolicy:                corev1.RestartPolicyNever,
			Containers:                   []corev1.Container{{Name: "probe", Image: "softreload.invalid/probe"}},
		},
	}
}
