// Package k8s holds no code: it is the test-only module that checks the
// Kubernetes manifests of this directory against the Kubernetes API types
// (go test in deploy/k8s), so that picluster's own go.mod needs none of
// k8s.io.
package k8s
