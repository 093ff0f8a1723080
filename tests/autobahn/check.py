#!/usr/bin/env python3
"""Judges a kosoku (Autobahn|Testsuite) run from its index.json.

Every case must be OK: NON-STRICT, UNIMPLEMENTED, FAILED, ERROR and a
missing verdict all fail. Only 7.1.6, 7.13.1 and 7.13.2, informational by
design, may say INFORMATIONAL. 12.* and 13.* (permessage-deflate) are
judged like the rest. Prints the counts and a closing 'N passed, M failed'
line; exits 1 on any failure, or when fewer cases ran than the optional
second argument says.
"""
import collections
import json
import sys

INFORMATIONAL_OK = {"7.1.6", "7.13.1", "7.13.2"}


def case_key(case_id):
    return tuple(int(p) for p in case_id.split("."))


def main(path, expected=0):
    with open(path) as f:
        index = json.load(f)
    # Autobahn's layout: {agent: {case_id: {"behavior": ..., "behaviorClose": ...}}}
    cases = {}
    for agent, results in index.items():
        for case_id, result in results.items():
            cases[case_id] = result
    counts = collections.Counter()
    bad = []
    for case_id in sorted(cases, key=case_key):
        result = cases[case_id]
        behavior = result.get("behavior", "MISSING")
        close = result.get("behaviorClose", "OK")
        counts[behavior] += 1
        ok = behavior == "OK" or (
            behavior == "INFORMATIONAL" and case_id in INFORMATIONAL_OK
        )
        if close not in ("OK", "INFORMATIONAL"):
            ok = False
        if not ok:
            bad.append(f"{case_id}: behavior={behavior} close={close}")
    print("autobahn verdicts:", dict(sorted(counts.items())))
    for line in bad:
        print("  NOT OK", line)
    if not cases:
        print("autobahn: no case ran")
        return 1
    if len(cases) < expected:
        print(f"autobahn: only {len(cases)} cases ran, expected {expected}")
        return 1
    print(f"autobahn: {len(cases) - len(bad)} passed, {len(bad)} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
