"""The Patroni harness (tests/support/patroni.py) works: a three-node Patroni 3.0 cluster on etcd
3.4 starts, a row written through the multi-host URI survives an unplanned failover (kill -9 of
the whole leader node), a new write succeeds on the new leader, the killed node rejoins as a
replica, and a switchover moves the leader. No books-server and no gRPC here: this checks the
tool the failover wire tests stand on.

Missing patroni or etcd-server fails the test, naming the package (never a skip).

Bounded: each wait has its own timeout in patroni.py, and the module its budget
(BOOKS_WIRE_TIMEOUT_S, as harness.py sets for the other modules). Everything it starts is
registered with the reaper and stopped in a cleanup.

Run by hand:  cd tests/wire && /usr/bin/python3 -m unittest -v test_patroni_harness
"""

import faulthandler
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get("BOOKS_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "support"))
import patroni  # noqa: E402
import reaper  # noqa: E402

MODULE_TIMEOUT_S = float(os.environ.get("BOOKS_WIRE_TIMEOUT_S") or 240)
faulthandler.enable()
faulthandler.dump_traceback_later(MODULE_TIMEOUT_S, exit=True)
reaper.dump_stacks_at(max(1.0, MODULE_TIMEOUT_S - 10))


class PatroniHarnessTest(unittest.TestCase):
    def setUp(self):
        # A missing tool fails, naming what to install: a skip would pass in CI unnoticed.
        patroni.require()
        t = time.monotonic()
        self.c = patroni.PatroniCluster.start(n=3)
        self.addCleanup(self.c.stop)
        print("\ncluster up in %.1f s, leader %s, sync standby %s" %
              (time.monotonic() - t, self.c.leader(), self.c.sync_standby()))

    def test_failover_and_switchover(self):
        c = self.c
        uri = c.uri()
        self.assertEqual(uri.count("127.0.0.1:"), 3)
        c.psql_primary("CREATE TABLE t (id int PRIMARY KEY, v text)")
        c.psql_primary("INSERT INTO t VALUES (1, 'before the kill')")
        # The synchronous standby has it already (synchronous_commit on, synchronous_mode).
        sync = c.sync_standby()
        self.assertIsNotNone(sync)
        self.assertEqual(c.psql(sync, "SELECT v FROM t WHERE id = 1"), "before the kill")

        old = c.leader()
        killed_at = c.kill9_leader()
        self.assertEqual(c.killed, old)
        new, promoted_at = c.wait_leader(not_=old)
        self.assertNotEqual(new, old)
        self.assertEqual(new, sync, "Patroni promotes only the synchronous standby")
        print("failover %s -> %s in %.2f s" % (old, new, promoted_at - killed_at))
        self.assertEqual(c.psql_primary("SELECT v FROM t WHERE id = 1"), "before the kill")
        self.assertEqual(c.psql_primary("INSERT INTO t VALUES (2, 'after') RETURNING "
                                        "inet_server_port()"), str(c.nodes[new].pg_port))
        self.assertEqual(c.leader(), new)

        t = time.time()
        c.restart_member(old)  # back as a replica, streaming from the new leader
        print("%s streaming again %.1f s after its restart" % (old, time.time() - t))
        self.assertTrue(c.in_recovery(old))
        c.wait_replicas()

        target = c.sync_standby()
        t = time.time()
        now, at = c.switchover(candidate=target)
        self.assertEqual(now, target)
        print("switchover %s -> %s in %.2f s" % (new, now, at - t))
        self.assertEqual(c.psql_primary("SELECT count(*) FROM t"), "2")
        c.psql_primary("INSERT INTO t VALUES (3, 'after the switchover')")
        self.assertEqual(c.psql(now, "SELECT v FROM t WHERE id = 3"), "after the switchover")


if __name__ == "__main__":
    unittest.main()
