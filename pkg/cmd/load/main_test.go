package main

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/app"
)

func TestRunReportsEveryScenario(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	var out bytes.Buffer
	err := run(context.Background(), []string{"-url", srv.URL, "-c", "3", "-n", "30", "-pid", strconv.Itoa(os.Getpid())}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	if !strings.Contains(text, "GET /user returns 100 users (100 created to seed)") {
		t.Errorf("seeding not reported:\n%s", text)
	}
	for _, name := range []string{"GET /user", "POST /user", "GET /-/healthy"} {
		// name, 30 requests, rate, p50, p99, max, 0 errors, a peak RSS.
		re := regexp.MustCompile(regexp.QuoteMeta(name) + `\s+30\s+\d+\s+[\d.]+ms\s+[\d.]+ms\s+[\d.]+ms\s+0\s+[\d.]+MB\n`)
		if !re.MatchString(text) {
			t.Errorf("no line for %s with 30 requests and 0 errors:\n%s", name, text)
		}
	}
	if !regexp.MustCompile(`RSS before [\d.]+MB, after [\d.]+MB, peak \(VmHWM\) [\d.]+MB`).MatchString(text) {
		t.Errorf("no RSS line:\n%s", text)
	}
	var n int
	if err := db.NewSelect().TableExpr("users").ColumnExpr("count(*)").Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	if n != 130 {
		t.Errorf("%d users in the table, want 100 seeded + 30 created", n)
	}

	// A second run finds its 100 users and creates unique ones again.
	out.Reset()
	if err := run(context.Background(), []string{"-url", srv.URL, "-n", "5", "-only", "create"}, &out); err != nil {
		t.Fatalf("second run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "GET /user returns 130 users (0 created to seed)") {
		t.Errorf("second run:\n%s", out.String())
	}
}

func TestRunFailsOnErrors(t *testing.T) {
	// A Function that was never started answers every request 503.
	srv := httptest.NewServer(app.New(io.Discard))
	defer srv.Close()
	var out bytes.Buffer
	err := run(context.Background(), []string{"-url", srv.URL, "-n", "5"}, &out)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("run against a 503 server: %v\n%s", err, out.String())
	}
}

func TestParseRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-c", "0"},
		{"-n", "-1"},
		{"-d", "0s"},
		{"extra"},
		{"-bogus"},
	} {
		if _, err := parse(args, io.Discard); err == nil {
			t.Errorf("parse(%q) accepted", args)
		}
	}
}

func TestReadRSS(t *testing.T) {
	m := readRSS(os.Getpid())
	if m.rss <= 0 || m.hwm < m.rss {
		t.Errorf("readRSS(self) = %+v", m)
	}
	if m := readRSS(0); m.rss != -1 || m.hwm != -1 {
		t.Errorf("readRSS(0) = %+v, want unknown", m)
	}
}

func TestQuantile(t *testing.T) {
	d := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	var sorted []time.Duration
	for _, v := range d {
		sorted = append(sorted, time.Duration(v))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5}, {0.99, 10}, {1, 10}, {0, 1}} {
		if got := quantile(sorted, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
}
