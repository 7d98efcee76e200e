#!/usr/bin/env python3
"""The users service side by side with ../shared/peers/lean, route by route.

    scripts/vs-lean.py [SECONDS] [ROUNDS]      (defaults 5 and 2)

For every route and for 8 and 32 connections (wrk, one thread), each
service's CPU per request (its process, from /proc/PID/stat) and
PostgreSQL's (every postgres process: run it with nothing else using the
server), requests per second and p99 latency. Each round
starts both services on fresh databases with 100 users, runs the reads
(the list stays at 100 users), then the creates. The table keeps the
lowest CPU, the highest req/s and the lowest p99 over the rounds, which
hold up on a busy machine better than one run does. `create (event)` is
our CloudEvent create set against lean's POST /user (lean has no
CloudEvents). Needs wrk, psql, Go, and PostgreSQL on 127.0.0.1:5432
(user postgres, trust), as the tests do. Prints `uptime` first and last,
and each service's peak RSS. users runs with the GOGC its image sets.
"""
import json, os, re, secrets, signal, subprocess, sys, tempfile, time, urllib.request

HZ = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEAN = os.path.join(ROOT, "..", "shared", "peers", "lean")
LOAD = os.path.join(ROOT, "..", "shared", "tools", "load")
OWN = os.path.join(ROOT, "scripts", "load")
PG = dict(POSTGRES_USERNAME="postgres", POSTGRES_PASSWORD="", POSTGRES_HOST="127.0.0.1", POSTGRES_PORT="5432")


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ


def backends(db):
    """CPU seconds of every PostgreSQL process, by PID: the backends and
    the WAL writer, checkpointer and autovacuum, whose work the writes
    cause. Run it with nothing else using the server."""
    res = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if "(postgres)" in open(f"/proc/{pid}/stat").read():
                    res[pid] = cpu(pid)
            except OSError:
                pass
    return res


def pg_delta(before, after):
    """CPU used between two readings, process by process: one that started
    in between counts from zero, one that ended is left out (a sum over
    all of them would drop by its whole life)."""
    return sum(after[p] - before.get(p, 0.0) for p in after) + 0.0


def psql(sql):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qAtc", sql], check=True, stdout=subprocess.DEVNULL)


def wait(url, secs=180):
    # Generous: under valgrind (scripts/instructions.py) on a busy machine
    # the service's start-up took over 30 s.
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return
        except Exception:
            time.sleep(0.01)
    raise SystemExit("not ready: " + url)


def build(tmp, ldflags="-s -w"):
    """Both binaries; ldflags "" keeps the symbols a profiler names functions by."""
    users, lean = os.path.join(tmp, "users"), os.path.join(tmp, "lean")
    # GOTOOLCHAIN=auto: the release go.mod's toolchain line names, as CI builds it.
    subprocess.run(["go", "build", "-trimpath", "-ldflags", ldflags, "-o", users, "./pkg/cmd/users"], cwd=ROOT, check=True,
                   env={**os.environ, "GOTOOLCHAIN": "auto"})
    subprocess.run(["go", "build", "-trimpath", "-ldflags", ldflags, "-o", lean, "."], cwd=LEAN, check=True,
                   env={**os.environ, "GOFLAGS": "-mod=mod"})
    return {"lean": [lean], "users": [users, "serve"]}, users


def shipped():
    """The runtime settings the image sets (the Dockerfile's ENV GOGC, which
    func.yaml repeats): users is measured as it is deployed. lean runs with
    Go's defaults unless LEAN_GOGC is set, to see what the same setting
    would give it; USERS_GOGC replaces the Dockerfile's."""
    m = re.search(r"(?m)^ENV GOGC=(\d+)$", open(os.path.join(ROOT, "Dockerfile")).read())
    env = {"users": {"GOGC": m.group(1)} if m else {}, "lean": {}}
    for k in env:  # USERS_GOGC, LEAN_GOGC: another setting, to weigh it
        if os.environ.get(k.upper() + "_GOGC"):
            env[k]["GOGC"] = os.environ[k.upper() + "_GOGC"]
    return env


def peak_rss(pid):
    """The process's peak RSS so far (VmHWM), in MB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(cmd, db, port, settings):
    # GOGC as settings (shipped()) say, never the caller's.
    env = {k: v for k, v in os.environ.items() if k != "GOGC"}
    env.update(PG, POSTGRES_DATABASE=db, PORT=str(port), LOG_LEVEL="warn", **settings)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait(base + "/-/ready")
    for i in range(100):
        body = json.dumps({"username": f"seed{i}", "email": f"seed{i}@example.com"}).encode()
        urllib.request.urlopen(urllib.request.Request(base + "/user", body, {"Content-Type": "application/json"})).read()
    return p, base


def wrk(url, script, conns, secs, args=()):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "-s", script, url] + (["--"] + list(args) if args else []),
                         capture_output=True, text=True, check=True).stdout
    n = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = float(re.search(r"p99_ms=([\d.]+)", out).group(1))
    return n, int(bad.group(1)) if bad else 0, p99


READS = [  # (route, path, users' wrk script, lean's)
    ("GET /user (100 users)", "/user", "get.lua", "get.lua"),
    ("GET /user?limit=100", "/user?limit=100", "get.lua", "get.lua"),
    ("GET /user/{id}", "/user/50", "get.lua", "get.lua"),
    ("GET /-/healthy", "/-/healthy", "get.lua", "get.lua"),
    ("GET /-/ready", "/-/ready", "get.lua", "get.lua"),
]
WRITES = [
    ("POST /user", "", "post.lua", "post.lua"),
    ("create (event)", "", os.path.join(OWN, "event.lua"), "post.lua"),
]


def main():
    secs = sys.argv[1] if len(sys.argv) > 1 else "5"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    settings = shipped()
    print("runtime settings:", {k: v or "Go's defaults" for k, v in settings.items()})
    res, rss = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        cmds, users_bin = build(tmp)
        for rnd in range(rounds):
            dbs = {k: f"perf_{k}_{secrets.token_hex(4)}" for k in cmds}
            for db in dbs.values():
                psql(f"CREATE DATABASE {db}")
            subprocess.run([users_bin, "migrate", "up"], env={**os.environ, **PG, "POSTGRES_DATABASE": dbs["users"]},
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs = {k: start(c, dbs[k], 18190 + i, settings[k]) for i, (k, c) in enumerate(cmds.items())}
            try:
                for phase in (READS, WRITES):
                    for route, path, ours, theirs in phase:
                        for conns in (8, 32):
                            for k, (p, base) in procs.items():  # interleaved: lean, users, per cell
                                script = ours if k == "users" else theirs
                                script = script if os.path.isabs(script) else os.path.join(LOAD, script)
                                args = [f"{k}{rnd}c{conns}x{secrets.token_hex(3)}"] if phase is WRITES else []
                                c0, g0 = cpu(p.pid), backends(dbs[k])
                                n, bad, p99 = wrk(base + path, script, conns, secs, args)
                                c1, g1 = cpu(p.pid), backends(dbs[k])
                                if bad:
                                    raise SystemExit(f"{k} {route}: {bad} of {n} answers were not 2xx")
                                res.setdefault((route, conns), {}).setdefault(k, []).append(
                                    ((c1 - c0) / n * 1e6, pg_delta(g0, g1) / n * 1e6, n / float(secs), p99))
            finally:
                for k, (p, _) in procs.items():
                    rss[k] = max(rss.get(k, 0.0), peak_rss(p.pid))
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(10)
                for db in dbs.values():
                    psql(f"DROP DATABASE {db}")
    print(f"\n{rounds} rounds of {secs} s per cell; CPU in µs per request (app + PostgreSQL), lowest of the rounds\n")
    print("| route | conns | lean app + pg | users app + pg | ratio | lean req/s | users req/s | lean p99 ms | users p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (route, conns), v in res.items():
        row = [route, str(conns)]
        tot = {}
        for k in ("lean", "users"):
            app, pg = min(x[0] for x in v[k]), min(x[1] for x in v[k])
            tot[k] = app + pg
            row.append(f"{app:.0f} + {pg:.0f}")
        row.append(f"{tot['users'] / tot['lean']:.2f}×")
        row += [f"{max(x[2] for x in v[k]):.0f}" for k in ("lean", "users")]
        row += [f"{min(x[3] for x in v[k]):.2f}" for k in ("lean", "users")]
        print("| " + " | ".join(row) + " |")
    print("\npeak RSS (VmHWM, highest of the rounds):", ", ".join(f"{k} {v:.1f} MB" for k, v in rss.items()))
    print("\nload after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
