package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskd/taskd/internal/rivergoose"
)

func TestRun(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	runOK := func(t *testing.T) (string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		require.NoError(t, run(t.Context(), []string{"rivergoose", "-dir", dir}, &stdout, &stderr))
		return stdout.String(), stderr.String()
	}

	stdout, _ := runOK(t)
	require.Equal(t, rivergoose.PinnedVersions, strings.Count(stdout, "wrote "))

	content, err := os.ReadFile(filepath.Join(dir, "00001_river_v001.sql"))
	require.NoError(t, err)
	require.Contains(t, string(content), "DO NOT EDIT")

	// A second run changes nothing and warns about River files it doesn't
	// know.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00099_river_v099.sql"), nil, 0o644))
	stdout, stderr := runOK(t)
	require.Equal(t, rivergoose.PinnedVersions, strings.Count(stdout, "unchanged "))
	require.Contains(t, stderr, "00099_river_v099.sql is not a River migration")
}
