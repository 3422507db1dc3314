#!/bin/sh
# make-corpus.sh: seed corpus for fuzz-store-file (run from anywhere, needs
# the sqlite3 shell). the schema text is a frozen copy of released steps.
set -eu
out="$(dirname "$0")/corpus"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

v1="
PRAGMA page_size = 512;
CREATE TABLE schema (version INTEGER NOT NULL);
INSERT INTO schema (version) VALUES (1);
CREATE TABLE registrations (id INTEGER PRIMARY KEY AUTOINCREMENT, uid INTEGER NOT NULL,
 app_id TEXT NOT NULL, name TEXT NOT NULL, trigger_kind TEXT NOT NULL,
 entry_point TEXT NOT NULL, custom_trigger TEXT, recurrence TEXT NOT NULL,
 conditions TEXT NOT NULL, created INTEGER NOT NULL, UNIQUE (uid, app_id, name));
CREATE TABLE consents (uid INTEGER NOT NULL, app_id TEXT NOT NULL, model TEXT NOT NULL,
 allowed INTEGER NOT NULL, time INTEGER NOT NULL, PRIMARY KEY (uid, app_id, model)) WITHOUT ROWID;
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id INTEGER NOT NULL,
 uid INTEGER NOT NULL, app_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
 time INTEGER NOT NULL);
CREATE INDEX events_by_task ON events (task_id, seq);
CREATE INDEX events_by_app ON events (uid, app_id, seq);
CREATE TABLE event_drops (task_id INTEGER PRIMARY KEY, dropped INTEGER NOT NULL);
CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, task_id INTEGER NOT NULL,
 uid INTEGER NOT NULL, app_id TEXT NOT NULL, task_name TEXT NOT NULL, device TEXT NOT NULL,
 model TEXT NOT NULL, trigger_kind TEXT NOT NULL, entry_point TEXT NOT NULL,
 started INTEGER NOT NULL, ended INTEGER NOT NULL DEFAULT 0, result TEXT NOT NULL,
 reason TEXT NOT NULL DEFAULT '', bytes_in INTEGER NOT NULL DEFAULT 0,
 bytes_out INTEGER NOT NULL DEFAULT 0);
CREATE INDEX history_by_app ON history (uid, app_id, started);
INSERT INTO registrations VALUES (1, 1000, 'org.example.App', 'sync', 'custom', 'test',
 'wake', 'once', 'network,user-present', 1700000000000000);
INSERT INTO registrations VALUES (2, 1000, 'org.example.App', 'fw', 'device-servicing', 'smp',
 NULL, '', '', 1700000000000000);
INSERT INTO consents VALUES (1000, 'org.example.App', 'Watch', 1, 1700000000000001);
INSERT INTO events VALUES (41, 1, 1000, 'org.example.App', 'progress',
 '{''step'': <int32 7>, ''b'': <@ay [1, 2]>}', 1700000000000002);
INSERT INTO events VALUES (42, 2, 1000, 'org.example.App', 'completed', '@a{sv} {}', 3);
INSERT INTO event_drops VALUES (1, 3);
INSERT INTO history VALUES (9, 1, 1000, 'org.example.App', 'sync', 'dev', 'Watch',
 'custom', 'test', 1700000000000003, 0, 'running', '', 0, 0);
INSERT INTO history VALUES (10, 2, 1000, 'org.example.App', 'fw', 'dev', 'Watch',
 'device-servicing', 'smp', 1700000000000003, 1700000000000009, 'failed', 'boom', 5, 6);
"
v2="
CREATE TABLE device_info (device_key TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
 updated INTEGER NOT NULL, PRIMARY KEY (device_key, key)) WITHOUT ROWID;
CREATE INDEX history_by_end ON history (ended);
UPDATE schema SET version = 2;
INSERT INTO device_info VALUES ('dev', 'model', 'Watch', 1);
"

sqlite3 "$tmp/v1.db" "$v1"
cp "$tmp/v1.db" "$out/v1.db"
cp "$tmp/v1.db" "$tmp/v2.db"
sqlite3 "$tmp/v2.db" "$v2"
cp "$tmp/v2.db" "$out/v2.db"

cp "$tmp/v2.db" "$tmp/tampered.db"
sqlite3 "$tmp/tampered.db" "
UPDATE events SET data = '{''step'': <int32 1' WHERE seq = 41;
UPDATE events SET kind = 'exploded' WHERE seq = 42;
UPDATE registrations SET trigger_kind = 'teleport', uid = -5 WHERE id = 2;
UPDATE registrations SET conditions = 'network,,bogus' WHERE id = 1;
UPDATE history SET trigger_kind = 'x', bytes_in = 'lots' WHERE id = 10;
UPDATE consents SET allowed = 7;
UPDATE event_drops SET dropped = -9;
UPDATE device_info SET value = CAST(X'57ff00' AS TEXT);"
cp "$tmp/tampered.db" "$out/v2-tampered.db"

cp "$tmp/v2.db" "$tmp/future.db"
sqlite3 "$tmp/future.db" "UPDATE schema SET version = 99;"
cp "$tmp/future.db" "$out/future.db"

cp "$tmp/v2.db" "$tmp/notables.db"
sqlite3 "$tmp/notables.db" "DROP TABLE device_info;"
cp "$tmp/notables.db" "$out/v2-missing-table.db"

head -c 1536 "$tmp/v2.db" > "$out/v2-truncated.db"
printf 'SQLite format 3\000 this is not really one' > "$out/magic-only.db"
printf '[General]\nnot a database\n' > "$out/text.db"
