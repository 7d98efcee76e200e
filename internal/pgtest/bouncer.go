package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/users/internal/loopback"
	"github.com/example/users/internal/syncbuf"
	"github.com/example/users/pkg/config"
)

// PoolerVar names the variable that routes every database New makes
// through its own PgBouncer in transaction mode (PoolerVar=pgbouncer):
// .ci/run runs the handler, CloudEvents, race and hostile-input tests so.
const PoolerVar = "PGTEST_POOLER"

// Bouncer is a real PgBouncer on a loopback port in front of the test
// server, started for one test.
type Bouncer struct {
	// Port is where clients connect (host 127.0.0.1).
	Port int
	// PoolSize is PgBouncer's default_pool_size: server connections per
	// database and user, shared by all of its clients.
	PoolSize int
	log      *syncbuf.Buffer
}

// Pool modes of PgBouncer that the tests use.
const (
	// Transaction gives a client a server session for one transaction
	// only: what scales, and what CloudNativePG's Pooler runs.
	Transaction = "transaction"
	// Session gives a client one server session for as long as it is
	// connected.
	Session = "session"
)

// StartBouncer starts a PgBouncer for server (the admin settings Server
// returns) in pool mode mode with poolSize server connections per
// database, and stops it
// when the test ends. Its binary is $PGBOUNCER or pgbouncer on PATH or in
// /usr/sbin (Debian's package); without one the test fails, saying how to
// get it.
func StartBouncer(tb testing.TB, server config.Database, mode string, poolSize int) *Bouncer {
	tb.Helper()
	bin := os.Getenv("PGBOUNCER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("pgbouncer"); err != nil {
			bin = "/usr/sbin/pgbouncer"
		}
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("PgBouncer is needed for this test (apt-get install pgbouncer, or set PGBOUNCER to its binary): %v", err)
	}
	// PgBouncer refuses to run as root; -u switches to this user once it
	// has read its files, so they must be readable by it.
	var user []string
	if os.Geteuid() == 0 {
		user = []string{"-u", getenv("PGBOUNCER_USER", "postgres")}
	}
	dir := tb.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	users := filepath.Join(dir, "users.txt")
	write(tb, users, fmt.Sprintf("%q %q\n", server.User, server.Password))
	b := &Bouncer{PoolSize: poolSize, log: &syncbuf.Buffer{}}
	for attempt := 0; ; attempt++ {
		b.Port = loopback.FreePort(tb)
		ini := filepath.Join(dir, "pgbouncer.ini")
		write(tb, ini, fmt.Sprintf(`[databases]
* = host=%s port=%d
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = %s
default_pool_size = %d
max_client_conn = 500
server_lifetime = 3600
log_connections = 1
log_disconnections = 0
`, server.Host, server.Port, b.Port, users, mode, poolSize))
		cmd := exec.Command(bin, append(user, ini)...)
		cmd.Stdout, cmd.Stderr = b.log, b.log
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan struct{})
		var waitErr error
		go func() { waitErr = cmd.Wait(); close(exited) }()
		tb.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
			if tb.Failed() {
				tb.Logf("pgbouncer log:\n%s", b.log)
			}
		})
		err := waitListening(b.Port, exited, &waitErr)
		if err == nil {
			return b
		}
		// Another process may have taken the port between freePort and
		// PgBouncer's bind; try a fresh one a few times.
		if attempt == 3 || !strings.Contains(b.log.String(), "Address already in use") {
			tb.Fatalf("pgbouncer did not start: %v\n%s", err, b.log)
		}
	}
}

// Database is db reached through the bouncer, with prepared statements
// off (PgBouncer 1.18 does not track them), and with migrations sent to
// db's own address, as production must configure it.
func (b *Bouncer) Database(db config.Database) config.Database {
	pooled := db
	pooled.Host, pooled.Port = "127.0.0.1", b.Port
	pooled.MigrateHost, pooled.MigratePort = db.Host, db.Port
	pooled.PreparedStatements = false
	return pooled
}

// Logins is how many client logins PgBouncer has logged, so a test can
// show its traffic went through it. PgBouncer's log reaches the buffer
// through a pipe, a little after the login: Logins waits up to 5 s for
// at least want of them (it once read 1 of 2 on a loaded machine).
func (b *Bouncer) Logins(want int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := strings.Count(b.log.String(), " login attempt: ")
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitListening(port int, exited <-chan struct{}, waitErr *error) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("exited: %v", *waitErr)
		default:
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not listening on port %d after 10 s", port)
}

func write(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil { //nolint:gosec // PgBouncer's user must read it
		tb.Fatal(err)
	}
}
