#!/usr/bin/env python3
"""Instructions per request in each service's own process, users against lean.

    scripts/instructions.py [REQUESTS] [ROUNDS]      (defaults 500 and 2)

Runs this tree's `users serve` and ../shared/peers/lean under valgrind's
callgrind, on fresh databases with 100 users (as scripts/vs-lean.py does,
whose build and start-up it reuses), and sends every route REQUESTS
times over one kept-alive connection after 50 unmeasured ones. Callgrind
counts the user-space instructions each process runs, its runtime's
scheduler and collector included, between a zero and a dump around those
requests. That count does not change with the machine's load or speed,
where the CPU time vs-lean.py reads moves by ±20 % between runs: it is the
figure to weigh a code change by. It leaves out the kernel's work (the
syscalls both services make alike) and PostgreSQL's, for which vs-lean.py
is the measure. Needs valgrind (callgrind_control) and what vs-lean.py
needs. The dumps stay in the directory printed last, for
`callgrind_annotate --inclusive=yes FILE`.
"""
import http.client, importlib.util, json, os, secrets, signal, subprocess, sys, tempfile

spec = importlib.util.spec_from_file_location("vslean", os.path.join(os.path.dirname(os.path.abspath(__file__)), "vs-lean.py"))
vs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vs)


def event(name):
    body = json.dumps({"username": name, "email": name + "@example.com"})
    return "POST", "/", body, {"Content-Type": "application/json", "Ce-Specversion": "1.0",
                              "Ce-Type": "com.example.user.create", "Ce-Source": "/load", "Ce-Id": name}


def post(name):
    return "POST", "/user", json.dumps({"username": name, "email": name + "@example.com"}), {"Content-Type": "application/json"}


def get(path):
    return lambda name: ("GET", path, None, {})


# route: (users' request, lean's), from a unique name; lean's nearest to
# the event is its POST /user, as in vs-lean.py.
ROUTES = {r: (get(p), get(p)) for r, p, _, _ in vs.READS}
ROUTES["POST /user"] = (post, post)
ROUTES["create (event)"] = (event, post)


# valgrind 3.19 does not know RDTSCP, which the runtime's cputicks uses
# where the CPU has it (SIGILL at start-up on some machines of this kind).
GODEBUG = "asyncpreemptoff=1,cpu.rdtscp=off"


def send(c, req):
    method, path, body, headers = req
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status}")


def measure(pid, port, out, label, make, n, tag):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for i in range(50):
        send(c, make(f"{tag}w{i}"))
    ctl = lambda *a: subprocess.run(["callgrind_control", *a, str(pid)], check=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctl("-i", "on")
    ctl("-z")
    for i in range(n):
        send(c, make(f"{tag}{i}"))
    ctl("-d", label)
    ctl("-i", "off")
    c.close()
    dumps = sorted((f for f in os.listdir(os.path.dirname(out)) if f.startswith(os.path.basename(out) + ".")),
                   key=lambda f: int(f.rsplit(".", 1)[1]))
    for line in open(os.path.join(os.path.dirname(out), dumps[-1])):
        if line.startswith("totals:"):
            return int(line.split()[1]) / n
    raise SystemExit("no totals in " + dumps[-1])


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    settings = vs.shipped()
    keep = tempfile.mkdtemp(prefix="instructions-")
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Unstripped, so that the dumps name their functions.
        cmds, users_bin = vs.build(tmp, ldflags="")
        for rnd in range(rounds):
            for i, (k, cmd) in enumerate(cmds.items()):
                db = f"instr_{k}_{secrets.token_hex(4)}"
                vs.psql(f"CREATE DATABASE {db}")
                if k == "users":
                    subprocess.run([users_bin, "migrate", "up"], env={**os.environ, **vs.PG, "POSTGRES_DATABASE": db},
                                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                out = os.path.join(keep, f"{k}.r{rnd}")
                grind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
                port = 18290 + i
                p, _ = vs.start(grind + cmd, db, port, {**settings[k], "GODEBUG": GODEBUG})
                try:
                    for route, reqs in ROUTES.items():
                        make = reqs[0] if k == "users" else reqs[1]
                        label = "".join(ch if ch.isalnum() else "_" for ch in route)
                        res.setdefault(route, {}).setdefault(k, []).append(
                            measure(p.pid, port, out, label, make, n, f"{k}{rnd}{secrets.token_hex(2)}"))
                finally:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(30)
                    vs.psql(f"DROP DATABASE {db}")
    print(f"\n{rounds} rounds of {n} requests per route, one connection; user-space instructions per request "
          "in the service's process (thousands), each round's\n")
    print("| route | lean | users | ratio (lowest of each) |")
    print("|---|---|---|---|")
    for route, v in res.items():
        cell = lambda k: " / ".join(f"{x / 1000:.1f}" for x in v[k])
        print(f"| {route} | {cell('lean')} | {cell('users')} | {min(v['users']) / min(v['lean']):.2f}× |")
    print("\ncallgrind dumps:", keep)
    print("load after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
