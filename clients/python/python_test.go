// Package python_test runs the Python client's tests (clients/python/tests)
// in `go test ./...`, the integration tests against a real taskd.
package python_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

// config declares the external kind the integration tests work with the
// Python Worker, and a schedule that never fires while they run.
const config = `queues: {default: 20, cpu: 2}
kinds:
  - {name: py_echo, run: external, queue: external, timeout: 30s}
schedules:
  - {name: py-leap-day, cron: "0 0 29 2 *", kind: py_echo, args: {value: 0}}
`

// suiteTimeout bounds the Python tests; they take about half a minute.
const suiteTimeout = 5 * time.Minute

func TestMain(m *testing.M) { taskdtest.Main(m) }

// TestPython runs `python3 -m unittest discover -s tests -v` with TASKD_URL
// pointing at a taskd started with config, and fails with the Python
// output if any Python test fails.
func TestPython(t *testing.T) {
	t.Parallel()
	python := findPython(t)
	p := taskdtest.Start(t, taskdtest.Options{DatabaseURL: pgtest.NewDB(t), Config: config})

	ctx, cancel := context.WithTimeout(context.Background(), suiteTimeout)
	defer cancel()
	// The working directory is this package's: clients/python.
	cmd := exec.CommandContext(ctx, python, "-m", "unittest", "discover", "-s", "tests", "-v")
	cmd.Env = append(os.Environ(), "TASKD_URL="+p.URL, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Python tests failed (%v):\n%s", err, out)
	}
	t.Logf("Python tests:\n%s", out)

	if err := p.Stop(); err != nil {
		t.Errorf("taskd exited with %v after SIGTERM", err)
	}
}

// findPython returns /usr/bin/python3 if it exists, else python3 on PATH,
// and skips the test if there is none or it is older than 3.9.
func findPython(t *testing.T) string {
	t.Helper()
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		if python, err = exec.LookPath("python3"); err != nil {
			t.Skip("no python3 (neither /usr/bin/python3 nor one on PATH): the Python client's tests are skipped")
		}
	}
	check := exec.Command(python, "-c", "import sys; sys.exit(sys.version_info < (3, 9))")
	if err := check.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Skipf("%s is older than Python 3.9: the Python client's tests are skipped", python)
		}
		t.Skipf("cannot run %s (%v): the Python client's tests are skipped", python, err)
	}
	return python
}
