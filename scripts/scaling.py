#!/usr/bin/env python3
"""The figures of README "Scaling": one process under load, route by route.

    scripts/scaling.py [SECONDS] [POOL]        (defaults 5 and 10)

Starts the service (POSTGRES_MAX_CONNS=POOL) on a fresh database with 100
users, straight to PostgreSQL and then through a PgBouncer 1.18 in
transaction mode (POSTGRES_PREPARED_STATEMENTS=false, as the chart sets it
behind a pooler), and for GET /user (100 users), GET /user/{id} and
POST /user at 8 and 32 connections (wrk, one thread) reports requests per
second, the process's CPU per request, and the pool's connections in use
(db_client_connection_count{state="used"} read from /metrics every 20 ms:
mean and highest) and the requests that queued for one
(db_client_connection_waits_total). Needs wrk, psql, pgbouncer, Go, and
PostgreSQL on 127.0.0.1:5432 (user postgres, trust). Prints `uptime`
first and last: wrk, the service and PostgreSQL share the machine, so
req/s is this machine's, not a pod's on its own node.
"""
import json, os, re, secrets, signal, subprocess, sys, tempfile, threading, time, urllib.request

HZ = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD = os.path.join(ROOT, "..", "shared", "tools", "load")
PG = dict(POSTGRES_USERNAME="postgres", POSTGRES_PASSWORD="", POSTGRES_HOST="127.0.0.1", POSTGRES_PORT="5432")
ROUTES = [("GET /user (100 users)", "/user", "get.lua"), ("GET /user/{id}", "/user/50", "get.lua"), ("POST /user", "", "post.lua")]


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ


def psql(sql):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qAtc", sql], check=True, stdout=subprocess.DEVNULL)


def metric(base, name, state=None):
    text = urllib.request.urlopen(base + "/metrics", timeout=2).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (state is None or f'db_client_connection_state="{state}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait(url):
    for _ in range(3000):
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return
        except Exception:
            time.sleep(0.01)
    raise SystemExit("not ready: " + url)


def bouncer(tmp, port):
    ini, users = os.path.join(tmp, "pgbouncer.ini"), os.path.join(tmp, "users.txt")
    open(users, "w").write('"postgres" ""\n')
    open(ini, "w").write(f"""[databases]
* = host=127.0.0.1 port=5432
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = 20
""")
    os.chmod(tmp, 0o755)
    for f in (ini, users):
        os.chmod(f, 0o644)
    # PgBouncer will not run as root; -u switches once it has read its files.
    user = ["-u", "postgres"] if os.geteuid() == 0 else []
    p = subprocess.Popen(["pgbouncer"] + user + [ini], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(0.5)
    return p


def main():
    secs = sys.argv[1] if len(sys.argv) > 1 else "5"
    pool = sys.argv[2] if len(sys.argv) > 2 else "10"
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "users")
        subprocess.run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binary, "./pkg/cmd/users"], cwd=ROOT, check=True,
                       env={**os.environ, "GOTOOLCHAIN": "auto"})
        pgb = bouncer(tmp, 16433)
        try:
            for path in ("direct", "PgBouncer"):
                db = f"scaling_{secrets.token_hex(4)}"
                psql(f"CREATE DATABASE {db}")
                env = {**os.environ, **PG, "POSTGRES_DATABASE": db, "PORT": "18290", "LOG_LEVEL": "warn", "POSTGRES_MAX_CONNS": pool}
                subprocess.run([binary, "migrate", "up"], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if path == "PgBouncer":
                    env.update(POSTGRES_PORT="16433", POSTGRES_PREPARED_STATEMENTS="false")
                p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                base = "http://127.0.0.1:18290"
                try:
                    wait(base + "/-/ready")
                    for i in range(100):
                        body = json.dumps({"username": f"seed{i}", "email": f"seed{i}@example.com"}).encode()
                        urllib.request.urlopen(urllib.request.Request(base + "/user", body, {"Content-Type": "application/json"})).read()
                    for route, url, script in ROUTES:
                        for conns in (8, 32):
                            samples, stop = [], threading.Event()

                            def sample():
                                while not stop.is_set():
                                    samples.append(metric(base, "db_client_connection_count", "used"))
                                    time.sleep(0.02)

                            w0, c0 = metric(base, "db_client_connection_waits_total"), cpu(p.pid)
                            t = threading.Thread(target=sample)
                            t.start()
                            args = ["--", f"s{secrets.token_hex(4)}"] if script == "post.lua" else []
                            out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "-s", os.path.join(LOAD, script), base + url] + args,
                                                 capture_output=True, text=True, check=True).stdout
                            stop.set()
                            t.join()
                            c1, w1 = cpu(p.pid), metric(base, "db_client_connection_waits_total")
                            n = int(re.search(r"(\d+) requests in", out).group(1))
                            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                            if bad:
                                raise SystemExit(f"{path} {route}: {bad.group(1)} of {n} answers were not 2xx")
                            # The sampler's own GET /metrics is in the CPU; it is small
                            # (50 a second) and the same on every row.
                            rows.append((path, route, conns, n / float(secs), (c1 - c0) / n * 1e6,
                                         sum(samples) / max(len(samples), 1), max(samples or [0]), int(w1 - w0)))
                finally:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(10)
                    psql(f"DROP DATABASE {db} WITH (FORCE)")
        finally:
            os.killpg(pgb.pid, signal.SIGTERM)
            pgb.wait(10)
    print(f"\npool {pool} per process, {secs} s per cell\n")
    print("| path | route | conns | req/s | app CPU µs/req | pool in use: mean | highest | waits |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.1f} | {r[6]:.0f} | {r[7]} |")
    print("\nload after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
