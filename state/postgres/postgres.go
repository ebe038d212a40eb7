// Package postgres is the state backend for the distributed mode: the
// whole state.DB in a PostgreSQL database (15 or newer) shared by every
// hook, reporter, gate, scanner and web replica, through pgx's pool.
//
// "Exactly one" (of a reservation, a delivery, a final event) rests on
// unique keys with INSERT ... ON CONFLICT, which PostgreSQL decides
// atomically across connections; what must not interleave otherwise (the
// events of one task, schema migrations) takes a transaction-scoped
// advisory lock. Transactions run at read committed.
//
// A lost connection is not fatal: the pool dials again, so after the
// server comes back the same DB works without being reopened; while it is
// away, calls fail with state.ErrUnavailable.
//
// Only the wiring in cmd/ imports it; everything else takes a state.DB.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/internal/sqlstate"
)

// DB is a state.DB on a PostgreSQL database.
type DB struct {
	*sqlstate.DB
}

var _ state.DB = (*DB)(nil)

// Open connects to the database at url (postgres://user:password@host:port/db?...,
// or libpq's "host=... dbname=..." form; pool_max_conns and the other
// pgxpool parameters apply) and brings its schema up to date, waiting
// while another process migrates it. ctx bounds the connecting and the
// migration.
//
// Errors never contain the password. A URL that does not parse is
// described without repeating it; a server that cannot be reached or
// refuses the login is an error naming its host and port, wrapping
// state.ErrUnavailable for the former.
func Open(ctx context.Context, url string, opts state.Options) (*DB, error) {
	opts = opts.WithDefaults()
	cfg, err := ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("open state database: %w", err)
	}
	where := Describe(cfg)
	hide := secrets(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open state database on %s: %w", where, hide.wrap(err))
	}
	d := &driver{pool: pool, hide: hide}
	if err := sqlstate.Migrate(ctx, d, migrations, opts.Now); err != nil {
		pool.Close()
		if d.Unavailable(err) {
			err = fmt.Errorf("%w: %w", state.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("open state database on %s: %w", where, hide.wrap(err))
	}
	return &DB{DB: sqlstate.New(d, opts)}, nil
}

// ParseURL parses a database URL into a pool's configuration. Its error
// says what is wrong without repeating the URL, or any part of it, since
// it may hold a password.
func ParseURL(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("bad database URL (not shown: it may hold a password): %s", parseReason(err))
	}
	return cfg, nil
}

var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// parseReason is what pgx says is wrong with a URL, without the parts of
// the URL it repeats. pgx masks the password in the URL it quotes ("cannot
// parse `...`: reason"), on a best effort basis, but the reason may quote
// a piece of a malformed URL (`missing "=" after "..."`) or end with a
// value (`unknown channel_binding value: ...`, a nested error), and in a
// malformed URL any piece may be the password. So: the reason alone, cut
// before its first ": ", with every quoted string masked.
func parseReason(err error) string {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return "it does not parse"
	}
	msg := pe.Error()
	i := strings.LastIndex(msg, "`: ")
	if i < 0 {
		return "it does not parse"
	}
	msg = msg[i+len("`: "):]
	if i := strings.Index(msg, ": "); i >= 0 {
		msg = msg[:i]
		if i := strings.LastIndex(msg, " ("); i >= 0 && strings.Count(msg, "(") > strings.Count(msg, ")") {
			msg = msg[:i] // cut inside the parenthesised cause
		}
	}
	msg = quoted.ReplaceAllLiteralString(msg, "\x00")
	if strings.ContainsAny(msg, "\"`'\\") { // an unbalanced quote: some piece is left
		return "it does not parse"
	}
	return strings.ReplaceAll(msg, "\x00", `"..."`)
}

// Describe names the server and database of cfg for people, without the
// password: `PostgreSQL at host:port (database "d", user "u")`. A name
// made of more than letters, digits and "._-" (and ":/[]" in a host) is
// not shown: it comes from a URL split in the wrong place, and may hold
// the password (postgres://us/er:pw@h makes ":pw@h" part of the database
// name; "user= password=pw" makes the user "password=pw").
func Describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	host, database, user := c.Host, strconv.Quote(c.Database), strconv.Quote(c.User)
	if !plain(c.Host, ":/[]") {
		host = "(not shown)"
	}
	if !plain(c.Database, "") {
		database = "(not shown)"
	}
	if !plain(c.User, "") {
		user = "(not shown)"
	}
	where := net.JoinHostPort(host, strconv.Itoa(int(c.Port)))
	if strings.HasPrefix(host, "/") {
		where = fmt.Sprintf("%s/.s.PGSQL.%d", host, c.Port) // a unix socket
	}
	// The fallbacks repeat the host once per TLS mode to try (sslmode
	// prefer: TLS, then plain); count the other hosts.
	others := map[string]bool{}
	for _, f := range c.Fallbacks {
		if f.Host != c.Host || f.Port != c.Port {
			others[net.JoinHostPort(f.Host, strconv.Itoa(int(f.Port)))] = true
		}
	}
	if n := len(others); n > 0 {
		where += fmt.Sprintf(" (and %d more hosts)", n)
	}
	return fmt.Sprintf("PostgreSQL at %s (database %s, user %s)", where, database, user)
}

// plain reports whether s has only letters, digits, "._-" and extra.
func plain(s, extra string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-"+extra, r)) {
			return false
		}
	}
	return true
}

// secretList holds the strings no error may show.
type secretList []string

func secrets(cfg *pgxpool.Config) secretList {
	var s secretList
	for _, p := range []string{cfg.ConnConfig.Password, cfg.ConnConfig.RuntimeParams["sslpassword"]} {
		if p != "" {
			s = append(s, p)
		}
	}
	return s
}

// wrap returns err with every secret masked in its text; errors.Is and
// errors.As still see the cause.
func (s secretList) wrap(err error) error {
	if err == nil || len(s) == 0 {
		return err
	}
	return &hidden{err: err, secrets: s}
}

type hidden struct {
	err     error
	secrets secretList
}

func (h *hidden) Error() string {
	msg := h.err.Error()
	for _, p := range h.secrets {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	return msg
}

func (h *hidden) Unwrap() error { return h.err }

// driver is the sqlstate.Driver of a pgx pool.
type driver struct {
	pool *pgxpool.Pool
	hide secretList
}

// maxRetries bounds the retries of a statement or transaction that
// failed without effect: on a connection that was dead before the
// statement was sent (the pool dials again), or in a deadlock or
// serialization failure, which PostgreSQL rolls back.
const maxRetries = 3

func (d *driver) retry(ctx context.Context, f func() error) error {
	var err error
	for range maxRetries {
		if err = f(); err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	return d.hide.wrap(err)
}

func retryable(err error) bool {
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001") // deadlock, serialization
}

func (d *driver) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := d.retry(ctx, func() error {
		tag, err := d.pool.Exec(ctx, q, args...)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

func (d *driver) QueryRow(ctx context.Context, q string, args ...any) sqlstate.Row {
	return row{d: d, ctx: ctx, q: q, args: args}
}

// row runs its query when scanned, so that a dead connection can be
// retried.
type row struct {
	d    *driver
	ctx  context.Context
	q    string
	args []any
}

func (r row) Scan(dest ...any) error {
	return r.d.retry(r.ctx, func() error { return r.d.pool.QueryRow(r.ctx, r.q, r.args...).Scan(dest...) })
}

func (d *driver) Query(ctx context.Context, q string, args ...any) (sqlstate.Rows, error) {
	var rows pgx.Rows
	err := d.retry(ctx, func() error {
		var err error
		rows, err = d.pool.Query(ctx, q, args...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// InTx implements sqlstate.Driver. fn may run more than once: after a
// deadlock or serialization failure, PostgreSQL rolls the transaction
// back and it is run again.
func (d *driver) InTx(ctx context.Context, fn func(tx sqlstate.Querier) error) error {
	return d.retry(ctx, func() error {
		return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error { return fn(txQuerier{tx}) })
	})
}

// Lock implements sqlstate.Driver with an advisory lock, released at the
// end of the transaction.
func (d *driver) Lock(ctx context.Context, tx sqlstate.Querier, name string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, name)
	return err
}

type txQuerier struct{ tx pgx.Tx }

func (t txQuerier) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (t txQuerier) QueryRow(ctx context.Context, q string, args ...any) sqlstate.Row {
	return t.tx.QueryRow(ctx, q, args...)
}

func (t txQuerier) Query(ctx context.Context, q string, args ...any) (sqlstate.Rows, error) {
	return t.tx.Query(ctx, q, args...)
}

// Unavailable implements sqlstate.Driver: the server could not be
// reached, went away, or cannot take the work now.
func (d *driver) Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"): // connection exception
			return true
		case strings.HasPrefix(pe.Code, "57P"): // shutting down, starting up
			return true
		case strings.HasPrefix(pe.Code, "53"): // out of disk, memory, connections
			return true
		case pe.Code == "58030": // I/O error
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

func (d *driver) Close() error {
	d.pool.Close()
	return nil
}
