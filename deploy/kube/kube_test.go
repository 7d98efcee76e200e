//go:build kube

package kube

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const webPods = "app.kubernetes.io/instance=users,app.kubernetes.io/component=web"

// helmTestPassed is what `helm test` prints for a passing test Pod.
var helmTestPassed = regexp.MustCompile(`(?m)^Phase:\s+Succeeded$`)

// TestKubePlain installs the chart without Knative (a Deployment behind a
// Service) in a namespace that enforces Pod Security "restricted".
func TestKubePlain(t *testing.T) {
	k := newKube(t)
	const ns = "users"
	db := k.database("users")

	// 1. The README's Deploy commands: the namespace and the Secret first,
	// then helm install --wait. Every pod the chart makes must pass
	// Pod Security "restricted": the apiserver refuses a pod that does
	// not, and warns about a workload whose template does not, which fails
	// the command that sent it (kube.try).
	k.namespace(ns)
	k.kubectl("label", "namespace", ns,
		"pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest",
		"pod-security.kubernetes.io/warn=restricted", "pod-security.kubernetes.io/warn-version=latest")
	// The namespace's levels hold: a bare pod is refused, a bare
	// Deployment is warned about, and either fails its command here.
	if _, err := k.try(time.Minute, "", "kubectl", "-n", ns, "run", "bare", "--image=bare", "--dry-run=server"); err == nil || !strings.Contains(err.Error(), `violates PodSecurity "restricted:latest"`) {
		t.Fatalf("a bare pod in the restricted namespace: %v, want it refused", err)
	}
	if _, err := k.try(time.Minute, "", "kubectl", "-n", ns, "create", "deployment", "bare", "--image=bare", "--dry-run=server"); err == nil || !strings.Contains(err.Error(), "would violate PodSecurity") {
		t.Fatalf("a bare Deployment in the restricted namespace: %v, want its warning to fail the command", err)
	}
	k.kubectl("-n", ns, "create", "secret", "generic", "users-db", "--from-literal=password="+dbPassword)
	w := k.watch(ns)
	start := time.Now()
	k.run(6*time.Minute, "", k.helm, "install", "users", "./chart", "-n", ns,
		"-f", k.valuesFile(false, db, k.imageV1),
		"--set", "knative.enabled=false", "--set", "database.host="+dbHost, "--set", "image.tag="+k.imageV1.tag, "--wait")
	t.Logf("1. helm install --wait: %.1fs", time.Since(start).Seconds())
	k.rolloutOrder(w.stop(), k.imageV1.ref())
	if pods := k.readyPods(ns, webPods); len(pods) != 2 {
		t.Fatalf("after helm install --wait: Ready web pods %v, want 2", pods)
	}

	// 2. The pipeline's package and deploy jobs, as they run (registry
	// steps aside): helm upgrade --install --atomic --wait, then helm test
	// with the job's flags. The same image, now pinned by digest.
	out := k.deploy(ns, false, db, k.imageV1)
	if !helmTestPassed.MatchString(out) {
		t.Fatalf("the deploy job's helm test did not report Phase: Succeeded")
	}
	if pods := k.readyPods(ns, webPods); len(pods) != 2 {
		t.Fatalf("after the deploy job: Ready web pods %v, want 2", pods)
	}

	// 3. Through the Service.
	k.seedCurls(k.forward(ns, "svc/users", 80), "", "plain")

	// 4. The deploy job again, to an image with one more migration, under
	// reads and writes through the Service from inside the cluster.
	url := "http://users." + ns + ".svc.cluster.local"
	stop := k.load(ns, "load-upgrade", url, "", 1)
	w = k.watch(ns)
	k.deploy(ns, false, db, k.imageV2)
	seen := w.stop()
	s := stop()
	o := k.rolloutOrder(seen, k.imageV2.pinned())
	k.migratedBefore(db, o.firstWebSeen)
	pods := k.readyPods(ns, webPods)
	if len(pods) != 2 {
		t.Fatalf("after the upgrade: Ready web pods %v, want 2", pods)
	}
	k.allRun(ns, pods, k.imageV2.pinned())
	k.checkLoad(s, db)

	// 5. One web pod killed under load: the other serves, the ReplicaSet
	// replaces it.
	k.killOne(ns, url, "", webPods, db)

	// 6. helm uninstall: nothing of the release is left; the data is.
	k.uninstall(ns, "all,pdb,hpa,sa,secret,cm,networkpolicy,job", db)
}

// TestKubeKnative installs the chart in its default mode on real Knative
// Serving and reaches it through Traefik, the cluster's Knative ingress.
func TestKubeKnative(t *testing.T) {
	k := newKube(t)
	const ns = "users-kn"
	dbName := k.database("users_kn")
	host := "users." + ns + ".example.com" // config-domain: example.com
	revisionPods := "serving.knative.dev/service=users"

	// 1. The README's Knative install: helm install, then wait for the
	// Knative Service (Helm's --wait does not know the kind).
	k.namespace(ns)
	k.kubectl("-n", ns, "create", "secret", "generic", "users-db", "--from-literal=password="+dbPassword)
	w := k.watch(ns)
	start := time.Now()
	k.run(6*time.Minute, "", k.helm, "install", "users", "./chart", "-n", ns,
		"-f", k.valuesFile(true, dbName, k.imageV1),
		"--set", "database.host="+dbHost, "--set", "image.tag="+k.imageV1.tag)
	k.kubectl("-n", ns, "wait", "ksvc/users", "--for=condition=Ready", "--timeout=5m")
	t.Logf("1. helm install + ksvc Ready: %.1fs", time.Since(start).Seconds())
	k.rolloutOrder(w.stop(), k.imageV1.ref())
	if pods := k.readyPods(ns, revisionPods); len(pods) != 2 {
		t.Fatalf("ksvc Ready: Ready pods %v, want 2 (min-scale)", pods)
	}

	// 2. The pipeline's deploy job: upgrade, kubectl wait ksvc, helm test.
	out := k.deploy(ns, true, dbName, k.imageV1)
	if !helmTestPassed.MatchString(out) {
		t.Fatalf("the deploy job's helm test did not report Phase: Succeeded")
	}

	// 3. Through the route: Traefik with the Knative Service's host name.
	traefik := k.forward("traefik", "svc/traefik", 80)
	k.seedCurls(traefik, host, "knative")

	// The upgrade to a new revision under load: the new revision takes
	// traffic only once its two pods are Ready, and nothing fails.
	before := k.latestReady(ns)
	stop := k.load(ns, "load-upgrade", "http://traefik.traefik", host, 1)
	w = k.watch(ns, "ksvc")
	k.deploy(ns, true, dbName, k.imageV2)
	seen := w.stop()
	s := stop()
	o := k.rolloutOrder(seen, k.imageV2.pinned())
	k.migratedBefore(dbName, o.firstWebSeen)
	after := k.latestReady(ns)
	if after == before {
		t.Fatalf("the upgrade made no new revision (still %s)", after)
	}
	k.trafficAfterReady(seen, after, 2)
	pods := k.readyPods(ns, "serving.knative.dev/revision="+after)
	if len(pods) != 2 {
		t.Fatalf("revision %s: Ready pods %v, want 2", after, pods)
	}
	k.allRun(ns, pods, k.imageV2.pinned())
	k.checkLoad(s, dbName)

	// 5. One pod of the revision killed under load.
	k.killOne(ns, "http://traefik.traefik", host, "serving.knative.dev/revision="+after, dbName)

	// 6. helm uninstall: the Knative Service and everything Knative made
	// for it go; the data stays.
	k.uninstall(ns, "all,configurations.serving.knative.dev,revisions.serving.knative.dev,routes.serving.knative.dev,podautoscalers.autoscaling.internal.knative.dev,ingresses.networking.internal.knative.dev,serverlessservices.networking.internal.knative.dev,sa,secret,cm,job", dbName)
}

// migratedBefore requires the v2 image's migration to be recorded in the
// database before the first pod of that image appeared.
func (k *kube) migratedBefore(database string, firstPod time.Time) {
	k.t.Helper()
	got := k.psql(database, "SELECT to_char(migrated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM bun_migrations WHERE name = '"+k.migration+"'")
	at, err := time.Parse(time.RFC3339Nano, got)
	if err != nil {
		k.t.Fatalf("migration %s is not recorded in %s (%q)", k.migration, database, got)
	}
	k.t.Logf("migration %s applied at %s, first new pod seen %s", k.migration, at.Format(time.RFC3339Nano), firstPod.UTC().Format(time.RFC3339Nano))
	if !at.Before(firstPod) {
		k.t.Fatalf("migration %s was applied at %s, after the first new pod appeared (%s)", k.migration, at, firstPod)
	}
}

// allRun requires every named pod to run image img.
func (k *kube) allRun(namespace string, pods []string, img string) {
	k.t.Helper()
	for _, p := range pods {
		got := k.kubectl("-n", namespace, "get", "pod", p, "-o", `jsonpath={.spec.containers[?(@.name=="users")].image}`)
		if got != img {
			k.t.Fatalf("pod %s runs %q, want %q", p, got, img)
		}
	}
}

func (k *kube) latestReady(namespace string) string {
	k.t.Helper()
	return k.kubectl("-n", namespace, "get", "ksvc", "users", "-o", "jsonpath={.status.latestReadyRevisionName}")
}

// trafficAfterReady requires that the Knative Service routed traffic to
// revision only after want of its pods were Ready, as the watch saw them.
func (k *kube) trafficAfterReady(seen []watched, revision string, want int) {
	k.t.Helper()
	var switched time.Time
	ready := map[string]time.Time{}
	for _, s := range seen {
		switch s.kind {
		case "Service":
			for _, tr := range s.ksvc.Status.Traffic {
				if tr.RevisionName == revision && tr.Percent > 0 && switched.IsZero() {
					switched = s.at
				}
			}
		case "Pod":
			if s.pod.Labels["serving.knative.dev/revision"] != revision {
				continue
			}
			for _, c := range s.pod.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					if _, ok := ready[s.pod.Name]; !ok {
						ready[s.pod.Name] = s.at
					}
				}
			}
		}
	}
	if switched.IsZero() {
		k.t.Fatalf("the watch never saw traffic routed to %s", revision)
	}
	var before []string
	for name, at := range ready {
		if at.Before(switched) {
			before = append(before, fmt.Sprintf("%s at %s", name, at.Format("15:04:05.000")))
		}
	}
	slices.Sort(before)
	k.t.Logf("traffic to %s from %s; its pods Ready before that: %v", revision, switched.Format("15:04:05.000"), before)
	if len(before) < want {
		k.t.Fatalf("traffic went to %s with %d Ready pods (%v), want %d", revision, len(before), before, want)
	}
}

// killOne deletes one of the pods that match selector under load and
// waits for its replacement: no request may fail meanwhile.
func (k *kube) killOne(namespace, url, host, selector, database string) {
	k.t.Helper()
	stop := k.load(namespace, "load-kill", url, host, 1)
	before := k.readyPods(namespace, selector)
	if len(before) != 2 {
		k.t.Fatalf("Ready pods %v before the kill, want 2", before)
	}
	victim := before[0]
	start := time.Now()
	// The kubelet's way: SIGTERM, then the grace period; what an eviction,
	// a node drain or a scale-down does.
	k.kubectl("-n", namespace, "delete", "pod", victim, "--wait=false")
	waitFor(k.t, 3*time.Minute, "a replacement Ready pod", func() error {
		now := k.readyPods(namespace, selector)
		if len(now) != 2 || slices.Contains(now, victim) {
			return fmt.Errorf("Ready pods %v", now)
		}
		return nil
	})
	k.t.Logf("5. killed %s; replaced in %.1fs by %v", victim, time.Since(start).Seconds(), k.readyPods(namespace, selector))
	k.checkLoad(stop(), database)
}

// uninstall runs helm uninstall and requires every object of the release
// to be gone and the database to keep its schema and rows.
func (k *kube) uninstall(namespace, kinds, database string) {
	k.t.Helper()
	rows := k.psql(database, "SELECT count(*) FROM users")
	k.run(5*time.Minute, "", k.helm, "uninstall", "users", "-n", namespace, "--wait", "--timeout", "3m")
	waitFor(k.t, 2*time.Minute, "every object of the release gone", func() error {
		if left := k.releaseObjects(namespace, kinds); len(left) > 0 {
			return fmt.Errorf("left: %v", left)
		}
		return nil
	})
	if out := k.run(time.Minute, "", k.helm, "list", "-a", "-n", namespace, "-q"); strings.TrimSpace(out) != "" {
		k.t.Fatalf("helm list still shows %q", out)
	}
	if got := k.psql(database, "SELECT count(*) FROM users"); got != rows || rows == "0" {
		k.t.Fatalf("after uninstall the database holds %s users, want the %s it had", got, rows)
	}
	var names []string
	if err := json.Unmarshal([]byte(k.psql(database, "SELECT json_agg(name ORDER BY name) FROM bun_migrations")), &names); err != nil || !slices.Contains(names, k.migration) {
		k.t.Fatalf("after uninstall the migrations table holds %v (%v), want %s among them", names, err, k.migration)
	}
	k.t.Logf("6. uninstalled: nothing of the release left in %s; %s users and migrations %v still in the database", namespace, rows, names)
	k.kubectl("delete", "namespace", namespace, "--wait=false")
}
