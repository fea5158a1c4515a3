package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrations are the schema's history, applied in order by goose. Change
// the schema only by adding a file.
//
//go:embed migrations/*.sql
var migrations embed.FS

// versionTable records the applied migrations, in the store's schema.
const versionTable = "jobqueue_migrations"

// migrate applies the migrations not applied yet to schema (the pool's
// search_path). A session-level advisory lock (keyed by the schema) lets
// one instance at a time migrate; the others wait for it, checking every
// second for up to ten minutes, and then find nothing left to do.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string, log *slog.Logger) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(lockKey("jobqueue migrate", schema)),
		lock.WithLockTimeout(1, 600),
	)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker),
		goose.WithTableName(versionTable),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return wrapf(err, "migrate schema %s", schema)
	}
	for _, r := range results {
		log.Info("postgres store: applied migration", "schema", schema, "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}
