package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	// run as root).
	runAs []string
}

// PGOptions configure StartPG.
type PGOptions struct {
	// MaxConnections is the server's max_connections. Defaults to 60.
	MaxConnections int
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
	if opts.MaxConnections == 0 {
		opts.MaxConnections = 60
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
		t.Skipf("chaos: no PostgreSQL server binaries (initdb, pg_ctl) in %s; set TASKD_CHAOS_PG_BIN to their directory", pgBinGlob)
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			t.Skipf("chaos: no %s in %s (TASKD_CHAOS_PG_BIN): %v", name, bin, err)
		}
	}

	pg := &PG{t: t, bin: bin, dir: t.TempDir()}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("chaos: running as root, and PostgreSQL refuses root, but there is no OS user postgres to run it as: %v", err)
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			t.Skipf("chaos: running as root and no runuser to run PostgreSQL as user postgres: %v", err)
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
	}
	pg.data = filepath.Join(pg.dir, "data")
	pg.log = filepath.Join(pg.dir, "server.log")

	if out, err := pg.command("initdb", "-D", pg.data, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C").CombinedOutput(); err != nil {
		t.Skipf("chaos: initdb failed, so no private PostgreSQL can run here: %v\n%s", err, out)
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
shared_buffers = 16MB
# Durability is what the faults test: the defaults, written out.
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
`, port, pg.dir, opts.MaxConnections)
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
	if out, err := pg.command("pg_ctl", "start", "-D", pg.data, "-l", pg.log, "-w", "-t", pgCtlTimeout).CombinedOutput(); err != nil {
		t.Fatalf("chaos: starting PostgreSQL: %v\n%s\n%s", err, out, pg.Log())
	}
	return pg
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

// Restart runs `pg_ctl restart -m mode` ("smart", "fast" or "immediate")
// and returns once the server accepts connections again: with
// "immediate", after the crash recovery of its start.
func (pg *PG) Restart(mode string) error {
	out, err := pg.command("pg_ctl", "restart", "-D", pg.data, "-l", pg.log, "-m", mode, "-w", "-t", pgCtlTimeout).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl restart -m %s: %w\n%s", mode, err, out)
	}
	return nil
}

// Stop stops the server at once (pg_ctl stop -m immediate) if it runs,
// and makes sure no process of it is left: a postmaster that outlives
// pg_ctl is killed. StartPG registers it with t.Cleanup.
func (pg *PG) Stop() {
	pidFile := filepath.Join(pg.data, "postmaster.pid")
	pid := 0
	if b, err := os.ReadFile(pidFile); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	}
	if pid == 0 {
		return
	}
	out, err := pg.command("pg_ctl", "stop", "-D", pg.data, "-m", "immediate", "-w", "-t", pgCtlTimeout).CombinedOutput()
	if err != nil {
		pg.t.Logf("chaos: pg_ctl stop: %v\n%s", err, out)
	}
	// The postmaster is ours (StartPG started it); its children exit
	// with it.
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			pg.t.Errorf("chaos: PostgreSQL (pid %d) outlived pg_ctl stop; killed it", pid)
			break
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// alive reports whether process pid exists (and is not a zombie of ours:
// the postmaster is pg_ctl's child, not the test's).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
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
