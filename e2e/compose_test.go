//go:build e2e

// Package e2e runs the local stack the way the README tells a user to:
// docker compose in the repository root, then the seed's curls. It needs a
// Docker-compatible engine, so it sits behind the e2e build tag and CI runs
// it from .ci/e2e:
//
//	go test -tags e2e -count=1 -v ./e2e/
//
// It uses its own compose project (users-e2e), so it never touches a
// developer's running stack or its data; it does need the API's host port
// (APP_PORT, 8080 by default) to be free.
package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	goversion "go/version"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/users/internal/testenv"
)

const (
	project = "users-e2e"
	// The budget from `docker compose up -d --wait` to answering curls.
	upBudget = 60 * time.Second
	// The largest image a platform team would accept: 20 MiB until the
	// OpenTelemetry SDK with its OTLP and Prometheus exporters (issue 12)
	// added 9.6 MB of binary, measured in docs/performance.md
	// ("Observability"); the image is 25.6 MB with them.
	maxImageBytes = 26 << 20
	// The distroless nonroot user.
	nonroot = "65532"
)

// stack runs docker and docker compose for one project in the repository root.
type stack struct {
	t    *testing.T
	root string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "compose.yaml")); err != nil {
		t.Fatalf("no compose.yaml in the repository root: %v", err)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("the e2e test needs the docker CLI and an engine (on the offline boxes: ../shared/tools/containers.sh up && eval \"$(../shared/tools/containers.sh env)\")")
	}
	return &stack{t: t, root: root}
}

// run runs a command in the repository root and returns its stdout; a
// failure ends the test with the command's stderr.
func (s *stack) run(timeout time.Duration, name string, args ...string) string {
	s.t.Helper()
	out, err := s.try(timeout, name, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *stack) try(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func (s *stack) compose(timeout time.Duration, args ...string) string {
	s.t.Helper()
	return s.run(timeout, "docker", append([]string{"compose", "-p", project}, args...)...)
}

// leftovers lists the project's containers, volumes and networks.
func (s *stack) leftovers() []string {
	s.t.Helper()
	filter := "label=com.docker.compose.project=" + project
	var left []string
	for _, kind := range []string{"container", "volume", "network"} {
		args := []string{kind, "ls", "-q", "--filter", filter}
		if kind == "container" {
			args = []string{"ps", "-a", "-q", "--filter", filter}
		}
		for _, id := range strings.Fields(s.run(time.Minute, "docker", args...)) {
			left = append(left, kind+" "+id)
		}
	}
	return left
}

func TestCompose(t *testing.T) {
	s := newStack(t)
	// A run that was killed may have left its stack behind.
	s.compose(2*time.Minute, "down", "-v", "--remove-orphans")

	start := time.Now()
	s.compose(15*time.Minute, "build")
	t.Logf("docker compose build: %s", time.Since(start).Round(100*time.Millisecond))

	finished := false
	t.Cleanup(func() {
		if finished {
			return
		}
		if out, err := s.try(time.Minute, "docker", "compose", "-p", project, "logs", "--no-color"); err == nil {
			t.Logf("logs of the failed run:\n%s", out)
		}
		if _, err := s.try(2*time.Minute, "docker", "compose", "-p", project, "down", "-v", "--remove-orphans"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	start = time.Now()
	// --wait-timeout holds the stack to the budget: db healthy,
	// migrations applied, app healthy (its readiness check passes).
	s.compose(upBudget+30*time.Second, "up", "-d", "--wait", "--wait-timeout", strconv.Itoa(int(upBudget.Seconds())))
	up := time.Since(start)
	t.Logf("docker compose up -d --wait: %s", up.Round(100*time.Millisecond))
	if up > upBudget {
		t.Errorf("docker compose up -d --wait took %s, more than %s", up, upBudget)
	}

	base := "http://" + publishedAddr(t, s)

	t.Run("seed curls", func(t *testing.T) {
		// The seed README's three curls, right after --wait returns: no retries.
		for _, c := range []struct {
			path  string
			check func(t *testing.T, body []byte)
		}{
			{"/-/healthy", emptyObject},
			{"/-/ready", emptyObject},
			{"/user", jsonArray},
		} {
			status, body := get(t, base+c.path)
			if status != http.StatusOK {
				t.Errorf("GET %s: status %d, want 200; body %s", c.path, status, body)
				continue
			}
			c.check(t, body)
		}
	})

	t.Run("POST then GET /user", func(t *testing.T) {
		name := fmt.Sprintf("e2e_%d", time.Now().UnixNano())
		req := fmt.Sprintf(`{"username":%q,"email":%q}`, name, name+"@example.com")
		resp, err := http.Post(base+"/user", "application/json", strings.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST /user: status %d, want 201; body %s", resp.StatusCode, body)
		}
		status, body := get(t, base+"/user")
		if status != http.StatusOK {
			t.Fatalf("GET /user: status %d; body %s", status, body)
		}
		var users []struct {
			Username string `json:"username"`
			Email    string `json:"email"`
		}
		if err := json.Unmarshal(body, &users); err != nil {
			t.Fatalf("GET /user: %v; body %s", err, body)
		}
		if !slices.ContainsFunc(users, func(u struct {
			Username string `json:"username"`
			Email    string `json:"email"`
		}) bool {
			return u.Username == name && u.Email == name+"@example.com"
		}) {
			t.Errorf("GET /user does not list the user just created (%s): %s", name, body)
		}
	})

	app := strings.TrimSpace(s.compose(time.Minute, "ps", "-q", "app"))
	if app == "" {
		t.Fatal("no app container")
	}

	t.Run("app container is locked down", func(t *testing.T) {
		var inspect []struct {
			Config struct {
				User  string
				Image string
			}
			HostConfig struct {
				ReadonlyRootfs bool
				SecurityOpt    []string
				CapDrop        []string
			}
		}
		decode(t, s.run(time.Minute, "docker", "inspect", app), &inspect)
		if len(inspect) != 1 {
			t.Fatalf("docker inspect %s: %d results", app, len(inspect))
		}
		c := inspect[0]
		if c.Config.User != nonroot+":"+nonroot {
			t.Errorf("Config.User = %q, want %s:%s", c.Config.User, nonroot, nonroot)
		}
		if !c.HostConfig.ReadonlyRootfs {
			t.Error("HostConfig.ReadonlyRootfs = false, want true")
		}
		if !slices.ContainsFunc(c.HostConfig.SecurityOpt, func(o string) bool { return strings.HasPrefix(o, "no-new-privileges") }) {
			t.Errorf("HostConfig.SecurityOpt = %q, want no-new-privileges", c.HostConfig.SecurityOpt)
		}

		// What the kernel says about the running process, not what was asked
		// for: distroless has no shell, so a throwaway container joins the
		// app's PID namespace and reads /proc/1 (the users binary is PID 1).
		// It uses the db image, which is present and has cat.
		dbImage := imageOf(t, s, "db")
		proc := s.run(time.Minute, "docker", "run", "--rm", "--pid", "container:"+app, "--entrypoint", "cat", dbImage,
			"/proc/1/cmdline", "/proc/1/status")
		fields := statusFields(proc)
		if !strings.HasPrefix(proc, "/users\x00serve") {
			t.Errorf("PID 1 is %q, want /users serve", strings.SplitN(proc, "\n", 2)[0])
		}
		for _, k := range []string{"Uid", "Gid"} {
			for _, id := range strings.Fields(fields[k]) {
				if id != nonroot {
					t.Errorf("/proc/1/status %s: %q, want %s everywhere (real, effective, saved, fs)", k, fields[k], nonroot)
					break
				}
			}
		}
		if fields["CapEff"] != "0000000000000000" || fields["CapPrm"] != "0000000000000000" {
			t.Errorf("capabilities: CapEff %s CapPrm %s, want none", fields["CapEff"], fields["CapPrm"])
		}
		if fields["NoNewPrivs"] != "1" {
			t.Errorf("NoNewPrivs = %q, want 1", fields["NoNewPrivs"])
		}
		mounts := s.run(time.Minute, "docker", "run", "--rm", "--pid", "container:"+app, "--entrypoint", "cat", dbImage, "/proc/1/mountinfo")
		if opts, ok := rootMountOptions(mounts); !ok {
			t.Errorf("no / in /proc/1/mountinfo:\n%s", mounts)
		} else if !slices.Contains(strings.Split(opts, ","), "ro") {
			t.Errorf("/ is mounted %s, want ro", opts)
		}
	})

	t.Run("image", func(t *testing.T) {
		image := imageOf(t, s, "app")
		var inspect []struct {
			Size   int64
			Config struct {
				Labels map[string]string
			}
		}
		decode(t, s.run(time.Minute, "docker", "image", "inspect", image), &inspect)
		if len(inspect) != 1 {
			t.Fatalf("docker image inspect %s: %d results", image, len(inspect))
		}
		size := inspect[0].Size
		t.Logf("image %s: %d bytes (%.1f MB)", image, size, float64(size)/1e6)
		if size > maxImageBytes {
			t.Errorf("image is %d bytes, more than %d", size, maxImageBytes)
		}
		labels := inspect[0].Config.Labels
		for _, k := range []string{"source", "revision", "version", "created"} {
			if labels["org.opencontainers.image."+k] == "" {
				t.Errorf("label org.opencontainers.image.%s is missing", k)
			}
		}
		version := strings.TrimSpace(s.run(time.Minute, "docker", "run", "--rm", image, "version"))
		if want := labels["org.opencontainers.image.version"]; version != want {
			t.Errorf("`users version` prints %q, the version label says %q", version, want)
		}

		// Built with at least go.mod's toolchain, though the golang image
		// here carries this machine's older Go (the Dockerfile's
		// GOTOOLCHAIN=auto fetches it).
		bin := filepath.Join(t.TempDir(), "users")
		id := strings.TrimSpace(s.run(time.Minute, "docker", "create", "--entrypoint", "/none", image))
		s.run(time.Minute, "docker", "cp", id+":/users", bin)
		_, _ = s.try(time.Minute, "docker", "rm", "-f", id)
		info, err := buildinfo.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if want := testenv.Toolchain(t, filepath.Join(s.root, "go.mod")); goversion.Compare(info.GoVersion, want) < 0 {
			t.Errorf("the image's binary was built with %s, older than go.mod's toolchain %s", info.GoVersion, want)
		} else {
			t.Logf("the image's binary was built with %s (go.mod: %s)", info.GoVersion, want)
		}

		// Nothing but the binary on top of the base image's files.
		baseImage := finalBase(t, s.root)
		extra := subtract(files(t, s, image), files(t, s, baseImage))
		if !slices.Equal(extra, []string{"users"}) {
			t.Errorf("files the image adds to %s: %q, want only [users]", baseImage, extra)
		}
	})

	finished = true
	s.compose(2*time.Minute, "down", "-v", "--remove-orphans")
	if left := s.leftovers(); len(left) > 0 {
		t.Errorf("docker compose down -v left %q behind", left)
	}
}

// publishedAddr is where the app's port 8080 is published; it must be the
// loopback interface.
func publishedAddr(t *testing.T, s *stack) string {
	t.Helper()
	addr := strings.TrimSpace(s.compose(time.Minute, "port", "app", "8080"))
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("docker compose port app 8080 = %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("app port is published on %s, want loopback only", host)
	}
	// As the seed's curls do.
	return net.JoinHostPort("localhost", port)
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func emptyObject(t *testing.T, body []byte) {
	t.Helper()
	if got := strings.TrimSpace(string(body)); got != "{}" {
		t.Errorf("body %q, want {}", body)
	}
}

func jsonArray(t *testing.T, body []byte) {
	t.Helper()
	var v []json.RawMessage
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("body is not a JSON array: %v; %s", err, body)
	}
}

func decode(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
}

// imageOf is the image a running service's container was created from.
func imageOf(t *testing.T, s *stack, service string) string {
	t.Helper()
	id := strings.TrimSpace(s.compose(time.Minute, "ps", "-q", service))
	if id == "" {
		t.Fatalf("no %s container", service)
	}
	return strings.TrimSpace(s.run(time.Minute, "docker", "inspect", "-f", "{{.Image}}", id))
}

// statusFields reads "Key:\tvalue" lines of /proc/PID/status.
func statusFields(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// rootMountOptions returns the per-mount options of / in a mountinfo table.
func rootMountOptions(mountinfo string) (string, bool) {
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			return f[5], true
		}
	}
	return "", false
}

// finalBase is the image the Dockerfile's last stage starts from.
func finalBase(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var base string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.EqualFold(f[0], "FROM") {
			base = f[len(f)-1]
			if len(f) >= 4 && strings.EqualFold(f[len(f)-2], "AS") {
				base = f[len(f)-3]
			}
		}
	}
	if base == "" {
		t.Fatal("no FROM in the Dockerfile")
	}
	return base
}

// files lists the regular files and symlinks in an image's filesystem.
func files(t *testing.T, s *stack, image string) []string {
	t.Helper()
	// Created, never started: the entrypoint only has to satisfy images
	// without one.
	id := strings.TrimSpace(s.run(time.Minute, "docker", "create", "--entrypoint", "/none", image))
	defer func() { _, _ = s.try(time.Minute, "docker", "rm", "-f", id) }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "export", id)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("docker export %s: %v", image, err)
		}
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink {
			names = append(names, strings.TrimPrefix(filepath.Clean(h.Name), "/"))
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("docker export %s: %v: %s", image, err, stderr.String())
	}
	slices.Sort(names)
	return names
}

func subtract(a, b []string) []string {
	var d []string
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			d = append(d, x)
		}
	}
	return d
}
