package chart_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/app"
	"github.com/example/users/pkg/cli"
	"github.com/example/users/pkg/config"
)

const (
	chartDir  = "../../chart"
	relName   = "rel"
	namespace = "team"
	// The version check-chart.sh validates against.
	kubeVersion = "1.35.0"
	dockerfile  = "../../Dockerfile"
)

// image is what the Dockerfile's final stage promises the chart.
type image struct {
	uid        int64
	port       int32
	entrypoint string
}

// readImage reads USER, EXPOSE and ENTRYPOINT of the Dockerfile's final
// stage, so the chart is checked against the image rather than a copy.
func readImage(t *testing.T) image {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var img image
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			img = image{}
		case "USER":
			uid, err := strconv.ParseInt(strings.SplitN(f[1], ":", 2)[0], 10, 64)
			if err != nil {
				t.Fatalf("Dockerfile USER %q is not numeric; Kubernetes cannot check runAsNonRoot against a name", f[1])
			}
			img.uid = uid
		case "EXPOSE":
			p, err := strconv.ParseInt(strings.TrimSuffix(f[1], "/tcp"), 10, 32)
			if err != nil {
				t.Fatalf("Dockerfile EXPOSE %q: %v", f[1], err)
			}
			img.port = int32(p)
		case "ENTRYPOINT":
			var ep []string
			if err := yaml.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, f[0]))), &ep); err != nil || len(ep) == 0 {
				t.Fatalf("Dockerfile ENTRYPOINT %q is not an exec-form list", line)
			}
			img.entrypoint = ep[0]
		}
	}
	if img.uid == 0 || img.port == 0 || img.entrypoint == "" {
		t.Fatalf("Dockerfile's final stage lacks a non-root USER, EXPOSE or ENTRYPOINT: %+v", img)
	}
	return img
}

// object is one rendered manifest.
type object struct {
	Kind, APIVersion, Name string
	Hook                   *release.Hook // nil for an ordinary resource
	Content                string
	Template               string
}

type rendering struct {
	objects []object
	notes   string
}

func (r rendering) ofKind(apiVersion, kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.Kind == kind && o.APIVersion == apiVersion {
			out = append(out, o)
		}
	}
	return out
}

func (r rendering) find(apiVersion, kind, name string) (object, bool) {
	for _, o := range r.ofKind(apiVersion, kind) {
		if o.Name == name {
			return o, true
		}
	}
	return object{}, false
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// render does what `helm template` does: values as -f and --set give
// them (a set "-f=FILE" reads a values file, relative to the chart), schema
// validation, strict rendering (a missing value is an error), and Helm's
// own split into hooks and ordinary resources.
func render(ch *chart.Chart, sets []string) (rendering, error) {
	vals := map[string]any{}
	for _, s := range sets {
		if file, ok := strings.CutPrefix(s, "-f="); ok {
			v, err := chartutil.ReadValuesFile(filepath.Join(chartDir, file))
			if err != nil {
				return rendering{}, err
			}
			vals = chartutil.CoalesceTables(vals, v.AsMap())
			continue
		}
		if err := strvals.ParseInto(s, vals); err != nil {
			return rendering{}, fmt.Errorf("--set %s: %w", s, err)
		}
	}
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return rendering{}, err
	}
	caps := &chartutil.Capabilities{KubeVersion: *kv, APIVersions: chartutil.DefaultVersionSet}
	top, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: relName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return rendering{}, err
	}
	files, err := engine.Engine{Strict: true}.Render(ch, top)
	if err != nil {
		return rendering{}, err
	}
	var r rendering
	for name, content := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			r.notes = content
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return rendering{}, err
	}
	for _, m := range manifests {
		if m.Head == nil || m.Head.Metadata == nil {
			return rendering{}, fmt.Errorf("%s: manifest without kind or metadata", m.Name)
		}
		r.objects = append(r.objects, object{Kind: m.Head.Kind, APIVersion: m.Head.Version, Name: m.Head.Metadata.Name, Content: m.Content, Template: m.Name})
	}
	for _, h := range hooks {
		var head releaseutil.SimpleHead
		if err := yaml.Unmarshal([]byte(h.Manifest), &head); err != nil {
			return rendering{}, fmt.Errorf("hook %s: %w", h.Path, err)
		}
		r.objects = append(r.objects, object{Kind: h.Kind, APIVersion: head.Version, Name: h.Name, Hook: h, Content: h.Manifest, Template: h.Path})
	}
	return r, nil
}

// decode reads a manifest into a typed object, rejecting unknown fields.
func decode[T any](t *testing.T, o object) T {
	t.Helper()
	var v T
	if err := yaml.UnmarshalStrict([]byte(o.Content), &v); err != nil {
		t.Fatalf("%s %s (%s): %v", o.Kind, o.Name, o.Template, err)
	}
	return v
}

// knativeService is the part of serving.knative.dev/v1 Service the chart
// uses; the revision spec is a PodSpec subset plus Knative's fields.
type knativeService struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Template struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     struct {
				corev1.PodSpec       `json:",inline"`
				ContainerConcurrency *int64 `json:"containerConcurrency,omitempty"`
				TimeoutSeconds       *int64 `json:"timeoutSeconds,omitempty"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type trigger struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Broker string `json:"broker"`
		Filter struct {
			Attributes map[string]string `json:"attributes"`
		} `json:"filter"`
		Subscriber struct {
			Ref struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Name       string `json:"name"`
			} `json:"ref"`
			URI string `json:"uri"`
		} `json:"subscriber"`
		Delivery map[string]any `json:"delivery"`
	} `json:"spec"`
}

// workload is the web pods, whichever mode made them.
type workload struct {
	pod         corev1.PodSpec
	labels      map[string]string
	annotations map[string]string
	// service is how the cluster reaches the pods (and what a Trigger
	// subscribes): the Knative Service or the plain Service.
	serviceAPIVersion, serviceName string
	servicePort                    int // where the service answers
}

type chartCase struct {
	name      string
	sets      []string
	knative   bool
	image     string // the image every container must run
	ownSecret bool   // the chart renders the password Secret
	// pooler: the values put a pooler in transaction mode in front, and
	// the binary is run through a real PgBouncer.
	pooler bool
}

func cases() []chartCase {
	const digest = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
	return []chartCase{
		{name: "knative defaults", knative: true, image: "registry.gitlab.com/example/users:0.1.0"},
		{name: "plain defaults", sets: []string{"knative.enabled=false"}, image: "registry.gitlab.com/example/users:0.1.0"},
		{
			name:    "knative custom",
			knative: true,
			sets: []string{
				"database.existingSecret=", "database.password=not-a-real-one",
				"image.repository=registry.example.org/platform/users-api", "image.tag=2.0.1",
				"knative.minScale=3", "knative.maxScale=8", "knative.clusterLocal=true",
				"eventing.trigger.enabled=true", "networkPolicy.enabled=true",
				"database.port=6543", "database.sslmode=verify-full",
				"serviceAccount.create=false", "serviceAccount.name=shared",
			},
			image:     "registry.example.org/platform/users-api:2.0.1",
			ownSecret: true,
		},
		{
			name: "plain custom",
			sets: []string{
				"knative.enabled=false", "fullnameOverride=accounts",
				"database.existingSecret=pg-app", "database.existingSecretKey=pw",
				"image.repository=localhost:5000/users", "image.digest=" + digest,
				"plain.autoscaling.enabled=true", "plain.autoscaling.minReplicas=3",
				"plain.service.port=8081", "plain.drainDelaySeconds=1",
				"eventing.trigger.enabled=true", "networkPolicy.enabled=true",
				"app.shutdownTimeoutSeconds=7", "app.logLevel=debug",
			},
			image: "localhost:5000/users@" + digest,
		},
		{
			name:    "knative behind a pooler (examples/values-pooler.yaml)",
			knative: true,
			sets:    []string{"-f=examples/values-pooler.yaml"},
			image:   "registry.gitlab.com/example/users:0.1.0",
			pooler:  true,
		},
		{
			name: "plain observability",
			sets: []string{
				"knative.enabled=false", "plain.metrics.port=9090", "app.debugAddr=:6060",
				"networkPolicy.enabled=true", "otel.endpoint=http://otel-collector.observability:4318",
				"monitoring.enabled=true", "monitoring.rules.enabled=true",
				"monitoring.labels.release=kube-prometheus-stack",
			},
			image: "registry.gitlab.com/example/users:0.1.0",
		},
		{
			name:    "knative observability",
			knative: true,
			sets: []string{
				"networkPolicy.enabled=true", "otel.sdkDisabled=false",
				"monitoring.enabled=true", "monitoring.rules.enabled=true",
				"otel.serviceName=users-api", "otel.endpoint=http://otel-collector.observability:4318",
				"otel.tracesEndpoint=http://tempo.observability:4318/v1/traces",
				"otel.metricsExporter=none", "otel.tracesExporter=otlp",
				"otel.sampler=parentbased_traceidratio", "otel.samplerArg=0.25",
				`otel.resourceAttributes.deployment\.environment\.name=staging`,
			},
			image: "registry.gitlab.com/example/users:0.1.0",
		},
	}
}

// TestChartContract renders the chart in both modes, with default and
// custom values, checks what it deploys against the code, then runs the
// containers' own arguments through the binary's command line against a
// real database: the migration Job's, the web container's, the helm test
// Pod's and, when a Trigger is rendered, delivers it an event.
func TestChartContract(t *testing.T) {
	ch := loadChart(t)
	img := readImage(t)
	// Containers pass only args: the image's ENTRYPOINT must be the binary
	// built from pkg/cmd/users.
	if path.Base(img.entrypoint) != "users" {
		t.Fatalf("Dockerfile ENTRYPOINT %q is not the users binary", img.entrypoint)
	}
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := render(ch, tc.sets)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			w := webWorkload(t, r, tc.knative)
			if len(w.pod.Containers) != 1 {
				t.Fatalf("web pods have %d containers, want 1", len(w.pod.Containers))
			}
			c := w.pod.Containers[0]
			checkContainer(t, "web", c, tc.image, img.uid)
			if len(c.Args) != 1 || c.Args[0] != "serve" {
				t.Errorf("web container args = %q, want [serve]", c.Args)
			}
			webEnv, webSecret := checkEnv(t, "web", c, w.pod.Volumes)
			cfg := loadConfig(t, webEnv)

			checkPorts(t, c, cfg, tc.knative)
			checkTelemetry(t, c, cfg, tc.knative)
			if c.Ports[0].ContainerPort != img.port {
				t.Errorf("containerPort %d, but the image EXPOSEs %d", c.Ports[0].ContainerPort, img.port)
			}
			if tc.knative {
				checkKnative(t, r, w, c, cfg)
			} else {
				checkPlain(t, r, w, c, cfg)
			}
			checkServiceAccount(t, r, w.pod)
			checkWebSecret(t, r, webSecret, tc.ownSecret)
			job, jobEnv := checkMigrationJob(t, r, tc.image, img.uid, tc.ownSecret)
			for _, k := range []string{"POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DATABASE", "POSTGRES_USERNAME", "POSTGRES_SSLMODE",
				"POSTGRES_MIGRATE_HOST", "POSTGRES_MIGRATE_PORT"} {
				if jobEnv[k] != webEnv[k] {
					t.Errorf("migration Job %s = %q, web pods %q: they must use the same database", k, jobEnv[k], webEnv[k])
				}
			}
			if jobCfg := loadConfig(t, jobEnv); jobCfg.Database.MaxConns != 2 {
				t.Errorf("migration Job POSTGRES_MAX_CONNS %d, want the 2 the connection budget counts", jobCfg.Database.MaxConns)
			}
			if m := cfg.Database.Migration(); tc.pooler != (m.Host != cfg.Database.Host) || tc.pooler == cfg.Database.PreparedStatements {
				t.Errorf("pooler %v: migrations at %s (web pods at %s), prepared statements %v",
					tc.pooler, m.Host, cfg.Database.Host, cfg.Database.PreparedStatements)
			}
			testPod := checkTestPod(t, r, w, tc.image, img.uid)
			trig, hasTrigger := checkTrigger(t, r, w)
			checkNetworkPolicy(t, r, w, c, cfg)
			monitored := len(r.ofKind(monitoringAPI, "ServiceMonitor"))+len(r.ofKind(monitoringAPI, "PodMonitor")) > 0
			if monitored {
				schemas := crdSchemas(t)
				for _, o := range r.objects {
					if o.APIVersion == monitoringAPI {
						validateCRD(t, schemas, o)
					}
				}
				checkMonitor(t, r, w, c, cfg, tc.knative)
			}
			if !strings.Contains(r.notes, "/user") || !strings.Contains(r.notes, "helm test") {
				t.Errorf("NOTES.txt does not tell how to reach /user and run helm test:\n%s", r.notes)
			}

			// Now run what the containers would run.
			db := pgtest.New(t)
			if tc.pooler {
				db = pgtest.StartBouncer(t, pgtest.Server(t), pgtest.Transaction, 2).Database(db)
			}
			env := binaryEnv(t, webEnv, db)
			if code, out := run(t, job.Args, env); code != 0 {
				t.Fatalf("migration Job args %q exited %d:\n%s", job.Args, code, out)
			}
			base := serve(t, c.Args, env)
			for _, p := range []string{c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path} {
				if code := get(t, base+p); code != http.StatusOK {
					t.Errorf("GET %s (a probe) = %d, want 200", p, code)
				}
			}
			testArgs := slices.Clone(testPod.Args)
			u, err := url.Parse(testArgs[len(testArgs)-1])
			if err != nil {
				t.Fatalf("test Pod URL %q: %v", testArgs[len(testArgs)-1], err)
			}
			testArgs[len(testArgs)-1] = base + u.RequestURI()
			if code, out := run(t, testArgs, map[string]string{}); code != 0 {
				t.Errorf("test Pod args %q (pointed at the running server) exited %d:\n%s", testPod.Args, code, out)
			}
			if hasTrigger {
				deliver(t, base, trig)
			}
			if monitored {
				// Where the monitor scrapes, the binary answers with the
				// request metrics of what was just sent.
				scrape := base + "/metrics"
				if env["METRICS_ADDR"] != "" {
					scrape = "http://" + env["METRICS_ADDR"] + "/metrics"
				}
				checkScrape(t, scrape)
			}
		})
	}
}

func checkScrape(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_class="2xx",http_route="/-/ready"`) {
		t.Errorf("scrape %s = %d, without the readiness probe's request count:\n%.2000s", url, resp.StatusCode, b)
	}
}

func webWorkload(t *testing.T, r rendering, knative bool) workload {
	t.Helper()
	ksvcs := r.ofKind("serving.knative.dev/v1", "Service")
	deps := r.ofKind("apps/v1", "Deployment")
	plainOnly := [][2]string{{"apps/v1", "Deployment"}, {"v1", "Service"}, {"policy/v1", "PodDisruptionBudget"}, {"autoscaling/v2", "HorizontalPodAutoscaler"}}
	if knative {
		if len(ksvcs) != 1 {
			t.Fatalf("Knative mode renders %d Knative Services, want 1", len(ksvcs))
		}
		for _, k := range plainOnly {
			if n := len(r.ofKind(k[0], k[1])); n > 0 {
				t.Errorf("Knative mode renders %d %s", n, k[1])
			}
		}
		ks := decode[knativeService](t, ksvcs[0])
		if ksvcs[0].Hook != nil {
			t.Errorf("the Knative Service is a hook")
		}
		tpl := ks.Spec.Template
		return workload{pod: tpl.Spec.PodSpec, labels: tpl.Metadata.Labels, annotations: tpl.Metadata.Annotations,
			serviceAPIVersion: "serving.knative.dev/v1", serviceName: ks.Metadata.Name, servicePort: 80}
	}
	if len(ksvcs) != 0 {
		t.Errorf("plain mode renders a Knative Service")
	}
	if len(deps) != 1 {
		t.Fatalf("plain mode renders %d Deployments, want 1", len(deps))
	}
	d := decode[appsv1.Deployment](t, deps[0])
	svcs := r.ofKind("v1", "Service")
	if len(svcs) != 1 {
		t.Fatalf("plain mode renders %d Services, want 1", len(svcs))
	}
	svc := decode[corev1.Service](t, svcs[0])
	// The API's port, and with plain.metrics.port one named metrics.
	if n := len(svc.Spec.Ports); n != 1 && (n != 2 || svc.Spec.Ports[1].Name != "metrics") {
		t.Fatalf("Service has ports %+v, want the API's and at most one named metrics", svc.Spec.Ports)
	}
	return workload{pod: d.Spec.Template.Spec, labels: d.Spec.Template.Labels, annotations: d.Spec.Template.Annotations,
		serviceAPIVersion: "v1", serviceName: svc.Name, servicePort: int(svc.Spec.Ports[0].Port)}
}

// checkContainer checks the image and the container-level securityContext
// every container that runs the image must have.
func checkContainer(t *testing.T, what string, c corev1.Container, image string, uid int64) {
	t.Helper()
	if c.Image != image {
		t.Errorf("%s image = %q, want %q", what, c.Image, image)
	}
	if len(c.Args) == 0 || !slices.Contains(cli.Commands(), c.Args[0]) {
		t.Errorf("%s args %q do not start with a subcommand of the binary %q", what, c.Args, cli.Commands())
	}
	if len(c.Command) != 0 {
		t.Errorf("%s overrides the image's ENTRYPOINT with %q", what, c.Command)
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Fatalf("%s container has no securityContext", what)
	}
	runAsUser := fmt.Sprintf("runAsUser %d (the image's USER)", uid)
	for name, ok := range map[string]bool{
		"runAsNonRoot":                   sc.RunAsNonRoot != nil && *sc.RunAsNonRoot,
		runAsUser:                        sc.RunAsUser != nil && *sc.RunAsUser == uid,
		"readOnlyRootFilesystem":         sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem,
		"allowPrivilegeEscalation false": sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		"capabilities drop ALL":          sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0,
		"seccomp RuntimeDefault":         sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault,
		"not privileged":                 sc.Privileged == nil || !*sc.Privileged,
	} {
		if !ok {
			t.Errorf("%s container securityContext lacks %s", what, name)
		}
	}
}

// checkEnv checks the container's environment against the variables the
// configuration struct reads, and finds the Secret behind the password
// file. It returns the variables and the Secret's name.
func checkEnv(t *testing.T, what string, c corev1.Container, volumes []corev1.Volume) (map[string]string, string) {
	t.Helper()
	known := map[string]config.Var{}
	for _, v := range config.Variables() {
		known[v.Name] = v
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.Name == "PORT" || strings.HasPrefix(e.Name, "K_"):
			t.Errorf("%s sets %s: Knative reserves it", what, e.Name)
		case known[e.Name].Name == "":
			t.Errorf("%s sets %s, which the binary does not read", what, e.Name)
		case e.ValueFrom != nil:
			t.Errorf("%s takes %s from a reference; the chart passes secrets as files", what, e.Name)
		}
		if _, dup := env[e.Name]; dup {
			t.Errorf("%s sets %s twice", what, e.Name)
		}
		env[e.Name] = e.Value
	}
	if len(c.EnvFrom) > 0 {
		t.Errorf("%s uses envFrom, which hides the variable names", what)
	}
	for _, v := range known {
		if v.Required && env[v.Name] == "" {
			t.Errorf("%s does not set required %s", what, v.Name)
		}
	}
	if _, ok := env["POSTGRES_PASSWORD"]; ok {
		t.Errorf("%s sets POSTGRES_PASSWORD as a plain value", what)
	}
	file := env["POSTGRES_PASSWORD_FILE"]
	if file == "" {
		t.Fatalf("%s has no POSTGRES_PASSWORD_FILE", what)
	}
	var volume string
	for _, m := range c.VolumeMounts {
		if m.MountPath == path.Dir(file) {
			volume = m.Name
			if !m.ReadOnly {
				t.Errorf("%s mounts the password volume writable", what)
			}
		}
	}
	for _, v := range volumes {
		if v.Name != volume {
			continue
		}
		if v.Secret == nil {
			t.Fatalf("%s password volume %s is not a Secret", what, v.Name)
		}
		for _, it := range v.Secret.Items {
			if it.Path == path.Base(file) {
				return env, v.Secret.SecretName
			}
		}
		t.Fatalf("%s password volume maps no key to %s", what, path.Base(file))
	}
	t.Fatalf("%s: no Secret volume mounted at %s", what, path.Dir(file))
	return nil, ""
}

// loadConfig loads the chart's environment with the binary's own loader,
// the password file replaced by a temporary one.
func loadConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	e := maps.Clone(env)
	e["POSTGRES_PASSWORD_FILE"] = passwordFile(t, "x")
	cfg, err := config.Load(e)
	if err != nil {
		t.Fatalf("the binary rejects the chart's environment: %v", err)
	}
	return cfg
}

func passwordFile(t *testing.T, password string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(f, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func checkPorts(t *testing.T, c corev1.Container, cfg config.Config, knative bool) {
	t.Helper()
	// Knative allows one port. A plain pod may add one named metrics, the
	// port METRICS_ADDR moves /metrics to.
	switch {
	case len(c.Ports) == 1:
		if cfg.Telemetry.MetricsAddr != "" {
			t.Errorf("METRICS_ADDR %q, but the container declares no metrics port", cfg.Telemetry.MetricsAddr)
		}
	case len(c.Ports) == 2 && !knative && c.Ports[1].Name == "metrics":
		_, port, err := net.SplitHostPort(cfg.Telemetry.MetricsAddr)
		if err != nil || port != strconv.Itoa(int(c.Ports[1].ContainerPort)) {
			t.Errorf("container port metrics is %d, but METRICS_ADDR is %q", c.Ports[1].ContainerPort, cfg.Telemetry.MetricsAddr)
		}
		if c.Ports[1].ContainerPort == c.Ports[0].ContainerPort {
			t.Errorf("the metrics port is the API port %d", c.Ports[0].ContainerPort)
		}
	default:
		t.Fatalf("web container has ports %+v, want the API's (and in plain mode one named metrics)", c.Ports)
	}
	p := c.Ports[0]
	// The chart never sets PORT: the binary listens on its default, and
	// Knative sets PORT to containerPort. Either way they must agree.
	if int(p.ContainerPort) != cfg.HTTP.ListenPort {
		t.Errorf("containerPort %d, but the binary listens on %d", p.ContainerPort, cfg.HTTP.ListenPort)
	}
	if knative && p.Name != "http1" && p.Name != "h2c" {
		t.Errorf("Knative port name %q, want http1 or h2c", p.Name)
	}
	for name, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Fatalf("web container has no %s httpGet probe", name)
		}
		port := probe.HTTPGet.Port
		if knative && (port.IntVal != 0 || port.StrVal != "") {
			t.Errorf("Knative %s probe names port %v; Knative points probes at its queue-proxy itself", name, port.String())
		}
		if !knative && port.StrVal != p.Name && int(port.IntVal) != int(p.ContainerPort) {
			t.Errorf("%s probe port %v is not the container's port", name, port.String())
		}
	}
	if !slices.Contains(app.ReadinessPaths(), c.ReadinessProbe.HTTPGet.Path) {
		t.Errorf("readiness path %q is not one of app.ReadinessPaths() %q", c.ReadinessProbe.HTTPGet.Path, app.ReadinessPaths())
	}
	if !slices.Contains(app.LivenessPaths(), c.LivenessProbe.HTTPGet.Path) {
		t.Errorf("liveness path %q is not one of app.LivenessPaths() %q", c.LivenessProbe.HTTPGet.Path, app.LivenessPaths())
	}
}

func checkKnative(t *testing.T, r rendering, w workload, c corev1.Container, cfg config.Config) {
	t.Helper()
	minScale := atoi(t, "min-scale", w.annotations["autoscaling.knative.dev/min-scale"])
	if minScale < 2 {
		t.Errorf("min-scale %d, want at least 2", minScale)
	}
	if got := w.annotations["autoscaling.knative.dev/initial-scale"]; got != strconv.Itoa(minScale) {
		t.Errorf("initial-scale %q, want min-scale %d", got, minScale)
	}
	if maxScale := atoi(t, "max-scale", w.annotations["autoscaling.knative.dev/max-scale"]); maxScale != 0 && maxScale < minScale {
		t.Errorf("max-scale %d below min-scale %d", maxScale, minScale)
	}
	ks := decode[knativeService](t, r.ofKind("serving.knative.dev/v1", "Service")[0])
	spec := ks.Spec.Template.Spec
	if spec.ContainerConcurrency == nil || spec.TimeoutSeconds == nil {
		t.Fatalf("revision sets no containerConcurrency or timeoutSeconds")
	}
	if time.Duration(*spec.TimeoutSeconds)*time.Second <= cfg.HTTP.RequestTimeout {
		t.Errorf("revision timeoutSeconds %d does not exceed REQUEST_TIMEOUT %s", *spec.TimeoutSeconds, cfg.HTTP.RequestTimeout)
	}
	// Fields Knative Serving rejects unless an operator turns them on.
	p := w.pod
	for name, set := range map[string]bool{
		"pod securityContext": p.SecurityContext != nil,
		"nodeSelector":        len(p.NodeSelector) > 0,
		"tolerations":         len(p.Tolerations) > 0,
		"initContainers":      len(p.InitContainers) > 0,
		"affinity":            p.Affinity != nil,
		"topologySpread":      len(p.TopologySpreadConstraints) > 0,
		"runtimeClassName":    p.RuntimeClassName != nil,
		"priorityClassName":   p.PriorityClassName != "",
	} {
		if set {
			t.Errorf("the Knative Service sets %s, which Knative disables by default", name)
		}
	}
	if cfg.HTTP.DrainDelay != 0 {
		t.Errorf("SHUTDOWN_DRAIN_DELAY %s in Knative mode; the queue-proxy drains", cfg.HTTP.DrainDelay)
	}
}

func checkPlain(t *testing.T, r rendering, w workload, c corev1.Container, cfg config.Config) {
	t.Helper()
	d := decode[appsv1.Deployment](t, r.ofKind("apps/v1", "Deployment")[0])
	if !subset(d.Spec.Selector.MatchLabels, w.labels) {
		t.Errorf("Deployment selector %v does not match its pods %v", d.Spec.Selector.MatchLabels, w.labels)
	}
	hpas := r.ofKind("autoscaling/v2", "HorizontalPodAutoscaler")
	switch {
	case len(hpas) == 1:
		h := decode[autoscalingv2.HorizontalPodAutoscaler](t, hpas[0])
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			t.Errorf("HPA minReplicas %v, want at least 2", h.Spec.MinReplicas)
		}
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != d.Name {
			t.Errorf("HPA scales %s %s, not the Deployment %s", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name, d.Name)
		}
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment sets replicas while an HPA owns them; every upgrade would reset the count")
		}
		if c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("HPA scales on CPU but the container requests none")
		}
	case len(hpas) > 1:
		t.Errorf("%d HPAs", len(hpas))
	default:
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("Deployment replicas %v, want at least 2", d.Spec.Replicas)
		}
	}
	if s := d.Spec.Strategy; s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxUnavailable == nil || s.RollingUpdate.MaxUnavailable.String() != "0" {
		t.Errorf("Deployment strategy %+v, want RollingUpdate with maxUnavailable 0", s)
	}
	p := w.pod
	if p.SecurityContext == nil || p.SecurityContext.RunAsNonRoot == nil || !*p.SecurityContext.RunAsNonRoot {
		t.Errorf("plain pods have no pod-level securityContext with runAsNonRoot")
	}
	spread := false
	for _, tsc := range p.TopologySpreadConstraints {
		if tsc.TopologyKey == "kubernetes.io/hostname" && tsc.LabelSelector != nil && subset(tsc.LabelSelector.MatchLabels, w.labels) {
			spread = true
		}
	}
	if !spread {
		t.Errorf("no topology spread over nodes that selects the web pods: %+v", p.TopologySpreadConstraints)
	}
	if cfg.HTTP.DrainDelay <= 0 {
		t.Errorf("SHUTDOWN_DRAIN_DELAY is 0 behind a plain Service: pods would refuse requests before endpoints drop them")
	}
	stop := cfg.HTTP.DrainDelay + cfg.HTTP.ShutdownTimeout
	if p.TerminationGracePeriodSeconds == nil {
		t.Errorf("plain pods set no terminationGracePeriodSeconds")
	} else if grace := time.Duration(*p.TerminationGracePeriodSeconds) * time.Second; grace <= stop {
		t.Errorf("terminationGracePeriodSeconds %s does not exceed drain delay + shutdown timeout %s", grace, stop)
	}

	svc := decode[corev1.Service](t, r.ofKind("v1", "Service")[0])
	if !subset(svc.Spec.Selector, w.labels) {
		t.Errorf("Service selector %v does not match the pods %v", svc.Spec.Selector, w.labels)
	}
	// Each Service port targets the container port of the same place: the
	// API's first, then the metrics port when there is one.
	if len(svc.Spec.Ports) != len(c.Ports) {
		t.Errorf("Service ports %+v, container ports %+v: want one each", svc.Spec.Ports, c.Ports)
	}
	for i, sp := range svc.Spec.Ports {
		if i < len(c.Ports) && sp.TargetPort.StrVal != c.Ports[i].Name && sp.TargetPort.IntVal != c.Ports[i].ContainerPort {
			t.Errorf("Service port %+v does not target the container port %+v", sp, c.Ports[i])
		}
	}
	pdbs := r.ofKind("policy/v1", "PodDisruptionBudget")
	if len(pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(pdbs))
	}
	pdb := decode[policyv1.PodDisruptionBudget](t, pdbs[0])
	if pdb.Spec.Selector == nil || !subset(pdb.Spec.Selector.MatchLabels, w.labels) {
		t.Errorf("PodDisruptionBudget selects %v, not the pods %v", pdb.Spec.Selector, w.labels)
	}
}

func checkServiceAccount(t *testing.T, r rendering, p corev1.PodSpec) {
	t.Helper()
	if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
		t.Errorf("web pods mount a service account token")
	}
	if o, ok := r.find("v1", "ServiceAccount", p.ServiceAccountName); ok {
		if o.Hook != nil {
			t.Errorf("the web pods' ServiceAccount %s is a hook; hooks are not part of the release", o.Name)
		}
		sa := decode[corev1.ServiceAccount](t, o)
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s does not set automountServiceAccountToken: false", sa.Name)
		}
	}
}

// checkWebSecret checks that the web pods' password Secret is the chart's
// own ordinary Secret, or one the chart leaves to the operator.
func checkWebSecret(t *testing.T, r rendering, name string, own bool) {
	t.Helper()
	o, rendered := r.find("v1", "Secret", name)
	switch {
	case own && !rendered:
		t.Errorf("the pods mount Secret %s, which the chart does not render", name)
	case own && o.Hook != nil:
		t.Errorf("Secret %s is a hook: Helm deletes it after the hook phase", name)
	case own:
		s := decode[corev1.Secret](t, o)
		if len(s.Data["password"])+len(s.StringData["password"]) == 0 {
			t.Errorf("Secret %s has no password", name)
		}
	case rendered:
		t.Errorf("the chart renders Secret %s although database.existingSecret names it", name)
	}
}

// checkMigrationJob checks the pre-install/pre-upgrade hook Job and that
// everything it needs exists before it runs.
func checkMigrationJob(t *testing.T, r rendering, image string, uid int64, ownSecret bool) (corev1.Container, map[string]string) {
	t.Helper()
	jobs := r.ofKind("batch/v1", "Job")
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs, want 1 (the migrations)", len(jobs))
	}
	o := jobs[0]
	h := o.Hook
	if h == nil {
		t.Fatalf("the migration Job is not a hook")
	}
	checkHook(t, h, []release.HookEvent{release.HookPreInstall, release.HookPreUpgrade},
		[]release.HookDeletePolicy{release.HookBeforeHookCreation, release.HookSucceeded})
	job := decode[batchv1.Job](t, o)
	if job.Spec.BackoffLimit == nil || job.Spec.ActiveDeadlineSeconds == nil || job.Spec.TTLSecondsAfterFinished == nil {
		t.Errorf("Job lacks backoffLimit, activeDeadlineSeconds or ttlSecondsAfterFinished: %+v", job.Spec)
	}
	p := job.Spec.Template.Spec
	if p.RestartPolicy != corev1.RestartPolicyNever && p.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("Job restartPolicy %q", p.RestartPolicy)
	}
	if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
		t.Errorf("Job pods mount a service account token")
	}
	if len(p.Containers) != 1 {
		t.Fatalf("Job has %d containers, want 1", len(p.Containers))
	}
	c := p.Containers[0]
	checkContainer(t, "migration Job", c, image, uid)
	if len(c.Args) < 1 || c.Args[0] != "migrate" || (len(c.Args) == 2 && c.Args[1] != "up") || len(c.Args) > 2 {
		t.Errorf("Job args %q, want migrate up", c.Args)
	}
	env, secret := checkEnv(t, "migration Job", c, p.Volumes)
	cfg := loadConfig(t, env)
	if time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second <= cfg.MigrateTimeout {
		t.Errorf("Job activeDeadlineSeconds %d does not exceed MIGRATE_TIMEOUT %s", *job.Spec.ActiveDeadlineSeconds, cfg.MigrateTimeout)
	}

	// What the Job uses must exist before it: an earlier hook of the same
	// events, or something the chart does not create at all.
	needs := map[string]string{"Secret": secret}
	if p.ServiceAccountName != "" {
		needs["ServiceAccount"] = p.ServiceAccountName
	}
	for kind, name := range needs {
		dep, rendered := r.find("v1", kind, name)
		switch {
		case !rendered && kind == "Secret" && ownSecret:
			t.Errorf("the Job mounts Secret %s, which the chart does not render", name)
		case !rendered:
			// Provided by the operator (existingSecret, an existing account).
		case dep.Hook == nil:
			t.Errorf("the Job uses %s %s, an ordinary resource that does not exist yet at pre-install", kind, name)
		default:
			checkHook(t, dep.Hook, h.Events, []release.HookDeletePolicy{release.HookBeforeHookCreation, release.HookSucceeded})
			if dep.Hook.Weight >= h.Weight {
				t.Errorf("%s %s hook weight %d is not below the Job's %d", kind, name, dep.Hook.Weight, h.Weight)
			}
			if kind == "ServiceAccount" {
				if sa := decode[corev1.ServiceAccount](t, dep); sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
					t.Errorf("hook ServiceAccount %s mounts its token", name)
				}
			}
		}
	}
	return c, env
}

func checkHook(t *testing.T, h *release.Hook, events []release.HookEvent, policies []release.HookDeletePolicy) {
	t.Helper()
	got := slices.Clone(h.Events)
	slices.Sort(got)
	want := slices.Clone(events)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s %s hook events %v, want %v", h.Kind, h.Name, got, want)
	}
	gotP := slices.Clone(h.DeletePolicies)
	slices.Sort(gotP)
	wantP := slices.Clone(policies)
	slices.Sort(wantP)
	if !slices.Equal(gotP, wantP) {
		t.Errorf("%s %s hook delete policies %v, want %v", h.Kind, h.Name, gotP, wantP)
	}
}

func checkTestPod(t *testing.T, r rendering, w workload, image string, uid int64) corev1.Container {
	t.Helper()
	pods := r.ofKind("v1", "Pod")
	if len(pods) != 1 || pods[0].Hook == nil {
		t.Fatalf("want one helm test Pod hook, got %d Pods", len(pods))
	}
	checkHook(t, pods[0].Hook, []release.HookEvent{release.HookTest},
		[]release.HookDeletePolicy{release.HookBeforeHookCreation, release.HookSucceeded})
	pod := decode[corev1.Pod](t, pods[0])
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("test Pod has %d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	checkContainer(t, "test Pod", c, image, uid)
	if len(c.Args) != 2 || c.Args[0] != "healthcheck" {
		t.Fatalf("test Pod args %q, want healthcheck URL", c.Args)
	}
	u, err := url.Parse(c.Args[1])
	if err != nil {
		t.Fatalf("test Pod URL: %v", err)
	}
	if host := w.serviceName + "." + namespace + ".svc.cluster.local"; u.Hostname() != host {
		t.Errorf("test Pod asks %s, not the service's address %s", u.Host, host)
	}
	if port := u.Port(); port != strconv.Itoa(w.servicePort) && !(port == "" && w.servicePort == 80) {
		t.Errorf("test Pod asks port %q, but the service answers on %d", port, w.servicePort)
	}
	if u.Path != "/user" {
		t.Errorf("test Pod asks %s, want /user", u.Path)
	}
	return c
}

func checkTrigger(t *testing.T, r rendering, w workload) (trigger, bool) {
	t.Helper()
	objs := r.ofKind("eventing.knative.dev/v1", "Trigger")
	if len(objs) == 0 {
		return trigger{}, false
	}
	tr := decode[trigger](t, objs[0])
	sub := tr.Spec.Subscriber
	if sub.Ref.Name != "" {
		if sub.Ref.APIVersion != w.serviceAPIVersion || sub.Ref.Kind != "Service" || sub.Ref.Name != w.serviceName {
			t.Errorf("Trigger subscriber %+v is not the service %s %s", sub.Ref, w.serviceAPIVersion, w.serviceName)
		}
		// Knative resolves a plain Service reference to port 80 only.
		if sub.Ref.APIVersion == "v1" && w.servicePort != 80 {
			t.Errorf("Trigger references Service %s, which Knative resolves to port 80, not %d", sub.Ref.Name, w.servicePort)
		}
	} else {
		u, err := url.Parse(sub.URI)
		if err != nil || u.Hostname() != w.serviceName+"."+namespace+".svc.cluster.local" || u.Port() != strconv.Itoa(w.servicePort) {
			t.Errorf("Trigger subscriber URI %q is not the Service %s port %d", sub.URI, w.serviceName, w.servicePort)
		}
	}
	if tr.Spec.Broker == "" || tr.Spec.Filter.Attributes["type"] == "" {
		t.Errorf("Trigger has no broker or type filter: %+v", tr.Spec)
	}
	return tr, true
}

func checkNetworkPolicy(t *testing.T, r rendering, w workload, c corev1.Container, cfg config.Config) {
	t.Helper()
	objs := r.ofKind("networking.k8s.io/v1", "NetworkPolicy")
	if len(objs) == 0 {
		return
	}
	np := decode[networkingv1.NetworkPolicy](t, objs[0])
	if !subset(np.Spec.PodSelector.MatchLabels, w.labels) {
		t.Errorf("NetworkPolicy selects %v, not the web pods %v", np.Spec.PodSelector.MatchLabels, w.labels)
	}
	db := false
	for _, e := range np.Spec.Egress {
		for _, p := range e.Ports {
			if p.Port != nil && int(p.Port.IntVal) == cfg.Database.Port {
				db = true
			}
		}
	}
	if !db {
		t.Errorf("NetworkPolicy allows no egress to the database port %d", cfg.Database.Port)
	}
	for _, in := range np.Spec.Ingress {
		var open []string
		for _, p := range in.Ports {
			if p.Port == nil {
				continue
			}
			i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool {
				return p.Port.StrVal == cp.Name || p.Port.IntVal == cp.ContainerPort
			})
			if i < 0 {
				t.Errorf("NetworkPolicy ingress port %s is not the container's", p.Port.String())
				continue
			}
			open = append(open, c.Ports[i].Name)
		}
		// With ports pinned, every port the pods serve must be open, or
		// Prometheus cannot scrape the metrics port.
		for _, cp := range c.Ports {
			if len(in.Ports) > 0 && !slices.Contains(open, cp.Name) {
				t.Errorf("NetworkPolicy ingress leaves container port %s closed", cp.Name)
			}
		}
	}
}

// binaryEnv is the chart's environment pointed at a real test database,
// the password in a file as the Secret volume would hold it.
func binaryEnv(t *testing.T, chartEnv map[string]string, db config.Database) map[string]string {
	t.Helper()
	env := maps.Clone(chartEnv)
	for k, v := range pgtest.Env(db) {
		// The chart's choice of prepared statements is what is tested.
		if k == "POSTGRES_PASSWORD" || k == "POSTGRES_PREPARED_STATEMENTS" {
			continue
		}
		env[k] = v
	}
	env["POSTGRES_PASSWORD_FILE"] = passwordFile(t, db.Password)
	// The chart's metrics and pprof ports would collide between parallel
	// cases and other tests on this machine: a free loopback port each.
	for _, k := range []string{"METRICS_ADDR", "DEBUG_ADDR"} {
		if env[k] != "" {
			env[k] = "127.0.0.1:" + freePort(t)
		}
	}
	return env
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// checkTelemetry checks what the chart adds to the OpenTelemetry
// settings: the namespace as a resource attribute, and pprof never on a
// port the pod declares (a container port can be reached from outside the
// pod; pprof is for kubectl port-forward only).
func checkTelemetry(t *testing.T, c corev1.Container, cfg config.Config, knative bool) {
	t.Helper()
	res, err := cfg.Telemetry.Resource()
	if err != nil {
		t.Fatalf("OTEL_RESOURCE_ATTRIBUTES: %v", err)
	}
	if res["k8s.namespace.name"] != namespace {
		t.Errorf("resource attribute k8s.namespace.name = %q, want the release namespace %q", res["k8s.namespace.name"], namespace)
	}
	for _, k := range []string{"service.version", "k8s.pod.name"} {
		if _, ok := res[k]; ok {
			t.Errorf("the chart sets resource attribute %s: the binary sets it, or the chart cannot know it", k)
		}
	}
	if knative && cfg.Telemetry.MetricsAddr != "" {
		t.Errorf("Knative mode sets METRICS_ADDR %q; /metrics must share the one port", cfg.Telemetry.MetricsAddr)
	}
	if a := cfg.Telemetry.DebugAddr; a != "" {
		_, port, _ := net.SplitHostPort(a)
		for _, p := range c.Ports {
			if port == strconv.Itoa(int(p.ContainerPort)) {
				t.Errorf("DEBUG_ADDR %q is container port %s", a, p.Name)
			}
		}
	}
}

func run(t *testing.T, args []string, env map[string]string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := cli.Run(ctx, "chart-test", args, env, &out, &out)
	return code, out.String()
}

// serve runs the web container's args through the binary's command line
// on a free port (Knative would set PORT) and waits until it listens.
func serve(t *testing.T, args []string, env map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	_ = ln.Close()
	env = maps.Clone(env)
	env["PORT"] = port
	ctx, cancel := context.WithCancel(context.Background())
	logs := new(testenv.Logs)
	done := make(chan int, 1)
	go func() { done <- cli.Run(ctx, "chart-test", args, env, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("web container args %q exited %d", args, code)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	base := "http://127.0.0.1:" + port
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("web container args %q exited %d at start:\n%s", args, code, logs.String())
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			_ = c.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("web container never listened on %s:\n%s", port, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get polls until the answer is not 503, since readiness is cached and the
// first check may race the pool's first connection.
func get(t *testing.T, u string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return resp.StatusCode
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deliver posts what the Trigger lets through to where it delivers: a
// binary-mode CloudEvent of the filtered type to the subscriber's URI.
func deliver(t *testing.T, base string, tr trigger) {
	t.Helper()
	// An absolute subscriber URI names the cluster address; keep its path.
	u, err := url.Parse(tr.Spec.Subscriber.URI)
	if err != nil {
		t.Fatalf("Trigger subscriber URI: %v", err)
	}
	uri := u.RequestURI()
	req, err := http.NewRequest(http.MethodPost, base+uri, strings.NewReader(`{"username":"chartcheck","email":"chartcheck@example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", "chart-test-1")
	req.Header.Set("Ce-Source", "/chart-test")
	for k, v := range tr.Spec.Filter.Attributes {
		req.Header.Set("Ce-"+k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("deliver event: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Errorf("an event the Trigger delivers (%v to %s) got %d: %s", tr.Spec.Filter.Attributes, uri, resp.StatusCode, body)
	}
}

// TestValuesRejected checks that bad values fail before anything renders,
// with an error naming the value.
func TestValuesRejected(t *testing.T) {
	ch := loadChart(t)
	for _, tc := range []struct {
		sets []string
		want string
	}{
		{[]string{"knative.minScale=1"}, "/knative/minScale"},
		{[]string{"knative.minScale=two"}, "/knative/minScale"},
		{[]string{"knative.maxScale=1"}, "/knative/maxScale"},
		{[]string{"knative.minScale=5", "knative.maxScale=3"}, "knative.maxScale"},
		{[]string{"knative.enabled=maybe"}, "/knative/enabled"},
		{[]string{"knative.timeoutSeconds=0"}, "/knative/timeoutSeconds"},
		{[]string{"plain.replicas=1"}, "/plain/replicas"},
		{[]string{"plain.autoscaling.minReplicas=1"}, "/plain/autoscaling/minReplicas"},
		{[]string{"plain.autoscaling.minReplicas=5", "plain.autoscaling.maxReplicas=4"}, "maxReplicas"},
		{[]string{"image.tag=bad:tag"}, "/image/tag"},
		{[]string{"image.tag=-leading-dash"}, "/image/tag"},
		{[]string{"image.tag=" + strings.Repeat("a", 129)}, "/image/tag"},
		{[]string{"image.digest=sha256:abc"}, "/image/digest"},
		{[]string{"image.repository=Registry/UPPER"}, "/image/repository"},
		{[]string{"image.pullPolicy=Sometimes"}, "/image/pullPolicy"},
		{[]string{"database.sslmode=prefer"}, "/database/sslmode"},
		{[]string{"database.sslmode=allow"}, "/database/sslmode"},
		{[]string{"database.port=70000"}, "/database/port"},
		{[]string{"database.port=5432x"}, "/database/port"},
		{[]string{"database.host="}, "/database/host"},
		{[]string{"database.existingSecret="}, "/database/password"},
		{[]string{"database.dialTimeout=2 seconds"}, "/database/dialTimeout"},
		{[]string{"app.logLevel=verbose"}, "/app/logLevel"},
		{[]string{"migrations.activeDeadlineSeconds=60"}, "activeDeadlineSeconds"},
		{[]string{"unknownKey=1"}, "unknownKey"},
		{[]string{"database.pasword=typo"}, "pasword"},
		{[]string{"knative.minscale=3"}, "minscale"},
		{[]string{"replicaCount=3"}, "replicaCount"},
		{[]string{"app.debugAddr=6060"}, "/app/debugAddr"},
		{[]string{"plain.metrics.port=8080"}, "plain.metrics.port"},
		{[]string{"plain.metrics.port=70000"}, "/plain/metrics/port"},
		{[]string{"plain.metrics.enabled=true"}, "enabled"},
		{[]string{"otel.protocol=grpc"}, "protocol"},
		{[]string{"otel.endpoint=otel-collector:4318"}, "/otel/endpoint"},
		{[]string{"otel.tracesEndpoint=grpc://collector:4317"}, "/otel/tracesEndpoint"},
		{[]string{"otel.tracesExporter=jaeger"}, "/otel/tracesExporter"},
		{[]string{"otel.metricsExporter=prometheus"}, "/otel/metricsExporter"},
		{[]string{"otel.sampler=probabilistic"}, "/otel/sampler"},
		{[]string{"otel.samplerArg=1.5"}, "/otel/samplerArg"},
		{[]string{"otel.samplerArg=half"}, "/otel/samplerArg"},
		{[]string{"otel.sdkDisabled=yes"}, "/otel/sdkDisabled"},
		{[]string{"otel.resourceAttributes.team=50%"}, "/otel/resourceAttributes"},
		{[]string{"otel.resourceAttributes.team=a b"}, "/otel/resourceAttributes"},
		{[]string{"monitoring.enabled=maybe"}, "/monitoring/enabled"},
		{[]string{"monitoring.interval=30 seconds"}, "/monitoring/interval"},
		{[]string{"monitoring.scrapeTimeout=10"}, "/monitoring/scrapeTimeout"},
		{[]string{"monitoring.serviceMonitor.enabled=true"}, "serviceMonitor"},
		{[]string{"monitoring.labels.release=1"}, "/monitoring/labels/release"},
		{[]string{"monitoring.rules.enabled=1"}, "/monitoring/rules/enabled"},
		{[]string{"monitoring.rules.availability.objective=100"}, "/monitoring/rules/availability/objective"},
		{[]string{"monitoring.rules.availability.objective=0"}, "/monitoring/rules/availability/objective"},
		{[]string{"monitoring.rules.latency.list.objective=101"}, "/monitoring/rules/latency/list/objective"},
		{[]string{"monitoring.rules.latency.create.objective=-1"}, "/monitoring/rules/latency/create/objective"},
		{[]string{"monitoring.rules.latency.list.thresholdSeconds=0.3"}, "/monitoring/rules/latency/list/thresholdSeconds"},
		{[]string{"monitoring.rules.latency.create.thresholdSeconds=250ms"}, "/monitoring/rules/latency/create/thresholdSeconds"},
		{[]string{"monitoring.rules.latency.create.thresholdSeconds=20"}, "/monitoring/rules/latency/create/thresholdSeconds"},
		{[]string{"monitoring.rules.alertLabels.severity=page"}, "/monitoring/rules/alertLabels"},
		{[]string{"monitoring.rules.alertLabels.bad-name=x"}, "bad-name"},
		{[]string{"monitoring.rules.latency.read.objective=99"}, "read"},
		// The connection budget: the message says the numbers and the ways out.
		{[]string{"database.maxConns=10"}, "up to 12 pods (knative.maxScale 10, plus knative.minScale 2 of the next revision during a rollout) × database.maxConns 10 + 2 for the migration Job = 122 connections, more than database.maxConnections 97: lower database.maxConns or knative.maxScale, or put a pooler in transaction mode in front (database.pooler.enabled"},
		{[]string{"database.maxConnections=61"}, "= 62 connections, more than database.maxConnections 61"},
		{[]string{"knative.maxScale=0"}, "knative.maxScale 0 lets Knative start any number of pods"},
		{[]string{"knative.enabled=false", "plain.replicas=19"}, "up to 20 pods (plain.replicas 19, plus 1 surge pod during a rollout) × database.maxConns 5 + 2 for the migration Job = 102 connections"},
		{[]string{"knative.enabled=false", "plain.autoscaling.enabled=true", "plain.autoscaling.maxReplicas=19"}, "lower database.maxConns or plain.autoscaling.maxReplicas, or put a pooler"},
		{[]string{"database.pooler.enabled=true"}, "set database.migrateHost"},
		{[]string{"-f=examples/values-pooler.yaml", "knative.maxScale=99"}, "× database.maxConns 10 = 1010 client connections, more than the pooler accepts (database.pooler.maxClientConnections 1000)"},
		{[]string{"-f=examples/values-pooler.yaml", "database.maxConnections=1"}, "/database/maxConnections"},
		{[]string{"database.pooler.mode=session"}, "mode"},
		{[]string{"database.migratePort=-1"}, "/database/migratePort"},
		{[]string{"database.migrateHost=not a host"}, "/database/migrateHost"},
		// Pod Security "restricted" cannot be switched off from values.
		{[]string{"podSecurityContext.runAsNonRoot=false"}, "/podSecurityContext/runAsNonRoot"},
		{[]string{"podSecurityContext.runAsUser=0"}, "/podSecurityContext/runAsUser"},
		{[]string{"podSecurityContext.seccompProfile.type=Unconfined"}, "/podSecurityContext/seccompProfile/type"},
		{[]string{"podSecurityContext.appArmorProfile.type=Unconfined"}, "/podSecurityContext/appArmorProfile/type"},
		{[]string{"podSecurityContext.seLinuxOptions.type=spc_t"}, "/podSecurityContext/seLinuxOptions/type"},
		{[]string{"podSecurityContext.seLinuxOptions.user=root"}, "user"},
		{[]string{"podSecurityContext.sysctls[0].name=kernel.msgmax", "podSecurityContext.sysctls[0].value=1"}, "sysctls"},
		{[]string{"podSecurityContext.windowsOptions.hostProcess=true"}, "windowsOptions"},
	} {
		t.Run(strings.Join(tc.sets, ","), func(t *testing.T) {
			_, err := render(ch, tc.sets)
			if err == nil {
				t.Fatalf("rendered; want an error naming %s", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name %s:\n%v", tc.want, err)
			}
		})
	}
}

// TestChartMetadata checks Chart.yaml and that the README's values table
// lists every value of values.yaml, so the documentation cannot lag.
func TestChartMetadata(t *testing.T) {
	ch := loadChart(t)
	md := ch.Metadata
	if md.APIVersion != chart.APIVersionV2 {
		t.Errorf("Chart.yaml apiVersion %q, want v2", md.APIVersion)
	}
	for v, want := range map[string]bool{"1.28.0": true, "1.35.0": true, "1.27.9": false} {
		if got := chartutil.IsCompatibleRange(md.KubeVersion, v); got != want {
			t.Errorf("kubeVersion %q accepts %s: %v, want %v", md.KubeVersion, v, got, want)
		}
	}
	if md.AppVersion == "" {
		t.Errorf("Chart.yaml has no appVersion (the default image tag)")
	}
	for _, f := range ch.Raw {
		if strings.HasSuffix(f.Name, ".go") {
			t.Errorf("the chart would ship %s", f.Name)
		}
	}

	// Kubernetes objects passed through whole get one README row.
	freeForm := map[string]bool{"resources": true, "migrations.resources": true, "podSecurityContext": true}
	var leaves []string
	var walk func(prefix string, v map[string]any)
	walk = func(prefix string, v map[string]any) {
		for k, x := range v {
			if m, ok := x.(map[string]any); ok && len(m) > 0 && !freeForm[prefix+k] {
				walk(prefix+k+".", m)
				continue
			}
			leaves = append(leaves, prefix+k)
		}
	}
	walk("", ch.Values)
	sort.Strings(leaves)

	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	documented := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			documented[m[1]] = true
		}
	}
	for _, k := range leaves {
		if !documented[k] {
			t.Errorf("chart/README.md has no row for %s", k)
		}
		delete(documented, k)
	}
	for k := range documented {
		t.Errorf("chart/README.md documents %s, which values.yaml does not have", k)
	}
}

func atoi(t *testing.T, what, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s %q: %v", what, s, err)
	}
	return n
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
