package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/goccy/go-yaml"
)

// periodicFile is the shape of PERIODIC_FILE, in YAML or JSON:
//
//	periodic:
//	  - name: nightly-report
//	    schedule: "0 2 * * *"
//	    timezone: Europe/Paris        # default UTC
//	    paused: false                 # default false
//	    job: {type: report, payload: {kind: nightly}, priority: 5, maxAttempts: 3, timeoutSeconds: 600, tags: [reports]}
type periodicFile struct {
	Periodic []struct {
		Name     string  `json:"name"`
		Schedule string  `json:"schedule"`
		Timezone *string `json:"timezone"`
		Paused   *bool   `json:"paused"`
		Job      struct {
			Type           *string         `json:"type"`
			Payload        json.RawMessage `json:"payload"`
			IdempotencyKey *string         `json:"idempotencyKey"`
			TimeoutSeconds *int            `json:"timeoutSeconds"`
			MaxAttempts    *int            `json:"maxAttempts"`
			RunAt          *time.Time      `json:"runAt"`
			Priority       *int            `json:"priority"`
			Tags           []string        `json:"tags"`
		} `json:"job"`
	} `json:"periodic"`
}

// MaxPeriodicFileBytes bounds the size of a PERIODIC_FILE: room for the
// most periodic jobs the server allows with sizeable payloads, and a
// bound on what reading it costs.
const MaxPeriodicFileBytes = 8 << 20

// ReadPeriodicFile reads the periodic job definitions of a PERIODIC_FILE,
// YAML or JSON (JSON is YAML), whose fields are those of GraphQL's
// PeriodicJobInput under a top-level list "periodic". An unknown field is
// an error; the definitions' rules are checked by ApplyPeriodicFile.
func ReadPeriodicFile(path string) ([]PeriodicRequest, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("periodic file: %w", err)
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, MaxPeriodicFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("periodic file: %w", err)
	}
	if len(data) > MaxPeriodicFileBytes {
		return nil, fmt.Errorf("periodic file %s: larger than %d bytes", path, MaxPeriodicFileBytes)
	}
	// YAML is read into plain values, which JSON then reads strictly into
	// the fields: one set of names, and payloads as JSON text.
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("periodic file %s: %w", path, err)
	}
	text, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("periodic file %s: %w", path, err)
	}
	var f periodicFile
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("periodic file %s: want a list \"periodic\" of definitions with the fields of PeriodicJobInput: %w", path, err)
	}
	reqs := make([]PeriodicRequest, len(f.Periodic))
	for i, e := range f.Periodic {
		j := e.Job
		reqs[i] = PeriodicRequest{Name: e.Name, Schedule: e.Schedule, Timezone: e.Timezone, Paused: e.Paused, Job: CreateRequest{
			Type: j.Type, Payload: j.Payload, IdempotencyKey: j.IdempotencyKey, TimeoutSeconds: j.TimeoutSeconds,
			MaxAttempts: j.MaxAttempts, RunAt: j.RunAt, Priority: j.Priority, Tags: j.Tags,
		}}
	}
	return reqs, nil
}
