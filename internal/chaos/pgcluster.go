package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PG is a private PostgreSQL server of one test, in a directory of its
// own on a port of its own, for the faults that must not touch the shared
// server every other test (and engineer) uses: a restart, a crash. Its
// settings are the defaults that durability rests on (fsync and
// synchronous_commit on), with small memory and connection limits.
type PG struct {
	// Port is the TCP port it listens on, on 127.0.0.1.
	Port int

	t    testing.TB
	bin  string
	dir  string // owned by the server's OS user; holds the socket
	data string
	log  string
	// runAs runs a command as the server's OS user (PostgreSQL refuses to
	// run as root); cred is that user for the postmaster itself.
	runAs []string
	cred  *syscall.Credential
	// done is closed when the current postmaster, the test's child, has
	// exited.
	postmaster *os.Process
	done       chan struct{}
}

// PGOptions configure StartPG.
type PGOptions struct {
	// MaxConnections is the server's max_connections. Defaults to 60.
	MaxConnections int
	// SharedBuffers is the server's shared_buffers. Defaults to 16MB;
	// "128MB" is PostgreSQL's own default (the load test's figures are
	// those of a server as PostgreSQL ships it).
	SharedBuffers string
}

// pgBinGlob finds PostgreSQL's server binaries (Debian's layout) when
// TASKD_CHAOS_PG_BIN does not name their directory.
const pgBinGlob = "/usr/lib/postgresql/*/bin"

// pgCtlTimeout bounds how long pg_ctl waits for a start or stop.
const pgCtlTimeout = "60"

// StartPG creates a PostgreSQL cluster in a temporary directory (initdb)
// and starts it; it is stopped (immediately, as after a crash) and
// removed when the test ends, failed or not. It skips t, naming the
// reason, when the server's binaries are missing or cannot be run: as
// root, they run as the OS user "postgres" (runuser), which must exist.
func StartPG(t testing.TB, opts PGOptions) *PG {
	t.Helper()
	pg, whyNot := NewPG(t, opts)
	if pg == nil {
		t.Skip(whyNot)
	}
	return pg
}

// NewPG is StartPG for a test that can do without a private server: it
// returns nil and why instead of skipping.
func NewPG(t testing.TB, opts PGOptions) (pg *PG, whyNot string) {
	t.Helper()
	if opts.MaxConnections == 0 {
		opts.MaxConnections = 60
	}
	if opts.SharedBuffers == "" {
		opts.SharedBuffers = "16MB"
	}
	bin := os.Getenv("TASKD_CHAOS_PG_BIN")
	if bin == "" {
		dirs, _ := filepath.Glob(pgBinGlob)
		slices.Sort(dirs) // the newest major version last (until 100)
		for _, d := range slices.Backward(dirs) {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				bin = d
				break
			}
		}
	}
	if bin == "" {
		return nil, fmt.Sprintf("chaos: no PostgreSQL server binaries (initdb, pg_ctl) in %s; set TASKD_CHAOS_PG_BIN to their directory", pgBinGlob)
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return nil, fmt.Sprintf("chaos: no %s in %s (TASKD_CHAOS_PG_BIN): %v", name, bin, err)
		}
	}

	pg = &PG{t: t, bin: bin, dir: t.TempDir()}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Sprintf("chaos: running as root, and PostgreSQL refuses root, but there is no OS user postgres to run it as: %v", err)
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			return nil, fmt.Sprintf("chaos: running as root and no runuser to run PostgreSQL as user postgres: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(pg.dir, uid, gid); err != nil {
			t.Fatalf("chaos: handing %s to postgres: %v", pg.dir, err)
		}
		// t.TempDir makes TMPDIR/TestName…/NNN, both root's with mode
		// 0700: the server's user must be able to pass through them.
		for _, d := range []string{pg.dir, filepath.Dir(pg.dir)} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatalf("chaos: opening %s to postgres: %v", d, err)
			}
		}
		pg.runAs = []string{runuser, "-u", "postgres", "--"}
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	pg.data = filepath.Join(pg.dir, "data")
	pg.log = filepath.Join(pg.dir, "server.log")

	if out, err := pg.command("initdb", "-D", pg.data, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C").CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("chaos: initdb failed, so no private PostgreSQL can run here: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("chaos: finding a free port: %v", err)
	}
	pg.Port = port
	conf := fmt.Sprintf(`
# taskd's fault suite (internal/chaos): a private server of one test.
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = %d
shared_buffers = %s
# Durability is what the faults test: the defaults, written out.
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
`, port, pg.dir, opts.MaxConnections, opts.SharedBuffers)
	f, err := os.OpenFile(filepath.Join(pg.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("chaos: opening postgresql.conf: %v", err)
	}
	_, err = f.WriteString(conf)
	f.Close()
	if err != nil {
		t.Fatalf("chaos: writing postgresql.conf: %v", err)
	}

	t.Cleanup(pg.Stop)
	if err := pg.start(); err != nil {
		t.Fatalf("chaos: starting PostgreSQL: %v\n%s", err, pg.Log())
	}
	return pg, ""
}

// start runs the postmaster as the test's child, not as pg_ctl's daemon,
// so that it gets SIGQUIT (an immediate shutdown) should the test process
// die without its cleanups (a panic, go test's -timeout), instead of
// outliving it; then it waits until the server accepts connections.
func (pg *PG) start() error {
	logFile, err := os.OpenFile(pg.log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(filepath.Join(pg.bin, "postgres"), "-D", pg.data)
	cmd.Dir, cmd.Stdout, cmd.Stderr = pg.dir, logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred, Pdeathsig: syscall.SIGQUIT}
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		// Pdeathsig follows the thread that started the child, so that
		// thread stays this goroutine's until the child has exited.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return err
	}
	pg.postmaster, pg.done = cmd.Process, done
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, pg.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("the postmaster exited: %w", err)
		case <-time.After(50 * time.Millisecond): // polling interval
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections within a minute: %w", err)
		}
	}
}

// exited waits up to timeout for the current postmaster to exit.
func (pg *PG) exited(timeout time.Duration) bool {
	select {
	case <-pg.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// command runs a server binary as the server's OS user.
func (pg *PG) command(name string, args ...string) *exec.Cmd {
	argv := append(slices.Clone(pg.runAs), append([]string{filepath.Join(pg.bin, name)}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = pg.dir
	return cmd
}

// URL returns the URL of database db on the server.
func (pg *PG) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.Port, db)
}

// CreateDB creates database name and returns its URL.
func (pg *PG) CreateDB(name string) string {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		pg.t.Fatalf("chaos: connecting to the private PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		pg.t.Fatalf("chaos: creating database %s: %v", name, err)
	}
	return pg.URL(name)
}

// Restart restarts the server as `pg_ctl restart -m mode` does ("smart",
// "fast" or "immediate"): `pg_ctl stop -m mode`, then a start, and returns
// once it accepts connections again, with "immediate" after the crash
// recovery of its start.
func (pg *PG) Restart(mode string) error {
	out, err := pg.command("pg_ctl", "stop", "-D", pg.data, "-m", mode, "-w", "-t", pgCtlTimeout).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %w\n%s", mode, err, out)
	}
	if !pg.exited(time.Minute) {
		return fmt.Errorf("pg_ctl stop -m %s: the postmaster (pid %d) still runs a minute later", mode, pg.postmaster.Pid)
	}
	return pg.start()
}

// Stop stops the server at once (pg_ctl stop -m immediate) if it runs,
// and makes sure no process of it is left: a postmaster that outlives
// pg_ctl is killed. StartPG registers it with t.Cleanup.
func (pg *PG) Stop() {
	if pg.postmaster == nil || pg.exited(0) {
		return
	}
	out, err := pg.command("pg_ctl", "stop", "-D", pg.data, "-m", "immediate", "-w", "-t", pgCtlTimeout).CombinedOutput()
	if err != nil {
		pg.t.Logf("chaos: pg_ctl stop: %v\n%s", err, out)
	}
	if !pg.exited(30 * time.Second) {
		_ = pg.postmaster.Kill()
		pg.t.Errorf("chaos: PostgreSQL (pid %d) outlived pg_ctl stop; killed it", pg.postmaster.Pid)
		pg.exited(10 * time.Second)
	}
}

// Log returns the server's log so far.
func (pg *PG) Log() string {
	b, _ := os.ReadFile(pg.log)
	return string(b)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
