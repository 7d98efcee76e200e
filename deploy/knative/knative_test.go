package knative_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/configmap"
	webhookjson "knative.dev/pkg/webhook/json"
	"knative.dev/serving/pkg/apis/autoscaling"
	"knative.dev/serving/pkg/apis/config"
	"knative.dev/serving/pkg/apis/serving"
	v1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "../../chart"
	relName   = "rel"
	namespace = "team"
	// The Kubernetes version deploy/chart and check-chart.sh render for.
	kubeVersion = "1.35.0"
	// Who `helm install` acts as. The defaulting webhook records the
	// creator in an annotation, so the user must be in the context.
	installer = "helm-installer"
	// Knative Serving's module, whose release ConfigMaps the test reads.
	servingModule = "knative.dev/serving"
)

// valueSet is what `helm template` gets as --set and --set-string.
type valueSet struct {
	name             string
	sets, setStrings []string
}

// valueSets are the values the Knative Service is rendered with. Every
// set must be admitted without an error or a warning.
func valueSets() []valueSet {
	return []valueSet{
		{name: "defaults"},
		{name: "all options", sets: []string{
			// .gitlab-ci.yml lint:chart's ALL_OPTIONS.
			"database.existingSecret=", "database.password=ci-lint-only",
			"networkPolicy.enabled=true", "eventing.trigger.enabled=true",
			"plain.autoscaling.enabled=true", "plain.metrics.port=9090",
			"app.debugAddr=:6060", "otel.endpoint=http://otel-collector:4318",
			"database.pooler.enabled=true", "database.migrateHost=postgresql-direct",
			// deploy/chart's "knative custom".
			"image.repository=registry.example.org/platform/users-api", "image.tag=2.0.1",
			"knative.minScale=3", "knative.maxScale=8", "knative.clusterLocal=true",
			"database.port=6543", "database.sslmode=verify-full",
			"serviceAccount.create=false", "serviceAccount.name=shared",
			// The rest of what reaches the revision template.
			"image.digest=sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
			"image.pullPolicy=Always", "imagePullSecrets[0].name=regcred",
			`knative.revisionAnnotations.autoscaling\.knative\.dev/class=kpa.autoscaling.knative.dev`,
			`knative.revisionAnnotations.autoscaling\.knative\.dev/metric=concurrency`,
			`knative.revisionAnnotations.autoscaling\.knative\.dev/window=90s`,
			`podAnnotations.example\.com/team=users`,
			`podLabels.example\.com/tier=backend`,
			"resources.limits.cpu=1", "resources.requests.ephemeral-storage=64Mi",
			"app.logLevel=debug", "app.shutdownTimeoutSeconds=7",
		}, setStrings: []string{
			// A number must reach an annotation as a string.
			`knative.revisionAnnotations.autoscaling\.knative\.dev/target=40`,
			`knative.revisionAnnotations.autoscaling\.knative\.dev/target-utilization-percentage=80`,
		}},
		// The schema's bounds must be Knative's (container-concurrency-max-limit
		// 1000, max-revision-timeout-seconds 600 in a default install), and
		// the longest name the chart makes must leave room for the revision
		// suffix.
		{name: "schema maxima", sets: []string{
			"knative.containerConcurrency=1000", "knative.timeoutSeconds=600",
			"knative.minScale=1000", "knative.maxScale=1000",
			// 2000 pods' pools need a pooler (the chart's connection budget).
			"database.pooler.enabled=true", "database.migrateHost=postgresql-direct",
			"database.pooler.maxClientConnections=10000",
			"fullnameOverride=" + strings.Repeat("users-", 8) + "a",
		}},
		{name: "schema minima", sets: []string{
			"knative.containerConcurrency=0", "knative.timeoutSeconds=1",
			"knative.minScale=2", "knative.maxScale=2",
		}},
	}
}

// TestKnativeAdmitsChart runs each rendering of the Knative Service
// through Knative Serving's defaulting and validation, configured as a
// default install configures its webhook.
func TestKnativeAdmitsChart(t *testing.T) {
	ctx := webhookConfig(t)
	for _, vs := range valueSets() {
		t.Run(vs.name, func(t *testing.T) {
			raw := renderService(t, vs)
			rendered := decodeService(t, raw)
			v, err := admit(ctx, raw)
			if err != nil {
				t.Fatal(err)
			}
			// The webhook hands warnings to Helm, which prints them on
			// every install and upgrade. Knative warns about deprecated
			// settings and insecure securityContext defaults, both of
			// which the chart promises not to have: so they fail too.
			for _, w := range v.warnings.WrappedErrors() {
				t.Errorf("Knative warns: %v", w)
			}
			if v.errs != nil {
				t.Fatalf("Knative rejects the rendered Service:\n%v", v.errs)
			}

			// Knative fills containerConcurrency and timeoutSeconds only
			// when they are unset; a value it replaced would mean the
			// chart's setting never takes effect.
			got, want := v.defaulted.Spec.Template.Spec, rendered.Spec.Template.Spec
			if !equalPtr(got.ContainerConcurrency, want.ContainerConcurrency) || !equalPtr(got.TimeoutSeconds, want.TimeoutSeconds) {
				t.Errorf("defaulting changed containerConcurrency %v→%v or timeoutSeconds %v→%v",
					deref(want.ContainerConcurrency), deref(got.ContainerConcurrency), deref(want.TimeoutSeconds), deref(got.TimeoutSeconds))
			}
			// Shows the create context (and its user) reached SetDefaults.
			if c := v.defaulted.Annotations[serving.CreatorAnnotation]; c != installer {
				t.Errorf("defaulting set creator %q, want %q", c, installer)
			}
			t.Logf("what Knative's defaulting adds (-rendered +defaulted):\n%s", cmp.Diff(rendered, v.defaulted))
		})
	}
}

// TestKnativeRejectsViolations proves the check above can fail: each case
// changes the default rendering the way a template edit could, and
// Knative must reject the result for that reason.
func TestKnativeRejectsViolations(t *testing.T) {
	ctx := webhookConfig(t)
	raw := renderService(t, valueSet{})
	user := func(s *v1.Service) *corev1.Container { return &s.Spec.Template.Spec.Containers[0] }
	for _, tc := range []struct {
		name string
		// mutate edits the decoded Service; edit the JSON, for what the
		// typed object cannot hold.
		mutate func(s *v1.Service)
		edit   func(m map[string]any)
		// want is a part of the error; empty: the Service is admitted.
		want string
		// warn is a part of a warning the admitted Service must get.
		warn string
	}{
		{name: "unchanged", mutate: func(*v1.Service) {}},
		// One port only: Knative routes to a single port and sets PORT to it.
		{name: "second container port", want: "more than one container port is set",
			mutate: func(s *v1.Service) {
				c := user(s)
				c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: 9090})
			}},
		{name: "reserved port of the queue-proxy", want: "8012 is a reserved port",
			mutate: func(s *v1.Service) { user(s).Ports[0].ContainerPort = 8012 }},
		// The name picks HTTP/1 or h2c; the plain Deployment's "http" is not one.
		{name: "port named http", want: "Port name http is not allowed",
			mutate: func(s *v1.Service) { user(s).Ports[0].Name = "http" }},
		{name: "env PORT", want: `"PORT" is a reserved environment variable`,
			mutate: func(s *v1.Service) {
				c := user(s)
				c.Env = append(c.Env, corev1.EnvVar{Name: "PORT", Value: "8080"})
			}},
		{name: "env K_SERVICE", want: `"K_SERVICE" is a reserved environment variable`,
			mutate: func(s *v1.Service) {
				c := user(s)
				c.Env = append(c.Env, corev1.EnvVar{Name: "K_SERVICE", Value: "users"})
			}},
		// Knative points the probes at the queue-proxy; a named port must
		// be the container's (the plain Deployment's probes name "http").
		{name: "probe port", want: "Probe port must match container port",
			mutate: func(s *v1.Service) { user(s).ReadinessProbe.HTTPGet.Port = intstr.FromString("http") }},
		// The chart's podSecurityContext value: kubernetes.podspec-securitycontext
		// is disabled by default, so Knative accepts it only per container.
		{name: "pod-level securityContext", want: "must not set the field(s): spec.template.spec.securityContext",
			mutate: func(s *v1.Service) {
				s.Spec.Template.Spec.SecurityContext = &corev1.PodSecurityContext{
					RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](65532),
					FSGroup: ptr.To[int64](65532), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				}
			}},
		// The plain Deployment's scheduling fields, each behind a feature
		// flag a default install leaves disabled (deploy/chart's
		// checkKnative lists them).
		{name: "nodeSelector", want: "must not set the field(s): spec.template.spec.nodeSelector",
			mutate: func(s *v1.Service) { s.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "ssd"} }},
		{name: "tolerations", want: "must not set the field(s): spec.template.spec.tolerations",
			mutate: func(s *v1.Service) {
				s.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}
			}},
		{name: "affinity", want: "must not set the field(s): spec.template.spec.affinity",
			mutate: func(s *v1.Service) {
				s.Spec.Template.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{}}
			}},
		{name: "topologySpreadConstraints", want: "must not set the field(s): spec.template.spec.topologySpreadConstraints",
			mutate: func(s *v1.Service) {
				s.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
					MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.ScheduleAnyway,
				}}
			}},
		{name: "priorityClassName", want: "must not set the field(s): spec.template.spec.priorityClassName",
			mutate: func(s *v1.Service) { s.Spec.Template.Spec.PriorityClassName = "high" }},
		{name: "initContainers", want: "must not set the field(s): spec.template.spec.initContainers",
			mutate: func(s *v1.Service) {
				s.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "init", Image: user(s).Image}}
			}},
		{name: "mount on a reserved path", want: `mountPath "/dev/log" is a reserved path`,
			mutate: func(s *v1.Service) { user(s).VolumeMounts[0].MountPath = "/dev/log" }},
		// Bounds from config-defaults: the limits come from the context.
		{name: "containerConcurrency above the limit", want: "expected 0 <= 1001 <= 1000: spec.template.spec.containerConcurrency",
			mutate: func(s *v1.Service) { s.Spec.Template.Spec.ContainerConcurrency = ptr.To[int64](1001) }},
		{name: "timeoutSeconds above the limit", want: "expected 0 <= 601 <= 600: spec.template.spec.timeoutSeconds",
			mutate: func(s *v1.Service) { s.Spec.Template.Spec.TimeoutSeconds = ptr.To[int64](601) }},
		// Autoscaling annotations.
		{name: "min-scale not a number", want: "invalid value: two: spec.template.metadata.annotations." + autoscaling.MinScaleAnnotationKey,
			mutate: func(s *v1.Service) { s.Spec.Template.Annotations[autoscaling.MinScaleAnnotationKey] = "two" }},
		{name: "min-scale above max-scale", want: "max-scale=10 is less than min-scale=20",
			mutate: func(s *v1.Service) {
				a := s.Spec.Template.Annotations
				a[autoscaling.MinScaleAnnotationKey], a[autoscaling.InitialScaleAnnotationKey], a[autoscaling.MaxScaleAnnotationKey] = "20", "20", "10"
			}},
		// config-autoscaler's allow-zero-initial-scale is false by default.
		{name: "initial-scale 0", want: autoscaling.InitialScaleAnnotationKey + "=0 not allowed by cluster",
			mutate: func(s *v1.Service) { s.Spec.Template.Annotations[autoscaling.InitialScaleAnnotationKey] = "0" }},
		// Warnings, which TestKnativeAdmitsChart fails on: Knative warns
		// about each insecure Kubernetes default left in place.
		{name: "no allowPrivilegeEscalation", warn: "Kubernetes default value is insecure, Knative may default this to secure in a future release: spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation",
			mutate: func(s *v1.Service) { user(s).SecurityContext.AllowPrivilegeEscalation = nil }},
		{name: "no seccompProfile", warn: "Kubernetes default value is insecure, Knative may default this to secure in a future release: spec.template.spec.containers[0].securityContext.seccompProfile",
			mutate: func(s *v1.Service) { user(s).SecurityContext.SeccompProfile = nil }},
		// The API server would prune a misspelt field silently; the test
		// decodes strictly so the chart cannot lose a setting that way.
		{name: "misspelt field", want: `unknown field "containerConcurency"`,
			edit: func(m map[string]any) {
				spec := m["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
				spec["containerConcurency"] = spec["containerConcurrency"]
				delete(spec, "containerConcurrency")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var changed []byte
			var err error
			if tc.edit != nil {
				var m map[string]any
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Fatal(err)
				}
				tc.edit(m)
				changed, err = json.Marshal(m)
			} else {
				s := decodeService(t, raw)
				tc.mutate(s)
				changed, err = json.Marshal(s)
			}
			if err != nil {
				t.Fatal(err)
			}
			v, err := admit(ctx, changed)
			var got string
			switch {
			case err != nil:
				got = err.Error()
			case v.errs != nil:
				got = v.errs.Error()
			}
			if tc.warn != "" && !strings.Contains(fmt.Sprint(v.warnings), tc.warn) {
				t.Errorf("warnings %q lack %q", v.warnings, tc.warn)
			}
			if tc.want == "" && tc.warn == "" && v.warnings != nil {
				t.Errorf("unexpected warnings:\n%v", v.warnings)
			}
			switch {
			case tc.want == "" && got != "":
				t.Fatalf("rejected:\n%s", got)
			case tc.want == "":
			case got == "":
				t.Fatalf("admitted; want an error with %q", tc.want)
			case !strings.Contains(got, tc.want):
				t.Fatalf("rejected, but not for %q:\n%s", tc.want, got)
			default:
				t.Logf("rejected as expected:\n%s", got)
			}
		})
	}
}

// verdict is what the two webhooks decide on one create.
type verdict struct {
	defaulted *v1.Service      // the object after the defaulting webhook
	errs      *apis.FieldError // error level: the create is refused
	warnings  *apis.FieldError // warning level: Helm prints them
}

// admit does to a Knative Service what Knative Serving's webhooks do on a
// create (knative.dev/pkg/webhook/resourcesemantics/defaulting and
// validation): decode, default in a create context that names the user,
// then decode the patched object anew and validate it in a fresh create
// context. Not done: the validation callback, which only acts on a
// server-side dry run and needs an API server.
func admit(ctx context.Context, manifest []byte) (verdict, error) {
	createCtx := func() context.Context {
		return apis.WithUserInfo(apis.WithinCreate(ctx), &authenticationv1.UserInfo{Username: installer})
	}
	in := &v1.Service{}
	if err := webhookjson.Decode(manifest, in, true); err != nil {
		return verdict{}, fmt.Errorf("cannot decode the Service: %w", err)
	}
	// The API server sets the namespace from the request before admission.
	if in.Namespace == "" {
		in.Namespace = namespace
	}
	in.SetDefaults(createCtx())

	patched, err := json.Marshal(in)
	if err != nil {
		return verdict{}, err
	}
	out := &v1.Service{}
	if err := webhookjson.Decode(patched, out, true); err != nil {
		return verdict{}, fmt.Errorf("cannot decode the defaulted Service: %w", err)
	}
	fe := out.Validate(createCtx())
	return verdict{defaulted: out, errs: fe.Filter(apis.ErrorLevel), warnings: fe.Filter(apis.WarningLevel)}, nil
}

// webhookConfig returns the context Knative's webhooks validate in: the
// config-defaults, config-features and config-autoscaler ConfigMaps, read
// from the release manifests in knative.dev/serving's module (what a
// default install applies), loaded through the webhook's own config store.
func webhookConfig(t *testing.T) context.Context {
	t.Helper()
	// go test puts its own go first in PATH.
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", servingModule).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", servingModule, err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "core", "configmaps")
	var cms []*corev1.ConfigMap
	for _, f := range []string{"defaults.yaml", "features.yaml", "autoscaler.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		cm := &corev1.ConfigMap{}
		if err := yaml.UnmarshalStrict(b, cm); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cms = append(cms, cm)
	}
	store := config.NewStore(logger{t})
	// Panics on a ConfigMap the store watches that is not given.
	store.WatchConfigs(configmap.NewStaticWatcher(cms...))
	// A ConfigMap that failed to load would leave its part nil, and
	// FromContextOrDefaults would then quietly use the code's defaults.
	if c := store.Load(); c.Defaults == nil || c.Features == nil || c.Autoscaler == nil {
		t.Fatalf("the config store did not load every ConfigMap: %+v", c)
	}
	return store.ToContext(context.Background())
}

// logger is the store's logger: its errors fail the test.
type logger struct{ testing.TB }

func (logger) Debugf(string, ...any) {}
func (logger) Infof(string, ...any)  {}

// renderService renders the chart as `helm template` does and returns the
// Knative Service as JSON, the form the API server passes to webhooks.
// (deploy/chart has the same steps, but in another module.)
func renderService(t *testing.T, vs valueSet) []byte {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals := map[string]any{}
	for _, s := range vs.sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	for _, s := range vs.setStrings {
		if err := strvals.ParseIntoString(s, vals); err != nil {
			t.Fatalf("--set-string %s: %v", s, err)
		}
	}
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps := &chartutil.Capabilities{KubeVersion: *kv, APIVersions: chartutil.DefaultVersionSet}
	top, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: relName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	files, err := engine.Engine{Strict: true}.Render(ch, top)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	_, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		t.Fatal(err)
	}
	var found []releaseutil.Manifest
	for _, m := range manifests {
		if m.Head != nil && m.Head.Version == "serving.knative.dev/v1" && m.Head.Kind == "Service" {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("rendered %d Knative Services, want 1", len(found))
	}
	j, err := yaml.YAMLToJSON([]byte(found[0].Content))
	if err != nil {
		t.Fatalf("%s: %v", found[0].Name, err)
	}
	return j
}

func decodeService(t *testing.T, raw []byte) *v1.Service {
	t.Helper()
	s := &v1.Service{}
	if err := webhookjson.Decode(raw, s, true); err != nil {
		t.Fatal(err)
	}
	return s
}

func equalPtr[T comparable](a, b *T) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
