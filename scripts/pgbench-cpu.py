#!/usr/bin/env python3
"""PostgreSQL CPU per transaction of a pgbench script, read from /proc.

    scripts/pgbench-cpu.py SCRIPT.sql DATABASE

Runs `pgbench -n -M prepared -c4 -j1 -T9 -f SCRIPT DATABASE`, and over 6 s
of its steady state reads the CPU of every PostgreSQL process (per process,
as scripts/vs-lean.py does) and the database's committed transactions
(pg_stat_database.xact_commit). Run it with nothing else using the server.
Needs pgbench and psql, and PostgreSQL on 127.0.0.1:5432 (user postgres).
"""
import os, subprocess, sys, time

HZ = os.sysconf("SC_CLK_TCK")


def backends():
    res = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = open(f"/proc/{pid}/stat").read()
            except OSError:
                continue
            if "(postgres)" in stat:
                f = stat.rsplit(")", 1)[1].split()
                res[pid] = (int(f[11]) + int(f[12])) / HZ
    return res


def commits(db):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qAtc",
                          f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def main():
    script, db = sys.argv[1], sys.argv[2]
    p = subprocess.Popen(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-n", "-M", "prepared",
                          "-c4", "-j1", "-T9", "-f", script, db], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    a, x = backends(), commits(db)
    time.sleep(6)
    b, y = backends(), commits(db)
    p.wait()
    cpu = sum(b[k] - a.get(k, 0.0) for k in b)
    n = y - x - 1  # the reading's own transaction
    print(f"{script}: {cpu / n * 1e6:.0f} µs of PostgreSQL CPU per transaction over {n}")


if __name__ == "__main__":
    main()
