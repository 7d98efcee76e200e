// Package knative holds the test that runs the chart's Knative Service
// through Knative Serving's own defaulting and validation code, as its
// admission webhooks do on `helm install`.
//
// It is a module of its own because knative.dev/serving drags in
// knative.dev/pkg, knative.dev/networking and a set of k8s.io libraries
// the service itself never needs: keeping them here leaves the main
// module's dependency graph (and `func build`) as it is.
package knative
