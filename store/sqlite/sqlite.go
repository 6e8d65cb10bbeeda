// Package sqlite is the default state store: one SQLite file in WAL mode,
// opened through the pure-Go driver modernc.org/sqlite (no cgo).
//
// Several processes may open the same file; SQLite's file locks serialise
// their writes and Publish's compare-and-swap keeps versions unique. Watchers
// hear of publishes made through the same *Store at once and of publishes by
// other processes within Config.PollInterval.
package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/flash-go/flash/store"
)

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
)

// ErrBadFile means the file at the path is not a usable flash state database:
// it is not SQLite, it is corrupt, or it belongs to another program. Open
// leaves such a file untouched.
var ErrBadFile = errors.New("not a usable flash state database")

// KeepVersions is how many of the newest published versions Publish keeps;
// older ones are pruned in the same transaction.
const KeepVersions = 100

// Defaults for a zero Config.
const (
	DefaultPollInterval = 500 * time.Millisecond
	DefaultBusyTimeout  = 5 * time.Second
)

// Config describes how to open a store. Zero fields mean the defaults.
type Config struct {
	// Path is the database file. Its parent directory is created (0700) and the
	// file created (0600) when missing.
	Path string
	// PollInterval is how often, while anyone watches, the file is checked for
	// versions published by other processes. Zero means DefaultPollInterval.
	PollInterval time.Duration
	// BusyTimeout is how long a statement waits for another connection's lock
	// before failing. Zero means DefaultBusyTimeout.
	BusyTimeout time.Duration
	// Logger receives errors of the background poll. Nil means slog.Default().
	Logger *slog.Logger
}

// Store is a store.Store and store.Watcher backed by one SQLite file.
// It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	poll   time.Duration
	log    *slog.Logger
	closed atomic.Bool

	// wmu queues this process's writes in Go. Without it a second writer
	// waits in SQLite's busy handler, which sleeps in steps of up to 100 ms
	// (a Publish stuck behind a batch of child reports took 50–300 ms).
	wmu sync.Mutex

	mu       sync.Mutex // guards the fields below
	seen     int64      // newest version known; only grows
	watchers map[*watcher]struct{}
	pollStop context.CancelFunc // non-nil while the poller runs
	pollDone chan struct{}
}

// Open opens or creates the state database at path with the default Config.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenConfig(ctx, Config{Path: path})
}

// OpenConfig opens or creates the state database described by cfg, checks
// that an existing file is an intact flash state database (without changing
// it when it is not), switches it to WAL mode and migrates its schema.
func OpenConfig(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" || strings.ContainsRune(cfg.Path, 0) {
		return nil, fmt.Errorf("store/sqlite: open: invalid path %q", cfg.Path)
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: open %s: %w", cfg.Path, err)
	}
	if err := prepareFile(path); err != nil {
		return nil, fmt.Errorf("store/sqlite: open %s: %w", path, err)
	}
	busy := orDefault(cfg.BusyTimeout, DefaultBusyTimeout)
	db, err := sql.Open("sqlite", dsn(path, busy, "FULL"))
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: open %s: %w", path, err)
	}
	// A few connections let readers run beside the one writer WAL allows.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	if err := setup(ctx, db); err != nil {
		db.Close()
		if errors.Is(err, ErrBadFile) {
			return nil, fmt.Errorf("store/sqlite: open %s (left untouched; move it aside to start afresh): %w", path, err)
		}
		return nil, fmt.Errorf("store/sqlite: open %s: %w", path, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Store{
		db:       db,
		poll:     orDefault(cfg.PollInterval, DefaultPollInterval),
		log:      log.With("store", "sqlite", "path", path),
		watchers: make(map[*watcher]struct{}),
	}, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// dsn builds the driver's connection string. The per-connection pragmas here
// neither read nor write the file, so a bad file is only touched by setup's
// read-only check. synchronous=FULL: a version number, once returned by
// Publish, is a promise to children (ETag, X-Flash-Manifest-Version); with
// NORMAL a power cut could lose that commit and let the next Publish reuse
// the number for different content. Writes are rare enough to pay one fsync.
// _txlock=immediate makes every transaction take the write lock at BEGIN, so
// Publish's read-check-insert cannot deadlock on a lock upgrade.
func dsn(path string, busy time.Duration, synchronous string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path)}
	q := url.Values{}
	q.Set("mode", "rw") // prepareFile created it; SQLite must never create files itself
	q.Set("_txlock", "immediate")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous("+synchronous+")")
	return u.String() + "?" + q.Encode()
}

// prepareFile creates a missing database file with mode 0600 (and its parent
// directory with 0700) and refuses an existing one that cannot be written.
// Opening a file for writing and closing it does not change it.
func prepareFile(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		f, cerr := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if cerr == nil {
			return f.Close() // an empty file is an empty SQLite database
		}
		if !errors.Is(cerr, fs.ErrExist) { // else another process created it just now
			return cerr
		}
		fi, err = os.Stat(path)
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: not a regular file (mode %v)", ErrBadFile, fi.Mode())
	}
	// Checked by mode bits too, because root may open a read-only file for writing.
	if fi.Mode().Perm()&0o200 == 0 {
		return fmt.Errorf("file is read-only (mode %v), the state store needs to write it: %w", fi.Mode().Perm(), fs.ErrPermission)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("file is not writable, the state store needs to write it: %w", err)
	}
	return f.Close()
}

// applicationID marks the file as flash's ("FLSH"), see PRAGMA application_id.
const applicationID = 0x464C5348

// migrations[i] brings the schema from version i to i+1 (PRAGMA user_version).
// Append only; never edit a released entry.
var migrations = []string{
	`CREATE TABLE manifests (
		version      INTEGER PRIMARY KEY,
		manifest     BLOB NOT NULL,
		published_at TEXT NOT NULL
	) STRICT;
	CREATE TABLE deployments (
		resource      TEXT PRIMARY KEY,
		config_hash   TEXT NOT NULL,
		status        TEXT NOT NULL,
		endpoint_urls TEXT NOT NULL, -- JSON array
		error         TEXT NOT NULL,
		updated_at    TEXT NOT NULL
	) STRICT, WITHOUT ROWID;
	CREATE TABLE endpoints (
		id          TEXT PRIMARY KEY,
		provider    TEXT NOT NULL,
		app         TEXT NOT NULL,
		resource    TEXT NOT NULL,
		config_hash TEXT NOT NULL,
		url         TEXT NOT NULL,
		pid         INTEGER NOT NULL,
		started_at  TEXT NOT NULL,
		meta        TEXT NOT NULL -- JSON object
	) STRICT, WITHOUT ROWID;
	CREATE INDEX endpoints_by_app ON endpoints (app, id);
	CREATE TABLE instances (
		resource         TEXT NOT NULL,
		instance         TEXT NOT NULL,
		applied_version  INTEGER NOT NULL,
		rejected_version INTEGER NOT NULL,
		reject_reason    TEXT NOT NULL,
		last_seen        TEXT NOT NULL,
		PRIMARY KEY (resource, instance)
	) STRICT, WITHOUT ROWID;`,
	// Only the latest desired state is needed; older ones are kept as a
	// short history for people reading the file.
	`CREATE TABLE desired (
		version     INTEGER PRIMARY KEY,
		manifest    BLOB NOT NULL,
		artifact    TEXT NOT NULL,
		recorded_at TEXT NOT NULL
	) STRICT;`,
}

// setup checks the file read-only first, so that a foreign or corrupt file is
// reported and left as it was; only then does it enable WAL and migrate.
func setup(ctx context.Context, db *sql.DB) error {
	var check string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check(1)`).Scan(&check); err != nil {
		if isCorrupt(err) {
			return fmt.Errorf("%w: %w", ErrBadFile, err)
		}
		return err
	}
	if check != "ok" {
		return fmt.Errorf("%w: integrity check: %s", ErrBadFile, check)
	}
	var appID, version, objects int64
	if err := db.QueryRowContext(ctx, `SELECT
		(SELECT application_id FROM pragma_application_id),
		(SELECT user_version FROM pragma_user_version),
		(SELECT count(*) FROM sqlite_schema)`).Scan(&appID, &version, &objects); err != nil {
		return err
	}
	switch {
	case appID != 0 && appID != applicationID:
		return fmt.Errorf("%w: application_id is %#x, not flash's %#x", ErrBadFile, appID, applicationID)
	case appID == 0 && objects > 0:
		return fmt.Errorf("%w: the database has tables but no flash application_id", ErrBadFile)
	case version > int64(len(migrations)):
		return fmt.Errorf("schema version %d is newer than this binary supports (%d); upgrade flash", version, len(migrations))
	}

	var mode string
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode); err != nil {
		return fmt.Errorf("enable WAL: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("enable WAL: journal mode is still %q", mode)
	}
	return migrate(ctx, db)
}

func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil) // IMMEDIATE: one process migrates, others wait and see it done
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if version >= len(migrations) {
		return nil
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", i, i+1, err)
		}
	}
	// PRAGMAs take no bound parameters; both values are integers we control.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA application_id = %d; PRAGMA user_version = %d`,
		applicationID, len(migrations))); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func isCorrupt(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code() & 0xff // primary result code
	return code == sqlite3.SQLITE_NOTADB || code == sqlite3.SQLITE_CORRUPT
}

// fail wraps a driver error for op, reporting ErrClosed when the store was
// closed meanwhile (database/sql's own "closed" error is not inspectable).
func (s *Store) fail(op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("store/sqlite: %s: %w", op, store.ErrClosed)
	}
	return fmt.Errorf("store/sqlite: %s: %w", op, err)
}

func (s *Store) checkOpen(op string) error {
	if s.closed.Load() {
		return fmt.Errorf("store/sqlite: %s: %w", op, store.ErrClosed)
	}
	return nil
}

// Close stops the poller, closes every watch channel and the database.
// Calls after Close, Close included, return store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed.CompareAndSwap(false, true) {
		s.mu.Unlock()
		return fmt.Errorf("store/sqlite: close: %w", store.ErrClosed)
	}
	ws := s.watchers
	s.watchers = nil
	done := s.stopPollerLocked()
	s.mu.Unlock()

	for w := range ws {
		w.stop()
		close(w.ch)
	}
	if done != nil {
		<-done
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store/sqlite: close: %w", err)
	}
	return nil
}

// ---- manifests ----

// Latest returns the newest published version, or store.ErrNotFound.
func (s *Store) Latest(ctx context.Context) (store.Published, error) {
	return s.getPublished(ctx, "latest", `SELECT version, manifest, published_at FROM manifests ORDER BY version DESC LIMIT 1`)
}

// Get returns one version, or store.ErrNotFound when it is unknown or pruned.
func (s *Store) Get(ctx context.Context, version int64) (store.Published, error) {
	return s.getPublished(ctx, fmt.Sprintf("get version %d", version),
		`SELECT version, manifest, published_at FROM manifests WHERE version = ?`, version)
}

func (s *Store) getPublished(ctx context.Context, op, query string, args ...any) (store.Published, error) {
	if err := s.checkOpen(op); err != nil {
		return store.Published{}, err
	}
	p, err := scanPublished(s.db.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Published{}, fmt.Errorf("store/sqlite: %s: %w", op, store.ErrNotFound)
	}
	if err != nil {
		return store.Published{}, s.fail(op, err)
	}
	return p, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanPublished(r scanner) (store.Published, error) {
	var (
		p  store.Published
		at string
	)
	if err := r.Scan(&p.Version, &p.Manifest, &at); err != nil {
		return p, err
	}
	var err error
	p.PublishedAt, err = parseTime(at)
	return p, err
}

// History returns up to limit versions, newest first; none when limit <= 0.
func (s *Store) History(ctx context.Context, limit int) ([]store.Published, error) {
	const op = "history"
	if err := s.checkOpen(op); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT version, manifest, published_at FROM manifests ORDER BY version DESC LIMIT ?`, limit)
	if err != nil {
		return nil, s.fail(op, err)
	}
	out, err := collect(rows, scanPublished)
	if err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
}

// Publish stores manifest as version prev+1 if the latest version is prev
// (0 = none yet), pruning all but the newest KeepVersions, in one transaction.
// Otherwise it returns store.ErrConflict and changes nothing.
func (s *Store) Publish(ctx context.Context, prev int64, manifest []byte) (store.Published, error) {
	op := fmt.Sprintf("publish after version %d", prev)
	if err := s.checkOpen(op); err != nil {
		return store.Published{}, err
	}
	p := store.Published{
		Version:     prev + 1,
		Manifest:    bytes.Clone(manifest),
		PublishedAt: time.Now().UTC().Round(0),
	}
	if p.Manifest == nil {
		p.Manifest = []byte{} // the column is NOT NULL
	}
	err := s.appendVersion(ctx, op, "manifests", prev, KeepVersions,
		`INSERT INTO manifests (version, manifest, published_at) VALUES (?, ?, ?)`,
		p.Version, p.Manifest, formatTime(p.PublishedAt))
	if err != nil {
		return store.Published{}, err
	}
	s.advance(p.Version)
	return p, nil
}

// ---- desired state ----

// KeepDesired is how many recorded desired states PutDesired keeps.
const KeepDesired = 10

// Desired returns the latest recorded desired state, or store.ErrNotFound.
func (s *Store) Desired(ctx context.Context) (store.Desired, error) {
	const op = "desired"
	if err := s.checkOpen(op); err != nil {
		return store.Desired{}, err
	}
	var (
		d  store.Desired
		at string
	)
	err := s.db.QueryRowContext(ctx, `SELECT version, manifest, artifact, recorded_at FROM desired
		ORDER BY version DESC LIMIT 1`).Scan(&d.Version, &d.Manifest, &d.Artifact, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Desired{}, fmt.Errorf("store/sqlite: %s: %w", op, store.ErrNotFound)
	}
	if err == nil {
		d.RecordedAt, err = parseTime(at)
	}
	if err != nil {
		return store.Desired{}, s.fail(op, err)
	}
	return d, nil
}

// PutDesired records the desired state as version prev+1 if the latest is
// prev (0 = none yet), in one transaction; otherwise it returns
// store.ErrConflict and changes nothing.
func (s *Store) PutDesired(ctx context.Context, prev int64, manifest []byte, artifact string) (store.Desired, error) {
	op := fmt.Sprintf("put desired after version %d", prev)
	if err := s.checkOpen(op); err != nil {
		return store.Desired{}, err
	}
	d := store.Desired{Version: prev + 1, Manifest: bytes.Clone(manifest), Artifact: artifact,
		RecordedAt: time.Now().UTC().Round(0)}
	if d.Manifest == nil {
		d.Manifest = []byte{}
	}
	err := s.appendVersion(ctx, op, "desired", prev, KeepDesired,
		`INSERT INTO desired (version, manifest, artifact, recorded_at) VALUES (?, ?, ?, ?)`,
		d.Version, d.Manifest, d.Artifact, formatTime(d.RecordedAt))
	if err != nil {
		return store.Desired{}, err
	}
	return d, nil
}

// ---- deployments ----

// PutDeployment inserts or replaces the record of d.Resource.
func (s *Store) PutDeployment(ctx context.Context, d store.Deployment) error {
	op := "put deployment " + d.Resource
	urls, err := json.Marshal(d.EndpointURLs)
	if err != nil {
		return s.fail(op, err)
	}
	return s.exec(ctx, op, `INSERT OR REPLACE INTO deployments
		(resource, config_hash, status, endpoint_urls, error, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
		d.Resource, d.ConfigHash, d.Status, string(urls), d.Error, formatTime(d.UpdatedAt))
}

// Deployments returns every record, sorted by resource.
func (s *Store) Deployments(ctx context.Context) ([]store.Deployment, error) {
	const op = "list deployments"
	if err := s.checkOpen(op); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT resource, config_hash, status, endpoint_urls, error, updated_at
		FROM deployments ORDER BY resource`)
	if err != nil {
		return nil, s.fail(op, err)
	}
	out, err := collect(rows, func(r scanner) (store.Deployment, error) {
		var (
			d         store.Deployment
			urls, upd string
		)
		if err := r.Scan(&d.Resource, &d.ConfigHash, &d.Status, &urls, &d.Error, &upd); err != nil {
			return d, err
		}
		if err := json.Unmarshal([]byte(urls), &d.EndpointURLs); err != nil {
			return d, fmt.Errorf("endpoint_urls of %s: %w", d.Resource, err)
		}
		var err error
		d.UpdatedAt, err = parseTime(upd)
		return d, err
	})
	if err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
}

// DeleteDeployment removes a record; deleting a missing one is not an error.
func (s *Store) DeleteDeployment(ctx context.Context, resource string) error {
	return s.exec(ctx, "delete deployment "+resource, `DELETE FROM deployments WHERE resource = ?`, resource)
}

// ---- endpoints ----

// PutEndpoint inserts or replaces the endpoint with e.ID.
func (s *Store) PutEndpoint(ctx context.Context, e store.Endpoint) error {
	op := "put endpoint " + e.ID
	meta, err := json.Marshal(e.Meta)
	if err != nil {
		return s.fail(op, err)
	}
	return s.exec(ctx, op, `INSERT OR REPLACE INTO endpoints
		(id, provider, app, resource, config_hash, url, pid, started_at, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.Provider, e.App, e.Resource, e.ConfigHash, e.URL, e.PID, formatTime(e.StartedAt), string(meta))
}

// Endpoints returns the endpoints of app, sorted by ID.
func (s *Store) Endpoints(ctx context.Context, app string) ([]store.Endpoint, error) {
	op := "list endpoints of " + app
	if err := s.checkOpen(op); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, provider, app, resource, config_hash, url, pid, started_at, meta
		FROM endpoints WHERE app = ? ORDER BY id`, app)
	if err != nil {
		return nil, s.fail(op, err)
	}
	out, err := collect(rows, func(r scanner) (store.Endpoint, error) {
		var (
			e             store.Endpoint
			started, meta string
		)
		if err := r.Scan(&e.ID, &e.Provider, &e.App, &e.Resource, &e.ConfigHash, &e.URL, &e.PID, &started, &meta); err != nil {
			return e, err
		}
		if err := json.Unmarshal([]byte(meta), &e.Meta); err != nil {
			return e, fmt.Errorf("meta of %s: %w", e.ID, err)
		}
		var err error
		e.StartedAt, err = parseTime(started)
		return e, err
	})
	if err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
}

// DeleteEndpoint removes one; deleting a missing one is not an error.
func (s *Store) DeleteEndpoint(ctx context.Context, id string) error {
	return s.exec(ctx, "delete endpoint "+id, `DELETE FROM endpoints WHERE id = ?`, id)
}

// ---- instances ----

// ReportInstances inserts or replaces each report, all in one transaction.
func (s *Store) ReportInstances(ctx context.Context, is []store.Instance) error {
	if len(is) == 0 {
		return nil
	}
	op := fmt.Sprintf("report %d instances", len(is))
	return s.write(ctx, op, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO instances
			(resource, instance, applied_version, rejected_version, reject_reason, last_seen) VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, i := range is {
			if _, err := st.ExecContext(ctx, i.Resource, i.Instance, i.AppliedVersion, i.RejectedVersion,
				i.RejectReason, formatTime(i.LastSeen)); err != nil {
				return fmt.Errorf("%s/%s: %w", i.Resource, i.Instance, err)
			}
		}
		return nil
	})
}

// Instances returns every report, sorted by resource then instance.
func (s *Store) Instances(ctx context.Context) ([]store.Instance, error) {
	const op = "list instances"
	if err := s.checkOpen(op); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT resource, instance, applied_version, rejected_version, reject_reason, last_seen
		FROM instances ORDER BY resource, instance`)
	if err != nil {
		return nil, s.fail(op, err)
	}
	out, err := collect(rows, func(r scanner) (store.Instance, error) {
		var (
			i    store.Instance
			seen string
		)
		if err := r.Scan(&i.Resource, &i.Instance, &i.AppliedVersion, &i.RejectedVersion, &i.RejectReason, &seen); err != nil {
			return i, err
		}
		var err error
		i.LastSeen, err = parseTime(seen)
		return i, err
	})
	if err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
}

// ---- helpers ----

// appendVersion inserts version prev+1 into a versioned table (manifests,
// desired) with insert and its args when the latest there is prev, and
// drops all but the newest keep; otherwise it returns store.ErrConflict and
// changes nothing. All in one write transaction.
func (s *Store) appendVersion(ctx context.Context, op, table string, prev, keep int64, insert string, args ...any) error {
	return s.write(ctx, op, func(tx *sql.Tx) error {
		var latest int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM `+table).Scan(&latest); err != nil {
			return err
		}
		if latest != prev {
			return fmt.Errorf("store/sqlite: %s: latest is %d: %w", op, latest, store.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, insert, args...); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE version <= ?`, prev+1-keep)
		return err
	})
}

// exec runs one writing statement.
func (s *Store) exec(ctx context.Context, op, query string, args ...any) error {
	return s.write(ctx, op, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, query, args...)
		return err
	})
}

// write runs fn in one write transaction (BEGIN IMMEDIATE, see dsn), after
// this process's earlier writes. An error from fn that is not a driver error
// (store.ErrConflict) is returned as it is; the others are wrapped for op.
func (s *Store) write(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	if err := s.checkOpen(op); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(op, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return err
		}
		return s.fail(op, err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail(op, err)
	}
	return nil
}

func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Times are stored as RFC 3339 text in UTC: readable in the sqlite3 shell,
// nanosecond-exact, and covering the zero time.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad timestamp %q: %w", s, err)
	}
	return t, nil
}
