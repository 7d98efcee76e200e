//go:build func

package e2e

// The Knative Functions tests run the func CLI the way README.md ("Knative
// Functions (func)") tells a user to, in a copy of the repository, so that
// func's .func/ directory and its func.yaml rewrites never touch the
// checkout. They need the func binary (../shared/tools/func.sh builds and
// caches it), Go and PostgreSQL, so they sit behind the func build tag and
// CI runs them from .ci/func:
//
//	go test -tags func -count=1 -v ./e2e/

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	goversion "go/version"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/users/internal/loopback"
	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/config"
)

// funcRegistry is the registry of README's commands; func records it in
// func.yaml, which is committed with it so that a build leaves it as is.
const funcRegistry = "localhost/example"

// funcBuilderLines is what `func build --builder=host` adds to func.yaml:
// func always records the builder it used, and the func.yaml schema in
// ../shared/schemas knows only pack and s2i, so the committed file cannot
// carry it (README.md, "Knative Functions (func)").
const funcBuilderLines = "build:\n  builder: host\n"

// TestFuncBuild runs README's `func build --builder=host`, takes the
// linux/GOARCH binary out of the OCI image func wrote, and serves the seed's
// curls with it against a fresh database.
func TestFuncBuild(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("TestFuncBuild took %s", time.Since(start).Round(time.Millisecond)) }()
	root := repoRoot(t)
	cli := funcCLI(t, root)
	dir := copyRepo(t, root)
	before := snapshot(t, dir)

	// func v0.49.2 writes its main module in .func/build with older
	// requirements than ours and runs `go build` without tidying it, so the
	// stock command fails. This check keeps README's GOFLAGS=-mod=mod honest:
	// it fails once a func version no longer needs it.
	args := []string{"build", "--builder=host", "--registry", funcRegistry}
	t0 := time.Now()
	out, err := runFunc(t, cli, dir, nil, args...)
	switch {
	case err == nil:
		t.Errorf("func %s succeeded without GOFLAGS=-mod=mod: drop it from README.md and this test", strings.Join(args, " "))
	case !strings.Contains(out, "updates to go.mod needed"):
		t.Fatalf("func %s without GOFLAGS=-mod=mod: %v, not the known go.mod error:\n%s", strings.Join(args, " "), err, out)
	default:
		t.Logf("func %s without GOFLAGS=-mod=mod fails as README.md says (%s)", strings.Join(args, " "), time.Since(t0).Round(time.Millisecond))
	}

	t0 = time.Now()
	out, err = runFunc(t, cli, dir, []string{"GOFLAGS=-mod=mod"}, args...)
	if err != nil {
		t.Fatalf("GOFLAGS=-mod=mod func %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("GOFLAGS=-mod=mod func %s took %s", strings.Join(args, " "), time.Since(t0).Round(time.Millisecond))

	// A build rewrites func.yaml in func's own form; the committed file is
	// that form, so the only change is the builder func records.
	after := snapshot(t, dir)
	wantYAML := strings.Replace(before["func.yaml"].data, "\nrun:\n", "\n"+funcBuilderLines+"run:\n", 1)
	if got := after["func.yaml"].data; got != wantYAML {
		t.Errorf("func build rewrote func.yaml beyond adding %q:\n--- want\n%s--- got\n%s", funcBuilderLines, wantYAML, got)
	}
	delete(before, "func.yaml")
	delete(after, "func.yaml")
	if d := treeDiff(before, after); len(d) > 0 {
		t.Errorf("func build changed files outside .func/:\n%s", strings.Join(d, "\n"))
	}

	img := readOCI(t, filepath.Join(dir, ".func", "build", "oci"))
	if want := []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}; !slices.Equal(img.platforms, want) {
		t.Errorf("image platforms = %v, want func's defaults %v", img.platforms, want)
	}
	cfg, bin := img.extract(t, "linux/"+runtime.GOARCH, "/func/f")
	// func's scaffolded module says go 1.26.0 and names no toolchain, so
	// only README's GOTOOLCHAIN gets the function built with ours.
	if info, err := buildinfo.ReadFile(bin); err != nil {
		t.Fatal(err)
	} else if want := testenv.Toolchain(t, filepath.Join(dir, "go.mod")); goversion.Compare(info.GoVersion, want) < 0 {
		t.Errorf("the function was built with %s, older than go.mod's toolchain %s", info.GoVersion, want)
	} else {
		t.Logf("the function was built with %s", info.GoVersion)
	}
	if !slices.Equal(cfg.Cmd, []string{"/func/f"}) {
		t.Errorf("image Cmd = %q, want [/func/f]", cfg.Cmd)
	}
	// Recorded, not asserted: func v0.49.2 images stop with SIGKILL (fixed
	// in func v0.50.0), which skips the graceful shutdown the binary has.
	t.Logf("image config: User %s, WorkingDir %s, StopSignal %s, Env %q", cfg.User, cfg.WorkingDir, cfg.StopSignal, cfg.Env)

	// New() does not migrate: on an empty database the function is alive
	// but not ready until `users migrate up` has run.
	db := pgtest.New(t)
	port := loopback.FreePort(t)
	env := imageEnv(cfg.Env, db, port)
	p := startProcess(t, bin, t.TempDir(), env)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	t0 = time.Now()
	waitStatus(t, p, base+"/-/healthy", http.StatusOK, 10*time.Second)
	t.Logf("built function answered /-/healthy %s after exec", time.Since(t0).Round(time.Millisecond))
	if code, body := fetch(t, base+"/-/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /-/ready before migrating: %d %s, want 503", code, body)
	} else {
		t.Logf("GET /-/ready before migrating: 503 %s", body)
	}
	migrateUp(t, db)
	waitStatus(t, p, base+"/-/ready", http.StatusOK, 5*time.Second)
	seedCurls(t, base)
	p.stop(t, syscall.SIGTERM, false, 10*time.Second, 0)
}

// TestFuncRun runs README's `func run --builder=host` with -e overrides and
// serves the seed's curls through it; func run must leave the tree as it
// was, func.yaml included.
func TestFuncRun(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("TestFuncRun took %s", time.Since(start).Round(time.Millisecond)) }()
	root := repoRoot(t)
	cli := funcCLI(t, root)
	dir := copyRepo(t, root)
	before := snapshot(t, dir)

	_, db := testenv.DB(t)
	port := loopback.FreePort(t)
	args := []string{"run", "--builder=host", "--address", "127.0.0.1:" + strconv.Itoa(port)}
	// -e overrides func.yaml's run.envs, which func run puts after (so
	// above) the caller's own environment.
	env := pgtest.Env(db)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		args = append(args, "-e", k+"="+env[k])
	}
	p := startProcess(t, cli, dir, funcEnv([]string{"GOTOOLCHAIN=" + testenv.Toolchain(t, filepath.Join(dir, "go.mod"))}), args...)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	// func run tidies and builds first: minutes on a cold build cache.
	t0 := time.Now()
	// The user waits for func's own word: func polls readiness every 0.5 s
	// and, interrupted before it has seen it, exits without cleaning up.
	running := "Function running on 127.0.0.1:" + strconv.Itoa(port)
	waitOutput(t, p, running, 15*time.Minute)
	t.Logf("func %s: %q after %s", strings.Join(args[:4], " "), running, time.Since(t0).Round(time.Millisecond))
	seedCurls(t, base)

	// Ctrl-C: the terminal sends SIGINT to func and the function alike.
	// func removes its .func/runs directory and exits 0, or 130 if it sees
	// the function's exit before its own cancellation. (A SIGTERM to func
	// alone leaves the function running: func v0.49.2 exits without
	// waiting for the SIGINT it sends it; docs/containers.md.)
	p.stop(t, syscall.SIGINT, true, 15*time.Second, 0, 130)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the function still listens on %d 10 s after func run exited", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := treeDiff(before, snapshot(t, dir)); len(d) > 0 {
		t.Errorf("func run changed files outside .func/:\n%s", strings.Join(d, "\n"))
	}
	if _, err := os.Stat(filepath.Join(dir, ".func", "runs", strconv.Itoa(port))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("func run left .func/runs/%d behind (%v)", port, err)
	}
}

// repoRoot is the repository root: the tests run in e2e/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "func.yaml")); err != nil {
		t.Fatalf("no func.yaml in the repository root: %v", err)
	}
	return root
}

// funcCLI returns the func binary of ../shared/tools/func.sh, building it
// on first use. A missing func is a failure, not a skip: these tests exist
// to run it.
func funcCLI(t *testing.T, root string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(root, "..", "shared", "tools", "func.sh"), "path")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("func.sh path: %v\n%s", err, stderr.Bytes())
	}
	bin := strings.TrimSpace(string(out))
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("func.sh path gave %q, not an executable: %v", bin, err)
	}
	return bin
}

// funcEnv is the test's environment without GOFLAGS and FUNC_* variables
// (func reads its flags from FUNC_*), so the command line is all the
// configuration, plus extra.
func funcEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOFLAGS=") && !strings.HasPrefix(kv, "FUNC_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runFunc runs func in dir and returns its combined output.
func runFunc(t *testing.T, cli, dir string, extraEnv []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Dir = dir
	cmd.Env = funcEnv(append([]string{"GOTOOLCHAIN=" + testenv.Toolchain(t, filepath.Join(dir, "go.mod"))}, extraEnv...))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// copyRepo copies the files git tracks or would track (the work tree as a
// commit would have it, .gitignored files left out) into a new directory.
func copyRepo(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, name := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, name)
		fi, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, err := os.Readlink(src)
			if err == nil {
				err = os.Symlink(link, to)
			}
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(to, data, fi.Mode().Perm())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// entry is one file of a snapshot: its mode and, for func.yaml, its text.
type entry struct {
	mode fs.FileMode
	sum  string
	data string
}

// snapshot records every file under dir except func's .func/ directory.
func snapshot(t *testing.T, dir string) map[string]entry {
	t.Helper()
	files := map[string]entry{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel == ".func" {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var data []byte
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			data = []byte(link)
		} else if data, err = os.ReadFile(path); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		e := entry{mode: fi.Mode(), sum: hex.EncodeToString(sum[:])}
		if rel == "func.yaml" {
			e.data = string(data)
		}
		files[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// treeDiff lists the files added, removed or changed between two snapshots.
func treeDiff(before, after map[string]entry) []string {
	var d []string
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			d = append(d, "removed "+name)
		case a.mode != b.mode || a.sum != b.sum:
			d = append(d, "changed "+name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			d = append(d, "added "+name)
		}
	}
	slices.Sort(d)
	return d
}

// ociDescriptor, ociManifest and ociConfig are the parts of the OCI image
// layout (image-spec v1.1) the test reads.
type ociDescriptor struct {
	Digest   string `json:"digest"`
	Platform *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	} `json:"platform"`
}

type ociManifest struct {
	Config ociDescriptor   `json:"config"`
	Layers []ociDescriptor `json:"layers"`
}

type ociConfig struct {
	Cmd        []string `json:"Cmd"`
	Env        []string `json:"Env"`
	User       string   `json:"User"`
	WorkingDir string   `json:"WorkingDir"`
	StopSignal string   `json:"StopSignal"`
}

// ociImage is an image index in an OCI layout directory.
type ociImage struct {
	dir       string
	platforms []string
	manifests map[string]ociDescriptor
}

func readOCI(t *testing.T, dir string) ociImage {
	t.Helper()
	var index struct {
		Manifests []ociDescriptor `json:"manifests"`
	}
	readJSON(t, filepath.Join(dir, "index.json"), &index)
	img := ociImage{dir: dir, manifests: map[string]ociDescriptor{}}
	for _, m := range index.Manifests {
		if m.Platform == nil {
			t.Fatalf("index.json: manifest %s has no platform", m.Digest)
		}
		p := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" {
			p += "/" + m.Platform.Variant
		}
		img.platforms = append(img.platforms, p)
		img.manifests[p] = m
	}
	return img
}

func (img ociImage) blob(digest string) string {
	return filepath.Join(img.dir, "blobs", strings.Replace(digest, ":", string(filepath.Separator), 1))
}

// extract returns the platform's image config and writes the file at path
// in its layers to an executable in a temporary directory.
func (img ociImage) extract(t *testing.T, platform, path string) (ociConfig, string) {
	t.Helper()
	d, ok := img.manifests[platform]
	if !ok {
		t.Fatalf("image has no %s manifest (has %v)", platform, img.platforms)
	}
	var m ociManifest
	readJSON(t, img.blob(d.Digest), &m)
	var cfg struct {
		Config ociConfig `json:"config"`
	}
	readJSON(t, img.blob(m.Config.Digest), &cfg)
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	for _, l := range m.Layers {
		if extractFile(t, img.blob(l.Digest), path, out) {
			return cfg.Config, out
		}
	}
	t.Fatalf("no %s in the %s image's layers", path, platform)
	return ociConfig{}, ""
}

// extractFile copies name from the gzipped tar layer to out, and reports
// whether the layer had it.
func extractFile(t *testing.T, layer, name, out string) bool {
	t.Helper()
	f, err := os.Open(layer)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", layer, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatalf("%s: %v", layer, err)
		}
		if "/"+strings.TrimPrefix(h.Name, "/") != name {
			continue
		}
		w, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return true
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// imageEnv is the environment a container runtime would give the image's
// process, with the database settings replaced as `docker run -e` would
// and the listen address moved to a loopback port: func-go listens on
// LISTEN_ADDRESS (the image's [::]:8080), and PORT is what Knative sets.
func imageEnv(image []string, db config.Database, port int) []string {
	set := pgtest.Env(db)
	set["LISTEN_ADDRESS"] = "127.0.0.1:" + strconv.Itoa(port)
	set["PORT"] = strconv.Itoa(port)
	var env []string
	for _, kv := range image {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			env = append(env, kv)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		env = append(env, k+"="+set[k])
	}
	return env
}

// migrateUp runs README's `users migrate up` against db.
func migrateUp(t *testing.T, db config.Database) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Binary(t), "migrate", "up")
	cmd.Env = os.Environ()
	for k, v := range pgtest.Env(db) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("users migrate up: %v\n%s", err, out)
	}
}

// stop sends sig to the process, or with group to its whole process group
// as a terminal's Ctrl-C does, and requires it to exit with one of the
// status codes within timeout, after the function's own graceful Stop has
// run.
func (p *process) stop(t *testing.T, sig syscall.Signal, group bool, timeout time.Duration, codes ...int) {
	t.Helper()
	name := filepath.Base(p.cmd.Path)
	pid := p.cmd.Process.Pid
	if group {
		pid = -pid
	}
	t0 := time.Now()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s of %v", name, timeout, sig)
	}
	code := p.cmd.ProcessState.ExitCode()
	if !slices.Contains(codes, code) {
		t.Fatalf("%s after %v: %v, want exit status %v", name, sig, p.err, codes)
	}
	if !strings.Contains(p.logs.String(), `"msg":"stopped"`) {
		t.Errorf("%s after %v: the function did not log its Stop", name, sig)
	}
	t.Logf("%s exited %d %s after %v", name, code, time.Since(t0).Round(time.Millisecond), sig)
}

// waitOutput waits until the process has written s, failing if it ends
// first or within does not suffice.
func waitOutput(t *testing.T, p *process, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(p.logs.String(), s) {
		if p.exited() {
			t.Fatalf("process exited (%v) before writing %q", p.err, s)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s", s, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStatus polls url until it answers want, failing if the process ends
// first or within does not suffice.
func waitStatus(t *testing.T, p *process, url string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string // every pass sets it before it is read
	for {
		if code, body, err := try(url); err == nil {
			if code == want {
				return
			}
			last = fmt.Sprintf("%d %s", code, body)
		} else {
			last = err.Error()
		}
		if p.exited() {
			t.Fatalf("process exited (%v) before %s answered %d; last: %s", p.err, url, want, last)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within %s; last: %s", url, want, within, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var client = &http.Client{Timeout: 5 * time.Second}

func try(url string) (int, []byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func fetch(t *testing.T, url string) (int, []byte) {
	t.Helper()
	code, body, err := try(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return code, body
}

// seedCurls checks the seed's curls, func's own probe paths and a POST
// that GET /user then lists.
func seedCurls(t *testing.T, base string) {
	t.Helper()
	for _, c := range []struct{ path, body string }{
		{"/-/healthy", "{}"},
		{"/-/ready", "{}"},
		{"/user", "[]"},
	} {
		code, body := fetch(t, base+c.path)
		if code != http.StatusOK || strings.TrimSpace(string(body)) != c.body {
			t.Errorf("GET %s: %d %s, want 200 %s", c.path, code, body, c.body)
		}
	}
	// func-go answers its own probe paths itself (from Alive and Ready,
	// with its own bodies); func run waits for the readiness one.
	for _, path := range []string{"/health/liveness", "/health/readiness"} {
		if code, body := fetch(t, base+path); code != http.StatusOK {
			t.Errorf("GET %s: %d %s, want 200", path, code, body)
		}
	}

	resp, err := client.Post(base+"/user", "application/json",
		strings.NewReader(`{"username":"func_user","email":"func_user@example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var created struct {
		ID       int64  `json:"id"`
		Username string `json:"username"`
		Email    string `json:"email"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &created) != nil ||
		created.ID == 0 || created.Username != "func_user" || created.Email != "func_user@example.com" {
		t.Fatalf("POST /user: %d %s, want 201 with the user", resp.StatusCode, body)
	}

	code, body := fetch(t, base+"/user")
	var list []struct {
		ID       int64  `json:"id"`
		Username string `json:"username"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil ||
		len(list) != 1 || list[0].ID != created.ID || list[0].Username != "func_user" {
		t.Errorf("GET /user after POST: %d %s, want the one user", code, body)
	}
}
