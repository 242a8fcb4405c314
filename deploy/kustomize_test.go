package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	istionetworkingv1 "istio.io/api/networking/v1"
	istionetworking "istio.io/api/networking/v1alpha3"
	istiosecurityv1 "istio.io/api/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/bodystream/bodystream/config"
	"github.com/bodystream/bodystream/pipeline"
	_ "github.com/bodystream/bodystream/stages" // the stage kinds the configurations name
)

// bundle is what one kustomization renders.
type bundle []object

// get returns the object of that kind and name (any namespace if ns is empty).
func get[T any](t *testing.T, b bundle, kind, ns, name string) T {
	t.Helper()
	for _, o := range b {
		if o.kind == kind && o.name == name && (ns == "" || o.namespace == ns) {
			return o.value.(T)
		}
	}
	t.Fatalf("no %s %s/%s among %v", kind, ns, name, b)
	var zero T
	return zero
}

func all[T any](b bundle, kind string) []T {
	var out []T
	for _, o := range b {
		if o.kind == kind {
			out = append(out, o.value.(T))
		}
	}
	return out
}

// deployed is the bodystream Deployment as the checks read it.
type deployed struct {
	deployment *appsv1.Deployment
	container  corev1.Container
	flags      map[string]string
	config     *config.Config
	router     *pipeline.Router
}

// TestKustomize renders the base and each overlay and checks that their pieces fit:
// names, ports, labels, the ConfigMap key and the configuration inside it, memory
// from the budget, and the drain against the grace period.
func TestKustomize(t *testing.T) {
	dir := filepath.Join(moduleRoot(t), "deploy", "kubernetes")
	for _, tc := range []struct {
		name  string
		check func(*testing.T, bundle, deployed)
	}{
		{"base", func(*testing.T, bundle, deployed) {}},
		{"overlays/envoy-gateway", checkEnvoyGateway},
		{"overlays/istio", checkIstio},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bundle(render(t, filepath.Join(dir, tc.name)))
			d := checkBase(t, b)
			tc.check(t, b, d)
		})
	}
}

func checkBase(t *testing.T, b bundle) deployed {
	t.Helper()
	dep := get[*appsv1.Deployment](t, b, "Deployment", "bodystream", "bodystream")
	pod := dep.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("bodystream pod has %d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	d := deployed{deployment: dep, container: c, flags: map[string]string{}}
	for _, arg := range c.Args {
		name, value, ok := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") || !ok {
			t.Fatalf("bodystream arg %q: write flags as -name=value", arg)
		}
		d.flags[name] = value
	}
	selector, err := metav1LabelSelector(dep.Spec.Selector)
	if err != nil || !selector.Matches(labels.Set(pod.Labels)) {
		t.Fatalf("Deployment selector %v does not select its pods %v (%v)", dep.Spec.Selector, pod.Labels, err)
	}

	// Ports: the flags listen where the named container ports say.
	portOf := func(flag string) int32 {
		_, port, _ := strings.Cut(d.flags[flag], ":")
		n, err := strconv.Atoi(port)
		if err != nil {
			t.Fatalf("-%s=%q: no port", flag, d.flags[flag])
		}
		return int32(n)
	}
	named := map[string]int32{}
	for _, p := range c.Ports {
		named[p.Name] = p.ContainerPort
	}
	if named["grpc"] != portOf("listen") || named["admin"] != portOf("admin-listen") {
		t.Errorf("container ports %v, flags -listen=%s -admin-listen=%s", named, d.flags["listen"], d.flags["admin-listen"])
	}

	// Probes: liveness and readiness on the admin port.
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.LivenessProbe, "/healthz"}, {c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "admin" {
			t.Errorf("probe %+v, want GET %s on the admin port", p.probe, p.path)
		}
	}

	// Drain: the grace period outlasts preStop, the drain, and its short delay.
	drain, err := time.ParseDuration(d.flags["drain-timeout"])
	if err != nil {
		t.Fatalf("-drain-timeout: %v", err)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
		t.Fatalf("preStop %+v, want a sleep (the image has no shell)", c.Lifecycle)
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace < preStop+drain+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s, want more than preStop %s + drain %s + 10s", grace, preStop, drain)
	}

	// The configuration: the ConfigMap key mounted where -config reads it, and valid.
	var cm *corev1.ConfigMap
	for _, v := range pod.Spec.Volumes {
		for _, m := range c.VolumeMounts {
			if m.Name != v.Name || v.ConfigMap == nil {
				continue
			}
			for _, item := range v.ConfigMap.Items {
				if filepath.Join(m.MountPath, item.Path) == d.flags["config"] {
					cm = get[*corev1.ConfigMap](t, b, "ConfigMap", "bodystream", v.ConfigMap.Name)
					text, ok := cm.Data[item.Key]
					if !ok {
						t.Fatalf("ConfigMap %s has no key %s (has %v)", cm.Name, item.Key, slices.Sorted(maps.Keys(cm.Data)))
					}
					d.config, err = config.Parse(strings.NewReader(text))
					if err != nil {
						t.Fatalf("ConfigMap %s key %s: %v", cm.Name, item.Key, err)
					}
					if d.router, err = pipeline.Build(d.config); err != nil {
						t.Fatalf("ConfigMap %s key %s: %v", cm.Name, item.Key, err)
					}
				}
			}
		}
	}
	if d.config == nil {
		t.Fatalf("no ConfigMap volume is mounted at -config=%s", d.flags["config"])
	}

	// Memory from the budget: limit = request = budget + 64Mi, GOMEMLIMIT = budget + 32MiB.
	budget := int64(d.config.Memory.Budget)
	if budget == 0 {
		t.Fatal("memory.budget is 0 (unlimited): no limit can be derived from it")
	}
	limit, request := c.Resources.Limits.Memory(), c.Resources.Requests.Memory()
	if limit.Value() != budget+64<<20 || request.Value() != limit.Value() {
		t.Errorf("memory request %s, limit %s; want both the budget %s + 64Mi", request, limit, d.config.Memory.Budget)
	}
	var goLimit uint64
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			goLimit, _ = humanize.ParseBytes(e.Value)
		}
	}
	if int64(goLimit) != budget+32<<20 {
		t.Errorf("GOMEMLIMIT %d, want the budget + 32MiB = %d", goLimit, budget+32<<20)
	}

	// The Service reaches the pods' gRPC port, as gRPC.
	svc := get[*corev1.Service](t, b, "Service", "bodystream", "bodystream")
	checkServiceSelects(t, svc, pod.Labels, c.Ports)
	grpcPort := servicePort(t, svc, "grpc")
	if grpcPort.AppProtocol == nil || *grpcPort.AppProtocol != "grpc" {
		t.Errorf("Service port grpc has appProtocol %v, want grpc: Envoy must speak HTTP/2 to it", grpcPort.AppProtocol)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service type %s", svc.Spec.Type)
	}

	pdb := get[*policyv1.PodDisruptionBudget](t, b, "PodDisruptionBudget", "bodystream", "bodystream")
	if sel, err := metav1LabelSelector(pdb.Spec.Selector); err != nil || !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("PodDisruptionBudget selects %v, not the pods %v", pdb.Spec.Selector, pod.Labels)
	}
	hpa := get[*autoscalingv2.HorizontalPodAutoscaler](t, b, "HorizontalPodAutoscaler", "bodystream", "bodystream")
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != dep.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HorizontalPodAutoscaler scales %+v", ref)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		t.Errorf("HorizontalPodAutoscaler minReplicas %v: one replica cannot drain without refusing uploads", hpa.Spec.MinReplicas)
	}
	return d
}

func metav1LabelSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}

// checkServiceSelects: the Service selects the pods and each port's target is one of
// theirs.
func checkServiceSelects(t *testing.T, svc *corev1.Service, podLabels map[string]string, ports []corev1.ContainerPort) {
	t.Helper()
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(podLabels)) {
		t.Errorf("Service %s selects %v, not the pods %v", svc.Name, svc.Spec.Selector, podLabels)
	}
	for _, sp := range svc.Spec.Ports {
		if !slices.ContainsFunc(ports, func(cp corev1.ContainerPort) bool {
			return cp.Name == sp.TargetPort.String() || strconv.Itoa(int(cp.ContainerPort)) == sp.TargetPort.String()
		}) {
			t.Errorf("Service %s port %s targets %s, which the pods do not have", svc.Name, sp.Name, sp.TargetPort.String())
		}
	}
}

func servicePort(t *testing.T, svc *corev1.Service, name string) corev1.ServicePort {
	t.Helper()
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("Service %s has no port %s", svc.Name, name)
	return corev1.ServicePort{}
}

// hasServicePort reports whether Service ns/name exists with that port number.
func hasServicePort(b bundle, ns, name string, port int32) bool {
	for _, o := range b {
		if o.kind == "Service" && o.name == name && o.namespace == ns {
			return slices.ContainsFunc(o.value.(*corev1.Service).Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port })
		}
	}
	return false
}

func checkEnvoyGateway(t *testing.T, b bundle, d deployed) {
	const ns = "bodystream"
	policy := get[*egv1a1.EnvoyExtensionPolicy](t, b, "EnvoyExtensionPolicy", ns, "bodystream")
	if len(policy.Spec.ExtProc) != 1 {
		t.Fatalf("%d extProc entries", len(policy.Spec.ExtProc))
	}
	ep := policy.Spec.ExtProc[0]
	for _, ref := range ep.BackendRefs {
		if ref.Port == nil || !hasServicePort(b, ns, string(ref.Name), int32(*ref.Port)) || ref.Name != "bodystream" {
			t.Errorf("extProc backendRef %s:%v is not the bodystream Service's gRPC port", ref.Name, ref.Port)
		}
	}
	if ep.MessageTimeout == nil {
		t.Error("extProc messageTimeout unset: Envoy Gateway's 200ms default cuts BUFFERED replies")
	} else if d, err := time.ParseDuration(string(*ep.MessageTimeout)); err != nil || d < 10*time.Second {
		t.Errorf("extProc messageTimeout %s, want seconds, not Envoy Gateway's 200ms default", *ep.MessageTimeout)
	}
	if ep.FailOpen != nil && *ep.FailOpen {
		t.Error("failOpen: a failed transform would pass the body through unprocessed")
	}
	pm := ep.ProcessingMode
	if pm == nil || pm.Request == nil || pm.Response == nil || pm.Request.Body == nil || pm.Response.Body == nil ||
		*pm.Request.Body != egv1a1.FullDuplexStreamedExtBodyProcessingMode || *pm.Response.Body != egv1a1.FullDuplexStreamedExtBodyProcessingMode {
		t.Fatalf("processingMode %+v, want FullDuplexStreamed both ways", pm)
	}
	if !slices.Contains(pm.Request.Attributes, "xds.route_name") {
		t.Errorf("request attributes %v: bodystream picks the route by xds.route_name", pm.Request.Attributes)
	}

	// Every targeted HTTPRoute exists, hangs off the Gateway, reaches a Service, and
	// its Envoy Gateway route names choose the bodystream route meant for it.
	defaultPair, _ := d.router.Choose("", "", "/no-such-path-prefix")
	for _, ref := range policy.Spec.TargetRefs {
		if ref.Kind != "HTTPRoute" {
			t.Errorf("targetRef kind %s", ref.Kind)
			continue
		}
		route := get[*gwapiv1.HTTPRoute](t, b, "HTTPRoute", ns, string(ref.Name))
		for _, p := range route.Spec.ParentRefs {
			get[*gwapiv1.Gateway](t, b, "Gateway", ns, string(p.Name))
		}
		for i, rule := range route.Spec.Rules {
			for _, br := range rule.BackendRefs {
				if br.Port == nil || !hasServicePort(b, ns, string(br.Name), int32(*br.Port)) {
					t.Errorf("HTTPRoute %s backendRef %s:%v is no Service port", route.Name, br.Name, br.Port)
				}
			}
			prefix := fmt.Sprintf("httproute/%s/%s/", ns, route.Name)
			var meant *config.Route
			for j, r := range d.config.Routes {
				if r.EnvoyRoutePrefix == prefix {
					meant = &d.config.Routes[j]
				}
			}
			if meant == nil {
				t.Errorf("bodystream.yaml has no route with envoy_route_prefix %s for HTTPRoute %s", prefix, route.Name)
				continue
			}
			envoyName := fmt.Sprintf("%srule/%d/match/0/*", prefix, i)
			got, _ := d.router.Choose("", envoyName, "/")
			want, _ := d.router.Choose("", prefix, "")
			if got.Request != want.Request || got.Response != want.Response ||
				(got.Request == defaultPair.Request && got.Response == defaultPair.Response) {
				t.Errorf("Envoy route %s does not choose bodystream's route %+v", envoyName, meant.RoutePipelines)
			}
		}
	}

	np := get[*networkingv1.NetworkPolicy](t, b, "NetworkPolicy", ns, "bodystream")
	if sel, err := metav1LabelSelector(&np.Spec.PodSelector); err != nil || !sel.Matches(labels.Set(d.deployment.Spec.Template.Labels)) {
		t.Errorf("NetworkPolicy selects %v, not bodystream's pods", np.Spec.PodSelector)
	}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == nil || !slices.ContainsFunc(d.container.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.Port.String() }) {
				t.Errorf("NetworkPolicy opens port %v, which bodystream's container does not name", p.Port)
			}
		}
	}
}

func checkIstio(t *testing.T, b bundle, d deployed) {
	const ns = "bodystream"
	nsObj := get[*corev1.Namespace](t, b, "Namespace", "", ns)
	if nsObj.Labels["istio-injection"] != "enabled" {
		t.Errorf("namespace labels %v: no sidecars, so no mTLS", nsObj.Labels)
	}
	pa := get[*istioObject](t, b, "PeerAuthentication", ns, "bodystream").Spec.(*istiosecurityv1.PeerAuthentication)
	if pa.GetMtls().GetMode().String() != "STRICT" ||
		!labels.SelectorFromSet(pa.GetSelector().GetMatchLabels()).Matches(labels.Set(d.deployment.Spec.Template.Labels)) {
		t.Errorf("PeerAuthentication %v: want STRICT mTLS on bodystream's pods", pa)
	}

	vs := get[*istioObject](t, b, "VirtualService", ns, "uploads").Spec.(*istionetworkingv1.VirtualService)
	routeNames := map[string]bool{}
	for _, h := range vs.GetHttp() {
		routeNames[h.GetName()] = true
		for _, dst := range h.GetRoute() {
			host, _, _ := strings.Cut(dst.GetDestination().GetHost(), ".")
			if !hasServicePort(b, ns, host, int32(dst.GetDestination().GetPort().GetNumber())) {
				t.Errorf("VirtualService route %s goes to %s:%d, no Service port", h.GetName(), dst.GetDestination().GetHost(), dst.GetDestination().GetPort().GetNumber())
			}
		}
	}
	for _, gw := range vs.GetGateways() {
		get[*istioObject](t, b, "Gateway", ns, gw)
	}

	bodystreamCluster := fmt.Sprintf("outbound|%d||bodystream.%s.svc.cluster.local", servicePort(t, get[*corev1.Service](t, b, "Service", ns, "bodystream"), "grpc").Port, ns)
	knownRoute := func(where, name string) {
		if _, unknown := d.router.Choose(name, "", ""); unknown {
			t.Errorf("%s names bodystream route %q, which bodystream.yaml lacks", where, name)
		}
	}
	filters := all[*istioObject](b, "EnvoyFilter")
	if len(filters) != 2 {
		t.Fatalf("%d EnvoyFilters, want one for the gateway and one for the sidecar", len(filters))
	}
	contexts := map[string]bool{}
	for _, f := range filters {
		spec := f.Spec.(*istionetworking.EnvoyFilter)
		where := "EnvoyFilter " + f.Metadata.Name
		if f.Metadata.Namespace != "istio-system" &&
			!slices.ContainsFunc(all[*appsv1.Deployment](b, "Deployment"), func(dep *appsv1.Deployment) bool {
				return labels.SelectorFromSet(spec.GetWorkloadSelector().GetLabels()).Matches(labels.Set(dep.Spec.Template.Labels))
			}) {
			t.Errorf("%s selects %v, which no Deployment's pods carry", where, spec.GetWorkloadSelector().GetLabels())
		}
		for _, patch := range spec.GetConfigPatches() {
			contexts[patch.GetMatch().GetContext().String()] = true
			value := envoyJSON(t, patch.GetPatch().GetValue())
			switch patch.GetApplyTo() {
			case istionetworking.EnvoyFilter_HTTP_FILTER:
				if patch.GetPatch().GetOperation() != istionetworking.EnvoyFilter_Patch_INSERT_BEFORE ||
					patch.GetMatch().GetListener().GetFilterChain().GetFilter().GetSubFilter().GetName() != "envoy.filters.http.router" {
					t.Errorf("%s: ext_proc must go just before the router", where)
				}
				var hf hcmv3.HttpFilter
				if err := protojson.Unmarshal(value, &hf); err != nil {
					t.Fatalf("%s: the filter is not Envoy's: %v", where, err)
				}
				var ep extprocfilterv3.ExternalProcessor
				if err := hf.GetTypedConfig().UnmarshalTo(&ep); err != nil {
					t.Fatalf("%s: typed_config: %v", where, err)
				}
				if err := ep.ValidateAll(); err != nil {
					t.Errorf("%s: %v", where, err)
				}
				if c := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(); c != bodystreamCluster {
					t.Errorf("%s: cluster %q, want Istio's cluster of the bodystream Service, %s", where, c, bodystreamCluster)
				}
				if ep.GetFailureModeAllow() {
					t.Errorf("%s: failure_mode_allow passes bodies through untransformed when bodystream fails", where)
				}
				for _, md := range ep.GetGrpcService().GetInitialMetadata() {
					if md.GetKey() == "x-bodystream-route" {
						knownRoute(where, md.GetValue())
					}
				}
			case istionetworking.EnvoyFilter_HTTP_ROUTE:
				name := patch.GetMatch().GetRouteConfiguration().GetVhost().GetRoute().GetName()
				if !routeNames[name] {
					t.Errorf("%s patches route %q, which the VirtualService does not name", where, name)
				}
				var r routev3.Route
				if err := protojson.Unmarshal(value, &r); err != nil {
					t.Fatalf("%s: the route patch is not Envoy's: %v", where, err)
				}
				var per extprocfilterv3.ExtProcPerRoute
				if err := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_proc"].UnmarshalTo(&per); err != nil {
					t.Fatalf("%s: route %s: %v", where, name, err)
				}
				if err := per.ValidateAll(); err != nil {
					t.Errorf("%s: route %s: %v", where, name, err)
				}
				for _, md := range per.GetOverrides().GetGrpcInitialMetadata() {
					if md.GetKey() == "x-bodystream-route" {
						knownRoute(where+" route "+name, md.GetValue())
					}
				}
				if pm := per.GetOverrides().GetProcessingMode(); pm.GetRequestBodyMode() == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED &&
					(pm.GetRequestTrailerMode() != extprocfilterv3.ProcessingMode_SEND || pm.GetResponseTrailerMode() != extprocfilterv3.ProcessingMode_SEND) {
					t.Errorf("%s: route %s: FULL_DUPLEX_STREAMED without trailers SEND", where, name)
				}
			default:
				t.Errorf("%s: patch applies to %s", where, patch.GetApplyTo())
			}
		}
	}
	if !contexts["GATEWAY"] || !contexts["SIDECAR_INBOUND"] {
		t.Errorf("EnvoyFilter contexts %v, want the gateway and sidecars", slices.Sorted(maps.Keys(contexts)))
	}

	// The ASM guide's header example.
	pair, unknown := d.router.Choose("asm-demo", "", "")
	if unknown || pair.RequestHeaders.Set["x-ext-proc-header"] != "hello-to-asm" || pair.ResponseHeaders.Set["x-ext-proc-header"] != "hello-from-asm" {
		t.Errorf("route asm-demo: %+v / %+v, want x-ext-proc-header hello-to-asm in, hello-from-asm out", pair.RequestHeaders, pair.ResponseHeaders)
	}
}

// envoyJSON renders an EnvoyFilter patch value (a Struct) as the JSON of the Envoy
// message it stands for.
func envoyJSON(t *testing.T, v *structpb.Struct) []byte {
	t.Helper()
	text, err := json.Marshal(v.AsMap())
	if err != nil {
		t.Fatal(err)
	}
	return text
}
