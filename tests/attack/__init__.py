"""The attack suite: hostile inputs against a real 3-node cluster, as a table of cases.

    cases.py    the table: name, category, the request, the expectation (docs/security.md lists it)
    checks.py   pure: reading raw HTTP answers, the error shape, leak detection, hop signatures
    wire.py     raw sockets: HTTP bytes with short timeouts, gossip datagrams and frames
    target.py   the prepared cluster and the checks every case ends with (clean answer, nothing
                leaked, nothing lost, every node healthy)
    scenarios.py  the cases that are more than one request (tus, media, gossip, storage, delete)
    run.py      the runner: one function per kind of request, run_case, revive

tests/cluster/test_attack_suite.py runs every case against one cluster; tests/unit/attack/ tests
the pure parts.  ``python -m attack.cases`` (with tests/ on the path) prints the table as markdown.
"""
