// Package deploy checks bodystream's deployment files: the Dockerfile and its build
// context, and the Kubernetes manifests under kubernetes/, parsed with the platforms'
// own API types and rendered with kustomize. It is a module of its own so that those
// large dependencies stay out of bodystream's go.mod.
package deploy

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
