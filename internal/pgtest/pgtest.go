// Package pgtest gives tests a real PostgreSQL: a fresh schema in a shared
// database (Schema), or a private cluster they may crash and restart
// (StartServer).
//
// The shared database is named by $WXPAY_TEST_POSTGRES (.ci/run sets it).
// Without it, or without the PostgreSQL server binaries, the tests that need
// them are skipped, unless WXPAY_TEST_REQUIRE_TOOLS=1 (CI), which makes them
// fail instead.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// EnvDSN names the environment variable with the connection string of a
// PostgreSQL database tests may create schemas in (.ci/run sets it).
const EnvDSN = "WXPAY_TEST_POSTGRES"

// exampleDSN is the value Require's skip message suggests.
const exampleDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// envRequireTools, when "1", turns a missing database or missing PostgreSQL
// binaries into a test failure instead of a skip.
const envRequireTools = "WXPAY_TEST_REQUIRE_TOOLS"

// readyTimeout bounds every wait for the server (start, stop, readiness).
const readyTimeout = 30 * time.Second

// unavailable skips t, or fails it when WXPAY_TEST_REQUIRE_TOOLS=1.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(envRequireTools) == "1" {
		t.Fatalf("pgtest: %s (and %s=1)", msg, envRequireTools)
	}
	t.Skipf("pgtest: %s", msg)
}

// Require returns $WXPAY_TEST_POSTGRES; when unset it skips t with a message
// naming the variable and an example value
// (postgres://postgres@127.0.0.1:5432/test?sslmode=disable), or, when
// WXPAY_TEST_REQUIRE_TOOLS=1 is set (CI), fails t instead.
func Require(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		unavailable(t, "$%s is not set; set it to a PostgreSQL database tests may create schemas in, e.g. %s='%s'",
			EnvDSN, EnvDSN, exampleDSN)
	}
	return dsn
}

// Schema creates a fresh schema (name "wxpay_" + random hex) in that
// database, drops it (CASCADE) when t ends, and returns a connection string
// whose connections use it: the DSN with search_path=<schema> added as a URL
// query parameter (pgx passes unknown URL parameters as run-time
// parameters). The DSN may be a URL (postgres:// or postgresql://) — an
// existing query string is kept; for key=value DSNs " search_path=<schema>"
// is appended.
func Schema(t testing.TB) string {
	t.Helper()
	dsn := Require(t)
	schema := "wxpay_" + randomHex(t, 8)
	withSchema, err := withSearchPath(dsn, schema)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := execOnce(dsn, `CREATE SCHEMA "`+schema+`"`); err != nil {
		t.Fatalf("pgtest: creating schema %s in $%s: %v", schema, EnvDSN, err)
	}
	t.Cleanup(func() {
		// A lock_timeout, so that a connection the test left open inside
		// a transaction makes this fail instead of hang.
		if err := execOnce(dsn, `SET lock_timeout = '30s'`, `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`); err != nil {
			t.Errorf("pgtest: dropping schema %s in $%s: %v", schema, EnvDSN, err)
		}
	})
	return withSchema
}

// withSearchPath returns dsn with the run-time parameter search_path set to
// schema.
func withSearchPath(dsn, schema string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// The error would quote the DSN, which may hold a password.
			return "", errors.New("$" + EnvDSN + " is not a valid URL")
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return "", fmt.Errorf("the query string of $%s: %v", EnvDSN, err)
		}
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return strings.TrimRight(dsn, " \t\r\n") + " search_path=" + schema, nil
}

// execOnce runs stmts, in order, on one new connection to dsn.
func execOnce(dsn string, stmts ...string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout+10*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, stmt := range stmts {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("pgtest: crypto/rand: %v", err)
	}
	return hex.EncodeToString(b)
}

// Server is a private PostgreSQL cluster, for tests that stop, crash and
// restart the database (the shared one must not be touched).
type Server struct {
	t       testing.TB
	bin     string // directory of initdb, pg_ctl and postgres
	dir     string // temporary directory: data/, server.log, the unix socket
	data    string // the data directory, dir/data
	logPath string // the server's log, dir/server.log
	port    int
	asUser  bool // run the binaries as the "postgres" OS user (we are root)
	syncfs  bool // the server has recovery_init_sync_method (PostgreSQL 14+)
	running bool
}

// StartServer initialises a cluster (initdb -A trust -U postgres, encoding
// UTF8) in a new temporary directory, starts it listening on 127.0.0.1 on a
// free TCP port (and its unix socket in that directory), creates database
// "test", and stops it (pg_ctl stop -m immediate) and removes the directory
// when t ends.
//
// The binaries are found with `pg_config --bindir`, else in the newest
// /usr/lib/postgresql/*/bin; without them t is skipped (failed when
// WXPAY_TEST_REQUIRE_TOOLS=1). As root, they run as the "postgres" OS user
// (runuser), which owns the directory.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin, err := findBinDir()
	if err != nil {
		unavailable(t, "%v", err)
	}
	s := &Server{t: t, bin: bin}

	var uid, gid int
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		if _, err := exec.LookPath("runuser"); err != nil {
			unavailable(t, "running as root, and runuser (to run PostgreSQL as the postgres user) is not on $PATH: %v", err)
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			unavailable(t, "running as root, and there is no \"postgres\" OS user to run PostgreSQL as: %v", err)
		}
		if uid, err = strconv.Atoi(u.Uid); err != nil {
			t.Fatalf("pgtest: uid %q of OS user postgres: %v", u.Uid, err)
		}
		if gid, err = strconv.Atoi(u.Gid); err != nil {
			t.Fatalf("pgtest: gid %q of OS user postgres: %v", u.Gid, err)
		}
		s.asUser = true
	}

	// Under os.TempDir() rather than t.TempDir(): the path stays short
	// (a unix socket path has a limit of about 100 bytes) and the postgres
	// user can traverse it.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s.dir = dir
	s.data = filepath.Join(dir, "data")
	s.logPath = filepath.Join(dir, "server.log")
	t.Cleanup(s.cleanup)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := os.Mkdir(s.data, 0o700); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if s.asUser {
		if err := chownR(dir, uid, gid); err != nil {
			t.Fatalf("pgtest: giving %s to the postgres user: %v", dir, err)
		}
	}

	// --no-sync only skips initdb's final flush of the new files to disk;
	// the server itself runs with fsync=on.
	s.run("initdb", "-D", s.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	if b, err := os.ReadFile(filepath.Join(s.data, "PG_VERSION")); err == nil {
		major, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		s.syncfs = major >= 14
	}

	// The port is free now but may be taken before the server binds it:
	// try a few.
	for attempt := 1; ; attempt++ {
		s.port = freePort(t)
		err := s.start()
		if err == nil {
			break
		}
		if attempt < 3 && strings.Contains(s.logTail(), "could not bind") {
			continue
		}
		t.Fatalf("pgtest: starting PostgreSQL: %v%s", err, s.logTailMsg())
	}
	if err := s.waitReady("postgres"); err != nil {
		t.Fatalf("pgtest: %v%s", err, s.logTailMsg())
	}
	if err := execOnce(s.dsn("postgres"), "CREATE DATABASE test"); err != nil {
		t.Fatalf("pgtest: creating database test: %v%s", err, s.logTailMsg())
	}
	return s
}

// DSN is the connection string of database "test" on the server
// (postgres://postgres@127.0.0.1:<port>/test?sslmode=disable).
func (s *Server) DSN() string { return s.dsn("test") }

func (s *Server) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Crash stops the server the way a crash would: pg_ctl stop -m immediate
// (no shutdown checkpoint; the next start recovers from the WAL). It waits
// until it is stopped.
func (s *Server) Crash() {
	s.t.Helper()
	if !s.running {
		s.t.Fatal("pgtest: Crash: the server is not running")
	}
	if err := s.stop(); err != nil {
		s.t.Fatalf("pgtest: crashing PostgreSQL: %v%s", err, s.logTailMsg())
	}
}

// Start starts the stopped server again on the same port and data directory
// and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	if s.running {
		s.t.Fatal("pgtest: Start: the server is already running")
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("pgtest: restarting PostgreSQL: %v%s", err, s.logTailMsg())
	}
	if err := s.waitReady("test"); err != nil {
		s.t.Fatalf("pgtest: %v%s", err, s.logTailMsg())
	}
}

// start runs pg_ctl start, which returns once the postmaster reports it is
// ready (or has died). The postmaster detaches from pg_ctl, writes its log
// to s.logPath, and is left to s.stop.
func (s *Server) start() error {
	opts := []string{
		"-c fsync=on",
		"-c shared_buffers=16MB",
		"-c max_connections=100",
		"-c listen_addresses=127.0.0.1",
		"-c port=" + strconv.Itoa(s.port),
		// pg_ctl passes -o through a shell.
		"-c unix_socket_directories=" + shellQuote(s.dir),
	}
	if s.syncfs {
		// Recovery after a crash starts by flushing the data directory to
		// disk; one syncfs() takes well under a second where an fsync()
		// of each of its ~2000 files takes about five.
		opts = append(opts, "-c recovery_init_sync_method=syncfs")
	}
	cmd := s.command("pg_ctl", "start", "-D", s.data, "-l", s.logPath, "-w",
		"-t", strconv.Itoa(int(readyTimeout/time.Second)), "-o", strings.Join(opts, " "))
	// Even when pg_ctl fails a server may be up: cleanup stops it if
	// there is a postmaster.pid.
	out, err := cmd.CombinedOutput()
	if err != nil {
		return cmdError(cmd, err, out)
	}
	s.running = true
	return nil
}

// stop runs pg_ctl stop -m immediate, which waits until the postmaster is gone.
func (s *Server) stop() error {
	cmd := s.command("pg_ctl", "stop", "-D", s.data, "-m", "immediate", "-w",
		"-t", strconv.Itoa(int(readyTimeout/time.Second)))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return cmdError(cmd, err, out)
	}
	s.running = false
	return nil
}

// waitReady connects to database db until it answers, for up to 30 s.
func (s *Server) waitReady(db string) error {
	pool, err := sql.Open("pgx", s.dsn(db))
	if err != nil {
		return err
	}
	defer pool.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = pool.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("PostgreSQL on 127.0.0.1:%d does not accept connections after %v: %w", s.port, readyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cleanup stops the server (if it may be running) and removes its directory.
func (s *Server) cleanup() {
	if fileExists(filepath.Join(s.data, "postmaster.pid")) {
		if err := s.stop(); err != nil {
			s.t.Errorf("pgtest: stopping PostgreSQL at the end of the test: %v%s", err, s.logTailMsg())
			s.killPostmaster()
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		s.t.Errorf("pgtest: %v", err)
	}
}

// killPostmaster is the last resort when pg_ctl stop failed: SIGKILL the
// postmaster named in postmaster.pid (its children exit when it dies).
func (s *Server) killPostmaster() {
	b, err := os.ReadFile(filepath.Join(s.data, "postmaster.pid"))
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 1 {
		return
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		s.t.Errorf("pgtest: killing postmaster %d: %v", pid, err)
	}
	s.running = false
}

// run runs one of the PostgreSQL binaries and fails the test if it fails.
func (s *Server) run(name string, args ...string) {
	s.t.Helper()
	cmd := s.command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("pgtest: %v%s", cmdError(cmd, err, out), s.logTailMsg())
	}
}

// command returns the command running the PostgreSQL binary name, as the
// postgres OS user when we are root.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.asUser {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	// A directory the postgres user can enter, and no PG* variables
	// (PGDATA, PGPORT, ...) from the caller's environment.
	cmd.Dir = s.dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Should a child keep the output pipe open, do not wait for it forever.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// cmdError names the command that failed and includes its output.
func cmdError(cmd *exec.Cmd, err error, out []byte) error {
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return fmt.Errorf("%s: %v (no output)", cmd, err)
	}
	return fmt.Errorf("%s: %v; its output:\n%s", cmd, err, out)
}

// logTail returns the end of the server's log.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(bytes.TrimSpace(b))
}

// logTailMsg is logTail formatted to end an error message.
func (s *Server) logTailMsg() string {
	tail := s.logTail()
	if tail == "" {
		return ""
	}
	return "\nthe end of the server log " + s.logPath + ":\n" + tail
}

// findBinDir returns the directory of the PostgreSQL server binaries.
func findBinDir() (string, error) {
	if _, err := exec.LookPath("pg_config"); err == nil {
		out, err := exec.Command("pg_config", "--bindir").Output()
		if dir := strings.TrimSpace(string(out)); err == nil && hasServerBinaries(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	type versioned struct {
		dir     string
		version []int
	}
	var found []versioned
	for _, dir := range dirs {
		v, ok := parseVersion(filepath.Base(filepath.Dir(dir)))
		if ok && hasServerBinaries(dir) {
			found = append(found, versioned{dir, v})
		}
	}
	if len(found) == 0 {
		return "", errors.New("no PostgreSQL server binaries (initdb, pg_ctl, postgres): pg_config --bindir does not name them and there is no /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")
	}
	sort.Slice(found, func(i, j int) bool { return versionLess(found[j].version, found[i].version) })
	return found[0].dir, nil
}

func hasServerBinaries(dir string) bool {
	if dir == "" {
		return false
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if !fileExists(filepath.Join(dir, name)) {
			return false
		}
	}
	return true
}

// parseVersion parses "15" or "9.6".
func parseVersion(s string) ([]int, bool) {
	var v []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// chownR gives the tree at root to uid:gid.
func chownR(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
