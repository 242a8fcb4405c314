package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	istionetworkingv1 "istio.io/api/networking/v1"
	istionetworking "istio.io/api/networking/v1alpha3"
	istiosecurityv1 "istio.io/api/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// object is one parsed manifest: its identity and its value, a k8s.io or Gateway API
// Go type, or an istioObject.
type object struct {
	apiVersion, kind, namespace, name string
	value                             any
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s", o.kind, o.namespace, o.name)
}

// istioObject is an Istio resource: Kubernetes metadata and the spec as Istio's own
// protobuf message, which is what Istio validates it against.
type istioObject struct {
	Metadata metav1.ObjectMeta
	Spec     proto.Message
}

// kinds maps apiVersion/kind to a new value of its Go type.
var kinds = map[string]func() any{
	"v1/Namespace":                                        func() any { return &corev1.Namespace{} },
	"v1/Service":                                          func() any { return &corev1.Service{} },
	"v1/ConfigMap":                                        func() any { return &corev1.ConfigMap{} },
	"apps/v1/Deployment":                                  func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":                       func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":              func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":                  func() any { return &networkingv1.NetworkPolicy{} },
	"gateway.networking.k8s.io/v1/Gateway":                func() any { return &gwapiv1.Gateway{} },
	"gateway.networking.k8s.io/v1/HTTPRoute":              func() any { return &gwapiv1.HTTPRoute{} },
	"gateway.envoyproxy.io/v1alpha1/EnvoyExtensionPolicy": func() any { return &egv1a1.EnvoyExtensionPolicy{} },
}

// istioKinds maps apiVersion/kind to a new spec message.
var istioKinds = map[string]func() proto.Message{
	"networking.istio.io/v1alpha3/EnvoyFilter": func() proto.Message { return &istionetworking.EnvoyFilter{} },
	"networking.istio.io/v1/Gateway":           func() proto.Message { return &istionetworkingv1.Gateway{} },
	"networking.istio.io/v1/VirtualService":    func() proto.Message { return &istionetworkingv1.VirtualService{} },
	"security.istio.io/v1/PeerAuthentication":  func() proto.Message { return &istiosecurityv1.PeerAuthentication{} },
}

// parseManifest decodes one YAML document strictly: a field its Go type lacks is an
// error, as the API server's strict field validation would make it.
func parseManifest(doc []byte) (object, error) {
	text, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return object{}, err
	}
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(text, &head); err != nil {
		return object{}, err
	}
	o := object{apiVersion: head.APIVersion, kind: head.Kind, namespace: head.Metadata.Namespace, name: head.Metadata.Name}
	key := head.APIVersion + "/" + head.Kind
	if newValue, ok := kinds[key]; ok {
		v := newValue()
		if err := strictJSON(text, v); err != nil {
			return o, fmt.Errorf("%s: %w", o, err)
		}
		o.value = v
		return o, nil
	}
	newSpec, ok := istioKinds[key]
	if !ok {
		return o, fmt.Errorf("%s: no Go type known for %s", o, key)
	}
	var raw struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
		Spec       json.RawMessage   `json:"spec"`
	}
	if err := strictJSON(text, &raw); err != nil {
		return o, fmt.Errorf("%s: %w", o, err)
	}
	spec := newSpec()
	if err := protojson.Unmarshal(raw.Spec, spec); err != nil { // protojson refuses unknown fields
		return o, fmt.Errorf("%s: spec: %w", o, err)
	}
	o.value = &istioObject{Metadata: raw.Metadata, Spec: spec}
	return o, nil
}

func strictJSON(text []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// parseManifests parses every document of a multi-document YAML file.
func parseManifests(text []byte) ([]object, error) {
	var objs []object
	for doc := range strings.SplitSeq(string(text), "\n---\n") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		o, err := parseManifest([]byte(doc))
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestManifestsParse: every manifest file under kubernetes/ parses strictly with its
// platform's API types, and kustomize's own files are known to kustomize.
func TestManifestsParse(t *testing.T) {
	dir := filepath.Join(moduleRoot(t), "deploy", "kubernetes")
	count := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
			return err
		}
		switch filepath.Base(path) {
		case "kustomization.yaml", "bodystream.yaml": // rendered and checked by TestKustomize
			return nil
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		objs, err := parseManifests(text)
		if err != nil {
			t.Errorf("%s: %v", path, err)
		}
		count += len(objs)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count < 10 {
		t.Errorf("parsed %d manifests under %s", count, dir)
	}
}

// render builds a kustomization with the kustomize Go API, as `kubectl apply -k` does,
// and parses what comes out.
func render(t *testing.T, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []object
	for _, r := range resources.Resources() {
		text, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		o, err := parseManifest(text)
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		objs = append(objs, o)
	}
	return objs
}
