// Package periodic runs periodic jobs: it reads their schedules (cron
// expressions by github.com/robfig/cron/v3, in an IANA time zone) and its
// Scheduler creates one job per tick through the store, which keeps each
// tick unique across every process sharing it (see store.Periodics).
package periodic

import (
	"fmt"
	"strings"
	"time"
	// Time zones by name even where the machine has no zoneinfo.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// parser reads standard 5-field cron expressions (minute precision), the
// same with a leading seconds field, and descriptors (@hourly, @daily,
// @weekly, @monthly, @yearly, @every <duration>).
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a parsed schedule in its time zone. The zero Schedule is not
// usable; make one with Parse. It is a value, safe for concurrent use.
type Schedule struct {
	spec cron.Schedule
	// every is the period of an @every schedule, whose ticks follow each
	// other from the first (zero for the others, whose ticks are fixed
	// times of the day in the zone).
	every time.Duration
}

// Bounds on the text of a schedule and of a time zone name: far above
// any real cron expression or IANA name, and short enough that reading
// one costs next to nothing.
const (
	MaxScheduleLength = 200
	MaxTimezoneLength = 64
)

// Parse reads a schedule and its time zone (an IANA name such as
// "Europe/Paris", or "UTC"). A broken rule is a *domain.ValidationError
// naming the field, "schedule" or "timezone". A schedule that can never
// fire (30 February) is refused too.
func Parse(schedule, timezone string) (Schedule, error) {
	if len(schedule) > MaxScheduleLength {
		return Schedule{}, &domain.ValidationError{Field: "schedule", Message: fmt.Sprintf("must be at most %d characters, got %d", MaxScheduleLength, len(schedule))}
	}
	if len(timezone) > MaxTimezoneLength {
		return Schedule{}, &domain.ValidationError{Field: "timezone", Message: fmt.Sprintf("must be at most %d characters (an IANA name like Europe/Paris), got %d", MaxTimezoneLength, len(timezone))}
	}
	loc, err := loadLocation(timezone)
	if err != nil {
		return Schedule{}, err
	}
	spec := strings.TrimSpace(schedule)
	if spec == "" {
		return Schedule{}, &domain.ValidationError{Field: "schedule", Message: "must not be empty"}
	}
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return Schedule{}, &domain.ValidationError{Field: "schedule", Message: "must not name a time zone: give it in timezone"}
	}
	if d, ok := strings.CutPrefix(spec, "@every "); ok {
		every, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil || every < time.Second || every%time.Second != 0 {
			return Schedule{}, &domain.ValidationError{Field: "schedule", Message: fmt.Sprintf("@every needs a whole number of seconds, at least 1s (like @every 30s or @every 1h30m), got %q", d)}
		}
	}
	parsed, err := parser.Parse(spec)
	if err != nil {
		return Schedule{}, &domain.ValidationError{Field: "schedule", Message: fmt.Sprintf("not a cron expression (5 fields, or 6 with seconds first, or @hourly, @daily, @every 30s…): %v", err)}
	}
	s := Schedule{spec: parsed}
	switch p := parsed.(type) {
	case *cron.SpecSchedule:
		p.Location = loc
	case cron.ConstantDelaySchedule:
		s.every = p.Delay
	}
	if s.Next(time.Now()).IsZero() {
		return Schedule{}, &domain.ValidationError{Field: "schedule", Message: fmt.Sprintf("%q never fires", schedule)}
	}
	return s, nil
}

// loadLocation returns the time zone named by an IANA name.
func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return nil, &domain.ValidationError{Field: "timezone", Message: "must not be empty (UTC, or an IANA name like Europe/Paris)"}
	}
	if name == "Local" {
		return nil, &domain.ValidationError{Field: "timezone", Message: "must be an IANA name like Europe/Paris, not Local"}
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, &domain.ValidationError{Field: "timezone", Message: fmt.Sprintf("unknown time zone %q (want an IANA name like Europe/Paris)", name)}
	}
	return loc, nil
}

// Next returns the first tick after t, or the zero time when there is
// none (within five years).
func (s Schedule) Next(t time.Time) time.Time { return s.spec.Next(t).UTC() }

// Latest returns the last tick in (after, upTo], and whether there is one:
// the one tick a scheduler that was away since after catches up on.
func (s Schedule) Latest(after, upTo time.Time) (time.Time, bool) {
	first := s.Next(after)
	if first.IsZero() || first.After(upTo) {
		return time.Time{}, false
	}
	if s.every > 0 {
		return first.Add(upTo.Sub(first) / s.every * s.every), true
	}
	// Ticks of a cron expression are fixed times: look for the latest in
	// windows ending at upTo that double until one holds a tick, then
	// walk that window's ticks. The walk is bounded by the ticks of the
	// half window before the last empty one.
	for w := time.Second; ; w *= 2 {
		from := upTo.Add(-w)
		if !from.After(after) {
			from = after
		}
		t := s.Next(from)
		if !t.IsZero() && !t.After(upTo) {
			for {
				n := s.Next(t)
				if n.IsZero() || n.After(upTo) {
					return t, true
				}
				t = n
			}
		}
		if from.Equal(after) {
			return first, true // not reached: first is in the window
		}
	}
}

// maxCounted bounds the ticks Between walks for a cron expression: a
// count for the logs and metrics, which must not make the first pass
// after a long outage slow (a walk costs about a microsecond a tick).
const maxCounted = 1000

// Between returns how many ticks fall in (after, before), counting at
// most 1,000 of a cron expression's (an @every schedule's are counted
// exactly): the ticks a scheduler that catches up on the tick at before
// skips.
func (s Schedule) Between(after, before time.Time) int {
	first := s.Next(after)
	if first.IsZero() || !first.Before(before) {
		return 0
	}
	if s.every > 0 {
		return int((before.Sub(first)-1)/s.every) + 1
	}
	n := 0
	for t := first; !t.IsZero() && t.Before(before) && n < maxCounted; t = s.Next(t) {
		n++
	}
	return n
}
