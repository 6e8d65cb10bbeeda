package sqlite

import (
	"bytes"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// benchManifest is about the size of a real manifest with a handful of resources.
var benchManifest = bytes.Repeat([]byte(`{"resource":"gpu-worker","hash":"0123456789abcdef"},`), 40)

// BenchmarkPublish compares the store's Publish (BEGIN IMMEDIATE, CAS check,
// insert, prune, commit) with a bare autocommit INSERT on an identically
// configured file, at synchronous=FULL (what the store uses) and NORMAL.
func BenchmarkPublish(b *testing.B) {
	b.Run("store", func(b *testing.B) {
		s, err := Open(b.Context(), filepath.Join(b.TempDir(), "state.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		var prev int64
		b.ReportAllocs()
		for b.Loop() {
			p, err := s.Publish(b.Context(), prev, benchManifest)
			if err != nil {
				b.Fatal(err)
			}
			prev = p.Version
		}
	})
	for _, sync := range []string{"FULL", "NORMAL"} {
		b.Run("raw-insert-"+sync, func(b *testing.B) {
			db := rawBenchDB(b, sync)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := db.ExecContext(b.Context(), `INSERT INTO t (b) VALUES (?)`, benchManifest); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLatest compares the store's Latest with a bare SELECT of the newest
// row. Both pass a cancellable context, which costs database/sql a goroutine
// per query.
func BenchmarkLatest(b *testing.B) {
	b.Run("store", func(b *testing.B) {
		s, err := Open(b.Context(), filepath.Join(b.TempDir(), "state.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		var prev int64
		for range KeepVersions {
			p, err := s.Publish(b.Context(), prev, benchManifest)
			if err != nil {
				b.Fatal(err)
			}
			prev = p.Version
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Latest(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-select", func(b *testing.B) {
		db := rawBenchDB(b, "FULL")
		for range KeepVersions {
			if _, err := db.Exec(`INSERT INTO t (b) VALUES (?)`, benchManifest); err != nil {
				b.Fatal(err)
			}
		}
		var m []byte
		b.ReportAllocs()
		for b.Loop() {
			if err := db.QueryRowContext(b.Context(), `SELECT b FROM t ORDER BY v DESC LIMIT 1`).Scan(&m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func rawBenchDB(b *testing.B, synchronous string) *sql.DB {
	b.Helper()
	path := filepath.Join(b.TempDir(), "raw.db")
	if err := prepareFile(path); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(path, 5*time.Second, synchronous))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	for _, q := range []string{`PRAGMA journal_mode = WAL`, `CREATE TABLE t (v INTEGER PRIMARY KEY, b BLOB NOT NULL)`} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
	return db
}
