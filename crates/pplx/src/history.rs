//! Every question and answer, kept in an embedded SQLite database and searchable (FTS5).
//!
//! The database lives at `$XDG_DATA_HOME/pplx/history.db` (else
//! `~/.local/share/pplx/history.db`). It runs in WAL mode with a busy timeout, so several
//! `pplx` processes can write at once and lose nothing; its schema is versioned
//! (`PRAGMA user_version`) and migrated on open. It holds questions, answers, sources, usage
//! and timings: never a key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chat_core::{Message, Sources, Usage};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// How long a write waits for another process's.
const BUSY_TIMEOUT: Duration = Duration::from_secs(3);

/// The schema, one entry per version: `MIGRATIONS[n]` takes version n to n + 1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    started_at INTEGER NOT NULL
);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    at INTEGER NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    reasoning TEXT NOT NULL,
    model TEXT NOT NULL,
    api TEXT NOT NULL,
    sources TEXT NOT NULL,
    usage TEXT,
    cost REAL,
    first_token_ms INTEGER,
    total_ms INTEGER NOT NULL,
    fallback INTEGER NOT NULL,
    cached INTEGER NOT NULL,
    simulated INTEGER NOT NULL,
    error_kind TEXT,
    error_message TEXT
);
CREATE INDEX entries_by_conversation ON entries(conversation_id, id);
CREATE VIRTUAL TABLE entries_text USING fts5(
    question, answer, content='entries', content_rowid='id'
);
CREATE TRIGGER entries_text_insert AFTER INSERT ON entries BEGIN
    INSERT INTO entries_text(rowid, question, answer) VALUES (new.id, new.question, new.answer);
END;
"#,
    r#"
ALTER TABLE entries ADD COLUMN attachments TEXT NOT NULL DEFAULT '[]';
"#,
    r#"
ALTER TABLE entries ADD COLUMN run_id TEXT;
ALTER TABLE entries ADD COLUMN detached INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
ALTER TABLE entries ADD COLUMN filters TEXT;
"#,
    r#"
CREATE TABLE spend (
    period TEXT PRIMARY KEY,
    spent INTEGER NOT NULL DEFAULT 0,
    largest INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE spend_holds (
    id TEXT PRIMARY KEY,
    period TEXT NOT NULL,
    amount INTEGER NOT NULL,
    until_ms INTEGER NOT NULL
);
"#,
];

/// A history problem: the database could not be opened, read or written.
#[derive(Debug)]
pub struct HistoryError(String);

impl std::fmt::Display for HistoryError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for HistoryError {}

impl From<rusqlite::Error> for HistoryError {
    fn from(error: rusqlite::Error) -> Self {
        HistoryError(match &error {
            rusqlite::Error::SqliteFailure(failure, _)
                if failure.code == rusqlite::ErrorCode::DatabaseBusy
                    || failure.code == rusqlite::ErrorCode::DatabaseLocked =>
            {
                "the history database is locked by another process".to_owned()
            }
            rusqlite::Error::SqliteFailure(failure, _)
                if failure.code == rusqlite::ErrorCode::NotADatabase
                    || failure.code == rusqlite::ErrorCode::DatabaseCorrupt =>
            {
                "the history database is damaged (move it aside to start a new one)".to_owned()
            }
            _ => format!("the history database failed: {error}"),
        })
    }
}

/// One question and what came of it, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Entry {
    /// Its number, for `pplx log show`.
    pub id: i64,
    /// The conversation it belongs to.
    pub conversation: i64,
    /// When it was asked (seconds since 1970, UTC).
    pub at: i64,
    /// The question.
    pub question: String,
    /// The answer (for a failure, the text delivered before it).
    pub answer: String,
    /// The reasoning, when shown by the model.
    pub reasoning: String,
    /// The model (or preset) asked.
    pub model: String,
    /// `sonar` or `agent`.
    pub api: String,
    /// Its sources.
    pub sources: Sources,
    /// Token counts and cost, when given.
    pub usage: Option<Usage>,
    /// The cost in US dollars, when given.
    pub cost: Option<f64>,
    /// Milliseconds to the first answer text.
    pub first_token_ms: Option<u64>,
    /// Milliseconds to the end.
    pub total_ms: u64,
    /// Whether the non-streaming fallback answered.
    pub fallback: bool,
    /// Whether the cache answered.
    pub cached: bool,
    /// Whether the built-in simulator answered.
    pub simulated: bool,
    /// The error's kind, when the request failed.
    pub error_kind: Option<String>,
    /// The error's message, when the request failed.
    pub error_message: Option<String>,
    /// The files sent with the question (`--attach`): names and sizes, never their bytes.
    pub attachments: Vec<Attached>,
    /// The background run behind it (`--detach`, `pplx attach`).
    pub run_id: Option<String>,
    /// It only started a background run (`--detach`): the answer comes with `pplx attach`.
    pub detached: bool,
    /// The search filters it was asked with (`--domain`, `--recency`, `--after`,
    /// `--before`), as sent; `null` for none.
    pub filters: serde_json::Value,
}

/// A file sent with a question, as the history keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Attached {
    /// The file's name (not its path).
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Its media type, from its first bytes.
    pub media_type: String,
}

impl Attached {
    /// A file named `name` of `bytes` bytes and `media_type`.
    pub fn new(name: impl Into<String>, bytes: u64, media_type: impl Into<String>) -> Self {
        Attached {
            name: name.into(),
            bytes,
            media_type: media_type.into(),
        }
    }
}

/// The history database.
pub struct History {
    connection: Connection,
}

impl std::fmt::Debug for History {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("History").finish_non_exhaustive()
    }
}

impl History {
    /// `$XDG_DATA_HOME/pplx/history.db`, else `~/.local/share/pplx/history.db`.
    pub fn default_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_DATA_HOME")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
            })?;
        Some(base.join("pplx").join("history.db"))
    }

    /// Opens (or creates) the database at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// When the file cannot be created, is not a database, is damaged or stays locked.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        private::prepare(path)?;
        let connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer, and writers from several processes queue.
        // Several processes opening a new database at once can deadlock on switching it to
        // WAL, and SQLite then answers "busy" at once instead of waiting: try again shortly.
        while_busy(|| connection.pragma_update(None, "journal_mode", "WAL"))?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        // The journal files exist now: SQLite gave them the database's mode, but files
        // left by an older pplx may be wider.
        private::tighten_files(path)?;
        let mut history = History { connection };
        history.migrate()?;
        Ok(history)
    }

    fn migrate(&mut self) -> Result<(), HistoryError> {
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: usize = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(HistoryError(format!(
                "the history database is from a newer pplx (schema {version}, this one knows {})",
                MIGRATIONS.len()
            )));
        }
        for migration in &MIGRATIONS[version..] {
            transaction.execute_batch(migration)?;
        }
        transaction.pragma_update(None, "user_version", MIGRATIONS.len())?;
        transaction.commit()?;
        Ok(())
    }

    /// Starts a conversation; returns its number.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub fn new_conversation(&self) -> Result<i64, HistoryError> {
        self.connection.execute(
            "INSERT INTO conversations (started_at) VALUES (?1)",
            params![now()],
        )?;
        Ok(self.connection.last_insert_rowid())
    }

    /// A run started with `--detach`: the one with `id`, or the latest; its id, question,
    /// model and conversation.
    ///
    /// # Errors
    /// When the database cannot be read.
    #[allow(clippy::type_complexity, reason = "one row's four columns, read once")]
    pub fn detached_run(
        &self,
        id: Option<&str>,
    ) -> Result<Option<(String, String, String, Option<i64>)>, HistoryError> {
        let row =
            |row: &rusqlite::Row<'_>| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?));
        let found = match id {
            Some(id) => self
                .connection
                .query_row(
                    "SELECT run_id, question, model, conversation_id FROM entries WHERE detached = 1 AND run_id = ?1 ORDER BY id DESC LIMIT 1",
                    params![id],
                    row,
                )
                .optional()?,
            None => self
                .connection
                .query_row(
                    "SELECT run_id, question, model, conversation_id FROM entries WHERE detached = 1 ORDER BY id DESC LIMIT 1",
                    [],
                    row,
                )
                .optional()?,
        };
        Ok(found)
    }

    /// The conversation of the latest entry, if any.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn last_conversation(&self) -> Result<Option<i64>, HistoryError> {
        Ok(self
            .connection
            .query_row(
                "SELECT conversation_id FROM entries ORDER BY id DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Whether conversation `id` exists.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn has_conversation(&self, id: i64) -> Result<bool, HistoryError> {
        Ok(self
            .connection
            .query_row(
                "SELECT 1 FROM conversations WHERE id = ?1",
                params![id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// A conversation's answered exchanges, as messages to send as context.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn messages(&self, conversation: i64) -> Result<Vec<Message>, HistoryError> {
        let mut statement = self.connection.prepare(
            "SELECT question, answer FROM entries WHERE conversation_id = ?1 AND error_kind IS NULL ORDER BY id",
        )?;
        let rows = statement.query_map(params![conversation], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut messages = Vec::new();
        for row in rows {
            let (question, answer) = row?;
            messages.push(Message::user(question));
            messages.push(Message::assistant(answer));
        }
        Ok(messages)
    }

    /// Records an entry (its `id` and `at` are set here); returns its number.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub fn record(&self, entry: &Entry) -> Result<i64, HistoryError> {
        self.connection.execute(
            "INSERT INTO entries (conversation_id, at, question, answer, reasoning, model, api, sources, usage, cost, first_token_ms, total_ms, fallback, cached, simulated, error_kind, error_message, attachments, run_id, detached, filters)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
            params![
                entry.conversation,
                now(),
                kept_question(entry),
                entry.answer,
                entry.reasoning,
                entry.model,
                entry.api,
                json(&entry.sources),
                entry.usage.as_ref().map(json),
                entry.cost,
                entry.first_token_ms.map(|millis| millis.min(i64::MAX as u64) as i64),
                entry.total_ms.min(i64::MAX as u64) as i64,
                entry.fallback,
                entry.cached,
                entry.simulated,
                entry.error_kind,
                entry.error_message,
                json(&entry.attachments),
                entry.run_id,
                entry.detached,
                (!entry.filters.is_null()).then(|| json(&entry.filters)),
            ],
        )?;
        Ok(self.connection.last_insert_rowid())
    }

    /// Fills the entry `--detach` recorded for `entry.run_id` with what a reader of the run
    /// (`pplx attach`) got: one question is one entry, whoever finishes it. A complete answer
    /// already kept is never replaced by a failed or cancelled reading. `false` when the
    /// history has no such run (it was started elsewhere): record the entry instead.
    ///
    /// # Errors
    /// When the database cannot be read or written.
    pub fn fill_run(&self, entry: &Entry) -> Result<bool, HistoryError> {
        let Some(run_id) = &entry.run_id else {
            return Ok(false);
        };
        let found: Option<(i64, Option<String>, String)> = self
            .connection
            .query_row(
                "SELECT id, error_kind, answer FROM entries WHERE detached = 1 AND run_id = ?1 ORDER BY id DESC LIMIT 1",
                params![run_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        let Some((id, kept_error, kept_answer)) = found else {
            return Ok(false);
        };
        let complete = kept_error.is_none() && !kept_answer.is_empty();
        if complete && entry.error_kind.is_some() {
            return Ok(true);
        }
        self.connection.execute(
            "UPDATE entries SET answer = ?2, reasoning = ?3, sources = ?4, usage = ?5, cost = ?6, first_token_ms = ?7, total_ms = ?8, fallback = ?9, cached = ?10, error_kind = ?11, error_message = ?12 WHERE id = ?1",
            params![
                id,
                entry.answer,
                entry.reasoning,
                json(&entry.sources),
                entry.usage.as_ref().map(json),
                entry.cost,
                entry.first_token_ms.map(|millis| millis.min(i64::MAX as u64) as i64),
                entry.total_ms.min(i64::MAX as u64) as i64,
                entry.fallback,
                entry.cached,
                entry.error_kind,
                entry.error_message,
            ],
        )?;
        Ok(true)
    }

    /// The latest `limit` entries, newest first.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn recent(&self, limit: usize) -> Result<Vec<Entry>, HistoryError> {
        self.select(
            "SELECT * FROM entries ORDER BY id DESC LIMIT ?1",
            params![limit.min(i64::MAX as usize) as i64],
        )
    }

    /// Entries whose question or answer holds every word, best matches first.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn search(&self, words: &[String], limit: usize) -> Result<Vec<Entry>, HistoryError> {
        // Each word quoted, so FTS5 syntax in what a person typed is taken literally.
        let query: Vec<String> = words
            .iter()
            .flat_map(|words| words.split_whitespace())
            .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
            .collect();
        if query.is_empty() {
            return Ok(Vec::new());
        }
        self.select(
            "SELECT entries.* FROM entries_text JOIN entries ON entries.id = entries_text.rowid
             WHERE entries_text MATCH ?1 ORDER BY rank LIMIT ?2",
            params![query.join(" "), limit.min(i64::MAX as usize) as i64],
        )
    }

    /// Every entry of conversation `id`, oldest first.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn conversation(&self, id: i64) -> Result<Vec<Entry>, HistoryError> {
        self.select(
            "SELECT * FROM entries WHERE conversation_id = ?1 ORDER BY id",
            params![id],
        )
    }

    /// The model (as it was resolved) of conversation `id`'s latest entry, if it has one.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn conversation_model(&self, id: i64) -> Result<Option<String>, HistoryError> {
        Ok(self
            .connection
            .query_row(
                "SELECT model FROM entries WHERE conversation_id = ?1 ORDER BY id DESC LIMIT 1",
                params![id],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Entry `id`.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn get(&self, id: i64) -> Result<Option<Entry>, HistoryError> {
        Ok(self
            .select("SELECT * FROM entries WHERE id = ?1", params![id])?
            .pop())
    }

    fn select(
        &self,
        sql: &str,
        parameters: impl rusqlite::Params,
    ) -> Result<Vec<Entry>, HistoryError> {
        let mut statement = self.connection.prepare(sql)?;
        let rows = statement.query_map(parameters, |row| {
            let sources: String = row.get("sources")?;
            let usage: Option<String> = row.get("usage")?;
            Ok(Entry {
                id: row.get("id")?,
                conversation: row.get("conversation_id")?,
                at: row.get("at")?,
                question: row.get("question")?,
                answer: row.get("answer")?,
                reasoning: row.get("reasoning")?,
                model: row.get("model")?,
                api: row.get("api")?,
                sources: serde_json::from_str(&sources).unwrap_or_default(),
                usage: usage.and_then(|usage| serde_json::from_str(&usage).ok()),
                cost: row.get("cost")?,
                first_token_ms: row
                    .get::<_, Option<i64>>("first_token_ms")?
                    .map(|millis| millis.max(0) as u64),
                total_ms: row.get::<_, i64>("total_ms")?.max(0) as u64,
                fallback: row.get("fallback")?,
                cached: row.get("cached")?,
                simulated: row.get("simulated")?,
                error_kind: row.get("error_kind")?,
                error_message: row.get("error_message")?,
                attachments: serde_json::from_str(&row.get::<_, String>("attachments")?)
                    .unwrap_or_default(),
                run_id: row.get("run_id")?,
                detached: row.get("detached")?,
                filters: row
                    .get::<_, Option<String>>("filters")?
                    .and_then(|filters| serde_json::from_str(&filters).ok())
                    .unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

/// The spend of `[budget]` kept in the history database, so that every `pplx` run of one
/// user counts against one limit without Redis: a period's figures in `spend`, requests in
/// flight in `spend_holds`, each step one immediate transaction (two runs never both take
/// the last of a limit). A database that cannot be read or written is said once, and this
/// run counts alone.
pub struct SpendBook {
    history: std::sync::Mutex<History>,
    fallback: resilience::spend::LocalLedger,
    warned: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SpendBook {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SpendBook").finish_non_exhaustive()
    }
}

impl SpendBook {
    /// The ledger in the database at `path` (opened, and migrated, on its own connection).
    ///
    /// # Errors
    /// As for [`History::open`].
    pub fn open(path: &Path) -> Result<SpendBook, HistoryError> {
        Ok(SpendBook {
            history: std::sync::Mutex::new(History::open(path)?),
            fallback: resilience::spend::LocalLedger::new(),
            warned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Runs `step` in one immediate transaction; a failure is said once and answered `None`.
    fn step<T>(
        &self,
        step: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let mut history = match self.history.lock() {
            Ok(history) => history,
            Err(poisoned) => poisoned.into_inner(),
        };
        let done = history
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .and_then(|transaction| {
                let value = step(&transaction)?;
                transaction.commit()?;
                Ok(value)
            });
        match done {
            Ok(value) => Some(value),
            Err(error) => {
                if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!(
                        "pplx: the budget's spend could not be kept in the history database ({}); this run counts its own spend",
                        HistoryError::from(error)
                    );
                }
                None
            }
        }
    }
}

/// The period's figures, holds whose time is up deleted first.
fn spend_tally(
    transaction: &rusqlite::Transaction<'_>,
    period: &str,
) -> rusqlite::Result<resilience::spend::Tally> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis().min(i64::MAX as u128) as i64);
    transaction.execute(
        "DELETE FROM spend_holds WHERE until_ms <= ?1",
        params![now_ms],
    )?;
    let (spent, largest): (i64, i64) = transaction
        .query_row(
            "SELECT spent, largest FROM spend WHERE period = ?1",
            params![period],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, 0));
    let (held, holds): (i64, i64) = transaction.query_row(
        "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM spend_holds WHERE period = ?1",
        params![period],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let whole = |value: i64| u64::try_from(value).unwrap_or(0);
    Ok(resilience::spend::Tally::new(
        whole(spent),
        whole(held),
        u32::try_from(holds).unwrap_or(u32::MAX),
        whole(largest),
    ))
}

/// Micro-dollars as SQLite keeps integers.
fn stored(micros: u64) -> i64 {
    i64::try_from(micros).unwrap_or(i64::MAX)
}

impl resilience::spend::SpendLedger for SpendBook {
    fn hold<'a>(
        &'a self,
        period: &'a str,
        id: &'a str,
        limit: u64,
        least: u64,
        ttl: Duration,
    ) -> resilience::spend::SpendFuture<'a, Result<u64, resilience::spend::Tally>> {
        let held = self.step(|transaction| {
            let tally = spend_tally(transaction, period)?;
            let amount = match resilience::spend::fitting_hold(tally, limit, least) {
                Ok(amount) => amount,
                Err(tally) => return Ok(Err(tally)),
            };
            let now = std::time::SystemTime::now();
            // Saturating: a deadline from outside cannot overflow the clock.
            let until = now.checked_add(ttl).unwrap_or(now + Duration::from_secs(365 * 86_400));
            let until_ms = until
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis().min(i64::MAX as u128) as i64);
            transaction.execute(
                "INSERT OR REPLACE INTO spend_holds (id, period, amount, until_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, period, stored(amount), until_ms],
            )?;
            Ok(Ok(amount))
        });
        let answer = held.unwrap_or_else(|| self.fallback.hold_now(period, id, limit, least, ttl));
        Box::pin(std::future::ready(answer))
    }

    fn settle<'a>(
        &'a self,
        period: &'a str,
        id: Option<&'a str>,
        cost: u64,
        _keep: Option<Duration>,
    ) -> resilience::spend::SpendFuture<'a, ()> {
        let settled = self.step(|transaction| {
            if let Some(id) = id {
                transaction.execute("DELETE FROM spend_holds WHERE id = ?1", params![id])?;
            }
            transaction.execute(
                "INSERT INTO spend (period, spent, largest) VALUES (?1, ?2, ?2)
                 ON CONFLICT(period) DO UPDATE SET spent = spent + excluded.spent, largest = MAX(largest, excluded.largest)",
                params![period, stored(cost)],
            )?;
            Ok(())
        });
        if settled.is_none() {
            self.fallback.settle_now(period, id, cost);
        }
        Box::pin(std::future::ready(()))
    }

    fn tally<'a>(
        &'a self,
        period: &'a str,
    ) -> resilience::spend::SpendFuture<'a, resilience::spend::Tally> {
        let tally = self
            .step(|transaction| spend_tally(transaction, period))
            .unwrap_or_else(|| self.fallback.tally_now(period));
        Box::pin(std::future::ready(tally))
    }
}

/// Runs `step` again while SQLite says the database is busy without having waited (it does
/// so where waiting could deadlock), for up to [`BUSY_TIMEOUT`].
fn while_busy<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match step() {
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// A conversation's number as `pplx log` prints it (`c3`) or bare (`3`).
///
/// # Errors
/// A message naming both forms, for anything else.
pub fn parse_conversation(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix(['c', 'C']).unwrap_or(text);
    digits
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a conversation: use its number as pplx log shows it (c3, or 3)"
            )
        })
}

/// A value stored as JSON text.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs().min(i64::MAX as u64) as i64)
}

/// `YYYY-MM-DD HH:MM` (UTC) for seconds since 1970.
pub fn format_time(at: i64) -> String {
    let at = at.max(0);
    let seconds = at % 86_400;
    let (year, month, day) = resilience::spend::civil_date(at.unsigned_abs() / 86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        seconds / 3_600,
        seconds % 3_600 / 60
    )
}

/// The most of a failed question the history keeps, in bytes: a question refused for its
/// size (or any that failed) is kept as an excerpt and its size, so one refusal cannot grow
/// the database by what it refused. An answered question is kept whole (it is context).
pub const FAILED_QUESTION_EXCERPT: usize = 4096;

/// The question as the history keeps it (see [`FAILED_QUESTION_EXCERPT`]).
fn kept_question(entry: &Entry) -> std::borrow::Cow<'_, str> {
    let question = entry.question.as_str();
    if entry.error_kind.is_none() || question.len() <= FAILED_QUESTION_EXCERPT {
        return question.into();
    }
    let mut end = FAILED_QUESTION_EXCERPT;
    while !question.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [a question of {} bytes; only its start is kept]",
        &question[..end],
        question.len()
    )
    .into()
}

/// The history holds every question and answer, so it is kept as private as shell history:
/// its directory 0700 when pplx creates it (or it is pplx's own default directory), the
/// database and its WAL and shared-memory files 0600, an existing one tightened on open.
mod private {
    use std::path::Path;

    use super::HistoryError;

    /// Creates what is missing: the directories (0700), then the database file (0600) before
    /// SQLite opens it, so that it is never readable by others, not even for a moment.
    pub(super) fn prepare(path: &Path) -> Result<(), HistoryError> {
        let cannot = |what: &Path, error: std::io::Error| {
            HistoryError(format!("cannot create {}: {error}", what.display()))
        };
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(parent)
                .map_err(|error| cannot(parent, error))?;
            // A directory someone else chose (`--history /tmp/h.db`) keeps its mode; pplx's
            // own directory is tightened even when an older pplx created it wider.
            let own = super::History::default_path()
                .is_some_and(|default| default.parent() == Some(parent));
            if own {
                set_mode(parent, 0o700)?;
            }
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(path).map_err(|error| cannot(path, error))?;
        Ok(())
    }

    /// The database and its journal files, 0600 (the ones that exist).
    pub(super) fn tighten_files(path: &Path) -> Result<(), HistoryError> {
        let mut files = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            files.push(name.into());
        }
        for file in files.iter().filter(|file| file.exists()) {
            set_mode(file, 0o600)?;
        }
        Ok(())
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) -> Result<(), HistoryError> {
        use std::os::unix::fs::PermissionsExt;
        let current = std::fs::metadata(path)
            .map_err(|error| HistoryError(format!("cannot read {}: {error}", path.display())))?
            .permissions()
            .mode();
        if current & 0o777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
                |error| HistoryError(format!("cannot make {} private: {error}", path.display())),
            )?;
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn set_mode(_path: &Path, _mode: u32) -> Result<(), HistoryError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(conversation: i64, question: &str, answer: &str) -> Entry {
        Entry {
            conversation,
            question: question.into(),
            answer: answer.into(),
            model: "sonar".into(),
            api: "sonar".into(),
            total_ms: 12,
            ..Entry::default()
        }
    }

    #[test]
    fn the_spend_book_holds_settles_and_takes_any_deadline() {
        use resilience::spend::SpendLedger;
        let dir = std::env::temp_dir().join(format!("pplx-spend-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.db");
        let book = SpendBook::open(&path).unwrap();
        /// The ledger's answer: the book never waits.
        fn ready<T>(future: resilience::spend::SpendFuture<'_, T>) -> T {
            futures_util::FutureExt::now_or_never(future).unwrap()
        }
        // A deadline from outside, however far, is no overflow.
        let held = ready(book.hold("day:2026-12-07", "a", 30_000, 10_000, Duration::MAX));
        assert_eq!(held, Ok(10_000));
        assert_eq!(
            ready(book.hold(
                "day:2026-12-07",
                "b",
                30_000,
                10_000,
                Duration::from_secs(60)
            )),
            Ok(10_000)
        );
        let refused = ready(book.hold(
            "day:2026-12-07",
            "c",
            25_000,
            10_000,
            Duration::from_secs(60),
        ));
        assert_eq!(refused.unwrap_err().held, 20_000);
        ready(book.settle("day:2026-12-07", Some("a"), 4_000, None));
        // A second connection (another run) sees the same figures.
        let other = SpendBook::open(&path).unwrap();
        let tally = ready(other.tally("day:2026-12-07"));
        assert_eq!(
            (tally.spent, tally.held, tally.holds, tally.largest),
            (4_000, 10_000, 1, 4_000)
        );
        assert_eq!(
            ready(other.tally("day:2026-12-08")),
            resilience::spend::Tally::default()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_detached_run_is_one_entry_filled_by_whoever_finishes_it() {
        let dir = std::env::temp_dir().join(format!("pplx-runs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let history = History::open(&dir.join("history.db")).unwrap();
        let conversation = history.new_conversation().unwrap();
        let mut started = entry(conversation, "Why?", "");
        started.run_id = Some("resp_1".into());
        started.detached = true;
        history.record(&started).unwrap();
        let reading = |answer: &str, error: Option<&str>| {
            let mut read = entry(conversation, "Why?", answer);
            read.run_id = Some("resp_1".into());
            read.error_kind = error.map(str::to_owned);
            read
        };
        assert!(history.fill_run(&reading("Be", Some("cancelled"))).unwrap());
        assert!(history.fill_run(&reading("Because.", None)).unwrap());
        assert!(
            history.fill_run(&reading("", Some("cancelled"))).unwrap(),
            "found, and kept as it was"
        );
        let kept = history.recent(10).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].answer.as_str(), kept[0].error_kind.as_deref()),
            ("Because.", None)
        );
        let mut elsewhere = reading("Other.", None);
        elsewhere.run_id = Some("resp_2".into());
        assert!(
            !history.fill_run(&elsewhere).unwrap(),
            "a run started elsewhere"
        );
        drop(history);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn the_history_is_private_when_created_and_tightened_when_found_open() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = std::env::temp_dir().join(format!("pplx-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("new").join("history.db");
        let history = History::open(&path).unwrap();
        history.new_conversation().unwrap();
        assert_eq!(
            mode(path.parent().unwrap()),
            0o700,
            "a directory pplx creates"
        );
        assert_eq!(mode(&path), 0o600);
        let wal = path.with_file_name("history.db-wal");
        assert!(wal.exists(), "WAL mode makes a -wal file");
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(mode(&path.with_file_name("history.db-shm")), 0o600);
        drop(history);
        // A database an older pplx left world-readable is tightened on open.
        let old = dir.join("old.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        History::open(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
        // An existing directory the user chose keeps its own mode.
        let chosen = dir.join("chosen");
        std::fs::create_dir(&chosen).unwrap();
        std::fs::set_permissions(&chosen, std::fs::Permissions::from_mode(0o755)).unwrap();
        History::open(&chosen.join("h.db")).unwrap();
        assert_eq!(mode(&chosen), 0o755);
        assert_eq!(mode(&chosen.join("h.db")), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn entries_are_kept_searched_and_continued() {
        let dir = std::env::temp_dir().join(format!("pplx-history-{}", std::process::id()));
        let path = dir.join("history.db");
        let _ = std::fs::remove_file(&path);
        let history = History::open(&path).unwrap();
        let first = history.new_conversation().unwrap();
        history
            .record(&entry(
                first,
                "Explain quantum computing",
                "Qubits hold superpositions.",
            ))
            .unwrap();
        let mut failed = entry(first, "And volcanoes?", "Olympus");
        failed.error_kind = Some("interrupted".into());
        history.record(&failed).unwrap();
        let second = history.new_conversation().unwrap();
        let id = history
            .record(&entry(
                second,
                "What is the tallest volcano?",
                "Olympus Mons \"rises\" 22 km.",
            ))
            .unwrap();
        assert_eq!(history.last_conversation().unwrap(), Some(second));
        assert_eq!(
            history.messages(first).unwrap(),
            [
                Message::user("Explain quantum computing"),
                Message::assistant("Qubits hold superpositions.")
            ],
            "failed exchanges are not context"
        );
        let found = history.search(&["tallest volcano".into()], 10).unwrap();
        assert_eq!(found.iter().map(|entry| entry.id).collect::<Vec<_>>(), [id]);
        assert!(
            history.search(&["\"rises\" OR".into()], 10).is_ok(),
            "typed words are literal"
        );
        assert_eq!(history.recent(2).unwrap()[0].id, id);
        assert_eq!(
            history.get(id).unwrap().unwrap().question,
            "What is the tallest volcano?"
        );
        drop(history);
        // Reopening migrates nothing and keeps everything.
        assert_eq!(History::open(&path).unwrap().recent(10).unwrap().len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn times_read_as_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(1_764_374_400), "2025-11-29 00:00");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00");
    }

    #[test]
    fn conversations_are_named_as_pplx_log_prints_them() {
        assert_eq!(parse_conversation("c3"), Ok(3));
        assert_eq!(parse_conversation("C12"), Ok(12));
        assert_eq!(parse_conversation("3"), Ok(3));
        for bad in ["", "c", "cc3", "c-1", "0", "x3", "3c"] {
            let error = parse_conversation(bad).unwrap_err();
            assert!(error.contains("c3"), "{bad}: {error}");
        }
    }
}
