package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
)

// postgresURL returns TEST_DATABASE_URL on a schema of the test's own,
// dropped when it ends, or "" when PostgreSQL cannot be reached (a
// failure with JOBQUEUE_REQUIRE_POSTGRES=1).
func postgresURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("TEST_DATABASE_URL")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if url == "" || err != nil {
		if os.Getenv("JOBQUEUE_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL is required but unreachable at TEST_DATABASE_URL: %v", err)
		}
		return ""
	}
	schema := "jobqueue_server_" + strings.ToLower(rand.Text()[:12])
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
		_ = conn.Close(ctx)
	})
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema
}

var metricName = regexp.MustCompile(`\bjobqueue_[a-z0-9_]+`)

// Every metric the Grafana dashboard and the Prometheus alerts name is one
// the server exports (on PostgreSQL, to include the pool's and the
// listener's; without one those are left out, and said so).
func TestDeployFilesNameExportedMetrics(t *testing.T) {
	t.Parallel()
	dashboard, err := os.ReadFile("../../deploy/grafana/jobqueue.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dashboard, &d); err != nil || len(d.Panels) == 0 {
		t.Fatalf("dashboard: %v, %d panels", err, len(d.Panels))
	}
	alerts, err := os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	// A paused type gives the job type gauges a series.
	env := map[string]string{"PAUSED_TYPES": "held"}
	pg := postgresURL(t)
	if pg != "" {
		env["DATABASE_URL"] = pg
	} else {
		t.Log("PostgreSQL unreachable: the pool's and the listener's metrics are not checked")
	}
	s := start(t, env)
	// Labelled families show once they have a series: one request each.
	get(t, s.client, s.url+"/health", nil)
	s.query(t, false, `{ __typename }`, nil)
	req, _ := http.NewRequest(http.MethodGet, s.url+"/jobs", nil)
	req.Host = "elsewhere.example" // refused: DNS rebinding
	if resp, err := s.client.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET /jobs with a foreign Host: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	_, _, body := get(t, s.client, s.url+"/metrics", nil)
	families := scrape(t, body)
	exported := func(name string) bool {
		if families[name] != nil {
			return true
		}
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && families[base] != nil && families[base].GetType() == dto.MetricType_HISTOGRAM {
				return true
			}
		}
		return false
	}
	named := 0
	for file, text := range map[string]string{"jobqueue.json": string(dashboard), "alerts.yml": string(alerts)} {
		for _, name := range metricName.FindAllString(text, -1) {
			named++
			if pg == "" && (strings.HasPrefix(name, "jobqueue_pgx_") || strings.HasPrefix(name, "jobqueue_postgres_")) {
				continue
			}
			if !exported(name) {
				t.Errorf("%s names %s, which the server does not export", file, name)
			}
		}
	}
	if named < 20 {
		t.Fatalf("the files name only %d metrics", named)
	}
}
