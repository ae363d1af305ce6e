#!/usr/bin/env python3
"""Instructions per `GET /api/v2/webhooks`, counted by valgrind's callgrind: a figure the machine's
noise does not move (the same binary gives the same count within ~1 %, whatever else runs).

    scripts/api-instructions.py BINARY [BASELINE_BINARY]

Each binary serves a fresh SQLite database under callgrind; after 50 warm-up requests over one
keep-alive connection the counters are zeroed, N requests are sent and the counters dumped, for
N = 300 and N = 1300: the difference over 1000 is the cost of one request, without start-up or
what the node does on its own meanwhile. With a second binary, both are measured in this run and
the ratio printed. Needs valgrind (`apt-get install valgrind`) and release builds.
"""
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


def operator(binary, env, *args):
    out = subprocess.run([binary, *args, "--json"], env=env, check=True, capture_output=True)
    return json.loads(out.stdout)


def count(binary, requests):
    """Instructions the node ran while answering `requests` requests."""
    with tempfile.TemporaryDirectory() as work:
        env = dict(os.environ, SIPSIM_DATABASE_URL=f"sqlite://{work}/db.sqlite?mode=rwc",
                   SIPSIM_API_RATE_LIMIT="0", SIPSIM_ALLOW_INSECURE_TARGETS="1")
        account = operator(binary, env, "account", "create", "Bench")["account_id"]
        operator(binary, env, "integration", "set", "--account", account,
                 "--url", "http://127.0.0.1:9/hook")
        client = operator(binary, env, "client", "create", "--account", account,
                          "--scopes", "webhooks.read webhooks.write")
        port = random.randint(20000, 29999)
        node = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/cg.%p",
             "--dump-before=none", binary, "serve", "--listen", f"127.0.0.1:{port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    urllib.request.urlopen(base + "/readyz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            form = urllib.parse.urlencode({"grant_type": "client_credentials",
                                           "client_id": client["client_id"],
                                           "client_secret": client["client_secret"]}).encode()
            token = json.load(urllib.request.urlopen(base + "/oauth/token", form))["access_token"]
            conn = http.client.HTTPConnection("127.0.0.1", port)

            def get():
                conn.request("GET", "/api/v2/webhooks", headers={"Authorization": f"Bearer {token}"})
                answer = conn.getresponse()
                answer.read()
                assert answer.status == 200, answer.status

            for _ in range(50):
                get()
            subprocess.run(["callgrind_control", "-z", str(node.pid)], check=True,
                           capture_output=True)
            for _ in range(requests):
                get()
            subprocess.run(["callgrind_control", "-d", "measured", str(node.pid)], check=True,
                           capture_output=True)
        finally:
            node.terminate()
            node.wait()
        with open(f"{work}/cg.{node.pid}.1") as dump:
            for line in dump:
                if line.startswith("summary:"):
                    return int(line.split()[1])
        raise SystemExit("callgrind wrote no summary")


def per_request(binary):
    return (count(binary, 1300) - count(binary, 300)) / 1000


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    binaries = [os.path.abspath(b) for b in sys.argv[1:]]
    costs = [per_request(b) for b in binaries]
    for binary, cost in zip(binaries, costs):
        print(f"{cost:>10,.0f} instructions per request  {binary}")
    if len(costs) == 2:
        print(f"ratio {costs[0] / costs[1]:.3f} (first / second)")


if __name__ == "__main__":
    main()
