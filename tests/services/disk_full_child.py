"""Run by test_writer_disk_full.py in a child process with a small file-size limit."""

import json
import os
import resource
import signal
import sqlite3
import sys

from sqlalchemy import text

from careforall.db import Database, make_engine, run_migrations
from careforall.services.writer import Writer
from careforall.settings import Settings

path = sys.argv[1]
settings = Settings(database_url=f"sqlite:///{path}")
run_migrations(settings)
db = Database(make_engine(settings))
with db.engine.connect() as conn:
    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def small(name):
    def job(uow):
        with uow:
            uow.session.execute(
                text("INSERT INTO app_secrets (name, value) VALUES (:n, 'x')"),
                {"n": name},
            )
            uow.commit()
        return "ok"

    return job


def big(uow):
    with uow:
        for i in range(400):
            uow.session.execute(
                text(
                    "INSERT INTO app_secrets (name, value) "
                    "VALUES (:n, hex(randomblob(20000)))"
                ),
                {"n": f"big{i}"},
            )
        uow.commit()
    return "ok"


signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = os.path.getsize(path) + 3_000_000
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
writer = Writer(db)
futures = [
    writer.submit(small("first")),
    writer.submit(big),
    writer.submit(small("third")),
]
writer.start()
answers = []
for future in futures:
    try:
        answers.append(future.result(timeout=30))
    except BaseException as exc:
        answers.append(type(exc).__name__)
writer.stop(10)
resource.setrlimit(
    resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
)
conn = sqlite3.connect(path)
stored = {
    name: conn.execute(
        "SELECT count(*) FROM app_secrets WHERE name = ?", (name,)
    ).fetchone()[0]
    for name in ("first", "third")
}
print(json.dumps({"answers": answers, "stored": stored}))
