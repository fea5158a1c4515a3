package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A PERIODIC_FILE with a broken definition stops the start, naming the
// setting, the file and the field.
func TestBadPeriodicFileStopsTheStart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "periodic.yaml")
	if err := os.WriteFile(path, []byte("periodic:\n  - name: ok\n    schedule: '@hourly'\n    job: {type: t}\n  - name: bad\n    schedule: every day\n    job: {type: t}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PERIODIC_FILE": path, "PORT": "0"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("a bad PERIODIC_FILE was accepted")
	}
	for _, want := range []string{"PERIODIC_FILE", path, "periodic[1].schedule"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
