package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// PeriodicJob is a schedule that creates one job at each of its ticks,
// from a template. A PeriodicJob value is a snapshot, as a Job is.
type PeriodicJob struct {
	// Name identifies the definition: valid as a job type is, and short
	// enough that PeriodicTag(Name) is a valid tag (MaxPeriodicNameLength).
	Name string
	// Schedule is the cron expression (or descriptor) as given.
	Schedule string
	// Timezone is the IANA name the schedule is read in ("UTC").
	Timezone string
	// Paused stops new ticks from creating jobs; ticks missed while
	// paused are not caught up.
	Paused bool
	// Source says where the definition comes from: the API, or the
	// server's PERIODIC_FILE (then the API may not change it).
	Source PeriodicSource
	// Job is what each tick creates.
	Job JobTemplate
	// Revision starts at 1 and increases by one on every change of the
	// definition (not on a tick): a tick is created only from the
	// revision it was computed from.
	Revision int64
	// UpdatedAt is when the definition last changed: ticks before it are
	// not caught up.
	UpdatedAt time.Time
	// LastRunAt is the tick of the last job created (its scheduled time,
	// not when it was written); nil before the first.
	LastRunAt *time.Time
	// LastJobID is the id of that job ("" before the first).
	LastJobID string
}

// PeriodicSource says where a periodic job's definition comes from.
type PeriodicSource string

// The sources of periodic job definitions.
const (
	PeriodicFromAPI  PeriodicSource = "api"
	PeriodicFromFile PeriodicSource = "file"
)

// JobTemplate is the job a periodic job creates at each tick: the fields
// of a NewJob that do not depend on the tick, validated and defaulted as
// a new job's are when the definition is stored.
type JobTemplate struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
	// Timeout bounds each attempt; zero means the worker's default.
	Timeout     time.Duration `json:"timeout,omitempty"`
	MaxAttempts int           `json:"maxAttempts"`
	Priority    int           `json:"priority,omitempty"`
	// Tags are sorted, without duplicates, and include the periodic
	// job's own tag (PeriodicTag).
	Tags []string `json:"tags,omitempty"`
}

// NewJob returns the job the template makes (owned by no one, to run at
// once).
func (t JobTemplate) NewJob() NewJob {
	return NewJob{Type: t.Type, Payload: t.Payload, Timeout: t.Timeout, MaxAttempts: t.MaxAttempts, Priority: t.Priority, Tags: t.Tags}
}

// TimeoutSeconds returns the template's attempt timeout in whole seconds,
// or nil when the worker's default applies.
func (t JobTemplate) TimeoutSeconds() *int {
	if t.Timeout <= 0 {
		return nil
	}
	n := int(t.Timeout / time.Second)
	return &n
}

// PeriodicTagPrefix starts the tag every job made by a periodic job
// carries.
const PeriodicTagPrefix = "periodic:"

// PeriodicTag is the tag of the jobs the periodic job name creates.
func PeriodicTag(name string) string { return PeriodicTagPrefix + name }

// MaxPeriodicNameLength bounds a periodic job's name so that its tag is a
// valid tag.
const MaxPeriodicNameLength = MaxTypeLength - len(PeriodicTagPrefix)

// ValidatePeriodicName checks a periodic job's name: the rule of a job
// type, at most MaxPeriodicNameLength characters. An error names "name".
func ValidatePeriodicName(name string) error {
	if err := validateName(name, "name"); err != nil {
		return err
	}
	if len(name) > MaxPeriodicNameLength {
		return &ValidationError{Field: "name", Message: fmt.Sprintf("must be at most %d characters (its jobs carry the tag %s<name>), got %d", MaxPeriodicNameLength, PeriodicTagPrefix, len(name))}
	}
	return nil
}
