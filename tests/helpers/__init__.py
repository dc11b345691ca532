"""What the tests share besides fixtures (those are in tests/conftest.py):

- api: `GQL` and `ServerGQL`, the admin account's email and password;
- browser: steps in a real browser (signing in, donating, `expect`);
- clients: donors as retrying clients, for servers that crash under them;
- databases: which databases the suite runs on;
- outbox: whether everything committed has been delivered (`settled`);
- pledges: pledges made and moved through the services;
- server: `careforall serve` (and any HTTP server) in a process of its own;
- storm: storms of provider events and what they must lead to;
- subscriptions: the totals subscription over a real WebSocket;
- waiting: `wait_until` a predicate holds, instead of sleeping.
"""
