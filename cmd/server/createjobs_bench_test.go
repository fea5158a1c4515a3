package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkCreateJobsAPI compares one createJobs of 100 inputs with 100
// createJob mutations, each over HTTP to a server running in process, on
// each backend (PostgreSQL when TEST_DATABASE_URL reaches one). One
// iteration creates 100 jobs either way; jobs/s is the figure to read.
// The type is paused, so no worker competes with the requests.
//
//	go test -run '^$' -bench CreateJobsAPI -benchtime 20x ./cmd/server
func BenchmarkCreateJobsAPI(b *testing.B) {
	backends := []struct {
		name string
		url  func(b *testing.B) string
	}{
		{"memory", func(*testing.B) string { return "" }},
		{"sqlite", func(b *testing.B) string { return "sqlite:" + filepath.Join(b.TempDir(), "jobs.db") }},
		{"postgres", func(b *testing.B) string { return postgresURL(b) }},
	}
	inputs := make([]map[string]any, 100)
	for i := range inputs {
		inputs[i] = map[string]any{"type": "bench", "payload": map[string]any{"n": i}}
	}
	many, _ := json.Marshal(map[string]any{
		"query":     `mutation($in: [CreateJobInput!]!) { createJobs(inputs: $in) { id } }`,
		"variables": map[string]any{"in": inputs},
	})
	single := make([][]byte, len(inputs))
	for i, in := range inputs {
		single[i], _ = json.Marshal(map[string]any{
			"query":     `mutation($in: CreateJobInput!) { createJob(input: $in) { id } }`,
			"variables": map[string]any{"in": in},
		})
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			url := be.url(b)
			if be.name == "postgres" && url == "" {
				b.Skip("PostgreSQL unreachable at TEST_DATABASE_URL")
			}
			s := start(b, map[string]string{"DATABASE_URL": url, "PAUSED_TYPES": "bench", "RATE_LIMIT": "0"})
			client := &http.Client{}
			post := func(b *testing.B, body []byte, want int) {
				resp, err := client.Post(s.url+"/query", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				text, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || strings.Contains(string(text), `"errors"`) || strings.Count(string(text), `"id"`) != want {
					b.Fatalf("%d %.300s", resp.StatusCode, text)
				}
			}
			b.Run("createJobs-100", func(b *testing.B) {
				for b.Loop() {
					post(b, many, 100)
				}
				b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "jobs/s")
			})
			b.Run("createJob-x100", func(b *testing.B) {
				for b.Loop() {
					for _, body := range single {
						post(b, body, 1)
					}
				}
				b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "jobs/s")
			})
		})
	}
}
