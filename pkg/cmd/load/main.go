// Command load drives a running users instance and prints, for each of
// GET /user (with 100 users in the table), POST /user (a unique user per
// request) and GET /-/healthy, the requests per second, the p50 and p99
// latency and the errors, plus the server's peak RSS when given its PID.
//
//	go run ./pkg/cmd/load -url http://127.0.0.1:8080 -c 8 -d 10s -pid $(pgrep -f 'users serve')
//
// It seeds the list scenario through the API itself: if the table holds
// fewer than 100 users it creates the rest first. Run it against an empty
// database so that GET /user returns exactly 100 users; it prints how many
// the list returned. The POST scenario runs after the GET one for the
// same reason.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	url         string
	concurrency int
	duration    time.Duration
	count       int
	pid         int
	seed        int
	timeout     time.Duration
	only        string
}

func parse(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080", "base URL of the running instance")
	fs.IntVar(&o.concurrency, "c", 8, "concurrent clients per scenario")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "how long each scenario runs (ignored when -n is set)")
	fs.IntVar(&o.count, "n", 0, "requests per scenario instead of a duration")
	fs.IntVar(&o.pid, "pid", 0, "server process id, to report its RSS from /proc/PID/status")
	fs.IntVar(&o.seed, "users", 100, "users the table must hold for the GET /user scenario")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout of one request")
	fs.StringVar(&o.only, "only", "", "comma-separated scenarios to run (list,create,healthy); default all")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.concurrency < 1:
		return o, errors.New("-c must be at least 1")
	case o.count < 0 || o.count == 0 && o.duration <= 0:
		return o, errors.New("give a positive -n or -d")
	}
	o.url = strings.TrimRight(o.url, "/")
	return o, nil
}

// scenario is one kind of request and the status that counts as success.
type scenario struct {
	key, name string
	want      int
	request   func(ctx context.Context, i int64) (*http.Request, error)
}

// result is what one scenario measured.
type result struct {
	name      string
	elapsed   time.Duration
	latencies []time.Duration // successful requests only
	errors    map[string]int  // "status 503", "transport", ...
	rssPeak   int64           // kB, -1 if unknown
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args, out)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: o.timeout,
		Transport: &http.Transport{
			MaxIdleConns:        o.concurrency * 2,
			MaxIdleConnsPerHost: o.concurrency * 2,
			IdleConnTimeout:     time.Minute,
		},
	}
	defer client.CloseIdleConnections()

	var tag [4]byte
	_, _ = rand.Read(tag[:])
	prefix := "load" + hex.EncodeToString(tag[:]) // unique per run: reruns never collide

	n, err := countUsers(ctx, client, o.url)
	if err != nil {
		return err
	}
	seeded := 0
	for ; n < o.seed; n++ {
		if err := createUser(ctx, client, o.url, prefix+"-seed"+strconv.Itoa(n)); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		seeded++
	}
	listed, err := countUsers(ctx, client, o.url)
	if err != nil {
		return err
	}

	scenarios := []scenario{
		{key: "list", name: "GET /user", want: http.StatusOK, request: func(ctx context.Context, _ int64) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, o.url+"/user", nil)
		}},
		{key: "create", name: "POST /user", want: http.StatusCreated, request: func(ctx context.Context, i int64) (*http.Request, error) {
			return newCreate(ctx, o.url, prefix+"-"+strconv.FormatInt(i, 10))
		}},
		{key: "healthy", name: "GET /-/healthy", want: http.StatusOK, request: func(ctx context.Context, _ int64) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, o.url+"/-/healthy", nil)
		}},
	}
	if o.only != "" {
		keep := strings.Split(o.only, ",")
		scenarios = slices.DeleteFunc(scenarios, func(s scenario) bool { return !slices.Contains(keep, s.key) })
		if len(scenarios) == 0 {
			return fmt.Errorf("-only %q names no scenario (list, create, healthy)", o.only)
		}
	}

	idle := readRSS(o.pid)
	fmt.Fprintf(out, "target %s, %d clients, ", o.url, o.concurrency)
	if o.count > 0 {
		fmt.Fprintf(out, "%d requests per scenario\n", o.count)
	} else {
		fmt.Fprintf(out, "%s per scenario\n", o.duration)
	}
	fmt.Fprintf(out, "GET /user returns %d users (%d created to seed)\n", listed, seeded)

	var results []result
	for _, s := range scenarios {
		if ctx.Err() != nil {
			break
		}
		results = append(results, drive(ctx, client, o, s))
	}
	report(out, results)
	if o.pid > 0 {
		end := readRSS(o.pid)
		fmt.Fprintf(out, "server pid %d: RSS before %s, after %s, peak (VmHWM) %s\n",
			o.pid, kB(idle.rss), kB(end.rss), kB(end.hwm))
	}
	for _, r := range results {
		if len(r.errors) > 0 {
			return errors.New("some requests failed")
		}
	}
	return ctx.Err()
}

// drive runs s with o.concurrency workers until o.count requests are done
// or o.duration has passed.
func drive(ctx context.Context, client *http.Client, o options, s scenario) result {
	if o.count == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var (
		next     atomic.Int64
		mu       sync.Mutex
		all      []time.Duration
		errs     = map[string]int{}
		wg       sync.WaitGroup
		peak     atomic.Int64
		sampling = make(chan struct{})
	)
	peak.Store(-1)
	if o.pid > 0 {
		// VmHWM is the peak over the process's life; sampling VmRSS gives
		// the peak during this scenario.
		go func() {
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				if m := readRSS(o.pid); m.rss > peak.Load() {
					peak.Store(m.rss)
				}
				select {
				case <-sampling:
					return
				case <-t.C:
				}
			}
		}()
	}
	start := time.Now()
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			local := map[string]int{}
			for ctx.Err() == nil {
				i := next.Add(1)
				if o.count > 0 && i > int64(o.count) {
					break
				}
				d, err := once(ctx, client, s, i)
				switch {
				case err == nil:
					lat = append(lat, d)
				case ctx.Err() != nil && o.count == 0:
					// Cut off by the end of the run: not the server's fault.
				default:
					local[err.Error()]++
				}
			}
			mu.Lock()
			all = append(all, lat...)
			for k, v := range local {
				errs[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(sampling)
	return result{name: s.name, elapsed: elapsed, latencies: all, errors: errs, rssPeak: peak.Load()}
}

// statusError is an answer with a status other than the scenario's.
type statusError int

func (e statusError) Error() string { return "status " + strconv.Itoa(int(e)) }

func once(ctx context.Context, client *http.Client, s scenario, i int64) (time.Duration, error) {
	req, err := s.request(ctx, i)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, errors.New("transport error")
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	switch {
	case resp.StatusCode != s.want:
		return 0, statusError(resp.StatusCode)
	case err != nil:
		return 0, errors.New("body cut short")
	}
	return d, nil
}

func newCreate(ctx context.Context, base, name string) (*http.Request, error) {
	body := `{"username":"` + name + `","email":"` + name + `@example.com"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/user", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

func createUser(ctx context.Context, client *http.Client, base, name string) error {
	req, err := newCreate(ctx, base, name)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /user answered %s", resp.Status)
	}
	return nil
}

// countUsers counts the objects in GET /user's array by their "id" keys;
// the service's JSON has exactly one per user.
func countUsers(ctx context.Context, client *http.Client, base string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/user", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /user answered %s", resp.Status)
	}
	return bytes.Count(body, []byte(`{"id":`)), nil
}

func report(out io.Writer, results []result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trequests\treq/s\tp50\tp99\tmax\terrors\tpeak RSS\t")
	for _, r := range results {
		lat := r.latencies
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		nerr := 0
		for _, v := range r.errors {
			nerr += v
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%d\t%s\t\n", r.name, len(lat),
			float64(len(lat))/r.elapsed.Seconds(),
			ms(quantile(lat, 0.50)), ms(quantile(lat, 0.99)), ms(quantile(lat, 1)), nerr, kB(r.rssPeak))
	}
	_ = tw.Flush()
	for _, r := range results {
		keys := make([]string, 0, len(r.errors))
		for k := range r.errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(out, "%s errors: %d x %s\n", r.name, r.errors[k], k)
		}
	}
}

// quantile of sorted durations, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms" }

func kB(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(n)/1024, 'f', 1, 64) + "MB"
}

// memory is a process's resident set and its peak, in kB (-1: unknown).
type memory struct{ rss, hwm int64 }

// readRSS reads VmRSS and VmHWM from /proc/PID/status.
func readRSS(pid int) memory {
	m := memory{rss: -1, hwm: -1}
	if pid <= 0 {
		return m
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return m
	}
	for line := range strings.Lines(string(b)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name != "VmRSS" && name != "VmHWM" {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			continue
		}
		if name == "VmRSS" {
			m.rss = n
		} else {
			m.hwm = n
		}
	}
	return m
}
