//go:build slow

package reliability

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpProxy forwards a loopback port to the real PostgreSQL and can fail
// the way networks and databases fail:
//   - refuse: every connection is closed and new ones are refused, as when
//     the database host is down or restarting;
//   - blackhole: connections are accepted but nothing comes back, and
//     established ones go silent, as in a network partition;
//   - slow: every chunk in either direction is held back, as when the
//     database is overloaded or a link is congested; answers arrive late
//     but arrive.
type tcpProxy struct {
	t      *testing.T
	target string
	addr   string

	mu     sync.Mutex
	ln     net.Listener  // nil while refusing
	silent bool          // blackhole
	delay  time.Duration // slow
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.close)
	return p
}

// Port is the proxy's port on 127.0.0.1.
func (p *tcpProxy) Port() string {
	_, port, _ := net.SplitHostPort(p.addr)
	return port
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.handle(c)
		}
	}()
}

// track registers c so cuts can close it; false if the proxy is refusing.
func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tcpProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *tcpProxy) isSilent() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.silent
}

func (p *tcpProxy) latency() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

func (p *tcpProxy) handle(client net.Conn) {
	if !p.track(client) {
		_ = client.Close()
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.untrack(client)
		defer client.Close()
		if p.isSilent() {
			// Accept, then never answer: read and drop until closed.
			_, _ = io.Copy(io.Discard, client)
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			return
		}
		if !p.track(up) {
			_ = up.Close()
			return
		}
		defer p.untrack(up)
		defer up.Close()
		done := make(chan struct{}, 2)
		go func() { p.pipe(up, client); done <- struct{}{} }()
		go func() { p.pipe(client, up); done <- struct{}{} }()
		<-done
		// One side ended: end both, unless the proxy went silent, in which
		// case the client side stays open and mute until a cut or restore.
		if p.isSilent() {
			_ = up.Close()
			<-done
			return
		}
		_ = up.Close()
		_ = client.Close()
		<-done
	}()
}

// pipe copies src to dst until either fails or the proxy goes silent,
// after which whatever arrives is dropped.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if d := p.latency(); n > 0 && d > 0 {
			time.Sleep(d)
		}
		if n > 0 && !p.isSilent() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				if p.isSilent() {
					_, _ = io.Copy(io.Discard, src)
				}
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Refuse closes every connection and the listener: new connections are
// refused until Restore.
func (p *tcpProxy) Refuse() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
}

// Blackhole keeps accepting connections but lets no byte through in
// either direction; established connections go silent, not closed.
func (p *tcpProxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.silent = true
}

// Slow holds every chunk back by d before forwarding it.
func (p *tcpProxy) Slow(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Restore forwards again, without delay. Connections left from a blackhole are closed
// (as the peer's resets would, once the partition heals); a refused
// listener is opened again on the same port.
func (p *tcpProxy) Restore() {
	p.mu.Lock()
	wasSilent := p.silent
	p.silent, p.delay = false, 0
	if wasSilent {
		for c := range p.conns {
			_ = c.Close()
		}
	}
	needListen := p.ln == nil
	p.mu.Unlock()
	if !needListen {
		return
	}
	var ln net.Listener
	var err error
	for range 50 { // the port may take a moment to be free again
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Errorf("proxy: listen again on %s: %v", p.addr, err)
		return
	}
	p.mu.Lock()
	p.serve(ln)
	p.mu.Unlock()
}

func (p *tcpProxy) close() {
	p.Refuse()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.t.Error("proxy: goroutines did not stop")
	}
}
