//go:build kube

// The real-node test: the chart installed on a real single-node Kubernetes
// (../shared/tools/kube-node.sh, with Knative Serving and Traefik from
// kube-knative.sh), with the repository's own images, the README's Deploy
// commands and the GitLab pipeline's own package and deploy scripts. Pods
// really run; PostgreSQL runs in the cluster. .ci/kube builds the images,
// brings the node up, imports the images and runs
//
//	(cd deploy && go test -tags kube -count=1 -v -timeout 40m -run '^TestKube' ./kube/)
//
// with these variables (the test fails, never skips, without them):
//
//	KUBECONFIG         the node's admin kubeconfig
//	USERS_IMAGE_V1     the repository's image (repository:tag)
//	USERS_IMAGE_V2     the same build plus one new, backward-compatible migration
//	USERS_IMAGE_V*_DIGEST  their digests on the node, the pipeline's IMAGE_DIGEST
//	USERS_V2_MIGRATION that migration's name as bun records it (its number)
//	KUBELOAD_IMAGE     deploy/kube/kubeload, the in-cluster load
//	HELM               a helm binary of the version the pipeline pins
package kube

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const (
	dbNamespace = "users-db"
	dbHost      = "postgresql." + dbNamespace + ".svc.cluster.local"
	dbPassword  = "kube-e2e-not-a-secret"
)

// kube holds what every step needs: the tools, the images and the chart.
type kube struct {
	t         *testing.T
	root      string
	helm      string
	env       []string
	runID     string // unique per run: names in the database outlive a release
	imageV1   image
	imageV2   image
	migration string
	loadImage string
}

type image struct{ repository, tag, digest string }

func (i image) ref() string { return i.repository + ":" + i.tag }

// pinned is the reference the chart gives pods when the pipeline passes
// the digest.
func (i image) pinned() string {
	if i.digest == "" {
		return i.ref()
	}
	return i.repository + "@" + i.digest
}

func newKube(t *testing.T) *kube {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	k := &kube{t: t, root: root, runID: strconv.FormatInt(time.Now().Unix(), 36)}
	need := func(name string) string {
		v := os.Getenv(name)
		if v == "" {
			t.Fatalf("%s is not set: run the real-node test through .ci/kube", name)
		}
		return v
	}
	need("KUBECONFIG")
	k.helm = need("HELM")
	k.migration = need("USERS_V2_MIGRATION")
	k.loadImage = need("KUBELOAD_IMAGE")
	for _, p := range []struct {
		dst *image
		env string
	}{{&k.imageV1, "USERS_IMAGE_V1"}, {&k.imageV2, "USERS_IMAGE_V2"}} {
		ref := need(p.env)
		i := strings.LastIndexByte(ref, ':')
		if i < 0 {
			t.Fatalf("%s=%q: want repository:tag", p.env, ref)
		}
		p.dst.repository, p.dst.tag = ref[:i], ref[i+1:]
		// The digest the node's containerd holds the image under, which
		// the pipeline passes as IMAGE_DIGEST so pods run exactly it.
		p.dst.digest = os.Getenv(p.env + "_DIGEST")
	}
	// The pipeline's scripts call helm and kubectl by name.
	k.env = append(os.Environ(), "PATH="+filepath.Dir(k.helm)+string(os.PathListSeparator)+os.Getenv("PATH"))
	return k
}

// run runs a command and returns its stdout; a failure ends the test.
func (k *kube) run(timeout time.Duration, stdin string, name string, args ...string) string {
	k.t.Helper()
	out, err := k.try(timeout, stdin, name, args...)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

func (k *kube) try(timeout time.Duration, stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = k.root, k.env
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	k.t.Logf("$ %s %s (%.1fs)", name, strings.Join(args, " "), time.Since(start).Seconds())
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, tail(stdout.String()), tail(stderr.String()))
	}
	// A Pod Security warning is a failure, not noise: the apiserver sends
	// one for a workload whose pods the namespace's level would refuse.
	if strings.Contains(stderr.String(), "would violate PodSecurity") {
		return stdout.String(), fmt.Errorf("%s %s: a Pod Security warning:\n%s", name, strings.Join(args, " "), tail(stderr.String()))
	}
	return stdout.String(), nil
}

func tail(s string) string {
	if len(s) > 6000 {
		return "…" + s[len(s)-6000:]
	}
	return s
}

func (k *kube) kubectl(args ...string) string {
	k.t.Helper()
	return k.run(3*time.Minute, "", "kubectl", args...)
}

// apply applies manifests given as YAML.
func (k *kube) apply(manifests string) {
	k.t.Helper()
	k.run(time.Minute, manifests, "kubectl", "apply", "-f", "-")
}

// psql runs SQL in the cluster's PostgreSQL and returns the unaligned rows.
func (k *kube) psql(database, sql string) string {
	k.t.Helper()
	return strings.TrimSpace(k.run(time.Minute, "", "kubectl", "-n", dbNamespace, "exec", "deploy/postgresql", "--",
		"psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", "users", "-d", database, "-tAc", sql))
}

// database starts PostgreSQL in its own namespace (once) and creates a
// fresh database for this run, named base_<run>, so every run migrates
// from nothing. It stays outside the release's namespace, as a
// managed database would, so uninstalling the release cannot touch it.
func (k *kube) database(base string) string {
	k.t.Helper()
	name := base + "_" + k.runID
	if _, err := k.try(10*time.Second, "", "kubectl", "get", "namespace", dbNamespace); err != nil {
		k.apply(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Secret
metadata: {name: postgresql, namespace: %[1]s}
stringData: {password: %[2]s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: postgresql, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: postgresql}}
  template:
    metadata: {labels: {app: postgresql}}
    spec:
      automountServiceAccountToken: false
      containers:
      - name: postgres
        image: docker.io/library/postgres:15
        imagePullPolicy: Never
        env:
        - {name: POSTGRES_USER, value: users}
        - {name: POSTGRES_DB, value: users}
        - name: POSTGRES_PASSWORD
          valueFrom: {secretKeyRef: {name: postgresql, key: password}}
        ports: [{containerPort: 5432}]
        readinessProbe:
          exec: {command: [pg_isready, -U, users, -d, users, -h, 127.0.0.1]}
          periodSeconds: 1
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: postgresql, namespace: %[1]s}
spec:
  selector: {app: postgresql}
  ports: [{port: 5432, targetPort: 5432}]
`, dbNamespace, dbPassword))
		k.run(3*time.Minute, "", "kubectl", "-n", dbNamespace, "rollout", "status", "deploy/postgresql", "--timeout=150s")
		// The entrypoint restarts the server once after initdb: wait for
		// the final one.
		waitFor(k.t, time.Minute, "PostgreSQL accepts queries", func() error {
			_, err := k.try(10*time.Second, "", "kubectl", "-n", dbNamespace, "exec", "deploy/postgresql", "--",
				"psql", "-X", "-U", "users", "-d", "users", "-h", "127.0.0.1", "-tAc", "SELECT 1")
			return err
		})
	}
	k.psql("users", "CREATE DATABASE "+name)
	return name
}

// namespace makes a new namespace, deleting what a failed run left.
func (k *kube) namespace(name string) {
	k.t.Helper()
	k.run(5*time.Minute, "", "kubectl", "delete", "namespace", name, "--ignore-not-found", "--wait=true", "--timeout=4m")
	k.kubectl("create", "namespace", name)
}

// valuesFile writes the environment's values, as the pipeline's HELM_VALUES
// file variable holds them: where the database is and that the images are
// local (nothing can be pulled on the node).
func (k *kube) valuesFile(knative bool, dbName string, img image) string {
	k.t.Helper()
	v := map[string]any{
		"knative":  map[string]any{"enabled": knative},
		"image":    map[string]any{"repository": img.repository, "pullPolicy": "Never"},
		"database": map[string]any{"host": dbHost, "name": dbName, "sslmode": "disable"},
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		k.t.Fatal(err)
	}
	f := filepath.Join(k.t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		k.t.Fatal(err)
	}
	return f
}

// ---------------------------------------------------------------- watches

// watched is one object as a watch saw it, with the time it arrived.
type watched struct {
	at   time.Time
	kind string // Pod, Job or Service (Knative's)
	pod  corev1.Pod
	job  batchv1.Job
	ksvc ksvc
}

// ksvc is the part of a Knative Service's status the test reads.
type ksvc struct {
	Status struct {
		LatestReadyRevisionName string `json:"latestReadyRevisionName"`
		Traffic                 []struct {
			RevisionName string `json:"revisionName"`
			Percent      int    `json:"percent"`
		} `json:"traffic"`
	} `json:"status"`
}

// watch records every change to the namespace's pods and jobs from now on,
// so the order of the migration and the web pods is read off the cluster
// itself (a succeeded hook Job is deleted straight away, so a look
// afterwards would find nothing).
type watch struct {
	mu     sync.Mutex
	seen   []watched
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// background starts kubectl args, ended with ctx, and returns it and its
// output; the caller reads the output to its end and then waits for it.
func (k *kube) background(ctx context.Context, args ...string) (*exec.Cmd, io.Reader) {
	k.t.Helper()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = k.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		k.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	return cmd, out
}

func (k *kube) watch(namespace string, kinds ...string) *watch {
	k.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{cancel: cancel}
	for _, kind := range append([]string{"pods", "jobs"}, kinds...) {
		cmd, out := k.background(ctx, "-n", namespace, "get", kind, "--watch", "--output-watch-events", "-o", "json")
		w.done.Add(1)
		go func() {
			defer w.done.Done()
			dec := json.NewDecoder(out)
			for {
				var ev struct {
					Type   string          `json:"type"`
					Object json.RawMessage `json:"object"`
				}
				if err := dec.Decode(&ev); err != nil {
					_ = cmd.Wait()
					return
				}
				s := watched{at: time.Now()}
				var err error
				switch kind {
				case "pods":
					s.kind = "Pod"
					err = json.Unmarshal(ev.Object, &s.pod)
				case "jobs":
					s.kind = "Job"
					err = json.Unmarshal(ev.Object, &s.job)
				default:
					s.kind = "Service"
					err = json.Unmarshal(ev.Object, &s.ksvc)
				}
				if err == nil {
					w.mu.Lock()
					w.seen = append(w.seen, s)
					w.mu.Unlock()
				}
			}
		}()
	}
	// Let both watches list what exists before the caller acts.
	time.Sleep(2 * time.Second)
	return w
}

func (w *watch) stop() []watched {
	w.cancel()
	w.done.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// order is what the watch proves about one rollout: when the migration Job
// completed (the cluster's time and ours), the exit code of its pod, and
// when the first pod of the new web image was created.
type order struct {
	jobComplete     time.Time // status.completionTime
	jobCompleteSeen time.Time
	exitCode        int32
	firstWeb        time.Time // creationTimestamp of the first new web pod
	firstWebSeen    time.Time
	firstWebName    string
}

func (k *kube) rolloutOrder(seen []watched, webImage string) order {
	k.t.Helper()
	o := order{exitCode: -1}
	for _, s := range seen {
		switch s.kind {
		case "Job":
			if s.job.Status.Succeeded > 0 && o.jobCompleteSeen.IsZero() {
				o.jobCompleteSeen = s.at
				if s.job.Status.CompletionTime != nil {
					o.jobComplete = s.job.Status.CompletionTime.Time
				}
			}
		case "Pod":
			p := s.pod
			switch {
			case p.Labels["app.kubernetes.io/component"] == "migrate":
				for _, c := range p.Status.ContainerStatuses {
					if c.State.Terminated != nil {
						o.exitCode = c.State.Terminated.ExitCode
					}
				}
			case p.Labels["app.kubernetes.io/component"] == "web" && usesImage(p, webImage) && o.firstWebSeen.IsZero():
				o.firstWebSeen, o.firstWeb, o.firstWebName = s.at, p.CreationTimestamp.Time, p.Name
			}
		}
	}
	k.t.Logf("rollout: migration Job completed %s (seen %s), pod exit code %d; first web pod %s created %s (seen %s)",
		o.jobComplete.Format(time.RFC3339), o.jobCompleteSeen.Format(time.RFC3339Nano), o.exitCode,
		o.firstWebName, o.firstWeb.Format(time.RFC3339), o.firstWebSeen.Format(time.RFC3339Nano))
	switch {
	case o.jobCompleteSeen.IsZero():
		k.t.Fatal("the watch never saw the migration Job succeed")
	case o.exitCode != 0:
		k.t.Fatalf("the migration pod's exit code is %d, want 0", o.exitCode)
	case o.firstWebSeen.IsZero():
		k.t.Fatalf("the watch never saw a web pod running %s", webImage)
	case !o.jobCompleteSeen.Before(o.firstWebSeen):
		k.t.Fatalf("web pod %s appeared before the migration Job completed", o.firstWebName)
	case o.firstWeb.Before(o.jobComplete):
		// Both are the API server's clock, to the second.
		k.t.Fatalf("web pod %s was created at %s, before the migration completed at %s", o.firstWebName, o.firstWeb, o.jobComplete)
	}
	return o
}

func usesImage(p corev1.Pod, img string) bool {
	return slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Image == img })
}

// readyPods returns the names of the Ready pods that match selector.
func (k *kube) readyPods(namespace, selector string) []string {
	k.t.Helper()
	var list corev1.PodList
	if err := json.Unmarshal([]byte(k.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json")), &list); err != nil {
		k.t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				names = append(names, p.Name)
			}
		}
	}
	slices.Sort(names)
	return names
}

// ---------------------------------------------------------------- HTTP

// forward runs kubectl port-forward to target on a free loopback port and
// returns the base URL.
func (k *kube) forward(namespace, target string, port int) string {
	k.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "kubectl", "-n", namespace, "port-forward", "--address", "127.0.0.1", target, "0:"+strconv.Itoa(port))
	cmd.Env = k.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		k.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case p := <-found:
		return "http://127.0.0.1:" + p
	case <-time.After(30 * time.Second):
		k.t.Fatalf("kubectl port-forward %s: no port after 30 s: %s", target, stderr.String())
		return ""
	}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func call(t *testing.T, method, url, host string, header map[string]string, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 15 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// seedCurls runs the seed's three curls, a POST listed by a GET and a
// CloudEvent delivered twice that creates its user once.
func (k *kube) seedCurls(base, host, tag string) {
	t := k.t
	t.Helper()
	for _, c := range []struct{ path, want string }{
		{"/-/healthy", "{}"},
		{"/-/ready", "{}"},
	} {
		a := call(t, http.MethodGet, base+c.path, host, nil, "")
		if a.status != 200 || strings.TrimSpace(a.body) != c.want {
			t.Fatalf("GET %s: %d %q, want 200 %s", c.path, a.status, a.body, c.want)
		}
	}
	list := func() []map[string]any {
		a := call(t, http.MethodGet, base+"/user", host, nil, "")
		var users []map[string]any
		if a.status != 200 || json.Unmarshal([]byte(a.body), &users) != nil {
			t.Fatalf("GET /user: %d %q, want 200 and a JSON array", a.status, a.body)
		}
		return users
	}
	count := func(name string) int {
		return len(slices.DeleteFunc(list(), func(u map[string]any) bool { return u["username"] != name }))
	}
	list()
	tag += "-" + k.runID
	name := "seed-" + tag
	a := call(t, http.MethodPost, base+"/user", host, map[string]string{"Content-Type": "application/json"},
		fmt.Sprintf(`{"username": %q, "email": "%s@example.com"}`, name, name))
	if a.status != 201 {
		t.Fatalf("POST /user: %d %s, want 201", a.status, a.body)
	}
	if n := count(name); n != 1 {
		t.Fatalf("GET /user lists %d users named %s after the POST, want 1", n, name)
	}
	event := "event-" + tag
	var replies []string
	for range 2 {
		a := call(t, http.MethodPost, base+"/", host, map[string]string{
			"Ce-Specversion": "1.0",
			"Ce-Type":        "com.example.user.create",
			"Ce-Source":      "/e2e/kube",
			"Ce-Id":          event,
			"Content-Type":   "application/json",
		}, fmt.Sprintf(`{"username": %q, "email": "%s@example.com"}`, event, event))
		if a.status != 200 || a.header.Get("Ce-Type") != "com.example.user.created" {
			t.Fatalf("CloudEvent to POST /: %d %v %s, want 200 and a com.example.user.created reply", a.status, a.header, a.body)
		}
		replies = append(replies, a.header.Get("Ce-Id")+" "+a.body)
	}
	if replies[0] != replies[1] {
		t.Fatalf("the redelivery got another reply:\n%s\n%s", replies[0], replies[1])
	}
	if n := count(event); n != 1 {
		t.Fatalf("the event delivered twice created %d users, want 1", n)
	}
	// Whichever pod answers has served requests by now (probes at least)
	// and reports itself ready.
	m := call(t, http.MethodGet, base+"/metrics", host, nil, "")
	if m.status != 200 || !strings.Contains(m.body, "http_server_request_duration_seconds_count{") ||
		!regexp.MustCompile(`(?m)^users_ready\{[^}]*\} 1$`).MatchString(m.body) {
		t.Fatalf("GET /metrics: %d, without request counts or users_ready 1:\n%.3000s", m.status, m.body)
	}
	t.Logf("through %s (Host %q): healthy, ready, list, create+list, a CloudEvent twice → one user, /metrics", base, host)
}

// ---------------------------------------------------------------- load

type loadStats struct {
	ReadsOK      int      `json:"reads_ok"`
	ReadsFailed  int      `json:"reads_failed"`
	WritesOK     int      `json:"writes_ok"`
	WritesFailed int      `json:"writes_failed"`
	CreatedIDs   []int64  `json:"created_ids"`
	Failures     []string `json:"failures"`
	Stopped      bool     `json:"stopped"`
	// appErrors are the web pods' warning and error log lines while the
	// load ran, printed if it failed: which error a 503 was.
	appErrors []string
}

// load starts kubeload in a pod of namespace against url (with Host
// host) and returns a function that stops it and returns its counts.
func (k *kube) load(namespace, name, url, host string, writers int) func() loadStats {
	k.t.Helper()
	k.apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[2]s
  namespace: %[1]s
  labels: {app: kubeload}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: load
    image: %[3]s
    imagePullPolicy: Never
    args: [-url, %[4]s, -host, %[5]q, -readers, "2", -writers, "%[6]d", -prefix, %[2]s-%[7]s]
    ports: [{containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /stats, port: 8080}
      periodSeconds: 1
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
`, namespace, name, k.loadImage, url, host, writers, k.runID))
	k.run(2*time.Minute, "", "kubectl", "-n", namespace, "wait", "pod/"+name, "--for=condition=Ready", "--timeout=90s")
	ctl := k.forward(namespace, "pod/"+name, 8080)
	appErrors := k.follow(namespace, webPods, `"level":"(WARN|ERROR)"`)
	get := func(path string) loadStats {
		a := call(k.t, http.MethodGet, ctl+path, "", nil, "")
		var s loadStats
		if a.status != 200 || json.Unmarshal([]byte(a.body), &s) != nil {
			k.t.Fatalf("kubeload %s: %d %s", path, a.status, a.body)
		}
		return s
	}
	// Wait for the first answers, so the load is steady before the caller acts.
	waitFor(k.t, time.Minute, "the load's first answers", func() error {
		if s := get("/stats"); s.ReadsOK == 0 || writers > 0 && s.WritesOK == 0 {
			return fmt.Errorf("%+v", s)
		}
		return nil
	})
	return func() loadStats {
		k.t.Helper()
		s := get("/stop")
		k.kubectl("-n", namespace, "delete", "pod", name, "--wait=false")
		s.appErrors = appErrors()
		k.t.Logf("load %s: %d reads ok, %d failed; %d writes ok, %d failed", name, s.ReadsOK, s.ReadsFailed, s.WritesOK, s.WritesFailed)
		for _, f := range s.Failures {
			k.t.Log("  " + f)
		}
		return s
	}
}

// follow collects the lines of the logs of namespace's pods matching
// selector (the ones running now) that match re, until the returned
// function is called; it returns them.
func (k *kube) follow(namespace, selector, re string) func() []string {
	k.t.Helper()
	match := regexp.MustCompile(re)
	ctx, cancel := context.WithCancel(context.Background())
	cmd, out := k.background(ctx, "-n", namespace, "logs", "--follow", "--selector", selector,
		"--all-containers", "--prefix", "--timestamps", "--since=1s", "--max-log-requests=20")
	// lines is the reader's until done is closed.
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if len(lines) < 100 && match.MatchString(sc.Text()) {
				lines = append(lines, sc.Text())
			}
		}
	}()
	stop := func() []string {
		cancel()
		<-done
		_ = cmd.Wait()
		return lines
	}
	k.t.Cleanup(func() { stop() })
	return stop
}

// checkLoad requires no failed request and every 201 to be in the database.
func (k *kube) checkLoad(s loadStats, database string) {
	k.t.Helper()
	if s.ReadsFailed+s.WritesFailed > 0 {
		// What the pods and PostgreSQL said meanwhile, so a failure that
		// does not come back locally can be read from this log.
		for _, l := range s.appErrors {
			k.t.Log("  web pod: " + l)
		}
		if out, err := k.try(30*time.Second, "", "kubectl", "-n", dbNamespace, "logs", "deploy/postgresql", "--since=10m", "--timestamps"); err == nil {
			k.t.Log("PostgreSQL's log, the last 10 minutes:\n" + out)
		}
		k.t.Fatalf("%d reads and %d writes failed (first: %v)", s.ReadsFailed, s.WritesFailed, s.Failures)
	}
	if s.ReadsOK == 0 || s.WritesOK == 0 {
		k.t.Fatalf("no load went through: %+v", s)
	}
	ids := make([]string, len(s.CreatedIDs))
	for i, id := range s.CreatedIDs {
		ids[i] = strconv.FormatInt(id, 10)
	}
	got := k.psql(database, "SELECT count(*) FROM users WHERE id = ANY('{"+strings.Join(ids, ",")+"}'::bigint[])")
	if got != strconv.Itoa(len(ids)) {
		k.t.Fatalf("%s of the %d users answered 201 are in the database", got, len(ids))
	}
	k.t.Logf("all %d users answered 201 are in the database", len(ids))
}

// ---------------------------------------------------------------- pipeline

// job is what the test reads of one .gitlab-ci.yml job.
type job struct {
	Variables map[string]string `json:"variables"`
	Script    []string          `json:"script"`
}

func (k *kube) job(name string) job {
	k.t.Helper()
	b, err := os.ReadFile(filepath.Join(k.root, ".gitlab-ci.yml"))
	if err != nil {
		k.t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := yaml.Unmarshal(b, &top); err != nil {
		k.t.Fatal(err)
	}
	var j job
	if err := json.Unmarshal(top[name], &j); err != nil || len(j.Script) == 0 {
		k.t.Fatalf(".gitlab-ci.yml has no job %s with a script (%v)", name, err)
	}
	return j
}

// registry reports the script lines that talk to the GitLab registry
// (pushing the chart, and checking the signatures the sign job left there
// with cosign) or pick the GitLab agent's context: the only lines replaced
// here, by the node's local images and the node's kubeconfig. Signing and
// verifying are run for real against a local registry by
// scripts/sign-local.sh (docs/answers.md).
var registry = regexp.MustCompile(`helm registry login|helm push|kubectl config use-context|cosign (login|verify)`)

// script runs job's script lines as GitLab's runner does (one bash, exit on
// the first failing line), with variables set like the pipeline's.
func (k *kube) script(name string, vars map[string]string) string {
	k.t.Helper()
	j := k.job(name)
	var sh strings.Builder
	sh.WriteString("set -eo pipefail\n")
	for _, line := range j.Script {
		if registry.MatchString(line) {
			lines := strings.Split(line, "\n")
			kept := slices.DeleteFunc(lines, func(l string) bool { return registry.MatchString(l) })
			k.t.Logf("%s: %d registry line(s) left out", name, len(lines)-len(kept))
			line = strings.Join(kept, "\n")
		}
		sh.WriteString(line + "\n")
	}
	env := []string{}
	for name, v := range j.Variables {
		env = append(env, name+"="+v)
	}
	for name, v := range vars {
		env = append(env, name+"="+v)
	}
	cmd := exec.Command("bash", "-c", sh.String())
	cmd.Dir = k.root
	cmd.Env = append(slices.Clone(k.env), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	k.t.Logf("%s script (%.1fs):\n%s", name, time.Since(start).Seconds(), tail(out.String()))
	if err != nil {
		k.t.Fatalf("%s script: %v", name, err)
	}
	return out.String()
}

// packageChart runs package:chart's script for image img and returns the
// chart archive and its version, as deploy receives them in chart.env.
func (k *kube) packageChart(img image) (dir, name, version string) {
	k.t.Helper()
	dist := filepath.Join(k.root, "dist")
	k.t.Cleanup(func() { _ = os.RemoveAll(dist) })
	k.script("package:chart", map[string]string{
		"CI_COMMIT_TAG":       "",
		"CI_COMMIT_SHORT_SHA": "e2e" + img.tag,
		"IMAGE_TAG":           img.tag,
		"IMAGE_DIGEST":        img.digest,
	})
	env, err := os.ReadFile(filepath.Join(k.root, "chart.env"))
	if err != nil {
		k.t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(k.root, "chart.env"))
	m := regexp.MustCompile(`(?m)^CHART_VERSION=(.+)$`).FindSubmatch(env)
	if m == nil {
		k.t.Fatalf("chart.env has no CHART_VERSION: %s", env)
	}
	version = string(m[1])
	return dist, "users-" + version + ".tgz", version
}

// deploy runs the deploy job's script for img into namespace.
func (k *kube) deploy(namespace string, knative bool, dbName string, img image) string {
	k.t.Helper()
	dir, archive, version := k.packageChart(img)
	return k.script(".deploy", map[string]string{
		"KUBE_CONTEXT":        "kube-node",
		"CI_ENVIRONMENT_NAME": "kube-e2e",
		"KUBE_NAMESPACE":      namespace,
		"CHART_REPOSITORY":    dir,
		"CHART_NAME":          archive,
		"CHART_VERSION":       version,
		"CI_REGISTRY_IMAGE":   img.repository,
		"IMAGE_TAG":           img.tag,
		"IMAGE_DIGEST":        img.digest,
		"HELM_VALUES":         k.valuesFile(knative, dbName, img),
	})
}

// ---------------------------------------------------------------- helpers

func waitFor(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(time.Second)
	}
}

// releaseObjects lists what is left in namespace that belongs to release
// users, by the chart's labels and by Helm's own ownership annotation.
func (k *kube) releaseObjects(namespace string, kinds string) []string {
	k.t.Helper()
	var list struct {
		Items []struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name        string            `json:"name"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(k.kubectl("-n", namespace, "get", kinds, "-o", "json")), &list); err != nil {
		k.t.Fatal(err)
	}
	var left []string
	for _, it := range list.Items {
		m := it.Metadata
		if m.Labels["app.kubernetes.io/instance"] == "users" || m.Annotations["meta.helm.sh/release-name"] == "users" ||
			m.Labels["serving.knative.dev/service"] == "users" || m.Labels["owner"] == "helm" {
			left = append(left, it.Kind+"/"+m.Name)
		}
	}
	return left
}
