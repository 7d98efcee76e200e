package function_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	fhttp "knative.dev/func-go/http"

	function "github.com/example/users"
	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/user"
)

// TestUnderFuncRuntime serves function.New() with knative.dev/func-go's HTTP
// runtime, as the main that `func build` scaffolds does, and exercises the
// API and func's own probe routes through it.
func TestUnderFuncRuntime(t *testing.T) {
	_, cfg := testenv.DB(t)
	for k, v := range pgtest.Env(cfg) {
		t.Setenv(k, v)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	t.Setenv("LISTEN_ADDRESS", addr)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fhttp.New(function.New()).Start(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("func runtime: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("func runtime did not stop")
		}
	}()

	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/health/readiness")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready under the func runtime: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp, err := http.Get(base + "/health/liveness"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("liveness: %v %v", resp, err)
	}

	resp, err := http.Post(base+"/user", "application/json", strings.NewReader(`{"username":"knative","email":"k@example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /user: %d", resp.StatusCode)
	}
	resp, err = http.Get(base + "/user")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var us []user.User
	if err := json.Unmarshal(body, &us); err != nil || len(us) != 1 || us[0].Username != "knative" {
		t.Fatalf("GET /user: %d %s (%v)", resp.StatusCode, body, err)
	}
	for _, p := range []string{"/-/healthy", "/-/ready"} {
		resp, err := http.Get(base + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		_ = resp.Body.Close()
	}
}
