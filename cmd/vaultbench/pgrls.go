package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/tenantvault/tenantvault/events"
)

// The PostgreSQL peer's roles: pgAdmin, the superuser initdb makes, owns
// the schema; pgApp, the role the ingest connects as, is neither a
// superuser nor BYPASSRLS, so that row-level security applies to it.
const (
	pgAdmin = "bench_admin"
	pgApp   = "bench_app"
)

// pgSchema is the PostgreSQL peer's schema: one table for every tenant's
// events, with the tenant id a column, a unique event id per tenant (the
// key the insert is idempotent on), and row-level security, enabled and
// forced, by a policy that admits the rows of the tenant the transaction
// set (app.tenant), for reading and, as its WITH CHECK, for writing.
var pgSchema = []string{
	`CREATE ROLE ` + pgApp + ` LOGIN NOSUPERUSER NOBYPASSRLS`,
	`CREATE TABLE events (
		tenant_id text NOT NULL,
		stream text NOT NULL,
		seq bigint NOT NULL,
		id text NOT NULL,
		body jsonb NOT NULL,
		PRIMARY KEY (tenant_id, id)
	)`,
	`ALTER TABLE events ENABLE ROW LEVEL SECURITY`,
	`ALTER TABLE events FORCE ROW LEVEL SECURITY`,
	`CREATE POLICY tenant_isolation ON events USING (tenant_id = current_setting('app.tenant'))`,
	`GRANT SELECT, INSERT ON events TO ` + pgApp,
}

// pgInsert inserts one tenant's group of records: $1 the tenant, $2 their
// streams, $3 their numbers, $4 the events; the event id is the
// CloudEvent's own, read from the stored body. The tenant is passed, not
// taken from app.tenant, so that the policy checks it.
const pgInsert = `INSERT INTO events (tenant_id, stream, seq, id, body)
	SELECT $1::text, u.stream, u.seq, u.body->>'id', u.body
	FROM unnest($2::text[], $3::bigint[], $4::jsonb[]) AS u(stream, seq, body)
	ON CONFLICT DO NOTHING`

// benchPostgresRLS measures PostgreSQL with row-level security: it starts
// a throwaway server (see startPostgres), creates pgSchema, and runs the
// one-topic peer (see runShared) with a consumer that connects as pgApp
// and, per consumed batch, groups the records by tenant and commits each
// group in a transaction of its own: SET LOCAL app.tenant (by set_config,
// which takes a parameter), then one INSERT ... SELECT from unnest (ON
// CONFLICT DO NOTHING); the batch is acked once its groups are committed.
// The server runs with its defaults for durability, fsync and
// synchronous_commit on. After the clock stops it checks that every event
// was stored and that the policy hides other tenants' rows. It returns a
// reason, and no error, when PostgreSQL is not installed (or there is no
// postgres user to run it as root); it stops the server and removes its
// files in every case.
func benchPostgresRLS(ctx context.Context, c config, dir, topic string, tenants []events.TenantID, perTenant int) (_ *Phase, skipped string, err error) {
	bin, cred, skipped, err := findPostgres()
	if err != nil || skipped != "" {
		return nil, skipped, err
	}
	srv, err := startPostgres(ctx, bin, cred)
	if err != nil {
		return nil, "", err
	}
	defer func() { err = errors.Join(err, srv.stop()) }()

	admin, err := pgx.Connect(ctx, srv.connString(pgAdmin))
	if err != nil {
		return nil, "", fmt.Errorf("connect as %s: %w", pgAdmin, err)
	}
	defer admin.Close(context.Background())
	for _, q := range pgSchema {
		if _, err := admin.Exec(ctx, q); err != nil {
			return nil, "", fmt.Errorf("schema: %s: %w", strings.Fields(q)[:3], err)
		}
	}
	var version string
	if err := admin.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return nil, "", fmt.Errorf("server version: %w", err)
	}
	app, err := pgx.Connect(ctx, srv.connString(pgApp))
	if err != nil {
		return nil, "", fmt.Errorf("connect as %s: %w", pgApp, err)
	}
	defer app.Close(context.Background())
	var super, bypass bool
	if err := app.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").Scan(&super, &bypass); err != nil {
		return nil, "", fmt.Errorf("role of %s: %w", pgApp, err)
	}
	if super || bypass {
		return nil, "", fmt.Errorf("role %s bypasses row-level security (superuser %t, bypassrls %t)", pgApp, super, bypass)
	}

	var txns int64
	p, err := runShared(ctx, c, dir, topic, tenants, perTenant, func(batch []*message.Message) error {
		n, err := pgWrite(ctx, app, batch)
		txns += n
		return err
	}, srv.cpuSeconds)
	if err != nil {
		return nil, "", err
	}
	p.Batches, p.Server = txns, "PostgreSQL "+version

	var stored int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&stored); err != nil {
		return nil, "", fmt.Errorf("count events: %w", err)
	}
	if stored != perTenant*len(tenants) {
		return nil, "", fmt.Errorf("%d events stored, want %d", stored, perTenant*len(tenants))
	}
	// As the application role, a tenant sees its own rows only.
	tx, err := app.Begin(ctx)
	if err != nil {
		return nil, "", err
	}
	defer tx.Rollback(context.Background())
	var seen int
	if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant', $1, true)", string(tenants[0])); err != nil {
		return nil, "", fmt.Errorf("set tenant: %w", err)
	}
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&seen); err != nil {
		return nil, "", fmt.Errorf("count a tenant's events: %w", err)
	}
	if seen != perTenant {
		return nil, "", fmt.Errorf("tenant %s sees %d events through row-level security, want its %d", tenants[0], seen, perTenant)
	}
	return p, "", nil
}

// pgWrite commits batch's records, grouped by tenant in the order of
// their first record, one transaction per group, and returns the
// transactions committed.
func pgWrite(ctx context.Context, conn *pgx.Conn, batch []*message.Message) (int64, error) {
	type group struct {
		tenant  string
		streams []string
		seqs    []int64
		bodies  [][]byte
	}
	var groups []*group
	byTenant := make(map[string]*group)
	for _, m := range batch {
		tenant, stream, err := parseSharedKey(m)
		if err != nil {
			return 0, err
		}
		seq, err := strconv.ParseInt(m.UUID, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("record %q: not numbered: %w", m.UUID, err)
		}
		g := byTenant[tenant]
		if g == nil {
			g = &group{tenant: tenant}
			byTenant[tenant] = g
			groups = append(groups, g)
		}
		g.streams = append(g.streams, stream)
		g.seqs = append(g.seqs, seq)
		g.bodies = append(g.bodies, m.Payload)
	}
	var txns int64
	for _, g := range groups {
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant', $1, true)", g.tenant); err != nil {
				return fmt.Errorf("set tenant: %w", err)
			}
			if _, err := tx.Exec(ctx, pgInsert, g.tenant, g.streams, g.seqs, g.bodies); err != nil {
				return fmt.Errorf("insert: %w", err)
			}
			return nil
		}); err != nil {
			return txns, fmt.Errorf("tenant %s: %w", g.tenant, err)
		}
		txns++
	}
	return txns, nil
}

// findPostgres finds the binaries of the newest PostgreSQL the Debian
// postgresql packages installed (/usr/lib/postgresql/<version>/bin) and,
// when vaultbench runs as root (which initdb and postgres refuse), the
// credential of the postgres user to run them as. It returns a reason to
// skip instead when either is missing.
func findPostgres() (bin string, cred *syscall.Credential, skipped string, err error) {
	matches, err := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if err != nil {
		return "", nil, "", err
	}
	if len(matches) == 0 {
		return "", nil, "PostgreSQL not installed: no /usr/lib/postgresql/*/bin/initdb", nil
	}
	// The newest version: /usr/lib/postgresql/<major>/bin/initdb.
	version := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	slices.SortFunc(matches, func(a, b string) int { return cmp.Compare(version(a), version(b)) })
	bin = filepath.Dir(matches[len(matches)-1])
	if os.Geteuid() != 0 {
		return bin, nil, "", nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return "", nil, fmt.Sprintf("running as root, and no postgres user to run the server as: %v", err), nil
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return "", nil, "", fmt.Errorf("postgres user: %w", err)
	}
	return bin, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, "", nil
}

// pgServer is a throwaway PostgreSQL server.
type pgServer struct {
	dir     string // its data dir, socket dir and log
	sockDir string
	log     *os.File
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the postmaster has exited; then waitErr is set
	waitErr error
}

// pgPort names the server's unix socket (.s.PGSQL.<port>) in its own
// socket dir; it listens on no TCP port.
const pgPort = 5432

// startPostgres initialises a data dir with bin's initdb (the pgAdmin
// superuser, trust authentication, the C locale, UTF8), starts postgres
// on it listening on a unix socket only, and waits until it accepts
// connections. With cred (vaultbench runs as root) both run as that user,
// which owns the server's directory. The directory is a temporary one of
// its own rather than one under the work directory: the postgres user
// must be able to reach it (the work directory is root's, mode 0700), and
// a socket path must stay under 108 bytes. initdb runs with --no-sync (its
// files are the server's starting point, not measured writes); the server
// runs with fsync and synchronous_commit on.
func startPostgres(ctx context.Context, bin string, cred *syscall.Credential) (_ *pgServer, err error) {
	dir, err := os.MkdirTemp("", "vaultbench-pg-")
	if err != nil {
		return nil, err
	}
	s := &pgServer{dir: dir, sockDir: filepath.Join(dir, "sock")}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.stop())
		}
	}()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(s.sockDir, 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		for _, d := range []string{dir, s.sockDir} {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, fmt.Errorf("hand %s to the postgres user: %w", d, err)
			}
		}
	}
	command := func(name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		// SIGQUIT, postgres's immediate shutdown, if vaultbench dies first.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
		return cmd
	}
	if out, err := command("initdb", "-D", data, "-U", pgAdmin, "--auth=trust", "--locale=C", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, lastLines(out, 10))
	}
	if s.log, err = os.Create(filepath.Join(dir, "server.log")); err != nil {
		return nil, err
	}
	s.cmd = command("postgres", "-D", data, "-k", s.sockDir, "-p", strconv.Itoa(pgPort),
		"-c", "listen_addresses=", "-c", "fsync=on", "-c", "synchronous_commit=on")
	s.cmd.Cancel = func() error { return s.cmd.Process.Signal(syscall.SIGINT) }
	s.cmd.WaitDelay = 30 * time.Second
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil // nothing to stop
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s.exited = make(chan struct{})
	cmd := s.cmd
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		conn, err := pgx.Connect(ctx, s.connString(pgAdmin))
		if err == nil {
			return s, conn.Close(ctx)
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("postgres exited: %v: %s", s.waitErr, s.logTail())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("postgres not ready after a minute: %w: %s", err, s.logTail())
		}
	}
}

// connString is how role connects to the server's postgres database.
func (s *pgServer) connString(role string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable", s.sockDir, pgPort, role)
}

// stop shuts the server down (fast shutdown, SIGINT; immediate, SIGQUIT,
// if that takes over 30s) and removes its directory.
func (s *pgServer) stop() error {
	var errs []error
	if s.cmd != nil {
		select {
		case <-s.exited:
		default:
			signal := func(sig os.Signal) {
				if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
					errs = append(errs, fmt.Errorf("stop postgres: %w", err))
				}
			}
			signal(syscall.SIGINT)
			select {
			case <-s.exited:
			case <-time.After(30 * time.Second):
				signal(syscall.SIGQUIT)
				<-s.exited
			}
		}
	}
	if s.log != nil {
		errs = append(errs, s.log.Close())
		s.log = nil
	}
	errs = append(errs, os.RemoveAll(s.dir))
	return errors.Join(errs...)
}

// logTail is the end of the server's log, for errors.
func (s *pgServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return lastLines(b, 10)
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return string(bytes.Join(lines[max(len(lines)-n, 0):], []byte("\n")))
}

// cpuSeconds is the CPU time of the server: the postmaster's and its
// children's (the backends and the background processes), those it has
// waited for included.
func (s *pgServer) cpuSeconds() float64 {
	if s.cmd == nil {
		return 0
	}
	pid := s.cmd.Process.Pid
	total := 0.0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, secs, ok := procCPU(p)
		if ok && (p == pid || ppid == pid) {
			total += secs
		}
	}
	return total
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's
// times: 100 on every Linux platform Go supports.
const clockTicks = 100

// procCPU reads process pid's parent and CPU seconds (user and system,
// its waited-for children's included) from /proc/<pid>/stat.
func procCPU(pid int) (ppid int, secs float64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid ... utime stime cutime cstime: fields 4, 14-17;
	// comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	var ticks int64
	for _, v := range f[11:15] {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return ppid, float64(ticks) / clockTicks, true
}
