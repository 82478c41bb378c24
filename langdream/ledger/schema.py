"""The ledger's tables, written once in SQLite's words; other backends map the type names.

Columns declared ``INTEGER PRIMARY KEY AUTOINCREMENT`` are the recording order; ``REAL`` holds
epoch seconds (a double), ``BLOB`` float32 vectors, ``TEXT`` ids, namespace keys and JSON.
"""

from __future__ import annotations

SCHEMA_VERSION = 3

VERSIONS_TABLE = """
-- The append-only event log of insights: one row per change, never updated (forgetting scrubs
-- the text of what it forgets). seq orders every change of the data home, which is what
-- rollback to a dream cuts at.
CREATE TABLE IF NOT EXISTS insight_versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    insight_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT 'dream',
    cause TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL,
    hold TEXT,
    remembered INTEGER NOT NULL DEFAULT 0,
    text TEXT NOT NULL,
    applies_when TEXT NOT NULL,
    evidence TEXT NOT NULL,
    support INTEGER NOT NULL,
    threads INTEGER NOT NULL,
    tasks INTEGER NOT NULL DEFAULT 0,
    confidence REAL NOT NULL,
    stats TEXT NOT NULL DEFAULT '{}',
    job_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (insight_id, version)
);
"""

META_TABLE = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"

SCHEMA = (
    META_TABLE
    + """;

CREATE TABLE IF NOT EXISTS episodes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    thread_id TEXT,
    run_id TEXT,
    task TEXT NOT NULL,
    messages TEXT NOT NULL,
    final_answer TEXT,
    success INTEGER,
    score REAL,
    feedback TEXT,
    injected TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL,
    recorded_at REAL NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    consolidated_by TEXT,
    consolidated_at REAL
);
CREATE INDEX IF NOT EXISTS episodes_pending ON episodes (namespace, consolidated_by, seq);
CREATE INDEX IF NOT EXISTS episodes_run ON episodes (run_id);
CREATE INDEX IF NOT EXISTS episodes_thread ON episodes (thread_id);

CREATE TABLE IF NOT EXISTS insights (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL,
    text TEXT NOT NULL,
    applies_when TEXT NOT NULL,
    origin TEXT NOT NULL,
    signature TEXT,
    evidence TEXT NOT NULL,
    support INTEGER NOT NULL,
    threads INTEGER NOT NULL,
    tasks INTEGER NOT NULL,
    confidence REAL NOT NULL,
    stats TEXT NOT NULL,
    version INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    vector BLOB,
    index_dirty INTEGER NOT NULL DEFAULT 1,
    hold TEXT,
    remembered INTEGER NOT NULL DEFAULT 0
);
DROP INDEX IF EXISTS insights_ns_status;
-- Covers general_insights' ranking (no table rows read until the top few are chosen).
CREATE INDEX IF NOT EXISTS insights_live ON insights (namespace, status, tasks, confidence, id);
CREATE INDEX IF NOT EXISTS insights_dirty ON insights (id) WHERE index_dirty = 1;

{versions}
CREATE TABLE IF NOT EXISTS insight_evidence (
    insight_id TEXT NOT NULL,
    episode_id TEXT NOT NULL,
    PRIMARY KEY (insight_id, episode_id)
);
CREATE INDEX IF NOT EXISTS insight_evidence_episode ON insight_evidence (episode_id, insight_id);

CREATE TABLE IF NOT EXISTS dream_jobs (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    status TEXT NOT NULL,
    episodes TEXT NOT NULL,
    clusters TEXT NOT NULL,
    noise TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    model_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    report TEXT,
    committed_seq INTEGER,
    parked_reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dream_jobs_ns_status ON dream_jobs (namespace, status);

-- One dreamer per namespace at a time: the holder renews its lease while it works; a lease
-- whose holder died is taken over (at once on the same machine, else once it expires).
CREATE TABLE IF NOT EXISTS leases (
    namespace TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    expires_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS dream_outputs (
    job_id TEXT NOT NULL,
    cluster INTEGER NOT NULL,
    raw TEXT NOT NULL,
    operations TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (job_id, cluster)
);

CREATE TABLE IF NOT EXISTS clusters (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    vector_sum BLOB NOT NULL,
    size INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS clusters_ns ON clusters (namespace);

CREATE TABLE IF NOT EXISTS cluster_members (
    episode_id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cluster_members_cluster ON cluster_members (cluster_id, seq);

-- The drift guard's tally: for each insight, the runs related to it with whether they were
-- shown it and whether they succeeded. Keyed by episode, so a re-queued run is counted once.
CREATE TABLE IF NOT EXISTS insight_exposure (
    insight_id TEXT NOT NULL,
    episode_id TEXT NOT NULL,
    shown INTEGER NOT NULL,
    success INTEGER NOT NULL,
    PRIMARY KEY (insight_id, episode_id)
);
CREATE INDEX IF NOT EXISTS insight_exposure_episode ON insight_exposure (episode_id);
""".replace("{versions}", VERSIONS_TABLE)
)

# Indexes on columns that schema 2 added: created after an old ledger's upgrade has added them.
LATE_INDEXES = """
CREATE INDEX IF NOT EXISTS insight_versions_cut ON insight_versions (insight_id, seq);
CREATE INDEX IF NOT EXISTS insights_remembered ON insights (namespace) WHERE remembered = 1;
"""

EPISODE_COLUMNS = (
    "id, namespace, thread_id, run_id, task, messages, final_answer, success, score, feedback, "
    "injected, metadata, created_at, revision, consolidated_by"
)
# What an insight's head row and each of its event rows both hold: its state and its provenance.
STATE_COLUMNS = (
    "status", "status_reason", "hold", "remembered", "text", "applies_when", "evidence", "support", "threads",
    "tasks", "confidence", "stats", "version", "job_id", "model_id", "prompt_version",
)  # fmt: skip
INSIGHT_COLUMNS = (
    "id, namespace, status, status_reason, text, applies_when, origin, signature, evidence, support, "
    "threads, tasks, confidence, stats, version, model_id, prompt_version, job_id, created_at, updated_at, "
    "hold, remembered"
)
