// Command kubeload is the steady load the real-node test (deploy/kube)
// runs inside the cluster while it upgrades the release or kills a pod:
// readers GET /user?limit=20, writers POST /user with unique names, and
// every answer is counted. It runs in a pod so that its requests go through
// the Service (kube-proxy) or the Knative route the way a client's do; a
// `kubectl port-forward` from the host would pin one pod and break with it.
//
// The test reads the counts from the control address (-listen):
// GET /stats returns them as JSON, GET /stop stops the load first, so the
// counts are final.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stats are the counts the test asserts on.
type stats struct {
	ReadsOK      int      `json:"reads_ok"`
	ReadsFailed  int      `json:"reads_failed"`
	WritesOK     int      `json:"writes_ok"`
	WritesFailed int      `json:"writes_failed"`
	CreatedIDs   []int64  `json:"created_ids"`
	Failures     []string `json:"failures"` // the first 50, with their time
	Stopped      bool     `json:"stopped"`
}

type recorder struct {
	mu sync.Mutex
	s  stats
}

func (r *recorder) fail(kind string, err string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if kind == "read" {
		r.s.ReadsFailed++
	} else {
		r.s.WritesFailed++
	}
	if len(r.s.Failures) < 50 {
		r.s.Failures = append(r.s.Failures, time.Now().UTC().Format(time.RFC3339Nano)+" "+kind+": "+err)
	}
}

func (r *recorder) snapshot() stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.s
	s.CreatedIDs = append([]int64(nil), r.s.CreatedIDs...)
	s.Failures = append([]string(nil), r.s.Failures...)
	return s
}

func main() {
	base := flag.String("url", "http://users", "base URL of the service")
	host := flag.String("host", "", "Host header (a Knative route through the ingress)")
	readers := flag.Int("readers", 2, "concurrent readers")
	writers := flag.Int("writers", 1, "concurrent writers")
	pause := flag.Duration("pause", 20*time.Millisecond, "pause between one client's requests")
	prefix := flag.String("prefix", "kl", "username prefix, unique per run")
	listen := flag.String("listen", ":8080", "control address")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loadCtx, stopLoad := context.WithCancel(ctx)
	rec := &recorder{}
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup

	do := func(req *http.Request) (int, []byte, error) {
		if *host != "" {
			req.Host = *host
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	for i := 0; i < *readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				req, _ := http.NewRequestWithContext(loadCtx, http.MethodGet, *base+"/user?limit=20", nil)
				code, body, err := do(req)
				switch {
				case loadCtx.Err() != nil:
					return // stopped mid-request: neither success nor failure
				case err != nil:
					rec.fail("read", err.Error())
				case code != http.StatusOK || !bytes.HasPrefix(body, []byte("[")):
					rec.fail("read", fmt.Sprintf("status %d: %.200s", code, body))
				default:
					rec.mu.Lock()
					rec.s.ReadsOK++
					rec.mu.Unlock()
				}
				sleep(loadCtx, *pause)
			}
		}()
	}
	for i := 0; i < *writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; loadCtx.Err() == nil; n++ {
				name := fmt.Sprintf("%s-%d-%d", *prefix, i, n)
				body := fmt.Sprintf(`{"username":%q,"email":%q}`, name, name+"@example.com")
				// Not bound to loadCtx: a write in flight when the load stops
				// finishes, so every 201 the service sent is counted.
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *base+"/user", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				code, b, err := do(req)
				var u struct {
					ID int64 `json:"id"`
				}
				switch {
				case err != nil:
					rec.fail("write", err.Error())
				case code != http.StatusCreated || json.Unmarshal(b, &u) != nil || u.ID == 0:
					rec.fail("write", fmt.Sprintf("status %d: %.200s", code, b))
				default:
					rec.mu.Lock()
					rec.s.WritesOK++
					rec.s.CreatedIDs = append(rec.s.CreatedIDs, u.ID)
					rec.mu.Unlock()
				}
				sleep(loadCtx, *pause)
			}
		}()
	}

	var once sync.Once
	finish := func() {
		once.Do(func() {
			stopLoad()
			wg.Wait()
			rec.mu.Lock()
			rec.s.Stopped = true
			rec.mu.Unlock()
		})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rec.snapshot())
	})
	mux.HandleFunc("GET /stop", func(w http.ResponseWriter, _ *http.Request) {
		finish()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rec.snapshot())
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		finish()
		_ = srv.Shutdown(context.Background())
	}()
	log.Printf("kubeload: %d readers, %d writers against %s (host %q)", *readers, *writers, *base, *host)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
