package loadtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// privateCluster starts a PostgreSQL cluster of its own, with
// PostgreSQL's default settings but for listening on a free loopback port,
// and returns its admin URL. The cluster is stopped and removed when the
// test ends. It returns "" and why when it cannot: no initdb, or running
// as root without a postgres user to run it as.
//
// Why not the shared test server: how big river_job stays is
// autovacuum's doing, and a test server may well run without it (the
// development one here does, for speed); the figures should be those of a
// server as PostgreSQL ships it.
func privateCluster(t *testing.T) (adminURL, whyNot string) {
	t.Helper()
	initdb, pgCtl := pgBinary("initdb"), pgBinary("pg_ctl")
	if initdb == "" || pgCtl == "" {
		return "", "initdb and pg_ctl not found (neither under /usr/lib/postgresql nor on PATH)"
	}
	// initdb and pg_ctl refuse to run as root: then as postgres.
	var asOwner []string
	var owner *user.User
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", "running as root and there is no user postgres to run initdb as"
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			return "", "running as root and there is no runuser to run initdb as postgres"
		}
		owner, asOwner = u, []string{runuser, "-u", "postgres", "--"}
	}
	run := func(args ...string) error {
		args = append(slices.Clone(asOwner), args...)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = "/" // postgres may not be allowed into the test's directory
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}

	// Not t.TempDir(): its parents are closed to other users.
	dir, err := os.MkdirTemp("", "taskd-loadtest-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if owner != nil {
		uid, _ := strconv.Atoi(owner.Uid)
		gid, _ := strconv.Atoi(owner.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	if err := run(initdb, "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		t.Fatalf("creating a private cluster: %v", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("\n# Added by TestChaosLoad.\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = ''\n", port)
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "server.log")
	if err := run(pgCtl, "start", "-D", data, "-w", "-t", "60", "-l", logFile); err != nil {
		t.Fatalf("starting the private cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := run(pgCtl, "stop", "-D", data, "-m", "immediate", "-w", "-t", "60"); err != nil {
			t.Errorf("stopping the private cluster: %v", err)
		}
		if t.Failed() {
			if b, err := os.ReadFile(logFile); err == nil {
				t.Logf("private cluster's log:\n%s", b)
			}
		}
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), ""
}

// pgBinary returns the path of PostgreSQL program name: the newest
// version's under /usr/lib/postgresql (Debian's layout), else the one on
// PATH, else "".
func pgBinary(name string) string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, dir := range dirs {
		if path := filepath.Join(dir, name); isExecutable(path) {
			return path
		}
	}
	path, _ := exec.LookPath(name)
	return path
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// serverSettings reads what the plot and the log say of the server.
type serverSettings struct {
	version    string
	autovacuum bool
	private    bool
}

func (s serverSettings) String() string {
	where := "the test server"
	if s.private {
		where = "a private cluster of default settings"
	}
	av := "autovacuum on"
	if !s.autovacuum {
		av = "autovacuum OFF"
	}
	return fmt.Sprintf("PostgreSQL %s, %s, %s", s.version, where, av)
}
